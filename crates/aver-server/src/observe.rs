//! What an operator sees: a request id on every response and log line, one
//! access-log line per request, Prometheus metrics, and the health probes
//! (`/healthz`, `/readyz`) that load balancers and Kubernetes call.
//!
//! Metrics go through the `metrics` facade into one process-wide
//! Prometheus recorder (`metrics-exporter-prometheus`, which owns the
//! exposition format). They are served on their own plain-HTTP listener
//! (`--metrics-listen`), not on the attestation port: a scraper needs no
//! admin credential and no TLS client set-up, the listener can be bound to
//! a private interface or loopback, and scrapes never take a slot of the
//! attestation port's connection cap. Labels are bounded: a route class
//! (never the raw path), an attestation type from the registry, a provider
//! name (created by operators) and an error code from `docs/errors.md`.
//!
//! Nothing here logs evidence bytes, runtime data, policies, admin keys or
//! private keys: the access log carries the method, the route class, the
//! status, the error code and the time taken.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::state::AppState;

/// The response header carrying the request id (Azure's name for it).
pub const REQUEST_ID_HEADER: &str = "x-ms-request-id";

/// Longest request id accepted from a client (a proxy's id is reused so
/// logs correlate across hops); longer or odd ones are replaced.
const MAX_CLIENT_REQUEST_ID: usize = 64;

/// The error code of an error response, left in its extensions by
/// [`crate::error::ApiError`] for the access log and the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The attestation type and provider of an attestation request, left in the
/// response's extensions by the handler.
#[derive(Debug, Clone)]
pub struct AttestationLabels {
    pub kind: &'static str,
    pub provider: String,
}

/// Health the store loop reports, read by `/readyz` and the metrics.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// Unix seconds of the last successful read of the store (0: never).
    last_ok: AtomicU64,
    /// Unix seconds of the first failure since the last success (0: none).
    failing_since: AtomicU64,
    /// The store generation the providers in memory were loaded from.
    generation: AtomicI64,
}

impl StoreHealth {
    pub fn ok(&self, now: u64, generation: i64) {
        self.last_ok.store(now, Ordering::Relaxed);
        self.failing_since.store(0, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Relaxed);
        metrics::gauge!("aver_store_reachable").set(1.0);
        metrics::gauge!("aver_store_last_success_timestamp_seconds").set(now as f64);
    }

    pub fn failed(&self, now: u64) {
        let _ = self
            .failing_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        metrics::gauge!("aver_store_reachable").set(0.0);
        metrics::counter!("aver_store_errors_total").increment(1);
    }

    pub fn last_ok(&self) -> u64 {
        self.last_ok.load(Ordering::Relaxed)
    }

    pub fn failing_since(&self) -> Option<u64> {
        match self.failing_since.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
}

/// How often histogram samples are folded into their buckets (see
/// [`prometheus`]).
pub const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The process-wide Prometheus recorder, installed on first use. Every
/// service in the process (tests run several) records into it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Histogram samples wait in the recorder until they are folded
        // into their buckets, which only a render (a scrape of /metrics)
        // or an upkeep does: without this thread, a service nobody scrapes
        // would keep every sample of every request (~100 MiB after 10
        // minutes at 4,000 attestations/s, seen in scripts/load.sh's soak).
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("aver-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("could not start the metrics upkeep thread: {e}");
        }
        // Another recorder may already be installed (an embedding
        // application's): then ours renders nothing, which is documented.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// A bounded label for a path: the route, never the raw path (which an
/// attacker chooses).
pub fn route_class(path: &str) -> &'static str {
    let mut rest = path.trim_start_matches('/');
    if let Some(after) = rest.strip_prefix("providers/") {
        rest = after.split_once('/').map(|(_, r)| r).unwrap_or("");
    }
    let first = rest.split(['/', '?']).next().unwrap_or("");
    match first {
        "attest" => "attest",
        "certs" => "certs",
        ".well-known" => "openid-configuration",
        "health" | "healthz" | "readyz" => "health",
        "policies" => "policies",
        f if f.starts_with("certificates") => "certificates",
        "audit" => "audit",
        // `/keys`, `/keys:rotate`, `/keys:retire`.
        "keys" | "keys:rotate" | "keys:retire" => "keys",
        "openapi.json" => "openapi",
        "tcbbaselines" => "tcbbaselines",
        _ => "other",
    }
}

/// A client's request id when it is short and plain, else a fresh one.
fn request_id(req: &Request) -> HeaderValue {
    for name in [REQUEST_ID_HEADER, "x-request-id"] {
        if let Some(v) = req.headers().get(name) {
            let ok = v.len() <= MAX_CLIENT_REQUEST_ID
                && !v.is_empty()
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if ok {
                return v.clone();
            }
        }
    }
    let mut raw = [0u8; 16];
    // A request id is not a secret; on the (theoretical) RNG failure the
    // zero id still tells requests apart by time in the log.
    let _ = aws_lc_rs::rand::fill(&mut raw);
    HeaderValue::from_str(&hex::encode(raw)).unwrap_or(HeaderValue::from_static("0"))
}

