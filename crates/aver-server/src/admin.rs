//! Admin authentication: our stand-in for Azure AD on management calls.
//!
//! A management request carries `Authorization: Bearer <credential>`:
//! * a provider admin key (`aver_...`), compared by SHA-256 hash in
//!   constant time against the provider's stored hashes; or
//! * a JWT from a configured OIDC issuer, verified against that issuer's
//!   JWKS, with the configured audience and a role claim (`roles` array or
//!   `role` string) holding the admin role; it grants admin on every
//!   provider, or on one provider with the role `<role>:<provider>`.
//!
//! Attestation and metadata endpoints need no credentials (the Azure SDKs
//! send a bearer token everywhere; it is ignored there).

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::error::ApiError;
use crate::state::Provider;

/// Who made a management call, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// OIDC issuer trusted for admin tokens.
#[derive(Debug, Clone)]
pub struct OidcAdmin {
    pub issuer: String,
    pub audience: String,
    pub role: String,
    /// The issuer's JWKS (`{"keys": [...]}`).
    pub jwks: Value,
}

/// Admin authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    pub oidc: Option<OidcAdmin>,
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
}

impl AdminAuth {
    /// Authenticates a management call on `provider` at time `now`.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        provider: &Provider,
        now: u64,
    ) -> Result<Actor, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                unauthorized("management calls need an Authorization: Bearer credential")
            })?;
        let credential = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be a Bearer credential"))?;

        if credential.starts_with("aver_") {
            let hash = crate::load::admin_key_hash(credential);
            let known = provider.admin_key_hashes.iter().any(|stored| {
                aws_lc_rs::constant_time::verify_slices_are_equal(stored, &hash).is_ok()
            });
            return if known {
                Ok(Actor(format!(
                    "admin-key:{}",
                    hex::encode(hash.get(..6).unwrap_or(&hash))
                )))
            } else {
                Err(unauthorized(&format!(
                    "the admin key is not valid for provider {:?}",
                    provider.name
                )))
            };
        }

        let Some(oidc) = &self.oidc else {
            return Err(unauthorized(
                "unrecognised credential (admin keys start with aver_; no OIDC issuer is configured)",
            ));
        };
        let options = aver_token::VerifyOptions {
            issuer: Some(oidc.issuer.clone()),
            now,
            leeway: 60,
        };
        let claims = aver_token::verify_token(credential, &oidc.jwks, &options)
            .map_err(|e| unauthorized(&format!("admin token rejected: {e}")))?;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == oidc.audience,
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(oidc.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(unauthorized(&format!(
                "admin token audience is not {:?}",
                oidc.audience
            )));
        }
        let scoped = format!("{}:{}", oidc.role, provider.name);
        let has_role = |r: &str| r == oidc.role || r == scoped;
        let role_ok = match (claims.get("roles"), claims.get("role")) {
            (Some(Value::Array(roles)), _) => roles.iter().filter_map(Value::as_str).any(has_role),
            (_, Some(Value::String(role))) => has_role(role),
            _ => false,
        };
        if !role_ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "the admin token lacks the role {:?} (or {scoped:?})",
                    oidc.role
                ),
            ));
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        Ok(Actor(format!("oidc:{subject}")))
    }
}
