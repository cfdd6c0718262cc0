//! Talking to an attestation service, as a client and as a relying party.
//!
//! [`Client`] sends evidence to `/attest/*` and returns the token or the
//! service's error code and message. [`Client::verify_token`] does what a
//! relying party must: fetch `/.well-known/openid-configuration` from the
//! issuer it expects, check the metadata names that issuer, fetch the
//! `jwks_uri`, choose the key by `kid`, and verify signature, `exp`/`nbf`
//! (with leeway) and `iss`. Works against Aver and Azure Attestation alike.

use std::time::Duration;

use aver_attestation::AttestationType;
use aver_token::{Claims, TokenError, VerifyOptions};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde_json::{Value, json};

/// api-version sent on attestation calls.
pub const API_VERSION: &str = "2022-08-01";

/// api-version sent on `/attest/TdxVm`: the first of Azure's specs that
/// lists it (what Azure's own TDX clients send).
pub const TDX_API_VERSION: &str = "2025-06-01";

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
    /// Not `#[from]`: the token error is part of this message, not a
    /// source printed again after it.
    #[error("token rejected: {0}")]
    Token(TokenError),
    #[error("bad CA file: {0}")]
    Ca(String),
    #[error("{0}")]
    Usage(String),
    /// The service acted (2xx) but its signed result did not verify.
    #[error("{0}")]
    Receipt(String),
}

impl From<TokenError> for ClientError {
    fn from(e: TokenError) -> Self {
        ClientError::Token(e)
    }
}

/// An error and every cause under it, joined with ": " — a TLS failure
/// says why (e.g. "invalid peer certificate: ... CA used as end entity"),
/// not only "error sending request".
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
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
    /// TdxVm only: the TD's CCEL event log, sent as `ccelEventLog` (an Aver
    /// extension; Azure does not have it, and Aver's other types refuse it).
    pub ccel_event_log: Option<Vec<u8>>,
}

/// Which SGX endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgxEndpoint {
    /// `/attest/SgxEnclave` with `quote`.
    SgxEnclave,
    /// `/attest/OpenEnclave` with `report`.
    OpenEnclave,
}

