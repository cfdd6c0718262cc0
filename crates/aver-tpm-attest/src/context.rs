//! Sealed, stateless `service_context` and the replay cache.
//!
//! A service context is everything the service must remember between two
//! protocol steps, encrypted and authenticated with AES-256-GCM under the
//! provider's 32-byte context key, so any replica holding the key can
//! serve the next step and nothing is stored:
//!
//! ```text
//! service_context = base64url( 0x01 ‖ key_id[8] ‖ nonce[12] ‖ AES-256-GCM(key, nonce, aad, json) )
//! key_id          = SHA-256("aver-tpm-context-key" ‖ key)[..8]   (detects key mismatch / rotation)
//! aad             = "aver-tpm-service-context-v1"
//! json            = {"v":1,"id":<b64url 16 random bytes>,"purpose":"attest"|"activate",
//!                    "iat":<unix>,"exp":<unix>, …purpose fields}
//! ```
//!
//! Purpose `attest` carries the challenge; purpose `activate` carries
//! SHA-256 of the credential secret, the AK name and the AK's TPM2B_PUBLIC.
//! A context sealed for one purpose is refused by the other step.
//!
//! Replay: the context id is recorded in a [`ReplayCache`] when the step
//! that consumes it starts (before verification, so a failed attempt also
//! burns it) and kept until the context's expiry. **The cache is local to
//! one process**: with several replicas behind a load balancer a context
//! could be used once per replica within its lifetime (default 5 minutes).
//! A deployment that needs strict single use must share the cache (e.g.
//! route by context, or back it with a shared store); the challenge inside
//! is still single-purpose and short-lived.

use crate::error::TpmError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

const VERSION: u8 = 1;
const AAD: &[u8] = b"aver-tpm-service-context-v1";
const KEY_ID_LEN: usize = 8;
/// Largest service_context accepted (base64url characters).
pub const MAX_CONTEXT_LEN: usize = 8192;

/// What a context was sealed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Issued by `aikcert` init, consumed by `request`.
    Attest,
    /// Issued by `enroll`, consumed by `activate`.
    Activate,
}

/// The plaintext of a service context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceContext {
    /// Format version (1).
    pub v: u8,
    /// Random context id (base64url of 16 bytes); the replay-cache key.
    pub id: String,
    /// Step this context is for.
    pub purpose: Purpose,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds); refused when `now >= exp`.
    pub exp: u64,
    /// `attest`: the challenge (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// `activate`: SHA-256 of the credential secret (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
    /// `activate`: the AK name (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_name: Option<String>,
    /// `activate`: the AK's TPM2B_PUBLIC (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_pub: Option<String>,
    /// `activate`: SHA-256 of the EK SPKI DER (base64url), for the AK
    /// certificate and audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_spki_sha256: Option<String>,
}

impl ServiceContext {
    /// A new context with a random id.
    pub fn new(purpose: Purpose, now: u64, ttl_secs: u64) -> Result<Self, TpmError> {
        Ok(Self {
            v: VERSION,
            id: URL_SAFE_NO_PAD.encode(random::<16>()?),
            purpose,
            iat: now,
            exp: now.saturating_add(ttl_secs),
            challenge: None,
            secret_sha256: None,
            ak_name: None,
            ak_pub: None,
            ek_spki_sha256: None,
        })
    }
}

/// `N` bytes from the system CSPRNG.
pub fn random<const N: usize>() -> Result<[u8; N], TpmError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| TpmError::Internal("system RNG failed".into()))?;
    Ok(b)
}

fn key_id(key: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    let d = Sha256::new()
        .chain_update(b"aver-tpm-context-key")
        .chain_update(key)
        .finalize();
    let mut id = [0u8; KEY_ID_LEN];
    for (dst, src) in id.iter_mut().zip(d.iter()) {
        *dst = *src;
    }
    id
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, TpmError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| TpmError::Internal("bad context key".into()))
}

/// Seals a context under `key` (random nonce) and returns the base64url
/// `service_context` string.
pub fn seal(key: &[u8; 32], ctx: &ServiceContext) -> Result<String, TpmError> {
    let mut buf = serde_json::to_vec(ctx).map_err(|e| TpmError::Internal(e.to_string()))?;
    let nonce_bytes = random::<NONCE_LEN>()?;
    aead_key(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(AAD),
            &mut buf,
        )
        .map_err(|_| TpmError::Internal("AEAD seal failed".into()))?;
    let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + buf.len());
    out.push(VERSION);
    out.extend_from_slice(&key_id(key));
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&buf);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Decrypts and authenticates a `service_context`, checks its purpose and
/// expiry. Does **not** touch the replay cache.
pub fn unseal(
    key: &[u8; 32],
    sealed: &str,
    purpose: Purpose,
    now: u64,
) -> Result<ServiceContext, TpmError> {
    let bad = |m: &str| TpmError::ServiceContextInvalid(m.to_string());
    if sealed.len() > MAX_CONTEXT_LEN {
        return Err(bad("too long"));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(sealed.trim_end_matches('='))
        .map_err(|_| bad("not base64url"))?;
    let (version, rest) = raw.split_first().ok_or_else(|| bad("empty"))?;
    if *version != VERSION {
        return Err(bad("unknown version"));
    }
    if rest.len() < KEY_ID_LEN + NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(bad("truncated"));
    }
    let (kid, rest) = rest.split_at(KEY_ID_LEN);
    if kid != key_id(key) {
        return Err(bad("sealed under another service key"));
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad("bad nonce"))?;
    let mut ct = ct.to_vec();
    let plain = aead_key(key)?
        .open_in_place(nonce, Aad::from(AAD), &mut ct)
        .map_err(|_| bad("authentication failed (tampered or wrong key)"))?;
    let ctx: ServiceContext =
        serde_json::from_slice(plain).map_err(|_| bad("unexpected plaintext"))?;
    if ctx.v != VERSION {
        return Err(bad("unknown context version"));
    }
    if ctx.purpose != purpose {
        return Err(bad(&format!(
            "sealed for step {:?}, presented to step {purpose:?}",
            ctx.purpose
        )));
    }
    if now >= ctx.exp {
        return Err(TpmError::ServiceContextExpired {
            expired_at: ctx.exp,
            now,
        });
    }
    Ok(ctx)
}

