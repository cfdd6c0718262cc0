//! Token-signing key rotation with no downtime.
//!
//! Every key has three times: `created_at`, `not_before_signing` (created +
//! the publish delay) and, once retired, `retired_at`. At any time `now`:
//!
//! * the **signing** key is the newest non-retired key whose
//!   `not_before_signing` has passed;
//! * the **published** keys (`/certs`) are every non-retired key — so a
//!   *next* key is in `/certs` for the whole publish delay before anyone
//!   signs with it — and every retired key until `retired_at +`
//!   [`RETIRED_PUBLISH_SECS`], by when every token it signed has expired.
//!
//! Replicas notice a rotation within their refresh interval (`refresh_secs`,
//! 2 s by default, plus one reload): that is the refresh bound the publish
//! delay must exceed. The default delay ([`DEFAULT_PUBLISH_DELAY_SECS`],
//! 5 minutes) is far above it and also leaves relying parties that cache
//! `/certs` for a few minutes time to see the next key. The choice is made
//! from the clock at each signature, not at load, so a key becomes the
//! signing key on every replica at the same instant (within clock skew)
//! without any replica being told.
//!
//! Retiring is refused unless another key can already sign, so a provider
//! never lacks a signing key. Rotation and retirement are audited.

use std::sync::Arc;

use aver_token::SigningKey;
use serde_json::{Value, json};

use crate::store::{AuditRecord, Store, StoreError, StoredKey};

/// Attestation tokens live 8 hours (as Azure's).
pub const TOKEN_LIFETIME_SECS: i64 = aver_attestation::tail::TOKEN_LIFETIME_SECS as i64;
/// Leeway after a retired key's last token expired: clock skew between
/// replicas and relying parties, and replicas still signing with it until
/// their next refresh.
pub const RETIRED_LEEWAY_SECS: i64 = 15 * 60;
/// How long a retired key stays in `/certs`.
pub const RETIRED_PUBLISH_SECS: i64 = TOKEN_LIFETIME_SECS + RETIRED_LEEWAY_SECS;
/// Default time between publishing a key and signing with it.
pub const DEFAULT_PUBLISH_DELAY_SECS: u64 = 300;
/// Longest publish delay accepted (a week): beyond it is a typo.
pub const MAX_PUBLISH_DELAY_SECS: u64 = 7 * 24 * 3600;

/// Where a key is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signs new tokens.
    Signing,
    /// Published, not signing (superseded by a newer key, not retired).
    Published,
    /// Retired, still published until its tokens expired.
    Retired,
    /// Retired and no longer published.
    Expired,
}

/// A key's schedule, without its private part (listing needs no KEK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTimes {
    pub kid: String,
    pub created_at: i64,
    pub not_before_signing: i64,
    pub retired_at: Option<i64>,
}

impl From<&StoredKey> for KeyTimes {
    fn from(k: &StoredKey) -> Self {
        KeyTimes {
            kid: k.kid.clone(),
            created_at: k.created_at,
            not_before_signing: k.not_before_signing,
            retired_at: k.retired_at,
        }
    }
}

impl KeyTimes {
    pub(crate) fn can_sign(&self, now: i64) -> bool {
        self.retired_at.is_none() && self.not_before_signing <= now
    }

    fn published(&self, now: i64) -> bool {
        self.retired_at
            .is_none_or(|r| now < r.saturating_add(RETIRED_PUBLISH_SECS))
    }
}

/// Index of the signing key among `times` at `now`: the newest key that
/// may sign; if none may (every live key is still being published — only
/// possible with clocks far apart), the live key closest to signing.
pub fn signing_index(times: &[&KeyTimes], now: i64) -> Option<usize> {
    let newest = times
        .iter()
        .enumerate()
        .filter(|(_, t)| t.can_sign(now))
        .max_by_key(|(i, t)| (t.not_before_signing, t.created_at, std::cmp::Reverse(*i)))
        .map(|(i, _)| i);
    newest.or_else(|| {
        times
            .iter()
            .enumerate()
            .filter(|(_, t)| t.retired_at.is_none())
            .min_by_key(|(_, t)| t.not_before_signing)
            .map(|(i, _)| i)
    })
}

/// The state of each key at `now`, in the given order.
pub fn states(times: &[&KeyTimes], now: i64) -> Vec<KeyState> {
    let signing = signing_index(times, now);
    times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if Some(i) == signing {
                KeyState::Signing
            } else if t.retired_at.is_some() {
                if t.published(now) {
                    KeyState::Retired
                } else {
                    KeyState::Expired
                }
            } else if t.not_before_signing > now {
                KeyState::Next
            } else {
                KeyState::Published
            }
        })
        .collect()
}

