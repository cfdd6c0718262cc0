//! Building the in-memory providers from the store.

use std::collections::HashMap;
use std::sync::Arc;

use aver_token::SigningKey;
use aver_tpm_attest::{TpmAttestConfig, TpmAttestService};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use aver_attestation::{ActivePolicy, registry};

use crate::kek::{self, Kek};
use crate::state::{Provider, ProviderSettings, Providers};
use crate::store::{AuditRecord, ProviderRecord, Store, StoreError, StoredKey};

/// The default provider's name; it answers at the root path.
pub const DEFAULT_PROVIDER: &str = "default";

/// What providers are built from besides the store.
#[derive(Debug, Clone)]
pub struct Loader {
    /// The service's public base URL (no trailing slash).
    pub base_issuer: String,
    /// TPM manufacturer roots (DER) trusted for EK certificates.
    pub ek_roots: Vec<Vec<u8>>,
    /// Manufacturer intermediate CAs (DER) usable in EK chains.
    pub ek_intermediates: Vec<Vec<u8>>,
    /// Seals keys and secrets before they reach the store.
    pub kek: Arc<Kek>,
}

/// Why providers could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("provider {provider}: {detail}")]
    Provider { provider: String, detail: String },
}

/// Why a provider could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("invalid provider name {0:?}: use 1-63 of a-z, 0-9 and -, not starting with -")]
    InvalidName(String),
    #[error("invalid host {0:?}: a DNS name (letters, digits, '-' and '.'), optionally with :port")]
    InvalidHost(String),
    #[error("an isolated provider needs at least one policy signer certificate")]
    NoSigners,
    #[error("the system random number generator failed")]
    Rng,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `name` is a valid provider name: 1-63 of `a-z 0-9 -`, not
/// starting with `-` (it appears in URLs and host names).
pub fn valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `host` is a DNS name with an optional port, as a provider's host.
/// Routing compares it in lower case without a trailing dot.
pub fn valid_host_name(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A new random admin key (`aver_` + 32 random bytes, base64url) and the
/// SHA-256 hash that is stored instead of it.
pub fn new_admin_key() -> Result<(String, Vec<u8>), CreateError> {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| CreateError::Rng)?;
    let key = format!("aver_{}", aver_token::b64::encode_url(&secret));
    let hash = admin_key_hash(&key);
    Ok((key, hash))
}

/// The stored form of an admin key.
pub fn admin_key_hash(key: &str) -> Vec<u8> {
    aver_attestation::sha256(key.as_bytes()).to_vec()
}

impl Loader {
    /// The issuer URL of a provider.
    pub fn issuer_of(&self, record: &ProviderRecord) -> String {
        if record.name == DEFAULT_PROVIDER {
            self.base_issuer.clone()
        } else if let Some(host) = &record.host {
            with_host(&self.base_issuer, host)
        } else {
            format!("{}/providers/{}", self.base_issuer, record.name)
        }
    }

    /// Loads every provider.
    pub fn load_all(&self, store: &dyn Store, now: u64) -> Result<Providers, LoadError> {
        let generation = store.generation()?;
        let mut by_name = HashMap::new();
        for record in store.providers()? {
            let provider = self.load(store, &record, now)?;
            by_name.insert(record.name.clone(), Arc::new(provider));
        }
        Ok(Providers {
            by_name,
            generation,
        })
    }

