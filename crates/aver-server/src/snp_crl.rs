//! AMD's ARK CRLs in the service: fetched from the KDS in the background,
//! shared through the store, held by the SEV-SNP verifier.
//!
//! With `--amd-kds-url`, each replica asks the KDS for the CRL of every
//! product's ARK on both routes ([`ROUTES`]) at start, again when one is
//! within a day of its nextUpdate, and every [`RECHECK_SECS`] in case AMD
//! revoked something early. A CRL that verifies to a trusted ARK is held
//! (slot = its store key) and written to the store's shared collateral
//! cache, from which every replica loads it on its refresh — also what
//! `aver collateral import` writes for air-gapped services. Nothing here
//! runs on a request's path: a request reads only the held CRLs.
//!
//! A chain whose ARK has a CRL must be inside that CRL's window and not
//! revoked by it. A chain whose ARK has none verifies without a revocation
//! check, unless `require_snp_crl` is set; then it is refused
//! (`CollateralMissing`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aver_attestation::Verifiers;
use aver_attestation::evidence::snp::CrlInfo;

use crate::kds::KdsSource;
use crate::store::{CollateralRecord, Store};

/// Store keys of ARK CRLs: this prefix, then `vcek/{product}` or
/// `vlek/{product}` (lowercase), the route the CRL came from.
pub const KEY_PREFIX: &str = "amd/crl/";

/// The KDS routes asked: (store key suffix, path).
pub const ROUTES: [(&str, &str); 6] = [
    ("vcek/milan", "/vcek/v1/Milan/crl"),
    ("vcek/genoa", "/vcek/v1/Genoa/crl"),
    ("vcek/turin", "/vcek/v1/Turin/crl"),
    ("vlek/milan", "/vlek/v1/Milan/crl"),
    ("vlek/genoa", "/vlek/v1/Genoa/crl"),
    ("vlek/turin", "/vlek/v1/Turin/crl"),
];

/// Ask again this often even when the held CRL is far from its nextUpdate:
/// AMD may publish a revocation before then.
pub const RECHECK_SECS: i64 = 6 * 3600;
/// Ask again this long before the held CRL's nextUpdate.
const REFRESH_AHEAD_SECS: i64 = 24 * 3600;

/// The store key (and verifier slot) of a route.
pub fn key(suffix: &str) -> String {
    format!("{KEY_PREFIX}{suffix}")
}

/// The store key an imported CRL goes under: its ARK's VCEK route
/// (`ARK-Milan` → `amd/crl/vcek/milan`), so that a later fetch from the
/// KDS replaces it only with a CRL issued no earlier.
pub fn import_key(issuer_cn: &str) -> String {
    let product = issuer_cn
        .strip_prefix("ARK-")
        .unwrap_or(issuer_cn)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if product.is_empty() {
        return key("import/ark");
    }
    key(&format!("vcek/{product}"))
}

/// Holds a stored CRL record in the verifier (called by the collateral
/// loader for keys under [`KEY_PREFIX`]). A record that does not verify,
/// or is older than what its slot holds, is logged and left out.
pub fn load_record(verifiers: &Verifiers, record: &CollateralRecord) -> bool {
    let before = verifiers.snp.crls().get(&record.key);
    match verifiers.snp.install_crl(&record.key, &record.body) {
        // This replica's own fetch, back from the store: already said.
        Ok(info) if before.as_ref() == Some(&info) => {
            tracing::debug!(slot = %info.slot, "SEV-SNP ARK CRL already held");
            true
        }
        Ok(info) => {
            tracing::info!(
                slot = %info.slot,
                ark = %info.ark,
                revoked = info.revoked,
                next_update = info.next_update,
                "SEV-SNP ARK CRL loaded"
            );
            true
        }
        Err(e) => {
            tracing::warn!(key = %record.key, "stored ARK CRL not held: {e}");
            false
        }
    }
}

/// The background fetcher's memory: when each route was last asked, and
/// when it last answered.
#[derive(Debug)]
pub struct CrlRefresher {
    retry_secs: i64,
    last_try: HashMap<&'static str, i64>,
    last_answer: HashMap<&'static str, i64>,
}

impl CrlRefresher {
    /// A refresher that waits `retry` before asking a failing route again.
    pub fn new(retry: Duration) -> Self {
        CrlRefresher {
            retry_secs: i64::try_from(retry.as_secs()).unwrap_or(60),
            last_try: HashMap::new(),
            last_answer: HashMap::new(),
        }
    }

