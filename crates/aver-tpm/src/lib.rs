//! # aver-tpm — TPM 2.0 evidence for Aver
//!
//! Pure Rust, no TPM C library, no I/O. Everything here is a function over
//! bytes the caller already holds.
//!
//! * [`structures`]: TPMS_ATTEST / TPM2B_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC
//!   / TPM2B_PUBLIC, TPML_PCR_SELECTION; object attributes, TPM names,
//!   SPKI DER and JWK export.
//! * [`eventlog`]: TCG PC Client event logs (legacy SHA-1 and crypto-agile),
//!   event-type names, EFI event decoding, and the table of real-world
//!   deviations Aver tolerates or rejects (and why).
//! * [`replay`](mod@replay): per-bank replay (SHA-1/256/384/512) honouring
//!   StartupLocality and H-CRTM; comparison with quoted PCRs reporting the first
//!   mismatch; an explicit firmware-quirk table ([`replay::KNOWN_QUIRKS`],
//!   never applied unless passed in).
//! * [`pcrfile`]: PCR values given next to a quote: tpm2-tools'
//!   serialized PCR file (`tpm2_quote -o`) and a JSON map.
//! * [`quote`]: quote verification (magic, type, AK signature via aws-lc-rs,
//!   extraData challenge, pcrDigest).
//! * [`claims`]: MAA-style `pcrs` / `events` / `secureBootEnabled` claims.
//! * [`ccel`]: Intel TDX CC event logs (CCEL): the same parser and replay,
//!   over the CCEL area's `0xFF` padding and with MR index 1–4 → RTMR0–3,
//!   compared with a quote's RTMRs.
//!
//! ## What a successful verification means
//! [`quote::verify_quote`] proves that the holder of the given AK signed a
//! TPMS_ATTEST of type quote, over the expected challenge, whose pcrDigest
//! covers exactly the supplied PCR values. [`replay::compare`] then proves
//! the event log replays to those values. Whether the AK belongs to a
//! genuine TPM (EK certificate, credential activation) is **not** checked
//! here. Event data is only trustworthy where its digest binds it; the
//! `secureBootEnabled` claim checks this (see [`claims`]).
//!
//! ## Robustness
//! Parsers use a bounds-checked [`reader::Reader`], never index unchecked,
//! never panic, and cap every count and size (documented per module), so
//! allocation is bounded by a constant times the input length. They are
//! exercised by truncation/mutation tests and cargo-fuzz targets
//! (`fuzz/`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod alg;
pub mod ccel;
pub mod claims;
pub mod eventlog;
pub mod pcrfile;
pub mod quote;
pub mod reader;
pub mod replay;
pub mod structures;

pub use alg::{HashAlg, PcrValues};
pub use eventlog::{EventLog, EventLogError, parse_event_log, parse_event_log_padded};
pub use pcrfile::{PcrFileError, parse_pcr_file};
pub use quote::{AkPublicKey, QuoteError, VerifiedQuote, verify_quote};
pub use reader::ParseError;
pub use replay::{Replay, compare, replay};
pub use structures::{parse_attest, parse_public, parse_public2b, parse_signature};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::Reader;
    use crate::structures::PcrSelection;

    #[test]
    fn reader_reports_truncation_instead_of_panicking() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_be("a"), Ok(0x0102));
        assert!(matches!(
            r.u32_be("b"),
            Err(ParseError::Truncated {
                needed: 4,
                available: 1,
                ..
            })
        ));
        assert!(r.bytes(usize::MAX, "c").is_err());
        assert_eq!(r.u8("d"), Ok(3));
        assert!(r.finish("e").is_ok());
        let mut r = Reader::new(&[0x00, 0x05, 1, 2]);
        assert!(matches!(
            r.sized_u16_be("f", 4),
            Err(ParseError::TooLarge { value: 5, .. })
        ));
    }

    #[test]
    fn pcr_selection_bit_order() {
        let s = PcrSelection {
            hash_alg: alg::TPM_ALG_SHA256,
            select: vec![0x01, 0x00, 0x81],
        };
        assert_eq!(s.pcrs(), vec![0, 16, 23]);
    }

    #[test]
    fn guid_and_type_names() {
        let g = [
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
            0x2b, 0x8c,
        ];
        assert_eq!(
            eventlog::format_guid(&g),
            "8BE4DF61-93CA-11D2-AA0D-00E098032B8C"
        );
        assert_eq!(
            eventlog::event_type_name(0x8000_00E0),
            "EV_EFI_VARIABLE_AUTHORITY"
        );
        assert_eq!(eventlog::event_type_name(0x1234), "EV_UNKNOWN_0x00001234");
    }

    #[test]
    fn device_path_file_node() {
        // Media(4)/FilePath(4) node "\a.efi" then End(7f,ff).
        let name: Vec<u8> = "\\a.efi\0"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let mut dp = vec![4, 4];
        dp.extend_from_slice(&((4 + name.len()) as u16).to_le_bytes());
        dp.extend_from_slice(&name);
        dp.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        assert_eq!(claims::device_path_file(&dp).as_deref(), Some("\\a.efi"));
        assert_eq!(claims::device_path_file(&dp[..5]), None);
    }

    #[test]
    fn startup_locality_initialises_pcr0() {
        let mut data = b"StartupLocality\0".to_vec();
        data.push(3);
        let log = EventLog {
            format: eventlog::LogFormat::LegacySha1,
            spec_id: None,
            events: vec![eventlog::Event {
                seq: 0,
                pcr_index: 0,
                event_type: eventlog::types::EV_NO_ACTION,
                digests: eventlog::EventDigests::new(),
                data: &data,
            }],
            trailing_zero_bytes: 0,
        };
        let r = replay::replay(&log).expect("replay");
        let mut want = [0u8; 20];
        want[19] = 3;
        assert_eq!(r.get(HashAlg::Sha1, 0), Some(&want[..]));
        assert_eq!(r.get(HashAlg::Sha1, 17), Some(&[0xff; 20][..]));
    }
}
