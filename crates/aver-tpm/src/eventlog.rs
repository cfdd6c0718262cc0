//! TCG PC Client event logs (TCG PC Client Platform Firmware Profile).
//!
//! Two formats are accepted:
//! * **legacy SHA-1**: a sequence of `TCG_PCR_EVENT` (pcrIndex, eventType,
//!   SHA-1 digest, eventSize, event), all little-endian;
//! * **crypto-agile**: a first `TCG_PCR_EVENT` of type `EV_NO_ACTION` holding
//!   the `Spec ID Event03` structure (algorithm ids and digest sizes), then
//!   `TCG_PCR_EVENT2` records with a `TPML_DIGEST_VALUES`. Digests of
//!   algorithms Aver does not know (e.g. SM3) are skipped using the size the
//!   Spec ID event declares.
//!
//! Caps (exceeding any is an error, never a silent truncation):
//! [`MAX_EVENTS`] events, [`MAX_SPEC_ALGORITHMS`] algorithms in the Spec ID
//! event, [`MAX_EVENT_DIGESTS`] digests in one event, [`MAX_DIGEST_SIZE`]
//! bytes per digest, [`MAX_EVENT_DATA`] bytes of event data, PCR indices
//! 0–23 ([`MAX_PCR_INDEX`]) on every event that is extended. Memory use is
//! therefore bounded by a small constant times the input length.
//!
//! A parsed [`EventLog`] borrows from the input: an event's digests are
//! held inline ([`EventDigests`]) as slices of it, and its data is one, so
//! parsing allocates nothing per event. With the events filled in place
//! (see `read_into`) that took parse + replay of keylime's 100-event
//! `mb_log.bin` from 18.5 µs to 14.8 µs (BENCHMARKS.md, "Event log without
//! per-event allocation").
//!
//! ## Real-world tolerances
//!
//! Firmware and OS loaders write logs that bend the specification. Each
//! deviation Aver knows of is decided here, explicitly; the replay-side
//! rules (StartupLocality, H-CRTM, ExitBootServices) are in
//! [`mod@crate::replay`]. The reference for "what real logs do" is
//! go-attestation's parser and replay (`attest/eventlog.go`,
//! `attest/eventlog_workarounds.go`, `attest/secureboot.go`) and
//! tpm2-tools' `lib/tpm2_eventlog.c`. A tolerance is only granted when it
//! cannot change what the replay proves: the replayed PCRs must still equal
//! the quoted ones, and only `pcrIndex` and the digests are bound by that
//! comparison (the event type and data are not; see the claims module).
//!
//! | Deviation | Decision | Why |
//! |---|---|---|
//! | `EV_NO_ACTION` event naming a PCR outside 0–23 (Windows/WBCL logs use `0xFFFFFFFF`, e.g. go-attestation's `option_rom_eventlog`) | **accepted** in both formats, kept in [`EventLog::events`], never extended | `EV_NO_ACTION` events are never extended (PFP), so their PCR index has no meaning; go-attestation accepts them. Their data is unbound, like that of every `EV_NO_ACTION` record. |
//! | Extended event (any other type) naming a PCR outside 0–23 | **rejected**: [`EventLogError::PcrIndexOutOfRange`] naming the event, its offset and type | The replay would have to extend a PCR a PC Client TPM does not have; such input is not an event log (e.g. keylime's `-bogus` file). |
//! | `EV_NO_ACTION` digest not all zero (the same Windows log) | **accepted**, digest ignored | Never extended. |
//! | Spec ID event with a PCR index other than 0 or a non-zero digest | **accepted** as crypto-agile (tpm2-tools rejects, go-attestation accepts) | The `Spec ID Event03` signature unambiguously selects the format and the event is never extended; reading the following `TCG_PCR_EVENT2` records as legacy ones would only produce garbage. |
//! | Spec ID `specVersionMajor/Minor/Errata` other than 2.0.0 | **accepted**, reported in [`SpecIdEvent`] (go-attestation requires 2.0) | The layout is fixed by the signature; later PFP revisions change errata but not the structure. |
//! | First event `EV_NO_ACTION` without the `Spec ID Event03` signature (e.g. `StartupLocality` first, go-attestation's `short_no_action_eventlog`, or TPM 1.2's `Spec ID Event00`) | **legacy** SHA-1 log | Only `Spec ID Event03` announces the crypto-agile format. |
//! | Spec ID `eventSize` excluding `vendorInfo` (tpm2-tools' `specid-vendordata.bin`) | **accepted** when the whole `vendorInfo` follows and the Spec ID event then parses exactly; the vendor bytes are folded into the event data | A known tpm2-tools fixture; the exact re-parse keeps it unambiguous. |
//! | Algorithm in the Spec ID list that Aver cannot hash (SM3_256, …) | **accepted**: its digests are skipped by the declared size and its bank is not replayed (go-attestation rejects such logs) | The declared size is all that is needed to stay in sync; the other banks remain verifiable. |
//! | Event with **fewer** digests than the Spec ID lists | **accepted**; a bank missing from any extended event is not replayed ([`crate::replay::Replay::incomplete_banks`]) | Seen in real logs (tpm2-tools' `event-uefivar.bin`); a quote over that bank then fails as `BankNotInLog` instead of silently trusting a partial replay. |
//! | Event with **more** digests than the Spec ID lists, the **same algorithm twice**, or an algorithm not in the Spec ID list | **rejected** (`TPML_DIGEST_VALUES.count` / `TPMT_HA.hashAlg` error naming the event) | A TPM extends each bank once per event; two digests for one bank would let two verifiers replay different values. |
//! | Event with more than [`MAX_EVENT_DIGESTS`] (5) digests (possible only when the Spec ID event lists more than 5 algorithms) | **rejected** (`TPML_DIGEST_VALUES.count` exceeds the cap, naming the event) | An event holds its digests inline; the EFI TCG2 protocol firmware logs through knows five hash algorithms, and dropping digests would replay less than the log says. |
//! | Zero-size event data (`eventSize` 0) | **accepted** in both formats (go-attestation since 2021/2023) | The digest is what is extended; empty data is legal. |
//! | Zero bytes after the last event (log buffer larger than the log) | **accepted**: parsing stops at the first event that would start in an all-zero tail; the count is [`EventLog::trailing_zero_bytes`]. An input of only zero bytes is [`EventLogError::Empty`] | Firmware and OS loaders hand over fixed-size, zero-filled log areas. Read as records, the tail would be `EV_PREBOOT_CERT` events on PCR 0 with no (crypto-agile) or an all-zero (legacy) digest, which firmware does not log. Dropping it gives a forger nothing (they could send the log without it), and if such a record had really been extended the replay would mismatch the quote. A log cut inside an event is still an error. |
//! | Padding with other bytes (TDX CCEL areas are `0xFF`-filled) | **rejected** by [`parse_event_log`] (the `0xFF…` record is an extended event naming PCR `0xFFFFFFFF`); [`parse_event_log_padded`] takes the padding byte as an argument, and the CCEL reader ([`crate::ccel`]) uses it with the byte its area is filled with | Not seen in TPM logs. The rule is the zero-tail rule with another byte: a record cannot consist of `0xFF` bytes only (its PCR index would be `0xFFFFFFFF` on an extended event), so cutting an all-`0xFF` tail is as unambiguous as cutting an all-zero one. |
//! | `EV_SEPARATOR` data other than `00000000` (Windows logs put `"WBCL"` separators on PCRs 12–14) | **accepted**; replay uses the digests only. The `separatorError` claim only considers PCRs 0–7 | PFP separators are on PCRs 0–7; the OS-defined ones are not error markers. |
//! | EFI event data that does not decode (shim's `EV_EFI_VARIABLE_AUTHORITY` with a stray trailing byte, SbatLevel / MokListTrusted authority data, 32-bit `UINTN` image-load events) | **accepted**; decoding is best-effort ([`decode_event`] gives [`EventData::Raw`] or ignores trailing bytes) and never affects parsing or replay | Event data is unbound unless its digest matches it ([`Event::data_matches_digests`]); claims that depend on data check that. |
//! | `EV_EFI_ACTION` "UEFI Debug Mode" / "DMA Protection Disabled" on PCR 7 | **accepted**, listed in the `bootSummary.efiActions` claim (go-attestation's Secure Boot check fails on the first) | Whether a debugger or disabled DMA protection is acceptable is a policy decision; the text is bound because the digest of an `EV_EFI_ACTION` is H(text). |
//! | ExitBootServices events missing from PCR 5 (the log was read before they were extended) | **replay quirk**, applied only when the caller passes it ([`crate::replay::KNOWN_QUIRKS`]) | It changes a replayed value, so it must be opted into and is reported. |
//! | Unknown event types | **accepted** and extended like any other event | The digest is what the TPM extended, whatever the type says. |