/// In-memory set of consumed context ids, each kept until its expiry.
/// Thread-safe; share one per process (see the module docs for the
/// multi-replica limitation).
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<HashMap<String, u64>>,
    max_entries: usize,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl ReplayCache {
    /// A cache holding at most `max_entries` live ids. When full (after
    /// purging expired ids) new contexts are refused as replayed rather
    /// than forgetting live ones.
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    /// Records `id` (valid until `exp`) as used. Errors with
    /// [`TpmError::ServiceContextReplayed`] if it was already used (or the
    /// cache is full of live ids).
    pub fn consume(&self, id: &str, exp: u64, now: u64) -> Result<(), TpmError> {
        let mut map = match self.inner.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.contains_key(id) {
            return Err(TpmError::ServiceContextReplayed);
        }
        if map.len() >= self.max_entries {
            map.retain(|_, e| *e > now);
            if map.len() >= self.max_entries {
                return Err(TpmError::ServiceContextReplayed);
            }
        }
        map.insert(id.to_string(), exp);
        Ok(())
    }

    /// Drops ids whose context has expired (they would be refused as
    /// expired anyway). [`ReplayCache::consume`] does this when full; call
    /// it periodically to bound memory.
    pub fn purge(&self, now: u64) {
        if let Ok(mut map) = self.inner.lock() {
            map.retain(|_, e| *e > now);
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];

    fn ctx() -> ServiceContext {
        let mut c = ServiceContext::new(Purpose::Attest, 1000, 300).unwrap();
        c.challenge = Some("abc".into());
        c
    }

    #[test]
    fn round_trip() {
        let c = ctx();
        let s = seal(&KEY, &c).unwrap();
        assert_eq!(unseal(&KEY, &s, Purpose::Attest, 1299).unwrap(), c);
        // two seals of the same context differ (random nonce)
        assert_ne!(s, seal(&KEY, &c).unwrap());
    }

    #[test]
    fn tampered_wrong_key_wrong_purpose_expired() {
        let s = seal(&KEY, &ctx()).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&s).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let t = URL_SAFE_NO_PAD.encode(&raw);
        let e = unseal(&KEY, &t, Purpose::Attest, 1000).unwrap_err();
        assert_eq!(e.code(), "ServiceContextInvalid");
        raw[last] ^= 1;
        raw[30] ^= 0x80; // inside the ciphertext
        let e = unseal(&KEY, &URL_SAFE_NO_PAD.encode(&raw), Purpose::Attest, 1000).unwrap_err();
        assert_eq!(e.code(), "ServiceContextInvalid");
        let e = unseal(&[8u8; 32], &s, Purpose::Attest, 1000).unwrap_err();
        assert_eq!(e.code(), "ServiceContextInvalid");
        let e = unseal(&KEY, &s, Purpose::Activate, 1000).unwrap_err();
        assert_eq!(e.code(), "ServiceContextInvalid");
        let e = unseal(&KEY, &s, Purpose::Attest, 1300).unwrap_err();
        assert_eq!(e.code(), "ServiceContextExpired");
        for junk in ["", "!!!", "AQ", &"A".repeat(MAX_CONTEXT_LEN + 1)] {
            let e = unseal(&KEY, junk, Purpose::Attest, 1000).unwrap_err();
            assert_eq!(e.code(), "ServiceContextInvalid", "{junk:.10}");
        }
    }

    #[test]
    fn replay_cache() {
        let cache = ReplayCache::new(2);
        cache.consume("a", 100, 0).unwrap();
        assert_eq!(
            cache.consume("a", 100, 1).unwrap_err().code(),
            "ServiceContextReplayed"
        );
        cache.consume("b", 50, 1).unwrap();
        // full of live ids: refused
        assert!(cache.consume("c", 100, 10).is_err());
        // after "b" expired there is room again
        cache.consume("c", 100, 60).unwrap();
        assert_eq!(cache.len(), 2);
        cache.purge(1000);
        assert!(cache.is_empty());
    }
}
