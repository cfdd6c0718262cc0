//! Verification of an SNP attestation report with its certificate chain,
//! at a given time. Checks run cheapest first, and each failure has its own
//! error code, so a client learns which part of its evidence is wrong.

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use serde::Serialize;

use super::SnpError;
use super::certs::{KeyKind, Product, SnpTrust, VerifiedChain, split_chain};
use super::report::{
    POLICY_RESERVED_MBZ, POLICY_RESERVED_ONE, SIG_ALGO_ECDSA_P384_SHA384, SigningKey, SnpReport,
    TcbParts, parse_report,
};
use crate::{VerificationTime, sha256};

/// Largest `report` JSON accepted (a report and a chain are about 8 KiB).
const MAX_EVIDENCE_BYTES: usize = 128 * 1024;

/// The evidence of a `/attest/SevSnpVm` request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// The raw attestation report.
    pub report: Vec<u8>,
    /// DER certificates of `VcekCertChain` (empty when absent).
    pub certs: Vec<Vec<u8>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvidence {
    #[serde(rename = "SnpReport")]
    snp_report: String,
    #[serde(rename = "VcekCertChain", default)]
    vcek_cert_chain: Option<String>,
}

/// base64url (or standard base64), padded or not, as the service reads
/// every other base64 field: the bytes are then verified, so the spelling
/// carries no meaning.
fn b64url(text: &str, field: &str) -> Result<Vec<u8>, SnpError> {
    aver_token::b64::decode_lenient(text)
        .ok_or_else(|| SnpError::EvidenceMalformed(format!("{field} is not base64url")))
}

/// Decodes Azure's evidence: the JSON object
/// `{"SnpReport": base64url(report), "VcekCertChain": base64url(PEM chain)}`
/// (what the request's `report` field carries, once base64url-decoded).
pub fn parse_evidence(bytes: &[u8]) -> Result<SnpEvidence, SnpError> {
    if bytes.len() > MAX_EVIDENCE_BYTES {
        return Err(SnpError::EvidenceMalformed(format!(
            "{} bytes, more than {MAX_EVIDENCE_BYTES}",
            bytes.len()
        )));
    }
    let wire: WireEvidence = serde_json::from_slice(bytes).map_err(|e| {
        SnpError::EvidenceMalformed(format!(
            "report must be base64url of a JSON object {{\"SnpReport\": ..., \"VcekCertChain\": ...}}: {e}"
        ))
    })?;
    let report = b64url(&wire.snp_report, "SnpReport")?;
    let certs = match wire.vcek_cert_chain.as_deref() {
        None | Some("") => Vec::new(),
        Some(chain) => split_chain(&b64url(chain, "VcekCertChain")?)?,
    };
    Ok(SnpEvidence { report, certs })
}

