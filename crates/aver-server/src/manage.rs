//! Policy and policy-signer management, wire-compatible with Azure
//! Attestation's data plane: `/policies/{type}` (GET, PUT, POST `:reset`),
//! `/certificates` (GET, POST `:add`, POST `:remove`), plus `/audit`.
//!
//! Every call needs admin authentication ([`crate::admin`]). Changes are
//! committed to the store (with their audit record) before the in-memory
//! providers are reloaded and the client is answered, so an acknowledged
//! change is durable and a failed one changes nothing.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::admin::Actor;
use crate::error::ApiError;
use crate::policy_jws::{self, EMPTY_POLICY_JWS};
use crate::request::check_api_version;
use crate::routes::json_body;
use crate::routing::Prov;
use aver_attestation::ActivePolicy;
use aver_attestation::registry::{self, AttestationType};

use crate::state::{AppState, Provider};
use crate::store::{AuditRecord, PolicyRecord, SignerRemoval};

fn token_response(
    provider: &Provider,
    claims: Map<String, Value>,
    now: u64,
) -> Result<Response, ApiError> {
    let token = provider.sign_result(claims, now)?;
    Ok(json_body(&crate::openapi::TokenResponse { token }))
}

fn audit(provider: &Provider, actor: &Actor, action: &str, target: &str, now: u64) -> AuditRecord {
    AuditRecord {
        at: now as i64,
        provider: provider.name.clone(),
        actor: actor.0.clone(),
        action: action.into(),
        target: target.into(),
        policy_hash: None,
        detail: String::new(),
    }
}

fn attestation_type(spec: &str) -> Result<&'static AttestationType, ApiError> {
    registry::require(spec).map_err(ApiError::from)
}

/// `/policies/{type}:reset` shares the route of `/policies/{type}`; it
/// takes POST only, so GET and PUT on it are 405 like any other path's
/// wrong method (not a 400 about an unknown type `SgxEnclave:reset`).
async fn refuse_reset_path(spec: &str) -> Result<(), ApiError> {
    if spec.ends_with(":reset") {
        return Err(crate::routes::method_not_allowed().await);
    }
    Ok(())
}

async fn body_text(state: &AppState, body: Body) -> Result<String, ApiError> {
    let bytes = state.read_body(body).await?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::invalid_parameter("the body is not UTF-8"))
}

/// `GET /policies/{type}`
pub async fn get_policy(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Path(spec): Path<String>,
) -> Result<Response, ApiError> {
    refuse_reset_path(&spec).await?;
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    state.admin.authenticate(&headers, &provider, now)?;
    let kind = attestation_type(&spec)?;
    let jws = provider
        .policy(kind)
        .map(|p| p.jws.clone())
        .unwrap_or_else(|| EMPTY_POLICY_JWS.to_string());
    let mut claims = Map::new();
    claims.insert("x-ms-policy".into(), jws.into());
    token_response(&provider, claims, now)
}

