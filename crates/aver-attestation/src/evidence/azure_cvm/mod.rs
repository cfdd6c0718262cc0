//! Azure confidential VMs (`/attest/AzureCvm`): a vTPM quote bound to the
//! hardware through the HCL report, verified end to end in one request.
//!
//! The chain of trust, each link checked here:
//!
//! 1. the hardware report verifies: on SEV-SNP, the SNP report inside the
//!    HCL report with its VCEK chain up to AMD's ARK
//!    ([`crate::evidence::snp::verify_report`], every check of
//!    `/attest/SevSnpVm`), requested at VMPL 0 (the paravisor's level: a
//!    report from a lower-privileged level could carry anything); on TDX,
//!    the TD quote through the DCAP path, its TD body agreeing with the HCL
//!    report's TDREPORT (REPORTDATA, MRTD);
//! 2. the hash of the HCL runtime JSON (the report's variable data) equals
//!    the start of the hardware report's REPORT_DATA, so the JSON is the
//!    paravisor's;
//! 3. the vTPM quote verifies with `HCLAkPub`, the attestation key that
//!    JSON names, so the quote comes from that VM's vTPM;
//! 4. the quote's `extraData` equals the request's `nonce` (its UTF-8
//!    bytes), so the quote is fresh for this caller;
//! 5. the quote's PCR digest covers exactly the PCR values sent, which
//!    become claims.
//!
//! Why a route of its own rather than Azure's `/attest/AzureGuest`: that
//! protocol wraps its answer (AES-GCM under a key sealed to a TPM
//! ephemeral key) and carries Windows/Linux guest facts (TCG logs, OS
//! data) Aver does not verify yet; see docs/azure-cvm.md.
//!
//! The evidence (the request's `evidence` field, base64url) is the JSON
//! `{"HclReport": base64url(HCL report), "VcekCertChain": base64url(PEM
//! chain) (SEV-SNP) or "TdQuote": base64url(TD quote) (TDX), "TpmQuote":
//! {"message": hex TPMS_ATTEST, "signature": hex raw RSASSA-PKCS1-v1_5
//! SHA-256 signature, "pcrs": [hex SHA-256 PCR 0, 1, …]}}` — the quote
//! object is Trustee's `tpm-quote-v1.json` shape.

pub mod hcl;

use aver_codec::ParseError;
use aver_tpm::alg::{HashAlg, PcrValues, TPM_ALG_SHA256};
use aver_tpm::quote::{AkPublicKey, QuoteError, verify_quote};
use aver_tpm::structures::Signature;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::dcap::DcapError;
use crate::error::AttestError;
use crate::evidence::snp::{self, SnpError, VerifiedSnp};
use crate::evidence::tdx;
use crate::registry::{AttestationType, Flow};
use crate::request::AttestRequest;
use crate::{VerificationTime, Verified, Verifiers};

pub use hcl::{HardwareKind, HclReport, parse_hcl_report};

/// Largest evidence JSON accepted: an HCL report (2.6 KiB), a chain
/// (about 6 KiB) and a quote with 24 PCRs fit in a quarter of it.
const MAX_EVIDENCE_BYTES: usize = 128 * 1024;
/// Largest TPMS_ATTEST accepted (a quote is about 150 bytes).
const MAX_QUOTE_BYTES: usize = 4096;
/// Largest signature accepted (RSA-4096 is 512 bytes).
const MAX_SIGNATURE_BYTES: usize = 1024;
/// A TPM has 24 PCRs per bank.
const MAX_PCRS: usize = 24;
/// The VMPL the paravisor (HCL) runs at and requests its report from.
const HCL_VMPL: u32 = 0;

/// The default AzureCvm policy: permit every verified VM, issue nothing,
/// as Azure's default for SevSnpVm. Measurements, PCRs and debug flags are
/// for a custom policy or the relying party to judge.
pub const DEFAULT_AZURE_CVM_POLICY: &str = include_str!("../../../policies/azurecvm-default.txt");

