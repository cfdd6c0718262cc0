//! Event-log replay to PCR values and comparison against quoted PCRs.
//!
//! Replay rules: every bank the log carries (and Aver can hash) is replayed
//! independently; PCRs start at their TPM reset value (0…0, except PCRs
//! 17–22 which reset to ff…ff); `EV_NO_ACTION` events are never extended,
//! whatever PCR they name.
//!
//! PCR 0's initial value (TPM 2.0 Library Part 1, "Locality and PCR 0";
//! PFP "Startup Locality event"):
//! * a `StartupLocality` `EV_NO_ACTION` event on PCR 0 (data exactly
//!   `"StartupLocality\0"` + one byte) sets it to 0…0‖locality in every
//!   bank. It must precede every PCR 0 extend
//!   ([`ReplayError::LateStartupLocality`]) and occur at most once
//!   ([`ReplayError::DuplicateStartupLocality`]): a second one would make
//!   the starting value a matter of which event a verifier believes.
//!   The signature on another PCR index, or with other data lengths, is an
//!   ordinary `EV_NO_ACTION` event and is not applied (as in go-attestation
//!   and tpm2-tools).
//! * an `EV_EFI_HCRTM_EVENT` on PCR 0 means the H-CRTM sequence
//!   (`_TPM_Hash_Start`) reset PCR 0 to 0…04 before extending it (as
//!   tpm2-tools, tpm2-tss FAPI and go-eventlog replay it). It must be the
//!   first PCR 0 extend ([`ReplayError::LateHcrtm`]) — the H-CRTM runs
//!   before `TPM2_Startup` — and it takes precedence over a
//!   StartupLocality event.
//!
//! Extended events must name PCR 0–23 ([`ReplayError::PcrIndexOutOfRange`];
//! [`crate::parse_event_log`] already guarantees this for parsed logs, the
//! check guards hand-built [`EventLog`] values).
//!
//! Known firmware quirks are only applied when the caller passes them
//! explicitly (see [`KNOWN_QUIRKS`]); an applied quirk is always reported.

use crate::alg::{HashAlg, PcrValues};
use crate::eventlog::{Event, EventLog, types};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Number of PCRs replayed (PC Client: 0–23).
pub const PCR_COUNT: u32 = 24;

/// Error from [`replay`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// An extending event has no digest for a bank the log declares.
    #[error("event {seq} has no {bank:?} digest")]
    MissingDigest {
        /// Event sequence number.
        seq: u32,
        /// Bank.
        bank: HashAlg,
    },
    /// A StartupLocality event follows an extend of PCR 0.
    #[error("StartupLocality event {seq} follows an extend of PCR 0")]
    LateStartupLocality {
        /// Event sequence number.
        seq: u32,
    },
    /// A second StartupLocality event.
    #[error("StartupLocality event {seq} repeats StartupLocality event {first_seq}")]
    DuplicateStartupLocality {
        /// Event sequence number of the second event.
        seq: u32,
        /// Event sequence number of the first one.
        first_seq: u32,
    },
    /// An EV_EFI_HCRTM_EVENT on PCR 0 that is not the first PCR 0 extend.
    #[error("EV_EFI_HCRTM_EVENT {seq} follows another extend of PCR 0 (the H-CRTM runs first)")]
    LateHcrtm {
        /// Event sequence number.
        seq: u32,
    },
    /// An event to be extended names a PCR outside 0–23.
    #[error("event {seq} would extend PCR {pcr}, outside 0-23")]
    PcrIndexOutOfRange {
        /// Event sequence number.
        seq: u32,
        /// PCR index found.
        pcr: u32,
    },
    /// The log carries no complete bank Aver can compute.
    #[error("the event log carries no complete SHA-1/256/384/512 bank")]
    NoKnownBank,
}

