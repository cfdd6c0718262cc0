//! SGX enclaves: `SgxEnclave` (a DCAP quote) and `OpenEnclave` (the same
//! quote behind OpenEnclave's 16-byte report header).
//!
//! Parsing and the quote's signatures are the shared [`crate::dcap`] path;
//! what is SGX-specific lives here: the OpenEnclave header, the binding of
//! runtime data to `report_data[0..32]` and of init-time data to
//! `CONFIGID[0..32]`, and the `x-ms-sgx-*` claims Azure Attestation issues
//! (with the deprecated aliases its tokens still carry).

use aver_codec::{ParseError, Reader};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::dcap::{
    Collateral, DcapError, DcapVerifier, Quote, TcbAcceptance, TcbVerdict, VerifiedCollateral,
    parse_quote,
};
use crate::error::AttestError;
use crate::registry::{AttestationType, Flow};
use crate::request::AttestRequest;
use crate::{VerificationTime, Verified, Verifiers, sha256};

/// The shared-provider default SGX policy of Azure Attestation (2022),
/// byte for byte: its `x-ms-policy-hash` is
/// `bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw`.
pub const DEFAULT_SGX_POLICY: &str = include_str!("../../policies/sgx-default.txt");

/// `/attest/SgxEnclave`: `{"quote": base64url(DCAP quote), ...}`.
pub const SGX_ENCLAVE: AttestationType = AttestationType {
    name: "SgxEnclave",
    flow: Flow::SingleShot {
        evidence_field: "quote",
        verify: verify_sgx_enclave,
    },
    default_policy: Some(DEFAULT_SGX_POLICY),
    legacy_aliases: true,
    policy_only_claims: &[],
};

/// `/attest/OpenEnclave`: `{"report": base64url(OE report), ...}`.
pub const OPEN_ENCLAVE: AttestationType = AttestationType {
    name: "OpenEnclave",
    flow: Flow::SingleShot {
        evidence_field: "report",
        verify: verify_open_enclave,
    },
    default_policy: Some(DEFAULT_SGX_POLICY),
    legacy_aliases: true,
    policy_only_claims: &[],
};

/// Which wire format carried the quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SgxEvidenceKind {
    /// A bare DCAP quote (`/attest/SgxEnclave`).
    #[serde(rename = "sgx-quote")]
    Quote,
    /// An OpenEnclave report: 16-byte header + quote (`/attest/OpenEnclave`).
    #[serde(rename = "openenclave-report")]
    OpenEnclaveReport,
}

/// Why SGX evidence was rejected; [`SgxError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SgxError {
    #[error(transparent)]
    Dcap(#[from] DcapError),
    #[error("SHA-256 of the runtime data does not match report_data[0..32] of the quote")]
    RuntimeDataMismatch,
    #[error("SHA-256 of initTimeData does not match CONFIGID[0..32] of the enclave")]
    InitTimeDataMismatch,
}

impl SgxError {
    pub fn code(&self) -> &'static str {
        match self {
            SgxError::Dcap(e) => e.code(),
            SgxError::RuntimeDataMismatch => "RuntimeDataMismatch",
            SgxError::InitTimeDataMismatch => "InitTimeDataMismatch",
        }
    }
}

impl From<ParseError> for SgxError {
    fn from(e: ParseError) -> Self {
        SgxError::Dcap(DcapError::InvalidQuote(e))
    }
}

