//! Intel TDX trust domains (`/attest/TdxVm`), in Azure Attestation's wire
//! shape and with the claims of Azure's TDX EAT profile.
//!
//! The request is Azure's: `{"quote": base64url(TDX DCAP quote v4/v5),
//! "runtimeData"?: {data, dataType}, "initTimeData"?: {data, dataType},
//! "nonce"?}`. Azure's TdxVm request has no draft-policy field; Aver's
//! decoder is the same for every type, so a `draftPolicyForAttestation`
//! is accepted here too and behaves as for the other types (the policy is
//! evaluated, the token is unsigned). Clients written for Azure never send
//! it, so nothing they do changes.
//!
//! Parsing and the quote's signatures are the shared [`crate::dcap`] path;
//! what is TDX-specific lives here:
//!
//! * the TCB verdict with the cached TDX collateral of the quote's FMSPC
//!   (TCB info `id` TDX, the `TD_QE` identity), held to the provider's
//!   accepted statuses; without collateral, as for SGX
//!   ([`Verifiers::require_collateral`]), with `attester_tcb_status`
//!   `Unknown`;
//! * runtime data bound to `REPORT_DATA[0..32]` (SHA-256), init-time data
//!   to `MRCONFIGID[0..32]` (SHA-256; Azure does not document a TDX binding
//!   for init-time data, and MRCONFIGID is the TD's launch-time
//!   configuration, as CONFIGID is an enclave's);
//! * the claims ([`claims`]);
//! * when the request carries a CCEL event log (`ccelEventLog`, an Aver
//!   extension), its replay to the verified quote's RTMR0–2 (and RTMR3 when
//!   the log extends it) with [`aver_tpm::ccel::verify_ccel`], and the log
//!   as claims (`x-aver-ccel-*`, [`ccel_claims`]). A log that does not
//!   parse is `EventLogMalformed`, one that does not replay
//!   `EventLogReplayMismatch` naming the register and its last event.
//!
//! A debug TD verifies: `dbgstat` says `enabled` and
//! `tdx_td_attributes_debug` is true, and the policy decides. The default
//! policy ([`DEFAULT_TDX_POLICY`]) refuses debug TDs; a provider that wants
//! them sets a policy that permits them.

use aver_codec::ParseError;
use aver_tpm::ccel::CcelError;
use aver_tpm::eventlog::EventLog;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::dcap::{
    DcapError, DcapVerifier, Quote, TcbAcceptance, TcbVerdict, TeeType, VerifiedCollateral,
    parse_quote,
};
use crate::error::AttestError;
use crate::registry::{AttestationType, Flow};
use crate::request::AttestRequest;
use crate::{VerificationTime, Verified, Verifiers, sha256};

/// Aver's default TdxVm policy: permit every verified quote except a
/// debug TD's, issue nothing. (Azure publishes no default TdxVm policy; a
/// debug TD's memory is readable by the host, so nothing it says should
/// be trusted unless a provider says so.)
pub const DEFAULT_TDX_POLICY: &str = include_str!("../../policies/tdxvm-default.txt");

/// The `eat_profile` claim of Azure's TDX tokens.
pub const EAT_PROFILE: &str = "https://aka.ms/maa-eat-profile-tdxvm";

/// `/attest/TdxVm`: `{"quote": base64url(TDX quote), ...}`.
pub const TDX_VM: AttestationType = AttestationType {
    name: "TdxVm",
    flow: Flow::SingleShot {
        evidence_field: "quote",
        verify: verify_tdx_vm,
    },
    default_policy: Some(DEFAULT_TDX_POLICY),
    legacy_aliases: false,
    // The CCEL events (tens of KiB) are a policy input, kept out of tokens
    // as the TPM `events` claim is; a policy that wants them issues them.
    policy_only_claims: &[CCEL_EVENTS_CLAIM],
};

/// Claim `true` when a CCEL event log was sent and replayed to the quote's
/// RTMRs (absent without a log; a log that does not replay is an error).
pub const CCEL_REPLAYED_CLAIM: &str = "x-aver-ccel-replayed";

/// Whether Intel's TCB evaluation advises relaunching the TD (TD 1.5: the
/// TD is out of date only because it was launched before a TD-preserving
/// TDX module update); present when the quote was judged with collateral.
pub const TD_RELAUNCH_ADVISED_CLAIM: &str = "x-aver-td-relaunch-advised";
/// Claim: the RTMR indices the CCEL replay was compared with (`[0,1,2]`,
/// with 3 when the log extends RTMR3).
pub const CCEL_RTMRS_CLAIM: &str = "x-aver-ccel-rtmrs";
/// Claim (policy-only): the CCEL events in the TPM `events` claim's shape,
/// each with its `Rtmr`.
pub const CCEL_EVENTS_CLAIM: &str = "x-aver-ccel-events";

