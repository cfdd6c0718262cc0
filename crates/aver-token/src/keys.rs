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

/// A private key held outside Aver's memory (a PKCS#11 token): Aver asks
/// it for signatures and never sees the key. aver-token only defines the
/// interface, so it stays free of any module-loading code; the PKCS#11
/// implementation lives in the `aver-pkcs11` crate.
pub trait RemoteSigner: Send + Sync {
    /// The algorithm the key signs with.
    fn alg(&self) -> KeyAlg;
    /// The key's public part as it appears in a certificate's
    /// `subjectPublicKey`: a PKCS#1 `RSAPublicKey` (DER) or an uncompressed
    /// SEC1 P-256 point.
    fn public_key(&self) -> &[u8];
    /// Signs `message` in the JWS encoding: RSASSA-PKCS1-v1_5 with SHA-256
    /// for RS256, fixed-length `r || s` (64 bytes) over SHA-256 for ES256.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
    /// Where the key lives, for logs and errors (never a PIN).
    fn describe(&self) -> String;
}

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Remote(Box<dyn RemoteSigner>),
}

/// A token-signing key (RSA or P-256) and its self-signed certificate.
pub struct SigningKey {
    key: Inner,
    /// Empty for a remote key: there is no private key to hold.
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
            Inner::Remote(r) => r.public_key().to_vec(),
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

    /// Makes a self-signed certificate for a key held in a token, signed by
    /// the token itself (rcgen builds the TBS, the token signs it).
    pub fn generate_remote(issuer: &str, signer: Box<dyn RemoteSigner>) -> Result<Self, KeyError> {
        let certificate = remote_self_signed_certificate(signer.as_ref(), issuer)?;
        Self::from_remote(signer, certificate)
    }

    /// Loads a key held in a token with its stored certificate (DER),
    /// checking that the certificate is the token key's.
    pub fn from_remote(
        signer: Box<dyn RemoteSigner>,
        certificate: Vec<u8>,
    ) -> Result<Self, KeyError> {
        let (_, cert) = x509_parser::parse_x509_certificate(&certificate)
            .map_err(|e| KeyError::Invalid(format!("certificate: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != signer.public_key() {
            return Err(KeyError::Invalid(format!(
                "the stored certificate does not belong to the key in {}",
                signer.describe()
            )));
        }
        let kid = b64::encode_url(&Sha256::digest(&certificate));
        Ok(SigningKey {
            key: Inner::Remote(signer),
            pkcs8: Vec::new(),
            certificate,
            kid,
        })
    }

    /// Whether the private key lives outside Aver (a PKCS#11 token).
    pub fn is_remote(&self) -> bool {
        matches!(self.key, Inner::Remote(_))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's signature algorithm.
    pub fn alg(&self) -> KeyAlg {
        match self.key {
            Inner::Rsa(_) => KeyAlg::Rs256,
            Inner::Ec(_) => KeyAlg::Es256,
            Inner::Remote(ref r) => r.alg(),
        }
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// The private key (PKCS#8 DER), or `None` for a key held in a token.
    pub fn pkcs8_der(&self) -> Option<&[u8]> {
        (!self.is_remote()).then_some(self.pkcs8.as_slice())
    }

    /// The JWK published in `/certs`: `kid`, `kty` and `x5c` as Azure
    /// Attestation publishes them, plus `n`, `e` (RSA) or `crv`, `x`, `y`
    /// (EC), `alg` and `use` so stock OIDC libraries need not parse the
    /// certificate.
    pub fn jwk(&self) -> serde_json::Value {
        let ec_point = match &self.key {
            Inner::Ec(key) => Some(key.public_key().as_ref()),
            Inner::Remote(r) if r.alg() == KeyAlg::Es256 => Some(r.public_key()),
            _ => None,
        };
        if let Some(point) = ec_point {
            // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
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
            Inner::Remote(r) => jws::sign_with(r.alg().name(), header, payload, |m| {
                r.sign(m).map_err(jws::JwsError::KeyMismatch)
            })?,
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
    Ok(certificate_params(issuer).self_signed(&key)?.der().to_vec())
}

/// rcgen's view of a token key: rcgen encodes the TBS certificate, the
/// token signs it.
struct RemoteCertKey<'a>(&'a dyn RemoteSigner);

impl rcgen::PublicKeyData for RemoteCertKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.0.alg() {
            KeyAlg::Rs256 => &PKCS_RSA_SHA256,
            KeyAlg::Es256 => &PKCS_ECDSA_P256_SHA256,
        }
    }
}

impl rcgen::SigningKey for RemoteCertKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig = self.0.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)?;
        match self.0.alg() {
            KeyAlg::Rs256 => Ok(sig),
            // X.509 carries ECDSA signatures DER-encoded, JWS as r || s.
            KeyAlg::Es256 => ecdsa_fixed_to_der(&sig).ok_or(rcgen::Error::RemoteKeyError),
        }
    }
}

/// `r || s` (32 bytes each) to a DER `Ecdsa-Sig-Value` (RFC 3279), encoded
/// by the `der` crate (which adds or strips the INTEGER sign bytes).
fn ecdsa_fixed_to_der(sig: &[u8]) -> Option<Vec<u8>> {
    use der::Encode as _;
    if sig.len() != 64 {
        return None;
    }
    let (r, s) = sig.split_at(32);
    // der encodes a Vec as a SEQUENCE OF.
    let seq = vec![
        der::asn1::UintRef::new(r).ok()?,
        der::asn1::UintRef::new(s).ok()?,
    ];
    seq.to_der().ok()
}

fn remote_self_signed_certificate(
    signer: &dyn RemoteSigner,
    issuer: &str,
) -> Result<Vec<u8>, KeyError> {
    Ok(certificate_params(issuer)
        .self_signed(&RemoteCertKey(signer))?
        .der()
        .to_vec())
}

fn certificate_params(issuer: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, issuer);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = rcgen::date_time_ymd(2019, 5, 1);
    params.not_after = rcgen::date_time_ymd(2050, 12, 31);
    params
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
        let again = SigningKey::from_parts(
            key.pkcs8_der().unwrap().to_vec(),
            key.certificate_der().to_vec(),
        )
        .unwrap();
        assert_eq!(key.kid(), again.kid());
        let other = SigningKey::generate("https://aver.example").unwrap();
        assert!(
            SigningKey::from_parts(
                key.pkcs8_der().unwrap().to_vec(),
                other.certificate_der().to_vec()
            )
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
        let again = SigningKey::from_parts(
            key.pkcs8_der().unwrap().to_vec(),
            key.certificate_der().to_vec(),
        )
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
