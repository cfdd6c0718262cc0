//! The OpenAPI document of the whole HTTP API, generated from the code.
//!
//! Nothing here is a hand-written copy of the API: the response bodies are
//! the types the handlers serialize ([`TokenResponse`], [`AttestationResponse`],
//! [`CloudError`], ...), their schemas derived by `utoipa`; the attestation
//! paths and their request bodies come from the attestation-type registry
//! (`aver_attestation::registry`: one `/attest/{type}` path per type, with
//! the type's own evidence field); request field names are the constants the
//! decoders match ([`crate::request::fields`]); the accepted `api-version`s
//! are [`crate::request::API_VERSIONS`]. Documents the handlers build from
//! other crates' values (`/certs`, the OpenID configuration) are described by
//! schema types here and checked against live answers by
//! `tests/openapi.rs`, which also checks that every route of
//! [`crate::routes_table`] is documented, that every documented operation is
//! served, and that the shapes shared with Azure Attestation carry Azure's
//! names.
//!
//! Served unauthenticated at `GET /openapi.json` (and under
//! `/providers/{name}/openapi.json`, like every path).

use std::sync::OnceLock;

use aver_attestation::registry::{self, AttestationType};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{
    ComponentsBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::{Server, ServerVariableBuilder};
use utoipa::openapi::{Content, Info, OpenApi, Paths, Ref, RefOr, Required, Tag};
use utoipa::{PartialSchema, ToSchema};

use crate::request::{API_VERSIONS, fields};

/// The path the document is served at.
pub const PATH: &str = "/openapi.json";

/// The name of the admin security scheme in the document.
pub const ADMIN_SCHEME: &str = "adminBearer";

// ------------------------------------------------------------ wire types

/// `{"token": "<JWT>"}`: the answer of every management call (Azure's
/// `PolicyResponse`, `PolicyCertificatesResponse`,
/// `PolicyCertificatesModifyResponse`); the JWT is signed by the
/// provider's token-signing key and its body carries the result claims.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// An RFC 7519 JSON Web Token signed by the provider's token-signing
    /// key (verify it with `/certs`).
    #[schema(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")]
    pub token: String,
}

/// The answer of a single-shot attestation (Azure's `AttestationResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttestationResponse {
    /// The attestation token: an RFC 7519 JWT whose body holds the claims
    /// (Azure's `AttestationResult`).
    #[schema(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")]
    pub token: String,
    /// Aver extension: with `?verbose=true` and a `draftPolicyForAttestation`,
    /// the policy evaluation trace (which rules matched, what each issued).
    /// SDKs ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub evaluation: Option<Value>,
}

/// A TPM protocol message (Azure's `TpmAttestationRequest`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TpmAttestationRequest {
    /// The protocol message (base64url JSON; see
    /// `crates/aver-tpm-attest/PROTOCOL.md`).
    #[schema(format = "base64url")]
    pub data: String,
}

/// The service's TPM protocol message (Azure's `TpmAttestationResponse`);
/// the last one carries the attestation token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TpmAttestationResponse {
    /// The protocol message (base64url JSON).
    #[schema(format = "base64url")]
    pub data: String,
}

/// How `data` is to be read.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum DataType {
    /// Bytes, not interpreted (the default).
    Binary,
    /// UTF-8 JSON; its members become `x-ms-runtime` / `x-ms-inittime`
    /// claims.
    #[serde(rename = "JSON")]
    Json,
}

/// Data the TEE bound into its evidence at run time (its hash is in the
/// report data). Field names are matched ignoring ASCII case.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeData {
    /// The bytes, base64url (standard base64 and padding are accepted).
    #[schema(format = "base64url")]
    pub data: String,
    /// `Binary` (the default) or `JSON`.
    pub data_type: Option<DataType>,
}

/// Data fixed when the TEE was created (its hash is in the config ID or
/// host data). Field names are matched ignoring ASCII case.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitTimeData {
    /// The bytes, base64url (standard base64 and padding are accepted).
    #[schema(format = "base64url")]
    pub data: String,
    /// `Binary` (the default) or `JSON`.
    pub data_type: Option<DataType>,
}

