//! Verifying an attestation token as a relying party.
//!
//! The key is chosen by the header `kid` among the JWKS keys (its `x5c`
//! certificate, or `n`/`e`); the signature must be RS256; `exp` and `nbf`
//! are checked against the time given, with a leeway; `iss` must equal the
//! expected issuer exactly. Unsecured (`alg: none`) tokens are refused.

use crate::jws::{CompactJws, JwsAlg};
use crate::{Claims, b64};

/// Relying-party checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Exact expected `iss`; `None` skips the check (not recommended).
    pub issuer: Option<String>,
    /// The verification time, seconds since the Unix epoch.
    pub now: u64,
    /// Clock-skew allowance for `exp` and `nbf`, in seconds.
    pub leeway: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token is unsecured (alg none); refusing it")]
    Unsecured,
    #[error("token algorithm {0} is not RS256")]
    WrongAlgorithm(&'static str),
    #[error("no key with kid {0:?} in the JWKS")]
    UnknownKid(String),
    #[error("the token signature does not verify")]
    BadSignature,
    #[error("the token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("the token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("the token issuer is {found:?}, expected {expected:?}")]
    WrongIssuer { expected: String, found: String },
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
}

/// Verifies `token` against `jwks` (a `{"keys": [...]}` document).
pub fn verify_token(
    token: &str,
    jwks: &serde_json::Value,
    options: &VerifyOptions,
) -> Result<Claims, TokenError> {
    let jws = CompactJws::parse(token.trim()).map_err(|e| TokenError::Malformed(e.to_string()))?;
    match jws.alg {
        JwsAlg::None => return Err(TokenError::Unsecured),
        // What Aver signs with: RS256 by default, ES256 for providers that
        // opted in.
        JwsAlg::Rs256 | JwsAlg::Es256 => {}
        other => return Err(TokenError::WrongAlgorithm(other.name())),
    }
    let keys = jwks
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| TokenError::Malformed("JWKS has no keys array".into()))?;
    let kid = jws.header.get("kid").and_then(|k| k.as_str());
    let candidates: Vec<&serde_json::Value> = match kid {
        Some(kid) => {
            let found: Vec<_> = keys
                .iter()
                .filter(|k| k.get("kid").and_then(|v| v.as_str()) == Some(kid))
                .collect();
            if found.is_empty() {
                return Err(TokenError::UnknownKid(kid.to_string()));
            }
            found
        }
        None => keys.iter().collect(),
    };
    if !candidates.iter().any(|jwk| verify_with_jwk(&jws, jwk)) {
        return Err(TokenError::BadSignature);
    }

    let claims = jws
        .payload_json()
        .map_err(|e| TokenError::Malformed(e.to_string()))?
        .ok_or_else(|| TokenError::Malformed("empty payload".into()))?;
    let exp = int_claim(&claims, "exp")?;
    let nbf = int_claim(&claims, "nbf")?;
    if options.now > exp.saturating_add(options.leeway) {
        return Err(TokenError::Expired {
            exp,
            now: options.now,
        });
    }
    if options.now.saturating_add(options.leeway) < nbf {
        return Err(TokenError::NotYetValid {
            nbf,
            now: options.now,
        });
    }
    if let Some(expected) = &options.issuer {
        let found = claims
            .get("iss")
            .and_then(|v| v.as_str())
            .ok_or(TokenError::MissingClaim("iss"))?;
        if found != expected {
            return Err(TokenError::WrongIssuer {
                expected: expected.clone(),
                found: found.to_string(),
            });
        }
    }
    Ok(claims)
}

fn int_claim(claims: &Claims, name: &'static str) -> Result<u64, TokenError> {
    claims
        .get(name)
        .ok_or(TokenError::MissingClaim(name))?
        .as_u64()
        .ok_or_else(|| TokenError::Malformed(format!("{name} is not an integer")))
}

fn verify_with_jwk(jws: &CompactJws<'_>, jwk: &serde_json::Value) -> bool {
    // A key that names its algorithm is used for that algorithm only.
    if let Some(alg) = jwk.get("alg").and_then(|a| a.as_str())
        && alg != jws.alg.name()
    {
        return false;
    }
    if let Some(cert) = jwk
        .get("x5c")
        .and_then(|c| c.as_array())
        .and_then(|c| c.first())
        .and_then(|c| c.as_str())
        .and_then(b64::decode_std)
    {
        return jws.verify_with_certificate(&cert).is_ok();
    }
    false
}