/// Middleware around the whole router: the request id (header and log
/// span), the access-log line and the request metrics.
pub async fn request_context(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&req);
    let route = route_class(req.uri().path());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or(""),
        method = %method,
        route
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = response.status();
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    response
        .headers_mut()
        .insert(HeaderName::from_static(REQUEST_ID_HEADER), id);

    let outcome = code.unwrap_or(if status.is_success() { "ok" } else { "error" });
    metrics::counter!(
        "aver_http_requests_total",
        "route" => route,
        "method" => method.as_str().to_owned(),
        "status" => status.as_str().to_owned(),
    )
    .increment(1);
    cached_histogram(
        "route",
        route,
        || metrics::histogram!("aver_http_request_duration_seconds", "route" => route),
    )
    .record(elapsed);
    if let Some(labels) = response.extensions().get::<AttestationLabels>() {
        metrics::counter!(
            "aver_attestations_total",
            "type" => labels.kind,
            "provider" => labels.provider.clone(),
            "outcome" => outcome,
        )
        .increment(1);
    }
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                code = outcome,
                elapsed_ms = elapsed * 1e3,
                "request"
            );
        } else {
            tracing::info!(
                status = status.as_u16(),
                code = outcome,
                elapsed_ms = elapsed * 1e3,
                "request"
            );
        }
    });
    response
}

/// Records the time one stage of an attestation took.
pub fn stage(kind: &'static str, stage: &'static str, seconds: f64) {
    cached_histogram(kind, stage, || {
        metrics::histogram!(
            "aver_attestation_stage_duration_seconds",
            "type" => kind,
            "stage" => stage,
        )
    })
    .record(seconds);
}

/// A histogram handle for two static labels, looked up once per thread.
/// `histogram!` with labels builds and hashes its key and searches the
/// registry on every call; an attestation records five of them, which a
/// profile showed as ~1% of its CPU. The labels are string constants of
/// the code (types, stages, route classes), so the cache stays small.
fn cached_histogram(
    a: &'static str,
    b: &'static str,
    register: impl FnOnce() -> metrics::Histogram,
) -> metrics::Histogram {
    type Cache = Vec<(&'static str, &'static str, metrics::Histogram)>;
    thread_local! {
        static CACHE: std::cell::RefCell<Cache> = const { std::cell::RefCell::new(Vec::new()) };
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, _, h)) = cache.iter().find(|(x, y, _)| *x == a && *y == b) {
            return h.clone();
        }
        let h = register();
        cache.push((a, b, h.clone()));
        h
    })
}

/// `GET /healthz`: the process is alive and answering. Nothing else is
/// checked: a liveness probe that fails on a database outage would restart
/// every replica at once for no gain.
pub async fn healthz() -> Response {
    crate::routes::json_body(&crate::openapi::HealthResponse {
        status: "alive".into(),
    })
}

/// `GET /readyz`: this replica can serve attestations. Ready when every
/// provider in memory has a key that signs now and providers were loaded; the
/// store's reachability is reported but an outage alone does not make the
/// replica unready, because attestations are served from memory (the
/// management API answers 503 meanwhile).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let now = state.clock.now();
    let (providers, without_key) = match state.providers.read() {
        Ok(p) => (
            p.by_name.len(),
            p.by_name
                .values()
                .filter(|p| p.keys.signing(now).is_none())
                .map(|p| p.name.clone())
                .collect::<Vec<_>>(),
        ),
        Err(_) => (0, vec!["(providers unavailable)".to_string()]),
    };
    let failing = state.store_health.failing_since();
    let store = crate::openapi::StoreHealth {
        reachable: failing.is_none(),
        last_success: state.store_health.last_ok(),
        failing_for_seconds: failing.map(|since| now.saturating_sub(since)),
    };
    let ready = providers > 0 && without_key.is_empty();
    let body = crate::openapi::ReadinessResponse {
        status: if ready { "ready" } else { "not ready" }.into(),
        providers: providers as u64,
        providers_without_signing_key: without_key,
        store,
        cpu_pool: crate::openapi::CpuPoolHealth {
            running: state.cpu.running() as u64,
            capacity: state.cpu.limits().max_concurrent as u64,
            queued: state.cpu.queued() as u64,
            queue_capacity: state.cpu.limits().max_queued as u64,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, crate::routes::json_body(&body)).into_response()
}