/// Encodes Azure's evidence JSON (what a client base64url-encodes into the
/// request's `report` field): the raw report and, when given, the PEM
/// chain (VCEK or VLEK, ASK or ASVK, ARK).
pub fn encode_evidence(report: &[u8], chain_pem: Option<&[u8]>) -> Vec<u8> {
    let mut wire = serde_json::Map::new();
    wire.insert(
        "SnpReport".into(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(report)
            .into(),
    );
    if let Some(pem) = chain_pem {
        wire.insert(
            "VcekCertChain".into(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(pem)
                .into(),
        );
    }
    serde_json::Value::Object(wire).to_string().into_bytes()
}

/// Facts established by a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedSnp {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub is_debuggable: bool,
    pub smt_allowed: bool,
    pub migration_allowed: bool,
    #[serde(with = "hex::serde")]
    pub family_id: [u8; 16],
    #[serde(with = "hex::serde")]
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub platform_info: u64,
    #[serde(with = "hex::serde")]
    pub report_data: [u8; 64],
    #[serde(with = "hex::serde")]
    pub measurement: [u8; 48],
    #[serde(with = "hex::serde")]
    pub host_data: [u8; 32],
    #[serde(with = "hex::serde")]
    pub id_key_digest: [u8; 48],
    #[serde(with = "hex::serde")]
    pub author_key_digest: [u8; 48],
    #[serde(with = "hex::serde")]
    pub report_id: [u8; 32],
    #[serde(with = "hex::serde")]
    pub report_id_ma: [u8; 32],
    pub reported_tcb: TcbParts,
    pub current_tcb: TcbParts,
    pub committed_tcb: TcbParts,
    pub launch_tcb: TcbParts,
    #[serde(with = "hex::serde")]
    pub chip_id: [u8; 64],
    pub signing_key: KeyKind,
    pub product: Product,
    /// The trusted ARK the chain ended at.
    pub root: String,
    /// Whether runtime data was given and matched REPORT_DATA.
    pub runtime_data_bound: bool,
}

/// Verifies a raw SNP report with its chain (`certs`, DER, the VCEK or
/// VLEK first) at `time`, and binds runtime data (SHA-256 = REPORT_DATA
/// [0..32]) and init-time data (SHA-256 = HOST_DATA) when given.
pub fn verify_report(
    trust: &SnpTrust,
    report_bytes: &[u8],
    certs: &[Vec<u8>],
    runtime_data: Option<&[u8]>,
    init_time_data: Option<&[u8]>,
    time: VerificationTime,
) -> Result<VerifiedSnp, SnpError> {
    let report = parse_report(report_bytes)?;
    check_structure(&report)?;
    let selector = match report.signing_key() {
        SigningKey::Vcek => KeyKind::Vcek,
        SigningKey::Vlek => KeyKind::Vlek,
        SigningKey::None => {
            return Err(SnpError::SigningKeyMismatch(
                "the report is unsigned (SIGNING_KEY = 7)".into(),
            ));
        }
        SigningKey::Reserved(v) => {
            return Err(SnpError::SigningKeyMismatch(format!(
                "SIGNING_KEY = {v} is a reserved value"
            )));
        }
    };
    let chain = trust.verify_chain(certs, time)?;
    if chain.kind != selector {
        return Err(SnpError::SigningKeyMismatch(format!(
            "the report says it is signed by the {selector:?} but the certificate is a {:?}",
            chain.kind
        )));
    }
    verify_signature(&report, &chain)?;
    let turin = is_turin(&report, &chain)?;
    check_tcb_reserved(&report, turin)?;
    check_binding(&report, &chain, turin)?;

    let runtime_data_bound = match runtime_data {
        Some(data) => {
            if !report.report_data.starts_with(&sha256(data)) {
                return Err(SnpError::RuntimeDataMismatch);
            }
            true
        }
        None => false,
    };
    if let Some(init) = init_time_data
        && sha256(init) != *report.host_data
    {
        return Err(SnpError::InitTimeDataMismatch);
    }
    Ok(VerifiedSnp {
        version: report.version,
        guest_svn: report.guest_svn,
        policy: report.policy,
        is_debuggable: report.is_debuggable(),
        smt_allowed: report.smt_allowed(),
        migration_allowed: report.migration_allowed(),
        family_id: *report.family_id,
        image_id: *report.image_id,
        vmpl: report.vmpl,
        platform_info: report.platform_info,
        report_data: *report.report_data,
        measurement: *report.measurement,
        host_data: *report.host_data,
        id_key_digest: *report.id_key_digest,
        author_key_digest: *report.author_key_digest,
        report_id: *report.report_id,
        report_id_ma: *report.report_id_ma,
        reported_tcb: report.reported_tcb.parts(turin),
        current_tcb: report.current_tcb.parts(turin),
        committed_tcb: report.committed_tcb.parts(turin),
        launch_tcb: report.launch_tcb.parts(turin),
        chip_id: *report.chip_id,
        signing_key: chain.kind,
        product: chain.product,
        root: chain.root,
        runtime_data_bound,
    })
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Version, signature algorithm, reserved fields and guest-policy bits:
/// what the ABI specification fixes, before any cryptography.
fn check_structure(report: &SnpReport<'_>) -> Result<(), SnpError> {
    if !matches!(report.version, 2 | 3 | 5) {
        return Err(SnpError::UnsupportedVersion(report.version));
    }
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(SnpError::UnsupportedSignatureAlgorithm(
            report.signature_algo,
        ));
    }
    if report.policy & POLICY_RESERVED_ONE == 0 {
        return Err(SnpError::GuestPolicyInvalid(
            "has bit 17 clear; the ABI reserves it and requires it set".into(),
        ));
    }
    if report.policy & POLICY_RESERVED_MBZ != 0 {
        return Err(SnpError::GuestPolicyInvalid(format!(
            "0x{:x} sets reserved bits 63:26",
            report.policy
        )));
    }
    if report.vmpl > 3 {
        return Err(SnpError::ReservedNonZero("VMPL (values above 3)"));
    }
    if report.key_info >> 5 != 0 {
        return Err(SnpError::ReservedNonZero("0x48 bits 31:5"));
    }
    if report.reserved_4c != 0 {
        return Err(SnpError::ReservedNonZero("0x4C"));
    }
    if report.version < 3 && !all_zero(report.cpuid) {
        return Err(SnpError::ReservedNonZero("0x188 (CPUID fields before v3)"));
    }
    if !all_zero(report.reserved_18b) {
        return Err(SnpError::ReservedNonZero("0x18B..0x1A0"));
    }
    if report.current_version.get(3) != Some(&0) {
        return Err(SnpError::ReservedNonZero("0x1EB"));
    }
    if report.committed_version.get(3) != Some(&0) {
        return Err(SnpError::ReservedNonZero("0x1EF"));
    }
    if report.version < 5 && !all_zero(report.mit_vectors) {
        return Err(SnpError::ReservedNonZero(
            "0x1F8..0x208 (mitigation vectors before v5)",
        ));
    }
    if !all_zero(report.reserved_208) {
        return Err(SnpError::ReservedNonZero("0x208..0x2A0"));
    }
    if !all_zero(report.signature_reserved) {
        return Err(SnpError::ReservedNonZero("signature bytes 0x90..0x200"));
    }
    Ok(())
}

/// ECDSA P-384 over bytes 0x000..0x2A0; R and S are little-endian, each
/// in 72 bytes of which the upper 24 must be zero.
fn verify_signature(report: &SnpReport<'_>, chain: &VerifiedChain) -> Result<(), SnpError> {
    let mut sig = [0u8; 96];
    let (r_out, s_out) = sig.split_at_mut(48);
    for (input, out, name) in [
        (report.signature_r, r_out, "R"),
        (report.signature_s, s_out, "S"),
    ] {
        let (low, high) = input.split_at(48);
        if !all_zero(high) {
            return Err(SnpError::ReportSignatureInvalid(format!(
                " ({name} has non-zero bytes beyond the 48 of a P-384 scalar)"
            )));
        }
        for (o, i) in out.iter_mut().zip(low.iter().rev()) {
            *o = *i;
        }
    }
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &chain.public_key)
        .verify(report.signed, &sig)
        .map_err(|_| SnpError::ReportSignatureInvalid(String::new()))
}