/// Replayed PCR values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replay {
    /// Bank → PCR index → value, for all 24 PCRs of each replayed bank.
    pub banks: PcrValues,
    /// PCR → sequence number of the last event that extended it.
    pub last_extend: BTreeMap<u32, u32>,
    /// Locality from a StartupLocality event, if any.
    pub startup_locality: Option<u8>,
    /// Sequence number of the EV_EFI_HCRTM_EVENT that started PCR 0 at
    /// 0…04, if any.
    pub hcrtm_seq: Option<u32>,
    /// Banks listed by the log but missing from some extending event; not
    /// replayed.
    pub incomplete_banks: Vec<HashAlg>,
}

impl Replay {
    /// Value of a PCR in a bank.
    pub fn get(&self, bank: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.banks
            .get(&bank)
            .and_then(|b| b.get(&pcr))
            .map(|v| v.as_slice())
    }

    /// PCRs extended by at least one event (or initialised by StartupLocality).
    pub fn touched(&self) -> BTreeSet<u32> {
        let mut s: BTreeSet<u32> = self.last_extend.keys().copied().collect();
        if self.startup_locality.is_some() {
            s.insert(0);
        }
        s
    }
}

/// Reset value of a PCR in a bank.
pub fn reset_value(bank: HashAlg, pcr: u32) -> Vec<u8> {
    let fill = if (17..=22).contains(&pcr) { 0xff } else { 0 };
    vec![fill; bank.size()]
}

/// Locality the H-CRTM sequence leaves in PCR 0 (TPM 2.0 Part 1).
pub const HCRTM_LOCALITY: u8 = 4;

/// PCR 0 value after TPM2_Startup from `locality` (or after the H-CRTM
/// reset, locality 4): 0…0‖locality.
pub fn locality_value(bank: HashAlg, locality: u8) -> Vec<u8> {
    let mut v = vec![0u8; bank.size()];
    if let Some(last) = v.last_mut() {
        *last = locality;
    }
    v
}

fn is_hcrtm(ev: &Event<'_>) -> bool {
    ev.event_type == types::EV_EFI_HCRTM_EVENT && ev.pcr_index == 0
}

/// Largest digest Aver computes (SHA-512).
const MAX_PCR_SIZE: usize = 64;

/// One bank's 24 PCRs during a replay, extended in place: an extend hashes
/// into a stack buffer instead of allocating a new value per event.
struct BankPcrs {
    alg: HashAlg,
    values: [[u8; MAX_PCR_SIZE]; PCR_COUNT as usize],
}

impl BankPcrs {
    /// Every PCR at its reset value ([`reset_value`]).
    fn new(alg: HashAlg) -> BankPcrs {
        let mut values = [[0; MAX_PCR_SIZE]; PCR_COUNT as usize];
        for v in values.get_mut(17..=22).into_iter().flatten() {
            v.fill(0xff);
        }
        BankPcrs { alg, values }
    }

    /// The PCR's value (empty for an index outside 0–23, which the
    /// callers have ruled out).
    fn value(&self, pcr: u32) -> &[u8] {
        self.values
            .get(pcr as usize)
            .and_then(|v| v.get(..self.alg.size()))
            .unwrap_or_default()
    }

    fn value_mut(&mut self, pcr: u32) -> Option<&mut [u8]> {
        let size = self.alg.size();
        self.values
            .get_mut(pcr as usize)
            .and_then(|v| v.get_mut(..size))
    }

    /// Sets a PCR to `value` (of the bank's size).
    fn set(&mut self, pcr: u32, value: &[u8]) {
        if let Some(v) = self.value_mut(pcr)
            && v.len() == value.len()
        {
            v.copy_from_slice(value);
        }
    }

    /// PCR extend: H(old || digest), written in place
    /// ([`HashAlg::extend_in_place`]).
    fn extend(&mut self, pcr: u32, digest: &[u8]) {
        let alg = self.alg;
        if let Some(v) = self.value_mut(pcr) {
            alg.extend_in_place(v, digest);
        }
    }
}

