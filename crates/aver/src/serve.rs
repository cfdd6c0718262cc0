//! `aver serve`: configuration from flags, environment and a TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use aver_server::{Config, Service};

use crate::io_sched::IoScheduling;
use clap::Args;
use serde::Deserialize;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (keys as the long flags, with underscores).
    #[arg(long, env = "AVER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "AVER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Public base URL, used as token issuer [default: https://<listen>].
    #[arg(long, env = "AVER_ISSUER")]
    issuer: Option<String>,
    /// Directory for the database, keys and TLS files [default: ./aver-data].
    #[arg(long, env = "AVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TLS certificate (PEM); generated self-signed when absent.
    #[arg(long, env = "AVER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "AVER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "AVER_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Extra SGX root CA (PEM) to trust besides Intel's, e.g. the
    /// simulator's for demos (`aver sim root`). Repeatable.
    #[arg(long = "trust-root", env = "AVER_TRUST_ROOTS", value_delimiter = ',')]
    trust_roots: Vec<PathBuf>,
    /// Extra SEV-SNP ARK (PEM) to trust besides AMD's Milan, Genoa and
    /// Turin ARKs, e.g. a lab PKI. Repeatable.
    #[arg(
        long = "snp-trust-root",
        env = "AVER_SNP_TRUST_ROOTS",
        value_delimiter = ','
    )]
    snp_trust_roots: Vec<PathBuf>,
    /// Fetch VCEKs for SevSnpVm requests without a chain from this AMD
    /// KDS-compatible base URL (AMD's: https://kdsintf.amd.com), cached in
    /// the store; without it such requests are refused. The ARKs' CRLs are
    /// fetched from it too, in the background.
    #[arg(long, env = "AVER_AMD_KDS_URL")]
    amd_kds_url: Option<String>,
    /// Refuse SEV-SNP chains whose ARK has no CRL held (true, false)
    /// rather than verify them without a revocation check [default: false].
    #[arg(long, env = "AVER_REQUIRE_SNP_CRL")]
    require_snp_crl: Option<bool>,
    /// Keep state in PostgreSQL (`postgres://user@host/db`) instead of
    /// SQLite in the data directory; for several replicas.
    #[arg(long, env = "AVER_DATABASE_URL")]
    database_url: Option<String>,
    /// PostgreSQL schema for Aver's tables (created if needed) [default: the
    /// connection's search path, normally `public`].
    #[arg(long, env = "AVER_DATABASE_SCHEMA")]
    database_schema: Option<String>,
    /// Directory of PEM files: TPM manufacturer CAs for EK certificates
    /// (self-signed ones are trusted roots, others intermediates).
    #[arg(long, env = "AVER_TPM_EK_ROOTS")]
    tpm_ek_roots: Option<PathBuf>,
    /// Key-encryption key file (base64 of 32 bytes, `openssl rand -base64
    /// 32`) sealing token-signing keys and TPM secrets in the store. Or set
    /// AVER_KEK to the key itself. Required with PostgreSQL; with SQLite,
    /// generated into <data-dir>/kek when absent.
    #[arg(long, env = "AVER_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// A KEK file that opens keys at rest but never seals (repeatable, or
    /// comma-separated): a KEK being rotated in or out. See
    /// docs/management.md, "Rotating the KEK".
    #[arg(long, env = "AVER_ACCEPT_KEK_FILE", value_delimiter = ',')]
    accept_kek_file: Vec<PathBuf>,
    /// OIDC issuer whose JWTs may administer providers (with the three
    /// options below).
    #[arg(long, env = "AVER_ADMIN_OIDC_ISSUER", requires_all = ["admin_oidc_audience", "admin_oidc_role", "admin_oidc_jwks"])]
    admin_oidc_issuer: Option<String>,
    /// Audience admin JWTs must carry.
    #[arg(long, env = "AVER_ADMIN_OIDC_AUDIENCE")]
    admin_oidc_audience: Option<String>,
    /// Role (in `roles` or `role`) that grants admin; `ROLE:provider`
    /// grants it on one provider.
    #[arg(long, env = "AVER_ADMIN_OIDC_ROLE")]
    admin_oidc_role: Option<String>,
    /// The OIDC issuer's JWKS (file).
    #[arg(long, env = "AVER_ADMIN_OIDC_JWKS")]
    admin_oidc_jwks: Option<PathBuf>,
    /// Most client connections open at once; beyond it new connections wait
    /// in the kernel's backlog [default: 1024].
    #[arg(long, env = "AVER_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has to complete the TLS handshake [default: 10].
    #[arg(long, env = "AVER_TLS_HANDSHAKE_TIMEOUT")]
    tls_handshake_timeout: Option<u64>,
    /// Seconds a client has to send a request's headers; also how long a
    /// keep-alive HTTP/1.1 connection may wait for its next request
    /// [default: 10].
    #[arg(long, env = "AVER_HEADER_TIMEOUT")]
    header_timeout: Option<u64>,
    /// Seconds a client has to send a request's body [default: 30].
    #[arg(long, env = "AVER_BODY_TIMEOUT")]
    body_timeout: Option<u64>,
    /// Seconds after which a connection with no traffic is closed [default: 60].
    #[arg(long, env = "AVER_IDLE_TIMEOUT")]
    idle_timeout: Option<u64>,
    /// Threads that serve connections (TLS, HTTP, the cheap routes); the
    /// verification work runs on its own threads (--max-concurrent-attestations)
    /// [default: a quarter of the CPUs, at least 1].
    #[arg(long, env = "AVER_IO_THREADS")]
    io_threads: Option<usize>,
    /// How Linux schedules the connection threads: `auto` (SCHED_BATCH
    /// while attestations wait for a verification thread, so a request
    /// arriving does not preempt a verification in progress, and the
    /// kernel's default policy otherwise), `normal` (always the default
    /// policy) or `batch` (always SCHED_BATCH; for cores Aver has to itself)
    /// [default: auto].
    #[arg(long, env = "AVER_IO_SCHEDULING", value_enum)]
    io_scheduling: Option<IoScheduling>,
    /// Most verifications/policy evaluations running at once [default: CPUs].
    #[arg(long, env = "AVER_MAX_CONCURRENT_ATTESTATIONS")]
    max_concurrent_attestations: Option<usize>,
    /// Most attestations waiting for a verification thread; one more gets
    /// 503 at once [default: 64 per thread].
    #[arg(long, env = "AVER_MAX_QUEUED_ATTESTATIONS")]
    max_queued_attestations: Option<usize>,
    /// Seconds a request may wait for a verification slot before 503 [default: 10].
    #[arg(long, env = "AVER_QUEUE_TIMEOUT")]
    queue_timeout: Option<u64>,
    /// Seconds one verification and policy evaluation may run [default: 5].
    #[arg(long, env = "AVER_ATTESTATION_DEADLINE")]
    attestation_deadline: Option<u64>,
    /// Serve Prometheus metrics (`/metrics`) and the probes (`/healthz`,
    /// `/readyz`) over plain HTTP on this address, e.g. `127.0.0.1:9464`
    /// [default: off]. Bind it to a private interface: it has no
    /// authentication.
    #[arg(long, env = "AVER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Base URL of an Intel PCS v4-compatible SGX collateral source (a
    /// PCCS, or https://api.trustedservices.intel.com): fetched in the
    /// background for the FMSPCs quotes need, refreshed before nextUpdate,
    /// shared through the store.
    #[arg(long, env = "AVER_COLLATERAL_URL")]
    collateral_url: Option<String>,
    /// CA certificates (PEM) the collateral source's TLS certificate must
    /// chain to, instead of the system's roots: a PCCS with a self-signed
    /// or private-CA certificate.
    #[arg(long, env = "AVER_COLLATERAL_CA")]
    collateral_ca: Option<PathBuf>,
    /// Seconds each request to the collateral source may take [default: 10].
    #[arg(long, env = "AVER_COLLATERAL_TIMEOUT")]
    collateral_timeout: Option<u64>,
    /// Refuse SGX quotes without valid collateral for their FMSPC (true,
    /// false) [default: true with --collateral-url, else false].
    #[arg(long, env = "AVER_REQUIRE_COLLATERAL")]
    require_collateral: Option<bool>,
    /// The TCB evaluation data number that judges SGX quotes whose policy
    /// selects no TCB baseline, or `azuredefault` [default: the newest
    /// collateral held for the quote's FMSPC].
    #[arg(long, env = "AVER_TCB_BASELINE")]
    tcb_baseline: Option<u32>,
    /// TCB statuses accepted (repeatable or comma-separated) [default:
    /// UpToDate,SWHardeningNeeded].
    #[arg(long, env = "AVER_ACCEPT_TCB_STATUS", value_delimiter = ',')]
    accept_tcb_status: Vec<String>,
    /// Rotate every provider's token-signing key on this schedule, e.g.
    /// `30d` (units s, m, h, d; a bare number is seconds): each key signs
    /// for this long, the next one published --rotation-publish-delay
    /// before it signs, superseded keys retired and kept in /certs until
    /// their tokens expired. Every replica may run it; they make one key
    /// between them [default: off].
    #[arg(long, env = "AVER_ROTATE_KEYS_EVERY", value_parser = parse_duration)]
    rotate_keys_every: Option<u64>,
    /// How long a key made by the schedule is in /certs before it signs,
    /// e.g. `1h` [default: 5m].
    #[arg(long, env = "AVER_ROTATION_PUBLISH_DELAY", value_parser = parse_duration)]
    rotation_publish_delay: Option<u64>,
}

