//! The documents a relying party fetches: OpenID configuration and JWKS.

use crate::SigningKey;

/// Claims listed in `claims_supported`, as Azure Attestation lists them.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "cnf",
    "nonce",
    "x-ms-ver",
    "x-ms-attestation-type",
    "x-ms-policy-hash",
    "x-ms-policy-signer",
    "x-ms-sgx-is-debuggable",
    "x-ms-sgx-mrenclave",
    "x-ms-sgx-mrsigner",
    "x-ms-sgx-svn",
    "x-ms-sgx-ehd",
    "x-ms-sgx-collateral",
    "is-debuggable",
    "sgx-mrsigner",
    "sgx-mrenclave",
    "product-id",
    "svn",
    "tee",
];

/// `/.well-known/openid-configuration` for `issuer` (no trailing slash).
pub fn openid_configuration(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "response_types_supported": ["token", "none"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "revocation_endpoint": format!("{issuer}/revoke"),
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/certs"),
        "claims_supported": CLAIMS_SUPPORTED,
    })
}

/// `/certs`: every published key, current first.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> serde_json::Value {
    let keys: Vec<_> = keys.into_iter().map(SigningKey::jwk).collect();
    serde_json::json!({ "keys": keys })
}
