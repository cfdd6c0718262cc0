//! Policy documents as Azure's clients build them: a JWS whose payload is
//! `{"AttestationPolicy": base64url(policy text)}`, unsigned or signed by a
//! policy signer whose certificate travels in `x5c`.

use crate::{KeyError, SigningKey, b64, jws};

/// The payload Azure expects for a policy text.
pub fn policy_payload(text: &str) -> Vec<u8> {
    serde_json::json!({ "AttestationPolicy": b64::encode_url(text.as_bytes()) })
        .to_string()
        .into_bytes()
}

/// An unsigned policy JWS (`{"alg":"none"}`), or an unsigned reset JWS when
/// `text` is `None`.
pub fn unsigned(text: Option<&str>) -> String {
    let payload = text.map(policy_payload).unwrap_or_default();
    jws::unsecured(serde_json::Map::new(), &payload)
}

/// A policy (or reset, when `text` is `None`) JWS signed RS256 by `signer`,
/// with its certificate in `x5c`.
pub fn signed(text: Option<&str>, signer: &SigningKey) -> Result<String, KeyError> {
    let mut header = serde_json::Map::new();
    header.insert(
        "x5c".into(),
        serde_json::json!([b64::encode_std(signer.certificate_der())]),
    );
    let payload = text.map(policy_payload).unwrap_or_default();
    signer.sign_jws(header, &payload)
}

/// A signed certificate-management JWS (`/certificates:add|remove`):
/// payload `{"policyCertificate": {"kty": ..., "x5c": [certificate]}}`.
pub fn certificate_management(
    certificate_der: &[u8],
    signer: &SigningKey,
) -> Result<String, KeyError> {
    let mut header = serde_json::Map::new();
    header.insert(
        "x5c".into(),
        serde_json::json!([b64::encode_std(signer.certificate_der())]),
    );
    let payload = serde_json::json!({
        "policyCertificate": { "kty": "RSA", "x5c": [b64::encode_std(certificate_der)] }
    });
    signer.sign_jws(header, payload.to_string().as_bytes())
}

/// Upper-case hex SHA-1 of a certificate, as Azure reports policy-signer
/// thumbprints.
pub fn thumbprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    hex_upper(digest.as_ref())
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