/// `PUT /policies/{type}` with a `text/plain` JWS body.
pub async fn put_policy(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Path(spec): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    refuse_reset_path(&spec).await?;
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    let actor = state.admin.authenticate(&headers, &provider, now)?;
    let kind = attestation_type(&spec)?;
    let submission = policy_jws::parse(
        &body_text(&state, body).await?,
        provider.settings.min_signer_rsa_bits,
    )?;
    policy_jws::authorize(&provider, submission.signer.as_deref())?;
    let text = submission.text.clone().unwrap_or_default();
    if text.trim().is_empty() && kind.default_policy.is_some() {
        return Err(ApiError::invalid_parameter(format!(
            "the policy document is empty; only types without a default policy (Tpm) accept an empty policy (use :reset to restore the {} default)",
            kind.name
        )));
    }
    let signer_jwk = submission.signer.as_deref().map(policy_jws::signer_jwk);
    // Validate before anything is stored: parsing and the configuration
    // rules' evaluation run on the CPU pool, under the policy budget.
    let hash = if text.trim().is_empty() {
        None
    } else {
        let (text, jws, signer) = (text.clone(), submission.jws.clone(), signer_jwk.clone());
        let active = state
            .cpu
            .run(move |cancel| ActivePolicy::new(&text, jws, signer, &cancel.budget()))
            .await??;
        Some(active.hash)
    };
    let record = PolicyRecord {
        attestation_type: kind.name.into(),
        jws: submission.jws.clone(),
        text,
        signer: signer_jwk.as_ref().map(|j| j.to_string()),
        updated_at: now as i64,
    };
    let mut entry = audit(&provider, &actor, "policy.set", kind.name, now);
    entry.policy_hash = hash;
    entry.detail = match &submission.signer {
        Some(cert) => format!("signed by {}", policy_jws::thumbprint(cert)),
        None => "unsigned".into(),
    };
    let name = provider.name.clone();
    state
        .blocking(move |store| store.set_policy(&name, &record, &entry))
        .await?;
    state.reload().await?;

    let mut claims = Map::new();
    claims.insert("x-ms-policy-result".into(), "Updated".into());
    claims.insert("x-ms-policy".into(), submission.jws.clone().into());
    claims.insert(
        "x-ms-policy-token-hash".into(),
        aver_token::b64::encode_url(&aver_attestation::sha256(submission.jws.as_bytes())).into(),
    );
    if let Some(jwk) = signer_jwk {
        claims.insert("x-ms-policy-signer".into(), jwk);
    }
    tracing::info!(provider = %provider.name, kind = kind.name, actor = %actor.0, "policy set");
    token_response(&provider, claims, now)
}

/// `POST /policies/{type}:reset` with a `text/plain` JWS (empty payload).
pub async fn post_policy(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Path(spec): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(kind_text) = spec.strip_suffix(":reset") else {
        return Err(crate::routes::method_not_allowed().await);
    };
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    let actor = state.admin.authenticate(&headers, &provider, now)?;
    let kind = attestation_type(kind_text)?;
    let submission = policy_jws::parse(
        &body_text(&state, body).await?,
        provider.settings.min_signer_rsa_bits,
    )?;
    if submission.text.is_some() {
        return Err(ApiError::invalid_parameter(
            "a reset request carries a JWS with an empty payload; this one carries a policy (use PUT /policies/{type} to set a policy)",
        ));
    }
    policy_jws::authorize(&provider, submission.signer.as_deref())?;
    let mut entry = audit(&provider, &actor, "policy.reset", kind.name, now);
    entry.policy_hash = kind.default_policy.map(aver_policy::policy_hash);
    let name = provider.name.clone();
    let type_name = kind.name.to_string();
    state
        .blocking(move |store| store.remove_policy(&name, &type_name, &entry))
        .await?;
    state.reload().await?;
    let mut claims = Map::new();
    claims.insert("x-ms-policy-result".into(), "Removed".into());
    tracing::info!(provider = %provider.name, kind = kind.name, actor = %actor.0, "policy reset");
    token_response(&provider, claims, now)
}

/// `GET /certificates`
pub async fn get_certificates(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    state.admin.authenticate(&headers, &provider, now)?;
    let keys: Vec<Value> = provider
        .signers
        .iter()
        .map(|der| policy_jws::signer_jwk(der))
        .collect();
    let mut claims = Map::new();
    claims.insert("x-ms-policy-certificates".into(), json!({ "keys": keys }));
    token_response(&provider, claims, now)
}