/// Replays all banks of `log`.
pub fn replay(log: &EventLog<'_>) -> Result<Replay, ReplayError> {
    // A bank is replayed only when every extending event carries a digest
    // for it (some firmware lists algorithms in the Spec ID event that its
    // events never use); the others are reported in `incomplete_banks`.
    let (banks_list, incomplete_banks): (Vec<HashAlg>, Vec<HashAlg>) =
        log.banks().into_iter().partition(|b| {
            log.events
                .iter()
                .filter(|e| e.event_type != types::EV_NO_ACTION)
                .all(|e| e.digest(*b).is_some())
        });
    if banks_list.is_empty() {
        return Err(ReplayError::NoKnownBank);
    }
    // `banks()` is sorted and deduplicated: the same order as a `PcrValues`.
    let mut banks: Vec<BankPcrs> = banks_list.iter().map(|&b| BankPcrs::new(b)).collect();
    // PCR → sequence number of the last event that extended it.
    let mut last_extend: [Option<u32>; PCR_COUNT as usize] = [None; PCR_COUNT as usize];
    let pcr0_extended = |last: &[Option<u32>]| last.first().is_some_and(Option::is_some);
    let mut startup: Option<(u32, u8)> = None;
    let mut hcrtm_seq = None;
    for ev in &log.events {
        if ev.event_type == types::EV_NO_ACTION {
            // Not `decode()`: that would build the Spec ID event (and any
            // other EV_NO_ACTION record) only to be dropped.
            if let Some(loc) = ev.startup_locality() {
                if let Some((first_seq, _)) = startup {
                    return Err(ReplayError::DuplicateStartupLocality {
                        seq: ev.seq,
                        first_seq,
                    });
                }
                if pcr0_extended(&last_extend) {
                    return Err(ReplayError::LateStartupLocality { seq: ev.seq });
                }
                startup = Some((ev.seq, loc));
                for b in banks.iter_mut() {
                    b.set(0, &locality_value(b.alg, loc));
                }
            }
            continue;
        }
        if ev.pcr_index >= PCR_COUNT {
            return Err(ReplayError::PcrIndexOutOfRange {
                seq: ev.seq,
                pcr: ev.pcr_index,
            });
        }
        if is_hcrtm(ev) {
            if pcr0_extended(&last_extend) {
                return Err(ReplayError::LateHcrtm { seq: ev.seq });
            }
            hcrtm_seq = Some(ev.seq);
            for b in banks.iter_mut() {
                b.set(0, &locality_value(b.alg, HCRTM_LOCALITY));
            }
        }
        for b in banks.iter_mut() {
            let d = ev.digest(b.alg).ok_or(ReplayError::MissingDigest {
                seq: ev.seq,
                bank: b.alg,
            })?;
            b.extend(ev.pcr_index, d);
        }
        if let Some(last) = last_extend.get_mut(ev.pcr_index as usize) {
            *last = Some(ev.seq);
        }
    }
    Ok(Replay {
        banks: banks
            .iter()
            .map(|b| {
                let values = (0..PCR_COUNT).map(|p| (p, b.value(p).to_vec())).collect();
                (b.alg, values)
            })
            .collect(),
        last_extend: (0..PCR_COUNT)
            .zip(last_extend)
            .filter_map(|(pcr, seq)| Some((pcr, seq?)))
            .collect(),
        startup_locality: startup.map(|(_, loc)| loc),
        hcrtm_seq,
        incomplete_banks,
    })
}

/// Why a PCR did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MismatchKind {
    /// Quoted and replayed values differ.
    ValueDiffers,
    /// A PCR required by the mask is not among the quoted values.
    NotQuoted,
    /// The quoted bank is not in the log.
    BankNotInLog,
}

/// First PCR whose quoted value does not equal the replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error(
    "PCR {pcr} {bank:?} mismatch ({kind:?}): quoted {}, replayed {}; last event extending it: {last_extend_seq:?}; quoted value reached after event {matched_after_seq:?}",
    .quoted.as_deref().map(hex::encode).unwrap_or_else(|| "-".into()),
    .replayed.as_deref().map(hex::encode).unwrap_or_else(|| "-".into())
)]
pub struct PcrMismatch {
    /// PCR index.
    pub pcr: u32,
    /// Bank.
    pub bank: HashAlg,
    /// Kind of mismatch.
    pub kind: MismatchKind,
    /// Value from the quote (expected).
    pub quoted: Option<Vec<u8>>,
    /// Value from the replay.
    pub replayed: Option<Vec<u8>>,
    /// Sequence number of the last event that extended this PCR.
    pub last_extend_seq: Option<u32>,
    /// If a prefix of the log's events for this PCR replays to the quoted
    /// value: the sequence number of the last event of that prefix (the log
    /// has extra events after the quote). `None` when no prefix matches.
    pub matched_after_seq: Option<u32>,
}

