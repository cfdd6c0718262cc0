//! Intel DCAP: what SGX and TDX quotes share.
//!
//! * [`quote`]: the quote wire format (header with TEE type, body, signature
//!   data, QE certification) — pure, bounds-checked parsing;
//! * [`report`]: the SGX report body (the enclave's, and the QE's);
//! * [`pck`]: the PCK chain, checked byte for byte and validated to a
//!   trusted root at the verification time, with CRLs;
//! * [`collateral`]: TCB info, QE identity and CRLs — parsed from the
//!   exact bytes received and verified once per item;
//! * [`pck_ext`]: the SGX extensions of the PCK certificate (FMSPC,
//!   PCE-ID, the platform's TCB);
//! * [`tcb`]: the TCB verdict as Intel's QVL reaches it, and which
//!   statuses a provider accepts;
//! * [`trust`]: the trusted roots (Intel's, built in; others by
//!   configuration);
//! * [`DcapVerifier::verify`]: the checks every DCAP quote gets, in Intel's
//!   order — PCK chain, QE report signed by the PCK key, QE report binding
//!   the attestation key, quote signed by the attestation key.
//!
//! The evidence types built on it ([`crate::evidence::sgx`], and TDX next)
//! add what their body means: runtime-data binding, claims. Verification
//! never reads the clock: the time is an argument.

pub mod collateral;
pub mod pck;
pub mod pck_ext;
pub mod quote;
pub mod report;
pub mod tcb;
pub mod td_report;
pub mod trust;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

pub use collateral::{
    CollateralBundle, CollateralError, TcbStatus, VerifiedCollateral, verify_collateral,
};
pub use quote::{
    AttestationKeyType, QeCertification, Quote, QuoteBody, QuoteHeader, TeeType, parse_quote,
};
pub use report::{ATTRIBUTE_DEBUG, REPORT_BODY_LEN, ReportBody, parse_report_body};
pub use tcb::{TcbAcceptance, TcbVerdict};
pub use trust::{INTEL_SGX_ROOT_CA_DER, TrustAnchors, TrustError};

use crate::{VerificationTime, sha256};

/// Collateral the verifier consumes besides the quote.
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    /// DER CRLs (PCK CA CRL, root CA CRL). When any are given, every
    /// certificate of the chain must have a known, unrevoked status and the
    /// CRLs must not be past their nextUpdate at the verification time.
    pub crls: Vec<Vec<u8>>,
    /// [`pck::crl_digest`] of `crls`, when the caller computed it once for
    /// many quotes (`VerifiedCollateral::crls`); otherwise the PCK chain
    /// cache computes it per quote. Must be the digest of exactly `crls`.
    pub crl_digest: Option<[u8; 32]>,
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
    #[error(transparent)]
    Collateral(#[from] CollateralError),
    #[error("the PCK certificate's SGX extension is invalid: {0}")]
    PckExtensionInvalid(String),
    #[error("the PCK CRL is not the PCK certificate's issuer's: {0}")]
    CrlIssuerMismatch(String),
    #[error(
        "the collateral is for FMSPC {collateral}, the quote's PCK certificate is for FMSPC {quote}"
    )]
    FmspcMismatch { quote: String, collateral: String },
    #[error("the TCB info does not apply to this quote: {0}")]
    TcbInfoMismatch(String),
    #[error("no TCB level of the TCB info matches the platform: {0}")]
    TcbLevelNotSupported(String),
    #[error("the quoting enclave does not match Intel's QE identity: {0}")]
    QeIdentityMismatch(String),
    #[error("the quoting enclave's TCB is not supported: {0}")]
    QeTcbNotSupported(String),
    #[error("the TDX module is not the one Intel's TCB info describes: {0}")]
    TdxModuleMismatch(String),
    #[error(
        "the platform's TCB status {status} is not accepted by this provider (advisories: [{advisories}]); the provider's accepted TCB statuses decide{hint}"
    )]
    TcbStatusNotAccepted {
        status: TcbStatus,
        advisories: String,
        /// Advice that follows the message (TD relaunch), or empty.
        hint: String,
    },
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
            DcapError::Collateral(e) => e.code(),
            DcapError::PckExtensionInvalid(_) => "PckExtensionInvalid",
            DcapError::CrlIssuerMismatch(_) => "CrlIssuerMismatch",
            DcapError::FmspcMismatch { .. } => "FmspcMismatch",
            DcapError::TcbInfoMismatch(_) => "TcbInfoMismatch",
            DcapError::TcbLevelNotSupported(_) => "TcbLevelNotSupported",
            DcapError::QeIdentityMismatch(_) => "QeIdentityMismatch",
            DcapError::QeTcbNotSupported(_) => "QeTcbNotSupported",
            DcapError::TdxModuleMismatch(_) => "TdxModuleMismatch",
            DcapError::TcbStatusNotAccepted { status, .. } => match status {
                TcbStatus::UpToDate => "TcbStatusUpToDateNotAccepted",
                TcbStatus::SWHardeningNeeded => "TcbStatusSWHardeningNeeded",
                TcbStatus::ConfigurationNeeded => "TcbStatusConfigurationNeeded",
                TcbStatus::ConfigurationAndSWHardeningNeeded => {
                    "TcbStatusConfigurationAndSWHardeningNeeded"
                }
                TcbStatus::OutOfDate => "TcbStatusOutOfDate",
                TcbStatus::OutOfDateConfigurationNeeded => "TcbStatusOutOfDateConfigurationNeeded",
                TcbStatus::Revoked => "TcbStatusRevoked",
            },
        }
    }
}