/// Seconds from `90`, `90s`, `15m`, `12h` or `30d`.
pub fn parse_duration(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t, "s"),
    };
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: a number followed by s, m, h or d (e.g. 30d)"
            ));
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a duration: a number followed by s, m, h or d (e.g. 30d)")
    })?;
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    issuer: Option<String>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    trust_roots: Option<Vec<PathBuf>>,
    snp_trust_roots: Option<Vec<PathBuf>>,
    amd_kds_url: Option<String>,
    require_snp_crl: Option<bool>,
    database_url: Option<String>,
    database_schema: Option<String>,
    tpm_ek_roots: Option<PathBuf>,
    kek_file: Option<PathBuf>,
    accept_kek_file: Option<Vec<PathBuf>>,
    admin_oidc_issuer: Option<String>,
    admin_oidc_audience: Option<String>,
    admin_oidc_role: Option<String>,
    admin_oidc_jwks: Option<PathBuf>,
    max_connections: Option<usize>,
    tls_handshake_timeout: Option<u64>,
    header_timeout: Option<u64>,
    body_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    io_threads: Option<usize>,
    io_scheduling: Option<IoScheduling>,
    max_concurrent_attestations: Option<usize>,
    max_queued_attestations: Option<usize>,
    queue_timeout: Option<u64>,
    attestation_deadline: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    collateral_url: Option<String>,
    collateral_ca: Option<PathBuf>,
    collateral_timeout: Option<u64>,
    require_collateral: Option<bool>,
    tcb_baseline: Option<u32>,
    accept_tcb_status: Option<Vec<String>>,
    rotate_keys_every: Option<String>,
    rotation_publish_delay: Option<String>,
}

