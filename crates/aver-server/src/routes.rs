//! Attestation and metadata handlers: decode, call the core, encode.
//!
//! One handler serves `/attest/{type}` for every single-shot type in the
//! registry (`aver_attestation::registry`); the TPM protocol keeps its own
//! rounds and shares the core's token tail.

use aver_attestation::registry::{self, AttestationType, Flow};
use aver_attestation::{
    AttestRequest, DraftPolicy, PolicyChoice, VerificationTime, evidence, tail,
};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

use crate::error::ApiError;
use crate::request::{base64_field, check_api_version, field, fields, json_object, typed_data};
use crate::routing::Prov;
use crate::state::AppState;

pub fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

/// A wire type (`crate::openapi`) as a JSON answer.
pub fn json_body<T: serde::Serialize>(body: &T) -> Response {
    // Straight to bytes: through a `Value` and its `Display` the token was
    // copied twice and written through `fmt` (~1% of an attestation).
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::internal("encoding the answer failed", e).into_response(),
    }
}

/// An attestation's answer as a response. The usual answer is a token
/// alone, whose characters (base64url and the two dots) never need JSON
/// escaping: it is written between its braces in one copy, where
/// serde_json would check the 1–3 KB character by character (~1.5% of an
/// ES256 attestation in a `perf` profile). Anything else (a trace, a
/// character outside that alphabet) goes through serde_json. Both ways give
/// the same bytes (tested).
fn attestation_body(reply: &crate::openapi::AttestationResponse) -> Response {
    match token_only_json(reply) {
        Some(bytes) => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            bytes,
        )
            .into_response(),
        None => json_body(reply),
    }
}

/// `{"token":"…"}` for a reply that is only a token in the JWS alphabet.
fn token_only_json(reply: &crate::openapi::AttestationResponse) -> Option<Vec<u8>> {
    const OPEN: &[u8] = br#"{"token":""#;
    const CLOSE: &[u8] = br#""}"#;
    let token = reply.token.as_bytes();
    // Branch-free and without an early exit, so that the compiler checks
    // many bytes per instruction (a per-byte `all` cost more than the
    // serde_json scan it replaces).
    let outside = token.iter().fold(false, |acc, &b| {
        let jws = ((b | 0x20).wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'-')
            | (b == b'_')
            | (b == b'.');
        acc | !jws
    });
    if reply.evaluation.is_some() || outside {
        return None;
    }
    let mut out = Vec::with_capacity(OPEN.len() + token.len() + CLOSE.len());
    out.extend_from_slice(OPEN);
    out.extend_from_slice(token);
    out.extend_from_slice(CLOSE);
    Some(out)
}

/// `POST /attest/{type}`
pub async fn attest(
    State(state): State<AppState>,
    prov: Prov,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let ty = registry::lookup(&kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "no attestation type {kind:?}; supported: {}",
            registry::names()
        ))
    })?;
    let labels = crate::observe::AttestationLabels {
        kind: ty.name,
        provider: prov.0.name.clone(),
    };
    // The provider's own cap on attestations in flight, held until the
    // answer is ready.
    let slot = state
        .cpu
        .provider_slot(&prov.0.name, prov.0.settings.max_in_flight);
    let result = match slot {
        Err(busy) => Err(busy),
        Ok(_slot) => attest_flow(state, prov, ty, query, body).await,
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(labels);
    Ok(response)
}

async fn attest_flow(
    state: AppState,
    prov: Prov,
    ty: &'static AttestationType,
    query: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    match ty.flow {
        Flow::SingleShot { evidence_field, .. } => {
            attest_single(state, prov.0, ty, evidence_field, query, body).await
        }
        Flow::Protocol => attest_tpm(state, prov, query, body).await,
    }
}

