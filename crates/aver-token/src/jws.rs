//! Compact JWS (RFC 7515): parsing, verification and RS256 signing.
//!
//! The exact received string is kept: Azure Attestation hashes and stores
//! policy JWS byte for byte (`x-ms-policy-token-hash`), so nothing here ever
//! re-serialises a token it did not create.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair, UnparsedPublicKey};

use crate::b64;

/// Largest compact JWS accepted (tokens, policies). A policy document with
/// its signer chain is a few tens of KiB at most.
pub const MAX_JWS_LEN: usize = 1024 * 1024;

/// The smallest RSA key accepted by default (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// The smallest RSA key an operator may allow for compatibility (Azure's
/// own SDK test suite signs policies with 1024-bit keys).
pub const LEGACY_MIN_RSA_BITS: usize = 1024;

/// JWS `alg` values Aver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlg {
    /// Unsecured (`"none"`): draft-policy tokens and unsigned policies.
    None,
    /// RSASSA-PKCS1-v1_5 SHA-256. Also spelled `RSA256` by Azure's Python SDK
    /// and documentation; the signature is identical.
    Rs256,
    Rs384,
    Ps256,
    Ps384,
    Es256,
    Es384,
}

impl JwsAlg {
    pub fn from_header(alg: &str) -> Option<Self> {
        Some(match alg {
            "none" => JwsAlg::None,
            "RS256" | "RSA256" => JwsAlg::Rs256,
            "RS384" => JwsAlg::Rs384,
            "PS256" => JwsAlg::Ps256,
            "PS384" => JwsAlg::Ps384,
            "ES256" => JwsAlg::Es256,
            "ES384" => JwsAlg::Es384,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            JwsAlg::None => "none",
            JwsAlg::Rs256 => "RS256",
            JwsAlg::Rs384 => "RS384",
            JwsAlg::Ps256 => "PS256",
            JwsAlg::Ps384 => "PS384",
            JwsAlg::Es256 => "ES256",
            JwsAlg::Es384 => "ES384",
        }
    }
}

/// Why a JWS was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    #[error("unsupported JWS algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("the JWS signature does not verify")]
    BadSignature,
    #[error("the signing key does not fit the algorithm: {0}")]
    KeyMismatch(String),
    #[error("the JWS header marks extensions as critical that Aver does not understand: {0:?}")]
    UnsupportedCritical(Vec<String>),
    #[error("the signer's RSA key has {bits} bits; the minimum is {min}")]
    WeakKey { bits: usize, min: usize },
}

