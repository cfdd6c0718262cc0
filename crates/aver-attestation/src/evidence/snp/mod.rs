//! AMD SEV-SNP confidential VMs (`/attest/SevSnpVm`), in Azure
//! Attestation's wire shape.
//!
//! * [`report`]: the attestation report (v2, v3, v5) — pure, bounds-checked
//!   parsing;
//! * [`certs`]: the VCEK → ASK → ARK (or VLEK → ASVK → ARK) chain, RSA-PSS,
//!   AMD's ARKs built in;
//! * [`crl`]: the ARKs' revocation lists, verified once when added and
//!   replaceable while the service runs;
//! * [`verify`]: the report's checks in order — version, signature
//!   algorithm, reserved fields and guest policy bits, the chain at the
//!   verification time, the signing-key selector against the certificate
//!   kind, the ECDSA-P384 signature, the certificate's TCB and hardware ID
//!   against the report, then runtime and init-time data bindings;
//! * [`claims`]: the `x-ms-sevsnpvm-*` claims, formatted as Azure's tokens.
//!
//! The request's evidence (`report`) is Azure's: base64url of the JSON
//! `{"SnpReport": base64url(report), "VcekCertChain": base64url(PEM)}`.

pub mod certs;
pub mod claims;
pub mod crl;
pub mod kds;
pub mod report;
pub mod verify;

use aver_codec::ParseError;

use crate::error::AttestError;
use crate::registry::{AttestationType, Flow};
use crate::request::AttestRequest;
use crate::{VerificationTime, Verified, Verifiers};

pub use certs::{KeyKind, Product, SnpTrust, VerifiedChain};
pub use crl::CrlInfo;
pub use report::{SnpReport, TcbParts, TcbVersion, parse_report};
pub use verify::{SnpEvidence, VerifiedSnp, encode_evidence, parse_evidence, verify_report};

/// Azure Attestation's default SevSnpVm policy, byte for byte: permit
/// every verified report, issue nothing. Its `x-ms-policy-hash`,
/// `9NY0VnTQ-IiBriBplVUpFbczcDaEBUwsiFYAzHu_gco`, is the one in Azure's
/// recorded SevSnpVm token. Measurements, debug and SVNs are for a custom
/// policy or the relying party to judge.
pub const DEFAULT_SNP_POLICY: &str = include_str!("../../../policies/sevsnpvm-default.txt");

/// `/attest/SevSnpVm`: `{"report": base64url(JSON{SnpReport, VcekCertChain}), ...}`.
pub const SEV_SNP_VM: AttestationType = AttestationType {
    name: "SevSnpVm",
    flow: Flow::SingleShot {
        evidence_field: "report",
        verify: verify_sev_snp_vm,
    },
    default_policy: Some(DEFAULT_SNP_POLICY),
    legacy_aliases: false,
    policy_only_claims: &[],
};