/// TD_ATTRIBUTES bits (Intel TDX module ABI, TDREPORT): bit 0 DEBUG.
const TD_ATTR_DEBUG: u64 = 1;
/// Bit 28: SEPT_VE_DISABLE (EPT violations are not turned into #VE).
const TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// Bit 30: PKS, supervisor protection keys.
const TD_ATTR_PKS: u64 = 1 << 30;
/// Bit 31: KL, Key Locker.
const TD_ATTR_KL: u64 = 1 << 31;
/// Bit 63: PERFMON, the TD may use the performance monitoring counters.
const TD_ATTR_PERFMON: u64 = 1 << 63;

/// Why TDX evidence was rejected; [`TdxError::code`] is stable
/// (`docs/errors.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxError {
    #[error(transparent)]
    Dcap(#[from] DcapError),
    #[error("SHA-256 of the runtime data does not match REPORT_DATA[0..32] of the TD quote")]
    RuntimeDataMismatch,
    #[error("SHA-256 of initTimeData does not match MRCONFIGID[0..32] of the TD")]
    InitTimeDataMismatch,
    /// The CCEL event log does not parse or does not replay to the RTMRs.
    #[error(transparent)]
    Ccel(#[from] CcelError),
}

impl TdxError {
    pub fn code(&self) -> &'static str {
        match self {
            TdxError::Dcap(e) => e.code(),
            TdxError::RuntimeDataMismatch => "RuntimeDataMismatch",
            TdxError::InitTimeDataMismatch => "InitTimeDataMismatch",
            TdxError::Ccel(e) => e.code(),
        }
    }
}

impl From<ParseError> for TdxError {
    fn from(e: ParseError) -> Self {
        TdxError::Dcap(DcapError::InvalidQuote(e))
    }
}

/// Facts established by a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedTdx {
    pub quote_version: u16,
    #[serde(with = "hex::serde")]
    pub tee_tcb_svn: [u8; 16],
    #[serde(with = "hex::serde")]
    pub mr_seam: [u8; 48],
    #[serde(with = "hex::serde")]
    pub mr_signer_seam: [u8; 48],
    #[serde(with = "hex::serde")]
    pub seam_attributes: [u8; 8],
    #[serde(with = "hex::serde")]
    pub td_attributes: [u8; 8],
    #[serde(with = "hex::serde")]
    pub xfam: [u8; 8],
    #[serde(with = "hex::serde")]
    pub mr_td: [u8; 48],
    #[serde(with = "hex::serde")]
    pub mr_config_id: [u8; 48],
    #[serde(with = "hex::serde")]
    pub mr_owner: [u8; 48],
    #[serde(with = "hex::serde")]
    pub mr_owner_config: [u8; 48],
    #[serde(serialize_with = "rtmrs_hex")]
    pub rtmr: [[u8; 48]; 4],
    #[serde(with = "hex::serde")]
    pub report_data: [u8; 64],
    /// SHA-256 of the quote exactly as submitted.
    #[serde(with = "hex::serde")]
    pub evidence_hash: [u8; 32],
    /// Whether runtime data was given and matched REPORT_DATA.
    pub runtime_data_bound: bool,
    /// The TCB verdict, when the quote was verified with collateral.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb: Option<TcbVerdict>,
    /// The CCEL event log, when one was sent and replayed to the RTMRs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ccel: Option<VerifiedCcel>,
}

/// A CCEL event log that replayed to the quote's RTMRs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedCcel {
    /// The RTMRs compared (and equal): 0–2, and 3 when the log extends it.
    pub rtmrs: Vec<usize>,
    /// Records in the log, the `Spec ID Event03` header included.
    pub records: usize,
    /// Extended events per RTMR.
    pub events_per_rtmr: [usize; 4],
    /// Padding bytes after the log in the area sent, and their value.
    pub padding_bytes: usize,
    pub padding_byte: u8,
    /// The `x-aver-ccel-events` claim ([`ccel_claims`]), built while the
    /// request's area is at hand: the parsed log borrows from that area
    /// ([`aver_tpm::eventlog::EventLog`]), so what outlives it is what was
    /// derived from it (not in the verdict's facts).
    #[serde(skip)]
    pub events: Value,
}