/// A parsed compact JWS that borrows the original text.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    text: &'a str,
    signing_input_len: usize,
    pub header: serde_json::Map<String, serde_json::Value>,
    pub alg: JwsAlg,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    /// Parses `header.payload.signature`. The header must be a JSON object
    /// with a known `alg`; the payload may be empty (policy reset).
    pub fn parse(text: &'a str) -> Result<Self, JwsError> {
        if text.len() > MAX_JWS_LEN {
            return Err(JwsError::Malformed("longer than 1 MiB"));
        }
        let mut parts = text.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed("expected three dot-separated parts"));
        };
        let header_bytes =
            b64::decode_lenient(h).ok_or(JwsError::Malformed("header is not base64url"))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header_bytes)
                .map_err(|_| JwsError::Malformed("header is not a JSON object"))?;
        let alg_name = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or(JwsError::Malformed("header has no alg"))?;
        let alg = JwsAlg::from_header(alg_name)
            .ok_or_else(|| JwsError::UnsupportedAlgorithm(alg_name.to_string()))?;
        // RFC 7515 §4.1.11: a recipient that does not understand every
        // extension named in `crit` must reject the JWS. Aver implements
        // none, so any `crit` is refused (and a malformed one too).
        if let Some(crit) = header.get("crit") {
            let names: Vec<String> = crit
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default();
            return Err(JwsError::UnsupportedCritical(names));
        }
        let payload = if p.is_empty() {
            Vec::new()
        } else {
            b64::decode_lenient(p).ok_or(JwsError::Malformed("payload is not base64url"))?
        };
        let signature = if s.is_empty() {
            Vec::new()
        } else {
            b64::decode_lenient(s).ok_or(JwsError::Malformed("signature is not base64url"))?
        };
        if alg == JwsAlg::None && !signature.is_empty() {
            return Err(JwsError::Malformed("unsecured JWS carries a signature"));
        }
        Ok(CompactJws {
            text,
            signing_input_len: h.len() + 1 + p.len(),
            header,
            alg,
            payload,
            signature,
        })
    }

    /// The exact text this JWS was parsed from.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// `base64url(header) "." base64url(payload)`, as received.
    pub fn signing_input(&self) -> &'a [u8] {
        self.text
            .as_bytes()
            .get(..self.signing_input_len)
            .unwrap_or_default()
    }

    /// The payload as a JSON object (`None` when empty).
    pub fn payload_json(
        &self,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, JwsError> {
        if self.payload.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&self.payload)
            .map(Some)
            .map_err(|_| JwsError::Malformed("payload is not a JSON object"))
    }

    /// The signer certificates named by the header: `x5c`, or `jwk.x5c` as
    /// the Azure Python SDK sends them. DER, leaf first.
    pub fn x5c(&self) -> Result<Vec<Vec<u8>>, JwsError> {
        let list = self
            .header
            .get("x5c")
            .or_else(|| self.header.get("jwk").and_then(|j| j.get("x5c")));
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        let list = list
            .as_array()
            .ok_or(JwsError::Malformed("x5c is not an array"))?;
        if list.len() > 10 {
            return Err(JwsError::Malformed("x5c has more than 10 certificates"));
        }
        list.iter()
            .map(|c| {
                c.as_str()
                    .and_then(b64::decode_std)
                    .ok_or(JwsError::Malformed("x5c entry is not base64 DER"))
            })
            .collect()
    }

    /// Verifies the signature with the public key of certificate `cert_der`
    /// (RSA keys of at least 2048 bits).
    pub fn verify_with_certificate(&self, cert_der: &[u8]) -> Result<(), JwsError> {
        self.verify_with_certificate_min_rsa(cert_der, MIN_RSA_BITS)
    }

    /// Like [`Self::verify_with_certificate`], accepting RSA keys down to
    /// `min_rsa_bits` (never below [`LEGACY_MIN_RSA_BITS`]). A key below the
    /// minimum is [`JwsError::WeakKey`], distinct from a bad signature, so
    /// that the caller can say which it is.
    pub fn verify_with_certificate_min_rsa(
        &self,
        cert_der: &[u8],
        min_rsa_bits: usize,
    ) -> Result<(), JwsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|_| JwsError::Malformed("signer certificate is not DER X.509"))?;
        let key = cert.public_key().subject_public_key.data.as_ref();
        let rsa_bits = match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(rsa.key_size()),
            _ => None,
        };
        match (self.alg, rsa_bits) {
            (JwsAlg::Rs256 | JwsAlg::Rs384 | JwsAlg::Ps256 | JwsAlg::Ps384, Some(bits)) => {
                let min = min_rsa_bits.max(LEGACY_MIN_RSA_BITS);
                if bits < min {
                    return Err(JwsError::WeakKey { bits, min });
                }
                if bits < MIN_RSA_BITS {
                    return self.verify_legacy_rsa(key, bits);
                }
                self.verify_with_key(key)
            }
            _ => self.verify_with_key(key),
        }
    }

    /// RSA between 1024 and 2047 bits, for operators who lowered the
    /// minimum for compatibility: RS256 only (aws-lc-rs' legacy algorithm;
    /// the clients that need it sign with RS256).
    fn verify_legacy_rsa(&self, public_key: &[u8], bits: usize) -> Result<(), JwsError> {
        if self.alg != JwsAlg::Rs256 {
            return Err(JwsError::WeakKey {
                bits,
                min: MIN_RSA_BITS,
            });
        }
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(self.signing_input(), &self.signature)
        .map_err(|_| JwsError::BadSignature)
    }

    /// Verifies with a raw public key: PKCS#1 RSAPublicKey DER for RS*/PS*,
    /// an uncompressed SEC1 point for ES*.
    pub fn verify_with_key(&self, public_key: &[u8]) -> Result<(), JwsError> {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            JwsAlg::None => return Err(JwsError::UnsupportedAlgorithm("none".into())),
            JwsAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            JwsAlg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            JwsAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            JwsAlg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            JwsAlg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            JwsAlg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
        };
        UnparsedPublicKey::new(alg, public_key)
            .verify(self.signing_input(), &self.signature)
            .map_err(|_| JwsError::BadSignature)
    }
}

/// The header with `alg` as its first member, as Azure emits it.
fn with_alg_first(
    alg: &str,
    rest: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut header = serde_json::Map::new();
    header.insert("alg".into(), alg.into());
    for (k, v) in rest {
        if k != "alg" {
            header.insert(k, v);
        }
    }
    header
}