    /// Loads one provider, creating its signing key and TPM secrets on
    /// first use.
    pub fn load(
        &self,
        store: &dyn Store,
        record: &ProviderRecord,
        now: u64,
    ) -> Result<Provider, LoadError> {
        let fail = |detail: String| LoadError::Provider {
            provider: record.name.clone(),
            detail,
        };
        let issuer = self.issuer_of(record);
        let settings =
            ProviderSettings::from_json(&store.provider_settings(&record.name)?).map_err(fail)?;
        let mut stored = store.signing_keys(&record.name)?;
        if stored.is_empty() {
            let key = SigningKey::generate_alg(&issuer, settings.token_alg())
                .map_err(|e| fail(e.to_string()))?;
            let row = StoredKey {
                kid: key.kid().to_string(),
                pkcs8: self
                    .kek
                    .seal(
                        &kek::key_aad(&record.name, key.kid()),
                        key.pkcs8_der().unwrap_or_default(),
                    )
                    .map_err(|e| fail(e.to_string()))?,
                certificate: key.certificate_der().to_vec(),
                created_at: now as i64,
                // The first key signs at once: nobody has tokens to verify yet.
                not_before_signing: now as i64,
                retired_at: None,
            };
            store.insert_signing_key(&record.name, &row)?;
            tracing::info!(provider = %record.name, kid = key.kid(), alg = key.alg().name(), "generated a token-signing key");
            // Another replica may have raced us: use what the store holds.
            stored = store.signing_keys(&record.name)?;
        }
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let mut entries = Vec::new();
        for k in stored {
            // A key no longer published is not loaded (nor decrypted).
            let times = crate::keys::KeyTimes::from(&k);
            if k.retired_at
                .is_some_and(|r| now_i >= r.saturating_add(crate::keys::RETIRED_PUBLISH_SECS))
            {
                continue;
            }
            let pkcs8 = self.unseal(store, &record.name, &Record::Key(&k.kid), &k.pkcs8)?;
            let key = if pkcs8.starts_with(crate::keys::HSM_REFERENCE_PREFIX) {
                // A key in a PKCS#11 token: open it through this machine's
                // module and PIN; a missing one is a start-up error.
                crate::keys::open_hsm_key(&pkcs8, k.certificate)
                    .map_err(|e| fail(format!("stored key {} (PKCS#11): {e}", k.kid)))?
            } else {
                SigningKey::from_parts(pkcs8, k.certificate)
                    .map_err(|e| fail(format!("stored key {}: {e}", k.kid)))?
            };
            entries.push((times, Arc::new(key)));
        }
        let keys = crate::keys::KeyRing::new(entries);

        let mut policies = HashMap::new();
        for ty in registry::TYPES {
            if let Some(text) = ty.default_policy {
                let active = ActivePolicy::from_text(text, None).map_err(|e| fail(e.message))?;
                policies.insert(ty.name, Arc::new(active));
            }
        }
        for row in store.policies(&record.name)? {
            let Some(kind) = registry::lookup(&row.attestation_type) else {
                continue;
            };
            if row.text.is_empty() {
                policies.remove(kind.name);
                continue;
            }
            let signer = row
                .signer
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok());
            match ActivePolicy::new(&row.text, row.jws, signer, &aver_policy::Budget::default()) {
                Ok(active) => {
                    policies.insert(kind.name, Arc::new(active));
                }
                Err(e) => {
                    // Stored policies were validated when set; refuse to
                    // silently fall back to a default for a bad one.
                    return Err(fail(format!("stored {} policy: {}", kind.name, e.message)));
                }
            }
        }

        let context_key = self.secret(store, &record.name, "tpm-context-key", || {
            let mut key = [0u8; 32];
            aws_lc_rs::rand::fill(&mut key).map_err(|_| "system RNG failed".to_string())?;
            Ok(key.to_vec())
        })?;
        let context_key: [u8; 32] = context_key
            .try_into()
            .map_err(|_| fail("stored TPM context key is not 32 bytes".into()))?;
        let ak_ca = self.secret(store, &record.name, "tpm-ak-ca", || new_ak_ca(&record.name))?;
        let (ca_cert, ca_key) =
            split_ak_ca(&ak_ca).ok_or_else(|| fail("stored AK CA is malformed".into()))?;
        let mut tpm_config =
            TpmAttestConfig::new(context_key, ca_cert, ca_key, self.ek_roots.clone());
        tpm_config.ek_intermediates = self.ek_intermediates.clone();
        let tpm =
            TpmAttestService::new(tpm_config).map_err(|e| fail(format!("TPM service: {e}")))?;

        Ok(Provider {
            name: record.name.clone(),
            issuer,
            isolated: record.isolated,
            host: record.host.clone(),
            settings,
            keys,
            policies,
            signers: store.signers(&record.name)?,
            admin_key_hashes: store.admin_key_hashes(&record.name)?,
            tpm: Arc::new(tpm),
        })
    }

    fn secret(
        &self,
        store: &dyn Store,
        provider: &str,
        name: &str,
        make: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, LoadError> {
        let fail = |detail: String| LoadError::Provider {
            provider: provider.to_string(),
            detail,
        };
        // Only generate (and seal) a candidate when the secret is absent.
        let existing = store
            .secrets(provider)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v);
        let stored = match existing {
            Some(v) => v,
            None => {
                let candidate = make().map_err(fail)?;
                let sealed = self
                    .kek
                    .seal(&kek::secret_aad(provider, name), &candidate)
                    .map_err(|e| fail(e.to_string()))?;
                // secret_or_insert keeps the first writer's value, so
                // replicas that start together agree.
                store.secret_or_insert(provider, name, &sealed)?
            }
        };
        self.unseal(store, provider, &Record::Secret(name), &stored)
    }

    /// Opens a stored key or secret; one still in plaintext (written before
    /// keys were encrypted) is sealed in place, with a warning.
    fn unseal(
        &self,
        store: &dyn Store,
        provider: &str,
        record: &Record<'_>,
        stored: &[u8],
    ) -> Result<Vec<u8>, LoadError> {
        let fail = |detail: String| LoadError::Provider {
            provider: provider.to_string(),
            detail,
        };
        let (aad, what) = match record {
            Record::Key(kid) => (kek::key_aad(provider, kid), format!("signing key {kid}")),
            Record::Secret(name) => (kek::secret_aad(provider, name), format!("secret {name}")),
        };
        let (plain, sealing) = self
            .kek
            .open_or_legacy(&aad, stored, &what)
            .map_err(|e| fail(e.to_string()))?;
        // Records under an accepted KEK are left as they are: while a
        // rotation rolls out, replicas with the old KEK in force and ones
        // with the new would otherwise re-seal the same record back and
        // forth. `aver keys rewrap` moves them once every replica opens
        // both (see `kek`).
        if sealing == kek::Sealing::Plaintext {
            let new = self
                .kek
                .seal(&aad, &plain)
                .map_err(|e| fail(e.to_string()))?;
            match record {
                Record::Key(kid) => store.replace_key_material(provider, kid, stored, &new)?,
                Record::Secret(name) => store.replace_secret(provider, name, stored, &new)?,
            };
            tracing::warn!(
                provider,
                record = %what,
                kek = %self.kek.id(),
                "found a plaintext key in the store; encrypted it under the KEK"
            );
        }
        Ok(plain)
    }
}

