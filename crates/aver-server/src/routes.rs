//! Attestation and metadata handlers: decode, call the pipeline, encode.

use aver_verify::{SgxEvidenceKind, VerificationTime};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::pipeline::{self, PolicyChoice, SgxRequest};
use crate::request::{base64_field, check_api_version, field, json_object, typed_data};
use crate::routing::Prov;
use crate::state::{AppState, AttestationType};

pub fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

/// `POST /attest/SgxEnclave`
pub async fn attest_sgx_enclave(
    State(state): State<AppState>,
    prov: Prov,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    attest_sgx(state, prov, query, body, SgxEvidenceKind::Quote).await
}

/// `POST /attest/OpenEnclave`
pub async fn attest_open_enclave(
    State(state): State<AppState>,
    prov: Prov,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    attest_sgx(state, prov, query, body, SgxEvidenceKind::OpenEnclaveReport).await
}

async fn attest_sgx(
    state: AppState,
    Prov(provider): Prov,
    query: Option<String>,
    body: Body,
    kind: SgxEvidenceKind,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let bytes = state.read_body(body).await?;
    let obj = json_object(&bytes)?;
    let (field_name, attestation_type) = match kind {
        SgxEvidenceKind::Quote => ("quote", AttestationType::SgxEnclave),
        SgxEvidenceKind::OpenEnclaveReport => ("report", AttestationType::OpenEnclave),
    };
    let evidence = base64_field(&obj, field_name)?
        .ok_or_else(|| ApiError::invalid_parameter(format!("{field_name} is required")))?;
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
    let request = SgxRequest {
        kind,
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

    let now = state.clock.now();
    let time = VerificationTime::from_unix_seconds(now);
    let sgx = state.sgx.clone();
    let provider_for_job = provider.clone();
    let draft_for_job = draft.clone();
    // Verification, policy evaluation and signing: on the CPU pool, never
    // on the async workers.
    let (token, outcome) = state
        .cpu
        .run(
            move |_cancel| -> Result<(String, pipeline::Outcome), ApiError> {
                let provider = provider_for_job;
                let mut outcome = match &draft_for_job {
                    Some(text) => {
                        let policy = aver_policy::Policy::parse(text).map_err(|e| {
                            ApiError::bad_request("PolicyParsingError", e.to_string())
                        })?;
                        pipeline::attest_sgx(
                            &sgx,
                            &request,
                            PolicyChoice::Draft {
                                text,
                                policy: &policy,
                            },
                            time,
                        )?
                    }
                    None => {
                        let active = provider
                            .policy(attestation_type)
                            .ok_or_else(|| policy_not_set(attestation_type))?;
                        pipeline::attest_sgx(&sgx, &request, PolicyChoice::Active(&active), time)?
                    }
                };
                pipeline::stamp(&mut outcome.claims, &provider.issuer, now);
                let token = if draft_for_job.is_some() {
                    // Draft-policy tokens are unsecured, as Azure's: they must not
                    // be mistaken for a decision of the provider's policy.
                    aver_token::keys::unsecured_jwt(&outcome.claims)
                } else {
                    provider
                        .signing_key()?
                        .sign_jwt(&provider.jku(), &outcome.claims)
                        .map_err(|e| ApiError::internal("token signing failed", e))?
                };
                Ok((token, outcome))
            },
        )
        .await??;
    tracing::info!(
        provider = %provider.name,
        kind = attestation_type.as_str(),
        mrenclave = %hex::encode(outcome.verified.mr_enclave),
        draft = draft.is_some(),
        "attestation succeeded"
    );
    // `?verbose=true` with a draft policy: also return the evaluation trace
    // (which rule matched, permitted or denied, what each issued), the
    // policy author's debugging aid. The SDKs ignore the extra member.
    let verbose = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("verbose=true"));
    if verbose && draft.is_some() {
        return Ok(json_response(
            json!({ "token": token, "evaluation": outcome.evaluation }),
        ));
    }
    Ok(json_response(json!({ "token": token })))
}

fn policy_not_set(kind: AttestationType) -> ApiError {
    ApiError::bad_request(
        "PolicyNotSet",
        format!(
            "no attestation policy is set for {}; set one with PUT /policies/{}",
            kind.as_str(),
            kind.as_str()
        ),
    )
}

/// Claims computed for the policy that stay out of TPM tokens: the full
/// event log and PCR bank dumps would make every token tens of KiB. A
/// policy that wants them issues them (as Azure's "issue all incoming"
/// sample does).
const TPM_POLICY_ONLY_CLAIMS: &[&str] = &["events", "pcrs"];

/// `POST /attest/Tpm`: one step of the TPM protocol (see
/// `crates/aver-tpm-attest/PROTOCOL.md`).
pub async fn attest_tpm(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let bytes = state.read_body(body).await?;
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
    let policy = provider
        .policy(AttestationType::Tpm)
        .ok_or_else(|| policy_not_set(AttestationType::Tpm))?;
    let options = policy.tpm_options()?;
    let now = state.clock.now();
    let tpm = provider.tpm.clone();
    let replay = state.tpm_replay.clone();
    // Verification does RSA/ECDSA and hashing over whole event logs: keep
    // it off the async workers.
    let provider_for_job = provider.clone();
    // Verification (RSA/ECDSA, hashing whole event logs), evaluation and
    // signing run on the CPU pool, off the async workers.
    let reply = state
        .cpu
        .run(move |_cancel| -> Result<Value, ApiError> {
            let provider = provider_for_job;
            let step = tpm
                .handle_with(&data, now, &replay, &options)
                .map_err(tpm_error)?;
            match step {
                aver_tpm_attest::TpmStep::Reply(payload) => Ok(
                    json!({ "data": aver_tpm_attest::encode_payload(&payload) }),
                ),
                aver_tpm_attest::TpmStep::Verified(verified) => {
                    let service = verified.claims;
                    let evaluation = pipeline::evaluate(&policy.policy, &service)?;
                    let mut for_token = service;
                    for name in TPM_POLICY_ONLY_CLAIMS {
                        for_token.remove(*name);
                    }
                    let mut claims = pipeline::token_claims(
                        for_token,
                        &evaluation,
                        policy.hash.clone(),
                        policy.signer.clone(),
                        None,
                    );
                    pipeline::stamp(&mut claims, &provider.issuer, now);
                    let token = provider
                        .signing_key()?
                        .sign_jwt(&provider.jku(), &claims)
                        .map_err(|e| ApiError::internal("token signing failed", e))?;
                    tracing::info!(provider = %provider.name, aik_validated = verified.aik_validated, "TPM attestation succeeded");
                    Ok(json!({ "data": aver_tpm_attest::report_reply(&token) }))
                }
            }
        })
        .await??;
    Ok(json_response(reply))
}

fn tpm_error(e: aver_tpm_attest::TpmError) -> ApiError {
    let code = e.code();
    if code == "InternalError" {
        ApiError::internal("TPM verification failed", e)
    } else {
        ApiError::bad_request(code, e.to_string())
    }
}

/// `GET /certs`
pub async fn certs(prov: Prov) -> Response {
    let Prov(provider) = prov;
    json_response(aver_token::metadata::jwks(
        provider.keys.iter().map(|k| k.as_ref()),
    ))
}

/// `GET /.well-known/openid-configuration`
pub async fn openid_configuration(Prov(provider): Prov) -> Response {
    json_response(aver_token::metadata::openid_configuration(&provider.issuer))
}

/// `GET /health`: liveness and readiness (the provider has a signing key).
pub async fn health(Prov(provider): Prov) -> Result<Response, ApiError> {
    provider.signing_key()?;
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
