//! Intel TDX confidential-computing event logs (CCEL): the TCG
//! crypto-agile log a TD's firmware (TDVF) and boot loaders keep of what
//! they extended into the RTMRs, replayed and compared with a quote's RTMRs.
//!
//! The log is the one [`crate::eventlog`] parses (TCG PC Client
//! `TCG_PCR_EVENT2` records after a `Spec ID Event03` header); this module
//! adds only what is TDX's own:
//!
//! * **The area and its end.** The ACPI `CCEL` table points at a fixed-size
//!   area (the Log Area Minimum Length, 64 KiB to 256 KiB in practice) that
//!   firmware fills with `0xFF` before writing the log (GCP's TDs do; some
//!   stacks zero it). Aver takes the whole area as sent. The padding byte
//!   is the area's last byte when that is `0xFF` or `0x00`; the log ends at
//!   the first event that would start in a tail made only of that byte
//!   ([`crate::eventlog::parse_event_log_padded`]). An area whose last byte
//!   is something else has no padding: its last event must end exactly at
//!   its end. A tail mixing both bytes (zeros, then `0xFF`) is read as
//!   events and refused (a zero record names MR index 0). Cutting the tail
//!   gives a forger nothing: an event that was really extended and left
//!   out of the log makes the replay differ from the quote.
//! * **Registers.** The record's index field is the CC measurement-register
//!   index of the UEFI CC measurement protocol: 0 = MRTD (never extended
//!   through the log), 1–4 = RTMR0–3. An extended event (any type but
//!   `EV_NO_ACTION`) naming another index is refused: there is no register
//!   to replay it into ([`CcelError::MrIndexOutOfRange`]).
//! * **Bank.** RTMRs are SHA-384 registers: the log must be crypto-agile
//!   and every extended event must carry a SHA-384 digest (other banks the
//!   Spec ID event lists are ignored). RTMRs start at zero; `EV_NO_ACTION`
//!   events are never extended. The replay is [`crate::replay::replay`]
//!   (MR index *n* plays the role of PCR *n*, whose reset value is zero for
//!   1–4; index 0, where the PC Client StartupLocality and H-CRTM rules
//!   act, is refused for extended events, so none of them applies).
//! * **Comparison** ([`verify_ccel`]): RTMR0–2 always (the log must account
//!   for all of them, so a register no event extends must be zero in the
//!   quote), RTMR3 when the log extends it (RTMR3 is extended at run time,
//!   usually without a CCEL record). The first register that differs is the
//!   error, naming the register, how many events extended it, the last of
//!   them (sequence number and type), the quoted and the replayed value,
//!   and, when a prefix of its events replays to the quoted value, the
//!   event after which it does.
//!
//! Caps: [`MAX_CCEL_BYTES`] of area, [`MAX_CCEL_EVENTS`] records, and the
//! event-log parser's own caps; memory is bounded by a small constant times
//! the area's length. Event sequence numbers count records from 0, the
//! `Spec ID Event03` header being record 0.

use crate::alg::{HashAlg, PcrValues};
use crate::eventlog::{EventLog, EventLogError, LogFormat, event_type_name, types};
use crate::replay::{Replay, compare, replay};
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

/// Largest CCEL area accepted: twice the largest area seen (GCP's 256 KiB).
pub const MAX_CCEL_BYTES: usize = 512 * 1024;
/// Most records (the Spec ID header included) accepted in one CCEL log; a
/// real TD boot logs tens to a few hundred.
pub const MAX_CCEL_EVENTS: usize = 4096;
/// Number of RTMRs.
pub const RTMR_COUNT: usize = 4;
/// RTMRs always compared (RTMR0–2); RTMR3 only when the log extends it.
pub const ALWAYS_COMPARED: usize = 3;

/// The CC measurement-register index (the record's index field) of RTMR
/// `rtmr`: RTMR*n* is MR index *n* + 1.
pub fn mr_index(rtmr: usize) -> u32 {
    // RTMR indices are 0..=3, so this never truncates.
    (rtmr as u32).saturating_add(1)
}

/// The RTMR an MR index extends (`None` for MRTD = 0 and anything above 4).
pub fn rtmr_of(mr_index: u32) -> Option<usize> {
    match mr_index {
        1..=4 => Some((mr_index - 1) as usize),
        _ => None,
    }
}