impl PcrMismatch {
    /// One line for people: which PCR and bank, quoted vs replayed, and
    /// the last event that extended it.
    pub fn describe(&self) -> String {
        let m = self;
        let bank = m.bank.lower_name();
        let hx = |v: &Option<Vec<u8>>| v.as_deref().map(hex::encode).unwrap_or_else(|| "-".into());
        let last = m
            .last_extend_seq
            .map(|s| format!("last event extending it: #{s}"))
            .unwrap_or_else(|| "no event extends it".into());
        match m.kind {
            MismatchKind::ValueDiffers => format!(
                "PCR {} bank {bank}: quoted {} but the log replays to {} ({last}{})",
                m.pcr,
                hx(&m.quoted),
                hx(&m.replayed),
                m.matched_after_seq
                    .map(|s| format!("; the quoted value is reached after event #{s}"))
                    .unwrap_or_default()
            ),
            MismatchKind::NotQuoted => format!(
                "PCR {} bank {bank} is required but was not quoted ({last})",
                m.pcr
            ),
            MismatchKind::BankNotInLog => format!(
                "bank {bank} is quoted (PCR {}) but the log has no complete {bank} digests",
                m.pcr
            ),
        }
    }
}

/// Result of a successful [`compare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompareReport {
    /// (bank, PCR) pairs that were compared and matched.
    pub checked: Vec<(HashAlg, u32)>,
    /// Names of quirks that had to be applied (empty when none).
    pub quirks_applied: Vec<&'static str>,
}

