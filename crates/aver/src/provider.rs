//! `aver provider create|list|configure|delete`: providers (tenants) are
//! managed directly on the store, like Azure's control plane; replicas pick
//! the change up within their refresh interval. Built with the `server`
//! feature (it links the store drivers).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use aver_server::Config;
use aver_server::store::ProviderRecord;
use clap::Args;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::files;

/// Where `aver provider` finds the store.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The service's data directory (SQLite).
    #[arg(long, env = "AVER_DATA_DIR", default_value = "aver-data")]
    pub data_dir: PathBuf,
    /// Or the PostgreSQL URL the service uses.
    #[arg(long, env = "AVER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The PostgreSQL schema the service uses, when it was started with
    /// one (`--database-schema`) [default: the connection's search path].
    #[arg(long, env = "AVER_DATABASE_SCHEMA", requires = "database_url")]
    pub database_schema: Option<String>,
}

impl StoreArgs {
    pub fn open(&self) -> Result<std::sync::Arc<dyn aver_server::store::Store>> {
        let mut config = Config::with_defaults();
        config.data_dir = self.data_dir.clone();
        config.database_url = self.database_url.clone();
        config.database_schema = self.database_schema.clone();
        Ok(aver_server::open_store(&config)?)
    }
}

pub fn provider_create(
    store: &StoreArgs,
    name: &str,
    signers: &[PathBuf],
    host: Option<String>,
) -> Result<ExitCode> {
    let store = store.open()?;
    let signers = read_certificates(signers)?;
    let record = ProviderRecord {
        name: name.to_string(),
        isolated: !signers.is_empty(),
        host: host.map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
        created_at: aver_client::unix_now() as i64,
    };
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let key = aver_server::load::create_provider(store.as_ref(), &record, &signers, &actor)
        .map_err(|e| anyhow!(e))?;
    eprintln!(
        "created provider {name} ({} mode{}); it answers at <base>/providers/{name} within a few seconds",
        if record.isolated {
            "isolated"
        } else {
            "admin-key"
        },
        if record.isolated {
            format!(", {} policy signer(s)", signers.len())
        } else {
            String::new()
        }
    );
    eprintln!("its admin key (shown once, stored hashed):");
    outln!("{key}");
    Ok(ExitCode::SUCCESS)
}

pub fn provider_list(store: &StoreArgs) -> Result<ExitCode> {
    let store = store.open()?;
    for p in store.providers()? {
        outln!(
            "{}\t{}\t{}",
            p.name,
            if p.isolated { "isolated" } else { "admin-key" },
            p.host.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `aver provider configure NAME [--min-signer-rsa-bits N]`: changes a
/// provider's settings in the store (replicas pick them up within their
/// refresh interval) and prints them.
pub fn provider_configure(
    store: &StoreArgs,
    name: &str,
    min_signer_rsa_bits: Option<usize>,
    accept_tcb_status: &[String],
    token_signing_alg: Option<String>,
    max_in_flight: Option<&str>,
) -> Result<ExitCode> {
    let store = store.open()?;
    if !store.providers()?.iter().any(|p| p.name == name) {
        bail!("no provider named {name}");
    }
    let mut settings =
        aver_server::state::ProviderSettings::from_json(&store.provider_settings(name)?)
            .map_err(|e| anyhow!(e))?;
    let mut changes = Vec::new();
    if let Some(bits) = min_signer_rsa_bits {
        settings.min_signer_rsa_bits = bits;
        changes.push(format!("min_signer_rsa_bits={bits}"));
    }
    if !accept_tcb_status.is_empty() {
        if accept_tcb_status.iter().any(|s| s == "default") {
            settings.accepted_tcb_statuses = None;
            changes.push("accepted_tcb_statuses=default".into());
        } else {
            let statuses = accept_tcb_status
                .iter()
                .map(|s| {
                    aver_attestation::dcap::TcbStatus::parse(s)
                        .ok_or_else(|| anyhow!("{s:?} is not one of Intel's TCB statuses"))
                })
                .collect::<Result<Vec<_>>>()?;
            changes.push(format!(
                "accepted_tcb_statuses={}",
                accept_tcb_status.join(",")
            ));
            settings.accepted_tcb_statuses = Some(statuses);
        }
    }
    if let Some(alg) = token_signing_alg {
        let alg = alg.to_ascii_uppercase();
        changes.push(format!("token_signing_alg={alg}"));
        settings.token_signing_alg = alg;
    }
    match max_in_flight {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("none") => {
            settings.max_in_flight = None;
            changes.push("max_in_flight=none".into());
        }
        Some(v) => {
            let n: usize = v.parse().map_err(|_| {
                anyhow!("--max-in-flight takes a whole number or `none`, not {v:?}")
            })?;
            settings.max_in_flight = Some(n);
            changes.push(format!("max_in_flight={n}"));
        }
    }
    settings.validate().map_err(|e| anyhow!(e))?;
    if !changes.is_empty() {
        let audit = aver_server::store::AuditRecord {
            at: aver_client::unix_now() as i64,
            provider: name.to_string(),
            actor: format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            ),
            action: "provider.configure".into(),
            target: name.to_string(),
            policy_hash: None,
            detail: changes.join(", "),
        };
        store.set_provider_settings(name, &serde_json::to_string(&settings)?, &audit)?;
        eprintln!("updated provider {name}: {}", changes.join(", "));
        if changes.iter().any(|c| c.starts_with("token_signing_alg")) {
            eprintln!(
                "the algorithm applies to the next key: run `aver keys rotate --provider {name}` to make one"
            );
        }
    }
    outln!("{}", serde_json::to_string_pretty(&settings)?);
    Ok(ExitCode::SUCCESS)
}

pub fn provider_delete(store: &StoreArgs, name: &str) -> Result<ExitCode> {
    if name == aver_server::DEFAULT_PROVIDER {
        bail!("the default provider cannot be deleted");
    }
    let store = store.open()?;
    let audit = aver_server::store::AuditRecord {
        at: aver_client::unix_now() as i64,
        provider: name.to_string(),
        actor: format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ),
        action: "provider.delete".into(),
        target: name.to_string(),
        policy_hash: None,
        detail: String::new(),
    };
    if store.delete_provider(name, &audit)? {
        eprintln!("deleted provider {name}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no provider named {name}");
        Ok(ExitCode::from(2))
    }
}

/// Every certificate of PEM files.
pub fn read_certificates(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for path in paths {
        let bytes = files::read(path)?;
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            out.push(
                cert.map_err(|e| anyhow!("{}: {e}", path.display()))?
                    .to_vec(),
            );
        }
    }
    Ok(out)
}