    /// Whether `suffix`'s route is due at `now`.
    fn due(&self, suffix: &'static str, held: Option<&CrlInfo>, now: i64) -> bool {
        if self
            .last_try
            .get(suffix)
            .is_some_and(|t| now.saturating_sub(*t) < self.retry_secs)
        {
            return false;
        }
        let Some(answered) = self.last_answer.get(suffix) else {
            return true;
        };
        if now.saturating_sub(*answered) >= RECHECK_SECS {
            return true;
        }
        held.is_some_and(|h| h.next_update.saturating_sub(now) < REFRESH_AHEAD_SECS)
    }

    /// One round: ask every due route, hold and store what verifies.
    pub async fn round(
        &mut self,
        kds: &KdsSource,
        store: Arc<dyn Store>,
        verifiers: &Arc<Verifiers>,
        now: u64,
    ) {
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        for (suffix, path) in ROUTES {
            let slot = key(suffix);
            if !self.due(suffix, verifiers.snp.crls().get(&slot).as_ref(), now_i) {
                continue;
            }
            self.last_try.insert(suffix, now_i);
            let der = match kds.fetch_crl(path, now).await {
                Ok(Some(der)) => der,
                Ok(None) => {
                    tracing::debug!(path, "the KDS has no CRL at this route");
                    self.last_answer.insert(suffix, now_i);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(path, "ARK CRL fetch failed: {e}");
                    continue;
                }
            };
            self.last_answer.insert(suffix, now_i);
            let verifiers = verifiers.clone();
            let store = store.clone();
            let source = format!("{}{path}", kds.base());
            let held = tokio::task::spawn_blocking(move || {
                let info = verifiers.snp.install_crl(&slot, &der)?;
                let record =
                    CollateralRecord::new(slot, der, source, now_i, Some(info.next_update));
                // Storing only shares it; the CRL is held already.
                if let Err(e) = store.put_collateral(&record) {
                    tracing::warn!(error = %e, "storing an ARK CRL failed");
                }
                Ok::<_, aver_attestation::evidence::snp::SnpError>(info)
            })
            .await;
            match held {
                Ok(Ok(info)) => tracing::info!(
                    path,
                    ark = %info.ark,
                    revoked = info.revoked,
                    next_update = info.next_update,
                    "SEV-SNP ARK CRL fetched"
                ),
                Ok(Err(e)) => tracing::warn!(path, "fetched ARK CRL refused: {e}"),
                Err(e) => tracing::warn!("ARK CRL task failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(next_update: i64) -> CrlInfo {
        CrlInfo {
            slot: key("vcek/milan"),
            ark: "AMD ARK-Milan".into(),
            this_update: 0,
            next_update,
            revoked: 0,
        }
    }

    #[test]
    fn routes_are_asked_at_start_on_recheck_and_ahead_of_next_update() {
        let mut r = CrlRefresher::new(Duration::from_secs(60));
        let day = 24 * 3600;
        assert!(r.due("vcek/milan", None, 1000));
        r.last_try.insert("vcek/milan", 1000);
        // A failure: not again within the retry pause.
        assert!(!r.due("vcek/milan", None, 1059));
        assert!(r.due("vcek/milan", None, 1060));
        // An answer: not again until the recheck, or a day before nextUpdate.
        r.last_answer.insert("vcek/milan", 1000);
        let held = info(1000 + 10 * day);
        assert!(!r.due("vcek/milan", Some(&held), 1000 + RECHECK_SECS - 1));
        assert!(r.due("vcek/milan", Some(&held), 1000 + RECHECK_SECS));
        let soon = info(1000 + day);
        assert!(r.due("vcek/milan", Some(&soon), 1061));
        // A 404 answer (nothing held): asked again only at the recheck.
        assert!(!r.due("vcek/milan", None, 1061));
    }

    #[test]
    fn imported_crls_go_to_their_arks_vcek_route() {
        assert_eq!(import_key("ARK-Milan"), "amd/crl/vcek/milan");
        assert_eq!(import_key("ARK-Turin"), "amd/crl/vcek/turin");
        assert_eq!(import_key("My/Lab ARK"), "amd/crl/vcek/mylabark");
        assert_eq!(import_key("//"), "amd/crl/import/ark");
    }
}
