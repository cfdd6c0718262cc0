//! The SQLite store: one file, WAL journal, `synchronous=FULL`, so a change
//! acknowledged to a client survives a crash or `kill -9`.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    AuditRecord, CollateralRecord, PolicyRecord, ProviderRecord, SignerRemoval, Store, StoreError,
    StoredKey,
};

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
CREATE TABLE IF NOT EXISTS providers (
    name TEXT PRIMARY KEY,
    isolated INTEGER NOT NULL,
    host TEXT UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_keys (
    provider TEXT NOT NULL,
    kid TEXT NOT NULL PRIMARY KEY,
    pkcs8 BLOB NOT NULL,
    certificate BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    not_before_signing INTEGER,
    retired_at INTEGER
);
CREATE TABLE IF NOT EXISTS secrets (
    provider TEXT NOT NULL,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (provider, name)
);
CREATE TABLE IF NOT EXISTS collateral (
    key TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    body BLOB NOT NULL,
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
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (provider, attestation_type)
);
CREATE TABLE IF NOT EXISTS signers (
    provider TEXT NOT NULL,
    der BLOB NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (provider, der)
);
CREATE TABLE IF NOT EXISTS admin_keys (
    provider TEXT NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (provider, hash)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    provider TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    policy_hash TEXT,
    detail TEXT NOT NULL
);
";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(f(&conn)?)
    }

    /// Runs `f` in an IMMEDIATE transaction that also records `audit` and
    /// bumps the generation; commits only if `f` succeeds.
    fn write<T>(
        &self,
        audit: Option<&AuditRecord>,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        if let Some(a) = audit {
            tx.execute(
                "INSERT INTO audit (at, provider, actor, action, target, policy_hash, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.at,
                    a.provider,
                    a.actor,
                    a.action,
                    a.target,
                    a.policy_hash,
                    a.detail
                ],
            )?;
        }
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
            [],
        )?;
        tx.commit()?;
        Ok(out)
    }
}

/// Columns added after the first release: a database made by an earlier
/// version gains them (SQLite has no `ADD COLUMN IF NOT EXISTS`). A NULL
/// `not_before_signing` means "since `created_at`".
fn add_missing_columns(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('signing_keys')")?;
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, ty) in [("not_before_signing", "INTEGER"), ("retired_at", "INTEGER")] {
        if !columns.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE signing_keys ADD COLUMN {name} {ty}"))?;
        }
    }
    Ok(())
}

fn insert_key(tx: &Transaction<'_>, provider: &str, key: &StoredKey) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO signing_keys
           (provider, kid, pkcs8, certificate, created_at, not_before_signing, retired_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            provider,
            key.kid,
            key.pkcs8,
            key.certificate,
            key.created_at,
            key.not_before_signing,
            key.retired_at
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("signing key {}", key.kid))
        }
        other => other.into(),
    })?;
    Ok(())
}

