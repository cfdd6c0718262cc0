//! The PostgreSQL store, for several replicas of the service over one
//! database.
//!
//! The embedded [`SqliteStore`](super::SqliteStore) ties the state to one
//! machine. With this backend any number of replicas share one database:
//! each keeps its in-memory view (providers, policies, signers, keys) and
//! polls [`Store::generation`]; a value different from the one it loaded
//! means another replica committed a change, and it reloads. The semantics
//! are exactly those of the SQLite store (the conformance suite in
//! `tests/store_conformance.rs` runs against both).
//!
//! # Transactions and isolation
//!
//! Every mutation is one `READ COMMITTED` transaction whose *first*
//! statement increments the generation row. The row lock that `UPDATE` takes
//! is held until commit or rollback, so mutations from every replica are
//! serialised on it, as SQLite's `BEGIN IMMEDIATE` serialises writers, and
//! since `READ COMMITTED` takes a fresh snapshot for each statement, every
//! later statement of the transaction sees everything committed before it.
//! The read-then-write decisions (does the provider exist, is the host
//! taken, is this the provider's last signer, is the secret already there)
//! therefore cannot race with another replica.
//!
//! We chose that explicit lock over `SERIALIZABLE`: every mutation writes the
//! generation row anyway, so under `SERIALIZABLE` two concurrent mutations
//! would always conflict and one would abort with a serialisation failure,
//! needing a retry loop; with the lock the second one simply waits. The
//! mutations are rare administrative operations, so one write lock costs
//! nothing that matters, and reads take no lock at all. The isolation level
//! is set explicitly, so a server-side `default_transaction_isolation` does
//! not change this. `lock_timeout` (30 s) bounds the wait, and
//! `idle_in_transaction_session_timeout` (60 s) makes the server release the
//! lock of a replica that vanished mid-transaction.
//!
//! A failed mutation (`Conflict`, `NotFound`, a database error) rolls back
//! entirely: no row, no audit record, no generation bump.
//!
//! # Connection
//!
//! One connection behind a mutex (the store's methods are blocking and are
//! called from `spawn_blocking`). When the connection is found closed, or an
//! operation fails because it broke (server restart, failover, a terminated
//! session), the store opens a new connection, with the same session
//! settings and `search_path`, and retries the operation once. Retrying is
//! safe because a transaction cut off before `COMMIT` was rolled back by the
//! server; a connection lost *during* `COMMIT` leaves the outcome unknown, so
//! that case is not retried but reported as [`StoreError::Backend`] (the
//! caller reloads from the store, and the generation tells what happened).
//!
//! # TLS
//!
//! TLS to the database is not supported yet: the connection is made with
//! `NoTls`, and a URL asking for `sslmode=require` is refused rather than
//! silently downgraded. Connect over a local Unix socket
//! (`postgres://user@%2Fvar%2Frun%2Fpostgresql/db`) or loopback, or through a
//! TLS-terminating proxy running next to the service (for example pgbouncer
//! or stunnel with TLS on the server side).
//!
//! # Schema
//!
//! The tables mirror the SQLite schema (`BYTEA` for blobs, `BIGINT` for
//! times, `BIGSERIAL` for audit ids) and are created with
//! `CREATE TABLE IF NOT EXISTS` under an advisory lock, so replicas starting
//! together do not race. Differences, none visible through [`Store`]:
//!
//! * `signers` is keyed by the SHA-256 of the certificate rather than the
//!   DER itself: a B-tree entry is limited to about 2.7 kB, which a large
//!   certificate can exceed.
//! * `signing_keys` and `signers` have a `seq BIGSERIAL` column, the
//!   insertion-order tie-break SQLite gets from `rowid`.
//! * `audit` has an index on `(provider, id)`.
//!
//! Text ordering uses the `"C"` collation, as SQLite compares bytes. The role
//! needs the right to create tables on first start (and, with
//! [`PostgresStore::connect_with_schema`], to create the schema if it does
//! not exist yet).

use std::sync::Mutex;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::{Client, Config, IsolationLevel, NoTls, Row, Transaction};

use super::{
    AuditRecord, CollateralRecord, PolicyRecord, ProviderRecord, SignerRemoval, Store, StoreError,
    StoredKey,
};