/// Facts established by a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedSgx {
    pub kind: SgxEvidenceKind,
    #[serde(with = "hex::serde")]
    pub mr_enclave: [u8; 32],
    #[serde(with = "hex::serde")]
    pub mr_signer: [u8; 32],
    pub product_id: u16,
    pub svn: u16,
    pub is_debuggable: bool,
    #[serde(with = "hex::serde")]
    pub attributes: [u8; 16],
    #[serde(with = "hex::serde")]
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    #[serde(with = "hex::serde")]
    pub report_data: [u8; 64],
    #[serde(with = "hex::serde")]
    pub config_id: [u8; 64],
    pub config_svn: u16,
    #[serde(with = "hex::serde")]
    pub isv_ext_prod_id: [u8; 16],
    #[serde(with = "hex::serde")]
    pub isv_family_id: [u8; 16],
    pub qe_svn: u16,
    pub pce_svn: u16,
    /// SHA-256 of the evidence exactly as submitted (for an OpenEnclave
    /// report, header included, as Azure Attestation computes `quotehash`).
    #[serde(with = "hex::serde")]
    pub evidence_hash: [u8; 32],
    /// Whether runtime data was given and matched report_data.
    pub runtime_data_bound: bool,
    /// The TCB verdict, when the quote was verified with collateral.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb: Option<TcbVerdict>,
}

/// Size of the OpenEnclave report header.
pub const OE_HEADER_LEN: usize = 16;

/// Parses an OpenEnclave remote report: `u32 version = 1`, `u32 type = 2`
/// (SGX remote report), `u64 size` of the quote that follows, the quote.
pub fn parse_openenclave_report(bytes: &[u8]) -> Result<Quote<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let version = r.u32_le("oe_header.version")?;
    if version != 1 {
        return Err(ParseError::invalid("oe_header.version", "must be 1"));
    }
    let report_type = r.u32_le("oe_header.type")?;
    if report_type != 2 {
        return Err(ParseError::invalid(
            "oe_header.type",
            "must be 2 (SGX remote report)",
        ));
    }
    let size = r.u64_le("oe_header.size")?;
    let quote = r.rest();
    if u64::try_from(quote.len()).ok() != Some(size) {
        return Err(ParseError::invalid(
            "oe_header.size",
            format!("the header says {size} bytes but {} follow", quote.len()),
        ));
    }
    parse_quote(quote)
}

