//! Wire messages of `POST /attest/Tpm` (see `PROTOCOL.md`).
//!
//! The HTTP body is `{"data": base64url(UTF-8 JSON {"payload": {...}})}`
//! in both directions. [`decode_message`] turns the `data` value into a
//! typed [`TpmMessage`]; it never panics and bounds every size.

use crate::error::TpmError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest accepted `data` value (base64url characters): 8 MiB.
pub const MAX_DATA_LEN: usize = 8 * 1024 * 1024;
/// Most logs in one attestation.
pub const MAX_LOGS: usize = 4;
/// Most PCR banks in one attestation.
pub const MAX_PCR_BANKS: usize = 8;
/// Most PCR values per bank.
pub const MAX_PCRS_PER_BANK: usize = 24;

/// Decodes base64url with or without padding.
pub fn b64url_decode(field: &str, s: &str) -> Result<Vec<u8>, TpmError> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| TpmError::msg(format!("{field} is not base64url")))
}

/// Encodes base64url without padding.
pub fn b64url(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The outer `{"payload": …, "metadata"?: …}` object.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Envelope {
    /// The message.
    pub payload: Value,
    /// Client metadata (MAA's Windows client sends `{"os_ver": …}`); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One event log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LogEntry {
    /// `"TCG"` (a TCG PC Client log; legacy or crypto-agile). `"IMA"` is
    /// recognised and refused.
    #[serde(rename = "type")]
    pub log_type: String,
    /// The log bytes, base64url.
    pub log: String,
}

/// One PCR value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PcrEntry {
    /// PCR index (0–23).
    pub index: u32,
    /// Value, base64url.
    pub digest: String,
}

/// One PCR bank.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PcrBank {
    /// TPM_ALG_ID of the bank (4 = SHA-1, 11 = SHA-256, 12 = SHA-384, 13 = SHA-512).
    pub algorithm: u16,
    /// Values.
    pub values: Vec<PcrEntry>,
}

/// `tpm_att_data.current_attestation`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Attestation {
    /// Event logs (at most one `TCG` log is used).
    #[serde(default)]
    pub logs: Vec<LogEntry>,
    /// AK certificate (DER, base64url) from enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aik_cert: Option<String>,
    /// AK TPM2B_PUBLIC (or bare TPMT_PUBLIC), base64url.
    pub aik_pub: String,
    /// EK certificate (DER, base64url). Accepted for compatibility, not
    /// used: the AK↔EK binding comes from the AK certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_cert: Option<String>,
    /// EK TPM2B_PUBLIC, base64url. Accepted, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_pub: Option<String>,
    /// PCR values of every quoted PCR.
    pub pcrs: Vec<PcrBank>,
    /// TPMS_ATTEST exactly as signed (TPM2B_ATTEST.attestationData), base64url.
    pub quote: String,
    /// TPMT_SIGNATURE, base64url.
    pub signature: String,
}

/// `tpm_att_data`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TpmAttData {
    /// The attestation to verify.
    pub current_attestation: Attestation,
    /// MAA's pre-hibernation attestation; refused when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_attestation: Option<Value>,
}

/// A decoded client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmMessage {
    /// `{"type":"aikcert"}`: start an attestation.
    Init,
    /// `{"type":"request", …}`: the quote.
    Request {
        /// Sealed context from Init.
        service_context: String,
        /// Evidence.
        tpm_att_data: Box<TpmAttData>,
    },
    /// `{"type":"enroll", …}`: start credential activation.
    Enroll {
        /// EK certificate, DER base64url.
        ek_cert: String,
        /// Intermediate CA certificates (DER base64url), leaf-most first.
        ek_chain: Vec<String>,
        /// EK TPM2B_PUBLIC, base64url.
        ek_pub: String,
        /// AK TPM2B_PUBLIC, base64url.
        ak_pub: String,
    },
    /// `{"type":"activate", …}`: the decrypted credential.
    Activate {
        /// Sealed context from Enroll.
        service_context: String,
        /// Secret returned by TPM2_ActivateCredential, base64url.
        secret: String,
    },
}

#[derive(Deserialize)]
struct RequestBody {
    service_context: String,
    tpm_att_data: TpmAttData,
}

#[derive(Deserialize)]
struct EnrollBody {
    ek_cert: String,
    #[serde(default)]
    ek_chain: Vec<String>,
    ek_pub: String,
    ak_pub: String,
}

#[derive(Deserialize)]
struct ActivateBody {
    service_context: String,
    secret: String,
}

fn body<T: serde::de::DeserializeOwned>(kind: &str, p: Value) -> Result<T, TpmError> {
    serde_json::from_value(p).map_err(|e| TpmError::msg(format!("{kind} message: {e}")))
}

