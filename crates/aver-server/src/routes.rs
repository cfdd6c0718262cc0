//! HTTP handlers: decode, call the pipeline, encode. Nothing else.

use aver_verify::{SgxEvidenceKind, VerificationTime};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::pipeline::{self, PolicyChoice, SgxRequest};
use crate::request::{base64_field, check_api_version, field, json_object, read_body, typed_data};
use crate::state::{AppState, AttestationType};

fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

/// `POST /attest/SgxEnclave`
pub async fn attest_sgx_enclave(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    attest_sgx(state, query, body, SgxEvidenceKind::Quote).await
}

/// `POST /attest/OpenEnclave`
pub async fn attest_open_enclave(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    attest_sgx(state, query, body, SgxEvidenceKind::OpenEnclaveReport).await
}

async fn attest_sgx(
    state: AppState,
    query: Option<String>,
    body: Body,
    kind: SgxEvidenceKind,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let bytes = read_body(body, state.max_body_bytes).await?;
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
        Some(Value::Number(n)) => Some(n.to_string()),
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
    let provider = &state.provider;
    let mut outcome = match &draft {
        Some(text) => {
            let policy = aver_policy::Policy::parse(text)
                .map_err(|e| ApiError::bad_request("PolicyParsingError", e.to_string()))?;
            pipeline::attest_sgx(
                &state.sgx,
                &request,
                PolicyChoice::Draft {
                    text,
                    policy: &policy,
                },
                time,
            )?
        }
        None => {
            let active = provider.policy(attestation_type).ok_or_else(|| {
                ApiError::bad_request(
                    "PolicyNotSet",
                    format!(
                        "no attestation policy is set for {}",
                        attestation_type.as_str()
                    ),
                )
            })?;
            pipeline::attest_sgx(&state.sgx, &request, PolicyChoice::Active(&active), time)?
        }
    };
    pipeline::stamp(&mut outcome.claims, &provider.issuer, now);
    let token = if draft.is_some() {
        // Draft-policy tokens are unsecured, as Azure's: they must not be
        // mistaken for a decision of the provider's policy.
        aver_token::keys::unsecured_jwt(&outcome.claims)
    } else {
        provider
            .signing_key()?
            .sign_jwt(&provider.jku(), &outcome.claims)
            .map_err(|e| ApiError::internal("token signing failed", e))?
    };
    tracing::info!(
        kind = attestation_type.as_str(),
        mrenclave = %hex::encode(outcome.verified.mr_enclave),
        draft = draft.is_some(),
        "attestation succeeded"
    );
    Ok(json_response(json!({ "token": token })))
}

/// `GET /certs`
pub async fn certs(State(state): State<AppState>) -> Response {
    let keys = state.provider.published_keys();
    json_response(aver_token::metadata::jwks(keys.iter().map(|k| k.as_ref())))
}

/// `GET /.well-known/openid-configuration`
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    json_response(aver_token::metadata::openid_configuration(
        &state.provider.issuer,
    ))
}

/// `GET /health`: liveness and readiness (a signing key is loaded).
pub async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.provider.signing_key()?;
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