/// Verifies DCAP quotes against a set of trusted roots.
#[derive(Debug, Clone)]
pub struct DcapVerifier {
    roots: TrustAnchors,
    /// Chains verified before (shared by clones of this verifier).
    chains: std::sync::Arc<pck::PckChainCache>,
}

impl DcapVerifier {
    pub fn new(roots: TrustAnchors) -> Self {
        DcapVerifier {
            roots,
            chains: Default::default(),
        }
    }

    /// The verified-chain cache (see [`pck::PckChainCache`]).
    pub fn chain_cache(&self) -> &pck::PckChainCache {
        &self.chains
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
    ) -> Result<std::sync::Arc<pck::VerifiedPck>, DcapError> {
        let pck = pck::verify_pck_chain_cached(
            &self.chains,
            &self.roots,
            quote.qe.pck_chain_pem,
            collateral,
            time,
        )?;
        verify_qe_report(quote, &pck)?;
        verify_quote_signature(quote)?;
        Ok(pck)
    }

    /// [`DcapVerifier::verify`] with full collateral, then the TCB verdict:
    /// the collateral is inside its window at `time`, the PCK chain is
    /// checked with its CRLs (every certificate's status known, the PCK
    /// CRL issued by the PCK certificate's issuer), the quote's signatures,
    /// then [`tcb::evaluate_sgx`]. Whether the verdict's status is accepted
    /// is the caller's ([`TcbAcceptance`]).
    pub fn verify_with_collateral(
        &self,
        quote: &Quote<'_>,
        collateral: &VerifiedCollateral,
        time: VerificationTime,
    ) -> Result<TcbVerdict, DcapError> {
        collateral.check_time(time)?;
        let pck = self.verify(quote, Some(&collateral.crls()), time)?;
        if pck.leaf_issuer != collateral.pck_crl.issuer {
            let issuer = x509_parser::parse_x509_certificate(&pck.leaf_der)
                .map(|(_, leaf)| leaf.issuer().to_string())
                .unwrap_or_default();
            return Err(DcapError::CrlIssuerMismatch(format!(
                "the PCK certificate is issued by {issuer:?} but the PCK CRL by {:?} (a processor-CA CRL for a platform-CA certificate, or the reverse?)",
                collateral.pck_crl.issuer_text
            )));
        }
        // Read when the chain was verified, and cached with it.
        let ext = pck
            .extensions
            .clone()
            .map_err(DcapError::PckExtensionInvalid)?;
        tcb::evaluate(
            quote.header.qe_vendor_id,
            &quote.qe.qe_report,
            quote.td_report(),
            &ext,
            collateral,
        )
    }
}

fn verify_qe_report(quote: &Quote<'_>, pck: &pck::VerifiedPck) -> Result<(), DcapError> {
    let qe = &quote.qe;
    // The key parsed when the chain was verified (cached with it).
    match &pck.parsed_key.0 {
        Some(key) => key.verify_sig(qe.qe_report_raw, qe.qe_report_signature),
        None => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &pck.key)
            .verify(qe.qe_report_raw, qe.qe_report_signature),
    }
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
