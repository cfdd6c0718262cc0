//! The Aver attestation service.
//!
//! An HTTP API compatible with Azure Attestation's data plane — attestation
//! (`/attest/*`), metadata (`/certs`, `/.well-known/openid-configuration`)
//! and management (`/policies/*`, `/certificates*`), described by an OpenAPI
//! document generated from the code (`/openapi.json`, [`openapi`]) — over TLS, for one or
//! more providers (tenants), with state in SQLite or PostgreSQL. Handlers
//! are thin: they decode a request, call the attestation core
//! (`aver-attestation`) or the store, and
//! encode the answer.

pub mod admin;
pub mod collateral;
pub mod config;
pub mod cpu;
pub mod datadir;
pub mod error;
pub mod json;
pub mod kds;
pub mod kek;
pub mod keys;
pub mod listener;
pub mod load;
pub mod manage;
pub mod observe;
pub mod openapi;
pub mod policy_jws;
pub mod request;
pub mod rotation;
pub mod routes;
pub mod routing;
pub mod snp_crl;
pub mod state;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aver_attestation::Verifiers;
use aver_attestation::dcap::{DcapVerifier, TrustAnchors};
use axum::Router;
use axum::routing::{get, post};

pub use config::Config;
pub use load::DEFAULT_PROVIDER;
use state::{AppState, Clock};
use store::{ProviderRecord, Store};

/// Every route the service serves, with its handlers: the one list the
/// router is built from, so that `tests/openapi.rs` can check that each is
/// in the OpenAPI document ([`openapi`]).
pub fn routes_table() -> Vec<(&'static str, axum::routing::MethodRouter<AppState>)> {
    vec![
        ("/attest/{kind}", post(routes::attest)),
        ("/certs", get(routes::certs)),
        (
            "/.well-known/openid-configuration",
            get(routes::openid_configuration),
        ),
        ("/tcbbaselines/{kind}", get(routes::tcb_baselines)),
        ("/health", get(routes::health)),
        ("/healthz", get(observe::healthz)),
        ("/readyz", get(observe::readyz)),
        (openapi::PATH, get(openapi::serve)),
        (
            "/policies/{spec}",
            get(manage::get_policy)
                .put(manage::put_policy)
                .post(manage::post_policy),
        ),
        ("/certificates", get(manage::get_certificates)),
        ("/certificates:add", post(manage::add_certificate)),
        ("/certificates:remove", post(manage::remove_certificate)),
        ("/audit", get(manage::get_audit)),
        ("/keys", get(manage::get_keys)),
        ("/keys:rotate", post(manage::rotate_key)),
        ("/keys:retire", post(manage::retire_key)),
    ]
}

/// Builds the router over `state`.
pub fn router(state: AppState) -> Router {
    let routes = routes_table()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state.clone());
    // Provider routing rewrites the path (`/providers/{name}/...`), so it
    // must run before the routes above match: it wraps them as a whole.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routing::route_provider,
        ))
        // Outside provider routing, so that a refusal there (an unknown
        // provider) also has its body drained.
        .layer(axum::middleware::from_fn_with_state(
            state,
            request::drain_unread_body,
        ))
        .layer(axum::middleware::from_fn(observe::request_context))
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Setup(String),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Load(#[from] load::LoadError),
    /// What the service was doing, and the error: "listening on
    /// 127.0.0.1:8443: Address already in use", not the bare OS error
    /// (which named neither the address nor the file).
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

impl StartError {
    /// `map_err(StartError::io(format!("listening on {addr}")))`.
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let what = what.into();
        move |error| StartError::Io { what, error }
    }
}

/// [`datadir::prepare`], its error naming the directory.
fn prepare_data_dir(dir: &Path) -> Result<(), StartError> {
    datadir::prepare(dir).map_err(StartError::io(format!(
        "preparing the data directory {}",
        dir.display()
    )))
}

/// A file the configuration names, its error naming the file.
fn read_file(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(StartError::io(format!("reading {}", path.display())))
}

/// Opens the configured store: PostgreSQL for a `postgres://` URL, else
/// SQLite at `<data_dir>/aver.db`.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match &config.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(match &config.database_schema {
                Some(schema) => store::postgres::PostgresStore::connect_with_schema(url, schema)?,
                None => store::postgres::PostgresStore::connect(url)?,
            }))
        }
        Some(other) => Err(StartError::Setup(format!(
            "unsupported database URL {other:?} (use postgres://..., or omit it for SQLite)"
        ))),
        None => {
            prepare_data_dir(&config.data_dir)?;
            let path = config.data_dir.join("aver.db");
            datadir::touch_private(&path)
                .map_err(StartError::io(format!("creating {}", path.display())))?;
            Ok(Arc::new(store::SqliteStore::open(&path)?))
        }
    }
}