/// A provider's loaded keys with their schedules.
#[derive(Debug, Default)]
pub struct KeyRing {
    entries: Vec<(KeyTimes, Arc<SigningKey>)>,
}

impl KeyRing {
    pub fn new(entries: Vec<(KeyTimes, Arc<SigningKey>)>) -> Self {
        KeyRing { entries }
    }

    fn times(&self) -> Vec<&KeyTimes> {
        self.entries.iter().map(|(t, _)| t).collect()
    }

    /// The key that signs at `now`.
    pub fn signing(&self, now: u64) -> Option<&Arc<SigningKey>> {
        let i = signing_index(&self.times(), to_i64(now))?;
        self.entries.get(i).map(|(_, k)| k)
    }

    /// The keys `/certs` publishes at `now`, the signing one first.
    pub fn published(&self, now: u64) -> Vec<&SigningKey> {
        let now = to_i64(now);
        let signing = signing_index(&self.times(), now);
        let mut out: Vec<&SigningKey> = Vec::new();
        if let Some((_, k)) = signing.and_then(|i| self.entries.get(i)) {
            out.push(k);
        }
        for (i, (t, k)) in self.entries.iter().enumerate() {
            if Some(i) != signing && t.published(now) {
                out.push(k);
            }
        }
        out
    }

    /// The schedule of the key that signs at `now` (its age, for metrics).
    pub fn signing_times(&self, now: u64) -> Option<&KeyTimes> {
        let i = signing_index(&self.times(), to_i64(now))?;
        self.entries.get(i).map(|(t, _)| t)
    }

    /// Every key, any state.
    pub fn all(&self) -> impl Iterator<Item = &SigningKey> {
        self.entries.iter().map(|(_, k)| k.as_ref())
    }

    /// Every key's schedule, in the store's order (newest first).
    pub fn schedules(&self) -> Vec<&KeyTimes> {
        self.times()
    }
}

fn to_i64(now: u64) -> i64 {
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// The listing of `aver keys list` and `GET /keys`: one object per key,
/// newest first.
pub fn describe(keys: &[StoredKey], now: u64) -> Vec<Value> {
    let times: Vec<KeyTimes> = keys.iter().map(KeyTimes::from).collect();
    let refs: Vec<&KeyTimes> = times.iter().collect();
    let states = states(&refs, to_i64(now));
    keys.iter()
        .zip(states)
        .map(|(k, state)| {
            json!({
                "kid": k.kid,
                "alg": key_alg(&k.certificate),
                "state": state,
                "created_at": k.created_at,
                "not_before_signing": k.not_before_signing,
                "retired_at": k.retired_at,
                "published_until": k.retired_at.map(|r| r.saturating_add(RETIRED_PUBLISH_SECS)),
            })
        })
        .collect()
}

/// The JWS algorithm of a stored key, from its certificate.
fn key_alg(certificate: &[u8]) -> &'static str {
    match x509_parser::parse_x509_certificate(certificate) {
        Ok((_, cert))
            if cert.public_key().algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1" =>
        {
            "ES256"
        }
        _ => "RS256",
    }
}

/// Why a rotation or retirement was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyOpError {
    #[error("provider {0:?} has no signing key yet: start the service once to create it")]
    NoKeys(String),
    #[error("provider {provider:?} has no key {kid:?}")]
    UnknownKey { provider: String, kid: String },
    #[error("key {0} is already retired")]
    AlreadyRetired(String),
    #[error(
        "key {0} is the only key that can sign now: rotate first, and retire it once the new key signs (after its publish delay)"
    )]
    LastSigningKey(String),
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key signing at `now` (else the first) among `existing`, and the
/// issuer its certificate names: what a new key inherits.
fn current_key<'k>(
    existing: &'k [StoredKey],
    provider: &str,
    now: u64,
) -> Result<(&'k StoredKey, String), KeyOpError> {
    let times: Vec<KeyTimes> = existing.iter().map(KeyTimes::from).collect();
    let refs: Vec<&KeyTimes> = times.iter().collect();
    let current = signing_index(&refs, to_i64(now))
        .and_then(|i| existing.get(i))
        .or_else(|| existing.first())
        .ok_or_else(|| KeyOpError::NoKeys(provider.to_string()))?;
    let issuer = common_name(&current.certificate).ok_or_else(|| {
        KeyOpError::Key("the current key's certificate has no common name".into())
    })?;
    Ok((current, issuer))
}

