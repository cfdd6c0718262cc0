//! Policy documents as Azure carries them: a compact JWS whose payload is
//! `{"AttestationPolicy": base64url(policy text)}`, unsigned (`alg: none`)
//! or signed by a policy signer whose certificate is in `x5c` or `jwk.x5c`.
//! The exact JWS string received is what is hashed and stored.

use aver_token::{CompactJws, JwsAlg, JwsError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::Provider;

/// The JWS returned for a type with no policy at all (Azure's TPM default).
pub const EMPTY_POLICY_JWS: &str = "eyJhbGciOiJub25lIn0..";

/// A policy (or reset) JWS that parsed and whose signature, if any, holds.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Exactly as received.
    pub jws: String,
    /// The policy text; `None` for an empty payload (reset).
    pub text: Option<String>,
    /// The signer certificate (DER), when signed.
    pub signer: Option<Vec<u8>>,
}

fn invalid_operation(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("InvalidOperation", message)
}

/// Parses a JWS body and verifies its signature with its own certificate
/// (RSA keys of at least `min_rsa_bits`). Whether that signer is trusted is
/// [`authorize`]'s question.
pub fn parse(body: &str, min_rsa_bits: usize) -> Result<Submission, ApiError> {
    let body = body.trim();
    let jws =
        CompactJws::parse(body).map_err(|e| invalid_operation(format!("Malformed JWT: {e}")))?;
    let signer = signer_certificate(&jws, min_rsa_bits)?;
    let text = match jws
        .payload_json()
        .map_err(|e| invalid_operation(format!("Malformed JWT: {e}")))?
    {
        None => None,
        Some(payload) => {
            let value = payload
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("AttestationPolicy"))
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    invalid_operation("the policy JWS has no AttestationPolicy claim")
                })?;
            let Value::String(encoded) = value else {
                return Err(invalid_operation("AttestationPolicy must be a string"));
            };
            // GA clients base64url-encode the text; preview clients sent it
            // raw. Policy text always contains characters base64url lacks
            // (';', '=', spaces), so the two cannot be confused.
            let text = match aver_token::b64::decode_lenient(encoded) {
                Some(bytes) => String::from_utf8(bytes)
                    .map_err(|_| ApiError::invalid_parameter("the policy text is not UTF-8"))?,
                None => encoded.clone(),
            };
            Some(text)
        }
    };
    Ok(Submission {
        jws: body.to_string(),
        text,
        signer,
    })
}

/// The signer certificate of a signed JWS, after checking the signature.
/// An RSA key below `min_rsa_bits` is `SignerKeyTooSmall`, not a bad
/// signature: the signature may well be valid.
pub fn signer_certificate(
    jws: &CompactJws<'_>,
    min_rsa_bits: usize,
) -> Result<Option<Vec<u8>>, ApiError> {
    if jws.alg == JwsAlg::None {
        return Ok(None);
    }
    let certs = jws
        .x5c()
        .map_err(|e| invalid_operation(format!("Malformed JWT: {e}")))?;
    let cert = certs.into_iter().next().ok_or_else(|| {
        invalid_operation("a signed JWS must carry its signer certificate in x5c or jwk.x5c")
    })?;
    jws.verify_with_certificate_min_rsa(&cert, min_rsa_bits)
        .map_err(|e| match e {
            JwsError::WeakKey { bits, min } => ApiError::bad_request(
                "SignerKeyTooSmall",
                format!(
                    "the policy signer's RSA key has {bits} bits; the minimum is {min} (an operator may lower it for this provider: aver provider configure NAME --min-signer-rsa-bits {bits})"
                ),
            ),
            other => ApiError::bad_request(
                "InvalidSignature",
                format!("the JWS signature does not verify with its x5c certificate: {other}"),
            ),
        })?;
    Ok(Some(cert))
}

/// Isolated providers accept only JWS signed by one of their signers.
pub fn authorize(provider: &Provider, signer: Option<&[u8]>) -> Result<(), ApiError> {
    if !provider.isolated {
        return Ok(());
    }
    match signer {
        None => Err(invalid_operation(format!(
            "provider {:?} is in isolated mode: the JWS must be signed by a trusted policy signer",
            provider.name
        ))),
        Some(cert) if provider.signers.iter().any(|s| s == cert) => Ok(()),
        Some(cert) => Err(invalid_operation(format!(
            "the JWS signer (thumbprint {}) is not a trusted policy signer of provider {:?}",
            thumbprint(cert),
            provider.name
        ))),
    }
}

pub use aver_token::policy::thumbprint;

/// The JWK Azure reports for a policy signer or management certificate.
pub fn signer_jwk(der: &[u8]) -> Value {
    let is_ec = x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c.public_key().algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1")
        .unwrap_or(false);
    json!({
        "alg": if is_ec { "ES256" } else { "RS256" },
        "kty": if is_ec { "EC" } else { "RSA" },
        "use": "sig",
        "x5c": [aver_token::b64::encode_std(der)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_jws_round_trips() {
        let text = "version=1.0; authorizationrules{=> permit();}; issuancerules{};";
        let jws = aver_token::policy::unsigned(Some(text));
        let s = parse(&jws, 2048).unwrap();
        assert_eq!(s.text.as_deref(), Some(text));
        assert!(s.signer.is_none());
        assert!(parse(EMPTY_POLICY_JWS, 2048).unwrap().text.is_none());
        assert_eq!(
            parse("nonsense", 2048).unwrap_err().code,
            "InvalidOperation"
        );
    }
}