/// Creates the default provider on first start; its admin key is written
/// to `<data_dir>/admin-key` (owner-only) and returned.
pub fn ensure_default_provider(
    store: &dyn Store,
    data_dir: &Path,
    now: u64,
) -> Result<Option<String>, StartError> {
    if store
        .providers()?
        .iter()
        .any(|p| p.name == DEFAULT_PROVIDER)
    {
        return Ok(None);
    }
    let record = ProviderRecord {
        name: DEFAULT_PROVIDER.into(),
        isolated: false,
        host: None,
        created_at: now as i64,
    };
    let key = match load::create_provider(store, &record, &[], "aver serve (first start)") {
        Ok(key) => key,
        // Another replica created it first.
        Err(_)
            if store
                .providers()?
                .iter()
                .any(|p| p.name == DEFAULT_PROVIDER) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(StartError::Setup(e.to_string())),
    };
    prepare_data_dir(data_dir)?;
    tls::write_private(&data_dir.join("admin-key"), format!("{key}\n").as_bytes())
        .map_err(StartError::Setup)?;
    Ok(Some(key))
}

fn read_pem_dir(dir: &Path) -> Result<Vec<Vec<u8>>, StartError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(StartError::io(format!(
            "reading the directory {}",
            dir.display()
        )))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.is_file()) {
        let bytes = read_file(&path)?;
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| StartError::Setup(format!("{}: {e}", path.display())))?;
            out.push(cert.to_vec());
        }
    }
    Ok(out)
}

fn is_self_issued(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .unwrap_or(false)
}

fn admin_auth(config: &Config) -> Result<admin::AdminAuth, StartError> {
    let Some(oidc) = &config.admin_oidc else {
        return Ok(admin::AdminAuth::default());
    };
    let jwks = read_file(&oidc.jwks_file)?;
    let jwks: serde_json::Value = serde_json::from_slice(&jwks)
        .map_err(|e| StartError::Setup(format!("{}: {e}", oidc.jwks_file.display())))?;
    Ok(admin::AdminAuth {
        oidc: Some(admin::OidcAdmin {
            issuer: oidc.issuer.trim_end_matches('/').to_string(),
            audience: oidc.audience.clone(),
            role: oidc.role.clone(),
            jwks,
        }),
    })
}

/// A started service.
pub struct Service {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    pub issuer: String,
    pub tls: tls::TlsFiles,
    /// The default provider's admin key, when this start created it.
    pub new_admin_key: Option<String>,
    pub state: AppState,
    /// The metrics listener's address, when one was configured.
    pub metrics_addr: Option<SocketAddr>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    handle: listener::ListenerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Binds, loads or creates state and TLS files, and starts serving in
    /// the background.
    pub async fn start(config: &Config) -> Result<Service, StartError> {
        Self::start_with_clock(config, Clock::System).await
    }