/// What `aver serve` runs with: the service's configuration and the size
/// of the async runtime that carries it (which must be known before the
/// runtime starts, so it is not part of [`Config`]).
pub struct Resolved {
    pub config: Config,
    pub io_threads: usize,
    pub io_scheduling: IoScheduling,
}

/// The default number of connection threads: a quarter of the CPUs, at
/// least one. A connection thread's share of an attestation (TLS records,
/// HTTP, socket calls) is a small fraction of the verification work that
/// the CPU pool's threads do, and every extra async worker adds wake-ups
/// between them: with one worker on 2 CPUs an attestation costs 1.7 context
/// switches instead of 2.7 (BENCHMARKS.md, "Handing jobs to the CPU pool").
pub fn default_io_threads(cpus: usize) -> usize {
    (cpus / 4).max(1)
}

/// Flags and environment over the file over the defaults.
pub fn resolve(args: ServeArgs) -> Result<Resolved> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut config = Config::with_defaults();
    if let Some(v) = args.listen.or(file.listen) {
        config.listen = v;
    }
    config.issuer = args.issuer.or(file.issuer);
    if let Some(v) = args.data_dir.or(file.data_dir) {
        config.data_dir = v;
    }
    config.tls_cert = args.tls_cert.or(file.tls_cert);
    config.tls_key = args.tls_key.or(file.tls_key);
    if let Some(v) = args.max_body_bytes.or(file.max_body_bytes) {
        config.max_body_bytes = v;
    }
    config.extra_sgx_roots = if args.trust_roots.is_empty() {
        file.trust_roots.unwrap_or_default()
    } else {
        args.trust_roots
    };
    config.extra_snp_roots = if args.snp_trust_roots.is_empty() {
        file.snp_trust_roots.unwrap_or_default()
    } else {
        args.snp_trust_roots
    };
    config.amd_kds_url = args.amd_kds_url.or(file.amd_kds_url);
    config.require_snp_crl = args
        .require_snp_crl
        .or(file.require_snp_crl)
        .unwrap_or(false);
    config.database_url = args.database_url.or(file.database_url);
    config.database_schema = args.database_schema.or(file.database_schema);
    let secs = std::time::Duration::from_secs;
    if let Some(v) = args.max_connections.or(file.max_connections) {
        anyhow::ensure!(v > 0, "max_connections must be at least 1");
        config.limits.max_connections = v;
    }
    if let Some(v) = args.tls_handshake_timeout.or(file.tls_handshake_timeout) {
        config.limits.tls_handshake_timeout = secs(v.max(1));
    }
    if let Some(v) = args.header_timeout.or(file.header_timeout) {
        config.limits.header_read_timeout = secs(v.max(1));
    }
    if let Some(v) = args.body_timeout.or(file.body_timeout) {
        config.limits.body_read_timeout = secs(v.max(1));
    }
    if let Some(v) = args.idle_timeout.or(file.idle_timeout) {
        config.limits.idle_timeout = secs(v.max(1));
    }
    if let Some(v) = args
        .max_concurrent_attestations
        .or(file.max_concurrent_attestations)
    {
        anyhow::ensure!(v > 0, "max_concurrent_attestations must be at least 1");
        config.cpu.max_concurrent = v;
        config.cpu.max_queued = v.saturating_mul(aver_server::cpu::QUEUED_PER_THREAD);
    }
    if let Some(v) = args
        .max_queued_attestations
        .or(file.max_queued_attestations)
    {
        anyhow::ensure!(v > 0, "max_queued_attestations must be at least 1");
        config.cpu.max_queued = v;
    }
    if let Some(v) = args.queue_timeout.or(file.queue_timeout) {
        config.cpu.queue_timeout = secs(v);
    }
    if let Some(v) = args.attestation_deadline.or(file.attestation_deadline) {
        config.cpu.job_deadline = secs(v.max(1));
    }
    config.tpm_ek_roots = args.tpm_ek_roots.or(file.tpm_ek_roots);
    config.metrics_listen = args.metrics_listen.or(file.metrics_listen);
    config.collateral_url = args.collateral_url.or(file.collateral_url);
    config.collateral_ca = args.collateral_ca.or(file.collateral_ca);
    if let Some(v) = args.collateral_timeout.or(file.collateral_timeout) {
        config.collateral_timeout = secs(v.max(1));
    }
    config.require_collateral = args.require_collateral.or(file.require_collateral);
    config.tcb_baseline = args.tcb_baseline.or(file.tcb_baseline);
    let statuses = if args.accept_tcb_status.is_empty() {
        file.accept_tcb_status.unwrap_or_default()
    } else {
        args.accept_tcb_status
    };
    config.accepted_tcb_statuses = statuses
        .iter()
        .map(|s| {
            aver_attestation::dcap::TcbStatus::parse(s).ok_or_else(|| {
                anyhow::anyhow!("accept_tcb_status {s:?} is not one of Intel's TCB statuses")
            })
        })
        .collect::<Result<_>>()?;
    config.kek = kek_source(args.kek_file.or(file.kek_file))?;
    config.accepted_keks = if args.accept_kek_file.is_empty() {
        file.accept_kek_file.unwrap_or_default()
    } else {
        args.accept_kek_file
    };
    let issuer = args.admin_oidc_issuer.or(file.admin_oidc_issuer);
    if let Some(issuer) = issuer {
        let missing = |what: &str| anyhow::anyhow!("admin OIDC issuer set without {what}");
        config.admin_oidc = Some(aver_server::config::OidcConfig {
            issuer,
            audience: args
                .admin_oidc_audience
                .or(file.admin_oidc_audience)
                .ok_or_else(|| missing("admin_oidc_audience"))?,
            role: args
                .admin_oidc_role
                .or(file.admin_oidc_role)
                .ok_or_else(|| missing("admin_oidc_role"))?,
            jwks_file: args
                .admin_oidc_jwks
                .or(file.admin_oidc_jwks)
                .ok_or_else(|| missing("admin_oidc_jwks"))?,
        });
    }
    let from_file = |v: Option<String>, name: &str| -> Result<Option<u64>> {
        v.map(|t| parse_duration(&t).map_err(|e| anyhow::anyhow!("{name}: {e}")))
            .transpose()
    };
    let every = match args.rotate_keys_every {
        Some(v) => Some(v),
        None => from_file(file.rotate_keys_every, "rotate_keys_every")?,
    };
    let delay = match args.rotation_publish_delay {
        Some(v) => Some(v),
        None => from_file(file.rotation_publish_delay, "rotation_publish_delay")?,
    };
    config.key_rotation = match (every, delay) {
        (Some(every), delay) => Some(
            aver_server::rotation::Schedule::new(
                every,
                delay.unwrap_or(aver_server::keys::DEFAULT_PUBLISH_DELAY_SECS),
            )
            .map_err(|e| anyhow::anyhow!("rotate_keys_every: {e}"))?,
        ),
        (None, Some(_)) => {
            anyhow::bail!("rotation_publish_delay is set without rotate_keys_every")
        }
        (None, None) => None,
    };
    let io_threads = match args.io_threads.or(file.io_threads) {
        Some(0) => anyhow::bail!("io_threads must be at least 1"),
        Some(n) => n,
        None => default_io_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        ),
    };
    let io_scheduling = args
        .io_scheduling
        .or(file.io_scheduling)
        .unwrap_or_default();
    Ok(Resolved {
        config,
        io_threads,
        io_scheduling,
    })
}

