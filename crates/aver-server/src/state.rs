//! What request handlers share: providers (keys, policies, signers, TPM
//! secrets), the verifiers, the store and the clock. Providers are loaded
//! from the store at start and reloaded after every change (and when
//! another replica changed the store), never read from the database on the
//! attestation hot path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aver_attestation::{ActivePolicy, AttestationType, Verifiers};
use aver_token::SigningKey;
use aver_tpm_attest::{ReplayCache, TpmAttestService};
use serde_json::{Map, Value};

use crate::admin::AdminAuth;
use crate::error::ApiError;
use crate::store::Store;

/// A source of "now", so tests can pin the verification time.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    Fixed(u64),
}

impl Clock {
    /// Seconds since the Unix epoch.
    pub fn now(self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Clock::Fixed(t) => t,
        }
    }
}

/// Per-provider settings, stored as a JSON object (unknown members are
/// ignored, so replicas of different versions can share a store).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ProviderSettings {
    /// Smallest RSA key a policy signer may use. 2048 by default (NIST
    /// SP 800-131A); an operator may lower it to 1024 for clients that sign
    /// with older keys — Microsoft's own JS SDK test suite does — accepting
    /// that a 1024-bit key is within reach of a well-funded attacker.
    pub min_signer_rsa_bits: usize,
    /// Intel TCB statuses this provider accepts for SGX quotes verified
    /// with collateral; `None`: the service's (`--accept-tcb-status`,
    /// default UpToDate and SWHardeningNeeded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_tcb_statuses: Option<Vec<aver_attestation::dcap::TcbStatus>>,
    /// Algorithm of the provider's token-signing keys: `RS256` (the
    /// default: Azure signs with it and its Python SDK accepts nothing
    /// else) or `ES256` (P-256: a quarter of the signing cost, for relying
    /// parties that accept it). A change applies to the next key made
    /// (`aver keys rotate`); published keys keep their algorithm.
    pub token_signing_alg: String,
    /// Most attestations of this provider in flight at once (queued or
    /// running) on each replica; beyond it, 503 `ServerBusy`. `None`: only
    /// the service's limits apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            min_signer_rsa_bits: aver_token::jws::MIN_RSA_BITS,
            accepted_tcb_statuses: None,
            token_signing_alg: "RS256".into(),
            max_in_flight: None,
        }
    }
}

impl ProviderSettings {
    /// Parses stored settings; checks each value's range.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let settings: ProviderSettings =
            serde_json::from_str(text).map_err(|e| format!("provider settings: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The algorithm of the next token-signing key.
    pub fn token_alg(&self) -> aver_token::KeyAlg {
        aver_token::KeyAlg::from_name(&self.token_signing_alg).unwrap_or(aver_token::KeyAlg::Rs256)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self
            .accepted_tcb_statuses
            .as_ref()
            .is_some_and(|s| s.is_empty())
        {
            return Err(
                "accepted_tcb_statuses must name at least one status (omit it for the service's default)"
                    .into(),
            );
        }
        if aver_token::KeyAlg::from_name(&self.token_signing_alg).is_none() {
            return Err(format!(
                "token_signing_alg must be RS256 or ES256, not {:?}",
                self.token_signing_alg
            ));
        }
        if self.max_in_flight == Some(0) {
            return Err(
                "max_in_flight must be at least 1 (omit it for no per-provider cap)".into(),
            );
        }
        if self.min_signer_rsa_bits < aver_token::jws::LEGACY_MIN_RSA_BITS {
            return Err(format!(
                "min_signer_rsa_bits must be at least {}",
                aver_token::jws::LEGACY_MIN_RSA_BITS
            ));
        }
        Ok(())
    }
}

/// An attestation provider (tenant): issuer, keys, policies, signers.
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub isolated: bool,
    pub host: Option<String>,
    pub settings: ProviderSettings,
    /// Every loaded key with its schedule: which signs and which are
    /// published is decided at each use, from the clock (see
    /// [`crate::keys`]).
    pub keys: crate::keys::KeyRing,
    /// Policies in force, by attestation type name.
    pub policies: HashMap<&'static str, Arc<ActivePolicy>>,
    /// Policy-signer certificates (DER).
    pub signers: Vec<Vec<u8>>,
    /// SHA-256 of each admin key.
    pub admin_key_hashes: Vec<Vec<u8>>,
    pub tpm: Arc<TpmAttestService>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("isolated", &self.isolated)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The key that signs new tokens at `now`.
    pub fn signing_key(&self, now: u64) -> Result<&SigningKey, ApiError> {
        self.keys
            .signing(now)
            .map(|k| k.as_ref())
            .ok_or_else(|| ApiError::internal("no signing key", "provider has no keys"))
    }

    /// The keys `/certs` publishes at `now`, the signing one first.
    pub fn published_keys(&self, now: u64) -> Vec<&SigningKey> {
        self.keys.published(now)
    }

    /// The policy in force for `ty`: the one set, or the default.
    pub fn policy(&self, ty: &AttestationType) -> Option<Arc<ActivePolicy>> {
        self.policies.get(ty.name).cloned()
    }

    /// The signer of this provider's tokens at `now`.
    pub fn signer(&self, now: u64) -> Result<aver_attestation::Signer<'_>, ApiError> {
        Ok(aver_attestation::Signer {
            issuer: &self.issuer,
            key: self.signing_key(now)?,
        })
    }