use crate::alg::HashAlg;
use crate::reader::{ParseError, Reader};
use serde::Serialize;
use thiserror::Error;

/// Maximum number of events in one log.
pub const MAX_EVENTS: usize = 100_000;
/// Maximum number of algorithms in the Spec ID event.
pub const MAX_SPEC_ALGORITHMS: u32 = 16;
/// Maximum digest size accepted for any algorithm (SHA-512 = 64).
pub const MAX_DIGEST_SIZE: u16 = 128;
/// Maximum size of one event's data.
pub const MAX_EVENT_DATA: u32 = 16 * 1024 * 1024;
/// Highest PCR index an extended event may name (PC Client TPMs have
/// PCRs 0–23). `EV_NO_ACTION` events, which are never extended, may name
/// any index.
pub const MAX_PCR_INDEX: u32 = 23;
/// Maximum entries decoded from a GPT event or handoff-table event.
pub const MAX_DECODED_ENTRIES: u64 = 1024;

/// Event type values (TCG PC Client PFP, "Events").
pub mod types {
    #![allow(missing_docs)]
    pub const EV_PREBOOT_CERT: u32 = 0x0;
    pub const EV_POST_CODE: u32 = 0x1;
    pub const EV_UNUSED: u32 = 0x2;
    pub const EV_NO_ACTION: u32 = 0x3;
    pub const EV_SEPARATOR: u32 = 0x4;
    pub const EV_ACTION: u32 = 0x5;
    pub const EV_EVENT_TAG: u32 = 0x6;
    pub const EV_S_CRTM_CONTENTS: u32 = 0x7;
    pub const EV_S_CRTM_VERSION: u32 = 0x8;
    pub const EV_CPU_MICROCODE: u32 = 0x9;
    pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0xA;
    pub const EV_TABLE_OF_DEVICES: u32 = 0xB;
    pub const EV_COMPACT_HASH: u32 = 0xC;
    pub const EV_IPL: u32 = 0xD;
    pub const EV_IPL_PARTITION_DATA: u32 = 0xE;
    pub const EV_NONHOST_CODE: u32 = 0xF;
    pub const EV_NONHOST_CONFIG: u32 = 0x10;
    pub const EV_NONHOST_INFO: u32 = 0x11;
    pub const EV_OMIT_BOOT_DEVICE_EVENTS: u32 = 0x12;
    pub const EV_POST_CODE2: u32 = 0x13;
    pub const EV_EFI_EVENT_BASE: u32 = 0x8000_0000;
    pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
    pub const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
    pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
    pub const EV_EFI_BOOT_SERVICES_DRIVER: u32 = 0x8000_0004;
    pub const EV_EFI_RUNTIME_SERVICES_DRIVER: u32 = 0x8000_0005;
    pub const EV_EFI_GPT_EVENT: u32 = 0x8000_0006;
    pub const EV_EFI_ACTION: u32 = 0x8000_0007;
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
    pub const EV_EFI_HANDOFF_TABLES: u32 = 0x8000_0009;
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000A;
    pub const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000B;
    pub const EV_EFI_VARIABLE_BOOT2: u32 = 0x8000_000C;
    pub const EV_EFI_GPT_EVENT2: u32 = 0x8000_000D;
    pub const EV_EFI_HCRTM_EVENT: u32 = 0x8000_0010;
    pub const EV_EFI_VARIABLE_AUTHORITY: u32 = 0x8000_00E0;
    pub const EV_EFI_SPDM_FIRMWARE_BLOB: u32 = 0x8000_00E1;
    pub const EV_EFI_SPDM_FIRMWARE_CONFIG: u32 = 0x8000_00E2;
    pub const EV_EFI_SPDM_DEVICE_POLICY: u32 = 0x8000_00E3;
    pub const EV_EFI_SPDM_DEVICE_AUTHORITY: u32 = 0x8000_00E4;
}