/// Every error answer: `{"error": {"code", "message"}}` (Azure's
/// `CloudError`), with the code also in the `x-ms-error-code` header.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CloudError {
    pub error: CloudErrorBody,
}

/// The error itself (Azure's `CloudErrorBody`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CloudErrorBody {
    /// A stable code clients may branch on; every code is listed in
    /// `docs/errors.md` (e.g. `InvalidParameter`, `MissingApiVersion`,
    /// `QuoteSignatureInvalid`, `PolicyNotSet`, `Unauthorized`).
    pub code: String,
    /// What went wrong and why, for people; may change.
    pub message: String,
}

/// `GET /health` and `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` (`/health`: the provider has a signing key) or `alive`
    /// (`/healthz`).
    pub status: String,
}

/// `GET /readyz`: 200 when ready, 503 with the same body when not.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessResponse {
    /// `ready` or `not ready`.
    pub status: String,
    /// Providers loaded in memory.
    pub providers: u64,
    /// Providers with no key that signs now (any makes the replica unready).
    pub providers_without_signing_key: Vec<String>,
    pub store: StoreHealth,
    pub cpu_pool: CpuPoolHealth,
}

/// The store's reachability as last seen by the refresh loop.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    pub reachable: bool,
    /// Unix seconds of the last successful store read.
    pub last_success: u64,
    /// Present while the store is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_for_seconds: Option<u64>,
}

/// The verification CPU pool.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuPoolHealth {
    /// Jobs running now.
    pub running: u64,
    /// The pool's threads (`--max-concurrent-attestations`).
    pub capacity: u64,
    /// Jobs waiting for a thread now.
    pub queued: u64,
    /// Most jobs that may wait (`--max-queued-attestations`).
    pub queue_capacity: u64,
}

/// `GET /audit`: the provider's audit log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditResponse {
    pub entries: Vec<crate::store::AuditRecord>,
}

/// `POST /keys:rotate` body (optional; `{}` or empty for the defaults).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotateKeyRequest {
    /// Seconds between publishing the new key in `/certs` and signing
    /// with it (the default and maximum are `keys::DEFAULT_PUBLISH_DELAY_SECS`
    /// and `keys::MAX_PUBLISH_DELAY_SECS`, set in [`document`]).
    pub publish_delay_secs: Option<u64>,
}

/// `POST /keys:retire` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetireKeyRequest {
    /// The `kid` of the key to retire (from `GET /keys` or `/certs`).
    pub kid: String,
}

/// One published token-signing key (RFC 7517; Azure's `JSONWebKey`, public
/// members only).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JsonWebKey {
    pub kid: String,
    /// `RSA` or `EC`.
    pub kty: String,
    /// The key's certificate, base64 DER.
    pub x5c: Vec<String>,
    /// `RS256` or `ES256`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// RSA modulus (base64url).
    pub n: Option<String>,
    /// RSA exponent (base64url).
    pub e: Option<String>,
    /// EC curve (`P-256`).
    pub crv: Option<String>,
    /// EC point x (base64url).
    pub x: Option<String>,
    /// EC point y (base64url).
    pub y: Option<String>,
}

/// `GET /certs` (Azure's `JSONWebKeySet`): current, next and retired keys
/// still within their publication window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JsonWebKeySet {
    pub keys: Vec<JsonWebKey>,
}

/// `GET /.well-known/openid-configuration` (Azure's
/// `OpenIDConfigurationResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenIdConfiguration {
    pub response_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub revocation_endpoint: String,
    pub issuer: String,
    pub jwks_uri: String,
    pub claims_supported: Vec<String>,
}

/// One SGX TCB baseline (Azure's `TcbBaseline`): a TCB evaluation data
/// number this service holds collateral for, or `azuredefault`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcbBaseline {
    /// What a policy's `x-ms-sgx-tcbidentifier` names: `azuredefault` or
    /// the number as text.
    pub tcb_identifier: String,
    /// Intel's TCB evaluation data number.
    pub tcb_evaluation_data_number: u32,
    /// The newest `tcbDate` of that number's TCB levels (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb_release_date: Option<String>,
    /// Whether the provider's SGX policy selects this baseline.
    pub is_selected_tcb: bool,
}

