//! Durable state behind one trait, with two backends:
//!
//! * [`sqlite::SqliteStore`] — the embedded default: one file in the data
//!   directory, WAL journal with `synchronous=FULL`.
//! * `postgres::PostgresStore` — for several replicas over one database.
//!
//! Every mutation is one transaction that also appends its audit record and
//! bumps a generation counter; callers update their in-memory view only
//! after the commit, by reloading, so a failed change leaves the previous
//! state intact and an acknowledged one survives a crash. Replicas poll
//! [`Store::generation`] to notice changes made elsewhere. Nothing on the
//! attestation hot path calls the store.
//!
//! The methods are blocking; the service calls them from
//! `tokio::task::spawn_blocking`.

pub mod postgres;
pub mod sqlite;

pub use sqlite::SqliteStore;

/// A stored token-signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    /// The PKCS#8 private key, sealed under the KEK (see [`crate::kek`]);
    /// plaintext only in stores written by earlier versions, sealed at start.
    pub pkcs8: Vec<u8>,
    pub certificate: Vec<u8>,
    pub created_at: i64,
    /// When it may start signing (`created_at` + publish delay): until then
    /// it is only published (see [`crate::keys`]).
    pub not_before_signing: i64,
    /// When it was retired: it signs no more, and stays published until
    /// every token it signed has expired.
    pub retired_at: Option<i64>,
}

/// An attestation provider (tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRecord {
    pub name: String,
    /// Isolated mode: policies must be signed by a trusted policy signer.
    pub isolated: bool,
    /// Optional host name that routes to this provider.
    pub host: Option<String>,
    pub created_at: i64,
}

/// A policy set on a provider: the exact JWS received and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub attestation_type: String,
    pub jws: String,
    pub text: String,
    /// The signer's JWK (JSON), when the JWS was signed.
    pub signer: Option<String>,
    pub updated_at: i64,
}

/// One audit-log entry: who did what, when, and the new policy's hash.
/// Served as is by `GET /audit` (its schema is in the OpenAPI document).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub at: i64,
    pub provider: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub policy_hash: Option<String>,
    pub detail: String,
}

/// An item of cached collateral (Intel TCB info, QE identity, CRLs; AMD
/// VCEKs, certificate chains, CRLs), shared by every provider and replica.
/// The body is exactly as fetched or imported; whoever uses it verifies it
/// (signatures, validity) before trusting it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CollateralRecord {
    /// What the item is, e.g. `intel/sgx/tcbinfo/00906ED50000` or
    /// `amd/milan/vcek/<chip id>/<tcb>`.
    pub key: String,
    /// SHA-256 of `body` (hex): the content address.
    pub sha256: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Where it came from (a URL, or `import:<file>`).
    pub source: String,
    /// When it was fetched or imported (Unix seconds).
    pub fetched_at: i64,
    /// When it stops being valid, if it says (`nextUpdate`, `notAfter`).
    pub expires_at: Option<i64>,
}

impl CollateralRecord {
    /// A record for `body`, its content address computed.
    pub fn new(
        key: impl Into<String>,
        body: Vec<u8>,
        source: impl Into<String>,
        fetched_at: i64,
        expires_at: Option<i64>,
    ) -> Self {
        CollateralRecord {
            key: key.into(),
            sha256: hex::encode(aver_attestation::sha256(&body)),
            body,
            source: source.into(),
            fetched_at,
            expires_at,
        }
    }
}

/// Outcome of removing a policy signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerRemoval {
    Removed,
    Absent,
    /// Refused: it is the provider's last signer.
    LastSigner,
}

/// Storage failures: a fault of the service, never of a client, except
/// [`StoreError::Conflict`] and [`StoreError::NotFound`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Backend(String),
    /// The database cannot be reached right now (down, restarting,
    /// unreachable): worth retrying later, and never the client's fault.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the store lock was poisoned by a panic")]
    Poisoned,
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} does not exist")]
    NotFound(String),
    /// A conditional write found that another process changed what it
    /// was conditioned on (see [`Store::add_signing_key`]).
    #[error("{0}")]
    Superseded(String),
}