/// Name of an event type (`EV_...`); unknown values give `EV_UNKNOWN_0x...`.
pub fn event_type_name(t: u32) -> String {
    use types::*;
    let s = match t {
        EV_PREBOOT_CERT => "EV_PREBOOT_CERT",
        EV_POST_CODE => "EV_POST_CODE",
        EV_UNUSED => "EV_UNUSED",
        EV_NO_ACTION => "EV_NO_ACTION",
        EV_SEPARATOR => "EV_SEPARATOR",
        EV_ACTION => "EV_ACTION",
        EV_EVENT_TAG => "EV_EVENT_TAG",
        EV_S_CRTM_CONTENTS => "EV_S_CRTM_CONTENTS",
        EV_S_CRTM_VERSION => "EV_S_CRTM_VERSION",
        EV_CPU_MICROCODE => "EV_CPU_MICROCODE",
        EV_PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
        EV_TABLE_OF_DEVICES => "EV_TABLE_OF_DEVICES",
        EV_COMPACT_HASH => "EV_COMPACT_HASH",
        EV_IPL => "EV_IPL",
        EV_IPL_PARTITION_DATA => "EV_IPL_PARTITION_DATA",
        EV_NONHOST_CODE => "EV_NONHOST_CODE",
        EV_NONHOST_CONFIG => "EV_NONHOST_CONFIG",
        EV_NONHOST_INFO => "EV_NONHOST_INFO",
        EV_OMIT_BOOT_DEVICE_EVENTS => "EV_OMIT_BOOT_DEVICE_EVENTS",
        EV_POST_CODE2 => "EV_POST_CODE2",
        EV_EFI_EVENT_BASE => "EV_EFI_EVENT_BASE",
        EV_EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        EV_EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
        EV_EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
        EV_EFI_BOOT_SERVICES_DRIVER => "EV_EFI_BOOT_SERVICES_DRIVER",
        EV_EFI_RUNTIME_SERVICES_DRIVER => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        EV_EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
        EV_EFI_ACTION => "EV_EFI_ACTION",
        EV_EFI_PLATFORM_FIRMWARE_BLOB => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        EV_EFI_HANDOFF_TABLES => "EV_EFI_HANDOFF_TABLES",
        EV_EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        EV_EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
        EV_EFI_VARIABLE_BOOT2 => "EV_EFI_VARIABLE_BOOT2",
        EV_EFI_GPT_EVENT2 => "EV_EFI_GPT_EVENT2",
        EV_EFI_HCRTM_EVENT => "EV_EFI_HCRTM_EVENT",
        EV_EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
        EV_EFI_SPDM_FIRMWARE_BLOB => "EV_EFI_SPDM_FIRMWARE_BLOB",
        EV_EFI_SPDM_FIRMWARE_CONFIG => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        EV_EFI_SPDM_DEVICE_POLICY => "EV_EFI_SPDM_DEVICE_POLICY",
        EV_EFI_SPDM_DEVICE_AUTHORITY => "EV_EFI_SPDM_DEVICE_AUTHORITY",
        other => return format!("EV_UNKNOWN_0x{other:08X}"),
    };
    s.to_string()
}

/// Error from [`parse_event_log`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventLogError {
    /// The input is empty or consists of padding bytes only (an unused,
    /// zero-filled log area; `0xFF`-filled for a CCEL area).
    #[error("event log is empty (no bytes, or only padding bytes)")]
    Empty,
    /// A structural problem at event number `seq`.
    #[error("event {seq} (offset {offset}): {source}")]
    Malformed {
        /// Event sequence number (0 = first record).
        seq: usize,
        /// Byte offset of the start of that event.
        offset: usize,
        /// Underlying error.
        source: ParseError,
    },
    /// An event that would be extended names a PCR outside 0–23: not a
    /// PC Client event log. (`EV_NO_ACTION` events may name any PCR.)
    #[error(
        "event {seq} (offset {offset}, {}) names PCR {pcr}: not a TCG PC Client event log (only EV_NO_ACTION events, which are never extended, may name a PCR outside 0-{MAX_PCR_INDEX})",
        event_type_name(*event_type)
    )]
    PcrIndexOutOfRange {
        /// Event sequence number.
        seq: usize,
        /// Byte offset.
        offset: usize,
        /// PCR index found.
        pcr: u32,
        /// Event type of that event.
        event_type: u32,
    },
    /// More than [`MAX_EVENTS`] events.
    #[error("event log has more than {MAX_EVENTS} events")]
    TooManyEvents,
}

/// Format of a parsed log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LogFormat {
    /// TCG_PCR_EVENT records only (SHA-1).
    LegacySha1,
    /// Spec ID Event03 header then TCG_PCR_EVENT2 records.
    CryptoAgile,
}

/// One algorithm entry of the Spec ID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpecAlgorithm {
    /// TPM_ALG_ID.
    pub algorithm_id: u16,
    /// Digest size in bytes.
    pub digest_size: u16,
}

/// TCG_EfiSpecIDEvent ("Spec ID Event03").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecIdEvent {
    /// Platform class (0 = client, 1 = server).
    pub platform_class: u32,
    /// Spec version minor.
    pub spec_version_minor: u8,
    /// Spec version major.
    pub spec_version_major: u8,
    /// Spec errata.
    pub spec_errata: u8,
    /// UINTN size (1 = 32-bit, 2 = 64-bit).
    pub uintn_size: u8,
    /// Algorithms and their digest sizes, in log order.
    pub algorithms: Vec<SpecAlgorithm>,
    /// Vendor information bytes.
    #[serde(serialize_with = "crate::claims::ser_hex")]
    pub vendor_info: Vec<u8>,
}

/// Most digests one event may hold: five, the hash algorithms the EFI TCG2
/// protocol can log (`EFI_TCG2_BOOT_HASH_ALG_*`: SHA-1, SHA-256, SHA-384,
/// SHA-512, SM3-256), firmware writing one digest per active PCR bank. An
/// event's digests are for distinct algorithms of the Spec ID list, which
/// may name up to [`MAX_SPEC_ALGORITHMS`]; an event with more than five is
/// rejected (`TPML_DIGEST_VALUES.count` exceeds the cap), never truncated.
///
/// Why five and not the eight hash algorithms of the TCG Algorithm Registry
/// (the three SHA3 as well): the digests are inline in every [`Event`], and
/// with five an empty event is small enough to be written in place with a
/// few stores, where with eight it was copied in with a `memcpy` call per
/// event: 0.4 µs of the 15 µs `parse_event_log` + `replay` of a 100-event
/// log (BENCHMARKS.md, "Event log without per-event allocation"). No
/// firmware can log a sixth bank through the TCG2 protocol; raising the
/// cap is a one-line change if one appears.
pub const MAX_EVENT_DIGESTS: usize = 5;

/// One digest of an event, borrowed from the log's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventDigest<'a> {
    /// TPM_ALG_ID.
    pub algorithm_id: u16,
    /// Digest bytes (of the size the Spec ID event declares; 20 in a
    /// legacy log).
    #[serde(serialize_with = "crate::claims::ser_hex")]
    pub digest: &'a [u8],
}