/// Why a CCEL log was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CcelError {
    /// The area is larger than [`MAX_CCEL_BYTES`].
    #[error("the CCEL event log is {len} bytes, over the cap of {MAX_CCEL_BYTES}")]
    TooLarge {
        /// Length sent.
        len: usize,
    },
    /// The TCG log itself does not parse (or the area holds only padding).
    #[error("the CCEL event log does not parse: {0}")]
    Parse(#[from] EventLogError),
    /// More than [`MAX_CCEL_EVENTS`] records.
    #[error("the CCEL event log has {count} records, over the cap of {MAX_CCEL_EVENTS}")]
    TooManyEvents {
        /// Records parsed.
        count: usize,
    },
    /// A legacy SHA-1 log: RTMRs are SHA-384 registers.
    #[error(
        "the CCEL event log is a legacy SHA-1 log (no Spec ID Event03 header); a TDX log is crypto-agile with SHA-384 digests"
    )]
    NotCryptoAgile,
    /// The log has no complete SHA-384 bank.
    #[error(
        "not every extended record of the CCEL event log has a SHA-384 digest (RTMRs are SHA-384 registers){}",
        .seq.map(|s| format!("; record #{s} has none")).unwrap_or_default()
    )]
    NoSha384 {
        /// First extended record without a SHA-384 digest, if the Spec ID
        /// event lists SHA-384 at all.
        seq: Option<u32>,
    },
    /// An extended event names an MR index that is not an RTMR.
    #[error(
        "CCEL record #{seq} ({}) names MR index {mr_index}: only 1-4 (RTMR0-3) can be extended through the log",
        event_type_name(*event_type)
    )]
    MrIndexOutOfRange {
        /// Record sequence number.
        seq: u32,
        /// MR index found.
        mr_index: u32,
        /// Its event type.
        event_type: u32,
    },
    /// The log does not replay to the quoted RTMRs.
    #[error("{0}")]
    Mismatch(Box<RtmrMismatch>),
}

impl CcelError {
    /// Stable error code (docs/errors.md): `EventLogReplayMismatch` when
    /// the log parses but does not replay to the quote, `EventLogMalformed`
    /// for everything else — the codes TPM event logs answer with.
    pub fn code(&self) -> &'static str {
        match self {
            CcelError::Mismatch(_) => "EventLogReplayMismatch",
            _ => "EventLogMalformed",
        }
    }
}

/// The first RTMR the log does not replay to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RtmrMismatch {
    /// RTMR index (0–3).
    pub rtmr: usize,
    /// The quote's value.
    #[serde(serialize_with = "crate::claims::ser_hex")]
    pub quoted: Vec<u8>,
    /// The log's replayed value.
    #[serde(serialize_with = "crate::claims::ser_hex")]
    pub replayed: Vec<u8>,
    /// Number of events that extended this RTMR.
    pub events: usize,
    /// The last of them: sequence number and event type.
    pub last_event: Option<(u32, u32)>,
    /// When a prefix of this RTMR's events replays to the quoted value: the
    /// last event of that prefix (the log has events the quote has not).
    pub quoted_after: Option<u32>,
}

impl std::fmt::Display for RtmrMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl RtmrMismatch {
    /// One line for people.
    pub fn describe(&self) -> String {
        let last = match self.last_event {
            Some((seq, ty)) => format!("last: record #{seq} {}", event_type_name(ty)),
            None => "none".into(),
        };
        format!(
            "the CCEL event log does not replay to RTMR{} (MR index {}): the quote has {} but the log's {} event(s) extending it ({last}) replay to {}{}",
            self.rtmr,
            mr_index(self.rtmr),
            hex::encode(&self.quoted),
            self.events,
            hex::encode(&self.replayed),
            self.quoted_after
                .map(|s| format!(
                    "; the quoted value is reached after record #{s}, so the log has events the quote does not"
                ))
                .unwrap_or_default()
        )
    }
}

/// A parsed and replayed CCEL log, borrowing from the area it was read
/// from (as [`EventLog`] does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcelReplay<'a> {
    /// The parsed log (records in order, the Spec ID header first).
    pub log: EventLog<'a>,
    /// The padding byte the area's tail was cut at (`0xFF` or `0x00`).
    pub padding: u8,
    /// Replayed RTMR0–3.
    pub rtmr: [[u8; 48]; RTMR_COUNT],
    /// Per RTMR: events that extended it.
    pub events: [usize; RTMR_COUNT],
    /// Per RTMR: the last event that extended it (sequence number, type).
    pub last_event: [Option<(u32, u32)>; RTMR_COUNT],
    /// The PC Client replay the RTMRs were read from (MR indices as PCRs).
    pub replay: Replay,
}