/// Replays the request's CCEL event log, if any, against the verified
/// quote's RTMRs. Runs after the quote's checks: its RTMRs are only worth
/// comparing with once the quote is known to be genuine.
fn check_ccel(mut v: VerifiedTdx, request: &AttestRequest) -> Result<VerifiedTdx, TdxError> {
    if let Some(area) = &request.ccel_event_log {
        let r = aver_tpm::ccel::verify_ccel(area, &v.rtmr)?;
        v.ccel = Some(VerifiedCcel {
            rtmrs: r.compared(),
            records: r.log.events.len(),
            events_per_rtmr: r.events,
            padding_bytes: r.log.trailing_zero_bytes,
            padding_byte: r.padding,
            events: ccel_events_claim(&r.log),
        });
    }
    Ok(v)
}

fn rtmrs_hex<S: serde::Serializer>(v: &[[u8; 48]; 4], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(hex::encode))
}

impl VerifiedTdx {
    /// TD_ATTRIBUTES as the little-endian 64-bit value the TDX ABI defines.
    pub fn td_attributes_bits(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }

    /// TD_ATTRIBUTES.DEBUG: the host can read and change the TD's state.
    pub fn is_debug(&self) -> bool {
        self.td_attributes_bits() & TD_ATTR_DEBUG != 0
    }

    /// The TDX module's SEAM SVN: TEE_TCB_SVN[0] (minor) and [1] (major)
    /// as one little-endian 16-bit number, as Intel defines SEAMSVN.
    pub fn seam_svn(&self) -> u16 {
        let [minor, major, ..] = self.tee_tcb_svn;
        u16::from_le_bytes([minor, major])
    }
}