/// Generates a new key for `provider`, published now and signing after
/// `publish_delay` seconds; returns its stored row. The certificate's
/// common name (the issuer) is the current signing key's, so this works
/// directly on the store, without knowing the service's URL.
pub fn rotate(
    store: &dyn Store,
    kek: &crate::kek::Kek,
    provider: &str,
    alg: aver_token::KeyAlg,
    now: u64,
    publish_delay: u64,
    actor: &str,
) -> Result<StoredKey, KeyOpError> {
    rotate_after(store, kek, provider, alg, now, publish_delay, actor, None)
}

/// [`rotate`], but only while `after` is still the provider's newest key:
/// otherwise `KeyOpError::Store(StoreError::Superseded)` and nothing is
/// written (what scheduled rotation uses, so that replicas due at the same
/// moment add one key between them).
#[allow(clippy::too_many_arguments)]
pub fn rotate_after(
    store: &dyn Store,
    kek: &crate::kek::Kek,
    provider: &str,
    alg: aver_token::KeyAlg,
    now: u64,
    publish_delay: u64,
    actor: &str,
    after: Option<&str>,
) -> Result<StoredKey, KeyOpError> {
    let existing = store.signing_keys(provider)?;
    let (current, issuer) = current_key(&existing, provider, now)?;
    let key = SigningKey::generate_alg(&issuer, alg).map_err(|e| KeyOpError::Key(e.to_string()))?;
    let now_i = to_i64(now);
    let row = StoredKey {
        kid: key.kid().to_string(),
        pkcs8: kek
            .seal(
                &crate::kek::key_aad(provider, key.kid()),
                key.pkcs8_der().unwrap_or_default(),
            )
            .map_err(|e| KeyOpError::Key(e.to_string()))?,
        certificate: key.certificate_der().to_vec(),
        created_at: now_i,
        not_before_signing: now_i.saturating_add(to_i64(publish_delay)),
        retired_at: None,
    };
    let audit = AuditRecord {
        at: now_i,
        provider: provider.to_string(),
        actor: actor.to_string(),
        action: "key.rotate".into(),
        target: row.kid.clone(),
        policy_hash: None,
        detail: format!(
            "{} key, published now, signing from {} (publish delay {publish_delay} s); previous signing key {}",
            alg.name(),
            row.not_before_signing,
            current.kid
        ),
    };
    store.add_signing_key(provider, &row, &audit, after)?;
    Ok(row)
}

/// What the store holds, sealed under the KEK, in place of a PKCS#8 key for
/// a key kept in a PKCS#11 token: this prefix and the key's URI. A PKCS#8
/// key is DER (it starts with `0x30`), so the two cannot be confused.
pub const HSM_REFERENCE_PREFIX: &[u8] = b"pkcs11:";

/// Opens the token key a stored reference names (the URI itself starts
/// with [`HSM_REFERENCE_PREFIX`]) with its stored certificate.
pub fn open_hsm_key(reference: &[u8], certificate: Vec<u8>) -> Result<SigningKey, String> {
    let uri = std::str::from_utf8(reference)
        .map_err(|_| "the stored PKCS#11 URI is not UTF-8".to_string())?;
    let signer = aver_pkcs11::open_signer(uri).map_err(|e| e.to_string())?;
    SigningKey::from_remote(signer, certificate).map_err(|e| e.to_string())
}

