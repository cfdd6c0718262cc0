//! Talking to an attestation service, as a client and as a relying party.
//!
//! [`Client`] sends evidence to `/attest/*` and returns the token or the
//! service's error code and message. [`Client::verify_token`] does what a
//! relying party must: fetch `/.well-known/openid-configuration` from the
//! issuer it expects, check the metadata names that issuer, fetch the
//! `jwks_uri`, choose the key by `kid`, and verify signature, `exp`/`nbf`
//! (with leeway) and `iss`. Works against Aver and Azure Attestation alike.

use std::time::Duration;

use aver_token::{Claims, TokenError, VerifyOptions};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde_json::{Value, json};

/// api-version sent on attestation calls.
pub const API_VERSION: &str = "2022-08-01";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the service: {0}")]
    Transport(String),
    #[error("the service refused the request ({status}): {code}: {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected response: {0}")]
    Protocol(String),
    #[error("token rejected: {0}")]
    Token(#[from] TokenError),
    #[error("bad CA file: {0}")]
    Ca(String),
}

impl ClientError {
    /// The service's error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// How runtime or init-time data is to be interpreted by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Binary,
    Json,
}

/// Optional parts of an SGX / OpenEnclave attestation request.
#[derive(Debug, Clone, Default)]
pub struct AttestOptions {
    pub runtime_data: Option<(Vec<u8>, DataType)>,
    pub init_time_data: Option<(Vec<u8>, DataType)>,
    pub nonce: Option<String>,
    pub draft_policy: Option<String>,
}

/// Which SGX endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgxEndpoint {
    /// `/attest/SgxEnclave` with `quote`.
    SgxEnclave,
    /// `/attest/OpenEnclave` with `report`.
    OpenEnclave,
}

/// An HTTPS client for one service base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client for `base_url`. `ca_pem` replaces the system roots with the
    /// given CA certificates (for a self-signed service certificate).
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("aver-client/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Ca(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ClientError::Ca("no certificate in the CA file".into()));
            }
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends SGX evidence (a quote, or an OpenEnclave report) and returns
    /// the attestation token.
    pub async fn attest_sgx(
        &self,
        endpoint: SgxEndpoint,
        evidence: &[u8],
        options: &AttestOptions,
    ) -> Result<String, ClientError> {
        let (path, field) = match endpoint {
            SgxEndpoint::SgxEnclave => ("attest/SgxEnclave", "quote"),
            SgxEndpoint::OpenEnclave => ("attest/OpenEnclave", "report"),
        };
        let mut body = serde_json::Map::new();
        body.insert(field.into(), aver_token::b64::encode_url(evidence).into());
        let typed = |(data, kind): &(Vec<u8>, DataType)| {
            json!({
                "data": aver_token::b64::encode_url(data),
                "dataType": match kind { DataType::Binary => "Binary", DataType::Json => "JSON" },
            })
        };
        if let Some(rt) = &options.runtime_data {
            body.insert("runtimeData".into(), typed(rt));
        }
        if let Some(it) = &options.init_time_data {
            body.insert("initTimeData".into(), typed(it));
        }
        if let Some(draft) = &options.draft_policy {
            body.insert("draftPolicyForAttestation".into(), draft.clone().into());
        }
        if let Some(nonce) = &options.nonce {
            body.insert("nonce".into(), nonce.clone().into());
        }
        let reply = self.post_json(path, &Value::Object(body)).await?;
        reply
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("no token in the response".into()))
    }

    /// POSTs a JSON body to `path?api-version=…` and returns the JSON reply.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}/{path}?api-version={API_VERSION}", self.base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
        read_json(response).await
    }

    /// GETs an absolute URL as JSON.
    pub async fn get_json(&self, url: &str) -> Result<Value, ClientError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
        read_json(response).await
    }

    /// Verifies `token` as a relying party that trusts `issuer`: OpenID
    /// metadata from the issuer, then its `jwks_uri`, then the token.
    pub async fn verify_token(
        &self,
        token: &str,
        issuer: &str,
        now: u64,
        leeway: u64,
    ) -> Result<Claims, ClientError> {
        let issuer = issuer.trim_end_matches('/');
        let metadata = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        if metadata.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(ClientError::Protocol(format!(
                "the OpenID metadata at {issuer} names issuer {:?}",
                metadata.get("issuer")
            )));
        }
        let jwks_uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("OpenID metadata has no jwks_uri".into()))?;
        let jwks = self.get_json(jwks_uri).await?;
        let options = VerifyOptions {
            issuer: Some(issuer.to_string()),
            now,
            leeway,
        };
        Ok(aver_token::verify_token(token, &jwks, &options)?)
    }
}

async fn read_json(response: reqwest::Response) -> Result<Value, ClientError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
        ClientError::Protocol(format!(
            "HTTP {status} with a non-JSON body: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })?;
    if status.is_success() {
        return Ok(value);
    }
    let error = value.get("error");
    let text = |k: &str| {
        error
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Err(ClientError::Service {
        status: status.as_u16(),
        code: text("code"),
        message: text("message"),
    })
}

/// Seconds since the Unix epoch, from the system clock (relying parties
/// verify tokens "now"; the library functions take the time as input).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
