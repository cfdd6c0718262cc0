//! Intel DCAP: what SGX and TDX quotes share.
//!
//! * [`quote`]: the quote wire format (header with TEE type, body, signature
//!   data, QE certification) — pure, bounds-checked parsing;
//! * [`report`]: the SGX report body (the enclave's, and the QE's);
//! * [`pck`]: the PCK chain, checked byte for byte and validated to a
//!   trusted root at the verification time, with CRLs;
//! * [`trust`]: the trusted roots (Intel's, built in; others by
//!   configuration);
//! * [`DcapVerifier::verify`]: the checks every DCAP quote gets, in Intel's
//!   order — PCK chain, QE report signed by the PCK key, QE report binding
//!   the attestation key, quote signed by the attestation key.
//!
//! The evidence types built on it ([`crate::evidence::sgx`], and TDX next)
//! add what their body means: runtime-data binding, claims. Verification
//! never reads the clock: the time is an argument.

pub mod pck;
pub mod quote;
pub mod report;
pub mod trust;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

pub use quote::{
    AttestationKeyType, QeCertification, Quote, QuoteBody, QuoteHeader, TeeType, parse_quote,
};
pub use report::{ATTRIBUTE_DEBUG, REPORT_BODY_LEN, ReportBody, parse_report_body};
pub use trust::{INTEL_SGX_ROOT_CA_DER, TrustAnchors, TrustError};

use crate::{VerificationTime, sha256};

/// Collateral the verifier consumes besides the quote.
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    /// DER CRLs (PCK CA CRL, root CA CRL). When any are given, every
    /// certificate of the chain must have a known, unrevoked status and the
    /// CRLs must not be past their nextUpdate at the verification time.
    pub crls: Vec<Vec<u8>>,
}

/// Why a DCAP quote was rejected. [`DcapError::code`] is the stable error
/// code the service returns (`docs/errors.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcapError {
    #[error("the quote is malformed: {0}")]
    InvalidQuote(#[from] aver_codec::ParseError),
    #[error("the PCK certificate chain in the quote is malformed: {0}")]
    CertificateChainMalformed(String),
    #[error("the PCK certificate chain does not lead to a trusted root: {0}")]
    UntrustedRoot(String),
    #[error("a certificate in the PCK chain has expired at the verification time")]
    CertificateExpired,
    #[error("a certificate in the PCK chain is not yet valid at the verification time")]
    CertificateNotYetValid,
    #[error("a certificate in the PCK chain is revoked")]
    CertificateRevoked,
    #[error("a CRL is past its next update at the verification time")]
    CollateralExpired,
    #[error("the revocation status of a PCK chain certificate is unknown: {0}")]
    RevocationStatusUnknown(String),
    #[error("a CRL given as collateral is malformed: {0}")]
    CollateralMalformed(String),
    #[error("the PCK certificate chain is invalid: {0}")]
    CertificateChainInvalid(String),
    #[error("the QE report signature does not verify with the PCK certificate key")]
    QeReportSignatureInvalid,
    #[error("the QE report does not bind the attestation key (report_data mismatch)")]
    AttestationKeyBindingInvalid,
    #[error("the quote signature does not verify with the attestation key")]
    QuoteSignatureInvalid,
}

impl DcapError {
    /// Stable error code, as documented in `docs/errors.md`.
    pub fn code(&self) -> &'static str {
        match self {
            DcapError::InvalidQuote(_) => "InvalidQuote",
            DcapError::CertificateChainMalformed(_) => "CertificateChainMalformed",
            DcapError::UntrustedRoot(_) => "UntrustedRoot",
            DcapError::CertificateExpired => "CertificateExpired",
            DcapError::CertificateNotYetValid => "CertificateNotYetValid",
            DcapError::CertificateRevoked => "CertificateRevoked",
            DcapError::CollateralExpired => "CollateralExpired",
            DcapError::RevocationStatusUnknown(_) => "RevocationStatusUnknown",
            DcapError::CollateralMalformed(_) => "CollateralMalformed",
            DcapError::CertificateChainInvalid(_) => "CertificateChainInvalid",
            DcapError::QeReportSignatureInvalid => "QeReportSignatureInvalid",
            DcapError::AttestationKeyBindingInvalid => "AttestationKeyBindingInvalid",
            DcapError::QuoteSignatureInvalid => "QuoteSignatureInvalid",
        }
    }
}

/// Verifies DCAP quotes against a set of trusted roots.
#[derive(Debug, Clone)]
pub struct DcapVerifier {
    roots: TrustAnchors,
}

impl DcapVerifier {
    pub fn new(roots: TrustAnchors) -> Self {
        DcapVerifier { roots }
    }

    /// Only Intel's root: what real hardware needs.
    pub fn intel() -> Self {
        Self::new(TrustAnchors::intel())
    }

    pub fn roots(&self) -> &TrustAnchors {
        &self.roots
    }

    /// The checks every DCAP quote gets, at `time`: the PCK chain (with the
    /// collateral's CRLs), the QE report's signature by the PCK key, the QE
    /// report's binding of the attestation key, and the quote's signature by
    /// the attestation key. What the body says is the caller's to judge.
    pub fn verify(
        &self,
        quote: &Quote<'_>,
        collateral: Option<&Collateral>,
        time: VerificationTime,
    ) -> Result<(), DcapError> {
        let pck_key = pck::verify_pck_chain(&self.roots, quote.qe.pck_chain_pem, collateral, time)?;
        verify_qe_report(quote, &pck_key)?;
        verify_quote_signature(quote)
    }
}

fn verify_qe_report(quote: &Quote<'_>, pck_key: &[u8]) -> Result<(), DcapError> {
    let qe = &quote.qe;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pck_key)
        .verify(qe.qe_report_raw, qe.qe_report_signature)
        .map_err(|_| DcapError::QeReportSignatureInvalid)?;
    let mut bound = Vec::with_capacity(64 + qe.qe_authentication_data.len());
    bound.extend_from_slice(quote.attestation_key);
    bound.extend_from_slice(qe.qe_authentication_data);
    if !qe.qe_report.report_data.starts_with(&sha256(&bound)) {
        return Err(DcapError::AttestationKeyBindingInvalid);
    }
    Ok(())
}

fn verify_quote_signature(quote: &Quote<'_>) -> Result<(), DcapError> {
    // An uncompressed SEC1 point: 0x04 || x || y.
    let mut key = Vec::with_capacity(65);
    key.push(0x04);
    key.extend_from_slice(quote.attestation_key);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(quote.signed_region, quote.signature)
        .map_err(|_| DcapError::QuoteSignatureInvalid)
}
