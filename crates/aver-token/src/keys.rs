//! Token-signing keys.
//!
//! Each key is RSA-2048 (Azure's Python SDK verifies every token as RS256
//! and cannot verify EC signatures) with a self-signed certificate whose
//! common name is the issuer URL, published in `/certs` as `x5c`. The key id
//! is the certificate's SHA-256 thumbprint (base64url, as `x5t#S256`), so it
//! is stable across restarts and changes whenever the key does.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, PKCS_RSA_SHA256};
use sha2::{Digest, Sha256};

use crate::{Claims, b64, jws};

/// Why a key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("stored key is unusable: {0}")]
    Invalid(String),
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("signing failed: {0}")]
    Sign(#[from] jws::JwsError),
}

/// An RSA token-signing key and its self-signed certificate.
pub struct SigningKey {
    key: RsaKeyPair,
    pkcs8: Vec<u8>,
    certificate: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new RSA-2048 key with a certificate for `issuer`.
    pub fn generate(issuer: &str) -> Result<Self, KeyError> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let pkcs8 = key
            .as_der()
            .map_err(|_| KeyError::Generate)?
            .as_ref()
            .to_vec();
        let certificate = self_signed_certificate(&pkcs8, issuer)?;
        Self::from_parts(pkcs8, certificate)
    }

    /// Loads a stored key: PKCS#8 private key and its certificate (DER).
    pub fn from_parts(pkcs8: Vec<u8>, certificate: Vec<u8>) -> Result<Self, KeyError> {
        let key = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&certificate)
            .map_err(|e| KeyError::Invalid(format!("certificate: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key().as_ref() {
            return Err(KeyError::Invalid(
                "certificate does not belong to the private key".into(),
            ));
        }
        let kid = b64::encode_url(&Sha256::digest(&certificate));
        Ok(SigningKey {
            key,
            pkcs8,
            certificate,
            kid,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The JWK published in `/certs`: `kid`, `kty` and `x5c` as Azure
    /// Attestation publishes them, plus `n`, `e`, `alg` and `use` so stock
    /// OIDC libraries need not parse the certificate.
    pub fn jwk(&self) -> serde_json::Value {
        let (n, e) = rsa_components(&self.certificate).unwrap_or_default();
        serde_json::json!({
            "kid": self.kid,
            "kty": "RSA",
            "x5c": [b64::encode_std(&self.certificate)],
            "alg": "RS256",
            "use": "sig",
            "n": b64::encode_url(&n),
            "e": b64::encode_url(&e),
        })
    }

    /// Signs `claims` as an RS256 JWT with header `alg`, `jku`, `kid`, `typ`,
    /// as Azure Attestation does. Claims are emitted in key order.
    pub fn sign_jwt(&self, jku: &str, claims: &Claims) -> Result<String, KeyError> {
        let mut header = serde_json::Map::new();
        header.insert("jku".into(), jku.into());
        header.insert("kid".into(), self.kid.clone().into());
        header.insert("typ".into(), "JWT".into());
        let payload =
            serde_json::to_vec(&sorted(claims)).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok(jws::sign_rs256(&self.key, header, &payload)?)
    }

    /// Signs arbitrary bytes with RS256 (PKCS#1 v1.5, SHA-256).
    pub fn sign_jws(
        &self,
        header: serde_json::Map<String, serde_json::Value>,
        payload: &[u8],
    ) -> Result<String, KeyError> {
        Ok(jws::sign_rs256(&self.key, header, payload)?)
    }
}

/// An unsecured JWT (`alg: none`) with the same claim ordering, for
/// draft-policy attestation.
pub fn unsecured_jwt(claims: &Claims) -> String {
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), "JWT".into());
    let payload = serde_json::to_vec(&sorted(claims)).unwrap_or_default();
    jws::unsecured(header, &payload)
}

/// Claims sorted by name, as every real Azure token is.
fn sorted(claims: &Claims) -> std::collections::BTreeMap<&String, &serde_json::Value> {
    claims.iter().collect()
}

fn self_signed_certificate(pkcs8: &[u8], issuer: &str) -> Result<Vec<u8>, KeyError> {
    let key = KeyPair::try_from(pkcs8)?;
    if !key.is_compatible(&PKCS_RSA_SHA256) {
        return Err(KeyError::Invalid("token-signing key is not RSA".into()));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, issuer);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = rcgen::date_time_ymd(2019, 5, 1);
    params.not_after = rcgen::date_time_ymd(2050, 12, 31);
    Ok(params.self_signed(&key)?.der().to_vec())
}

/// Modulus and exponent of an RSA certificate's key (big-endian, no
/// leading zeros), read with the X.509 parser.
pub(crate) fn rsa_components(cert_der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use x509_parser::public_key::PublicKey;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    match cert.public_key().parsed().ok()? {
        PublicKey::RSA(rsa) => Some((
            strip_zero(rsa.modulus).to_vec(),
            strip_zero(rsa.exponent).to_vec(),
        )),
        _ => None,
    }
}

fn strip_zero(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_its_parts() {
        let key = SigningKey::generate("https://aver.example").unwrap();
        let again =
            SigningKey::from_parts(key.pkcs8_der().to_vec(), key.certificate_der().to_vec())
                .unwrap();
        assert_eq!(key.kid(), again.kid());
        let other = SigningKey::generate("https://aver.example").unwrap();
        assert!(
            SigningKey::from_parts(key.pkcs8_der().to_vec(), other.certificate_der().to_vec())
                .is_err()
        );
        let (_, cert) = x509_parser::parse_x509_certificate(key.certificate_der()).unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "https://aver.example"
        );
        let jwk = key.jwk();
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["n"].as_str().unwrap().len(), 342, "2048-bit modulus");
    }
}