/// Builds an RS256 compact JWS over `payload` with the given header fields
/// (`alg` is set here).
pub fn sign_rs256(
    key: &RsaKeyPair,
    header: serde_json::Map<String, serde_json::Value>,
    payload: &[u8],
) -> Result<String, JwsError> {
    let header = with_alg_first("RS256", header);
    let header = serde_json::to_vec(&header).map_err(|_| JwsError::Malformed("header"))?;
    let mut out = format!("{}.{}", b64::encode_url(&header), b64::encode_url(payload));
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        out.as_bytes(),
        &mut sig,
    )
    .map_err(|_| JwsError::KeyMismatch("RSA signing failed".into()))?;
    out.push('.');
    out.push_str(&b64::encode_url(&sig));
    Ok(out)
}

/// Builds an ES256 compact JWS (P-256, SHA-256, the fixed-length `r || s`
/// signature JWS requires).
pub fn sign_es256(
    key: &aws_lc_rs::signature::EcdsaKeyPair,
    header: serde_json::Map<String, serde_json::Value>,
    payload: &[u8],
) -> Result<String, JwsError> {
    let header = with_alg_first("ES256", header);
    let header = serde_json::to_vec(&header).map_err(|_| JwsError::Malformed("header"))?;
    let mut out = format!("{}.{}", b64::encode_url(&header), b64::encode_url(payload));
    let sig = key
        .sign(&SystemRandom::new(), out.as_bytes())
        .map_err(|_| JwsError::KeyMismatch("ECDSA signing failed".into()))?;
    out.push('.');
    out.push_str(&b64::encode_url(sig.as_ref()));
    Ok(out)
}

/// Builds a compact JWS with header `alg` whose signature over the signing
/// input comes from `sign` (a key held in a token), already in the JWS
/// encoding for `alg`.
pub fn sign_with(
    alg: &str,
    header: serde_json::Map<String, serde_json::Value>,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, JwsError>,
) -> Result<String, JwsError> {
    let header = with_alg_first(alg, header);
    let header = serde_json::to_vec(&header).map_err(|_| JwsError::Malformed("header"))?;
    let mut out = format!("{}.{}", b64::encode_url(&header), b64::encode_url(payload));
    let sig = sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64::encode_url(&sig));
    Ok(out)
}

/// An unsecured JWS (`{"alg":"none"}` header, empty signature), as Azure
/// Attestation returns for draft-policy attestation.
pub fn unsecured(header: serde_json::Map<String, serde_json::Value>, payload: &[u8]) -> String {
    let header = with_alg_first("none", header);
    let header = serde_json::to_vec(&header).unwrap_or_default();
    format!("{}.{}.", b64::encode_url(&header), b64::encode_url(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_input() {
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.e30.", "e30.e30."] {
            assert!(CompactJws::parse(bad).is_err(), "{bad}");
        }
        // {"alg":"HS256"}
        let hs = format!("{}.e30.", b64::encode_url(br#"{"alg":"HS256"}"#));
        assert_eq!(
            CompactJws::parse(&hs).unwrap_err(),
            JwsError::UnsupportedAlgorithm("HS256".into())
        );
    }

    #[test]
    fn critical_extensions_are_refused() {
        // {"alg":"none","crit":["exp"],"exp":1}
        let h = b64::encode_url(br#"{"alg":"none","crit":["exp"],"exp":1}"#);
        assert_eq!(
            CompactJws::parse(&format!("{h}.e30.")).unwrap_err(),
            JwsError::UnsupportedCritical(vec!["exp".into()])
        );
        let h = b64::encode_url(br#"{"alg":"RS256","crit":"b64"}"#);
        assert!(matches!(
            CompactJws::parse(&format!("{h}.e30.c2ln")),
            Err(JwsError::UnsupportedCritical(_))
        ));
    }

    #[test]
    fn unsecured_round_trip_keeps_exact_text() {
        let text = "eyJhbGciOiJub25lIn0..";
        let jws = CompactJws::parse(text).unwrap();
        assert_eq!(jws.alg, JwsAlg::None);
        assert!(jws.payload.is_empty());
        assert_eq!(jws.as_str(), text);
        assert_eq!(jws.signing_input(), b"eyJhbGciOiJub25lIn0.");
        let made = unsecured(serde_json::Map::new(), b"{}");
        assert_eq!(made, "eyJhbGciOiJub25lIn0.e30.");
    }
}