/// The refusal of a rotation conditioned on a newest key that is no
/// longer the newest.
pub(crate) fn newest_key_changed(provider: &str, expected: &str) -> StoreError {
    StoreError::Superseded(format!(
        "the newest live key of provider {provider} is no longer {expected}: another process added or retired a key meanwhile"
    ))
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// What the service needs from a durable store.
pub trait Store: Send + Sync + 'static {
    /// Incremented by every committed mutation.
    fn generation(&self) -> Result<i64, StoreError>;

    fn providers(&self) -> Result<Vec<ProviderRecord>, StoreError>;
    /// Creates a provider with its initial signers and admin-key hash.
    fn create_provider(
        &self,
        provider: &ProviderRecord,
        signers: &[Vec<u8>],
        admin_key_hash: &[u8],
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Deletes a provider and everything it owns.
    fn delete_provider(&self, name: &str, audit: &AuditRecord) -> Result<bool, StoreError>;

    fn signing_keys(&self, provider: &str) -> Result<Vec<StoredKey>, StoreError>;
    /// Stores a provider's first key (made at first load; not audited).
    fn insert_signing_key(&self, provider: &str, key: &StoredKey) -> Result<(), StoreError>;
    /// Adds a key by rotation, audited. `NotFound` when the provider does
    /// not exist. With `after`, only while the provider's newest key not
    /// retired is still that kid (else `Superseded`, nothing written): the
    /// check and the insert are one serialized write, so replicas rotating
    /// on a schedule at the same moment add one key between them, not one
    /// each.
    fn add_signing_key(
        &self,
        provider: &str,
        key: &StoredKey,
        audit: &AuditRecord,
        after: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Marks `kid` retired at `at`, audited; false when it is absent or
    /// already retired.
    fn retire_signing_key(
        &self,
        provider: &str,
        kid: &str,
        at: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Replaces a key's private-key bytes if they still equal `old` (used to
    /// seal plaintext keys in place; a concurrent replica doing the same
    /// wins harmlessly). True when replaced.
    fn replace_key_material(
        &self,
        provider: &str,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;

    /// The provider's secrets by name (values as stored, possibly sealed).
    fn secrets(&self, provider: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Replaces a secret's value if it still equals `old`. True when
    /// replaced.
    fn replace_secret(
        &self,
        provider: &str,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;

    /// A provider secret (TPM context key, AK CA), created with `value` if
    /// absent; returns the stored value (another replica may have won).
    fn secret_or_insert(
        &self,
        provider: &str,
        name: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, StoreError>;

    /// The provider's settings, a JSON object (`{}` when never set); see
    /// `crate::state::ProviderSettings`.
    fn provider_settings(&self, provider: &str) -> Result<String, StoreError>;
    /// Replaces the provider's settings.
    fn set_provider_settings(
        &self,
        provider: &str,
        settings: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;

    fn policies(&self, provider: &str) -> Result<Vec<PolicyRecord>, StoreError>;
    fn set_policy(
        &self,
        provider: &str,
        policy: &PolicyRecord,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    fn remove_policy(
        &self,
        provider: &str,
        attestation_type: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// Policy-signer certificates (DER), oldest first.
    fn signers(&self, provider: &str) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Adds a signer; false when it was already present.
    fn add_signer(
        &self,
        provider: &str,
        der: &[u8],
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    fn remove_signer(
        &self,
        provider: &str,
        der: &[u8],
        audit: &AuditRecord,
    ) -> Result<SignerRemoval, StoreError>;

    /// SHA-256 hashes of the provider's admin keys.
    fn admin_key_hashes(&self, provider: &str) -> Result<Vec<Vec<u8>>, StoreError>;
    fn add_admin_key(
        &self,
        provider: &str,
        hash: &[u8],
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// Newest first, at most `limit`.
    fn audit_log(&self, provider: &str, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;

    /// The cached collateral item `key`, if any.
    fn collateral(&self, key: &str) -> Result<Option<CollateralRecord>, StoreError>;
    /// Stores (or replaces) a collateral item. Not audited and not a
    /// provider change: it does not bump the generation.
    fn put_collateral(&self, record: &CollateralRecord) -> Result<(), StoreError>;
    /// Every cached item, without bodies, by key.
    fn collateral_index(&self) -> Result<Vec<CollateralRecord>, StoreError>;
}