/// The PostgreSQL store. See the [module documentation](self).
pub struct PostgresStore {
    config: Config,
    /// Schema put first on the `search_path` of every connection.
    schema: Option<String>,
    /// `None` only while being dropped (see the `Drop` impl).
    client: Mutex<Option<Client>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta (key, value) VALUES ('generation', 0) ON CONFLICT (key) DO NOTHING;
CREATE TABLE IF NOT EXISTS providers (
    name TEXT PRIMARY KEY,
    isolated BOOLEAN NOT NULL,
    host TEXT UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_keys (
    seq BIGSERIAL NOT NULL,
    provider TEXT NOT NULL,
    kid TEXT NOT NULL PRIMARY KEY,
    pkcs8 BYTEA NOT NULL,
    certificate BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    not_before_signing BIGINT,
    retired_at BIGINT
);
ALTER TABLE signing_keys ADD COLUMN IF NOT EXISTS not_before_signing BIGINT;
ALTER TABLE signing_keys ADD COLUMN IF NOT EXISTS retired_at BIGINT;
CREATE TABLE IF NOT EXISTS secrets (
    provider TEXT NOT NULL,
    name TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (provider, name)
);
CREATE TABLE IF NOT EXISTS collateral (
    key TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    body BYTEA NOT NULL,
    source TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE TABLE IF NOT EXISTS provider_settings (
    provider TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    provider TEXT NOT NULL,
    attestation_type TEXT NOT NULL,
    jws TEXT NOT NULL,
    text TEXT NOT NULL,
    signer TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider, attestation_type)
);
CREATE TABLE IF NOT EXISTS signers (
    seq BIGSERIAL NOT NULL,
    provider TEXT NOT NULL,
    der_sha256 BYTEA NOT NULL,
    der BYTEA NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (provider, der_sha256)
);
CREATE TABLE IF NOT EXISTS admin_keys (
    provider TEXT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (provider, hash)
);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    provider TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    policy_hash TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_provider_id ON audit (provider, id);
";

/// Settings of every session (see the module documentation).
const SESSION: &str = "SET lock_timeout = '30s';
SET idle_in_transaction_session_timeout = '60s';
SET client_min_messages = warning;";

/// Advisory-lock key serialising schema creation ("averSCHM").
const SCHEMA_LOCK: i64 = 0x6176_6572_5343_484d;

/// Connect timeout used when the URL does not set one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one attempt at an operation failed.
enum Fail {
    /// A decision of the store (`Conflict`, `NotFound`): returned as is.
    Refused(StoreError),
    /// A database error before any `COMMIT` was sent: nothing was applied.
    Db(postgres::Error),
    /// `COMMIT` itself failed.
    Commit(postgres::Error),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Maps a database error: unique violations to `Conflict`, the rest to
/// `Backend`.
fn store_error(e: postgres::Error) -> StoreError {
    if is_unique_violation(&e) {
        let table = e.as_db_error().and_then(|d| d.table()).unwrap_or("the");
        return StoreError::Conflict(format!("a {table} row with this key"));
    }
    StoreError::Backend(e.to_string())
}

/// True when `e` means the connection is gone (rather than a statement
/// having failed on a working connection).
fn is_broken(client: &Client, e: &postgres::Error) -> bool {
    if client.is_closed() || e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_DOES_NOT_EXIST,
        ]
        .contains(code);
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn provider_exists(tx: &mut Transaction<'_>, name: &str) -> Result<bool, postgres::Error> {
    Ok(tx
        .query_opt("SELECT 1 FROM providers WHERE name = $1", &[&name])?
        .is_some())
}

fn insert_key(tx: &mut Transaction<'_>, provider: &str, key: &StoredKey) -> Result<(), Fail> {
    tx.execute(
        "INSERT INTO signing_keys
           (provider, kid, pkcs8, certificate, created_at, not_before_signing, retired_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &provider,
            &key.kid,
            &key.pkcs8,
            &key.certificate,
            &key.created_at,
            &key.not_before_signing,
            &key.retired_at,
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            Fail::Refused(StoreError::Conflict(format!("signing key {}", key.kid)))
        } else {
            Fail::Db(e)
        }
    })?;
    Ok(())
}

fn bytes_column(rows: Vec<Row>) -> Result<Vec<Vec<u8>>, postgres::Error> {
    rows.iter().map(|r| r.try_get(0)).collect()
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a
    /// `key=value` string) and creates the tables if needed, in the first
    /// schema of the role's default `search_path`.
    ///
    /// TLS is not supported yet (see the module documentation): a URL with
    /// `sslmode=require` is refused.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::setup(url, None)
    }

    /// Like [`PostgresStore::connect`], but keeps everything in `schema`,
    /// created if needed and put on the `search_path` of every connection
    /// (tests use it to isolate runs; deployments may use it to share a
    /// database).
    pub fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::setup(url, Some(schema))
    }