/// An event's digests, in log order: at most [`MAX_EVENT_DIGESTS`], held
/// inline (no allocation per event). Dereferences to a slice, so
/// `ev.digests.iter()`, `.len()` and `[i]` work as on a `Vec`.
///
/// Why inline and borrowed: the digests used to be a `Vec<EventDigest>`
/// of `Vec<u8>`s, two or more allocations and copies per event; with the
/// event data's copy (and the allocator's work to free it all) they were
/// about a third of `parse_event_log` + `replay` on a 100-event log under
/// perf, and removing them took it from 18.5 µs to 16.3 µs (BENCHMARKS.md,
/// "Event log without per-event allocation"). A digest is a slice of the input instead of an
/// inline copy (such as [`crate::alg::Digest`]): nothing is copied, an entry
/// is 24 bytes rather than 66 (so that an empty [`Event`] is cheap to
/// write, see [`MAX_EVENT_DIGESTS`]), and digests of algorithms Aver does
/// not compute, up to [`MAX_DIGEST_SIZE`] bytes, fit as well as the known
/// ones.
#[derive(Clone, Copy)]
pub struct EventDigests<'a> {
    items: [EventDigest<'a>; MAX_EVENT_DIGESTS],
    len: u8,
}

const NO_DIGEST: EventDigest<'static> = EventDigest {
    algorithm_id: 0,
    digest: &[],
};

impl<'a> EventDigests<'a> {
    /// No digests.
    pub const fn new() -> EventDigests<'a> {
        EventDigests {
            items: [NO_DIGEST; MAX_EVENT_DIGESTS],
            len: 0,
        }
    }

    /// The digests of `digests`; `None` when there are more than
    /// [`MAX_EVENT_DIGESTS`].
    pub fn from_slice(digests: &[EventDigest<'a>]) -> Option<EventDigests<'a>> {
        let mut out = EventDigests::new();
        for d in digests {
            out.push(*d).ok()?;
        }
        Some(out)
    }

    /// Appends a digest; gives it back when [`MAX_EVENT_DIGESTS`] are
    /// already held.
    pub fn push(&mut self, digest: EventDigest<'a>) -> Result<(), EventDigest<'a>> {
        match self.items.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = digest;
                self.len += 1;
                Ok(())
            }
            None => Err(digest),
        }
    }

    /// The digests held.
    pub fn as_slice(&self) -> &[EventDigest<'a>] {
        self.items.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The digests held, mutably (to rewrite a digest in place).
    pub fn as_mut_slice(&mut self) -> &mut [EventDigest<'a>] {
        self.items
            .get_mut(..usize::from(self.len))
            .unwrap_or_default()
    }
}

impl Default for EventDigests<'_> {
    fn default() -> Self {
        EventDigests::new()
    }
}

impl<'a> std::ops::Deref for EventDigests<'a> {
    type Target = [EventDigest<'a>];
    fn deref(&self) -> &[EventDigest<'a>] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for EventDigests<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.as_mut_slice()
    }
}

impl<'a, 'b> IntoIterator for &'b EventDigests<'a> {
    type Item = &'b EventDigest<'a>;
    type IntoIter = std::slice::Iter<'b, EventDigest<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl std::fmt::Debug for EventDigests<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for EventDigests<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for EventDigests<'_> {}

impl Serialize for EventDigests<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.as_slice())
    }
}

/// One event (TCG_PCR_EVENT or TCG_PCR_EVENT2), borrowing its digests
/// and data from the bytes [`parse_event_log`] was given: parsing an event
/// allocates and copies nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event<'a> {
    /// Position in the log, 0 = first record (the Spec ID event in a
    /// crypto-agile log).
    pub seq: u32,
    /// PCR index.
    pub pcr_index: u32,
    /// Event type.
    pub event_type: u32,
    /// Digests, in log order.
    pub digests: EventDigests<'a>,
    /// Event data.
    #[serde(serialize_with = "crate::claims::ser_hex")]
    pub data: &'a [u8],
}

impl<'a> Event<'a> {
    /// Digest for a bank, if present.
    pub fn digest(&self, alg: HashAlg) -> Option<&'a [u8]> {
        let id = alg.tpm_id();
        self.digests
            .iter()
            .find(|d| d.algorithm_id == id)
            .map(|d| d.digest)
    }

    /// `EV_...` name of the type.
    pub fn type_name(&self) -> String {
        event_type_name(self.event_type)
    }

    /// True when every digest Aver can compute equals H(event data): the
    /// event data is then bound to what was extended. For event types
    /// whose digest covers something else (images, GPT) this is false.
    pub fn data_matches_digests(&self) -> bool {
        let mut any = false;
        for d in &self.digests {
            if let Some(alg) = HashAlg::from_tpm(d.algorithm_id) {
                if alg.digest_parts(&[self.data]).as_ref() != d.digest {
                    return false;
                }
                any = true;
            }
        }
        any
    }

    /// The locality of a `StartupLocality` event ([`EventData::StartupLocality`]
    /// without decoding anything else); `None` for every other event.
    pub fn startup_locality(&self) -> Option<u8> {
        if self.event_type == types::EV_NO_ACTION {
            startup_locality(self.pcr_index, self.data)
        } else {
            None
        }
    }

    /// Decodes the event data according to the event type.
    pub fn decode(&self) -> EventData {
        decode_event(self.pcr_index, self.event_type, self.data)
    }
}

/// A parsed event log, borrowing its events' digests and data from the
/// bytes it was parsed from (see [`Event`]). Whoever must keep what a log
/// says beyond that buffer keeps what it derived from it (the CCEL claims
/// are built while the request is at hand, for instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLog<'a> {
    /// Format.
    pub format: LogFormat,
    /// Spec ID header (crypto-agile only).
    pub spec_id: Option<SpecIdEvent>,
    /// All events including the Spec ID record.
    pub events: Vec<Event<'a>>,
    /// Number of padding bytes after the last event (zero bytes, or the
    /// byte given to [`parse_event_log_padded`]; see the tolerance table in
    /// the module docs); 0 for an exact log.
    pub trailing_zero_bytes: usize,
}

impl EventLog<'_> {
    /// Banks the log carries digests for and Aver can compute.
    pub fn banks(&self) -> Vec<HashAlg> {
        match &self.spec_id {
            None => vec![HashAlg::Sha1],
            Some(s) => {
                let mut v: Vec<HashAlg> = s
                    .algorithms
                    .iter()
                    .filter_map(|a| HashAlg::from_tpm(a.algorithm_id))
                    .collect();
                v.sort();
                v.dedup();
                v
            }
        }
    }
}

