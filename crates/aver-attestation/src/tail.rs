//! The token tail every attestation type shares, the TPM protocol included:
//! evaluate the policy, put its issued claims into the token, add
//! `x-ms-policy-hash`, `x-ms-policy-signer` and `nonce`, stamp `iss`,
//! `iat`, `nbf`, `exp`, `jti`, and sign (or, for a draft policy, leave the
//! token unsecured as Azure does).

use aver_policy::{Budget, Evaluation};
use aver_token::SigningKey;
use serde_json::{Map, Value};

use crate::error::AttestError;
use crate::policy::{PolicyChoice, evaluate};
use crate::registry::AttestationType;

/// Lifetime of attestation tokens: 8 hours, as Azure Attestation.
pub const TOKEN_LIFETIME_SECS: u64 = 8 * 3600;

/// Who signs: the provider's issuer URL and current key.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub issuer: &'a str,
    pub key: &'a SigningKey,
}

impl Signer<'_> {
    /// `jku`: the issuer's JWKS.
    pub fn jku(&self) -> String {
        format!("{}/certs", self.issuer)
    }
}

/// A permitted attestation: the token and what went into it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub claims: Map<String, Value>,
    pub evaluation: Evaluation,
    /// Time spent evaluating the policy and signing, for the service's
    /// stage metrics (a measurement, never an input to a decision).
    pub timings: TailTimings,
}

/// How long the tail's stages took.
#[derive(Debug, Clone, Copy, Default)]
pub struct TailTimings {
    pub policy: std::time::Duration,
    pub sign: std::time::Duration,
}

/// Evaluates the policy over the service's claims and returns the token's
/// claims (unstamped): issued claims at the top level (never overriding a
/// service claim) and under `x-ms-policy`, the policy hash and signer, the
/// nonce; the type's policy-only claims removed.
pub fn claims(
    ty: &AttestationType,
    policy: PolicyChoice<'_>,
    service_claims: Map<String, Value>,
    nonce: Option<&str>,
    budget: &Budget,
) -> Result<(Map<String, Value>, Evaluation), AttestError> {
    let evaluation = evaluate(ty, policy.policy(), &service_claims, budget)?;
    let mut claims = service_claims;
    for name in ty.policy_only_claims {
        claims.remove(*name);
    }
    let issued = evaluation.issued_json();
    for (name, value) in &issued {
        claims.entry(name.clone()).or_insert_with(|| value.clone());
    }
    claims.insert("x-ms-policy".into(), Value::Object(issued));
    claims.insert("x-ms-policy-hash".into(), policy.hash().into());
    if let Some(signer) = policy.signer() {
        claims.insert("x-ms-policy-signer".into(), signer);
    }
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    Ok((claims, evaluation))
}

/// Adds `iss`, `iat`, `nbf`, `exp` (+8 h) and a random 32-byte `jti`.
pub fn stamp(claims: &mut Map<String, Value>, issuer: &str, now: u64) -> Result<(), AttestError> {
    let mut jti = [0u8; 32];
    aws_lc_rs::rand::fill(&mut jti)
        .map_err(|_| AttestError::internal("the system RNG failed while making a jti"))?;
    claims.insert("iss".into(), issuer.into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(TOKEN_LIFETIME_SECS).into());
    claims.insert("jti".into(), hex::encode(jti).into());
    Ok(())
}

/// The whole tail: [`claims`], [`stamp`], and the signature — or an
/// unsecured token for a draft policy, which must not be mistaken for a
/// decision of the provider's policy.
pub fn finish(
    ty: &AttestationType,
    policy: PolicyChoice<'_>,
    service_claims: Map<String, Value>,
    nonce: Option<&str>,
    signer: &Signer<'_>,
    now: u64,
    budget: &Budget,
) -> Result<Issued, AttestError> {
    let started = std::time::Instant::now();
    let (mut claims, evaluation) = claims(ty, policy, service_claims, nonce, budget)?;
    let policy_time = started.elapsed();
    let started = std::time::Instant::now();
    stamp(&mut claims, signer.issuer, now)?;
    let token = if policy.is_draft() {
        aver_token::keys::unsecured_jwt(&claims)
    } else {
        signer
            .key
            .sign_jwt(&signer.jku(), &claims)
            .map_err(|e| AttestError::internal(format!("token signing failed: {e}")))?
    };
    Ok(Issued {
        token,
        claims,
        evaluation,
        timings: TailTimings {
            policy: policy_time,
            sign: started.elapsed(),
        },
    })
}