/// `GET /tcbbaselines/{attestationType}` (Azure's `TcbBaselineResult`):
/// `azuredefault` first, then every number held, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcbBaselineResult {
    pub tcb_baselines: Vec<TcbBaseline>,
}

/// The body of the JWT answering a policy call (Azure's `PolicyResult`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyResult {
    /// `Updated` or `Removed` (set and reset).
    #[serde(rename = "x-ms-policy-result")]
    pub result: Option<String>,
    /// The policy as a JWS (get and set).
    #[serde(rename = "x-ms-policy")]
    pub policy: Option<String>,
    /// SHA-256 of the policy JWS, base64url (set).
    #[serde(rename = "x-ms-policy-token-hash")]
    pub token_hash: Option<String>,
    /// The certificate that signed the policy, as a JWK (set, signed).
    #[serde(rename = "x-ms-policy-signer")]
    #[schema(value_type = Option<Object>)]
    pub signer: Option<Value>,
}

/// The body of the JWT answering `GET /certificates` (Azure's
/// `PolicyCertificatesResult`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyCertificatesResult {
    #[serde(rename = "x-ms-policy-certificates")]
    pub certificates: PolicySignerSet,
}

/// The policy signers as a JWK set (`kty` and `x5c` of each).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicySignerSet {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<Value>,
}

/// The body of the JWT answering `:add` and `:remove` (Azure's
/// `PolicyCertificatesModificationResult`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyCertificatesModificationResult {
    /// SHA-1 of the certificate, hex.
    #[serde(rename = "x-ms-certificate-thumbprint")]
    pub thumbprint: String,
    /// `IsPresent` or `IsAbsent`.
    #[serde(rename = "x-ms-policycertificates-result")]
    pub result: String,
}

/// The body of the JWT answering the key calls (Aver extension).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeysResult {
    /// `GET /keys`: each key with its state and times.
    #[serde(rename = "x-aver-keys")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub keys: Option<Vec<Value>>,
    /// `Rotated` or `Retired`.
    #[serde(rename = "x-aver-key-result")]
    pub result: Option<String>,
    #[serde(rename = "x-aver-kid")]
    pub kid: Option<String>,
    #[serde(rename = "x-aver-alg")]
    pub alg: Option<String>,
    /// Rotate: Unix seconds from which the new key signs.
    #[serde(rename = "x-aver-not-before-signing")]
    pub not_before_signing: Option<i64>,
    /// Retire: Unix seconds until which the key stays in `/certs`.
    #[serde(rename = "x-aver-published-until")]
    pub published_until: Option<i64>,
}

// ------------------------------------------------------------ the document

/// The document as JSON text, built once.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_string_pretty(&document()).unwrap_or_else(|e| {
            // Serializing a tree of strings and maps cannot fail; if it
            // ever did, say so in a valid document rather than panic.
            format!(
                r#"{{"openapi":"3.1.0","info":{{"title":"Aver","version":"{e}"}},"paths":{{}}}}"#
            )
        })
    })
}

/// `GET /openapi.json`
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        document_json(),
    )
        .into_response()
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn string_schema(format: Option<&str>, description: &str) -> Schema {
    let mut o = Object::with_type(Type::String);
    o.format = format.map(|f| SchemaFormat::Custom(f.into()));
    o.description = Some(description.into());
    Schema::Object(o)
}

fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

fn api_version() -> Parameter {
    let mut schema = Object::with_type(Type::String);
    schema.enum_values = Some(API_VERSIONS.iter().map(|v| Value::from(*v)).collect());
    let mut p = Parameter::new("api-version");
    p.parameter_in = ParameterIn::Query;
    p.required = Required::True;
    p.description = Some(
        "The client API version. Required on every attestation and management path; \
         an absent one is `400 MissingApiVersion`, an unknown one `400 UnsupportedApiVersion`."
            .into(),
    );
    p.schema = Some(Schema::Object(schema).into());
    p
}