const SPEC_ID_03: &[u8; 16] = b"Spec ID Event03\0";
/// Bytes per event assumed when reserving room for a log's events.
const EVENT_BYTES_GUESS: usize = 128;
const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// The locality of an `EV_NO_ACTION` event's data when it is a
/// `StartupLocality` event: on PCR 0, exactly the signature and one byte.
fn startup_locality(pcr_index: u32, data: &[u8]) -> Option<u8> {
    match data.split_last() {
        Some((&locality, signature)) if pcr_index == 0 && signature == STARTUP_LOCALITY => {
            Some(locality)
        }
        _ => None,
    }
}

fn malformed(seq: usize, offset: usize) -> impl Fn(ParseError) -> EventLogError {
    move |source| EventLogError::Malformed {
        seq,
        offset,
        source,
    }
}

fn read_data<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ParseError> {
    let size = r.u32_le("eventSize")?;
    if size > MAX_EVENT_DATA {
        return Err(ParseError::TooLarge {
            field: "eventSize",
            value: size.into(),
            cap: MAX_EVENT_DATA.into(),
        });
    }
    r.bytes(size as usize, "event data")
}

fn parse_spec_id(data: &[u8]) -> Result<SpecIdEvent, ParseError> {
    let mut r = Reader::new(data);
    r.bytes(16, "SpecID.signature")?;
    let platform_class = r.u32_le("SpecID.platformClass")?;
    let spec_version_minor = r.u8("SpecID.specVersionMinor")?;
    let spec_version_major = r.u8("SpecID.specVersionMajor")?;
    let spec_errata = r.u8("SpecID.specErrata")?;
    let uintn_size = r.u8("SpecID.uintnSize")?;
    let n = r.u32_le("SpecID.numberOfAlgorithms")?;
    if n == 0 || n > MAX_SPEC_ALGORITHMS {
        return Err(ParseError::Invalid {
            field: "SpecID.numberOfAlgorithms",
            detail: format!("{n} (must be 1..={MAX_SPEC_ALGORITHMS})"),
        });
    }
    let mut algorithms = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let algorithm_id = r.u16_le("SpecID.algorithmId")?;
        let digest_size = r.u16_le("SpecID.digestSize")?;
        if digest_size == 0 || digest_size > MAX_DIGEST_SIZE {
            return Err(ParseError::Invalid {
                field: "SpecID.digestSize",
                detail: format!("{digest_size} for algorithm 0x{algorithm_id:04x}"),
            });
        }
        if let Some(alg) = HashAlg::from_tpm(algorithm_id)
            && alg.size() != digest_size as usize
        {
            return Err(ParseError::Invalid {
                field: "SpecID.digestSize",
                detail: format!(
                    "{digest_size} for {} (expected {})",
                    alg.lower_name(),
                    alg.size()
                ),
            });
        }
        if algorithms
            .iter()
            .any(|a: &SpecAlgorithm| a.algorithm_id == algorithm_id)
        {
            return Err(ParseError::Invalid {
                field: "SpecID.algorithmId",
                detail: format!("algorithm 0x{algorithm_id:04x} listed twice"),
            });
        }
        algorithms.push(SpecAlgorithm {
            algorithm_id,
            digest_size,
        });
    }
    let vendor_size = r.u8("SpecID.vendorInfoSize")?;
    let vendor_info = r.bytes(vendor_size as usize, "SpecID.vendorInfo")?.to_vec();
    r.finish("SpecID event")?;
    Ok(SpecIdEvent {
        platform_class,
        spec_version_minor,
        spec_version_major,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

/// PCR index rule: an event that will be extended must name PCR 0–23;
/// `EV_NO_ACTION` events are never extended, so any index is accepted
/// (Windows writes `0xFFFFFFFF`).
fn check_pcr(seq: usize, offset: usize, pcr: u32, event_type: u32) -> Result<(), EventLogError> {
    if pcr > MAX_PCR_INDEX && event_type != types::EV_NO_ACTION {
        Err(EventLogError::PcrIndexOutOfRange {
            seq,
            offset,
            pcr,
            event_type,
        })
    } else {
        Ok(())
    }
}

/// Smallest legacy record: pcrIndex, eventType, SHA-1 digest, eventSize.
const MIN_LEGACY_EVENT: usize = 32;
/// Smallest crypto-agile record: pcrIndex, eventType, no digest, eventSize.
const MIN_AGILE_EVENT: usize = 16;

/// Makes room for the next event. The events `Vec` grows geometrically,
/// but never past the number of records of at least `min_record` bytes
/// that can start in the `remaining` bytes before the padding: its memory
/// stays bounded by a small constant times the input length whatever
/// [`MAX_EVENTS`] allows.
fn reserve_event(events: &mut Vec<Event<'_>>, remaining: usize, min_record: usize) {
    if events.len() == events.capacity() {
        let room = remaining.div_ceil(min_record).max(1);
        events.reserve_exact(events.len().clamp(1, room));
    }
}

impl Event<'_> {
    /// An event of sequence number `seq` with nothing read yet.
    const fn empty(seq: usize) -> Self {
        Event {
            seq: seq as u32,
            pcr_index: 0,
            event_type: 0,
            digests: EventDigests::new(),
            data: &[],
        }
    }
}

/// Appends the event of sequence number `events.len()` and has `read` fill
/// it in place.
///
/// Why in place: an [`Event`] is about 160 bytes (its digests are inline),
/// and an event read into a local and then pushed was copied twice; the
/// first copy, reading the digest entries back right after they were
/// written field by field, also stalled on store forwarding (a quarter of
/// the parser's samples under perf). Filling the pushed event instead took
/// 1 µs off `parse_event_log` + `replay` of a 100-event log.
fn read_into<'a>(
    events: &mut Vec<Event<'a>>,
    read: impl FnOnce(&mut Event<'a>) -> Result<(), EventLogError>,
) -> Result<(), EventLogError> {
    events.push(Event::empty(events.len()));
    match events.last_mut() {
        Some(ev) => read(ev),
        None => Ok(()),
    }
}

/// Reads one TCG_PCR_EVENT (legacy / SHA-1 header format) into `ev`.
fn read_legacy_event<'a>(
    r: &mut Reader<'a>,
    seq: usize,
    ev: &mut Event<'a>,
) -> Result<(), EventLogError> {
    let offset = r.offset();
    let m = malformed(seq, offset);
    ev.pcr_index = r.u32_le("pcrIndex").map_err(&m)?;
    ev.event_type = r.u32_le("eventType").map_err(&m)?;
    check_pcr(seq, offset, ev.pcr_index, ev.event_type)?;
    let digest = r.bytes(20, "SHA-1 digest").map_err(&m)?;
    ev.data = read_data(r).map_err(&m)?;
    // One digest always fits (MAX_EVENT_DIGESTS > 0).
    let _ = ev.digests.push(EventDigest {
        algorithm_id: crate::alg::TPM_ALG_SHA1,
        digest,
    });
    Ok(())
}