/// Makes a key held in a PKCS#11 token (named by `uri`, RFC 7512) a key of
/// `provider`: the token signs a self-signed certificate for it (common
/// name: the current signing key's issuer), and the store keeps the URI —
/// sealed under the KEK, since it may carry a `pin-value` — with that
/// certificate. Published now, signing after `publish_delay`, like
/// [`rotate`]; retired like any key. The private key never leaves the
/// token; every replica opens it through its own module and PIN at load.
#[allow(clippy::too_many_arguments)]
pub fn import_hsm(
    store: &dyn Store,
    kek: &crate::kek::Kek,
    provider: &str,
    uri: &str,
    now: u64,
    publish_delay: u64,
    actor: &str,
) -> Result<StoredKey, KeyOpError> {
    let existing = store.signing_keys(provider)?;
    let (current, issuer) = current_key(&existing, provider, now)?;
    let uri = uri.trim();
    if !uri.as_bytes().starts_with(HSM_REFERENCE_PREFIX) {
        return Err(KeyOpError::Key(
            "a PKCS#11 URI starts with \"pkcs11:\"".into(),
        ));
    }
    let signer = aver_pkcs11::open_signer(uri).map_err(|e| KeyOpError::Key(e.to_string()))?;
    let shown = signer.describe();
    let key = SigningKey::generate_remote(&issuer, signer)
        .map_err(|e| KeyOpError::Key(format!("signing the certificate in {shown}: {e}")))?;
    if existing.iter().any(|k| k.kid == key.kid()) {
        return Err(KeyOpError::Key(format!(
            "key {} is already a key of provider {provider:?}",
            key.kid()
        )));
    }
    let now_i = to_i64(now);
    let row = StoredKey {
        kid: key.kid().to_string(),
        pkcs8: kek
            .seal(&crate::kek::key_aad(provider, key.kid()), uri.as_bytes())
            .map_err(|e| KeyOpError::Key(e.to_string()))?,
        certificate: key.certificate_der().to_vec(),
        created_at: now_i,
        not_before_signing: now_i.saturating_add(to_i64(publish_delay)),
        retired_at: None,
    };
    let audit = AuditRecord {
        at: now_i,
        provider: provider.to_string(),
        actor: actor.to_string(),
        action: "key.import-hsm".into(),
        target: row.kid.clone(),
        policy_hash: None,
        detail: format!(
            "{} key in a PKCS#11 token ({shown}), published now, signing from {} (publish delay {publish_delay} s); previous signing key {}",
            key.alg().name(),
            row.not_before_signing,
            current.kid
        ),
    };
    store.add_signing_key(provider, &row, &audit, None)?;
    Ok(row)
}

/// Retires `kid`: it stops signing now and stays published for
/// [`RETIRED_PUBLISH_SECS`].
pub fn retire(
    store: &dyn Store,
    provider: &str,
    kid: &str,
    now: u64,
    actor: &str,
) -> Result<StoredKey, KeyOpError> {
    let existing = store.signing_keys(provider)?;
    let target = existing
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| KeyOpError::UnknownKey {
            provider: provider.to_string(),
            kid: kid.to_string(),
        })?;
    if target.retired_at.is_some() {
        return Err(KeyOpError::AlreadyRetired(kid.to_string()));
    }
    let now_i = to_i64(now);
    let another_can_sign = existing
        .iter()
        .any(|k| k.kid != kid && KeyTimes::from(k).can_sign(now_i));
    if !another_can_sign {
        return Err(KeyOpError::LastSigningKey(kid.to_string()));
    }
    let audit = AuditRecord {
        at: now_i,
        provider: provider.to_string(),
        actor: actor.to_string(),
        action: "key.retire".into(),
        target: kid.to_string(),
        policy_hash: None,
        detail: format!(
            "published until {}",
            now_i.saturating_add(RETIRED_PUBLISH_SECS)
        ),
    };
    if !store.retire_signing_key(provider, kid, now_i, &audit)? {
        return Err(KeyOpError::AlreadyRetired(kid.to_string()));
    }
    let mut out = target.clone();
    out.retired_at = Some(now_i);
    Ok(out)
}

fn common_name(certificate: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A key's schedule (shared with `rotation`'s tests).
    pub(crate) fn t(kid: &str, created: i64, nbs: i64, retired: Option<i64>) -> KeyTimes {
        KeyTimes {
            kid: kid.into(),
            created_at: created,
            not_before_signing: nbs,
            retired_at: retired,
        }
    }

    #[test]
    fn schedule_through_a_rotation() {
        let old = t("old", 0, 0, None);
        let new = t("new", 1000, 1300, None);
        let keys = [&new, &old];
        // Before the delay: old signs, new is published as next.
        assert_eq!(states(&keys, 1000), [KeyState::Next, KeyState::Signing]);
        assert_eq!(signing_index(&keys, 1299), Some(1));
        // After it: new signs, old still published.
        assert_eq!(
            states(&keys, 1300),
            [KeyState::Signing, KeyState::Published]
        );
        // Old retired at 2000: published until its tokens expired.
        let old = t("old", 0, 0, Some(2000));
        let keys = [&new, &old];
        assert_eq!(states(&keys, 2000), [KeyState::Signing, KeyState::Retired]);
        assert_eq!(
            states(&keys, 2000 + RETIRED_PUBLISH_SECS - 1),
            [KeyState::Signing, KeyState::Retired]
        );
        assert_eq!(
            states(&keys, 2000 + RETIRED_PUBLISH_SECS),
            [KeyState::Signing, KeyState::Expired]
        );
    }

    #[test]
    fn a_pending_key_alone_still_signs() {
        let only = t("only", 0, 500, None);
        assert_eq!(signing_index(&[&only], 10), Some(0));
    }
}
