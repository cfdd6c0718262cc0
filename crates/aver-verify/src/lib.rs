//! Verification of attestation evidence.
//!
//! Takes parsed evidence from `aver-evidence`, the verification time and any
//! collateral as explicit inputs, and returns typed, verified facts or a
//! typed error whose [`code`](sgx::SgxError::code) is stable and documented.
//! Nothing here reads the clock, the network or the disk: a test on an
//! expired real vector pins the time, and the service passes "now".
//!
//! Cryptography is aws-lc-rs (signatures, digests) and rustls-webpki
//! (certificate paths, CRLs); nothing is hand-written.

pub mod sgx;
pub mod time;
pub mod trust;

pub use sgx::{Collateral, SgxError, SgxEvidenceKind, SgxVerifier, VerifiedSgx, parse_rfc3339};
pub use time::VerificationTime;
pub use trust::{TrustAnchors, TrustError};

/// SHA-256 of `data`, through aws-lc-rs.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