/// A stored record holding key material.
enum Record<'a> {
    Key(&'a str),
    Secret(&'a str),
}

/// The issuer of a provider reached by host name: the service's scheme and
/// that host, `https://<host>` — the URL relying parties use, normally on
/// the default port behind a load balancer. A host configured with a port
/// (`attest.contoso.example:8443`) keeps it.
fn with_host(base: &str, host: &str) -> String {
    let scheme = base.split_once("://").map_or("https", |(s, _)| s);
    let host = host.strip_suffix('.').unwrap_or(host);
    format!("{scheme}://{host}")
}

/// Creates the provider `record` with its first admin key; returns the key
/// (shown once, stored hashed).
pub fn create_provider(
    store: &dyn Store,
    record: &ProviderRecord,
    signers: &[Vec<u8>],
    actor: &str,
) -> Result<String, CreateError> {
    if !valid_provider_name(&record.name) {
        return Err(CreateError::InvalidName(record.name.clone()));
    }
    if let Some(host) = &record.host
        && !valid_host_name(host)
    {
        return Err(CreateError::InvalidHost(host.clone()));
    }
    if record.isolated && signers.is_empty() {
        return Err(CreateError::NoSigners);
    }
    let (key, hash) = new_admin_key()?;
    let audit = AuditRecord {
        at: record.created_at,
        provider: record.name.clone(),
        actor: actor.to_string(),
        action: "provider.create".into(),
        target: record.name.clone(),
        policy_hash: None,
        detail: format!(
            "mode {}, {} signer(s){}",
            if record.isolated { "isolated" } else { "aad" },
            signers.len(),
            record
                .host
                .as_deref()
                .map(|h| format!(", host {h}"))
                .unwrap_or_default()
        ),
    };
    store.create_provider(record, signers, &hash, &audit)?;
    Ok(key)
}

/// The AK CA secret: a length-prefixed certificate DER, then PKCS#8.
fn new_ak_ca(provider: &str) -> Result<Vec<u8>, String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Aver AK CA ({provider})"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let cert = cert.der().to_vec();
    let pkcs8 = key.serialize_der();
    let mut out = (cert.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&cert);
    out.extend_from_slice(&pkcs8);
    Ok(out)
}

fn split_ak_ca(blob: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let cert = blob.get(4..4usize.checked_add(len)?)?.to_vec();
    let key = blob.get(4 + len..)?.to_vec();
    Some((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names() {
        assert!(valid_provider_name("contoso-prod-1"));
        for bad in ["", "-x", "Upper", "a/b", "a.b", &"x".repeat(64)] {
            assert!(!valid_provider_name(bad), "{bad}");
        }
    }

    #[test]
    fn host_routed_issuer_is_the_host() {
        assert_eq!(
            with_host("https://127.0.0.1:8443", "a.example"),
            "https://a.example"
        );
        assert_eq!(
            with_host("http://aver.example", "a.example."),
            "http://a.example"
        );
        assert_eq!(
            with_host("https://[::1]:9443/x", "a.example:8443"),
            "https://a.example:8443"
        );
    }

    #[test]
    fn ak_ca_blob_round_trip() {
        let blob = new_ak_ca("t").unwrap();
        let (cert, key) = split_ak_ca(&blob).unwrap();
        assert!(x509_parser::parse_x509_certificate(&cert).is_ok());
        assert!(KeyPair::try_from(key.as_slice()).is_ok());
        assert!(split_ak_ca(&blob[..3]).is_none());
    }
}
