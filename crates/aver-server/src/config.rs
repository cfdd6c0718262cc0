//! Service configuration: defaults, then a TOML file, then environment and
//! flags (the CLI merges those and hands over a finished [`Config`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything `aver serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// Public base URL: the token issuer, `jku` and OpenID `issuer`.
    /// No trailing slash. Defaults to `https://<listen>`.
    pub issuer: Option<String>,
    /// Holds the SQLite database, generated keys and TLS files.
    pub data_dir: PathBuf,
    /// TLS certificate and key (PEM). Generated self-signed in the data
    /// directory when not given.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Extra PEM files of SGX roots to trust besides Intel's (for example
    /// the simulator's root, for demos). Never needed for real hardware.
    pub extra_sgx_roots: Vec<PathBuf>,
    /// Extra PEM files of SEV-SNP ARKs to trust besides AMD's (a lab PKI).
    pub extra_snp_roots: Vec<PathBuf>,
    /// Base URL of an AMD KDS-compatible service (`https://kdsintf.amd.com`)
    /// to fetch VCEKs from when a SevSnpVm request carries no chain (none:
    /// such requests are refused), and the ARKs' CRLs, in the background
    /// ([`crate::snp_crl`]).
    pub amd_kds_url: Option<String>,
    /// Refuse SEV-SNP chains whose ARK has no CRL held (`CollateralMissing`)
    /// rather than verify them without a revocation check. Default: off.
    pub require_snp_crl: bool,
    /// `postgres://...` to keep state in PostgreSQL (several replicas);
    /// otherwise SQLite in the data directory.
    pub database_url: Option<String>,
    /// PostgreSQL schema holding Aver's tables (created if needed), so
    /// that several deployments or test runs can share one database.
    pub database_schema: Option<String>,
    /// Directory of PEM files: TPM manufacturer roots trusted for EK
    /// certificates (TPM enrollment).
    pub tpm_ek_roots: Option<PathBuf>,
    /// The key-encryption key sealing keys at rest (see [`crate::kek`]);
    /// `None`: generated in the data directory with SQLite, refused with
    /// PostgreSQL.
    pub kek: Option<crate::kek::KekSource>,
    /// KEK files that open records but never seal: a KEK being rotated in
    /// or out (see [`crate::kek`]).
    pub accepted_keks: Vec<PathBuf>,
    /// An OIDC issuer whose tokens may administer providers.
    pub admin_oidc: Option<OidcConfig>,
    /// How often replicas look for changes made by others (seconds).
    pub refresh_secs: u64,
    /// Base URL of an Intel PCS v4-compatible collateral source (Intel's
    /// PCS or a PCCS). With it, SGX collateral is fetched in the
    /// background for the FMSPCs quotes ask for, refreshed ahead of its
    /// nextUpdate, and shared through the store.
    pub collateral_url: Option<String>,
    /// CA certificates (PEM) the collateral source's TLS certificate must
    /// chain to, instead of the system's roots (a PCCS with a self-signed
    /// or private-CA certificate).
    pub collateral_ca: Option<PathBuf>,
    /// Time-out of each request to the collateral source.
    pub collateral_timeout: std::time::Duration,
    /// Pause before fetching an FMSPC again after a failed attempt.
    pub collateral_retry: std::time::Duration,
    /// Refuse SGX quotes with no valid collateral for their FMSPC
    /// (`CollateralMissing`). Default: only when `collateral_url` is set.
    pub require_collateral: Option<bool>,
    /// The TCB evaluation data number that judges SGX quotes whose policy
    /// selects `azuredefault` or no baseline (`None`: the newest held).
    pub tcb_baseline: Option<u32>,
    /// TCB statuses accepted (empty: UpToDate and SWHardeningNeeded).
    pub accepted_tcb_statuses: Vec<aver_attestation::dcap::TcbStatus>,
    /// Connection cap and client time-outs (see [`crate::listener`]).
    pub limits: crate::listener::ConnectionLimits,
    /// Concurrency and deadline of CPU-heavy work (see [`crate::cpu`]).
    pub cpu: crate::cpu::CpuLimits,
    /// Plain-HTTP listener for `/metrics`, `/healthz` and `/readyz` (see
    /// [`crate::observe`]); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Rotate every provider's signing key on this schedule (see
    /// [`crate::rotation`]); off when `None`.
    pub key_rotation: Option<crate::rotation::Schedule>,
}

/// OIDC admin settings (see `admin`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    pub role: String,
    /// The issuer's JWKS as a file (air-gapped deployments, tests).
    pub jwks_file: PathBuf,
}

impl Config {
    /// Defaults: `127.0.0.1:8443`, `./aver-data`, 1 MiB bodies.
    pub fn with_defaults() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            issuer: None,
            data_dir: PathBuf::from("aver-data"),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 1024 * 1024,
            extra_sgx_roots: Vec::new(),
            extra_snp_roots: Vec::new(),
            amd_kds_url: None,
            require_snp_crl: false,
            database_url: None,
            database_schema: None,
            tpm_ek_roots: None,
            kek: None,
            accepted_keks: Vec::new(),
            admin_oidc: None,
            refresh_secs: 2,
            collateral_url: None,
            collateral_timeout: std::time::Duration::from_secs(10),
            collateral_retry: std::time::Duration::from_secs(60),
            require_collateral: None,
            tcb_baseline: None,
            collateral_ca: None,
            accepted_tcb_statuses: Vec::new(),
            limits: crate::listener::ConnectionLimits::default(),
            cpu: crate::cpu::CpuLimits::default(),
            metrics_listen: None,
            key_rotation: None,
        }
    }

    /// The issuer URL in force.
    pub fn issuer_url(&self, bound: SocketAddr) -> String {
        match &self.issuer {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{bound}"),
        }
    }
}