    fn setup(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        // The parse error does not echo the URL, which may hold a password.
        let mut config: Config = url.parse().map_err(|e| {
            StoreError::Backend(format!("invalid PostgreSQL connection string: {e}"))
        })?;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(StoreError::Backend(
                "TLS to PostgreSQL is not supported yet: connect over a local socket or through a \
                 TLS-terminating proxy, without sslmode=require"
                    .into(),
            ));
        }
        config.ssl_mode(SslMode::Disable);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let schema = schema.map(str::to_owned);
        let client = open(&config, schema.as_deref())?;
        let store = PostgresStore {
            config,
            schema,
            client: Mutex::new(Some(client)),
        };
        store.create_schema()?;
        Ok(store)
    }

    fn create_schema(&self) -> Result<(), StoreError> {
        self.run(|client| {
            let mut tx = client.transaction()?;
            tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))?;
            if let Some(schema) = &self.schema {
                // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE
                // right on the database even when the schema exists.
                let exists = tx
                    .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema])?
                    .is_some();
                if !exists {
                    tx.batch_execute(&format!("CREATE SCHEMA {}", quote_ident(schema)))?;
                }
            }
            tx.batch_execute(SCHEMA)?;
            tx.commit().map_err(Fail::Commit)
        })
    }

    /// Runs `op` on the connection, reconnecting and retrying once when the
    /// connection is broken (see the module documentation).
    fn run<T>(&self, mut op: impl FnMut(&mut Client) -> Result<T, Fail>) -> Result<T, StoreError> {
        let mut slot = self.client.lock().map_err(|_| StoreError::Poisoned)?;
        if slot.as_ref().is_none_or(Client::is_closed) {
            tracing::warn!("PostgreSQL connection closed; reconnecting");
            *slot = Some(open(&self.config, self.schema.as_deref())?);
        }
        let Some(client) = slot.as_mut() else {
            return Err(StoreError::Unavailable("no PostgreSQL connection".into()));
        };
        let lost = match op(client) {
            Ok(out) => return Ok(out),
            Err(Fail::Db(e)) if is_broken(client, &e) => e,
            Err(fail) => return Err(self.failure(client, fail)),
        };
        tracing::warn!(error = %lost, "PostgreSQL connection lost; reconnecting and retrying once");
        *client = open(&self.config, self.schema.as_deref())
            .map_err(|e| StoreError::Unavailable(format!("{lost}; reconnecting failed: {e}")))?;
        op(client).map_err(|fail| self.failure(client, fail))
    }

    /// The error to return for a failed attempt that is not retried.
    fn failure(&self, client: &mut Client, fail: Fail) -> StoreError {
        match fail {
            Fail::Refused(e) => e,
            Fail::Db(e) => store_error(e),
            Fail::Commit(e) if is_broken(client, &e) => {
                // Best effort, so that the next call starts on a working
                // connection; if it fails, the next call tries again.
                if let Ok(fresh) = open(&self.config, self.schema.as_deref()) {
                    *client = fresh;
                }
                StoreError::Unavailable(format!(
                    "connection to PostgreSQL lost while committing; the change may or may not \
                     have been applied: {e}"
                ))
            }
            Fail::Commit(e) => store_error(e),
        }
    }

    fn read<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.run(|client| f(client).map_err(Fail::Db))
    }

    /// Runs `f` in a transaction that first takes the write lock by bumping
    /// the generation, then records `audit`; commits only if `f` succeeds.
    fn write<T>(
        &self,
        audit: Option<&AuditRecord>,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        self.run(|client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()?;
            let bumped = tx.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
                &[],
            )?;
            if bumped != 1 {
                return Err(Fail::Refused(StoreError::Backend(
                    "the generation row is missing from table meta".into(),
                )));
            }
            let out = f(&mut tx)?;
            if let Some(a) = audit {
                tx.execute(
                    "INSERT INTO audit (at, provider, actor, action, target, policy_hash, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &a.at,
                        &a.provider,
                        &a.actor,
                        &a.action,
                        &a.target,
                        &a.policy_hash,
                        &a.detail,
                    ],
                )?;
            }
            tx.commit().map_err(Fail::Commit)?;
            Ok(out)
        })
    }
}