/// One single-shot attestation, timed by stage for the metrics.
async fn attest_single(
    state: AppState,
    provider: std::sync::Arc<crate::state::Provider>,
    ty: &'static AttestationType,
    evidence_field: &'static str,
    query: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    use crate::observe::stage;
    check_api_version(query.as_deref())?;
    let bytes = state.read_body(body).await?;
    // `?verbose=true` with a draft policy: also return the evaluation trace
    // (which rule matched, permitted or denied, what each issued), the
    // policy author's debugging aid. The SDKs ignore the extra member.
    let verbose = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("verbose=true"));
    let now = state.clock.now();
    // A provider that sets its own accepted TCB statuses verifies with
    // them (the roots and the collateral cache stay the service's).
    let verifiers = match &provider.settings.accepted_tcb_statuses {
        Some(accepted) => {
            let mut v = (*state.verifiers).clone();
            v.tcb_acceptance.accepted = accepted.clone();
            Arc::new(v)
        }
        None => state.verifiers.clone(),
    };
    // A SevSnpVm request without a chain may need a VCEK from AMD's KDS:
    // the first run on the pool says which (no I/O there); the VCEK is
    // fetched (or read from the shared cache) here, then the job runs again
    // with it.
    let mut vcek: Option<Vec<u8>> = None;
    let (reply, log) = loop {
        let verifiers = verifiers.clone();
        let provider = provider.clone();
        let bytes = bytes.clone();
        let vcek_for_job = vcek.clone();
        // Imported VCEKs (`aver collateral import`) are found in the cache
        // even when no key distribution service is configured.
        let may_fetch = vcek.is_none();
        // Everything after reading the body — JSON and base64 decoding,
        // verification, policy evaluation under its budget, signing,
        // encoding — runs on the CPU pool, never on the async workers.
        let outcome = state
            .cpu
            .run(move |cancel| -> Result<Outcome, ApiError> {
                let started = std::time::Instant::now();
                let (mut request, draft) = decode_attest_request(&bytes, evidence_field)?;
                if ty.name == evidence::snp::SEV_SNP_VM.name {
                    let parsed = evidence::snp::kds::evidence(&request.evidence).ok();
                    match (&vcek_for_job, parsed) {
                        (Some(der), Some(ev)) => {
                            request.evidence = evidence::snp::kds::with_vcek(&ev, der);
                        }
                        (None, Some(ev)) if may_fetch => {
                            if let Some(lookup) = evidence::snp::kds::vcek_lookup(&ev) {
                                return Ok(Outcome::NeedVcek(lookup));
                            }
                        }
                        _ => {}
                    }
                }
                let draft = draft.as_deref().map(DraftPolicy::parse).transpose()?;
                stage(ty.name, "decode", started.elapsed().as_secs_f64());
                let active;
                let policy = match &draft {
                    Some(d) => PolicyChoice::Draft(d),
                    None => {
                        active = provider.policy(ty).ok_or_else(|| policy_not_set(ty))?;
                        PolicyChoice::Active(&active)
                    }
                };
                // The policy's configuration rules may pin the SGX TCB
                // baseline, which verification needs.
                request.tcb_baseline = policy.tcb_baseline(&cancel.budget())?;
                let signer = provider.signer(now)?;
                let time = VerificationTime::from_unix_seconds(now);
                let started = std::time::Instant::now();
                let aver_attestation::Verified {
                    claims,
                    log_summary,
                    ..
                } = aver_attestation::verify(ty, &verifiers, &request, time)?;
                stage(ty.name, "verify", started.elapsed().as_secs_f64());
                // The claims move into the policy: nothing reads them after.
                let issued = tail::finish(
                    ty,
                    policy,
                    claims,
                    request.nonce.as_deref(),
                    &signer,
                    time.unix_seconds(),
                    &cancel.budget(),
                )?;
                stage(ty.name, "policy", issued.timings.policy.as_secs_f64());
                stage(ty.name, "sign", issued.timings.sign.as_secs_f64());
                let log = format!(
                    "provider {} {}: {}{}",
                    provider.name,
                    ty.name,
                    log_summary,
                    if draft.is_some() {
                        " (draft policy)"
                    } else {
                        ""
                    }
                );
                let reply = crate::openapi::AttestationResponse {
                    evaluation: (verbose && draft.is_some()).then(|| issued.evaluation.to_json()),
                    token: issued.token,
                };
                Ok(Outcome::Done(reply, log))
            })
            .await??;
        match (outcome, &state.kds) {
            (Outcome::Done(reply, log), _) => break (reply, log),
            (Outcome::NeedVcek(lookup), Some(kds)) => {
                vcek = Some(kds.vcek(&state, &lookup).await?);
            }
            (Outcome::NeedVcek(lookup), None) => {
                vcek = Some(crate::kds::cached_vcek(&state, &lookup).await?.ok_or_else(|| {
                    ApiError::bad_request(
                        "SnpCertificateChainMissing",
                        "the request carries no VcekCertChain, no VCEK for this chip ID and TCB was imported (aver collateral import), and no key distribution service is configured (--amd-kds-url)",
                    )
                })?);
            }
        }
    };
    tracing::info!(attestation = %log, "attestation succeeded");
    Ok(attestation_body(&reply))
}

/// What one run of an attestation job on the CPU pool ends with.
enum Outcome {
    /// The reply and the log line.
    Done(crate::openapi::AttestationResponse, String),
    /// A SevSnpVm request needs this VCEK first.
    NeedVcek(evidence::snp::kds::VcekLookup),
}