/// The certificate named by an add/remove request's signed JWS.
fn management_certificate(provider: &Provider, body: &str) -> Result<Vec<u8>, ApiError> {
    // The body is a JSON string literal holding the JWS; accept a bare JWS
    // too.
    let jws_text = match serde_json::from_str::<Value>(body) {
        Ok(Value::String(s)) => s,
        _ => body.trim().to_string(),
    };
    let jws = aver_token::CompactJws::parse(&jws_text)
        .map_err(|e| ApiError::bad_request("InvalidOperation", format!("Malformed JWT: {e}")))?;
    let signer = policy_jws::signer_certificate(&jws, provider.settings.min_signer_rsa_bits)?;
    if signer.is_none() {
        return Err(ApiError::bad_request(
            "InvalidOperation",
            "certificate management requests must be signed by a trusted policy signer",
        ));
    }
    policy_jws::authorize(provider, signer.as_deref())?;
    let payload = jws
        .payload_json()
        .map_err(|e| ApiError::bad_request("InvalidOperation", format!("Malformed JWT: {e}")))?
        .unwrap_or_default();
    let cert = [
        "policyCertificate",
        "maa-policyCertificate",
        "aas-policyCertificate",
    ]
    .iter()
    .find_map(|name| payload.get(*name))
    .ok_or_else(|| {
        ApiError::bad_request(
            "InvalidOperation",
            "Could not find \"policyCertificate\" claim in policy token",
        )
    })?;
    let der = cert
        .get("x5c")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .and_then(aver_token::b64::decode_std)
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "policyCertificate must carry x5c with a base64 DER certificate",
            )
        })?;
    x509_parser::parse_x509_certificate(&der).map_err(|e| {
        ApiError::invalid_parameter(format!(
            "policyCertificate is not an X.509 certificate: {e}"
        ))
    })?;
    Ok(der)
}

async fn modify_certificates(
    state: AppState,
    provider: std::sync::Arc<Provider>,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
    add: bool,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    let actor = state.admin.authenticate(&headers, &provider, now)?;
    if !provider.isolated {
        return Err(ApiError::bad_request(
            "InvalidOperation",
            format!(
                "provider {:?} is not in isolated mode: it has no policy signers to manage",
                provider.name
            ),
        ));
    }
    let der = management_certificate(&provider, &body_text(&state, body).await?)?;
    let thumbprint = policy_jws::thumbprint(&der);
    let action = if add { "signer.add" } else { "signer.remove" };
    let entry = audit(&provider, &actor, action, &thumbprint, now);
    let name = provider.name.clone();
    let present = if add {
        state
            .blocking(move |store| store.add_signer(&name, &der, &entry))
            .await?;
        true
    } else {
        match state
            .blocking(move |store| store.remove_signer(&name, &der, &entry))
            .await?
        {
            SignerRemoval::Removed | SignerRemoval::Absent => false,
            SignerRemoval::LastSigner => {
                return Err(ApiError::bad_request(
                    "InvalidOperation",
                    "the last policy signer of an isolated provider cannot be removed",
                ));
            }
        }
    };
    state.reload().await?;
    let mut claims = Map::new();
    claims.insert("x-ms-certificate-thumbprint".into(), thumbprint.into());
    claims.insert(
        "x-ms-policycertificates-result".into(),
        if present { "IsPresent" } else { "IsAbsent" }.into(),
    );
    tracing::info!(provider = %provider.name, action, actor = %actor.0, "policy signers changed");
    token_response(&provider, claims, now)
}

/// `POST /certificates:add`
pub async fn add_certificate(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    modify_certificates(state, provider, query, headers, body, true).await
}

/// `POST /certificates:remove`
pub async fn remove_certificate(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    modify_certificates(state, provider, query, headers, body, false).await
}

/// Entries `GET /audit` returns without a `limit`.
pub const AUDIT_LIMIT_DEFAULT: usize = 100;
/// The most entries one `GET /audit` returns.
pub const AUDIT_LIMIT_MAX: usize = 10_000;

/// `GET /audit?limit=N`: the provider's audit log, newest first.
pub async fn get_audit(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    state.admin.authenticate(&headers, &provider, now)?;
    let limit = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "limit")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(AUDIT_LIMIT_DEFAULT)
        .min(AUDIT_LIMIT_MAX);
    let name = provider.name.clone();
    let entries = state
        .blocking(move |store| store.audit_log(&name, limit))
        .await?;
    Ok(json_body(&crate::openapi::AuditResponse { entries }))
}

// ------------------------------------------------------------ signing keys

fn key_op_error(e: crate::keys::KeyOpError) -> ApiError {
    use crate::keys::KeyOpError;
    match e {
        KeyOpError::UnknownKey { .. } => ApiError::bad_request("KeyNotFound", e.to_string()),
        KeyOpError::AlreadyRetired(_) | KeyOpError::LastSigningKey(_) => {
            ApiError::bad_request("KeyRetirementRefused", e.to_string())
        }
        KeyOpError::NoKeys(_) | KeyOpError::Key(_) | KeyOpError::Store(_) => {
            ApiError::internal("key operation failed", e)
        }
    }
}