/// Verifies SGX evidence from a request at `time`: with the cached
/// collateral of the quote's FMSPC when there is some (the TCB verdict,
/// held to the accepted statuses); without, as configured
/// ([`Verifiers::require_collateral`]).
pub fn verify(
    kind: SgxEvidenceKind,
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<VerifiedSgx, SgxError> {
    // The FMSPC only picks the cache entry: every byte it came from is
    // verified below.
    let fmspc = parse_sgx(kind, &request.evidence).ok().and_then(|q| {
        verifiers
            .dcap
            .chain_cache()
            .identity(q.qe.pck_chain_pem, || quote_fmspc(&q))
    });
    // The TCB evaluation data number the policy (or else the service)
    // pins as its baseline; `None`: the newest collateral held.
    let baseline = match request.tcb_baseline {
        crate::TcbBaseline::EvaluationDataNumber(n) => Some(n),
        crate::TcbBaseline::ServiceDefault => verifiers.default_tcb_baseline,
    };
    let cached = fmspc.and_then(|(fmspc, _)| match baseline {
        Some(n) => verifiers
            .collateral
            .get_baseline(crate::dcap::TeeType::Sgx, &fmspc, n, time),
        None => verifiers.collateral.get(&fmspc, time),
    });
    if let Some(c) = cached {
        let v = verify_evidence_with_collateral(
            kind,
            &verifiers.dcap,
            &request.evidence,
            request.runtime_data.as_ref().map(|d| d.bytes.as_slice()),
            request.init_time_data.as_ref().map(|d| d.bytes.as_slice()),
            &c,
            time,
        )?;
        if let Some(t) = &v.tcb {
            verifiers.tcb_acceptance.check(t)?;
        }
        return Ok(v);
    }
    let v = verify_evidence(
        kind,
        &verifiers.dcap,
        &request.evidence,
        request.runtime_data.as_ref().map(|d| d.bytes.as_slice()),
        request.init_time_data.as_ref().map(|d| d.bytes.as_slice()),
        None,
        time,
    )?;
    if let Some((fmspc, ca)) = fmspc {
        // Only a quote whose PCK chain leads to a trusted root asks for
        // collateral: a forged certificate cannot make the service fetch
        // collateral for FMSPCs of its choosing.
        if let Some(n) = baseline {
            // A pinned baseline is never silently skipped: the policy asked
            // for this judgement, and no other collateral stands in for it.
            verifiers
                .collateral
                .note_baseline_miss(crate::dcap::TeeType::Sgx, fmspc, n, ca);
            return Err(SgxError::Dcap(DcapError::Collateral(
                crate::dcap::CollateralError::BaselineUnavailable(format!(
                    "the TCB baseline selects TCB evaluation data number {n}, and no valid collateral (TCB info and QE identity) with that number is held for FMSPC {}; import it (aver collateral import), let the service fetch it from a PCCS, or choose a baseline that /tcbbaselines lists",
                    hex::encode_upper(fmspc)
                )),
            )));
        }
        verifiers.collateral.note_miss(fmspc, ca);
        if verifiers.require_collateral {
            return Err(SgxError::Dcap(DcapError::Collateral(
                crate::dcap::CollateralError::Missing(format!(
                    "no valid collateral (TCB info, QE identity, CRLs) is cached for FMSPC {}; import it (aver collateral import) or let the service fetch it",
                    hex::encode_upper(fmspc)
                )),
            )));
        }
    }
    Ok(v)
}

/// Verifies SGX evidence at `time`: parse, the DCAP checks (with
/// `collateral`'s CRLs only, no TCB verdict), runtime data against
/// `report_data[0..32]` and init-time data against `CONFIGID[0..32]` (when
/// given).
pub fn verify_evidence(
    kind: SgxEvidenceKind,
    dcap: &DcapVerifier,
    evidence: &[u8],
    runtime_data: Option<&[u8]>,
    init_time_data: Option<&[u8]>,
    collateral: Option<&Collateral>,
    time: VerificationTime,
) -> Result<VerifiedSgx, SgxError> {
    let quote = parse_sgx(kind, evidence)?;
    dcap.verify(&quote, collateral, time)?;
    finish(kind, &quote, evidence, runtime_data, init_time_data, None)
}

/// Verifies SGX evidence at `time` with full, verified collateral: the
/// DCAP checks with its CRLs, the bindings, and the TCB verdict
/// ([`DcapVerifier::verify_with_collateral`]). Whether the verdict's status
/// is accepted is the caller's (`TcbAcceptance::check`), so that a
/// refused verdict can still be shown.
pub fn verify_evidence_with_collateral(
    kind: SgxEvidenceKind,
    dcap: &DcapVerifier,
    evidence: &[u8],
    runtime_data: Option<&[u8]>,
    init_time_data: Option<&[u8]>,
    collateral: &VerifiedCollateral,
    time: VerificationTime,
) -> Result<VerifiedSgx, SgxError> {
    let quote = parse_sgx(kind, evidence)?;
    let verdict = dcap.verify_with_collateral(&quote, collateral, time)?;
    finish(
        kind,
        &quote,
        evidence,
        runtime_data,
        init_time_data,
        Some(verdict),
    )
}

/// The FMSPC the quote's PCK certificate states and its CA's kind
/// (`processor` or `platform`), unverified: a cache key.
pub(crate) fn quote_fmspc(quote: &Quote<'_>) -> Option<([u8; 6], &'static str)> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let leaf = CertificateDer::pem_slice_iter(quote.qe.pck_chain_pem)
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let fmspc = crate::dcap::pck_ext::from_certificate(&cert).ok()?.fmspc;
    let ca = if cert.issuer().to_string().contains("Platform") {
        "platform"
    } else {
        "processor"
    };
    Some((fmspc, ca))
}