/// Verifies TDX evidence from a request at `time`: with the cached TDX
/// collateral of the quote's FMSPC when there is some (the TCB verdict,
/// held to the accepted statuses); without, as configured
/// ([`Verifiers::require_collateral`]).
pub fn verify(
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<VerifiedTdx, TdxError> {
    let runtime = request.runtime_data.as_ref().map(|d| d.bytes.as_slice());
    let init = request.init_time_data.as_ref().map(|d| d.bytes.as_slice());
    // Parsed first so that a malformed or SGX quote is named as such; the
    // FMSPC only picks the cache entry: every byte it came from is
    // verified below.
    let quote = parse_tdx(&request.evidence)?;
    let fmspc = verifiers
        .dcap
        .chain_cache()
        .identity(quote.qe.pck_chain_pem, || {
            crate::evidence::sgx::quote_fmspc(&quote)
        });
    if let Some((fmspc, _)) = fmspc
        && let Some(c) = verifiers.collateral.get_for(TeeType::Tdx, &fmspc, time)
    {
        let v = verify_evidence_with_collateral(
            &verifiers.dcap,
            &request.evidence,
            runtime,
            init,
            &c,
            time,
        )?;
        if let Some(t) = &v.tcb {
            verifiers.tcb_acceptance.check(t)?;
        }
        return check_ccel(v, request);
    }
    let v = verify_evidence(&verifiers.dcap, &request.evidence, runtime, init, time)?;
    if let Some((fmspc, ca)) = fmspc {
        // Only a quote whose PCK chain leads to a trusted root asks for
        // collateral: a forged certificate cannot make the service fetch
        // collateral for FMSPCs of its choosing.
        verifiers.collateral.note_miss_for(TeeType::Tdx, fmspc, ca);
    }
    if let Some((fmspc, _)) = fmspc
        && verifiers.require_collateral
    {
        return Err(TdxError::Dcap(DcapError::Collateral(
            crate::dcap::CollateralError::Missing(format!(
                "no valid TDX collateral (TDX TCB info, TD_QE identity, CRLs) is cached for FMSPC {}; import it (aver collateral import) or let the service fetch it",
                hex::encode_upper(fmspc)
            )),
        )));
    }
    check_ccel(v, request)
}

/// Verifies a TDX quote at `time` without collateral: parse, the DCAP
/// checks (PCK chain, QE report, quote signature; no TCB verdict), then
/// runtime data against REPORT_DATA[0..32] and init-time data against
/// MRCONFIGID[0..32] (when given).
pub fn verify_evidence(
    dcap: &DcapVerifier,
    evidence: &[u8],
    runtime_data: Option<&[u8]>,
    init_time_data: Option<&[u8]>,
    time: VerificationTime,
) -> Result<VerifiedTdx, TdxError> {
    let quote = parse_tdx(evidence)?;
    dcap.verify(&quote, None, time)?;
    finish(&quote, evidence, runtime_data, init_time_data, None)
}

/// Verifies a TDX quote at `time` with full, verified TDX collateral: the
/// DCAP checks with its CRLs, the TCB verdict
/// ([`DcapVerifier::verify_with_collateral`]: TDX TCB levels, the TDX
/// module identity, the TD_QE identity) and the bindings. Whether the
/// verdict's status is accepted is the caller's (`TcbAcceptance::check`),
/// so that a refused verdict can still be shown.
pub fn verify_evidence_with_collateral(
    dcap: &DcapVerifier,
    evidence: &[u8],
    runtime_data: Option<&[u8]>,
    init_time_data: Option<&[u8]>,
    collateral: &VerifiedCollateral,
    time: VerificationTime,
) -> Result<VerifiedTdx, TdxError> {
    let quote = parse_tdx(evidence)?;
    let verdict = dcap.verify_with_collateral(&quote, collateral, time)?;
    finish(
        &quote,
        evidence,
        runtime_data,
        init_time_data,
        Some(verdict),
    )
}

/// A request verified with full collateral, its TCB status held to
/// `acceptance`: what the CLI's `--collateral` runs.
pub fn verify_request_with_collateral(
    dcap: &DcapVerifier,
    request: &AttestRequest,
    collateral: &VerifiedCollateral,
    acceptance: &TcbAcceptance,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    let v = verify_evidence_with_collateral(
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
    let v = check_ccel(v, request)?;
    Ok(verified(v, request))
}

/// Parses `evidence` as a DCAP quote and requires a TD body: an SGX quote
/// sent to `/attest/TdxVm` is refused as such.
fn parse_tdx(evidence: &[u8]) -> Result<Quote<'_>, TdxError> {
    let quote = parse_quote(evidence)?;
    if quote.td_report().is_none() {
        return Err(TdxError::Dcap(DcapError::InvalidQuote(
            ParseError::invalid(
                "header.tee_type",
                "an SGX quote, not a TDX quote (TEE type 0x81); send SGX quotes to /attest/SgxEnclave",
            ),
        )));
    }
    Ok(quote)
}

fn finish(
    quote: &Quote<'_>,
    evidence: &[u8],
    runtime_data: Option<&[u8]>,
    init_time_data: Option<&[u8]>,
    tcb: Option<TcbVerdict>,
) -> Result<VerifiedTdx, TdxError> {
    let Some(td) = quote.td_report() else {
        return Err(TdxError::Dcap(DcapError::InvalidQuote(
            ParseError::invalid("header.tee_type", "not a TDX quote"),
        )));
    };
    let runtime_data_bound = match runtime_data {
        Some(data) => {
            if !td.report_data.starts_with(&sha256(data)) {
                return Err(TdxError::RuntimeDataMismatch);
            }
            true
        }
        None => false,
    };
    if let Some(init) = init_time_data
        && !td.mr_config_id.starts_with(&sha256(init))
    {
        return Err(TdxError::InitTimeDataMismatch);
    }
    Ok(VerifiedTdx {
        quote_version: quote.header.version,
        tee_tcb_svn: *td.tee_tcb_svn,
        mr_seam: *td.mr_seam,
        mr_signer_seam: *td.mr_signer_seam,
        seam_attributes: *td.seam_attributes,
        td_attributes: *td.td_attributes,
        xfam: *td.xfam,
        mr_td: *td.mr_td,
        mr_config_id: *td.mr_config_id,
        mr_owner: *td.mr_owner,
        mr_owner_config: *td.mr_owner_config,
        rtmr: td.rtmr.map(|r| *r),
        report_data: *td.report_data,
        evidence_hash: sha256(evidence),
        runtime_data_bound,
        tcb,
        ccel: None,
    })
}

fn verify_tdx_vm(
    verifiers: &Verifiers,
    request: &AttestRequest,
    time: VerificationTime,
) -> Result<Verified, AttestError> {
    let v = verify(verifiers, request, time)?;
    Ok(verified(v, request))
}

/// The service's claims and facts for verified TDX evidence.
pub fn verified(v: VerifiedTdx, request: &AttestRequest) -> Verified {
    Verified {
        claims: claims(&v, request),
        log_summary: format!("mrtd {}", hex::encode(v.mr_td)),
        facts: crate::Facts::of(v),
    }
}

/// The claims of Azure's TDX EAT profile for verified TDX evidence:
/// measurements as lowercase hex of their full size (48-byte registers 96
/// digits, REPORT_DATA 128, 8-byte attribute fields 16, TEE_TCB_SVN 32),
/// `tdx_seamsvn` as a number, the decoded TD attribute bits as booleans,
/// `dbgstat`, and `attester_tcb_status` (Intel's status string; `Unknown`
/// when the quote was verified without collateral). `x-ms-runtime` and
/// `x-ms-inittime` carry JSON runtime and init-time data.
pub fn claims(v: &VerifiedTdx, request: &AttestRequest) -> Map<String, Value> {
    let mut c = Map::new();
    let attrs = v.td_attributes_bits();
    c.insert("x-ms-ver".into(), "1.0".into());
    c.insert("x-ms-attestation-type".into(), "tdxvm".into());
    c.insert("eat_profile".into(), EAT_PROFILE.into());
    c.insert(
        "dbgstat".into(),
        if v.is_debug() { "enabled" } else { "disabled" }.into(),
    );
    c.insert("intuse".into(), "generic".into());
    let status = v.tcb.as_ref().map_or("Unknown", |t| t.status.as_str());
    c.insert("attester_tcb_status".into(), status.into());
    if let Some(t) = &v.tcb {
        // Aver's: Intel's TD relaunch advice (TD 1.5), see `TcbVerdict`.
        c.insert(
            TD_RELAUNCH_ADVISED_CLAIM.into(),
            t.td_relaunch_advised.into(),
        );
    }
    for (name, value) in [
        ("tdx_mrsignerseam", &v.mr_signer_seam[..]),
        ("tdx_mrseam", &v.mr_seam[..]),
        ("tdx_mrtd", &v.mr_td[..]),
        ("tdx_rtmr0", &v.rtmr[0][..]),
        ("tdx_rtmr1", &v.rtmr[1][..]),
        ("tdx_rtmr2", &v.rtmr[2][..]),
        ("tdx_rtmr3", &v.rtmr[3][..]),
        ("tdx_mrconfigid", &v.mr_config_id[..]),
        ("tdx_mrowner", &v.mr_owner[..]),
        ("tdx_mrownerconfig", &v.mr_owner_config[..]),
        ("tdx_report_data", &v.report_data[..]),
        ("tdx_seam_attributes", &v.seam_attributes[..]),
        ("tdx_td_attributes", &v.td_attributes[..]),
        ("tdx_xfam", &v.xfam[..]),
        ("tdx_tee_tcb_svn", &v.tee_tcb_svn[..]),
    ] {
        c.insert(name.into(), hex::encode(value).into());
    }
    c.insert("tdx_seamsvn".into(), v.seam_svn().into());
    for (name, bit) in [
        ("tdx_td_attributes_debug", TD_ATTR_DEBUG),
        ("tdx_td_attributes_key_locker", TD_ATTR_KL),
        ("tdx_td_attributes_perfmon", TD_ATTR_PERFMON),
        ("tdx_td_attributes_protection_keys", TD_ATTR_PKS),
        ("tdx_td_attributes_septve_disable", TD_ATTR_SEPT_VE_DISABLE),
    ] {
        c.insert(name.into(), (attrs & bit != 0).into());
    }
    if let Some(json) = request.runtime_data.as_ref().and_then(|d| d.json.clone()) {
        c.insert("x-ms-runtime".into(), json);
    }
    if let Some(json) = request.init_time_data.as_ref().and_then(|d| d.json.clone()) {
        c.insert("x-ms-inittime".into(), json);
    }
    if let Some(ccel) = &v.ccel {
        c.extend(ccel_claims(ccel));
    }
    c
}

/// The claims of a replayed CCEL log (Aver's, `x-aver-ccel-*`; Azure has no
/// CCEL input, so none of its claims changes):
/// * `x-aver-ccel-replayed` ([`CCEL_REPLAYED_CLAIM`]) is `true`;
/// * `x-aver-ccel-rtmrs` ([`CCEL_RTMRS_CLAIM`]) lists the RTMRs compared,
///   e.g. `[0,1,2]`;
/// * `x-aver-ccel-events` ([`CCEL_EVENTS_CLAIM`], policy-only) is `{"Events":[…]}` in the shape of
///   the TPM `events` claim ([`aver_tpm::claims::events_claim`]: `EventSeq`,
///   `PcrIndex` — here the CC MR index —, `EventType`, `EventTypeString`,
///   `Digests` as lowercase hex, `ProcessedData` decoded by type), plus
///   `Rtmr`: the RTMR the event extended (`null` for `EV_NO_ACTION`).
///
/// Every event's digest is bound by the replay; its data only where its
/// digest is the hash of it (e.g. `EV_EFI_ACTION` text, EFI variables),
/// which a policy relying on `ProcessedData` must keep in mind, as for TPM
/// logs.
pub fn ccel_claims(ccel: &VerifiedCcel) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert(CCEL_REPLAYED_CLAIM.into(), true.into());
    c.insert(CCEL_RTMRS_CLAIM.into(), ccel.rtmrs.clone().into());
    c.insert(CCEL_EVENTS_CLAIM.into(), ccel.events.clone());
    c
}