/// Reads one TCG_PCR_EVENT2 (crypto-agile format) into `ev`, using the
/// digest sizes the Spec ID event declares.
fn read_agile_event<'a>(
    r: &mut Reader<'a>,
    seq: usize,
    spec: &SpecIdEvent,
    ev: &mut Event<'a>,
) -> Result<(), EventLogError> {
    let offset = r.offset();
    let m = malformed(seq, offset);
    ev.pcr_index = r.u32_le("pcrIndex").map_err(&m)?;
    ev.event_type = r.u32_le("eventType").map_err(&m)?;
    check_pcr(seq, offset, ev.pcr_index, ev.event_type)?;
    let count = r.u32_le("TPML_DIGEST_VALUES.count").map_err(&m)?;
    if count as usize > spec.algorithms.len() {
        return Err(m(ParseError::Invalid {
            field: "TPML_DIGEST_VALUES.count",
            detail: format!(
                "{count} digests but the Spec ID event lists {} algorithms",
                spec.algorithms.len()
            ),
        }));
    }
    // The Spec ID event may list up to MAX_SPEC_ALGORITHMS; an event holds
    // at most MAX_EVENT_DIGESTS. Refused, not truncated.
    if count as usize > MAX_EVENT_DIGESTS {
        return Err(m(ParseError::TooLarge {
            field: "TPML_DIGEST_VALUES.count",
            value: count.into(),
            cap: MAX_EVENT_DIGESTS as u64,
        }));
    }
    let digests = &mut ev.digests;
    for _ in 0..count {
        let algorithm_id = r.u16_le("TPMT_HA.hashAlg").map_err(&m)?;
        let Some(a) = spec
            .algorithms
            .iter()
            .find(|a| a.algorithm_id == algorithm_id)
        else {
            return Err(m(ParseError::Invalid {
                field: "TPMT_HA.hashAlg",
                detail: format!("algorithm 0x{algorithm_id:04x} not in the Spec ID event"),
            }));
        };
        // Two digests for one bank would make the extended value ambiguous.
        if digests.iter().any(|d| d.algorithm_id == algorithm_id) {
            return Err(m(ParseError::Invalid {
                field: "TPMT_HA.hashAlg",
                detail: format!("algorithm 0x{algorithm_id:04x} appears twice in one event"),
            }));
        }
        let digest = r
            .bytes(a.digest_size as usize, "TPMT_HA.digest")
            .map_err(&m)?;
        // count <= MAX_EVENT_DIGESTS (checked above), so this always fits.
        if digests
            .push(EventDigest {
                algorithm_id,
                digest,
            })
            .is_err()
        {
            return Err(m(ParseError::TooLarge {
                field: "TPML_DIGEST_VALUES.count",
                value: count.into(),
                cap: MAX_EVENT_DIGESTS as u64,
            }));
        }
    }
    ev.data = read_data(r).map_err(&m)?;
    Ok(())
}

/// Parses a TCG PC Client event log (legacy SHA-1 or crypto-agile).
///
/// The format is crypto-agile when the first record is an `EV_NO_ACTION`
/// event whose data starts with `Spec ID Event03\0`, legacy SHA-1
/// otherwise. See the module docs for the caps and for every real-world
/// deviation that is tolerated or rejected.
///
/// The log borrows from `buf`: each event's digests and data are slices of
/// it, so parsing allocates only the events `Vec` (and the Spec ID
/// event's algorithm list), not per event.
pub fn parse_event_log(buf: &[u8]) -> Result<EventLog<'_>, EventLogError> {
    parse_event_log_padded(buf, 0)
}

/// [`parse_event_log`] for a log area filled with `padding` after its last
/// event (TDX CCEL areas are filled with `0xFF`): parsing stops at the
/// first event that would start in a tail made only of `padding` bytes,
/// exactly as [`parse_event_log`] does for zero bytes (`padding` 0 is
/// [`parse_event_log`]). A log cut inside an event is still an error, and
/// a tail of any other bytes is read as events.
pub fn parse_event_log_padded(buf: &[u8], padding: u8) -> Result<EventLog<'_>, EventLogError> {
    // Everything from `content_end` on is padding. Computed once, so that
    // the padding check before each event is O(1) (scanning the tail at
    // every event would be quadratic on a log of many small events).
    let content_end = buf.iter().rposition(|&b| b != padding).map_or(0, |i| i + 1);
    if content_end == 0 {
        return Err(EventLogError::Empty);
    }
    let mut r = Reader::new(buf);
    let mut first = Event::empty(0);
    read_legacy_event(&mut r, 0, &mut first)?;
    // The signature alone selects the format: the Spec ID record is an
    // EV_NO_ACTION event, so its PCR index and digest are not checked
    // (see the tolerance table).
    let is_agile = first.event_type == types::EV_NO_ACTION && first.data.starts_with(SPEC_ID_03);
    // Room for the events of a typical log up front (real events average
    // a few hundred bytes): one allocation instead of a doubling series. The
    // guess is at most a fraction of the input, and capped; growth beyond
    // it is bounded by what the rest of the input can hold
    // (`reserve_event`).
    let mut events = Vec::with_capacity((content_end / EVENT_BYTES_GUESS).min(1024));
    if !is_agile {
        events.push(first);
        while r.offset() < content_end {
            if events.len() >= MAX_EVENTS {
                return Err(EventLogError::TooManyEvents);
            }
            reserve_event(&mut events, content_end - r.offset(), MIN_LEGACY_EVENT);
            let seq = events.len();
            read_into(&mut events, |ev| read_legacy_event(&mut r, seq, ev))?;
        }
        return Ok(EventLog {
            format: LogFormat::LegacySha1,
            spec_id: None,
            events,
            trailing_zero_bytes: r.remaining(),
        });
    }
    let spec = match parse_spec_id(first.data) {
        Ok(s) => s,
        Err(e) => {
            // Tolerance (documented in the module docs): tpm2-tools'
            // `specid-vendordata.bin` fixture declares an eventSize that
            // excludes vendorInfo, which follows the event. Accept it only
            // when the whole vendorInfo is present right after the event
            // and the result then parses exactly. The event data is the
            // last field of the record, so the data and the vendorInfo
            // after it are one slice of `buf`.
            let vendor_size = first.data.last().map_or(0, |&n| usize::from(n));
            let data_start = r.offset().saturating_sub(first.data.len());
            let extended = r
                .rest()
                .get(..vendor_size)
                .filter(|_| vendor_size > 0)
                .and_then(|_| buf.get(data_start..r.offset().saturating_add(vendor_size)));
            match extended.map(|x| (x, parse_spec_id(x))) {
                Some((x, Ok(s))) => {
                    r.bytes(vendor_size, "SpecID.vendorInfo")
                        .map_err(malformed(0, 0))?;
                    first.data = x;
                    s
                }
                _ => return Err(malformed(0, 0)(e)),
            }
        }
    };
    events.push(first);
    while r.offset() < content_end {
        if events.len() >= MAX_EVENTS {
            return Err(EventLogError::TooManyEvents);
        }
        reserve_event(&mut events, content_end - r.offset(), MIN_AGILE_EVENT);
        let seq = events.len();
        read_into(&mut events, |ev| read_agile_event(&mut r, seq, &spec, ev))?;
    }
    Ok(EventLog {
        format: LogFormat::CryptoAgile,
        spec_id: Some(spec),
        events,
        trailing_zero_bytes: r.remaining(),
    })
}