/// Runs a key operation on the store off the async threads.
async fn key_op<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn crate::store::Store) -> Result<T, crate::keys::KeyOpError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::internal("store task failed", e))?
        .map_err(key_op_error)
}

/// The JSON object of a key request's body (`{}` when empty).
async fn body_object(state: &AppState, body: Body) -> Result<Map<String, Value>, ApiError> {
    let text = body_text(state, body).await?;
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match crate::json::parse(text.as_bytes()) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::invalid_parameter(
            "the body must be a JSON object, e.g. {\"kid\": \"...\"}",
        )),
    }
}

/// `GET /keys`: the provider's token-signing keys and their state, as the
/// `x-aver-keys` claim of a signed result.
pub async fn get_keys(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    state.admin.authenticate(&headers, &provider, now)?;
    let name = provider.name.clone();
    let keys = state
        .blocking(move |store| store.signing_keys(&name))
        .await?;
    let mut claims = Map::new();
    claims.insert(
        "x-aver-keys".into(),
        Value::Array(crate::keys::describe(&keys, now)),
    );
    token_response(&provider, claims, now)
}

/// `POST /keys:rotate` with `{"publish_delay_secs": N}` (optional): a new
/// key of the provider's `token_signing_alg`, published now, signing after
/// the delay.
pub async fn rotate_key(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    let actor = state.admin.authenticate(&headers, &provider, now)?;
    let body = body_object(&state, body).await?;
    let max = crate::keys::MAX_PUBLISH_DELAY_SECS;
    let delay = match body.get("publish_delay_secs") {
        None => crate::keys::DEFAULT_PUBLISH_DELAY_SECS,
        Some(v) => v.as_u64().filter(|d| *d <= max).ok_or_else(|| {
            ApiError::invalid_parameter(format!(
                "publish_delay_secs must be a whole number of seconds from 0 to {max}"
            ))
        })?,
    };
    let kek = state.loader.kek.clone();
    let name = provider.name.clone();
    let alg = provider.settings.token_alg();
    let row = key_op(&state, move |store| {
        crate::keys::rotate(store, &kek, &name, alg, now, delay, &actor.0)
    })
    .await?;
    state.reload().await?;
    tracing::info!(provider = %provider.name, kid = %row.kid, signing_from = row.not_before_signing, "token-signing key rotated");
    let mut claims = Map::new();
    claims.insert("x-aver-key-result".into(), "Rotated".into());
    claims.insert("x-aver-kid".into(), row.kid.clone().into());
    claims.insert("x-aver-alg".into(), alg.name().into());
    claims.insert(
        "x-aver-not-before-signing".into(),
        row.not_before_signing.into(),
    );
    token_response(&provider, claims, now)
}

/// `POST /keys:retire` with `{"kid": "..."}`: the key stops signing now and
/// stays published until every token it signed has expired.
pub async fn retire_key(
    State(state): State<AppState>,
    Prov(provider): Prov,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_api_version(query.as_deref())?;
    let now = state.clock.now();
    let actor = state.admin.authenticate(&headers, &provider, now)?;
    let body = body_object(&state, body).await?;
    let kid = body
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_parameter("kid (a string) is required"))?
        .to_string();
    let name = provider.name.clone();
    let row = key_op(&state, move |store| {
        crate::keys::retire(store, &name, &kid, now, &actor.0)
    })
    .await?;
    state.reload().await?;
    tracing::info!(provider = %provider.name, kid = %row.kid, "token-signing key retired");
    let mut claims = Map::new();
    claims.insert("x-aver-key-result".into(), "Retired".into());
    claims.insert("x-aver-kid".into(), row.kid.clone().into());
    claims.insert(
        "x-aver-published-until".into(),
        row.retired_at
            .map(|r| r.saturating_add(crate::keys::RETIRED_PUBLISH_SECS))
            .into(),
    );
    token_response(&provider, claims, now)
}