/// `/attest/AzureCvm`: `{"evidence": base64url(JSON), "nonce": ...}`.
pub const AZURE_CVM: AttestationType = AttestationType {
    name: "AzureCvm",
    flow: Flow::SingleShot {
        evidence_field: "evidence",
        verify: verify_azure_cvm,
    },
    default_policy: Some(DEFAULT_AZURE_CVM_POLICY),
    legacy_aliases: false,
    policy_only_claims: &[],
};

/// Why Azure CVM evidence was rejected; [`AzureCvmError::code`] is stable
/// (`docs/errors.md`). Errors of the SNP report and chain keep their SNP
/// codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureCvmError {
    #[error("the AzureCvm evidence is malformed: {0}")]
    EvidenceMalformed(String),
    #[error("the HCL report is malformed: {0}")]
    HclReportMalformed(#[from] ParseError),
    #[error(transparent)]
    Snp(#[from] SnpError),
    #[error(transparent)]
    Dcap(#[from] DcapError),
    #[error(
        "the HCL report holds a TDX report but the evidence has no TdQuote: the TDREPORT itself is not verifiable remotely"
    )]
    TdQuoteMissing,
    #[error("the TDREPORT in the HCL report does not match the TD quote: {0}")]
    TdReportMismatch(String),
    #[error(
        "the SNP report inside the HCL report was requested at VMPL {0}; the paravisor's reports come from VMPL 0"
    )]
    VmplInvalid(u32),
    #[error(
        "the hash of the HCL runtime data does not match REPORT_DATA of the hardware report: the runtime data (and its HCLAkPub) is not the one the hardware vouched for"
    )]
    RuntimeDataMismatch,
    #[error("the HCL runtime data is unusable: {0}")]
    RuntimeDataInvalid(String),
    #[error(
        "the request has no nonce; the vTPM quote's extraData must be the caller's nonce, or the quote could be replayed"
    )]
    NonceMissing,
    #[error("the vTPM quote does not verify: {0}")]
    Quote(QuoteError),
}

impl AzureCvmError {
    pub fn code(&self) -> &'static str {
        match self {
            AzureCvmError::EvidenceMalformed(_) => "AzureCvmEvidenceMalformed",
            AzureCvmError::HclReportMalformed(_) => "HclReportMalformed",
            AzureCvmError::Snp(e) => e.code(),
            AzureCvmError::Dcap(e) => e.code(),
            AzureCvmError::TdQuoteMissing => "AzureCvmTdQuoteMissing",
            AzureCvmError::TdReportMismatch(_) => "AzureCvmTdReportMismatch",
            AzureCvmError::VmplInvalid(_) => "AzureCvmVmplInvalid",
            AzureCvmError::RuntimeDataMismatch => "HclRuntimeDataMismatch",
            AzureCvmError::RuntimeDataInvalid(_) => "HclRuntimeDataInvalid",
            AzureCvmError::NonceMissing => "AzureCvmNonceMissing",
            AzureCvmError::Quote(q) => match q {
                QuoteError::SignatureInvalid => "QuoteSignatureInvalid",
                QuoteError::ChallengeMismatch { .. } => "ChallengeMismatch",
                QuoteError::PcrDigestMismatch { .. }
                | QuoteError::PcrMissing { .. }
                | QuoteError::PcrValueLength { .. } => "PcrDigestMismatch",
                QuoteError::InvalidKey(_) => "HclRuntimeDataInvalid",
                QuoteError::Parse(_)
                | QuoteError::BadMagic(_)
                | QuoteError::NotAQuote(_)
                | QuoteError::UnsupportedAlgorithm(_) => "VtpmQuoteMalformed",
            },
        }
    }
}

/// The evidence, decoded (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureCvmEvidence {
    pub hcl_report: Vec<u8>,
    /// DER certificates of `VcekCertChain`, the VCEK first (SEV-SNP).
    pub certs: Vec<Vec<u8>>,
    /// The TD quote (TDX), carrying its PCK chain.
    pub td_quote: Option<Vec<u8>>,
    pub quote: VtpmQuote,
}