fn parse_sgx(kind: SgxEvidenceKind, evidence: &[u8]) -> Result<Quote<'_>, SgxError> {
    let quote = match kind {
        SgxEvidenceKind::Quote => parse_quote(evidence)?,
        SgxEvidenceKind::OpenEnclaveReport => parse_openenclave_report(evidence)?,
    };
    if quote.sgx_report().is_none() {
        return Err(SgxError::Dcap(DcapError::InvalidQuote(
            ParseError::invalid("header.tee_type", "not an SGX quote"),
        )));
    }
    Ok(quote)
}

fn finish(
    kind: SgxEvidenceKind,
    quote: &Quote<'_>,
    evidence: &[u8],
    runtime_data: Option<&[u8]>,
    init_time_data: Option<&[u8]>,
    tcb: Option<TcbVerdict>,
) -> Result<VerifiedSgx, SgxError> {
    let Some(b) = quote.sgx_report() else {
        return Err(SgxError::Dcap(DcapError::InvalidQuote(
            ParseError::invalid("header.tee_type", "not an SGX quote"),
        )));
    };
    let runtime_data_bound = match runtime_data {
        Some(data) => {
            if !b.report_data.starts_with(&sha256(data)) {
                return Err(SgxError::RuntimeDataMismatch);
            }
            true
        }
        None => false,
    };
    if let Some(init) = init_time_data {
        // Azure: SHA-256(initTimeData) must equal the lower 32 bytes of the
        // enclave's CONFIGID (set at launch on platforms with KSS).
        if !b.config_id.starts_with(&sha256(init)) {
            return Err(SgxError::InitTimeDataMismatch);
        }
    }
    Ok(VerifiedSgx {
        kind,
        mr_enclave: *b.mr_enclave,
        mr_signer: *b.mr_signer,
        product_id: b.isv_prod_id,
        svn: b.isv_svn,
        is_debuggable: b.is_debuggable(),
        attributes: *b.attributes,
        cpu_svn: *b.cpu_svn,
        misc_select: b.misc_select,
        report_data: *b.report_data,
        config_id: *b.config_id,
        config_svn: b.config_svn,
        isv_ext_prod_id: *b.isv_ext_prod_id,
        isv_family_id: *b.isv_family_id,
        qe_svn: quote.header.qe_svn,
        pce_svn: quote.header.pce_svn,
        evidence_hash: sha256(evidence),
        runtime_data_bound,
        tcb,
    })
}

/// A request verified with full collateral, its TCB status held to
/// `acceptance` (a refusal names the status and its advisories): what the
/// CLI's `--collateral` runs, and the service once its collateral cache
/// answers.
pub fn verify_request_with_collateral(
    kind: SgxEvidenceKind,
    dcap: &DcapVerifier,
    request: &AttestRequest,
    collateral: &VerifiedCollateral,
    acceptance: &TcbAcceptance,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    let v = verify_evidence_with_collateral(
        kind,
        dcap,
        &request.evidence,
        request.runtime_data.as_ref().map(|d| d.bytes.as_slice()),
        request.init_time_data.as_ref().map(|d| d.bytes.as_slice()),
        collateral,
        time,
    )?;
    if let Some(t) = &v.tcb {
        acceptance.check(t)?;
    }
    Ok(verified(v, request))
}

fn verify_sgx_enclave(
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    let v = verify(SgxEvidenceKind::Quote, verifiers, request, time)?;
    Ok(verified(v, request))
}

fn verify_open_enclave(
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    let v = verify(SgxEvidenceKind::OpenEnclaveReport, verifiers, request, time)?;
    Ok(verified(v, request))
}

fn verified(v: VerifiedSgx, request: &AttestRequest) -> Verified {
    Verified {
        claims: claims(&v, request),
        log_summary: format!("mrenclave {}", hex::encode(v.mr_enclave)),
        facts: crate::Facts::of(v),
    }
}