    pub fn jku(&self) -> String {
        format!("{}/certs", self.issuer)
    }

    /// Signs management-API result claims (1 hour, as Azure's).
    pub fn sign_result(&self, claims: Map<String, Value>, now: u64) -> Result<String, ApiError> {
        let mut claims = claims;
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), (now + 3600).into());
        self.signing_key(now)?
            .sign_jwt(&self.jku(), &claims)
            .map_err(|e| ApiError::internal("token signing failed", e))
    }
}

/// All providers, by name and by host.
#[derive(Debug, Default)]
pub struct Providers {
    pub by_name: HashMap<String, Arc<Provider>>,
    pub generation: i64,
}

impl Providers {
    /// The provider whose configured host is `host` (already normalised by
    /// [`crate::routing::host_part`]; a configured port is ignored here).
    pub fn by_host(&self, host: &str) -> Option<Arc<Provider>> {
        self.by_name
            .values()
            .find(|p| {
                p.host
                    .as_deref()
                    .is_some_and(|h| crate::routing::host_part(h) == host)
            })
            .cloned()
    }
}

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    pub providers: Arc<RwLock<Providers>>,
    pub store: Arc<dyn Store>,
    /// Roots and caches of evidence verification, shared by all providers.
    pub verifiers: Arc<Verifiers>,
    pub clock: Clock,
    pub max_body_bytes: usize,
    /// Longest a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// Where verification, evaluation and signing run.
    pub cpu: crate::cpu::CpuPool,
    pub tpm_replay: Arc<ReplayCache>,
    pub admin: Arc<AdminAuth>,
    /// Everything needed to (re)build providers from the store.
    pub loader: Arc<crate::load::Loader>,
    /// When the store was last reached (for `/readyz` and the metrics).
    pub store_health: Arc<crate::observe::StoreHealth>,
    /// Where VCEKs come from when a SevSnpVm request has no chain.
    pub kds: Option<Arc<crate::kds::KdsSource>>,
}

impl AppState {
    /// The named provider.
    pub fn provider(&self, name: &str) -> Result<Arc<Provider>, ApiError> {
        self.providers
            .read()
            .map_err(|_| ApiError::internal("providers unavailable", "lock poisoned"))?
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "ProviderNotFound",
                    format!("no attestation provider named {name:?}"),
                )
            })
    }

    /// Reloads every provider from the store (after a change here or on
    /// another replica).
    pub async fn reload(&self) -> Result<(), ApiError> {
        let loader = self.loader.clone();
        let store = self.store.clone();
        let now = self.clock.now();
        let fresh = tokio::task::spawn_blocking(move || loader.load_all(store.as_ref(), now))
            .await
            .map_err(|e| ApiError::internal("reload failed", e))?
            .map_err(|e| ApiError::internal("reload failed", e))?;
        let mut guard = self
            .providers
            .write()
            .map_err(|_| ApiError::internal("providers unavailable", "lock poisoned"))?;
        // Two reloads may race (a management change's and the refresh
        // loop's): a snapshot taken at an older generation never replaces
        // a newer one (the generation is read before the content, so a
        // snapshot is at least as new as its label).
        if fresh.generation >= guard.generation {
            *guard = fresh;
        }
        Ok(())
    }

    /// Reads a request body within the configured size and time limits.
    pub async fn read_body(&self, body: axum::body::Body) -> Result<axum::body::Bytes, ApiError> {
        crate::request::read_body(body, self.max_body_bytes, self.body_read_timeout).await
    }

    /// Runs a blocking store operation off the async threads.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ApiError::internal("store task failed", e))?
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(what) => ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "Conflict",
                    format!("{what} already exists"),
                ),
                crate::store::StoreError::NotFound(what) => {
                    ApiError::not_found(format!("{what} does not exist"))
                }
                crate::store::StoreError::Superseded(why) => {
                    ApiError::new(axum::http::StatusCode::CONFLICT, "Conflict", why)
                }
                // Management answers at once rather than hanging while the
                // database is away; attestations do not need it.
                crate::store::StoreError::Unavailable(why) => {
                    tracing::warn!(cause = %why, "store unavailable");
                    ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "StoreUnavailable",
                        "the service's database is unavailable; attestation continues, but \
                         changes cannot be made now: retry shortly",
                    )
                    .with_retry_after(5)
                }
                other => ApiError::internal("store operation failed", other),
            })
    }
}
