//! Pure parsers for attestation evidence.
//!
//! Every parser here takes `&[u8]` and returns borrowed, typed views. They do
//! no cryptography and no I/O, never panic, never index out of bounds (all
//! reads go through [`reader::Reader`]) and never allocate in proportion to
//! attacker-chosen length fields: variable-length regions are borrowed slices
//! whose lengths are checked against the input before use.
//!
//! Verification (signatures, certificate chains, collateral) lives in
//! `aver-verify`; this crate only answers "what does this byte string say?".

pub mod openenclave;
pub mod reader;
pub mod sgx;

pub use openenclave::{OpenEnclaveReport, parse_openenclave_report};
pub use sgx::{
    AttestationKeyType, CertificationData, Quote, QuoteHeader, ReportBody, parse_quote,
    parse_report_body,
};

/// Why a byte string is not well-formed evidence.
///
/// Each variant names the region that failed, so error messages can point at
/// the exact field a client got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input ended before a field could be read.
    #[error("truncated: {field} needs {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// A version this parser does not implement.
    #[error("unsupported quote version {0} (supported: 3)")]
    UnsupportedVersion(u16),
    /// The attestation key type is not ECDSA-P256.
    #[error("unsupported attestation key type {0} (supported: 2 = ECDSA-256-with-P-256)")]
    UnsupportedAttestationKeyType(u16),
    /// The certification data type is not one this verifier can use.
    #[error("unsupported certification data type {0} (supported: 5 = PCK certificate chain)")]
    UnsupportedCertificationDataType(u16),
    /// A length field disagrees with the data around it.
    #[error("inconsistent length: {0}")]
    InconsistentLength(&'static str),
    /// Bytes follow the structure that are not zero padding.
    #[error("{0} unexpected non-zero bytes after the end of the evidence")]
    TrailingData(usize),
    /// A header field holds a value the format does not allow.
    #[error("invalid {field}: {detail}")]
    InvalidField {
        field: &'static str,
        detail: &'static str,
    },
}
