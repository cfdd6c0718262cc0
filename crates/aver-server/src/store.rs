//! Durable state: token-signing keys (and, as they land, policies, signers
//! and providers).
//!
//! SQLite is the embedded default: one file in the data directory, WAL
//! journal with `synchronous=FULL`, so an acknowledged change survives a
//! crash or `kill -9`. Nothing on the attestation hot path reads the store:
//! the service loads what it needs at start and on change.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// A stored token-signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    pub certificate: Vec<u8>,
    pub created_at: i64,
}

/// Storage failures. Always a fault of the service, never of a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store lock was poisoned by a panic")]
    Poisoned,
}

/// The SQLite store.
pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA_VERSION: i64 = 1;

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(f(&mut conn)?)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.with(|c| {
            let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version < 1 {
                let tx = c.transaction()?;
                tx.execute_batch(
                    "CREATE TABLE signing_keys (
                        provider TEXT NOT NULL,
                        kid TEXT NOT NULL PRIMARY KEY,
                        pkcs8 BLOB NOT NULL,
                        certificate BLOB NOT NULL,
                        created_at INTEGER NOT NULL
                    );",
                )?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                tx.commit()?;
            }
            Ok(())
        })
    }

    /// Signing keys of `provider`, newest first.
    pub fn signing_keys(&self, provider: &str) -> Result<Vec<StoredKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT kid, pkcs8, certificate, created_at FROM signing_keys
                 WHERE provider = ?1 ORDER BY created_at DESC, rowid DESC",
            )?;
            let rows = stmt.query_map(params![provider], |r| {
                Ok(StoredKey {
                    kid: r.get(0)?,
                    pkcs8: r.get(1)?,
                    certificate: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Adds a signing key for `provider`.
    pub fn insert_signing_key(&self, provider: &str, key: &StoredKey) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO signing_keys (provider, kid, pkcs8, certificate, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    provider,
                    key.kid,
                    key.pkcs8,
                    key.certificate,
                    key.created_at
                ],
            )?;
            Ok(())
        })
    }

    /// Whether the key `kid` exists.
    pub fn has_key(&self, kid: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM signing_keys WHERE kid = ?1",
                params![kid],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }
}
