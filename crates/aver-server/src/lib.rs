//! The Aver attestation service.
//!
//! An HTTP API compatible with Azure Attestation's data plane
//! (`/attest/*`, `/certs`, `/.well-known/openid-configuration`) over TLS,
//! with its state in an embedded SQLite database. Handlers are thin: they
//! decode a request, call [`pipeline`], and encode the answer.

pub mod config;
pub mod error;
pub mod pipeline;
pub mod request;
pub mod routes;
pub mod state;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use aver_token::SigningKey;
use aver_verify::{SgxVerifier, TrustAnchors};
use axum::Router;
use axum::routing::{get, post};

pub use config::Config;
use state::{AppState, Clock, Provider};
use store::{Store, StoredKey};

/// The default provider's name; it answers at the root path.
pub const DEFAULT_PROVIDER: &str = "default";

/// Builds the router over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/attest/SgxEnclave", post(routes::attest_sgx_enclave))
        .route("/attest/OpenEnclave", post(routes::attest_open_enclave))
        .route("/certs", get(routes::certs))
        .route(
            "/.well-known/openid-configuration",
            get(routes::openid_configuration),
        )
        .route("/health", get(routes::health))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Setup(String),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Loads the provider's signing keys, generating one on first start.
fn load_or_create_keys(
    store: &Store,
    provider: &str,
    issuer: &str,
    now: i64,
) -> Result<Vec<Arc<SigningKey>>, StartError> {
    let mut stored = store.signing_keys(provider)?;
    if stored.is_empty() {
        let key = SigningKey::generate(issuer).map_err(|e| StartError::Setup(e.to_string()))?;
        let record = StoredKey {
            kid: key.kid().to_string(),
            pkcs8: key.pkcs8_der().to_vec(),
            certificate: key.certificate_der().to_vec(),
            created_at: now,
        };
        store.insert_signing_key(provider, &record)?;
        tracing::info!(kid = key.kid(), "generated a new token-signing key");
        stored.push(record);
    }
    stored
        .into_iter()
        .map(|k| {
            SigningKey::from_parts(k.pkcs8, k.certificate)
                .map(Arc::new)
                .map_err(|e| StartError::Setup(format!("stored key {}: {e}", k.kid)))
        })
        .collect()
}

/// A started service.
pub struct Service {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    pub issuer: String,
    pub tls: tls::TlsFiles,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Binds, loads or creates keys and TLS files, and starts serving in the
    /// background.
    pub async fn start(config: &Config) -> Result<Service, StartError> {
        Self::start_with_clock(config, Clock::System).await
    }

    /// Like [`start`](Self::start) with a pinned clock (tests on expired
    /// real vectors).
    pub async fn start_with_clock(config: &Config, clock: Clock) -> Result<Service, StartError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        std::fs::create_dir_all(&config.data_dir)?;
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let issuer = config.issuer_url(addr);

        let mut roots = TrustAnchors::intel();
        for path in &config.extra_sgx_roots {
            let pem = std::fs::read(path)?;
            roots
                .add_pem(&pem, &path.display().to_string())
                .map_err(|e| StartError::Setup(format!("{}: {e}", path.display())))?;
            tracing::warn!(root = %path.display(), "trusting an extra SGX root besides Intel's");
        }

        let store = Arc::new(Store::open(&config.data_dir.join("aver.db"))?);
        let now = clock.now() as i64;
        let keys = load_or_create_keys(&store, DEFAULT_PROVIDER, &issuer, now)?;
        let provider = Provider::new(DEFAULT_PROVIDER, &issuer, keys)
            .map_err(|e| StartError::Setup(e.message))?;
        let state = AppState {
            provider: Arc::new(provider),
            store,
            sgx: Arc::new(SgxVerifier::new(roots)),
            clock,
            max_body_bytes: config.max_body_bytes,
        };

        let tls = tls::ensure_tls_files(
            &config.data_dir,
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            addr,
            &issuer,
        )
        .map_err(StartError::Setup)?;
        let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
            .await
            .map_err(|e| StartError::Setup(format!("TLS files: {e}")))?;
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, rustls)?.handle(handle.clone());
        let app = router(state);
        let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
        Ok(Service {
            addr,
            issuer,
            tls,
            handle,
            task,
        })
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(self) {
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        let _ = self.task.await;
    }

    /// Serves until the task ends (an I/O error) or Ctrl-C.
    pub async fn wait(self) -> Result<(), StartError> {
        let handle = self.handle.clone();
        tokio::select! {
            result = self.task => {
                result.map_err(|e| StartError::Setup(e.to_string()))??;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("shutting down");
                handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            }
        }
        Ok(())
    }
}
