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

/// `/.well-known/openid-configuration` for `issuer` (no trailing slash),
/// signing with RS256 as Azure does.
pub fn openid_configuration(issuer: &str) -> serde_json::Value {
    openid_configuration_with_algs(issuer, &[crate::KeyAlg::Rs256])
}

/// `/.well-known/openid-configuration` naming the algorithms of the keys
/// the provider signs (or will sign) with.
pub fn openid_configuration_with_algs(issuer: &str, algs: &[crate::KeyAlg]) -> serde_json::Value {
    let algs: Vec<&str> = algs.iter().map(|a| a.name()).collect();
    serde_json::json!({
        "response_types_supported": ["token", "none"],
        "id_token_signing_alg_values_supported": algs,
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