    /// Like [`start`](Self::start) with a pinned clock (tests on expired
    /// real vectors).
    pub async fn start_with_clock(config: &Config, clock: Clock) -> Result<Service, StartError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        prepare_data_dir(&config.data_dir)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(StartError::io(format!("listening on {}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(StartError::io("reading the listener's address"))?;
        let issuer = config.issuer_url(addr);

        let mut roots = TrustAnchors::intel();
        for path in &config.extra_sgx_roots {
            let pem = read_file(path)?;
            roots
                .add_pem(&pem, &path.display().to_string())
                .map_err(|e| StartError::Setup(format!("{}: {e}", path.display())))?;
            tracing::warn!(root = %path.display(), "trusting an extra SGX root besides Intel's");
        }
        let mut snp_roots = aver_attestation::evidence::snp::SnpTrust::amd();
        for path in &config.extra_snp_roots {
            let pem = read_file(path)?;
            snp_roots
                .add_ark_pem(&pem, &path.display().to_string())
                .map_err(|e| StartError::Setup(format!("{}: {e}", path.display())))?;
            tracing::warn!(root = %path.display(), "trusting an extra SEV-SNP ARK besides AMD's");
        }
        let kds = match &config.amd_kds_url {
            Some(url) => {
                Some(Arc::new(kds::KdsSource::new(url).map_err(|e| {
                    StartError::Setup(format!("KDS client: {e}"))
                })?))
            }
            None => None,
        };
        // Self-signed certificates in the EK directory are roots; the others
        // are manufacturer intermediates that EK chains may pass through.
        let (ek_roots, ek_intermediates) = match &config.tpm_ek_roots {
            Some(dir) => read_pem_dir(dir)?
                .into_iter()
                .partition(|der| is_self_issued(der)),
            None => (Vec::new(), Vec::new()),
        };

        // Refused before connecting: nothing is created in a database the
        // service will not use.
        if config.database_url.is_some() && config.kek.is_none() {
            return Err(StartError::Setup(kek::shared_database_needs_kek()));
        }
        let now = clock.now();
        let config_for_store = config.clone();
        let data_dir = config.data_dir.clone();
        let base_issuer = issuer.clone();
        let mut verifiers = Verifiers::new(DcapVerifier::new(roots));
        snp_roots.require_crl(config.require_snp_crl);
        verifiers.snp = snp_roots;
        verifiers.require_collateral = config
            .require_collateral
            .unwrap_or(config.collateral_url.is_some());
        verifiers.default_tcb_baseline = config.tcb_baseline;
        if !config.accepted_tcb_statuses.is_empty() {
            verifiers.tcb_acceptance.accepted = config.accepted_tcb_statuses.clone();
        }
        let verifiers = Arc::new(verifiers);
        let verifiers_for_load = verifiers.clone();
        let (store, new_admin_key, providers, loader, collateral_seen) =
            tokio::task::spawn_blocking(move || {
                let store = open_store(&config_for_store)?;
                let kek = kek::resolve_with_accepted(
                    config_for_store.kek.as_ref(),
                    &config_for_store.accepted_keks,
                    &data_dir,
                    config_for_store.database_url.is_some(),
                    store.as_ref(),
                )
                .map_err(StartError::Setup)?;
                tracing::info!(kek = %kek.id(), accepted = ?kek.accepted_ids(), "keys at rest are encrypted under this KEK");
                let loader = Arc::new(load::Loader {
                    base_issuer,
                    ek_roots,
                    ek_intermediates,
                    kek: Arc::new(kek),
                });
                let key = ensure_default_provider(store.as_ref(), &data_dir, now)?;
                let providers = loader.load_all(store.as_ref(), now)?;
                let mut seen = collateral::Seen::new();
                collateral::load_from_store(
                    store.as_ref(),
                    &verifiers_for_load,
                    aver_attestation::VerificationTime::from_unix_seconds(now),
                    &mut seen,
                )
                .map_err(|e| StartError::Setup(format!("loading collateral: {e}")))?;
                Ok::<_, StartError>((store, key, providers, loader, seen))
            })
            .await
            .map_err(|e| StartError::Setup(e.to_string()))??;
        let collateral_source = match &config.collateral_url {
            Some(url) => {
                let ca = match &config.collateral_ca {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        StartError::Setup(format!(
                            "reading the collateral source's CA file {}: {e}",
                            path.display()
                        ))
                    })?),
                    None => None,
                };
                Some(
                    collateral::PccsSource::with_ca(url, config.collateral_timeout, ca.as_deref())
                        .map_err(StartError::Setup)?,
                )
            }
            None => None,
        };

        let state = AppState {
            providers: Arc::new(RwLock::new(providers)),
            store,
            verifiers,
            kds,
            clock,
            max_body_bytes: config.max_body_bytes,
            body_read_timeout: config.limits.body_read_timeout,
            cpu: cpu::CpuPool::new(config.cpu.clone()),
            tpm_replay: Arc::new(aver_tpm_attest::ReplayCache::default()),
            admin: Arc::new(admin_auth(config)?),
            loader,
            store_health: Arc::default(),
        };
        state.store_health.ok(
            now,
            state.providers.read().map(|p| p.generation).unwrap_or(0),
        );
        observe::prometheus();