/// An attestation request in Azure's JSON shape: the evidence (base64url
/// in the type's field), `runtimeData`, `initTimeData`, `nonce`, and the
/// optional `draftPolicyForAttestation`; and Aver's `ccelEventLog`
/// extension (base64url of a TDX CCEL area; bounded by the body limit
/// here and by `aver_tpm::ccel::MAX_CCEL_BYTES` in the verifier, and
/// refused by every type but TdxVm).
fn decode_attest_request(
    bytes: &[u8],
    evidence_field: &str,
) -> Result<(AttestRequest, Option<String>), ApiError> {
    let obj = json_object(bytes)?;
    let evidence = base64_field(&obj, evidence_field)?
        .ok_or_else(|| ApiError::invalid_parameter(format!("{evidence_field} is required")))?;
    let nonce = match field(&obj, fields::NONCE) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        // The nonce is echoed as given: a number is accepted only when its
        // text is exact (an integer within 64 bits); 1e20 or 1.5 would come
        // back altered, so they are refused.
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(Value::Number(_)) => {
            return Err(ApiError::invalid_parameter(
                "nonce must be a string (a number is accepted only as an integer that fits in 64 bits)",
            ));
        }
        Some(_) => return Err(ApiError::invalid_parameter("nonce must be a string")),
    };
    let request = AttestRequest {
        evidence,
        runtime_data: typed_data(&obj, fields::RUNTIME_DATA)?,
        init_time_data: typed_data(&obj, fields::INIT_TIME_DATA)?,
        nonce,
        tcb_baseline: Default::default(),
        ccel_event_log: base64_field(&obj, fields::CCEL_EVENT_LOG)?,
    };
    let draft = match field(&obj, fields::DRAFT_POLICY) {
        None => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "draftPolicyForAttestation must be a string",
            ));
        }
    };
    Ok((request, draft))
}

pub fn policy_not_set(ty: &AttestationType) -> ApiError {
    ApiError::bad_request(
        "PolicyNotSet",
        format!(
            "no attestation policy is set for {}; set one with PUT /policies/{}",
            ty.name, ty.name
        ),
    )
}

/// `POST /attest/Tpm`: one step of the TPM protocol (see
/// `crates/aver-tpm-attest/PROTOCOL.md`); a verified request goes through
/// the same token tail as every other type.
async fn attest_tpm(
    state: AppState,
    Prov(provider): Prov,
    query: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let ty = &evidence::tpm::TPM;
    check_api_version(query.as_deref())?;
    let bytes = state.read_body(body).await?;
    let policy = provider.policy(ty).ok_or_else(|| policy_not_set(ty))?;
    let options =
        aver_tpm_attest::RequestOptions::from_properties(&policy.properties).map_err(|e| {
            ApiError::bad_request("PolicyEvaluationError", format!("policy properties: {e}"))
        })?;
    let now = state.clock.now();
    let tpm = provider.tpm.clone();
    let replay = state.tpm_replay.clone();
    let job_provider = provider.clone();
    let reply = state
        .cpu
        .run(move |cancel| -> Result<crate::openapi::TpmAttestationResponse, ApiError> {
            let provider = job_provider;
            let obj = json_object(&bytes)?;
            let data = match field(&obj, fields::TPM_DATA) {
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(ApiError::invalid_parameter(
                        "data must be a base64url string",
                    ));
                }
                None => return Err(ApiError::invalid_parameter("data is required")),
            };
            let step = tpm
                .handle_with(&data, now, &replay, &options)
                .map_err(aver_attestation::AttestError::from)?;
            match step {
                aver_tpm_attest::TpmStep::Reply(payload) => {
                    Ok(crate::openapi::TpmAttestationResponse {
                        data: aver_tpm_attest::encode_payload(&payload),
                    })
                }
                aver_tpm_attest::TpmStep::Verified(verified) => {
                    let signer = provider.signer(now)?;
                    let issued = tail::finish(
                        ty,
                        PolicyChoice::Active(&policy),
                        verified.claims,
                        None,
                        &signer,
                        now,
                        &cancel.budget(),
                    )?;
                    tracing::info!(provider = %provider.name, aik_validated = verified.aik_validated, "TPM attestation succeeded");
                    Ok(crate::openapi::TpmAttestationResponse {
                        data: aver_tpm_attest::report_reply(&issued.token),
                    })
                }
            }
        })
        .await??;
    Ok(json_body(&reply))
}

/// `GET /certs`
pub async fn certs(State(state): State<AppState>, prov: Prov) -> Response {
    let Prov(provider) = prov;
    json_response(aver_token::metadata::jwks(
        provider.published_keys(state.clock.now()),
    ))
}