/// The KEK in force: a file, else `AVER_KEK` (never a flag: command lines
/// are visible to every local user), else none.
pub fn kek_source(file: Option<PathBuf>) -> Result<Option<aver_server::kek::KekSource>> {
    use aver_server::kek::{KEK_ENV, KekSource};
    let value = std::env::var(KEK_ENV).ok().filter(|v| !v.trim().is_empty());
    Ok(match (file, value) {
        (Some(_), Some(_)) => {
            anyhow::bail!("give the KEK either as --kek-file or as {KEK_ENV}, not both")
        }
        (Some(path), None) => Some(KekSource::File(path)),
        (None, Some(v)) => Some(KekSource::Value(v)),
        (None, None) => None,
    })
}

/// `aver serve`: resolves the configuration, then runs the service on a
/// runtime with `io_threads` workers under `io_scheduling`.
pub fn main(args: ServeArgs) -> ExitCode {
    let result = resolve(args).and_then(|resolved| {
        let Resolved {
            config,
            io_threads,
            io_scheduling,
        } = resolved;
        let runtime = crate::io_sched::runtime(io_threads, io_scheduling)
            .context("cannot start the async runtime")?;
        runtime.block_on(run(config))
    });
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// The service on the current runtime, until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<ExitCode> {
    let service = Service::start(&config).await?;
    eprintln!(
        "Aver attestation service listening on https://{}",
        service.addr
    );
    eprintln!("  issuer:        {}", service.issuer);
    eprintln!("  data dir:      {}", config.data_dir.display());
    if let Some(addr) = service.metrics_addr {
        eprintln!("  metrics:       http://{addr}/metrics (also /healthz, /readyz)");
    }
    match &service.new_admin_key {
        Some(_) => eprintln!(
            "  admin key:     {} (created now; give it as a Bearer credential for /policies and /certificates)",
            config.data_dir.join("admin-key").display()
        ),
        None if config.data_dir.join("admin-key").exists() => eprintln!(
            "  admin key:     {} (created at first start)",
            config.data_dir.join("admin-key").display()
        ),
        None => eprintln!(
            "  admin key:     not in this data directory (the default provider was created by another replica or process; its admin key was written there)"
        ),
    }
    eprintln!(
        "  TLS cert:      {}{}",
        service.tls.cert.display(),
        if service.tls.generated {
            "  (self-signed; clients pass it as --ca)"
        } else {
            ""
        }
    );
    service.wait().await?;
    Ok(ExitCode::SUCCESS)
}
