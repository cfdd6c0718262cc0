//! The verification time: an input, never read from the clock in here.

use rustls_pki_types::UnixTime;
use std::time::Duration;

/// The instant at which evidence is judged (certificate validity, CRL and
/// collateral freshness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VerificationTime(u64);

impl VerificationTime {
    /// Seconds since the Unix epoch.
    pub const fn from_unix_seconds(seconds: u64) -> Self {
        VerificationTime(seconds)
    }

    pub fn unix_seconds(self) -> u64 {
        self.0
    }

    pub(crate) fn as_webpki(self) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(self.0))
    }
}

/// Parses RFC 3339 UTC timestamps like `2025-07-01T00:00:00Z` into a
/// [`VerificationTime`]; used by the CLI's `--at` and by tests.
pub fn parse_rfc3339(text: &str) -> Option<VerificationTime> {
    let (date, time) = text.trim().split_once('T')?;
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs)
        .ok()
        .map(VerificationTime::from_unix_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse_rfc3339("2025-07-01T00:00:00Z").map(|t| t.unix_seconds()),
            Some(1_751_328_000)
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z").map(|t| t.unix_seconds()),
            Some(0)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.789Z").map(|t| t.unix_seconds()),
            Some(1_709_210_096)
        );
        assert_eq!(parse_rfc3339("2025-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