/// A vTPM quote in Trustee's `tpm-quote-v1.json` shape, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtpmQuote {
    /// TPMS_ATTEST, exactly as signed.
    pub message: Vec<u8>,
    /// Raw RSASSA-PKCS1-v1_5 SHA-256 signature.
    pub signature: Vec<u8>,
    /// SHA-256 PCR values, PCR 0 first.
    pub pcrs: Vec<Vec<u8>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvidence {
    #[serde(rename = "HclReport")]
    hcl_report: String,
    #[serde(rename = "VcekCertChain", default)]
    vcek_cert_chain: Option<String>,
    #[serde(rename = "TdQuote", default)]
    td_quote: Option<String>,
    #[serde(rename = "TpmQuote")]
    tpm_quote: WireQuote,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireQuote {
    message: String,
    signature: String,
    pcrs: Vec<String>,
}

fn malformed(what: impl Into<String>) -> AzureCvmError {
    AzureCvmError::EvidenceMalformed(what.into())
}

fn hex_field(text: &str, field: &str, max: usize) -> Result<Vec<u8>, AzureCvmError> {
    if text.len() > max.saturating_mul(2) {
        return Err(malformed(format!("{field} is longer than {max} bytes")));
    }
    hex::decode(text).map_err(|e| malformed(format!("{field} is not hex: {e}")))
}

/// Parses the TPM quote object as Trustee writes it (`tpm-quote-v1.json`):
/// `{"message": hex, "signature": hex, "pcrs": [hex, ...]}`.
pub fn parse_quote_json(bytes: &[u8]) -> Result<VtpmQuote, AzureCvmError> {
    let wire: WireQuote = serde_json::from_slice(bytes).map_err(|e| {
        malformed(format!(
            "the TPM quote is not {{message, signature, pcrs}}: {e}"
        ))
    })?;
    decode_quote(wire)
}

fn decode_quote(wire: WireQuote) -> Result<VtpmQuote, AzureCvmError> {
    if wire.pcrs.len() > MAX_PCRS {
        return Err(malformed(format!(
            "TpmQuote.pcrs has {} values; a TPM has {MAX_PCRS} PCRs",
            wire.pcrs.len()
        )));
    }
    Ok(VtpmQuote {
        message: hex_field(&wire.message, "TpmQuote.message", MAX_QUOTE_BYTES)?,
        signature: hex_field(&wire.signature, "TpmQuote.signature", MAX_SIGNATURE_BYTES)?,
        pcrs: wire
            .pcrs
            .iter()
            .map(|p| hex_field(p, "TpmQuote.pcrs[]", HashAlg::Sha256.size()))
            .collect::<Result<_, _>>()?,
    })
}

fn b64url(text: &str, field: &str) -> Result<Vec<u8>, AzureCvmError> {
    aver_token::b64::decode_lenient(text)
        .ok_or_else(|| malformed(format!("{field} is not base64url")))
}

/// Decodes the evidence JSON (see the module docs).
pub fn parse_evidence(bytes: &[u8]) -> Result<AzureCvmEvidence, AzureCvmError> {
    if bytes.len() > MAX_EVIDENCE_BYTES {
        return Err(malformed(format!(
            "{} bytes, more than {MAX_EVIDENCE_BYTES}",
            bytes.len()
        )));
    }
    let wire: WireEvidence = serde_json::from_slice(bytes).map_err(|e| {
        malformed(format!(
            "evidence must be base64url of a JSON object {{\"HclReport\", \"VcekCertChain\", \"TpmQuote\"}}: {e}"
        ))
    })?;
    let certs = match wire.vcek_cert_chain.as_deref() {
        None | Some("") => Vec::new(),
        Some(chain) => snp::certs::split_chain(&b64url(chain, "VcekCertChain")?)?,
    };
    Ok(AzureCvmEvidence {
        hcl_report: b64url(&wire.hcl_report, "HclReport")?,
        certs,
        td_quote: wire
            .td_quote
            .as_deref()
            .map(|q| b64url(q, "TdQuote"))
            .transpose()?,
        quote: decode_quote(wire.tpm_quote)?,
    })
}

/// Encodes the evidence JSON a client base64url-encodes into `evidence`:
/// the HCL report, the VCEK chain (PEM, SEV-SNP) or the TD quote (TDX),
/// and the vTPM quote.
pub fn encode_evidence(
    hcl_report: &[u8],
    chain_pem: Option<&[u8]>,
    td_quote: Option<&[u8]>,
    quote: &VtpmQuote,
) -> Vec<u8> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut wire = Map::new();
    wire.insert("HclReport".into(), b64(hcl_report).into());
    if let Some(pem) = chain_pem {
        wire.insert("VcekCertChain".into(), b64(pem).into());
    }
    if let Some(q) = td_quote {
        wire.insert("TdQuote".into(), b64(q).into());
    }
    wire.insert(
        "TpmQuote".into(),
        serde_json::json!({
            "message": hex::encode(&quote.message),
            "signature": hex::encode(&quote.signature),
            "pcrs": quote.pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
        }),
    );
    Value::Object(wire).to_string().into_bytes()
}