impl SgxEndpoint {
    /// The registry entry of this endpoint.
    pub fn attestation_type(self) -> &'static AttestationType {
        match self {
            SgxEndpoint::SgxEnclave => &aver_attestation::evidence::sgx::SGX_ENCLAVE,
            SgxEndpoint::OpenEnclave => &aver_attestation::evidence::sgx::OPEN_ENCLAVE,
        }
    }
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
        self.attest(endpoint.attestation_type(), evidence, options)
            .await
    }

    /// `POST /attest/SevSnpVm` in Azure's shape: `report` is base64url of
    /// `{"SnpReport": base64url(report), "VcekCertChain": base64url(PEM)}`.
    /// Without a chain the service must find the VCEK itself.
    pub async fn attest_sev_snp(
        &self,
        report: &[u8],
        chain_pem: Option<&[u8]>,
        options: &AttestOptions,
    ) -> Result<String, ClientError> {
        let evidence = aver_attestation::evidence::snp::encode_evidence(report, chain_pem);
        self.attest(
            &aver_attestation::evidence::snp::SEV_SNP_VM,
            &evidence,
            options,
        )
        .await
    }

    /// `POST /attest/TdxVm?api-version=2025-06-01` in Azure's shape:
    /// `{quote, runtimeData?, initTimeData?, nonce?}` (a draft policy in
    /// `options` is sent too; Aver honours it, Azure's TdxVm has none).
    pub async fn attest_tdx(
        &self,
        quote: &[u8],
        options: &AttestOptions,
    ) -> Result<String, ClientError> {
        self.attest_at(
            &aver_attestation::evidence::tdx::TDX_VM,
            quote,
            options,
            TDX_API_VERSION,
        )
        .await
    }

    /// `POST /attest/{type}` for a single-shot type of the registry: the
    /// evidence in the type's field (`quote`, `report`, ...), base64url.
    pub async fn attest(
        &self,
        ty: &AttestationType,
        evidence: &[u8],
        options: &AttestOptions,
    ) -> Result<String, ClientError> {
        self.attest_at(ty, evidence, options, API_VERSION).await
    }

    /// [`Client::attest`] with the api-version `api_version`.
    pub async fn attest_at(
        &self,
        ty: &AttestationType,
        evidence: &[u8],
        options: &AttestOptions,
        api_version: &str,
    ) -> Result<String, ClientError> {
        let field = ty.evidence_field().ok_or_else(|| {
            ClientError::Usage(format!(
                "{} is a multi-round protocol; use its own client",
                ty.name
            ))
        })?;
        let path = format!("attest/{}", ty.name);
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
        if let Some(log) = &options.ccel_event_log {
            body.insert(
                "ccelEventLog".into(),
                aver_token::b64::encode_url(log).into(),
            );
        }
        let reply = self
            .post_json_at(&path, &Value::Object(body), api_version)
            .await?;
        reply
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("no token in the response".into()))
    }

    /// POSTs a JSON body to `path?api-version=…` and returns the JSON reply.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.post_json_at(path, body, API_VERSION).await
    }

    /// POSTs a JSON body to `path?api-version={api_version}`.
    pub async fn post_json_at(
        &self,
        path: &str,
        body: &Value,
        api_version: &str,
    ) -> Result<Value, ClientError> {
        let url = format!("{}/{path}?api-version={api_version}", self.base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {}", cause_chain(&e))))?;
        read_json(response).await
    }

    /// GETs an absolute URL as JSON.
    pub async fn get_json(&self, url: &str) -> Result<Value, ClientError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {}", cause_chain(&e))))?;
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

/// Management calls (policies, policy signers), authenticated with an
/// admin credential sent as a bearer token.
#[derive(Debug, Clone)]
pub struct AdminClient {
    client: Client,
    credential: String,
    /// The issuer result tokens must carry; `None`: the one the service's
    /// OpenID metadata names (a replica reached directly behind a load
    /// balancer names the balancer's URL, not its own).
    issuer: Option<String>,
}

/// A management result token's claims, verified with the service's JWKS.
pub type ResultClaims = Claims;

impl AdminClient {
    pub fn new(client: Client, credential: &str) -> Self {
        AdminClient {
            client,
            credential: credential.trim().to_string(),
            issuer: None,
        }
    }

    /// Expects result tokens from `issuer` (the service's public URL).
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer.map(|i| i.trim_end_matches('/').to_string());
        self
    }

    async fn expected_issuer(&self) -> Result<String, ClientError> {
        if let Some(issuer) = &self.issuer {
            return Ok(issuer.clone());
        }
        let metadata = self
            .client
            .get_json(&format!(
                "{}/.well-known/openid-configuration",
                self.client.base
            ))
            .await?;
        metadata
            .get("issuer")
            .and_then(Value::as_str)
            .map(|i| i.trim_end_matches('/').to_string())
            .ok_or_else(|| ClientError::Protocol("the OpenID metadata names no issuer".into()))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> Result<ResultClaims, ClientError> {
        let url = format!("{}/{path}?api-version={API_VERSION}", self.client.base);
        let mut request = self
            .client
            .http
            .request(method, &url)
            .bearer_auth(&self.credential);
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {}", cause_chain(&e))))?;
        let value = read_json(response).await?;
        let token = value
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("no token in the response".into()))?;
        // Verify the result as any token of this service: by its own JWKS
        // and its public issuer. A 2xx means the service acted: if the
        // receipt does not verify, say that the change was made.
        let verified = async {
            let jwks = self
                .client
                .get_json(&format!("{}/certs", self.client.base))
                .await?;
            let options = VerifyOptions {
                issuer: Some(self.expected_issuer().await?),
                now: unix_now(),
                leeway: 300,
            };
            aver_token::verify_token(token, &jwks, &options).map_err(ClientError::Token)
        }
        .await;
        verified.map_err(|e| {
            ClientError::Receipt(format!(
                "the service accepted the request (the change is made), but its signed result did not verify: {e}"
            ))
        })
    }

    /// `GET /policies/{type}`: the stored policy JWS and its text (`None`
    /// when no policy is set).
    pub async fn get_policy(
        &self,
        attestation_type: &str,
    ) -> Result<(String, Option<String>), ClientError> {
        let claims = self
            .call(
                reqwest::Method::GET,
                &format!("policies/{attestation_type}"),
                "",
                None,
            )
            .await?;
        let jws = claims
            .get("x-ms-policy")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("no x-ms-policy in the result".into()))?
            .to_string();
        let parsed = aver_token::CompactJws::parse(&jws)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let text = parsed
            .payload_json()
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .and_then(|p| {
                p.get("AttestationPolicy")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .map(|encoded| {
                aver_token::b64::decode_lenient(&encoded)
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or(encoded)
            });
        Ok((jws, text))
    }

    /// `PUT /policies/{type}` with a policy JWS (see `aver_token::policy`).
    pub async fn set_policy(
        &self,
        attestation_type: &str,
        jws: &str,
    ) -> Result<ResultClaims, ClientError> {
        self.call(
            reqwest::Method::PUT,
            &format!("policies/{attestation_type}"),
            "text/plain",
            Some(jws.to_string()),
        )
        .await
    }

    /// `POST /policies/{type}:reset` with a reset JWS (empty payload).
    pub async fn reset_policy(
        &self,
        attestation_type: &str,
        jws: &str,
    ) -> Result<ResultClaims, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("policies/{attestation_type}:reset"),
            "text/plain",
            Some(jws.to_string()),
        )
        .await
    }

    /// `GET /certificates`: the policy signers' certificates (DER).
    pub async fn signers(&self) -> Result<Vec<Vec<u8>>, ClientError> {
        let claims = self
            .call(reqwest::Method::GET, "certificates", "", None)
            .await?;
        let keys = claims
            .get("x-ms-policy-certificates")
            .and_then(|c| c.get("keys"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(keys
            .iter()
            .filter_map(|k| k.get("x5c")?.as_array()?.first()?.as_str())
            .filter_map(aver_token::b64::decode_std)
            .collect())
    }

    /// `GET /keys`: the provider's token-signing keys with their state
    /// (`x-aver-keys`), newest first.
    pub async fn keys(&self) -> Result<Vec<Value>, ClientError> {
        let claims = self.call(reqwest::Method::GET, "keys", "", None).await?;
        Ok(claims
            .get("x-aver-keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `POST /keys:rotate`: a new key, published now and signing after
    /// `publish_delay_secs` (the service's default when `None`).
    pub async fn rotate_key(
        &self,
        publish_delay_secs: Option<u64>,
    ) -> Result<ResultClaims, ClientError> {
        let body = match publish_delay_secs {
            Some(d) => serde_json::json!({ "publish_delay_secs": d }),
            None => serde_json::json!({}),
        };
        self.call(
            reqwest::Method::POST,
            "keys:rotate",
            "application/json",
            Some(body.to_string()),
        )
        .await
    }

    /// `POST /keys:retire`: `kid` stops signing now and stays published
    /// until every token it signed has expired.
    pub async fn retire_key(&self, kid: &str) -> Result<ResultClaims, ClientError> {
        self.call(
            reqwest::Method::POST,
            "keys:retire",
            "application/json",
            Some(serde_json::json!({ "kid": kid }).to_string()),
        )
        .await
    }

    /// `POST /certificates:add` or `:remove` with a signed management JWS.
    pub async fn modify_signers(&self, add: bool, jws: &str) -> Result<ResultClaims, ClientError> {
        let path = if add {
            "certificates:add"
        } else {
            "certificates:remove"
        };
        self.call(
            reqwest::Method::POST,
            path,
            "application/json",
            Some(Value::String(jws.to_string()).to_string()),
        )
        .await
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
            String::from_utf8_lossy(bytes.get(..200).unwrap_or(&bytes))
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
