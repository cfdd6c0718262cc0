//! What every request handler shares: the provider's keys and policies, the
//! verifiers, the store and the clock. Read-mostly; loaded at start and on
//! change, never from the database on the attestation hot path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aver_policy::Policy;
use aver_token::SigningKey;
use aver_verify::SgxVerifier;

use crate::error::ApiError;
use crate::store::Store;

/// Attestation types, as they appear in paths (`/attest/SgxEnclave`,
/// `/policies/SgxEnclave`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttestationType {
    SgxEnclave,
    OpenEnclave,
    Tpm,
}

impl AttestationType {
    pub const ALL: [AttestationType; 3] = [
        AttestationType::SgxEnclave,
        AttestationType::OpenEnclave,
        AttestationType::Tpm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttestationType::SgxEnclave => "SgxEnclave",
            AttestationType::OpenEnclave => "OpenEnclave",
            AttestationType::Tpm => "Tpm",
        }
    }

    /// Parses a path segment, case-insensitively (the SDKs' enums are).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}

/// The shared-provider default SGX policy of Azure Attestation (2022),
/// byte for byte: its `x-ms-policy-hash` is
/// `bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw`.
pub const DEFAULT_SGX_POLICY: &str = include_str!("../policies/sgx-default.txt");

/// A policy in force, parsed once when it is set.
#[derive(Debug)]
pub struct ActivePolicy {
    pub text: String,
    pub policy: Policy,
    /// `x-ms-policy-hash` of `text`.
    pub hash: String,
    /// The policy signer's JWK, when the policy was set signed.
    pub signer: Option<serde_json::Value>,
}

impl ActivePolicy {
    pub fn from_text(text: &str, signer: Option<serde_json::Value>) -> Result<Self, ApiError> {
        let policy = Policy::parse(text)
            .map_err(|e| ApiError::bad_request("PolicyParsingError", e.to_string()))?;
        Ok(ActivePolicy {
            text: text.to_string(),
            policy,
            hash: aver_policy::policy_hash(text),
            signer,
        })
    }
}

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

/// An attestation provider (tenant): issuer, keys and policies.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    /// Published keys, the signing one first.
    keys: RwLock<Vec<Arc<SigningKey>>>,
    policies: RwLock<HashMap<AttestationType, Arc<ActivePolicy>>>,
}

impl Provider {
    pub fn new(name: &str, issuer: &str, keys: Vec<Arc<SigningKey>>) -> Result<Self, ApiError> {
        let sgx = Arc::new(ActivePolicy::from_text(DEFAULT_SGX_POLICY, None)?);
        let mut policies = HashMap::new();
        policies.insert(AttestationType::SgxEnclave, sgx.clone());
        policies.insert(AttestationType::OpenEnclave, sgx);
        Ok(Provider {
            name: name.to_string(),
            issuer: issuer.to_string(),
            keys: RwLock::new(keys),
            policies: RwLock::new(policies),
        })
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> Result<Arc<SigningKey>, ApiError> {
        self.keys
            .read()
            .map_err(|_| ApiError::internal("signing keys unavailable", "lock poisoned"))?
            .first()
            .cloned()
            .ok_or_else(|| ApiError::internal("no signing key", "provider has no keys"))
    }

    /// Every published key (for `/certs`).
    pub fn published_keys(&self) -> Vec<Arc<SigningKey>> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// The policy in force for `kind`, if any.
    pub fn policy(&self, kind: AttestationType) -> Option<Arc<ActivePolicy>> {
        self.policies.read().ok()?.get(&kind).cloned()
    }

    pub fn jku(&self) -> String {
        format!("{}/certs", self.issuer)
    }
}

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    pub provider: Arc<Provider>,
    pub store: Arc<Store>,
    pub sgx: Arc<SgxVerifier>,
    pub clock: Clock,
    pub max_body_bytes: usize,
}