/// Facts established by a successful verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedAzureCvm {
    pub hardware: HardwareKind,
    /// The verified SNP report (SEV-SNP VMs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snp: Option<VerifiedSnp>,
    /// The verified TD quote (TDX VMs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tdx: Option<tdx::VerifiedTdx>,
    /// The HCL runtime JSON, parsed.
    pub runtime: Value,
    /// The SHA-256 PCR values the quote covers, by index.
    #[serde(serialize_with = "hex_map")]
    pub pcrs: std::collections::BTreeMap<u32, Vec<u8>>,
    /// TPMS_ATTEST firmwareVersion of the vTPM.
    pub firmware_version: u64,
}

fn hex_map<S: serde::Serializer>(
    m: &std::collections::BTreeMap<u32, Vec<u8>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (k.to_string(), hex::encode(v))))
}

/// The digest REPORT_DATA must start with, by the IGVM hash type.
fn runtime_digest(report: &HclReport<'_>) -> Vec<u8> {
    use aws_lc_rs::digest::{SHA256, SHA384, SHA512, digest};
    let alg = match report.hash_type {
        hcl::HashType::Sha256 => &SHA256,
        hcl::HashType::Sha384 => &SHA384,
        hcl::HashType::Sha512 => &SHA512,
    };
    digest(alg, report.variable_data).as_ref().to_vec()
}

/// `HCLAkPub` from the runtime JSON's `keys` (a JWK set).
fn hcl_ak(runtime: &Value) -> Result<AkPublicKey, AzureCvmError> {
    let keys = runtime
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| AzureCvmError::RuntimeDataInvalid("it has no \"keys\" array".into()))?;
    let mut found = keys
        .iter()
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some("HCLAkPub"));
    let (Some(jwk), None) = (found.next(), found.next()) else {
        return Err(AzureCvmError::RuntimeDataInvalid(
            "its \"keys\" must hold exactly one key with kid \"HCLAkPub\"".into(),
        ));
    };
    AkPublicKey::from_jwk(jwk)
        .map_err(|e| AzureCvmError::RuntimeDataInvalid(format!("HCLAkPub: {e}")))
}

/// The HCL report's SNP report: the chain, VMPL 0, and REPORT_DATA
/// holding the runtime JSON's hash.
fn verify_snp_hw(
    verifiers: &Verifiers,
    report: &HclReport<'_>,
    certs: &[Vec<u8>],
    time: VerificationTime,
) -> Result<VerifiedSnp, AzureCvmError> {
    let v = snp::verify_report(
        &verifiers.snp,
        report.hardware_report(),
        certs,
        None,
        None,
        time,
    )?;
    if v.vmpl != HCL_VMPL {
        return Err(AzureCvmError::VmplInvalid(v.vmpl));
    }
    if !v.report_data.starts_with(&runtime_digest(report)) {
        return Err(AzureCvmError::RuntimeDataMismatch);
    }
    Ok(v)
}

/// Offsets in a TDREPORT (Intel TDX module ABI): REPORTMACSTRUCT's
/// REPORTDATA, and TDINFO's MRTD.
const TDREPORT_REPORT_DATA: usize = 128;
const TDREPORT_MRTD: usize = 512 + 16;

