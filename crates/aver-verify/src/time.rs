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
