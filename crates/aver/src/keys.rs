//! `aver keys list|rotate|retire`: a provider's token-signing keys, through
//! the service's admin API (`--url` with an admin credential) or directly
//! on the store (`--data-dir` / `--database-url`, like `aver provider`;
//! replicas pick the change up within their refresh interval). See
//! docs/management.md, "Keys".

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin::Connection;
use crate::provider::StoreArgs;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the keys: kid, algorithm, state (next, signing, published,
    /// retired, expired) and their times.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Make a new key of the provider's token_signing_alg: published in
    /// /certs now, signing after the publish delay.
    Rotate {
        /// Seconds between publishing the key and signing with it; keep it
        /// above the replicas' refresh interval and relying parties' JWKS
        /// caching [default: 300]. 0 signs at once (a compromised key).
        #[arg(long)]
        publish_delay: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Make a key held in a PKCS#11 token (an HSM) a key of the provider:
    /// the token signs its self-signed certificate, the store keeps the URI
    /// (sealed under the KEK), and every replica signs through its own
    /// module and PIN; published now, signing after the publish delay.
    /// Works on the store (not through --url): the module and PIN must be
    /// on this machine. See docs/management.md, "HSM signing (PKCS#11)".
    ImportHsm {
        /// RFC 7512 URI of the private key, e.g.
        /// 'pkcs11:token=aver;object=signing?pin-source=file:/etc/aver/hsm-pin'.
        #[arg(long)]
        uri: String,
        /// PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so); stored in
        /// the URI as module-path. A replica's AVER_PKCS11_MODULE overrides it.
        #[arg(long)]
        module: Option<String>,
        /// Seconds between publishing the key and signing with it [default: 300].
        #[arg(long)]
        publish_delay: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Re-seal every signing key and provider secret of every provider
    /// under the KEK in force (--kek-file), opening them with it or an
    /// --accept-kek-file: step 3 of a KEK rotation, run once every replica
    /// has the new KEK in force. Works on the store. Exit code 2 when some
    /// record is under a KEK not given (listed). See docs/management.md,
    /// "Rotating the KEK".
    Rewrap {
        #[command(flatten)]
        target: Target,
    },
    /// Retire a key: it stops signing now and stays published until every
    /// token it signed has expired (8 h + 15 min). Refused for the only key
    /// that can sign.
    Retire {
        kid: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Through the admin API (`--url`) or on the store.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Service base URL (another provider: `https://host/providers/NAME`);
    /// without it, the store is changed directly.
    #[arg(long, env = "AVER_URL")]
    url: Option<String>,
    /// CA certificate (PEM) for the service's TLS certificate.
    #[arg(long, env = "AVER_CA", requires = "url")]
    ca: Option<PathBuf>,
    /// Admin credential (an admin key, or an OIDC JWT), or `@FILE`.
    #[arg(long, env = "AVER_ADMIN_KEY", requires = "url")]
    admin_key: Option<String>,
    /// The service's public URL (its token issuer), when --url reaches it
    /// another way.
    #[arg(long, env = "AVER_ISSUER", requires = "url")]
    issuer: Option<String>,
    /// The provider (store mode).
    #[arg(long, default_value = aver_server::DEFAULT_PROVIDER)]
    provider: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Key-encryption key file (store mode, rotate); or AVER_KEK. See
    /// `aver serve --help`.
    #[arg(long, env = "AVER_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// KEK files that open keys but never seal (store mode; repeatable):
    /// see `aver serve --help`.
    #[arg(long, env = "AVER_ACCEPT_KEK_FILE", value_delimiter = ',')]
    accept_kek_file: Vec<PathBuf>,
}

impl Target {
    /// The KEK set for store mode.
    fn kek(&self, store: &dyn aver_server::store::Store) -> Result<aver_server::kek::Kek> {
        aver_server::kek::resolve_with_accepted(
            crate::serve::kek_source(self.kek_file.clone())?.as_ref(),
            &self.accept_kek_file,
            &self.store.data_dir,
            self.store.database_url.is_some(),
            store,
        )
        .map_err(|e| anyhow!(e))
    }

    fn connection(&self) -> Result<Option<Connection>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        Ok(Some(Connection {
            url: url.clone(),
            ca: self.ca.clone(),
            admin_key: self
                .admin_key
                .clone()
                .ok_or_else(|| anyhow!("--url needs --admin-key"))?,
            issuer: self.issuer.clone(),
        }))
    }
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

pub async fn run(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::List { target } => {
            let keys = match target.connection()? {
                Some(c) => c.admin()?.keys().await?,
                None => on_store(|| {
                    let store = target.store.open()?;
                    let stored = store.signing_keys(&target.provider)?;
                    Ok(aver_server::keys::describe(
                        &stored,
                        aver_client::unix_now(),
                    ))
                })?,
            };
            print_keys(&keys);
        }
        KeysCommand::Rotate {
            publish_delay,
            target,
        } => match target.connection()? {
            Some(c) => {
                let claims = c.admin()?.rotate_key(publish_delay).await?;
                crate::admin::print_claims(&claims);
            }
            None => on_store(|| {
                let store = target.store.open()?;
                let kek = target.kek(store.as_ref())?;
                let settings = aver_server::state::ProviderSettings::from_json(
                    &store.provider_settings(&target.provider)?,
                )
                .map_err(|e| anyhow!(e))?;
                let row = aver_server::keys::rotate(
                    store.as_ref(),
                    &kek,
                    &target.provider,
                    settings.token_alg(),
                    aver_client::unix_now(),
                    publish_delay.unwrap_or(aver_server::keys::DEFAULT_PUBLISH_DELAY_SECS),
                    &actor(),
                )?;
                eprintln!(
                    "new {} key {} for provider {}: published within the replicas' refresh interval, signing from {}",
                    settings.token_alg().name(),
                    row.kid,
                    target.provider,
                    row.not_before_signing
                );
                outln!("{}", row.kid);
                Ok(())
            })?,
        },
        KeysCommand::Rewrap { target } => {
            if target.url.is_some() {
                return Err(anyhow!(
                    "rewrap works on the store (--data-dir / --database-url), not through --url: it needs the KEKs"
                ));
            }
            let report = on_store(|| {
                let store = target.store.open()?;
                let kek = target.kek(store.as_ref())?;
                aver_server::kek::rewrap(&kek, store.as_ref()).map_err(|e| anyhow!(e))
            })?;
            crate::files::print_json(&serde_json::to_value(&report)?);
            if !report.unopenable.is_empty() {
                eprintln!(
                    "{} record(s) are under a KEK that was not given (--accept-kek-file): they were left as they are",
                    report.unopenable.len()
                );
                return Ok(ExitCode::from(2));
            }
            if report.raced > 0 {
                eprintln!(
                    "{} record(s) changed while being re-sealed: run rewrap again",
                    report.raced
                );
                return Ok(ExitCode::from(2));
            }
        }
        KeysCommand::ImportHsm {
            uri,
            module,
            publish_delay,
            target,
        } => {
            if target.url.is_some() {
                return Err(anyhow!(
                    "import-hsm works on the store (--data-dir / --database-url), not through --url: the PKCS#11 module and PIN must be on this machine"
                ));
            }
            let uri = with_module(&uri, module.as_deref());
            let row = on_store(|| {
                let store = target.store.open()?;
                let kek = target.kek(store.as_ref())?;
                Ok(aver_server::keys::import_hsm(
                    store.as_ref(),
                    &kek,
                    &target.provider,
                    &uri,
                    aver_client::unix_now(),
                    publish_delay.unwrap_or(aver_server::keys::DEFAULT_PUBLISH_DELAY_SECS),
                    &actor(),
                )?)
            })?;
            eprintln!(
                "PKCS#11 key {} for provider {}: published within the replicas' refresh interval, signing from {}; every replica needs the module and the PIN",
                row.kid, target.provider, row.not_before_signing
            );
            outln!("{}", row.kid);
        }
        KeysCommand::Retire { kid, target } => match target.connection()? {
            Some(c) => {
                let claims = c.admin()?.retire_key(&kid).await?;
                crate::admin::print_claims(&claims);
            }
            None => {
                let row = on_store(|| {
                    let store = target.store.open()?;
                    Ok(aver_server::keys::retire(
                        store.as_ref(),
                        &target.provider,
                        &kid,
                        aver_client::unix_now(),
                        &actor(),
                    )?)
                })?;
                eprintln!(
                    "retired key {} of provider {}: published until {}",
                    row.kid,
                    target.provider,
                    row.retired_at
                        .map(|r| r.saturating_add(aver_server::keys::RETIRED_PUBLISH_SECS))
                        .unwrap_or_default()
                );
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs store work outside the async runtime's context: the PostgreSQL
/// client blocks on a runtime of its own, which cannot start on a thread
/// that drives another (it panicked there before).
fn on_store<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    tokio::task::block_in_place(f)
}

/// `uri` with `module-path=module` added to its query (unless it has one).
fn with_module(uri: &str, module: Option<&str>) -> String {
    let Some(module) = module else {
        return uri.to_string();
    };
    if uri.contains("module-path=") {
        return uri.to_string();
    }
    let mut encoded = String::new();
    for c in module.chars() {
        match c {
            '%' | ' ' | '&' | ';' | '?' | '#' => {
                encoded.push_str(&format!("%{:02X}", u32::from(c)))
            }
            _ => encoded.push(c),
        }
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}module-path={encoded}")
}

/// One line per key: kid, alg, state, created, signing from, retired,
/// published until (Unix seconds; `-` when not applicable).
fn print_keys(keys: &[Value]) {
    let field = |k: &Value, name: &str| match k.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".into(),
    };
    outln!("kid\talg\tstate\tcreated_at\tnot_before_signing\tretired_at\tpublished_until");
    for k in keys {
        outln!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            field(k, "kid"),
            field(k, "alg"),
            field(k, "state"),
            field(k, "created_at"),
            field(k, "not_before_signing"),
            field(k, "retired_at"),
            field(k, "published_until"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::with_module;

    #[test]
    fn module_path_is_added_to_the_uri_once() {
        assert_eq!(
            with_module("pkcs11:object=k", Some("/usr/lib/my lib.so")),
            "pkcs11:object=k?module-path=/usr/lib/my%20lib.so"
        );
        assert_eq!(
            with_module("pkcs11:object=k?pin-source=file:/p", Some("/m.so")),
            "pkcs11:object=k?pin-source=file:/p&module-path=/m.so"
        );
        assert_eq!(
            with_module("pkcs11:object=k?module-path=/a.so", Some("/b.so")),
            "pkcs11:object=k?module-path=/a.so"
        );
        assert_eq!(with_module("pkcs11:object=k", None), "pkcs11:object=k");
    }
}