/// The TD quote through the DCAP path (with Intel's TCB verdict when the
/// collateral cache has its FMSPC, as SGX quotes), its REPORT_DATA holding
/// the runtime JSON's hash, and the HCL report's TDREPORT agreeing with it
/// on REPORT_DATA and MRTD. (RTMRs are not compared: the OS extends RTMR3
/// after the paravisor took its TDREPORT at boot.)
fn verify_tdx_hw(
    verifiers: &Verifiers,
    report: &HclReport<'_>,
    td_quote: &[u8],
    time: VerificationTime,
) -> Result<tdx::VerifiedTdx, AzureCvmError> {
    // The TD quote exactly as `/attest/TdxVm` verifies one (DCAP checks,
    // TDX collateral and the TCB verdict when cached); the binding to the
    // HCL report is checked here, with the report's own hash algorithm.
    let request = AttestRequest {
        evidence: td_quote.to_vec(),
        ..AttestRequest::default()
    };
    let v = tdx::verify(verifiers, &request, time).map_err(|e| match e {
        tdx::TdxError::Dcap(d) => AzureCvmError::Dcap(d),
        // None of them is given to it, so none can occur.
        tdx::TdxError::RuntimeDataMismatch
        | tdx::TdxError::InitTimeDataMismatch
        | tdx::TdxError::Ccel(_) => AzureCvmError::RuntimeDataMismatch,
    })?;
    if !v.report_data.starts_with(&runtime_digest(report)) {
        return Err(AzureCvmError::RuntimeDataMismatch);
    }
    let hw = report.hardware_report();
    let field = |offset: usize, len: usize| hw.get(offset..offset.saturating_add(len));
    if field(TDREPORT_REPORT_DATA, 64) != Some(&v.report_data[..]) {
        return Err(AzureCvmError::TdReportMismatch(
            "REPORTDATA differs (the quote was made for other data)".into(),
        ));
    }
    if field(TDREPORT_MRTD, 48) != Some(&v.mr_td[..]) {
        return Err(AzureCvmError::TdReportMismatch(
            "MRTD differs (the quote is another TD's)".into(),
        ));
    }
    Ok(v)
}

/// Verifies Azure CVM evidence at `time` against the caller's `nonce`
/// (see the module docs for the checks, in order).
pub fn verify_evidence(
    verifiers: &Verifiers,
    evidence: &AzureCvmEvidence,
    nonce: &[u8],
    time: VerificationTime,
) -> Result<VerifiedAzureCvm, AzureCvmError> {
    let report = parse_hcl_report(&evidence.hcl_report)?;
    // Evidence for the other kind of hardware is refused rather than
    // ignored: the client sent something it believes is checked.
    match report.kind {
        HardwareKind::Snp if evidence.td_quote.is_some() => {
            return Err(malformed(
                "TdQuote was sent but the HCL report holds an SEV-SNP report (send VcekCertChain)",
            ));
        }
        HardwareKind::Tdx if !evidence.certs.is_empty() => {
            return Err(malformed(
                "VcekCertChain was sent but the HCL report holds a TDX report (send TdQuote)",
            ));
        }
        _ => {}
    }
    let (snp, tdx) = match report.kind {
        HardwareKind::Snp => (
            Some(verify_snp_hw(verifiers, &report, &evidence.certs, time)?),
            None,
        ),
        HardwareKind::Tdx => {
            let q = evidence
                .td_quote
                .as_deref()
                .ok_or(AzureCvmError::TdQuoteMissing)?;
            (None, Some(verify_tdx_hw(verifiers, &report, q, time)?))
        }
    };
    let runtime: Value = serde_json::from_slice(report.variable_data)
        .map_err(|e| AzureCvmError::RuntimeDataInvalid(format!("it is not JSON: {e}")))?;
    let ak = hcl_ak(&runtime)?;

    let mut bank = std::collections::BTreeMap::new();
    for (index, value) in (0u32..).zip(evidence.quote.pcrs.iter()) {
        bank.insert(index, value.clone());
    }
    let mut values = PcrValues::new();
    values.insert(HashAlg::Sha256, bank);
    let signature = Signature::RsaSsa {
        hash_alg: TPM_ALG_SHA256,
        sig: evidence.quote.signature.clone(),
    };
    let quoted = verify_quote(&evidence.quote.message, &signature, &ak, nonce, &values)
        .map_err(AzureCvmError::Quote)?;
    // Only the PCRs the quote covers are reported: others were not signed.
    let mut pcrs = std::collections::BTreeMap::new();
    for (alg, index) in &quoted.selected {
        if let Some(value) = values.get(alg).and_then(|b| b.get(index)) {
            pcrs.insert(*index, value.clone());
        }
    }
    Ok(VerifiedAzureCvm {
        hardware: report.kind,
        snp,
        tdx,
        runtime,
        pcrs,
        firmware_version: quoted.attest.firmware_version,
    })
}