fn provider_exists(tx: &Transaction<'_>, name: &str) -> Result<bool, StoreError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM providers WHERE name = ?1",
            params![name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

impl Store for SqliteStore {
    fn generation(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get(0)
            })
        })
    }

    fn providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT name, isolated, host, created_at FROM providers ORDER BY created_at, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ProviderRecord {
                    name: r.get(0)?,
                    isolated: r.get::<_, i64>(1)? != 0,
                    host: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            rows.collect()
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
                return Err(StoreError::Conflict(format!("provider {}", p.name)));
            }
            tx.execute(
                "INSERT INTO providers (name, isolated, host, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![p.name, p.isolated as i64, p.host, p.created_at],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!("host {:?}", p.host))
                }
                other => other.into(),
            })?;
            for der in signers {
                tx.execute(
                    "INSERT OR IGNORE INTO signers (provider, der, added_at) VALUES (?1, ?2, ?3)",
                    params![p.name, der, p.created_at],
                )?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO admin_keys (provider, hash) VALUES (?1, ?2)",
                params![p.name, admin_key_hash],
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
                    &format!("DELETE FROM {table} WHERE provider = ?1"),
                    params![name],
                )?;
            }
            tx.execute("DELETE FROM providers WHERE name = ?1", params![name])?;
            Ok(true)
        })
    }

    fn signing_keys(&self, provider: &str) -> Result<Vec<StoredKey>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT kid, pkcs8, certificate, created_at, not_before_signing, retired_at
                 FROM signing_keys WHERE provider = ?1 ORDER BY created_at DESC, rowid DESC",
            )?;
            let rows = stmt.query_map(params![provider], |r| {
                let created_at: i64 = r.get(3)?;
                Ok(StoredKey {
                    kid: r.get(0)?,
                    pkcs8: r.get(1)?,
                    certificate: r.get(2)?,
                    created_at,
                    not_before_signing: r.get::<_, Option<i64>>(4)?.unwrap_or(created_at),
                    retired_at: r.get(5)?,
                })
            })?;
            rows.collect()
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
        // An immediate transaction: the newest key read here is still the
        // newest when the insert commits.
        self.write(Some(audit), |tx| {
            if !provider_exists(tx, provider)? {
                return Err(StoreError::NotFound(format!("provider {provider}")));
            }
            if let Some(expected) = after {
                let newest: Option<String> = tx
                    .query_row(
                        "SELECT kid FROM signing_keys WHERE provider = ?1 AND retired_at IS NULL
                         ORDER BY created_at DESC, rowid DESC LIMIT 1",
                        params![provider],
                        |r| r.get(0),
                    )
                    .optional()?;
                if newest.as_deref() != Some(expected) {
                    return Err(super::newest_key_changed(provider, expected));
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
                "UPDATE signing_keys SET retired_at = ?3
                 WHERE provider = ?1 AND kid = ?2 AND retired_at IS NULL",
                params![provider, kid, at],
            )?;
            if n == 0 {
                // Nothing changed: roll back rather than audit a no-op.
                return Err(StoreError::NotFound(format!("unretired key {kid}")));
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
                "UPDATE signing_keys SET pkcs8 = ?4 WHERE provider = ?1 AND kid = ?2 AND pkcs8 = ?3",
                params![provider, kid, old, new],
            )? == 1)
        })
    }

    fn secrets(&self, provider: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT name, value FROM secrets WHERE provider = ?1 ORDER BY name")?;
            let rows = stmt.query_map(params![provider], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
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
                "UPDATE secrets SET value = ?4 WHERE provider = ?1 AND name = ?2 AND value = ?3",
                params![provider, name, old, new],
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
                "INSERT OR IGNORE INTO secrets (provider, name, value) VALUES (?1, ?2, ?3)",
                params![provider, name, value],
            )?;
            Ok(tx.query_row(
                "SELECT value FROM secrets WHERE provider = ?1 AND name = ?2",
                params![provider, name],
                |r| r.get(0),
            )?)
        })
    }

    fn provider_settings(&self, provider: &str) -> Result<String, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT settings FROM provider_settings WHERE provider = ?1",
                params![provider],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(|s| s.unwrap_or_else(|| "{}".into()))
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
                return Err(StoreError::NotFound(format!("provider {provider}")));
            }
            tx.execute(
                "INSERT INTO provider_settings (provider, settings) VALUES (?1, ?2)
                 ON CONFLICT (provider) DO UPDATE SET settings = excluded.settings",
                params![provider, settings],
            )?;
            Ok(())
        })
    }

    fn policies(&self, provider: &str) -> Result<Vec<PolicyRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT attestation_type, jws, text, signer, updated_at FROM policies WHERE provider = ?1",
            )?;
            let rows = stmt.query_map(params![provider], |r| {
                Ok(PolicyRecord {
                    attestation_type: r.get(0)?,
                    jws: r.get(1)?,
                    text: r.get(2)?,
                    signer: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })?;
            rows.collect()
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
                return Err(StoreError::NotFound(format!("provider {provider}")));
            }
            tx.execute(
                "INSERT INTO policies (provider, attestation_type, jws, text, signer, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (provider, attestation_type) DO UPDATE SET
                   jws = excluded.jws, text = excluded.text, signer = excluded.signer,
                   updated_at = excluded.updated_at",
                params![
                    provider,
                    p.attestation_type,
                    p.jws,
                    p.text,
                    p.signer,
                    p.updated_at
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
                "DELETE FROM policies WHERE provider = ?1 AND attestation_type = ?2",
                params![provider, attestation_type],
            )?;
            Ok(())
        })
    }

    fn signers(&self, provider: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT der FROM signers WHERE provider = ?1 ORDER BY added_at, rowid")?;
            let rows = stmt.query_map(params![provider], |r| r.get(0))?;
            rows.collect()
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
                "INSERT OR IGNORE INTO signers (provider, der, added_at) VALUES (?1, ?2, ?3)",
                params![provider, der, audit.at],
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
        self.write(Some(audit), |tx| {
            let present = tx
                .query_row(
                    "SELECT 1 FROM signers WHERE provider = ?1 AND der = ?2",
                    params![provider, der],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !present {
                return Ok(SignerRemoval::Absent);
            }
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM signers WHERE provider = ?1",
                params![provider],
                |r| r.get(0),
            )?;
            if count <= 1 {
                return Ok(SignerRemoval::LastSigner);
            }
            tx.execute(
                "DELETE FROM signers WHERE provider = ?1 AND der = ?2",
                params![provider, der],
            )?;
            Ok(SignerRemoval::Removed)
        })
    }

    fn admin_key_hashes(&self, provider: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT hash FROM admin_keys WHERE provider = ?1")?;
            let rows = stmt.query_map(params![provider], |r| r.get(0))?;
            rows.collect()
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
                "INSERT OR IGNORE INTO admin_keys (provider, hash) VALUES (?1, ?2)",
                params![provider, hash],
            )?;
            Ok(())
        })
    }

    fn audit_log(&self, provider: &str, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT at, provider, actor, action, target, policy_hash, detail FROM audit
                 WHERE provider = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![provider, limit as i64], |r| {
                Ok(AuditRecord {
                    at: r.get(0)?,
                    provider: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    policy_hash: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    fn collateral(&self, key: &str) -> Result<Option<CollateralRecord>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT key, sha256, body, source, fetched_at, expires_at FROM collateral WHERE key = ?1",
                params![key],
                |r| {
                    Ok(CollateralRecord {
                        key: r.get(0)?,
                        sha256: r.get(1)?,
                        body: r.get(2)?,
                        source: r.get(3)?,
                        fetched_at: r.get(4)?,
                        expires_at: r.get(5)?,
                    })
                },
            )
            .optional()
        })
    }

    fn put_collateral(&self, r: &CollateralRecord) -> Result<(), StoreError> {
        self.read(|c| {
            c.execute(
                "INSERT INTO collateral (key, sha256, body, source, fetched_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET sha256 = excluded.sha256, body = excluded.body,
                   source = excluded.source, fetched_at = excluded.fetched_at,
                   expires_at = excluded.expires_at",
                params![
                    r.key,
                    r.sha256,
                    r.body,
                    r.source,
                    r.fetched_at,
                    r.expires_at
                ],
            )
            .map(|_| ())
        })
    }

    fn collateral_index(&self) -> Result<Vec<CollateralRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT key, sha256, source, fetched_at, expires_at FROM collateral ORDER BY key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(CollateralRecord {
                    key: r.get(0)?,
                    sha256: r.get(1)?,
                    body: Vec::new(),
                    source: r.get(2)?,
                    fetched_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}