        let tls = tls::ensure_tls_files(
            &config.data_dir,
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            addr,
            &issuer,
        )
        .map_err(StartError::Setup)?;
        let rustls = listener::tls_config(&tls.cert, &tls.key)
            .map_err(|e| StartError::Setup(format!("TLS files: {e}")))?;
        let handle = listener::ListenerHandle::new();
        let app = router(state.clone());
        let task = tokio::spawn(listener::serve(
            listener,
            Arc::new(rustls),
            app,
            config.limits.clone(),
            handle.clone(),
            std::time::Duration::from_secs(10),
        ));
        let refresher = tokio::spawn(refresh_loop(
            state.clone(),
            config.refresh_secs.max(1),
            collateral_seen,
            collateral_source,
            config.collateral_retry,
            config.key_rotation,
        ));
        let (metrics_addr, metrics_task) = match config.metrics_listen {
            None => (None, None),
            Some(at) => {
                let metrics_listener = tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(StartError::io(format!("listening for metrics on {at}")))?;
                let bound = metrics_listener
                    .local_addr()
                    .map_err(StartError::io("reading the metrics listener's address"))?;
                let app = observe::metrics_router(state.clone());
                let task = tokio::spawn(async move {
                    if let Err(e) = axum::serve(metrics_listener, app).await {
                        tracing::warn!(error = %e, "the metrics listener stopped");
                    }
                });
                (Some(bound), Some(task))
            }
        };
        Ok(Service {
            metrics_addr,
            metrics_task,
            addr,
            issuer,
            tls,
            new_admin_key,
            state,
            handle,
            task,
            refresher,
        })
    }

    /// Client connections open right now.
    pub fn open_connections(&self) -> usize {
        self.handle.open_connections()
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(self) {
        self.refresher.abort();
        if let Some(task) = &self.metrics_task {
            task.abort();
        }
        self.handle.shutdown();
        let _ = self.task.await;
    }

    /// Serves until the task ends (an I/O error), Ctrl-C or SIGTERM; on a
    /// signal, stops accepting and lets in-flight requests finish.
    pub async fn wait(self) -> Result<(), StartError> {
        let handle = self.handle.clone();
        let mut task = self.task;
        tokio::select! {
            result = &mut task => {
                result
                    .map_err(|e| StartError::Setup(e.to_string()))?
                    .map_err(StartError::io("serving"))?;
                return Ok(());
            }
            _ = stop_signal() => {}
        }
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        self.refresher.abort();
        if let Some(task) = &self.metrics_task {
            task.abort();
        }
        handle.shutdown();
        task.await
            .map_err(|e| StartError::Setup(e.to_string()))?
            .map_err(StartError::io("serving"))?;
        Ok(())
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what service managers send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reloads providers when another process (a replica, `aver provider`)
/// changed the store; loads collateral another process stored (`aver
/// collateral import`, a replica's fetch); fetches and refreshes collateral
/// from the configured source; rotates keys on the configured schedule.
async fn refresh_loop(
    state: AppState,
    every_secs: u64,
    mut collateral_seen: collateral::Seen,
    source: Option<collateral::PccsSource>,
    retry: std::time::Duration,
    rotation: Option<rotation::Schedule>,
) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(every_secs));
    // Scheduled key rotation runs in its own task too (a store that is slow
    // to write must not delay reloads), at the refresh interval.
    let _rotator = rotation.map(|schedule| {
        let state = state.clone();
        tracing::info!(
            every_secs = schedule.every(),
            publish_delay_secs = schedule.publish_delay(),
            "signing keys are rotated on a schedule"
        );
        AbortOnDrop(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(every_secs));
            loop {
                ticker.tick().await;
                rotation::round(&state, &schedule).await;
            }
        }))
    });
    // Fetching runs in its own task, so that a slow source never delays
    // provider reloads; it ends with this loop (the guard aborts it).
    // AMD's ARK CRLs, when a KDS is configured: the same way, own task.
    let _crl_fetcher = state.kds.clone().map(|kds| {
        let state = state.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut refresher = snp_crl::CrlRefresher::new(retry);
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(every_secs));
            loop {
                ticker.tick().await;
                let now = state.clock.now();
                refresher
                    .round(&kds, state.store.clone(), &state.verifiers, now)
                    .await;
            }
        }))
    });
    let _fetcher = source.map(|source| {
        let state = state.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut refresher = collateral::Refresher::new(retry);
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(every_secs));
            loop {
                ticker.tick().await;
                let now = state.clock.now();
                refresher
                    .round(&source, state.store.clone(), &state.verifiers, now)
                    .await;
            }
        }))
    });
    loop {
        ticker.tick().await;
        let now = state.clock.now();
        let verifiers = state.verifiers.clone();
        let seen = std::mem::take(&mut collateral_seen);
        match state
            .blocking(move |store| {
                let mut seen = seen;
                let time = aver_attestation::VerificationTime::from_unix_seconds(now);
                collateral::load_from_store(store, &verifiers, time, &mut seen).map(|_| seen)
            })
            .await
        {
            Ok(seen) => collateral_seen = seen,
            Err(e) => tracing::warn!(code = e.code, "cannot read the collateral cache"),
        }

        let known = state.providers.read().map(|p| p.generation).unwrap_or(-1);
        let current = match state.blocking(|store| store.generation()).await {
            Ok(g) => g,
            Err(e) => {
                state.store_health.failed(state.clock.now());
                tracing::warn!(code = e.code, "cannot read the store generation");
                continue;
            }
        };
        if current != known {
            if let Err(e) = state.reload().await {
                state.store_health.failed(state.clock.now());
                tracing::warn!(code = e.code, message = %e.message, "reload failed");
                continue;
            }
            tracing::debug!(generation = current, "providers reloaded");
        }
        state.store_health.ok(state.clock.now(), current);
    }
}