/// Decodes the `data` value of `POST /attest/Tpm`.
pub fn decode_message(data_b64url: &str) -> Result<TpmMessage, TpmError> {
    if data_b64url.len() > MAX_DATA_LEN {
        return Err(TpmError::msg(format!(
            "data is longer than {MAX_DATA_LEN} characters"
        )));
    }
    let raw = b64url_decode("data", data_b64url.trim())?;
    let env: Envelope = serde_json::from_slice(&raw)
        .map_err(|e| TpmError::msg(format!("data is not a JSON {{\"payload\":…}} object: {e}")))?;
    decode_payload(env.payload)
}

/// Decodes a payload object (the value of `"payload"`).
pub fn decode_payload(payload: Value) -> Result<TpmMessage, TpmError> {
    let Value::Object(obj) = &payload else {
        return Err(TpmError::msg("payload is not a JSON object"));
    };
    if obj.contains_key("request") && !obj.contains_key("type") {
        return Err(TpmError::msg(
            "JWS-framed requests (MAA protocol v1/v2 with request_key) are not supported; \
             send {\"type\":\"request\",…} (see PROTOCOL.md)",
        ));
    }
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| TpmError::msg("payload.type is missing"))?
        .to_string();
    let msg = match kind.as_str() {
        "aikcert" => TpmMessage::Init,
        "request" => {
            let b: RequestBody = body(&kind, payload)?;
            let a = &b.tpm_att_data.current_attestation;
            if a.logs.len() > MAX_LOGS || a.pcrs.len() > MAX_PCR_BANKS {
                return Err(TpmError::msg("too many logs or PCR banks"));
            }
            if a.pcrs
                .iter()
                .any(|bank| bank.values.len() > MAX_PCRS_PER_BANK)
            {
                return Err(TpmError::msg("too many PCR values in a bank"));
            }
            if b.tpm_att_data.boot_attestation.is_some() {
                return Err(TpmError::msg("boot_attestation is not supported"));
            }
            TpmMessage::Request {
                service_context: b.service_context,
                tpm_att_data: Box::new(b.tpm_att_data),
            }
        }
        "enroll" => {
            let b: EnrollBody = body(&kind, payload)?;
            if b.ek_chain.len() > 8 {
                return Err(TpmError::msg("ek_chain has more than 8 certificates"));
            }
            TpmMessage::Enroll {
                ek_cert: b.ek_cert,
                ek_chain: b.ek_chain,
                ek_pub: b.ek_pub,
                ak_pub: b.ak_pub,
            }
        }
        "activate" => {
            let b: ActivateBody = body(&kind, payload)?;
            TpmMessage::Activate {
                service_context: b.service_context,
                secret: b.secret,
            }
        }
        other => {
            return Err(TpmError::msg(format!(
                "unknown message type {other:?} (aikcert, request, enroll, activate)"
            )));
        }
    };
    Ok(msg)
}

/// Wraps a payload as `{"payload": payload}` and base64url-encodes it: the
/// `data` value of a reply.
pub fn encode_payload(payload: &Value) -> String {
    let env = serde_json::json!({ "payload": payload });
    b64url(env.to_string().as_bytes())
}

/// The `data` value of the final reply `{"payload":{"report": token}}`.
pub fn report_reply(token: &str) -> String {
    encode_payload(&serde_json::json!({ "report": token }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_maa_init_decodes() {
        // From vectors/maa/maa-recorded-tpm-init-2022-10-07/exchange.json.
        assert_eq!(
            decode_message("eyJwYXlsb2FkIjogeyJ0eXBlIjogImFpa2NlcnQifX0").unwrap(),
            TpmMessage::Init
        );
    }

    #[test]
    fn junk_is_invalid_tpm_message() {
        for d in [
            "",
            "!!",
            "e30",                              // {}
            "eyJwYXlsb2FkIjpbXX0",              // {"payload":[]}
            "eyJwYXlsb2FkIjp7fX0",              // {"payload":{}}
            "eyJwYXlsb2FkIjp7InR5cGUiOiJ4In19", // type x
        ] {
            assert_eq!(
                decode_message(d).unwrap_err().code(),
                "InvalidTpmMessage",
                "{d}"
            );
        }
        let jws = b64url(br#"{"payload":{"request":"a.b.c"}}"#);
        assert!(
            decode_message(&jws)
                .unwrap_err()
                .to_string()
                .contains("JWS")
        );
    }

    #[test]
    fn report_reply_round_trip() {
        let d = report_reply("x.y.z");
        let raw = b64url_decode("d", &d).unwrap();
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["payload"]["report"], "x.y.z");
    }
}
