//! The attestation pipeline, without HTTP: evidence → verification →
//! claims → policy → token claims. The service handlers and the offline
//! `aver evidence verify` command both call this, so they cannot disagree.

use aver_policy::{Decision, Policy};
use aver_verify::{SgxEvidenceKind, SgxVerifier, VerificationTime, VerifiedSgx};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::request::TypedData;
use crate::state::ActivePolicy;

/// Lifetime of attestation tokens: 8 hours, as Azure Attestation.
pub const TOKEN_LIFETIME_SECS: u64 = 8 * 3600;

/// Everything an SGX or OpenEnclave attestation request carries.
#[derive(Debug, Clone)]
pub struct SgxRequest {
    pub kind: SgxEvidenceKind,
    pub evidence: Vec<u8>,
    pub runtime_data: Option<TypedData>,
    pub init_time_data: Option<TypedData>,
    pub nonce: Option<String>,
}

/// Which policy decides: the provider's, or a draft given with the request.
pub enum PolicyChoice<'a> {
    Active(&'a ActivePolicy),
    Draft { text: &'a str, policy: &'a Policy },
}

/// A successful attestation: the claims of the token to issue (without
/// `iss`, `iat`, `nbf`, `exp`, `jti`, which the signer adds).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verified: VerifiedSgx,
    pub claims: Map<String, Value>,
    /// The policy evaluation trace (for verbose draft-policy output).
    pub evaluation: Value,
}

/// Verifies the evidence and returns the claims the service asserts about
/// it (the incoming claims of the policy, `x-ms-*`).
pub fn verify_sgx(
    verifier: &SgxVerifier,
    request: &SgxRequest,
    time: VerificationTime,
) -> Result<(VerifiedSgx, Map<String, Value>), ApiError> {
    let runtime = request.runtime_data.as_ref().map(|d| d.bytes.as_slice());
    let verified = verifier.verify(request.kind, &request.evidence, runtime, None, time)?;
    if let Some(init) = &request.init_time_data {
        // Azure: SHA-256(initTimeData) must equal the lower 32 bytes of the
        // enclave's CONFIGID (set at launch on platforms with KSS).
        if aver_verify::sha256(&init.bytes)[..] != verified.config_id[..32] {
            return Err(ApiError::bad_request(
                "InitTimeDataMismatch",
                "SHA-256 of initTimeData does not match CONFIGID[0..32] of the enclave",
            ));
        }
    }
    let claims = sgx_service_claims(&verified, request);
    Ok((verified, claims))
}

/// The `x-ms-*` claims for a verified SGX quote, with the deprecated
/// aliases Azure Attestation still emits.
pub fn sgx_service_claims(v: &VerifiedSgx, request: &SgxRequest) -> Map<String, Value> {
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
    let collateral = json!({ "quotehash": hex::encode(v.evidence_hash) });
    c.insert("x-ms-sgx-collateral".into(), collateral.clone());
    c.insert("maa-attestationcollateral".into(), collateral);
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
    if let Some(Some(json)) = request.init_time_data.as_ref().map(|d| d.json.clone()) {
        c.insert("x-ms-inittime".into(), json);
    }
    c
}

/// Evaluates `policy` over the service claims; a deny is a 400
/// `PolicyEvaluationError` naming the rule.
pub fn evaluate(
    policy: &Policy,
    service_claims: &Map<String, Value>,
) -> Result<aver_policy::Evaluation, ApiError> {
    let incoming = aver_policy::with_legacy_aliases(&aver_policy::claims_from_json(service_claims));
    let evaluation = policy
        .evaluate(&incoming)
        .map_err(|e| ApiError::bad_request("PolicyEvaluationError", e.to_string()))?;
    if evaluation.decision == Decision::Deny {
        let reason = evaluation
            .deny_reason
            .clone()
            .unwrap_or_else(|| "no rule permitted the request".into());
        return Err(ApiError::bad_request(
            "PolicyEvaluationError",
            format!("A Deny claim was issued, authorization failed: {reason}"),
        ));
    }
    Ok(evaluation)
}

/// Runs the whole pipeline for an SGX or OpenEnclave request.
pub fn attest_sgx(
    verifier: &SgxVerifier,
    request: &SgxRequest,
    policy: PolicyChoice<'_>,
    time: VerificationTime,
) -> Result<Outcome, ApiError> {
    let (verified, service) = verify_sgx(verifier, request, time)?;
    let (parsed, hash, signer) = match policy {
        PolicyChoice::Active(p) => (&p.policy, p.hash.clone(), p.signer.clone()),
        PolicyChoice::Draft { text, policy } => (policy, aver_policy::policy_hash(text), None),
    };
    let evaluation = evaluate(parsed, &service)?;
    let claims = token_claims(service, &evaluation, hash, signer, request.nonce.as_deref());
    Ok(Outcome {
        verified,
        claims,
        evaluation: evaluation.to_json(),
    })
}

/// Token claims from the service's claims and a permitting evaluation:
/// issued claims at the top level (never overriding a service claim) and
/// under `x-ms-policy`, the policy hash and signer, the nonce.
pub fn token_claims(
    service: Map<String, Value>,
    evaluation: &aver_policy::Evaluation,
    policy_hash: String,
    signer: Option<Value>,
    nonce: Option<&str>,
) -> Map<String, Value> {
    let issued = evaluation.issued_json();
    let mut claims = service;
    for (name, value) in &issued {
        claims.entry(name.clone()).or_insert_with(|| value.clone());
    }
    claims.insert("x-ms-policy".into(), Value::Object(issued));
    claims.insert("x-ms-policy-hash".into(), policy_hash.into());
    if let Some(signer) = signer {
        claims.insert("x-ms-policy-signer".into(), signer);
    }
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    claims
}

/// Adds `iss`, `iat`, `nbf`, `exp` and `jti` to token claims.
pub fn stamp(claims: &mut Map<String, Value>, issuer: &str, now: u64) {
    let mut jti = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut jti).is_err() {
        // The system RNG failing is unrecoverable elsewhere too; a zero jti
        // is still unique enough with iat, and tokens stay verifiable.
        tracing::error!("system RNG failed while making a jti");
    }
    claims.insert("iss".into(), issuer.into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + TOKEN_LIFETIME_SECS).into());
    claims.insert("jti".into(), hex::encode(jti).into());
}