/// A documented firmware quirk that may explain a replay mismatch.
///
/// A quirk is only considered when the caller passes it to [`compare`],
/// only for a PCR that otherwise mismatches, and only accepted if the
/// adjusted replay equals the quoted value exactly.
#[derive(Debug, Clone, Copy)]
pub struct Quirk {
    /// Short identifier (reported in [`CompareReport::quirks_applied`]).
    pub name: &'static str,
    /// What goes wrong in the firmware / OS.
    pub description: &'static str,
    /// Whether the quirk can apply to this log, bank and PCR.
    pub detect: fn(&EventLog<'_>, HashAlg, u32) -> bool,
    /// The adjusted replayed value.
    pub effect: fn(HashAlg, &[u8]) -> Vec<u8>,
    /// Human-readable effect.
    pub effect_description: &'static str,
}

const EBS_INVOCATION: &[u8] = b"Exit Boot Services Invocation";
const EBS_SUCCESS: &[u8] = b"Exit Boot Services Returned with Success";

fn detect_missing_ebs(log: &EventLog<'_>, _bank: HashAlg, pcr: u32) -> bool {
    pcr == 5
        && !log.events.iter().any(|e| {
            e.pcr_index == 5
                && e.event_type == types::EV_EFI_ACTION
                && e.data.starts_with(EBS_INVOCATION)
        })
}

const EBS_FAILURE: &[u8] = b"Exit Boot Services Returned with Failure";

fn extend_texts(bank: HashAlg, replayed: &[u8], texts: &[&[u8]]) -> Vec<u8> {
    texts
        .iter()
        .fold(replayed.to_vec(), |v, t| bank.extend(&v, &bank.hash(t)))
}

fn effect_missing_ebs(bank: HashAlg, replayed: &[u8]) -> Vec<u8> {
    extend_texts(bank, replayed, &[EBS_INVOCATION, EBS_SUCCESS])
}

fn effect_missing_ebs_failure(bank: HashAlg, replayed: &[u8]) -> Vec<u8> {
    extend_texts(bank, replayed, &[EBS_INVOCATION, EBS_FAILURE])
}

fn effect_missing_ebs_failure_success(bank: HashAlg, replayed: &[u8]) -> Vec<u8> {
    extend_texts(bank, replayed, &[EBS_INVOCATION, EBS_FAILURE, EBS_SUCCESS])
}

/// Quirk: the log lacks the two `EV_EFI_ACTION` ExitBootServices events
/// that firmware extends into PCR 5 after the OS loader read the log
/// (reported by go-attestation users; not observed in the vectors here).
pub const QUIRK_MISSING_EXIT_BOOT_SERVICES: Quirk = Quirk {
    name: "missing-exit-boot-services",
    description: "Firmware extends PCR 5 with EV_EFI_ACTION \"Exit Boot Services Invocation\" and \"Exit Boot Services Returned with Success\" after the log was handed to the OS, so the log the OS reports lacks them",
    detect: detect_missing_ebs,
    effect: effect_missing_ebs,
    effect_description: "PCR 5 replay is additionally extended with H(\"Exit Boot Services Invocation\") and H(\"Exit Boot Services Returned with Success\")",
};

/// Quirk: as [`QUIRK_MISSING_EXIT_BOOT_SERVICES`], but the firmware's
/// first ExitBootServices call failed: "Invocation" then "Returned with
/// Failure" (go-attestation's "EBS Invocation + Failure" workaround).
pub const QUIRK_MISSING_EXIT_BOOT_SERVICES_FAILURE: Quirk = Quirk {
    name: "missing-exit-boot-services-failure",
    description: "As missing-exit-boot-services, but ExitBootServices failed: the unlogged PCR 5 events are \"Exit Boot Services Invocation\" and \"Exit Boot Services Returned with Failure\"",
    detect: detect_missing_ebs,
    effect: effect_missing_ebs_failure,
    effect_description: "PCR 5 replay is additionally extended with H(\"Exit Boot Services Invocation\") and H(\"Exit Boot Services Returned with Failure\")",
};

/// Quirk: as [`QUIRK_MISSING_EXIT_BOOT_SERVICES`], but ExitBootServices
/// failed once and was retried successfully (go-attestation's "EBS
/// Invocation + Failure + Success" workaround).
pub const QUIRK_MISSING_EXIT_BOOT_SERVICES_FAILURE_SUCCESS: Quirk = Quirk {
    name: "missing-exit-boot-services-failure-success",
    description: "As missing-exit-boot-services, but ExitBootServices failed once and was retried: the unlogged PCR 5 events are \"Exit Boot Services Invocation\", \"Exit Boot Services Returned with Failure\" and \"Exit Boot Services Returned with Success\"",
    detect: detect_missing_ebs,
    effect: effect_missing_ebs_failure_success,
    effect_description: "PCR 5 replay is additionally extended with H(\"Exit Boot Services Invocation\"), H(\"Exit Boot Services Returned with Failure\") and H(\"Exit Boot Services Returned with Success\")",
};

/// Every quirk Aver knows. Pass a subset to [`compare`] to enable them.
///
/// | Quirk | Source | Effect |
/// |---|---|---|
/// | [`QUIRK_MISSING_EXIT_BOOT_SERVICES`] | go-attestation "EBS Invocation + Success" | PCR 5 + Invocation, Success |
/// | [`QUIRK_MISSING_EXIT_BOOT_SERVICES_FAILURE`] | go-attestation "EBS Invocation + Failure" | PCR 5 + Invocation, Failure |
/// | [`QUIRK_MISSING_EXIT_BOOT_SERVICES_FAILURE_SUCCESS`] | go-attestation "EBS Invocation + Failure + Success" | PCR 5 + Invocation, Failure, Success |
///
/// Each applies only to a PCR 5 that otherwise mismatches, only when the
/// log has no "Exit Boot Services Invocation" event, and only if the
/// result equals the quoted value exactly. Parser-level tolerances are
/// not quirks: they are always on and listed in [`crate::eventlog`].
pub const KNOWN_QUIRKS: &[Quirk] = &[
    QUIRK_MISSING_EXIT_BOOT_SERVICES,
    QUIRK_MISSING_EXIT_BOOT_SERVICES_FAILURE,
    QUIRK_MISSING_EXIT_BOOT_SERVICES_FAILURE_SUCCESS,
];

fn matched_prefix(log: &EventLog<'_>, bank: HashAlg, pcr: u32, quoted: &[u8]) -> Option<u32> {
    let mut v = reset_value(bank, pcr);
    let mut extended = false;
    let mut found = None;
    for ev in &log.events {
        if ev.pcr_index != pcr {
            continue;
        }
        if ev.event_type == types::EV_NO_ACTION {
            if let Some(loc) = ev.startup_locality() {
                v = locality_value(bank, loc);
            }
            continue;
        }
        if is_hcrtm(ev) && !extended {
            v = locality_value(bank, HCRTM_LOCALITY);
        }
        let d = ev.digest(bank)?;
        v = bank.extend(&v, d);
        extended = true;
        if v == quoted {
            found = Some(ev.seq);
        }
    }
    found
}

/// Compares quoted PCR values against a replay.
///
/// Compared set, per quoted bank: with `required_mask = Some(m)`, every PCR
/// whose bit is set in `m` (a masked PCR missing from `quoted` is a
/// [`MismatchKind::NotQuoted`] mismatch, and a quoted bank absent from the
/// log a [`MismatchKind::BankNotInLog`]); with `None`, every quoted PCR that
/// the log touches. Banks and PCRs are visited in ascending order; the
/// first mismatch is returned. `quirks` are tried on a mismatching PCR.
pub fn compare(
    log: &EventLog<'_>,
    replay: &Replay,
    quoted: &PcrValues,
    required_mask: Option<u32>,
    quirks: &[Quirk],
) -> Result<CompareReport, Box<PcrMismatch>> {
    let touched = replay.touched();
    let mut checked = Vec::new();
    let mut quirks_applied = Vec::new();
    for (&bank, qvals) in quoted {
        let pcrs: Vec<u32> = match required_mask {
            Some(m) => (0..PCR_COUNT).filter(|p| m & (1 << p) != 0).collect(),
            None => qvals
                .keys()
                .copied()
                .filter(|p| touched.contains(p))
                .collect(),
        };
        if pcrs.is_empty() {
            continue;
        }
        let Some(rbank) = replay.banks.get(&bank) else {
            let pcr = pcrs.first().copied().unwrap_or(0);
            return Err(Box::new(PcrMismatch {
                pcr,
                bank,
                kind: MismatchKind::BankNotInLog,
                quoted: qvals.get(&pcr).cloned(),
                replayed: None,
                last_extend_seq: None,
                matched_after_seq: None,
            }));
        };
        for pcr in pcrs {
            let replayed = rbank.get(&pcr).cloned();
            let Some(q) = qvals.get(&pcr) else {
                return Err(Box::new(PcrMismatch {
                    pcr,
                    bank,
                    kind: MismatchKind::NotQuoted,
                    quoted: None,
                    replayed,
                    last_extend_seq: replay.last_extend.get(&pcr).copied(),
                    matched_after_seq: None,
                }));
            };
            let r = replayed.clone().unwrap_or_default();
            if &r == q {
                checked.push((bank, pcr));
                continue;
            }
            if let Some(quirk) = quirks
                .iter()
                .find(|qk| (qk.detect)(log, bank, pcr) && &(qk.effect)(bank, &r) == q)
            {
                if !quirks_applied.contains(&quirk.name) {
                    quirks_applied.push(quirk.name);
                }
                checked.push((bank, pcr));
                continue;
            }
            return Err(Box::new(PcrMismatch {
                pcr,
                bank,
                kind: MismatchKind::ValueDiffers,
                quoted: Some(q.clone()),
                replayed,
                last_extend_seq: replay.last_extend.get(&pcr).copied(),
                matched_after_seq: matched_prefix(log, bank, pcr, q),
            }));
        }
    }
    Ok(CompareReport {
        checked,
        quirks_applied,
    })
}