/// UEFI_PARTITION_TABLE_HEADER (the fields Aver reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GptHeader {
    /// "EFI PART" as hex.
    pub signature: String,
    /// Revision.
    pub revision: u32,
    /// Header size.
    pub header_size: u32,
    /// MyLBA.
    pub my_lba: u64,
    /// AlternateLBA.
    pub alternate_lba: u64,
    /// FirstUsableLBA.
    pub first_usable_lba: u64,
    /// LastUsableLBA.
    pub last_usable_lba: u64,
    /// DiskGUID.
    pub disk_guid: String,
    /// PartitionEntryLBA.
    pub partition_entry_lba: u64,
    /// NumberOfPartitionEntries.
    pub number_of_partition_entries: u32,
    /// SizeOfPartitionEntry.
    pub size_of_partition_entry: u32,
}

/// UEFI_PARTITION_ENTRY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GptPartition {
    /// PartitionTypeGUID.
    pub partition_type_guid: String,
    /// UniquePartitionGUID.
    pub unique_partition_guid: String,
    /// StartingLBA.
    pub starting_lba: u64,
    /// EndingLBA.
    pub ending_lba: u64,
    /// Attributes.
    pub attributes: u64,
    /// PartitionName (UTF-16, NULs trimmed).
    pub partition_name: String,
}

/// Decoded event data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    /// Spec ID Event03 header.
    SpecId(SpecIdEvent),
    /// `StartupLocality` EV_NO_ACTION event.
    StartupLocality(u8),
    /// Other EV_NO_ACTION event: its ASCII signature (up to the first NUL).
    NoAction {
        /// Signature text.
        signature: String,
    },
    /// UEFI_VARIABLE_DATA.
    EfiVariable {
        /// VariableName GUID, upper-case with dashes.
        variable_guid: String,
        /// UnicodeName.
        unicode_name: String,
        /// VariableData.
        variable_data: Vec<u8>,
    },
    /// UEFI_IMAGE_LOAD_EVENT.
    ImageLoad {
        /// ImageLocationInMemory.
        location: u64,
        /// ImageLengthInMemory.
        length: u64,
        /// ImageLinkTimeAddress.
        link_time_address: u64,
        /// DevicePath bytes.
        device_path: Vec<u8>,
    },
    /// UEFI_GPT_DATA.
    Gpt {
        /// Header.
        header: GptHeader,
        /// Partitions.
        partitions: Vec<GptPartition>,
    },
    /// EV_SEPARATOR value (0 = normal, 0xFFFFFFFF = error).
    Separator(u32),
    /// Text events: EV_EFI_ACTION, EV_ACTION, EV_IPL, EV_POST_CODE,
    /// EV_S_CRTM_VERSION (UCS-2), EV_OMIT_BOOT_DEVICE_EVENTS.
    Text(String),
    /// UEFI_PLATFORM_FIRMWARE_BLOB.
    FirmwareBlob {
        /// BlobBase.
        base: u64,
        /// BlobLength.
        length: u64,
    },
    /// UEFI_HANDOFF_TABLE_POINTERS: (VendorGuid, VendorTable) pairs.
    HandoffTables(Vec<(String, u64)>),
    /// TCG_PCClientTaggedEvent.
    Tagged {
        /// taggedEventID.
        id: u32,
        /// taggedEventData.
        data: Vec<u8>,
    },
    /// Not decoded (unknown type, or data not in the expected shape).
    Raw,
}