/// The `x-aver-ccel-events` value of a replayed CCEL log (see
/// [`ccel_claims`]).
fn ccel_events_claim(log: &EventLog<'_>) -> Value {
    let mut events =
        serde_json::to_value(aver_tpm::claims::events_claim(log)).unwrap_or(Value::Null);
    if let Some(list) = events.get_mut("Events").and_then(Value::as_array_mut) {
        for (ev, parsed) in list.iter_mut().zip(&log.events) {
            let rtmr = (parsed.event_type != aver_tpm::eventlog::types::EV_NO_ACTION)
                .then(|| aver_tpm::ccel::rtmr_of(parsed.pcr_index))
                .flatten();
            if let Some(obj) = ev.as_object_mut() {
                obj.insert("Rtmr".into(), rtmr.map_or(Value::Null, Value::from));
            }
        }
    }
    events
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sample(td_attributes: [u8; 8], tee_tcb_svn: [u8; 16]) -> VerifiedTdx {
        VerifiedTdx {
            quote_version: 4,
            tee_tcb_svn,
            mr_seam: [1; 48],
            mr_signer_seam: [0; 48],
            seam_attributes: [0; 8],
            td_attributes,
            xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
            mr_td: [2; 48],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            rtmr: [[3; 48], [4; 48], [5; 48], [6; 48]],
            report_data: [7; 64],
            evidence_hash: [0; 32],
            runtime_data_bound: false,
            tcb: None,
            ccel: None,
        }
    }

    #[test]
    fn attribute_bits_decode_as_the_tdx_abi_defines() {
        // 0x10000000 (SEPT_VE_DISABLE) little-endian, as real quotes carry.
        let v = sample([0, 0, 0, 0x10, 0, 0, 0, 0], [0; 16]);
        let c = claims(&v, &AttestRequest::default());
        assert_eq!(c["tdx_td_attributes"], "0000001000000000");
        assert_eq!(c["tdx_td_attributes_septve_disable"], true);
        assert_eq!(c["tdx_td_attributes_debug"], false);
        assert_eq!(c["tdx_td_attributes_protection_keys"], false);
        assert_eq!(c["dbgstat"], "disabled");
        // DEBUG, PKS, KL and PERFMON.
        let v = sample([1, 0, 0, 0xc0, 0, 0, 0, 0x80], [0; 16]);
        let c = claims(&v, &AttestRequest::default());
        assert_eq!(c["tdx_td_attributes_debug"], true);
        assert_eq!(c["tdx_td_attributes_protection_keys"], true);
        assert_eq!(c["tdx_td_attributes_key_locker"], true);
        assert_eq!(c["tdx_td_attributes_perfmon"], true);
        assert_eq!(c["tdx_td_attributes_septve_disable"], false);
        assert_eq!(c["dbgstat"], "enabled");
    }

    #[test]
    fn seamsvn_is_minor_and_major_little_endian() {
        let mut svn = [0u8; 16];
        svn[0] = 3;
        svn[1] = 1;
        let v = sample([0; 8], svn);
        assert_eq!(v.seam_svn(), 0x0103);
        let c = claims(&v, &AttestRequest::default());
        assert_eq!(c["tdx_seamsvn"], 259);
        assert_eq!(c["attester_tcb_status"], "Unknown");
        assert_eq!(c["tdx_mrtd"].as_str().unwrap().len(), 96);
        assert_eq!(c["tdx_report_data"].as_str().unwrap().len(), 128);
        assert_eq!(c["tdx_xfam"].as_str().unwrap().len(), 16);
        assert_eq!(c["tdx_tee_tcb_svn"].as_str().unwrap().len(), 32);
    }
}
