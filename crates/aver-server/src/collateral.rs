//! The service's DCAP collateral: the store's shared collateral cache
//! (one content-addressed record per TEE and FMSPC, written by `aver collateral
//! import` or by the PCCS source, read by every replica) loaded into the
//! verifiers' in-memory [`CollateralCache`], and an optional PCCS / Intel
//! PCS source that fetches what quotes asked for and refreshes entries
//! ahead of their nextUpdate — in the background, never on a request's
//! path: a request only ever reads the in-memory cache. AMD's ARK CRLs
//! (`amd/crl/...`, [`crate::snp_crl`]) are loaded by the same pass.

use std::collections::HashMap;
use std::time::Duration;

use aver_attestation::dcap::collateral::{
    CollateralBundle, CollateralParts, VerifiedCollateral, verify_collateral,
};
use aver_attestation::dcap::{CollateralError, TeeType, TrustAnchors};
use aver_attestation::{VerificationTime, Verifiers};

use crate::store::{CollateralRecord, Store, StoreError};

/// Store keys of SGX collateral bundles: this prefix, the FMSPC (hex,
/// uppercase), `/` and the TCB evaluation data number. (Bundles stored
/// before TCB baselines existed have no number in their key; they still
/// load.)
pub const KEY_PREFIX: &str = "intel/sgx/collateral/";

/// Store keys of TDX collateral bundles (TCB info `id` TDX, `TD_QE`
/// identity): this prefix, the FMSPC and the number. A platform family has
/// both, so they must not share a key.
pub const TDX_KEY_PREFIX: &str = "intel/tdx/collateral/";

/// The store key of a verified bundle: its TEE's prefix, its FMSPC and its
/// TCB evaluation data number, so that every number a policy may pin as
/// its baseline is kept beside the newest.
pub fn key_of(c: &VerifiedCollateral) -> String {
    let prefix = match aver_attestation::dcap::collateral::cache::tee_of(c) {
        TeeType::Tdx => TDX_KEY_PREFIX,
        TeeType::Sgx => KEY_PREFIX,
    };
    format!(
        "{prefix}{}/{}",
        hex::encode_upper(c.tcb_info.fmspc),
        c.tcb_info.tcb_evaluation_data_number
    )
}

/// Verifies `bundle` at `time` and stores it under its FMSPC as dcap-qvl
/// bundle JSON (the exact signed bytes kept), replacing what was there.
pub fn import(
    store: &dyn Store,
    roots: &TrustAnchors,
    bundle: &CollateralBundle,
    source: &str,
    time: VerificationTime,
    now: i64,
) -> Result<VerifiedCollateral, String> {
    let verified =
        verify_collateral(bundle, roots, time).map_err(|e| format!("{}: {e}", e.code()))?;
    let body = bundle.to_dcap_qvl_json().map_err(|e| e.to_string())?;
    let record = CollateralRecord::new(
        key_of(&verified),
        body,
        source,
        now,
        i64::try_from(verified.valid_until).ok(),
    );
    store.put_collateral(&record).map_err(|e| e.to_string())?;
    Ok(verified)
}

/// What [`load_from_store`] already loaded: key → content address.
pub type Seen = HashMap<String, String>;

/// Loads every stored bundle that is new or changed since `seen` into the
/// verifiers' cache, verified at `time` (a bundle that does not verify
/// is skipped and logged, and tried again when it changes). Returns how
/// many were loaded.
pub fn load_from_store(
    store: &dyn Store,
    verifiers: &Verifiers,
    time: VerificationTime,
    seen: &mut Seen,
) -> Result<usize, StoreError> {
    let mut loaded = 0;
    for item in store.collateral_index()? {
        let crl = item.key.starts_with(crate::snp_crl::KEY_PREFIX);
        let ours = crl || item.key.starts_with(KEY_PREFIX) || item.key.starts_with(TDX_KEY_PREFIX);
        if !ours || seen.get(&item.key) == Some(&item.sha256) {
            continue;
        }
        let Some(record) = store.collateral(&item.key)? else {
            continue;
        };
        seen.insert(record.key.clone(), record.sha256.clone());
        if crl {
            if crate::snp_crl::load_record(verifiers, &record) {
                loaded += 1;
            }
            continue;
        }
        let verified = CollateralBundle::from_dcap_qvl_json(&record.body)
            .and_then(|b| verify_collateral(&b, verifiers.dcap.roots(), time));
        match verified {
            Ok(c) => {
                if verifiers.collateral.insert(c) {
                    loaded += 1;
                }
            }
            Err(e) => tracing::warn!(
                key = %record.key,
                code = e.code(),
                "stored collateral does not verify: {e}"
            ),
        }
    }
    Ok(loaded)
}