fn type_parameter(types: &[&'static AttestationType]) -> Parameter {
    let mut schema = Object::with_type(Type::String);
    schema.enum_values = Some(types.iter().map(|t| Value::from(t.name)).collect());
    let mut p = Parameter::new("attestationType");
    p.parameter_in = ParameterIn::Path;
    p.required = Required::True;
    p.description = Some("The attestation type (matched ignoring ASCII case).".into());
    p.schema = Some(Schema::Object(schema).into());
    p
}

/// What one operation takes and answers.
struct Op<'a> {
    id: String,
    tag: &'a str,
    summary: String,
    admin: bool,
    api_version: bool,
    params: Vec<Parameter>,
    /// (content type, schema, description)
    body: Option<(&'a str, RefOr<Schema>, &'a str)>,
    /// (status, description, schema)
    ok: Vec<(&'a str, &'a str, RefOr<Schema>)>,
}

impl Op<'_> {
    fn build(self) -> Operation {
        let mut op = Operation::new();
        op.operation_id = Some(self.id);
        op.tags = Some(vec![self.tag.to_string()]);
        op.summary = Some(self.summary);
        let mut params = Vec::new();
        if self.api_version {
            params.push(api_version());
        }
        params.extend(self.params);
        if !params.is_empty() {
            op.parameters = Some(params.into_iter().map(RefOr::T).collect());
        }
        if let Some((content_type, schema, description)) = self.body {
            let mut body = RequestBody::new();
            body.description = Some(description.into());
            body.required = Some(Required::True);
            body.content
                .insert(content_type.into(), RefOr::T(json_content(schema)));
            op.request_body = Some(RefOr::T(body));
        }
        for (status, description, schema) in self.ok {
            let mut r = Response::new(description);
            r.content
                .insert("application/json".into(), RefOr::T(json_content(schema)));
            op.responses.responses.insert(status.into(), r.into());
        }
        let error = |d: &str| {
            let mut r = Response::new(d);
            r.content.insert(
                "application/json".into(),
                RefOr::T(json_content(schema_ref("CloudError"))),
            );
            RefOr::T(r)
        };
        if self.api_version || self.admin {
            op.responses.responses.insert(
                "400".into(),
                error("A client mistake: the code says which (docs/errors.md)."),
            );
        }
        if self.admin {
            op.responses.responses.insert(
                "401".into(),
                error("No or a wrong admin credential (`Unauthorized`)."),
            );
            op.security = Some(vec![SecurityRequirement::new::<_, [&str; 0], &str>(
                ADMIN_SCHEME,
                [],
            )]);
        }
        op.responses.responses.insert(
            "default".into(),
            error("Any other error, in the same shape (docs/errors.md)."),
        );
        op
    }
}

fn add(paths: &mut Paths, path: &str, method: HttpMethod, op: Op<'_>) {
    let item = PathItem::new(method, op.build());
    match paths.paths.get_mut(path) {
        Some(existing) => existing.merge_operations(item),
        None => {
            paths.paths.insert(path.to_string(), item);
        }
    }
}

/// The request body of a single-shot type: its evidence field, named by
/// the registry, and the fields every single-shot request may carry.
fn attest_request_schema(ty: &AttestationType, evidence_field: &str) -> Schema {
    let mut b = ObjectBuilder::new()
        .description(Some(format!(
            "Attestation request for {}. Field names are matched ignoring ASCII case; a \
             field given twice (also in two cases) is refused.",
            ty.name
        )))
        .property(
            evidence_field,
            string_schema(
                Some("base64url"),
                "The evidence, base64url (standard base64 and padding are accepted).",
            ),
        )
        .required(evidence_field)
        .property(fields::RUNTIME_DATA, schema_ref("RuntimeData"))
        .property(fields::INIT_TIME_DATA, schema_ref("InitTimeData"))
        .property(
            fields::NONCE,
            string_schema(
                None,
                "Echoed in the token's `nonce` claim. A JSON integer that fits in 64 bits is \
                 accepted too and echoed as its decimal text.",
            ),
        );
    // Every single-shot type takes a draft policy (Azure's TdxVm request
    // does not list it; Aver accepts it there too).
    b = b.property(
        fields::DRAFT_POLICY,
        string_schema(
            None,
            "A policy to evaluate instead of the active one (the token then says it was \
             issued under a draft policy). With `?verbose=true` the answer also carries the \
             evaluation trace.",
        ),
    );
    if ty.name == aver_attestation::evidence::tdx::TDX_VM.name {
        b = b.property(
            fields::CCEL_EVENT_LOG,
            string_schema(
                Some("base64url"),
                "Aver extension: the TD's CCEL event-log area (ACPI CCEL), replayed to the \
                 quote's RTMRs (docs/tdx.md, \"CCEL event logs\"); other types refuse it.",
            ),
        );
    }
    Schema::Object(b.build())
}