/// The claims, shaped as Azure's `azurevm` tokens: the VM's own claims at
/// the top level, the hardware's under `x-ms-isolation-tee` (with the HCL
/// runtime JSON as its `x-ms-runtime`, where Azure puts `HCLAkPub`).
pub fn claims(v: &VerifiedAzureCvm) -> Map<String, Value> {
    let mut tee = match (&v.snp, &v.tdx) {
        (Some(snp_v), _) => {
            let mut t = snp::claims::claims(snp_v, &AttestRequest::default());
            t.remove("x-ms-ver");
            t
        }
        (None, Some(tdx_v)) => {
            let mut t = tdx::claims(tdx_v, &AttestRequest::default());
            t.remove("x-ms-ver");
            t
        }
        (None, None) => Map::new(),
    };
    tee.insert("x-ms-runtime".into(), v.runtime.clone());
    let mut c = Map::new();
    c.insert("x-ms-attestation-type".into(), "azurevm".into());
    c.insert(
        "x-ms-azurevm-attested-pcrs".into(),
        v.pcrs.keys().copied().collect::<Vec<_>>().into(),
    );
    if let Some(id) = v
        .runtime
        .pointer("/vm-configuration/vmUniqueId")
        .and_then(Value::as_str)
    {
        c.insert("x-ms-azurevm-vmid".into(), id.into());
    }
    // The MAA TPM claim shape, so TPM policies' JmesPath queries apply.
    let pcrs: Vec<Value> = v
        .pcrs
        .iter()
        .map(|(index, value)| {
            serde_json::json!({"Index": index, "Digests": {"SHA256": hex::encode(value)}})
        })
        .collect();
    c.insert("pcrs".into(), serde_json::json!({ "PCRs": pcrs }));
    c.insert("x-ms-isolation-tee".into(), Value::Object(tee));
    c.insert("x-ms-ver".into(), "1.0".into());
    c
}

fn verify_azure_cvm(
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    if request.runtime_data.is_some() || request.init_time_data.is_some() {
        return Err(AttestError::rejected(
            "InvalidParameter",
            "AzureCvm takes no runtimeData or initTimeData: the runtime data is the HCL report's own, bound by the hardware report",
        ));
    }
    let nonce = request
        .nonce
        .as_deref()
        .ok_or(AzureCvmError::NonceMissing)?;
    let evidence = parse_evidence(&request.evidence)?;
    let v = verify_evidence(verifiers, &evidence, nonce.as_bytes(), time)?;
    let log_summary = match (&v.snp, &v.tdx) {
        (Some(s), _) => format!(
            "azure cvm (sevsnp) measurement {}",
            hex::encode(s.measurement)
        ),
        (None, Some(t)) => format!("azure cvm (tdx) mrtd {}", hex::encode(t.mr_td)),
        (None, None) => "azure cvm".into(),
    };
    Ok(Verified {
        claims: claims(&v),
        facts: crate::Facts::of(v),
        log_summary,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_policy_parses() {
        assert!(aver_policy::Policy::parse(super::DEFAULT_AZURE_CVM_POLICY).is_ok());
    }
}