/// Why SNP evidence was rejected; [`SnpError::code`] is stable
/// (`docs/errors.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    #[error("the SevSnpVm evidence is malformed: {0}")]
    EvidenceMalformed(String),
    #[error("the SNP attestation report is malformed: {0}")]
    ReportMalformed(#[from] ParseError),
    #[error("SNP attestation report version {0} is not supported (2, 3 and 5 are)")]
    UnsupportedVersion(u32),
    #[error(
        "SNP report signature algorithm {0} is not supported (1, ECDSA P-384 with SHA-384, is)"
    )]
    UnsupportedSignatureAlgorithm(u32),
    #[error("the SNP report's reserved field {0} is not zero")]
    ReservedNonZero(&'static str),
    #[error("the SNP guest policy {0}")]
    GuestPolicyInvalid(String),
    #[error("the SNP report's signing key does not match its certificate: {0}")]
    SigningKeyMismatch(String),
    #[error(
        "no VCEK or VLEK certificate: the request carries no VcekCertChain and no certificate is available for this chip"
    )]
    CertificateChainMissing,
    #[error("the SNP certificate chain is malformed: {0}")]
    CertificateChainMalformed(String),
    #[error("the SNP certificate chain does not lead to a trusted AMD root: {0}")]
    UntrustedRoot(String),
    #[error("a certificate of the SNP chain has expired at the verification time: {0}")]
    CertificateExpired(String),
    #[error("a certificate of the SNP chain is not yet valid at the verification time: {0}")]
    CertificateNotYetValid(String),
    #[error("the SNP certificate chain is invalid: {0}")]
    CertificateChainInvalid(String),
    #[error("a certificate of the SNP chain is revoked: {0}")]
    CertificateRevoked(String),
    #[error("the ARK CRL is malformed or not signed by the ARK: {0}")]
    CrlInvalid(String),
    #[error("the ARK CRL is not current at the verification time: {0}")]
    CrlExpired(String),
    #[error("the SNP chain's revocation cannot be checked: {0}")]
    CrlMissing(String),
    #[error("the SNP report signature does not verify with the VCEK/VLEK key{0}")]
    ReportSignatureInvalid(String),
    #[error("the certificate's TCB does not match the report's REPORTED_TCB: {0}")]
    TcbMismatch(String),
    #[error(
        "the VCEK's hardware ID does not match the report's CHIP_ID: the VCEK belongs to another chip"
    )]
    ChipIdMismatch,
    #[error("SHA-256 of the runtime data does not match REPORT_DATA[0..32] of the SNP report")]
    RuntimeDataMismatch,
    #[error("SHA-256 of initTimeData does not match HOST_DATA of the SNP report")]
    InitTimeDataMismatch,
}

impl SnpError {
    pub fn code(&self) -> &'static str {
        match self {
            SnpError::EvidenceMalformed(_) => "SnpEvidenceMalformed",
            SnpError::ReportMalformed(_) => "SnpReportMalformed",
            SnpError::UnsupportedVersion(_) => "SnpReportVersionUnsupported",
            SnpError::UnsupportedSignatureAlgorithm(_) => "SnpSignatureAlgorithmUnsupported",
            SnpError::ReservedNonZero(_) => "SnpReservedFieldNonZero",
            SnpError::GuestPolicyInvalid(_) => "SnpGuestPolicyInvalid",
            SnpError::SigningKeyMismatch(_) => "SnpSigningKeyMismatch",
            SnpError::CertificateChainMissing => "SnpCertificateChainMissing",
            SnpError::CertificateChainMalformed(_) => "CertificateChainMalformed",
            SnpError::UntrustedRoot(_) => "UntrustedRoot",
            SnpError::CertificateExpired(_) => "CertificateExpired",
            SnpError::CertificateNotYetValid(_) => "CertificateNotYetValid",
            SnpError::CertificateChainInvalid(_) => "CertificateChainInvalid",
            SnpError::CertificateRevoked(_) => "CertificateRevoked",
            SnpError::CrlInvalid(_) => "CollateralMalformed",
            SnpError::CrlExpired(_) => "CollateralExpired",
            SnpError::CrlMissing(_) => "CollateralMissing",
            SnpError::ReportSignatureInvalid(_) => "SnpReportSignatureInvalid",
            SnpError::TcbMismatch(_) => "SnpTcbMismatch",
            SnpError::ChipIdMismatch => "SnpChipIdMismatch",
            SnpError::RuntimeDataMismatch => "RuntimeDataMismatch",
            SnpError::InitTimeDataMismatch => "InitTimeDataMismatch",
        }
    }
}

fn verify_sev_snp_vm(
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    let evidence = parse_evidence(&request.evidence)?;
    let v = verify_report(
        &verifiers.snp,
        &evidence.report,
        &evidence.certs,
        request.runtime_data.as_ref().map(|d| d.bytes.as_slice()),
        request.init_time_data.as_ref().map(|d| d.bytes.as_slice()),
        time,
    )?;
    Ok(Verified {
        claims: claims::claims(&v, request),
        log_summary: format!("sevsnp measurement {}", hex::encode(v.measurement)),
        facts: crate::Facts::of(v),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_policy_is_azures() {
        assert_eq!(
            aver_policy::policy_hash(super::DEFAULT_SNP_POLICY),
            "9NY0VnTQ-IiBriBplVUpFbczcDaEBUwsiFYAzHu_gco"
        );
    }
}