/// Builds the document.
pub fn document() -> OpenApi {
    let mut info = Info::new("Aver attestation service", env!("CARGO_PKG_VERSION"));
    info.description = Some(
        "Azure Attestation-compatible data plane (attestation, OpenID metadata, policy and \
         policy-signer management) plus Aver's own paths (keys, audit, health). Every path \
         is served at the root for the default provider, under `/providers/{provider}/` for \
         a named one, and at the root of a provider's configured host name. Errors are \
         `{\"error\":{\"code\",\"message\"}}` with a stable code (docs/errors.md). \
         Prometheus metrics are on a separate listener (`--metrics-listen`), not in this \
         document. Generated from the code (crates/aver-server/src/openapi.rs)."
            .into(),
    );
    let mut doc = OpenApi::new(info, Paths::new());

    let provider_var = ServerVariableBuilder::new()
        .default_value(crate::load::DEFAULT_PROVIDER)
        .description(Some("The provider (tenant) name."))
        .build();
    let mut prefixed = Server::new("/providers/{provider}");
    prefixed.description = Some("A named provider, by path".into());
    prefixed.variables = Some(
        [("provider".to_string(), provider_var)]
            .into_iter()
            .collect(),
    );
    let mut root = Server::new("/");
    root.description = Some("The default provider, or the provider whose host name this is".into());
    doc.servers = Some(vec![root, prefixed]);

    let tags = [
        (
            "Attestation",
            "Verify evidence and issue a token (Azure-compatible).",
        ),
        (
            "OpenID Metadata Discovery",
            "What a relying party fetches to verify tokens.",
        ),
        (
            "Policy",
            "Attestation policies per type (Azure-compatible; admin).",
        ),
        (
            "Policy Management Certificates",
            "Policy signers of an isolated provider (Azure-compatible; admin).",
        ),
        (
            "TcbBaseline",
            "SGX TCB baselines (Azure-compatible, api-version 2022-09-01-preview).",
        ),
        ("Keys", "Token-signing keys (Aver extension; admin)."),
        ("Audit", "The management audit log (Aver extension; admin)."),
        ("Health", "Liveness and readiness probes (Aver extension)."),
        ("Meta", "This document."),
    ];
    doc.tags = Some(
        tags.iter()
            .map(|(name, d)| {
                let mut t = Tag::new(*name);
                t.description = Some((*d).into());
                t
            })
            .collect(),
    );

    // Components: the derived schemas, and the per-type attestation requests.
    let mut components = ComponentsBuilder::new();
    macro_rules! schemas {
        ($($t:ty),* $(,)?) => {{
            $( components = components.schema_from::<$t>(); )*
        }};
    }
    schemas!(
        TokenResponse,
        AttestationResponse,
        TpmAttestationRequest,
        TpmAttestationResponse,
        DataType,
        RuntimeData,
        InitTimeData,
        CloudError,
        CloudErrorBody,
        HealthResponse,
        ReadinessResponse,
        StoreHealth,
        CpuPoolHealth,
        AuditResponse,
        crate::store::AuditRecord,
        RetireKeyRequest,
        JsonWebKey,
        JsonWebKeySet,
        OpenIdConfiguration,
        TcbBaseline,
        TcbBaselineResult,
        PolicyResult,
        PolicyCertificatesResult,
        PolicySignerSet,
        PolicyCertificatesModificationResult,
        KeysResult,
    );
    // The rotation delay's bounds are the handler's constants.
    let mut rotate = RotateKeyRequest::schema();
    if let RefOr::T(Schema::Object(o)) = &mut rotate
        && let Some(RefOr::T(Schema::Object(delay))) = o.properties.get_mut("publish_delay_secs")
    {
        delay.minimum = Some(0.into());
        delay.maximum = Some(crate::keys::MAX_PUBLISH_DELAY_SECS.into());
        delay.default = Some(crate::keys::DEFAULT_PUBLISH_DELAY_SECS.into());
    }
    components = components.schema(RotateKeyRequest::name(), rotate);
    let mut jwt = Object::with_type(Type::String);
    jwt.description = Some("An RFC 7515 compact JWS (header.payload.signature).".into());
    jwt.pattern = Some(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$".into());
    components = components.schema("JsonWebToken", Schema::Object(jwt));
    // Named token responses, as Azure names them; the shape is
    // `TokenResponse`'s, the description says what the JWT body holds.
    for (name, body) in [
        ("PolicyResponse", "PolicyResult"),
        ("PolicyCertificatesResponse", "PolicyCertificatesResult"),
        (
            "PolicyCertificatesModifyResponse",
            "PolicyCertificatesModificationResult",
        ),
        ("KeysResponse", "KeysResult"),
    ] {
        let mut schema = TokenResponse::schema();
        if let RefOr::T(Schema::Object(o)) = &mut schema {
            o.description = Some(format!(
                "`{{\"token\": JWT}}`; the JWT body is a `{body}` (see components)."
            ));
        }
        components = components.schema(name, schema);
    }
    let single_shot: Vec<(&'static AttestationType, &'static str)> = registry::TYPES
        .iter()
        .filter_map(|t| t.evidence_field().map(|f| (*t, f)))
        .collect();
    for (ty, field) in &single_shot {
        components = components.schema(
            format!("Attest{}Request", ty.name),
            attest_request_schema(ty, field),
        );
    }
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "`Authorization: Bearer <credential>`: the provider's admin key (`aver_...`, \
         written to `<data-dir>/admin-key` on first start or printed by `aver provider \
         create`), or a JWT from the configured admin OIDC issuer carrying the admin role \
         (docs/management.md)."
            .into(),
    );
    components = components.security_scheme(ADMIN_SCHEME, SecurityScheme::Http(bearer));
    doc.components = Some(components.build());

    let mut paths = Paths::new();
    // Attestation: one path per registry type.
    for ty in registry::TYPES.iter().copied() {
        let path = format!("/attest/{}", ty.name);
        let op = match ty.evidence_field() {
            Some(_) => Op {
                id: format!("Attestation_Attest{}", ty.name),
                tag: "Attestation",
                summary: format!("Attest {} evidence and issue a token.", ty.name),
                admin: false,
                api_version: true,
                params: vec![],
                body: Some((
                    "application/json",
                    schema_ref(&format!("Attest{}Request", ty.name)),
                    "The evidence and the data bound into it.",
                )),
                ok: vec![(
                    "200",
                    "The attestation token.",
                    schema_ref("AttestationResponse"),
                )],
            },
            None => Op {
                id: format!("Attestation_Attest{}", ty.name),
                tag: "Attestation",
                summary: format!(
                    "One step of the {} attestation protocol (crates/aver-tpm-attest/PROTOCOL.md).",
                    ty.name
                ),
                admin: false,
                api_version: true,
                params: vec![],
                body: Some((
                    "application/json",
                    schema_ref("TpmAttestationRequest"),
                    "The client's protocol message.",
                )),
                ok: vec![(
                    "200",
                    "The service's protocol message; the last carries the token.",
                    schema_ref("TpmAttestationResponse"),
                )],
            },
        };
        add(&mut paths, &path, HttpMethod::Post, op);
    }

    let plain = |id: &str,
                 tag: &'static str,
                 summary: &str,
                 ok: (&'static str, &'static str, RefOr<Schema>)| Op {
        id: id.into(),
        tag,
        summary: summary.into(),
        admin: false,
        api_version: false,
        params: vec![],
        body: None,
        ok: vec![ok],
    };
    add(
        &mut paths,
        "/certs",
        HttpMethod::Get,
        plain(
            "SigningCertificates_Get",
            "OpenID Metadata Discovery",
            "The provider's token-signing keys (current, next, and retired ones still valid).",
            ("200", "The JWK set.", schema_ref("JsonWebKeySet")),
        ),
    );
    add(
        &mut paths,
        "/.well-known/openid-configuration",
        HttpMethod::Get,
        plain(
            "MetadataConfiguration_Get",
            "OpenID Metadata Discovery",
            "The provider's OpenID configuration.",
            (
                "200",
                "The configuration.",
                schema_ref("OpenIdConfiguration"),
            ),
        ),
    );
    add(
        &mut paths,
        "/health",
        HttpMethod::Get,
        plain(
            "Health_Get",
            "Health",
            "The provider is served and has a signing key.",
            ("200", "Healthy.", schema_ref("HealthResponse")),
        ),
    );
    add(
        &mut paths,
        "/healthz",
        HttpMethod::Get,
        plain(
            "Healthz_Get",
            "Health",
            "Liveness: the process answers.",
            ("200", "Alive.", schema_ref("HealthResponse")),
        ),
    );
    let mut readyz = plain(
        "Readyz_Get",
        "Health",
        "Readiness: every provider has a key that signs now.",
        ("200", "Ready.", schema_ref("ReadinessResponse")),
    );
    readyz.ok.push((
        "503",
        "Not ready (same body).",
        schema_ref("ReadinessResponse"),
    ));
    add(&mut paths, "/readyz", HttpMethod::Get, readyz);
    add(
        &mut paths,
        PATH,
        HttpMethod::Get,
        plain(
            "OpenApi_Get",
            "Meta",
            "This document.",
            (
                "200",
                "OpenAPI 3.1 document.",
                Object::with_type(Type::Object).into(),
            ),
        ),
    );

    // Management.
    let all_types: Vec<&'static AttestationType> = registry::TYPES.to_vec();
    let admin = |id: &str,
                 tag: &'static str,
                 summary: &str,
                 params: Vec<Parameter>,
                 body: Option<(&'static str, RefOr<Schema>, &'static str)>,
                 ok: &'static str| Op {
        id: id.into(),
        tag,
        summary: summary.into(),
        admin: true,
        api_version: true,
        params,
        body,
        ok: vec![(
            "200",
            "Success: a JWT signed by the provider's key.",
            schema_ref(ok),
        )],
    };
    add(
        &mut paths,
        "/tcbbaselines/{attestationType}",
        HttpMethod::Get,
        Op {
            id: "TcbBaselines_Get".into(),
            tag: "TcbBaseline",
            summary: "The SGX TCB baselines (TCB evaluation data numbers) this service can judge \
                      quotes by, and which one the provider's policy selects \
                      (docs/dcap-collateral.md)."
                .into(),
            admin: false,
            api_version: true,
            params: vec![type_parameter(&[
                &aver_attestation::evidence::sgx::SGX_ENCLAVE,
                &aver_attestation::evidence::sgx::OPEN_ENCLAVE,
            ])],
            body: None,
            ok: vec![("200", "The baselines.", schema_ref("TcbBaselineResult"))],
        },
    );
    let jws_text = || {
        Some((
            "text/plain",
            schema_ref("JsonWebToken"),
            "A JWS whose payload is `{\"AttestationPolicy\": base64url(policy text)}` \
             (unsigned `alg: none`, or signed by a policy signer: required in isolated mode).",
        ))
    };
    add(
        &mut paths,
        "/policies/{attestationType}",
        HttpMethod::Get,
        admin(
            "Policy_Get",
            "Policy",
            "The active policy of a type.",
            vec![type_parameter(&all_types)],
            None,
            "PolicyResponse",
        ),
    );
    add(
        &mut paths,
        "/policies/{attestationType}",
        HttpMethod::Put,
        admin(
            "Policy_Set",
            "Policy",
            "Sets the policy of a type.",
            vec![type_parameter(&all_types)],
            jws_text(),
            "PolicyResponse",
        ),
    );
    add(
        &mut paths,
        "/policies/{attestationType}:reset",
        HttpMethod::Post,
        admin(
            "Policy_Reset",
            "Policy",
            "Restores the type's default policy (none for Tpm).",
            vec![type_parameter(&all_types)],
            Some((
                "text/plain",
                schema_ref("JsonWebToken"),
                "A JWS with an empty payload (signed by a policy signer in isolated mode).",
            )),
            "PolicyResponse",
        ),
    );
    add(
        &mut paths,
        "/certificates",
        HttpMethod::Get,
        admin(
            "PolicyCertificates_Get",
            "Policy Management Certificates",
            "The provider's policy signers.",
            vec![],
            None,
            "PolicyCertificatesResponse",
        ),
    );
    let cert_body =
        |what: &'static str| Some(("application/json", schema_ref("JsonWebToken"), what));
    add(
        &mut paths,
        "/certificates:add",
        HttpMethod::Post,
        admin(
            "PolicyCertificates_Add",
            "Policy Management Certificates",
            "Adds a policy signer (isolated providers).",
            vec![],
            cert_body(
                "A JSON string holding a JWS signed by an existing signer, whose payload is \
                 `{\"policyCertificate\": JWK with x5c}` (a bare JWS is accepted too).",
            ),
            "PolicyCertificatesModifyResponse",
        ),
    );
    add(
        &mut paths,
        "/certificates:remove",
        HttpMethod::Post,
        admin(
            "PolicyCertificates_Remove",
            "Policy Management Certificates",
            "Removes a policy signer (never the last).",
            vec![],
            cert_body(
                "A JSON string holding a JWS signed by an existing signer, whose payload is \
                 `{\"policyCertificate\": JWK with x5c}` (a bare JWS is accepted too).",
            ),
            "PolicyCertificatesModifyResponse",
        ),
    );
    let mut limit_schema = Object::with_type(Type::Integer);
    limit_schema.format = Some(SchemaFormat::KnownFormat(KnownFormat::Int64));
    limit_schema.minimum = Some(0.into());
    limit_schema.default = Some(crate::manage::AUDIT_LIMIT_DEFAULT.into());
    let mut limit = Parameter::new("limit");
    limit.parameter_in = ParameterIn::Query;
    limit.required = Required::False;
    limit.description = Some(format!(
        "At most this many entries (default {}); more than {} is read as {}.",
        crate::manage::AUDIT_LIMIT_DEFAULT,
        crate::manage::AUDIT_LIMIT_MAX,
        crate::manage::AUDIT_LIMIT_MAX
    ));
    limit.schema = Some(Schema::Object(limit_schema).into());
    let mut audit = admin(
        "Audit_Get",
        "Audit",
        "The provider's audit log, newest first.",
        vec![limit],
        None,
        "AuditResponse",
    );
    audit.ok = vec![("200", "The entries.", schema_ref("AuditResponse"))];
    add(&mut paths, "/audit", HttpMethod::Get, audit);
    add(
        &mut paths,
        "/keys",
        HttpMethod::Get,
        admin(
            "Keys_List",
            "Keys",
            "The provider's token-signing keys and their state.",
            vec![],
            None,
            "KeysResponse",
        ),
    );
    add(
        &mut paths,
        "/keys:rotate",
        HttpMethod::Post,
        admin(
            "Keys_Rotate",
            "Keys",
            "A new key: published now, signing after the delay.",
            vec![],
            Some((
                "application/json",
                schema_ref("RotateKeyRequest"),
                "Optional; an empty body takes the defaults.",
            )),
            "KeysResponse",
        ),
    );
    add(
        &mut paths,
        "/keys:retire",
        HttpMethod::Post,
        admin(
            "Keys_Retire",
            "Keys",
            "The key stops signing now and stays published until its tokens expire.",
            vec![],
            Some((
                "application/json",
                schema_ref("RetireKeyRequest"),
                "The key to retire.",
            )),
            "KeysResponse",
        ),
    );
    doc.paths = paths;
    doc
}