/// Formats an EFI_GUID (mixed-endian) as upper-case `XXXXXXXX-XXXX-...`.
pub fn format_guid(b: &[u8; 16]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

fn read_guid(r: &mut Reader<'_>, what: &'static str) -> Result<String, ParseError> {
    let s = r.bytes(16, what)?;
    let mut g = [0u8; 16];
    g.copy_from_slice(s);
    Ok(format_guid(&g))
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(crate::reader::le16).collect();
    String::from_utf16_lossy(&units)
        .trim_end_matches('\0')
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches('\0')
        .to_string()
}

fn decode_variable(data: &[u8]) -> Result<EventData, ParseError> {
    let mut r = Reader::new(data);
    let variable_guid = read_guid(&mut r, "UEFI_VARIABLE_DATA.VariableName")?;
    let name_len = r.u64_le("UnicodeNameLength")?;
    let data_len = r.u64_le("VariableDataLength")?;
    let name_bytes = name_len
        .checked_mul(2)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(ParseError::TooLarge {
            field: "UnicodeNameLength",
            value: name_len,
            cap: (usize::MAX / 2) as u64,
        })?;
    let unicode_name = utf16(r.bytes(name_bytes, "UnicodeName")?);
    let data_len = usize::try_from(data_len).map_err(|_| ParseError::TooLarge {
        field: "VariableDataLength",
        value: data_len,
        cap: usize::MAX as u64,
    })?;
    let variable_data = r.bytes(data_len, "VariableData")?.to_vec();
    Ok(EventData::EfiVariable {
        variable_guid,
        unicode_name,
        variable_data,
    })
}

fn decode_image(data: &[u8]) -> Result<EventData, ParseError> {
    let mut r = Reader::new(data);
    let location = r.u64_le("ImageLocationInMemory")?;
    let length = r.u64_le("ImageLengthInMemory")?;
    let link_time_address = r.u64_le("ImageLinkTimeAddress")?;
    let dp_len = r.u64_le("LengthOfDevicePath")?;
    let dp_len = usize::try_from(dp_len).map_err(|_| ParseError::TooLarge {
        field: "LengthOfDevicePath",
        value: dp_len,
        cap: usize::MAX as u64,
    })?;
    let device_path = r.bytes(dp_len, "DevicePath")?.to_vec();
    Ok(EventData::ImageLoad {
        location,
        length,
        link_time_address,
        device_path,
    })
}

fn decode_gpt(data: &[u8]) -> Result<EventData, ParseError> {
    let mut r = Reader::new(data);
    let signature = hex::encode(r.bytes(8, "GPT.Signature")?);
    let revision = r.u32_le("GPT.Revision")?;
    let header_size = r.u32_le("GPT.HeaderSize")?;
    let _crc = r.u32_le("GPT.HeaderCRC32")?;
    let _reserved = r.u32_le("GPT.Reserved")?;
    let my_lba = r.u64_le("GPT.MyLBA")?;
    let alternate_lba = r.u64_le("GPT.AlternateLBA")?;
    let first_usable_lba = r.u64_le("GPT.FirstUsableLBA")?;
    let last_usable_lba = r.u64_le("GPT.LastUsableLBA")?;
    let disk_guid = read_guid(&mut r, "GPT.DiskGUID")?;
    let partition_entry_lba = r.u64_le("GPT.PartitionEntryLBA")?;
    let number_of_partition_entries = r.u32_le("GPT.NumberOfPartitionEntries")?;
    let size_of_partition_entry = r.u32_le("GPT.SizeOfPartitionEntry")?;
    let _array_crc = r.u32_le("GPT.PartitionEntryArrayCRC32")?;
    let count = r.u64_le("NumberOfPartitions")?;
    if count > MAX_DECODED_ENTRIES {
        return Err(ParseError::TooLarge {
            field: "NumberOfPartitions",
            value: count,
            cap: MAX_DECODED_ENTRIES,
        });
    }
    if size_of_partition_entry < 128 {
        return Err(ParseError::Invalid {
            field: "GPT.SizeOfPartitionEntry",
            detail: format!("{size_of_partition_entry} < 128"),
        });
    }
    let mut partitions = Vec::new();
    for _ in 0..count {
        let entry = r.bytes(size_of_partition_entry as usize, "UEFI_PARTITION_ENTRY")?;
        let mut e = Reader::new(entry);
        partitions.push(GptPartition {
            partition_type_guid: read_guid(&mut e, "PartitionTypeGUID")?,
            unique_partition_guid: read_guid(&mut e, "UniquePartitionGUID")?,
            starting_lba: e.u64_le("StartingLBA")?,
            ending_lba: e.u64_le("EndingLBA")?,
            attributes: e.u64_le("Attributes")?,
            partition_name: utf16(e.bytes(72, "PartitionName")?),
        });
    }
    Ok(EventData::Gpt {
        header: GptHeader {
            signature,
            revision,
            header_size,
            my_lba,
            alternate_lba,
            first_usable_lba,
            last_usable_lba,
            disk_guid,
            partition_entry_lba,
            number_of_partition_entries,
            size_of_partition_entry,
        },
        partitions,
    })
}

fn decode_handoff(data: &[u8]) -> Result<EventData, ParseError> {
    let mut r = Reader::new(data);
    let count = r.u64_le("NumberOfTables")?;
    if count > MAX_DECODED_ENTRIES {
        return Err(ParseError::TooLarge {
            field: "NumberOfTables",
            value: count,
            cap: MAX_DECODED_ENTRIES,
        });
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let g = read_guid(&mut r, "VendorGuid")?;
        let p = r.u64_le("VendorTable")?;
        out.push((g, p));
    }
    Ok(EventData::HandoffTables(out))
}

/// Decodes event data by type; anything that does not fit gives
/// [`EventData::Raw`] (never an error: the raw bytes stay in the event).
pub fn decode_event(pcr_index: u32, event_type: u32, data: &[u8]) -> EventData {
    use types::*;
    let decoded: Result<EventData, ParseError> = match event_type {
        EV_NO_ACTION => {
            if data.starts_with(SPEC_ID_03) {
                parse_spec_id(data).map(EventData::SpecId)
            } else if let Some(locality) = startup_locality(pcr_index, data) {
                Ok(EventData::StartupLocality(locality))
            } else {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                let sig = data.get(..end.min(32)).unwrap_or(&[]);
                Ok(EventData::NoAction {
                    signature: text(sig),
                })
            }
        }
        EV_EFI_VARIABLE_DRIVER_CONFIG
        | EV_EFI_VARIABLE_BOOT
        | EV_EFI_VARIABLE_BOOT2
        | EV_EFI_VARIABLE_AUTHORITY => decode_variable(data),
        EV_EFI_BOOT_SERVICES_APPLICATION
        | EV_EFI_BOOT_SERVICES_DRIVER
        | EV_EFI_RUNTIME_SERVICES_DRIVER => decode_image(data),
        EV_EFI_GPT_EVENT | EV_EFI_GPT_EVENT2 => decode_gpt(data),
        EV_SEPARATOR if data.len() == 4 => {
            let mut r = Reader::new(data);
            r.u32_le("separator").map(EventData::Separator)
        }
        EV_EFI_ACTION
        | EV_ACTION
        | EV_IPL
        | EV_POST_CODE
        | EV_OMIT_BOOT_DEVICE_EVENTS
        | EV_COMPACT_HASH => {
            if data
                .iter()
                .all(|&b| b == 0 || b.is_ascii_graphic() || b.is_ascii_whitespace())
                && !data.is_empty()
            {
                Ok(EventData::Text(text(data)))
            } else if event_type == EV_POST_CODE && data.len() == 16 {
                let mut r = Reader::new(data);
                Ok(EventData::FirmwareBlob {
                    base: r.u64_le("BlobBase").unwrap_or(0),
                    length: r.u64_le("BlobLength").unwrap_or(0),
                })
            } else {
                Ok(EventData::Raw)
            }
        }
        EV_S_CRTM_VERSION if data.len().is_multiple_of(2) => Ok(EventData::Text(utf16(data))),
        EV_EFI_PLATFORM_FIRMWARE_BLOB if data.len() == 16 => {
            let mut r = Reader::new(data);
            (|| {
                Ok(EventData::FirmwareBlob {
                    base: r.u64_le("BlobBase")?,
                    length: r.u64_le("BlobLength")?,
                })
            })()
        }
        EV_EFI_HANDOFF_TABLES => decode_handoff(data),
        EV_EVENT_TAG => {
            let mut r = Reader::new(data);
            (|| {
                let id = r.u32_le("taggedEventID")?;
                let n = r.u32_le("taggedEventDataSize")?;
                let d = r.bytes(n as usize, "taggedEventData")?;
                Ok(EventData::Tagged {
                    id,
                    data: d.to_vec(),
                })
            })()
        }
        _ => Ok(EventData::Raw),
    };
    decoded.unwrap_or(EventData::Raw)
}