impl Drop for PostgresStore {
    /// `postgres::Client` blocks on its own runtime when dropped, which
    /// panics inside an async runtime — where a service's last handle to
    /// its store is usually dropped (shutdown after SIGTERM, tests). The
    /// connection is then closed on a plain thread.
    fn drop(&mut self) {
        let client = match self.client.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(client) = client {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(client)).join();
            } else {
                drop(client);
            }
        }
    }
}

/// Opens a connection and applies the session settings.
fn open(config: &Config, schema: Option<&str>) -> Result<Client, StoreError> {
    let mut client = config
        .connect(NoTls)
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
    client.batch_execute(SESSION).map_err(store_error)?;
    if let Some(schema) = schema {
        client
            .batch_execute(&format!("SET search_path TO {}", quote_ident(schema)))
            .map_err(store_error)?;
    }
    Ok(client)
}

impl Store for PostgresStore {
    fn generation(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_one("SELECT value FROM meta WHERE key = 'generation'", &[])?
                .try_get(0)
        })
    }

    fn providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT name, isolated, host, created_at FROM providers
                 ORDER BY created_at, name COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ProviderRecord {
                    name: r.try_get(0)?,
                    isolated: r.try_get(1)?,
                    host: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                })
            })
            .collect()
        })
    }

    fn create_provider(
        &self,
        p: &ProviderRecord,
        signers: &[Vec<u8>],
        admin_key_hash: &[u8],
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(Some(audit), |tx| {
            if provider_exists(tx, &p.name)? {
                return Err(Fail::Refused(StoreError::Conflict(format!("provider {}", p.name))));
            }
            tx.execute(
                "INSERT INTO providers (name, isolated, host, created_at) VALUES ($1, $2, $3, $4)",
                &[&p.name, &p.isolated, &p.host, &p.created_at],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Fail::Refused(StoreError::Conflict(format!("host {:?}", p.host)))
                } else {
                    Fail::Db(e)
                }
            })?;
            for der in signers {
                tx.execute(
                    "INSERT INTO signers (provider, der_sha256, der, added_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&p.name, &sha256(der), der, &p.created_at],
                )?;
            }
            tx.execute(
                "INSERT INTO admin_keys (provider, hash) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&p.name, &admin_key_hash],
            )?;
            Ok(())
        })
    }

    fn delete_provider(&self, name: &str, audit: &AuditRecord) -> Result<bool, StoreError> {
        self.write(Some(audit), |tx| {
            if !provider_exists(tx, name)? {
                return Ok(false);
            }
            for table in [
                "signing_keys",
                "secrets",
                "provider_settings",
                "policies",
                "signers",
                "admin_keys",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE provider = $1"),
                    &[&name],
                )?;
            }
            tx.execute("DELETE FROM providers WHERE name = $1", &[&name])?;
            Ok(true)
        })
    }

    fn signing_keys(&self, provider: &str) -> Result<Vec<StoredKey>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT kid, pkcs8, certificate, created_at, not_before_signing, retired_at
                 FROM signing_keys WHERE provider = $1 ORDER BY created_at DESC, seq DESC",
                &[&provider],
            )?
            .iter()
            .map(|r| {
                let created_at: i64 = r.try_get(3)?;
                Ok(StoredKey {
                    kid: r.try_get(0)?,
                    pkcs8: r.try_get(1)?,
                    certificate: r.try_get(2)?,
                    created_at,
                    not_before_signing: r.try_get::<_, Option<i64>>(4)?.unwrap_or(created_at),
                    retired_at: r.try_get(5)?,
                })
            })
            .collect()
        })
    }

    fn insert_signing_key(&self, provider: &str, key: &StoredKey) -> Result<(), StoreError> {
        self.write(None, |tx| insert_key(tx, provider, key))
    }

    fn add_signing_key(
        &self,
        provider: &str,
        key: &StoredKey,
        audit: &AuditRecord,
        after: Option<&str>,
    ) -> Result<(), StoreError> {
        // `write` first bumps the generation row, which every write locks:
        // a concurrent rotation has committed (and is seen below) or waits.
        self.write(Some(audit), |tx| {
            if !provider_exists(tx, provider)? {
                return Err(Fail::Refused(StoreError::NotFound(format!(
                    "provider {provider}"
                ))));
            }
            if let Some(expected) = after {
                let newest: Option<String> = tx
                    .query_opt(
                        "SELECT kid FROM signing_keys WHERE provider = $1 AND retired_at IS NULL
                         ORDER BY created_at DESC, seq DESC LIMIT 1",
                        &[&provider],
                    )?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                if newest.as_deref() != Some(expected) {
                    return Err(Fail::Refused(super::newest_key_changed(provider, expected)));
                }
            }
            insert_key(tx, provider, key)
        })
    }

    fn retire_signing_key(
        &self,
        provider: &str,
        kid: &str,
        at: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let result = self.write(Some(audit), |tx| {
            let n = tx.execute(
                "UPDATE signing_keys SET retired_at = $3
                 WHERE provider = $1 AND kid = $2 AND retired_at IS NULL",
                &[&provider, &kid, &at],
            )?;
            if n == 0 {
                // Nothing changed: roll back rather than audit a no-op.
                return Err(Fail::Refused(StoreError::NotFound(format!(
                    "unretired key {kid}"
                ))));
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn replace_key_material(
        &self,
        provider: &str,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.write(None, |tx| {
            Ok(tx.execute(
                "UPDATE signing_keys SET pkcs8 = $4 WHERE provider = $1 AND kid = $2 AND pkcs8 = $3",
                &[&provider, &kid, &old, &new],
            )? == 1)
        })
    }

    fn secrets(&self, provider: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT name, value FROM secrets WHERE provider = $1 ORDER BY name COLLATE \"C\"",
                &[&provider],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn replace_secret(
        &self,
        provider: &str,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.write(None, |tx| {
            Ok(tx.execute(
                "UPDATE secrets SET value = $4 WHERE provider = $1 AND name = $2 AND value = $3",
                &[&provider, &name, &old, &new],
            )? == 1)
        })
    }

    fn secret_or_insert(
        &self,
        provider: &str,
        name: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.write(None, |tx| {
            tx.execute(
                "INSERT INTO secrets (provider, name, value) VALUES ($1, $2, $3)
                 ON CONFLICT (provider, name) DO NOTHING",
                &[&provider, &name, &value],
            )?;
            Ok(tx
                .query_one(
                    "SELECT value FROM secrets WHERE provider = $1 AND name = $2",
                    &[&provider, &name],
                )?
                .try_get(0)?)
        })
    }

    fn provider_settings(&self, provider: &str) -> Result<String, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT settings FROM provider_settings WHERE provider = $1",
                &[&provider],
            )?
            .map(|r| r.try_get::<_, String>(0))
            .transpose()?
            .unwrap_or_else(|| "{}".into()))
        })
    }

    fn set_provider_settings(
        &self,
        provider: &str,
        settings: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(Some(audit), |tx| {
            if !provider_exists(tx, provider)? {
                return Err(Fail::Refused(StoreError::NotFound(format!(
                    "provider {provider}"
                ))));
            }
            tx.execute(
                "INSERT INTO provider_settings (provider, settings) VALUES ($1, $2)
                 ON CONFLICT (provider) DO UPDATE SET settings = EXCLUDED.settings",
                &[&provider, &settings],
            )?;
            Ok(())
        })
    }

    fn policies(&self, provider: &str) -> Result<Vec<PolicyRecord>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT attestation_type, jws, text, signer, updated_at FROM policies
                 WHERE provider = $1 ORDER BY attestation_type COLLATE \"C\"",
                &[&provider],
            )?
            .iter()
            .map(|r| {
                Ok(PolicyRecord {
                    attestation_type: r.try_get(0)?,
                    jws: r.try_get(1)?,
                    text: r.try_get(2)?,
                    signer: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                })
            })
            .collect()
        })
    }

    fn set_policy(
        &self,
        provider: &str,
        p: &PolicyRecord,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(Some(audit), |tx| {
            if !provider_exists(tx, provider)? {
                return Err(Fail::Refused(StoreError::NotFound(format!(
                    "provider {provider}"
                ))));
            }
            tx.execute(
                "INSERT INTO policies (provider, attestation_type, jws, text, signer, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (provider, attestation_type) DO UPDATE SET
                   jws = excluded.jws, text = excluded.text, signer = excluded.signer,
                   updated_at = excluded.updated_at",
                &[
                    &provider,
                    &p.attestation_type,
                    &p.jws,
                    &p.text,
                    &p.signer,
                    &p.updated_at,
                ],
            )?;
            Ok(())
        })
    }

    fn remove_policy(
        &self,
        provider: &str,
        attestation_type: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(Some(audit), |tx| {
            tx.execute(
                "DELETE FROM policies WHERE provider = $1 AND attestation_type = $2",
                &[&provider, &attestation_type],
            )?;
            Ok(())
        })
    }

    fn signers(&self, provider: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|c| {
            bytes_column(c.query(
                "SELECT der FROM signers WHERE provider = $1 ORDER BY added_at, seq",
                &[&provider],
            )?)
        })
    }

    fn add_signer(
        &self,
        provider: &str,
        der: &[u8],
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        self.write(Some(audit), |tx| {
            let n = tx.execute(
                "INSERT INTO signers (provider, der_sha256, der, added_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&provider, &sha256(der), &der, &audit.at],
            )?;
            Ok(n == 1)
        })
    }

    fn remove_signer(
        &self,
        provider: &str,
        der: &[u8],
        audit: &AuditRecord,
    ) -> Result<SignerRemoval, StoreError> {
        let hash = sha256(der);
        // The decision below is safe from races: the write lock is held.
        self.write(Some(audit), |tx| {
            let present = tx
                .query_opt(
                    "SELECT 1 FROM signers WHERE provider = $1 AND der_sha256 = $2",
                    &[&provider, &hash],
                )?
                .is_some();
            if !present {
                return Ok(SignerRemoval::Absent);
            }
            let count: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM signers WHERE provider = $1",
                    &[&provider],
                )?
                .try_get(0)?;
            if count <= 1 {
                return Ok(SignerRemoval::LastSigner);
            }
            tx.execute(
                "DELETE FROM signers WHERE provider = $1 AND der_sha256 = $2",
                &[&provider, &hash],
            )?;
            Ok(SignerRemoval::Removed)
        })
    }

    fn admin_key_hashes(&self, provider: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|c| {
            bytes_column(c.query(
                "SELECT hash FROM admin_keys WHERE provider = $1 ORDER BY hash",
                &[&provider],
            )?)
        })
    }

    fn add_admin_key(
        &self,
        provider: &str,
        hash: &[u8],
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(Some(audit), |tx| {
            tx.execute(
                "INSERT INTO admin_keys (provider, hash) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&provider, &hash],
            )?;
            Ok(())
        })
    }

    fn audit_log(&self, provider: &str, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            c.query(
                "SELECT at, provider, actor, action, target, policy_hash, detail FROM audit
                 WHERE provider = $1 ORDER BY id DESC LIMIT $2",
                &[&provider, &limit],
            )?
            .iter()
            .map(|r| {
                Ok(AuditRecord {
                    at: r.try_get(0)?,
                    provider: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    policy_hash: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
        })
    }

    fn collateral(&self, key: &str) -> Result<Option<CollateralRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                "SELECT key, sha256, body, source, fetched_at, expires_at FROM collateral WHERE key = $1",
                &[&key],
            )?
            .map(|r| {
                Ok(CollateralRecord {
                    key: r.try_get(0)?,
                    sha256: r.try_get(1)?,
                    body: r.try_get(2)?,
                    source: r.try_get(3)?,
                    fetched_at: r.try_get(4)?,
                    expires_at: r.try_get(5)?,
                })
            })
            .transpose()
        })
    }

    fn put_collateral(&self, r: &CollateralRecord) -> Result<(), StoreError> {
        self.read(|c| {
            c.execute(
                "INSERT INTO collateral (key, sha256, body, source, fetched_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (key) DO UPDATE SET sha256 = EXCLUDED.sha256, body = EXCLUDED.body,
                   source = EXCLUDED.source, fetched_at = EXCLUDED.fetched_at,
                   expires_at = EXCLUDED.expires_at",
                &[
                    &r.key,
                    &r.sha256,
                    &r.body,
                    &r.source,
                    &r.fetched_at,
                    &r.expires_at,
                ],
            )
            .map(|_| ())
        })
    }

    fn collateral_index(&self) -> Result<Vec<CollateralRecord>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT key, sha256, source, fetched_at, expires_at FROM collateral ORDER BY key COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(CollateralRecord {
                    key: r.try_get(0)?,
                    sha256: r.try_get(1)?,
                    body: Vec::new(),
                    source: r.try_get(2)?,
                    fetched_at: r.try_get(3)?,
                    expires_at: r.try_get(4)?,
                })
            })
            .collect()
        })
    }
}