/// `GET /tcbbaselines/{type}` (api-version 2022-09-01-preview and later):
/// the SGX TCB baselines this service can judge quotes by — one per TCB
/// evaluation data number held in the collateral cache, plus
/// `azuredefault` (the service's default: `--tcb-baseline`, else the
/// newest number held) — and which one the provider's policy selects.
/// Azure also states the minimum PSW versions of each baseline; Aver does
/// not know them and leaves them out.
pub async fn tcb_baselines(
    State(state): State<AppState>,
    Prov(provider): Prov,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let ty = registry::lookup(&kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "no attestation type {kind:?}; supported: {}",
            registry::names()
        ))
    })?;
    if ty.name != evidence::sgx::SGX_ENCLAVE.name && ty.name != evidence::sgx::OPEN_ENCLAVE.name {
        return Err(ApiError::bad_request(
            "InvalidParameter",
            format!(
                "TCB baselines apply to SGX quotes (SgxEnclave, OpenEnclave), not to {}",
                ty.name
            ),
        ));
    }
    let numbers = state
        .verifiers
        .collateral
        .evaluation_numbers(aver_attestation::dcap::TeeType::Sgx);
    let selected = provider
        .policy(ty)
        .map(|p| p.tcb_baseline)
        .unwrap_or_default();
    let default_number = state
        .verifiers
        .default_tcb_baseline
        .or_else(|| numbers.keys().next_back().copied());
    let entry = |identifier: String, number: u32, is_selected: bool| crate::openapi::TcbBaseline {
        tcb_identifier: identifier,
        tcb_evaluation_data_number: number,
        tcb_release_date: numbers.get(&number).map(|(_, date)| date.clone()),
        is_selected_tcb: is_selected,
    };
    let mut baselines = Vec::new();
    if let Some(n) = default_number {
        baselines.push(entry(
            aver_attestation::TcbBaseline::ServiceDefault.identifier(),
            n,
            selected == aver_attestation::TcbBaseline::ServiceDefault,
        ));
    }
    for n in numbers.keys().rev() {
        baselines.push(entry(
            n.to_string(),
            *n,
            selected == aver_attestation::TcbBaseline::EvaluationDataNumber(*n),
        ));
    }
    let result = crate::openapi::TcbBaselineResult {
        tcb_baselines: baselines,
    };
    Ok(json_response(serde_json::to_value(&result).unwrap_or_else(
        |_| serde_json::json!({ "tcbBaselines": [] }),
    )))
}

/// `GET /.well-known/openid-configuration`
pub async fn openid_configuration(State(state): State<AppState>, Prov(provider): Prov) -> Response {
    // The algorithms of the keys published now, and of the next key.
    let mut algs = vec![provider.settings.token_alg()];
    for key in provider.published_keys(state.clock.now()) {
        if !algs.contains(&key.alg()) {
            algs.push(key.alg());
        }
    }
    json_response(aver_token::metadata::openid_configuration_with_algs(
        &provider.issuer,
        &algs,
    ))
}

/// `GET /health`: liveness and readiness (the provider has a signing key).
pub async fn health(
    State(state): State<AppState>,
    Prov(provider): Prov,
) -> Result<Response, ApiError> {
    provider.signing_key(state.clock.now())?;
    Ok(json_body(&crate::openapi::HealthResponse {
        status: "ok".into(),
    }))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "this endpoint does not accept that method",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::openapi::AttestationResponse;

    fn reply(token: &str, evaluation: Option<Value>) -> AttestationResponse {
        AttestationResponse {
            token: token.to_string(),
            evaluation,
        }
    }

    #[test]
    fn a_token_alone_is_written_as_serde_json_writes_it() {
        for token in [
            "eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln-_",
            "a.b.",
            "",
            "A-Z_0.9",
        ] {
            let r = reply(token, None);
            assert_eq!(
                token_only_json(&r).unwrap(),
                serde_json::to_vec(&r).unwrap(),
                "{token:?}"
            );
        }
    }

    #[test]
    fn exactly_the_jws_alphabet_takes_the_short_way() {
        for b in 0..=0x7fu8 {
            let token = format!("a{}b", char::from(b));
            let jws = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
            assert_eq!(
                token_only_json(&reply(&token, None)).is_some(),
                jws,
                "{b:#x}"
            );
        }
    }

    #[test]
    fn anything_else_goes_through_serde_json() {
        // Characters that would need escaping, or are outside the alphabet.
        for token in ["a\"b", "a\\b", "a\nb", "é.b.c", "a b", "a+b/c="] {
            assert!(token_only_json(&reply(token, None)).is_none(), "{token:?}");
        }
        let traced = reply("a.b.c", Some(serde_json::json!({"rules": []})));
        assert!(token_only_json(&traced).is_none());
    }
}