/// The `x-ms-*` claims for verified SGX evidence, with the deprecated
/// aliases Azure Attestation still emits.
pub fn claims(v: &VerifiedSgx, request: &AttestRequest) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("x-ms-ver".into(), "1.0".into());
    c.insert("x-ms-attestation-type".into(), "sgx".into());
    c.insert("x-ms-sgx-is-debuggable".into(), v.is_debuggable.into());
    c.insert(
        "x-ms-sgx-mrenclave".into(),
        hex::encode(v.mr_enclave).into(),
    );
    c.insert("x-ms-sgx-mrsigner".into(), hex::encode(v.mr_signer).into());
    c.insert("x-ms-sgx-product-id".into(), v.product_id.into());
    c.insert("x-ms-sgx-svn".into(), v.svn.into());
    c.insert(
        "x-ms-sgx-report-data".into(),
        hex::encode(v.report_data).into(),
    );
    // Key Separation and Sharing fields, present only on platforms that use them.
    if v.config_id.iter().any(|b| *b != 0) || v.config_svn != 0 {
        c.insert("x-ms-sgx-config-id".into(), hex::encode(v.config_id).into());
        c.insert("x-ms-sgx-config-svn".into(), v.config_svn.into());
    }
    if v.isv_ext_prod_id.iter().any(|b| *b != 0) {
        c.insert(
            "x-ms-sgx-isv-extended-product-id".into(),
            hex::encode(v.isv_ext_prod_id).into(),
        );
    }
    if v.isv_family_id.iter().any(|b| *b != 0) {
        c.insert(
            "x-ms-sgx-isv-family-id".into(),
            hex::encode(v.isv_family_id).into(),
        );
    }
    let collateral = match &v.tcb {
        // Azure's seven hashes: the quote's and the collateral items'.
        Some(t) => {
            let h = &t.collateral_hashes;
            json!({
                "qeidcertshash": h.qeidcertshash,
                "qeidcrlhash": h.qeidcrlhash,
                "qeidhash": h.qeidhash,
                "quotehash": hex::encode(v.evidence_hash),
                "tcbinfocertshash": h.tcbinfocertshash,
                "tcbinfocrlhash": h.tcbinfocrlhash,
                "tcbinfohash": h.tcbinfohash,
            })
        }
        None => json!({ "quotehash": hex::encode(v.evidence_hash) }),
    };
    c.insert("x-ms-sgx-collateral".into(), collateral.clone());
    c.insert("maa-attestationcollateral".into(), collateral);
    if let Some(t) = &v.tcb {
        tcb_claims(&mut c, t);
    }
    if let Some(runtime) = &request.runtime_data {
        match &runtime.json {
            Some(json) => {
                c.insert("x-ms-runtime".into(), json.clone());
            }
            None => {
                let ehd = Value::String(aver_token::b64::encode_url(&runtime.bytes));
                c.insert("x-ms-sgx-ehd".into(), ehd.clone());
                c.insert("maa-ehd".into(), ehd.clone());
                c.insert("aas-ehd".into(), ehd);
            }
        }
    }
    if let Some(json) = request.init_time_data.as_ref().and_then(|d| d.json.clone()) {
        c.insert("x-ms-inittime".into(), json);
    }
    c
}

/// The TCB verdict as claims policies can read (Aver's; Azure states the
/// verdict only by accepting or refusing).
fn tcb_claims(c: &mut Map<String, Value>, t: &TcbVerdict) {
    c.insert("x-ms-sgx-tcb-status".into(), t.status.as_str().into());
    c.insert(
        "x-ms-sgx-tcb-advisory-ids".into(),
        Value::Array(t.advisory_ids.iter().map(|a| a.as_str().into()).collect()),
    );
    c.insert(
        "x-ms-sgx-tcb-evaluation-data-number".into(),
        t.tcb_evaluation_data_number.into(),
    );
    c.insert("x-ms-sgx-tcb-date".into(), t.tcb_date.as_str().into());
    c.insert("x-ms-sgx-qe-tcb-status".into(), t.qe_status.as_str().into());
    c.insert("x-ms-sgx-fmspc".into(), t.fmspc.as_str().into());
    c.insert(
        "x-ms-sgx-collateral-expiry".into(),
        t.collateral_expiry.as_str().into(),
    );
}
