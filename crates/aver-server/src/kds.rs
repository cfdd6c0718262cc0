//! VCEKs from AMD's Key Distribution Service, for SevSnpVm requests that
//! carry no certificate chain (clients other than Azure's).
//!
//! The lookup (product, hardware ID, TCB) comes from the core
//! (`evidence::snp::kds`). Answers are kept in the store's shared
//! collateral cache (key `amd/{product}/vcek/{hwid}/{tcb}`), so replicas
//! and restarts reuse them and a chip at a TCB is fetched once. AMD's
//! service rate-limits: after an HTTP 429 (or a failure) no request is
//! sent until its `Retry-After` (or a back-off) has passed, and meanwhile
//! requests that need an uncached VCEK get a 503 `VcekUnavailable` with
//! `Retry-After` — never a stream of calls to AMD. A 404 means "no such
//! chip for this product": the next candidate product is tried.

use std::sync::Mutex;
use std::time::Duration;

use aver_attestation::evidence::snp::kds::VcekLookup;
use axum::http::StatusCode;
use rustls::pki_types::pem::PemObject as _;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::CollateralRecord;

/// Largest VCEK accepted from the service (real ones are about 1.3 KiB).
const MAX_VCEK_BYTES: usize = 16 * 1024;
/// Largest ARK CRL accepted (the core's own limit).
const MAX_CRL_BYTES: usize = aver_attestation::evidence::snp::crl::MAX_CRL_BYTES;
/// Back-off after a failure without `Retry-After`, doubling up to the cap.
const FIRST_BACKOFF_SECS: u64 = 10;
const MAX_BACKOFF_SECS: u64 = 3600;

/// A KDS-compatible service (AMD's is `https://kdsintf.amd.com`).
#[derive(Debug)]
pub struct KdsSource {
    base: String,
    http: reqwest::Client,
    /// (no request before this Unix time, the current back-off in seconds).
    backoff: Mutex<(u64, u64)>,
}

impl KdsSource {
    pub fn new(base_url: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("aver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(KdsSource {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            backoff: Mutex::new((0, 0)),
        })
    }

    fn unavailable(&self, why: &str, retry_after: u64) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "VcekUnavailable",
            format!(
                "the request carries no VcekCertChain and the VCEK for this chip and TCB is not cached: {why}; send the chain (as Azure's clients do) or retry later"
            ),
        )
        .with_retry_after(u32::try_from(retry_after.max(1)).unwrap_or(u32::MAX))
    }

    fn wait_until(&self, now: u64) -> Option<u64> {
        let guard = self.backoff.lock().ok()?;
        guard.0.checked_sub(now).filter(|wait| *wait > 0)
    }

    fn back_off(&self, now: u64, retry_after: Option<u64>) -> u64 {
        let Ok(mut guard) = self.backoff.lock() else {
            return FIRST_BACKOFF_SECS;
        };
        let secs = match retry_after {
            Some(s) => s.clamp(1, MAX_BACKOFF_SECS),
            None => (guard.1.saturating_mul(2)).clamp(FIRST_BACKOFF_SECS, MAX_BACKOFF_SECS),
        };
        *guard = (now.saturating_add(secs), secs);
        secs
    }

    fn succeeded(&self) {
        if let Ok(mut guard) = self.backoff.lock() {
            *guard = (0, 0);
        }
    }

    /// The VCEK (DER) for `lookup`: from the cache, else from the service.
    pub async fn vcek(&self, state: &AppState, lookup: &VcekLookup) -> Result<Vec<u8>, ApiError> {
        let candidates: Vec<(String, String)> = lookup.candidates().collect();
        for (key, _) in &candidates {
            let k = key.clone();
            if let Some(record) = state.blocking(move |s| s.collateral(&k)).await? {
                return Ok(record.body);
            }
        }
        let now = state.clock.now();
        if let Some(wait) = self.wait_until(now) {
            return Err(self.unavailable("AMD's key distribution service is backing off", wait));
        }
        for (key, path) in candidates {
            let url = format!("{}{path}", self.base);
            let response = match self.http.get(&url).send().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%url, error = %e, "VCEK fetch failed");
                    let wait = self.back_off(now, None);
                    return Err(
                        self.unavailable("AMD's key distribution service is unreachable", wait)
                    );
                }
            };
            let status = response.status();
            if status == StatusCode::NOT_FOUND {
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS || !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let wait = self.back_off(now, retry_after);
                tracing::warn!(%url, %status, wait, "VCEK fetch refused; backing off");
                return Err(self.unavailable(
                    &format!("AMD's key distribution service answered {status}"),
                    wait,
                ));
            }
            let body = match read_limited(response, MAX_VCEK_BYTES, "the VCEK").await {
                Ok(body) => body,
                Err(why) => {
                    let wait = self.back_off(now, None);
                    return Err(self.unavailable(&why, wait));
                }
            };
            self.succeeded();
            let expires_at = x509_parser::parse_x509_certificate(&body)
                .ok()
                .map(|(_, c)| c.validity().not_after.timestamp());
            let record = CollateralRecord::new(
                key,
                body.clone(),
                url,
                i64::try_from(now).unwrap_or(i64::MAX),
                expires_at,
            );
            // A cache write failing only costs a later fetch.
            if let Err(e) = state.blocking(move |s| s.put_collateral(&record)).await {
                tracing::warn!(error = %e.message, "caching a VCEK failed");
            }
            return Ok(body);
        }
        Err(ApiError::bad_request(
            "SnpCertificateChainMissing",
            "the request carries no VcekCertChain and AMD's key distribution service has no VCEK for this chip ID and TCB",
        ))
    }

    /// An ARK CRL from `path` (`/vcek/v1/{product}/crl`): `None` when the
    /// service has none there (404). Background use only: it waits out a
    /// back-off the VCEK route is in, and a failure here does not start one
    /// (the CRL refresher retries on its own schedule), so a CRL route that
    /// fails never delays a request's VCEK.
    pub async fn fetch_crl(&self, path: &str, now: u64) -> Result<Option<Vec<u8>>, String> {
        if let Some(wait) = self.wait_until(now) {
            return Err(format!(
                "AMD's key distribution service is backing off for {wait} s more"
            ));
        }
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let body = read_limited(response, MAX_CRL_BYTES, "the CRL").await?;
        // KDS serves DER; a mirror may serve PEM.
        Ok(Some(
            rustls::pki_types::CertificateRevocationListDer::from_pem_slice(&body)
                .map(|der| der.to_vec())
                .unwrap_or(body),
        ))
    }

    /// The base URL, for the source of stored records.
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// A VCEK for `lookup` from the shared collateral cache (fetched earlier
/// or imported), without asking any service.
pub async fn cached_vcek(
    state: &AppState,
    lookup: &VcekLookup,
) -> Result<Option<Vec<u8>>, ApiError> {
    for (key, _) in lookup.candidates() {
        if let Some(record) = state.blocking(move |s| s.collateral(&key)).await? {
            return Ok(Some(record.body));
        }
    }
    Ok(None)
}

async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading {what} failed: {e}"))?
    {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(format!("{what} answer is over {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