impl CcelReplay<'_> {
    /// RTMRs the log is compared against: 0–2, and 3 when the log extends it.
    pub fn compared(&self) -> Vec<usize> {
        (0..RTMR_COUNT)
            .filter(|&i| i < ALWAYS_COMPARED || self.events.get(i).is_some_and(|&n| n > 0))
            .collect()
    }
}

/// Parses a CCEL area (with its padding) and replays it to RTMR0–3. See
/// the module docs for the end-of-log rule and the caps.
pub fn replay_ccel(area: &[u8]) -> Result<CcelReplay<'_>, CcelError> {
    if area.len() > MAX_CCEL_BYTES {
        return Err(CcelError::TooLarge { len: area.len() });
    }
    let padding = match area.last() {
        Some(0xFF) => 0xFF,
        _ => 0x00,
    };
    let log = crate::eventlog::parse_event_log_padded(area, padding)?;
    if log.events.len() > MAX_CCEL_EVENTS {
        return Err(CcelError::TooManyEvents {
            count: log.events.len(),
        });
    }
    if log.format != LogFormat::CryptoAgile {
        return Err(CcelError::NotCryptoAgile);
    }
    let mut events = [0usize; RTMR_COUNT];
    let mut last_event = [None; RTMR_COUNT];
    let mut missing_sha384 = None;
    for ev in log
        .events
        .iter()
        .filter(|e| e.event_type != types::EV_NO_ACTION)
    {
        let Some(r) = rtmr_of(ev.pcr_index) else {
            return Err(CcelError::MrIndexOutOfRange {
                seq: ev.seq,
                mr_index: ev.pcr_index,
                event_type: ev.event_type,
            });
        };
        if missing_sha384.is_none() && ev.digest(HashAlg::Sha384).is_none() {
            missing_sha384 = Some(ev.seq);
        }
        if let (Some(n), Some(last)) = (events.get_mut(r), last_event.get_mut(r)) {
            *n += 1;
            *last = Some((ev.seq, ev.event_type));
        }
    }
    if !log.banks().contains(&HashAlg::Sha384) {
        return Err(CcelError::NoSha384 { seq: None });
    }
    if let Some(seq) = missing_sha384 {
        return Err(CcelError::NoSha384 { seq: Some(seq) });
    }
    // Every extended event names MR index 1-4 and carries SHA-384, so the
    // PC Client replay is exactly the RTMR replay (see the module docs).
    let replayed = replay(&log).map_err(|_| CcelError::NoSha384 { seq: None })?;
    let mut rtmr = [[0u8; 48]; RTMR_COUNT];
    for (i, out) in rtmr.iter_mut().enumerate() {
        let v = replayed
            .get(HashAlg::Sha384, mr_index(i))
            .ok_or(CcelError::NoSha384 { seq: None })?;
        if v.len() == out.len() {
            out.copy_from_slice(v);
        }
    }
    Ok(CcelReplay {
        log,
        padding,
        rtmr,
        events,
        last_event,
        replay: replayed,
    })
}

/// Replays a CCEL area and compares it with a quote's RTMRs (RTMR0–2, and
/// RTMR3 when the log extends it); the first register that differs is a
/// [`CcelError::Mismatch`].
pub fn verify_ccel<'a>(
    area: &'a [u8],
    quoted: &[[u8; 48]; RTMR_COUNT],
) -> Result<CcelReplay<'a>, CcelError> {
    let r = replay_ccel(area)?;
    let compared = r.compared();
    // The comparison (and the "quoted value reached after event n" search)
    // is the TPM path's, over MR indices as PCR indices.
    let mut quoted_values: PcrValues = BTreeMap::new();
    quoted_values.insert(
        HashAlg::Sha384,
        compared
            .iter()
            .filter_map(|&i| quoted.get(i).map(|q| (mr_index(i), q.to_vec())))
            .collect(),
    );
    let mask = compared.iter().fold(0u32, |m, &i| m | (1 << mr_index(i)));
    // Every compared register is quoted and the SHA-384 bank is replayed,
    // so the only mismatch `compare` can report here is a differing value.
    if let Err(m) = compare(&r.log, &r.replay, &quoted_values, Some(mask), &[]) {
        let m = *m;
        let rtmr = rtmr_of(m.pcr).unwrap_or(0);
        return Err(CcelError::Mismatch(Box::new(RtmrMismatch {
            rtmr,
            quoted: m.quoted.unwrap_or_default(),
            replayed: m.replayed.unwrap_or_default(),
            events: r.events.get(rtmr).copied().unwrap_or(0),
            last_event: r.last_event.get(rtmr).copied().flatten(),
            quoted_after: m.matched_after_seq,
        })));
    }
    Ok(r)
}
