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
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::request::{base64_field, check_api_version, field, json_object, typed_data};
use crate::routing::Prov;
use crate::state::AppState;

pub fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
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
    let evidence_field = match ty.flow {
        Flow::SingleShot { evidence_field, .. } => evidence_field,
        Flow::Protocol => return attest_tpm(state, prov, query, body).await,
    };
    check_api_version(query.as_deref())?;
    let Prov(provider) = prov;
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
    let verifiers = state.verifiers.clone();
    // Everything after reading the body — JSON and base64 decoding,
    // verification, policy evaluation under its budget, signing, encoding —
    // runs on the CPU pool, never on the async workers.
    let (reply, log) = state
        .cpu
        .run(move |cancel| -> Result<(Value, String), ApiError> {
            let (request, draft) = decode_attest_request(&bytes, evidence_field)?;
            let draft = draft.as_deref().map(DraftPolicy::parse).transpose()?;
            let active;
            let policy = match &draft {
                Some(d) => PolicyChoice::Draft(d),
                None => {
                    active = provider.policy(ty).ok_or_else(|| policy_not_set(ty))?;
                    PolicyChoice::Active(&active)
                }
            };
            let signer = provider.signer(now)?;
            let (verified, issued) = aver_attestation::attest(
                ty,
                &verifiers,
                &request,
                policy,
                VerificationTime::from_unix_seconds(now),
                &signer,
                &cancel.budget(),
            )?;
            let log = format!(
                "provider {} {}: {}{}",
                provider.name,
                ty.name,
                verified.log_summary,
                if draft.is_some() {
                    " (draft policy)"
                } else {
                    ""
                }
            );
            let reply = if verbose && draft.is_some() {
                json!({ "token": issued.token, "evaluation": issued.evaluation.to_json() })
            } else {
                json!({ "token": issued.token })
            };
            Ok((reply, log))
        })
        .await??;
    tracing::info!(attestation = %log, "attestation succeeded");
    Ok(json_response(reply))
}

/// An attestation request in Azure's JSON shape: the evidence (base64url
/// in the type's field), `runtimeData`, `initTimeData`, `nonce`, and the
/// optional `draftPolicyForAttestation`.
fn decode_attest_request(
    bytes: &[u8],
    evidence_field: &str,
) -> Result<(AttestRequest, Option<String>), ApiError> {
    let obj = json_object(bytes)?;
    let evidence = base64_field(&obj, evidence_field)?
        .ok_or_else(|| ApiError::invalid_parameter(format!("{evidence_field} is required")))?;
    let nonce = match field(&obj, "nonce") {
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
        runtime_data: typed_data(&obj, "runtimeData")?,
        init_time_data: typed_data(&obj, "initTimeData")?,
        nonce,
    };
    let draft = match field(&obj, "draftPolicyForAttestation") {
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
        .run(move |cancel| -> Result<Value, ApiError> {
            let provider = job_provider;
            let obj = json_object(&bytes)?;
            let data = match field(&obj, "data") {
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
                aver_tpm_attest::TpmStep::Reply(payload) => Ok(
                    json!({ "data": aver_tpm_attest::encode_payload(&payload) }),
                ),
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
                    Ok(json!({ "data": aver_tpm_attest::report_reply(&issued.token) }))
                }
            }
        })
        .await??;
    Ok(json_response(reply))
}

/// `GET /certs`
pub async fn certs(State(state): State<AppState>, prov: Prov) -> Response {
    let Prov(provider) = prov;
    json_response(aver_token::metadata::jwks(
        provider.published_keys(state.clock.now()),
    ))
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
    Ok(json_response(json!({ "status": "ok" })))
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