/// Gauges read at scrape time: the CPU pool, key ages, process RSS and CPU.
fn refresh_gauges(state: &AppState) {
    let limits = state.cpu.limits();
    metrics::gauge!("aver_cpu_pool_capacity").set(limits.max_concurrent as f64);
    metrics::gauge!("aver_cpu_pool_running").set(state.cpu.running() as f64);
    metrics::gauge!("aver_cpu_pool_queue_capacity").set(limits.max_queued as f64);
    metrics::gauge!("aver_cpu_pool_queued").set(state.cpu.queued() as f64);
    metrics::gauge!("aver_store_generation")
        .set(state.store_health.generation.load(Ordering::Relaxed) as f64);
    let now = state.clock.now();
    let last = state.store_health.last_ok();
    if last > 0 {
        metrics::gauge!("aver_store_refresh_lag_seconds").set(now.saturating_sub(last) as f64);
    }
    if let Ok(providers) = state.providers.read() {
        for p in providers.by_name.values() {
            if let Some(created) = p.keys.signing_times(now).map(|t| t.created_at) {
                metrics::gauge!(
                    "aver_signing_key_age_seconds",
                    "provider" => p.name.clone(),
                )
                .set(now.saturating_sub(u64::try_from(created).unwrap_or(0)) as f64);
            }
        }
    }
    collateral_gauges(state);
    process_gauges();
}

/// When what the verifiers hold stops being current: the newest DCAP
/// collateral of each FMSPC and every SEV-SNP ARK CRL. Past that time
/// their quotes and chains are refused (`CollateralExpired`), so an alert
/// should fire while the background refresh still has time to fix it.
fn collateral_gauges(state: &AppState) {
    use aver_attestation::dcap::TeeType;
    for held in state.verifiers.collateral.list() {
        if !held.newest {
            continue;
        }
        let tee = match held.tee {
            TeeType::Sgx => "SGX",
            TeeType::Tdx => "TDX",
        };
        metrics::gauge!(
            "aver_dcap_collateral_expiry_timestamp_seconds",
            "tee" => tee,
            "fmspc" => hex::encode_upper(held.fmspc),
        )
        .set(held.valid_until as f64);
    }
    for crl in state.verifiers.snp.crls().list() {
        metrics::gauge!(
            "aver_snp_crl_next_update_timestamp_seconds",
            "slot" => crl.slot,
            "ark" => crl.ark,
        )
        .set(crl.next_update as f64);
    }
}

/// Resident memory, CPU seconds and open file descriptors from `/proc`
/// (Linux; elsewhere these gauges are absent).
fn process_gauges() {
    // Pages of 4 KiB: the page size on x86_64 and most aarch64 kernels.
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(rss_pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
    {
        metrics::gauge!("process_resident_memory_bytes").set(rss_pages * 4096.0);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may contain spaces).
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
            // utime and stime are fields 14 and 15 of stat; after ')' the
            // first field is 3 (state), so they sit at indices 11 and 12.
            if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
                metrics::gauge!("process_cpu_seconds_total").set((u + s) / 100.0);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(dir.count() as f64);
    }
}

/// `GET /metrics` in Prometheus' text format.
pub async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    refresh_gauges(&state);
    let body = prometheus().render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The router of the metrics listener: `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(state: AppState) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without upkeep, every histogram sample stays in memory until a
    /// scrape: the recorder must come with the thread that folds them.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_recorder_comes_with_its_upkeep_thread() {
        let _ = prometheus();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .map(|tasks| {
                    tasks
                        .filter_map(Result::ok)
                        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                        .map(|n| n.trim().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        // A new thread names itself once it runs: until then the kernel
        // shows its parent's name, so wait (bounded) for the rename. The
        // kernel keeps 15 bytes of a thread's name.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = names();
        while !seen.iter().any(|n| n == "aver-metrics-up") && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            seen = names();
        }
        assert!(
            seen.iter().any(|n| n == "aver-metrics-up"),
            "threads: {seen:?}"
        );
    }

    #[test]
    fn route_classes_are_bounded() {
        assert_eq!(route_class("/attest/SgxEnclave"), "attest");
        assert_eq!(route_class("/providers/acme/attest/Tpm"), "attest");
        assert_eq!(route_class("/certs"), "certs");
        assert_eq!(route_class("/keys:rotate"), "keys");
        assert_eq!(route_class("/providers/acme/keys:retire"), "keys");
        assert_eq!(route_class("/openapi.json"), "openapi");
        assert_eq!(
            route_class("/.well-known/openid-configuration"),
            "openid-configuration"
        );
        assert_eq!(route_class("/certificates:add"), "certificates");
        assert_eq!(route_class("/policies/SgxEnclave"), "policies");
        assert_eq!(route_class("/x/../../etc/passwd"), "other");
        assert_eq!(route_class("/providers"), "other");
        assert_eq!(route_class(""), "other");
    }
}