/// Turin changed the TCB layout: the certificate's issuer says which
/// generation signed; a v3+ report's CPUID family must agree with it.
fn is_turin(report: &SnpReport<'_>, chain: &VerifiedChain) -> Result<bool, SnpError> {
    let by_cert = match chain.product {
        Product::Turin => Some(true),
        Product::Milan | Product::Genoa => Some(false),
        Product::Other(_) => None,
    };
    let by_cpuid = report.cpuid_family().map(|f| f >= 0x1A);
    match (by_cert, by_cpuid) {
        (Some(a), Some(b)) if a != b => Err(SnpError::TcbMismatch(format!(
            "the report's CPUID family 0x{:02x} is not the generation of the certificate ({:?})",
            report.cpuid_family().unwrap_or_default(),
            chain.product
        ))),
        (Some(a), _) => Ok(a),
        (None, Some(b)) => Ok(b),
        (None, None) => Ok(false),
    }
}

fn check_tcb_reserved(report: &SnpReport<'_>, turin: bool) -> Result<(), SnpError> {
    for (tcb, name) in [
        (&report.current_tcb, "CURRENT_TCB reserved bytes"),
        (&report.reported_tcb, "REPORTED_TCB reserved bytes"),
        (&report.committed_tcb, "COMMITTED_TCB reserved bytes"),
        (&report.launch_tcb, "LAUNCH_TCB reserved bytes"),
    ] {
        if !all_zero(&tcb.reserved_bytes(turin)) {
            return Err(SnpError::ReservedNonZero(name));
        }
    }
    Ok(())
}

/// The certificate must be for this report: its TCB extensions equal
/// REPORTED_TCB (the VCEK/VLEK is derived from that TCB), and a VCEK's
/// hardware ID equals CHIP_ID (its first 8 bytes on Turin).
fn check_binding(
    report: &SnpReport<'_>,
    chain: &VerifiedChain,
    turin: bool,
) -> Result<(), SnpError> {
    let reported = report.reported_tcb.parts(turin);
    let mut expected = vec![
        ("bootloader", chain.tcb.bootloader, reported.bootloader),
        ("TEE", chain.tcb.tee, reported.tee),
        ("SNP firmware", chain.tcb.snp, reported.snp),
        ("microcode", chain.tcb.microcode, reported.microcode),
    ];
    if let Some(fmc) = reported.fmc {
        expected.push(("FMC", chain.tcb.fmc, fmc));
    }
    for (name, cert, report_svn) in expected {
        match cert {
            None => {
                return Err(SnpError::CertificateChainMalformed(format!(
                    "the {:?} certificate has no {name} SVN extension",
                    chain.kind
                )));
            }
            Some(c) if c != report_svn => {
                return Err(SnpError::TcbMismatch(format!(
                    "{name} SVN is {c} in the certificate but {report_svn} in the report"
                )));
            }
            Some(_) => {}
        }
    }
    if chain.kind == KeyKind::Vcek {
        let Some(hwid) = &chain.hwid else {
            return Err(SnpError::CertificateChainMalformed(
                "the VCEK has no hardware ID extension".into(),
            ));
        };
        let expected_len = if turin { 8 } else { 64 };
        if hwid.len() != expected_len || !report.chip_id.starts_with(hwid) {
            return Err(SnpError::ChipIdMismatch);
        }
    }
    Ok(())
}
