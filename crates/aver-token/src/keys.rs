//! Token-signing keys.
//!
//! A key is RSA-2048 (RS256, the default: Azure's Python SDK verifies every
//! token as RS256 and cannot verify EC signatures) or, for providers that
//! opt in, ECDSA P-256 (ES256: about a quarter of the signing cost). Each
//! has a self-signed certificate whose common name is the issuer URL,
//! published in `/certs` as `x5c`. The key id is the certificate's SHA-256
//! thumbprint (base64url, as `x5t#S256`), so it is stable across restarts
//! and changes whenever the key does.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair,
};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_RSA_SHA256,
};
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

/// The signature algorithm of a token-signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// RSA-2048, PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl KeyAlg {
    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
        }
    }

    /// Parses `RS256` or `ES256` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "RS256" => Some(KeyAlg::Rs256),
            "ES256" => Some(KeyAlg::Es256),
            _ => None,
        }
    }
}

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A token-signing key (RSA or P-256) and its self-signed certificate.
pub struct SigningKey {
    key: Inner,
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
        Self::generate_alg(issuer, KeyAlg::Rs256)
    }

    /// Generates a new key for `alg` with a certificate for `issuer`.
    pub fn generate_alg(issuer: &str, alg: KeyAlg) -> Result<Self, KeyError> {
        let pkcs8 = match alg {
            KeyAlg::Rs256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| KeyError::Generate)?
                .as_der()
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            KeyAlg::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| KeyError::Generate)?
                .to_pkcs8v1()
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
        };
        let certificate = self_signed_certificate(&pkcs8, issuer, alg)?;
        Self::from_parts(pkcs8, certificate)
    }

    /// Loads a stored key: PKCS#8 private key (RSA or P-256) and its
    /// certificate (DER).
    pub fn from_parts(pkcs8: Vec<u8>, certificate: Vec<u8>) -> Result<Self, KeyError> {
        let key = match RsaKeyPair::from_pkcs8(&pkcs8) {
            Ok(rsa) => Inner::Rsa(rsa),
            Err(rsa_error) => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                .map(Inner::Ec)
                .map_err(|_| {
                    KeyError::Invalid(format!(
                        "neither an RSA nor a P-256 PKCS#8 key ({rsa_error})"
                    ))
                })?,
        };
        let public = match &key {
            Inner::Rsa(k) => k.public_key().as_ref().to_vec(),
            Inner::Ec(k) => k.public_key().as_ref().to_vec(),
        };
        let (_, cert) = x509_parser::parse_x509_certificate(&certificate)
            .map_err(|e| KeyError::Invalid(format!("certificate: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != public.as_slice() {
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

    /// The key's signature algorithm.
    pub fn alg(&self) -> KeyAlg {
        match self.key {
            Inner::Rsa(_) => KeyAlg::Rs256,
            Inner::Ec(_) => KeyAlg::Es256,
        }
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The JWK published in `/certs`: `kid`, `kty` and `x5c` as Azure
    /// Attestation publishes them, plus `n`, `e` (RSA) or `crv`, `x`, `y`
    /// (EC), `alg` and `use` so stock OIDC libraries need not parse the
    /// certificate.
    pub fn jwk(&self) -> serde_json::Value {
        if let Inner::Ec(key) = &self.key {
            // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
            let point = key.public_key().as_ref();
            let x = point.get(1..33).unwrap_or_default();
            let y = point.get(33..65).unwrap_or_default();
            return serde_json::json!({
                "kid": self.kid,
                "kty": "EC",
                "x5c": [b64::encode_std(&self.certificate)],
                "alg": "ES256",
                "use": "sig",
                "crv": "P-256",
                "x": b64::encode_url(x),
                "y": b64::encode_url(y),
            });
        }
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

    /// Signs `claims` as a JWT (RS256 or ES256, by the key) with header
    /// `alg`, `jku`, `kid`, `typ`, as Azure Attestation does. Claims are
    /// emitted in key order.
    pub fn sign_jwt(&self, jku: &str, claims: &Claims) -> Result<String, KeyError> {
        let mut header = serde_json::Map::new();
        header.insert("jku".into(), jku.into());
        header.insert("kid".into(), self.kid.clone().into());
        header.insert("typ".into(), "JWT".into());
        let payload =
            serde_json::to_vec(&sorted(claims)).map_err(|e| KeyError::Invalid(e.to_string()))?;
        self.sign_jws(header, &payload)
    }

    /// Signs arbitrary bytes: RS256 (PKCS#1 v1.5, SHA-256) with an RSA key,
    /// ES256 with a P-256 key.
    pub fn sign_jws(
        &self,
        header: serde_json::Map<String, serde_json::Value>,
        payload: &[u8],
    ) -> Result<String, KeyError> {
        Ok(match &self.key {
            Inner::Rsa(key) => jws::sign_rs256(key, header, payload)?,
            Inner::Ec(key) => jws::sign_es256(key, header, payload)?,
        })
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

fn self_signed_certificate(pkcs8: &[u8], issuer: &str, alg: KeyAlg) -> Result<Vec<u8>, KeyError> {
    let sign_alg = match alg {
        KeyAlg::Rs256 => &PKCS_RSA_SHA256,
        KeyAlg::Es256 => &PKCS_ECDSA_P256_SHA256,
    };
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.to_vec().into(), sign_alg)?;
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
        assert_eq!(key.alg(), KeyAlg::Rs256);
    }

    #[test]
    fn es256_key_signs_verifiable_tokens() {
        let key = SigningKey::generate_alg("https://aver.example", KeyAlg::Es256).unwrap();
        assert_eq!(key.alg(), KeyAlg::Es256);
        let again =
            SigningKey::from_parts(key.pkcs8_der().to_vec(), key.certificate_der().to_vec())
                .unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(again.alg(), KeyAlg::Es256);
        let jwk = key.jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        let mut claims = crate::Claims::new();
        claims.insert("iss".into(), "https://aver.example".into());
        claims.insert("nbf".into(), 100.into());
        claims.insert("exp".into(), 200.into());
        let token = key.sign_jwt("https://aver.example/certs", &claims).unwrap();
        let parsed = crate::CompactJws::parse(&token).unwrap();
        assert_eq!(parsed.alg, crate::JwsAlg::Es256);
        let jwks = crate::metadata::jwks([&key]);
        let options = crate::VerifyOptions {
            issuer: Some("https://aver.example".into()),
            now: 150,
            leeway: 0,
        };
        crate::verify_token(&token, &jwks, &options).unwrap();
        // A stock JOSE library agrees, from x/y alone.
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
    }
}