/// An Intel PCS v4-compatible collateral source (Intel's PCS, or a
/// PCCS): `/sgx/certification/v4/{tcb?fmspc=, qe/identity,
/// pckcrl?ca=, rootcacrl}` under a base URL, with bounded time-outs; for
/// TDX, the TCB info and the TD_QE identity from
/// `/tdx/certification/v4/{tcb?fmspc=, qe/identity}` (the CRLs are the
/// same PCK and root CA CRLs, served under `/sgx/`).
#[derive(Debug, Clone)]
pub struct PccsSource {
    base: String,
    client: reqwest::Client,
}

/// Why fetching failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error(transparent)]
    Collateral(#[from] CollateralError),
}

/// Largest answer read from a collateral source.
const MAX_ANSWER: usize = 1024 * 1024;

impl PccsSource {
    /// `base`, e.g. `https://api.trustedservices.intel.com` or a PCCS's
    /// `https://pccs.example:8081`; each request gives up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, String> {
        Self::with_ca(base, timeout, None)
    }

    /// [`PccsSource::new`] trusting only the CA certificates in `ca_pem`
    /// (PEM) instead of the system's roots: a PCCS commonly runs with a
    /// self-signed or private-CA certificate.
    pub fn with_ca(base: &str, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(pem) = ca_pem {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the collateral source's CA file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the collateral source's CA file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the collateral source's CA file holds no certificate".into());
            }
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder = builder.tls_backend_preconfigured(tls);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(PccsSource {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    async fn get(
        &self,
        path: &str,
        chain_headers: &[&str],
    ) -> Result<(Vec<u8>, Vec<u8>), FetchError> {
        let url = format!("{}{path}", self.base);
        let http = |reason: String| FetchError::Http {
            url: url.clone(),
            reason,
        };
        let mut answer = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| http(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(http(format!("HTTP {}", answer.status())));
        }
        let mut chain = Vec::new();
        for name in chain_headers {
            if let Some(v) = answer.headers().get(*name) {
                chain = percent_decode(v.as_bytes());
                break;
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(|e| http(e.to_string()))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(http(format!("the answer is over {MAX_ANSWER} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, chain))
    }

    /// Fetches the SGX bundle for `fmspc` whose PCK CRL is the `ca`
    /// (`processor` or `platform`) CA's.
    pub async fn fetch(&self, fmspc: &[u8; 6], ca: &str) -> Result<CollateralBundle, FetchError> {
        self.fetch_for(TeeType::Sgx, fmspc, ca, None).await
    }

    /// Fetches the bundle of `tee` (SGX, or TDX: TDX TCB info and TD_QE
    /// identity) for `fmspc` whose PCK CRL is the `ca` CA's: the source's
    /// current TCB info and QE identity, or those of TCB evaluation data
    /// number `baseline` (PCS v4's `tcbEvaluationDataNumber=`).
    pub async fn fetch_for(
        &self,
        tee: TeeType,
        fmspc: &[u8; 6],
        ca: &str,
        baseline: Option<u32>,
    ) -> Result<CollateralBundle, FetchError> {
        let fmspc = hex::encode_upper(fmspc);
        let (and_number, number) = match baseline {
            Some(n) => (
                format!("&tcbEvaluationDataNumber={n}"),
                format!("?tcbEvaluationDataNumber={n}"),
            ),
            None => (String::new(), String::new()),
        };
        let kind = match tee {
            TeeType::Sgx => "sgx",
            TeeType::Tdx => "tdx",
        };
        let (tcb, tcb_chain) = self
            .get(
                &format!("/{kind}/certification/v4/tcb?fmspc={fmspc}{and_number}"),
                &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            )
            .await?;
        let (qe, qe_chain) = self
            .get(
                &format!("/{kind}/certification/v4/qe/identity{number}"),
                &["SGX-Enclave-Identity-Issuer-Chain"],
            )
            .await?;
        let (pck_crl, pck_chain) = self
            .get(
                &format!("/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"),
                &["SGX-PCK-CRL-Issuer-Chain"],
            )
            .await?;
        let (root_crl, _) = self.get("/sgx/certification/v4/rootcacrl", &[]).await?;
        Ok(CollateralBundle::from_parts(&CollateralParts {
            tcb_info_body: &tcb,
            tcb_info_issuer_chain: &tcb_chain,
            qe_identity_body: &qe,
            qe_identity_issuer_chain: &qe_chain,
            pck_crl: &pck_crl,
            pck_crl_issuer_chain: &pck_chain,
            root_ca_crl: &root_crl,
        })?)
    }
}

/// Decodes the URL-encoded PEM of an issuer-chain header.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = bytes.iter().copied();
    while let Some(b) = i.next() {
        if b == b'%' {
            let pair = (i.next(), i.next());
            let hexval = |c: Option<u8>| c.and_then(|c| (c as char).to_digit(16));
            match (hexval(pair.0), hexval(pair.1)) {
                (Some(h), Some(l)) => out.push(u8::try_from(h * 16 + l).unwrap_or(b'?')),
                _ => out.push(b'?'),
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// What the refresher keeps current: a TEE's FMSPC, and either its
/// current collateral (`None`) or a TCB evaluation data number a policy
/// pinned as its baseline.
type Entry = (TeeType, [u8; 6], Option<u32>);

/// The background source's state: when each TEE's FMSPC was last tried,
/// so that a source that is down is retried with a pause, not hammered.
#[derive(Debug)]
pub struct Refresher {
    retry_secs: i64,
    last_try: HashMap<Entry, i64>,
    /// Entry → CA kind, for refreshing what was fetched once.
    known: HashMap<Entry, &'static str>,
}

/// Refresh an entry this long before its nextUpdate.
const REFRESH_AHEAD_SECS: u64 = 24 * 3600;

impl Refresher {
    /// A refresher that waits `retry` before trying an FMSPC again.
    pub fn new(retry: Duration) -> Self {
        Refresher {
            retry_secs: i64::try_from(retry.as_secs()).unwrap_or(60),
            last_try: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// One round: fetch what quotes missed and what expires within a day,
    /// verify it, store it (shared with every replica) and cache it.
    pub async fn round(
        &mut self,
        source: &PccsSource,
        store: std::sync::Arc<dyn Store>,
        verifiers: &Verifiers,
        now: u64,
    ) {
        for miss in verifiers.collateral.take_misses() {
            if self.known.len() < aver_attestation::dcap::collateral::cache::MAX_ENTRIES {
                self.known
                    .entry((miss.tee, miss.fmspc, miss.baseline))
                    .or_insert(miss.ca);
            }
        }
        let mut held: HashMap<Entry, u64> = HashMap::new();
        // What is cached (imported, or loaded from the store after a
        // restart) is refreshed too, not only what quotes missed: the
        // newest bundle as the current one, and every number a policy
        // asked for by that number.
        for h in verifiers.collateral.list() {
            let number = Some(h.tcb_evaluation_data_number);
            held.insert((h.tee, h.fmspc, number), h.valid_until);
            if h.newest {
                held.insert((h.tee, h.fmspc, None), h.valid_until);
                if self.known.len() < aver_attestation::dcap::collateral::cache::MAX_ENTRIES {
                    self.known.entry((h.tee, h.fmspc, None)).or_insert(h.ca);
                }
            }
        }
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let due: Vec<(Entry, &'static str)> = self
            .known
            .iter()
            .filter(|(f, _)| match held.get(*f) {
                Some(until) => until.saturating_sub(now) < REFRESH_AHEAD_SECS,
                None => true,
            })
            .filter(|(f, _)| {
                self.last_try
                    .get(*f)
                    .is_none_or(|t| now_i.saturating_sub(*t) >= self.retry_secs)
            })
            .map(|(f, c)| (*f, *c))
            .collect();
        for ((tee, fmspc, baseline), ca) in due {
            self.last_try.insert((tee, fmspc, baseline), now_i);
            let tee_name = match tee {
                TeeType::Sgx => "SGX",
                TeeType::Tdx => "TDX",
            };
            let bundle = match source.fetch_for(tee, &fmspc, ca, baseline).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(tee = tee_name, fmspc = %hex::encode_upper(fmspc), "collateral fetch failed: {e}");
                    continue;
                }
            };
            let roots = verifiers.dcap.roots().clone();
            let store = store.clone();
            let url = source.base.clone();
            let time = VerificationTime::from_unix_seconds(now);
            let stored = tokio::task::spawn_blocking(move || {
                import(store.as_ref(), &roots, &bundle, &url, time, now_i)
            })
            .await;
            match stored {
                Ok(Ok(c)) => {
                    let number = c.tcb_info.tcb_evaluation_data_number;
                    if baseline.is_some_and(|n| n != number) {
                        tracing::warn!(tee = tee_name, fmspc = %hex::encode_upper(fmspc), asked = ?baseline, got = number, "the collateral source answered with another TCB evaluation data number");
                    }
                    verifiers.collateral.insert(c);
                    tracing::info!(tee = tee_name, fmspc = %hex::encode_upper(fmspc), tcb_evaluation_data_number = number, "collateral fetched");
                }
                Ok(Err(e)) => {
                    tracing::warn!(tee = tee_name, fmspc = %hex::encode_upper(fmspc), "fetched collateral refused: {e}")
                }
                Err(e) => tracing::warn!("collateral task failed: {e}"),
            }
        }
    }
}
