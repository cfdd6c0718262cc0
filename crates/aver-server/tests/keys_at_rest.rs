//! Keys at rest: an owner-only data directory, keys and TPM secrets sealed
//! under the KEK in SQLite and PostgreSQL, plaintext keys of earlier
//! versions sealed at start, and a wrong or missing KEK refused at start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::PgSchema;

use std::path::Path;
use std::sync::Arc;

use aver_server::kek::{self, KekSource};
use aver_server::state::Clock;
use aver_server::store::{SqliteStore, Store, StoredKey};
use aver_server::{Config, Service};
use aver_token::SigningKey;

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every path under `dir` with its mode.
#[cfg(unix)]
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = vec![(".".to_string(), mode(dir))];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push((p.strip_prefix(dir).unwrap().display().to_string(), mode(&p)));
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn sqlite_config(dir: &Path, kek: Option<KekSource>) -> Config {
    let mut config = common::config(dir, false);
    config.kek = kek;
    config
}

fn random_kek() -> String {
    kek::Kek::generate().unwrap().1
}

async fn start(config: &Config) -> Result<Service, String> {
    Service::start_with_clock(config, Clock::System)
        .await
        .map_err(|e| e.to_string())
}

/// The published key ids of the default provider.
async fn kids(service: &Service) -> Vec<String> {
    let ca = std::fs::read(&service.tls.cert).unwrap();
    let client = aver_client::Client::new(&service.issuer, Some(&ca)).unwrap();
    let jwks = client
        .get_json(&format!("{}/certs", service.issuer))
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// Every key and secret in the store is sealed, and there are some.
fn assert_all_sealed(store: &dyn Store) {
    let mut n = 0;
    for p in store.providers().unwrap() {
        for k in store.signing_keys(&p.name).unwrap() {
            assert!(kek::is_sealed(&k.pkcs8), "key {} is plaintext", k.kid);
            n += 1;
        }
        let secrets = store.secrets(&p.name).unwrap();
        assert_eq!(secrets.len(), 2, "TPM context key and AK CA");
        for (name, v) in secrets {
            assert!(kek::is_sealed(&v), "secret {name} is plaintext");
        }
    }
    assert!(n > 0);
}

/// Writes what an earlier version left: the default provider with a
/// plaintext key and plaintext TPM secrets. Returns the key id.
fn legacy_store(store: &dyn Store, data_dir: &Path) -> String {
    let now = common::now();
    aver_server::ensure_default_provider(store, data_dir, now).unwrap();
    let key = SigningKey::generate("https://legacy.example").unwrap();
    store
        .insert_signing_key(
            "default",
            &StoredKey {
                kid: key.kid().into(),
                pkcs8: key.pkcs8_der().unwrap().to_vec(),
                certificate: key.certificate_der().to_vec(),
                created_at: now as i64,
                not_before_signing: now as i64,
                retired_at: None,
            },
        )
        .unwrap();
    store
        .secret_or_insert("default", "tpm-context-key", &[7u8; 32])
        .unwrap();
    key.kid().to_string()
}

#[cfg(unix)]
#[tokio::test]
async fn data_directory_is_owner_only_and_keys_are_sealed() {
    let svc = common::TestService::start(false).await;
    let dir = svc.data_dir();
    let listing = modes(&dir);
    for (path, mode) in &listing {
        let wanted = if dir.join(path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, wanted, "{path}: {mode:o}");
    }
    for expected in ["aver.db", "kek", "admin-key", "tls/key.pem", "tls/cert.pem"] {
        assert!(
            listing.iter().any(|(p, _)| p == expected),
            "{expected} in {listing:?}"
        );
    }
    assert_all_sealed(svc.service.state.store.as_ref());
    let before = kids(&svc.service).await;

    // A restart opens the sealed keys: same key, no new one.
    let common::TestService { service, dir, .. } = svc;
    service.shutdown().await;
    let again = start(&sqlite_config(dir.path(), None)).await.unwrap();
    assert_eq!(kids(&again).await, before);
    again.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn plaintext_keys_are_sealed_and_loose_modes_tightened_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    set_mode(&data, 0o755);
    let kid = {
        let store = SqliteStore::open(&data.join("aver.db")).unwrap();
        legacy_store(&store, &data)
    };
    set_mode(&data, 0o755);
    set_mode(&data.join("aver.db"), 0o644);
    std::fs::write(data.join("notes.txt"), "left by an operator").unwrap();
    set_mode(&data.join("notes.txt"), 0o664);

    let service = start(&sqlite_config(&data, None)).await.unwrap();
    assert_eq!(kids(&service).await, vec![kid.clone()]);
    assert_all_sealed(service.state.store.as_ref());
    for (path, mode) in modes(&data) {
        assert_eq!(mode & 0o077, 0, "{path}: {mode:o}");
    }
    service.shutdown().await;
    // Sealed now, and still the same key after another restart.
    let service = start(&sqlite_config(&data, None)).await.unwrap();
    assert_eq!(kids(&service).await, vec![kid]);
    service.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_wrong_kek_is_a_start_up_error_never_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(&sqlite_config(dir.path(), None)).await.unwrap();
    let before = kids(&first).await;
    first.shutdown().await;

    // The generated KEK moved away: refuse rather than make a new one.
    let moved = dir.path().join("kek.moved");
    std::fs::rename(dir.path().join("kek"), &moved).unwrap();
    let err = start(&sqlite_config(dir.path(), None)).await.err().unwrap();
    assert!(err.contains("refusing to generate"), "{err}");
    assert!(!dir.path().join("kek").exists());

    // Another KEK: named as such.
    let other = KekSource::Value(random_kek());
    let err = start(&sqlite_config(dir.path(), Some(other)))
        .await
        .err()
        .unwrap();
    assert!(err.contains("encrypted under KEK"), "{err}");

    // Garbage as a KEK.
    let err = start(&sqlite_config(
        dir.path(),
        Some(KekSource::Value("not a key".into())),
    ))
    .await
    .err()
    .unwrap();
    assert!(err.contains("32 bytes"), "{err}");

    // The right KEK from a file: the same key as before.
    let service = start(&sqlite_config(dir.path(), Some(KekSource::File(moved))))
        .await
        .unwrap();
    assert_eq!(kids(&service).await, before);
    service.shutdown().await;
}

// -------------------------------------------------------------- PostgreSQL

/// A configuration over `schema`, its data directory `dir`.
fn pg_config(schema: &PgSchema, dir: &Path, kek: Option<KekSource>) -> Config {
    schema.apply(sqlite_config(dir, kek))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keys_are_sealed_and_the_kek_is_required() {
    let Some(schema) = PgSchema::new("postgres_keys_are_sealed_and_the_kek_is_required") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let err = start(&pg_config(&schema, dir.path(), None))
        .await
        .err()
        .unwrap();
    assert!(
        err.contains("PostgreSQL store needs a key-encryption key"),
        "{err}"
    );

    let kek = KekSource::Value(random_kek());
    let service = start(&pg_config(&schema, dir.path(), Some(kek.clone())))
        .await
        .unwrap();
    let before = kids(&service).await;
    tokio::task::block_in_place(|| assert_all_sealed(service.state.store.as_ref()));
    service.shutdown().await;

    let err = start(&pg_config(
        &schema,
        dir.path(),
        Some(KekSource::Value(random_kek())),
    ))
    .await
    .err()
    .unwrap();
    assert!(err.contains("encrypted under KEK"), "{err}");

    // A second replica with its own (empty) data directory and the shared
    // KEK loads the same key.
    let other_dir = tempfile::tempdir().unwrap();
    let replica = start(&pg_config(&schema, other_dir.path(), Some(kek)))
        .await
        .unwrap();
    assert_eq!(kids(&replica).await, before);
    replica.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plaintext_keys_are_sealed_at_start() {
    let Some(schema) = PgSchema::new("postgres_plaintext_keys_are_sealed_at_start") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The blocking client cannot run inside the test's runtime.
    let (url, name, path) = (
        schema.url.clone(),
        schema.name.clone(),
        dir.path().to_path_buf(),
    );
    let kid = std::thread::spawn(move || {
        let store: Arc<dyn Store> = Arc::new(
            aver_server::store::postgres::PostgresStore::connect_with_schema(&url, &name).unwrap(),
        );
        legacy_store(store.as_ref(), &path)
    })
    .join()
    .unwrap();
    let kek = KekSource::Value(random_kek());
    let service = start(&pg_config(&schema, dir.path(), Some(kek.clone())))
        .await
        .unwrap();
    assert_eq!(kids(&service).await, vec![kid.clone()]);
    tokio::task::block_in_place(|| assert_all_sealed(service.state.store.as_ref()));
    service.shutdown().await;
    let service = start(&pg_config(&schema, dir.path(), Some(kek)))
        .await
        .unwrap();
    assert_eq!(kids(&service).await, vec![kid]);
    service.shutdown().await;
}

/// The KEK id every key and secret in the store is sealed under.
fn sealed_under(store: &dyn Store) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    for p in store.providers().unwrap() {
        for k in store.signing_keys(&p.name).unwrap() {
            ids.insert(hex::encode(kek::sealed_kek_id(&k.pkcs8).unwrap()));
        }
        for (_, v) in store.secrets(&p.name).unwrap() {
            ids.insert(hex::encode(kek::sealed_kek_id(&v).unwrap()));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kek_rotation_across_replicas() {
    let Some(schema) = PgSchema::new("postgres_kek_rotation_across_replicas") else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let (old, new) = (random_kek(), random_kek());
    let (old_file, new_file) = (files.path().join("old"), files.path().join("new"));
    std::fs::write(&old_file, &old).unwrap();
    std::fs::write(&new_file, &new).unwrap();
    let old_id = kek::Kek::parse(&old).unwrap().id();
    let new_id = kek::Kek::parse(&new).unwrap().id();
    let config = |dir: &Path, current: &str, accepted: &[&Path]| {
        let mut c = pg_config(&schema, dir, Some(KekSource::Value(current.into())));
        c.accepted_keks = accepted.iter().map(|p| p.to_path_buf()).collect();
        c.refresh_secs = 1;
        c
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = start(&config(dir_a.path(), &old, &[])).await.unwrap();
    let before = kids(&first).await;
    first.shutdown().await;

    // Step 1: replica A keeps the old KEK in force and accepts the new.
    let a = start(&config(dir_a.path(), &old, &[&new_file]))
        .await
        .unwrap();
    // Step 2: replica B has the new KEK in force and accepts the old: it
    // opens what the old sealed, and loading changes nothing.
    let b = start(&config(dir_b.path(), &new, &[&old_file]))
        .await
        .unwrap();
    assert_eq!(kids(&b).await, before);
    let store = b.state.store.clone();
    let kek_b = tokio::task::block_in_place(|| {
        kek::resolve_with_accepted(
            Some(&KekSource::Value(new.clone())),
            std::slice::from_ref(&old_file),
            dir_b.path(),
            true,
            store.as_ref(),
        )
        .unwrap()
    });
    assert_eq!(
        tokio::task::block_in_place(|| sealed_under(store.as_ref())),
        [old_id.clone()].into()
    );
    // A key made under the new KEK (on B's side) is opened by A, which
    // still seals with the old one.
    let made = tokio::task::block_in_place(|| {
        aver_server::keys::rotate(
            store.as_ref(),
            &kek_b,
            aver_server::DEFAULT_PROVIDER,
            aver_token::KeyAlg::Rs256,
            common::now(),
            0,
            "test",
        )
        .unwrap()
    });
    let mut published = false;
    for _ in 0..60 {
        if kids(&a).await.contains(&made.kid) {
            published = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        published,
        "replica A never loaded the key sealed under the new KEK"
    );

    // Step 3: rewrap moves everything under the new KEK, once.
    let report = tokio::task::block_in_place(|| kek::rewrap(&kek_b, store.as_ref()).unwrap());
    assert!(report.resealed > 0, "{report:?}");
    assert!(
        report.unopenable.is_empty() && report.raced == 0,
        "{report:?}"
    );
    assert_eq!(
        tokio::task::block_in_place(|| sealed_under(store.as_ref())),
        [new_id.clone()].into()
    );
    let again = tokio::task::block_in_place(|| kek::rewrap(&kek_b, store.as_ref()).unwrap());
    assert_eq!(
        (again.resealed, again.current),
        (0, report.resealed + report.current)
    );
    let mut all: Vec<String> = before.iter().cloned().chain([made.kid.clone()]).collect();
    all.sort();
    a.shutdown().await;
    b.shutdown().await;

    // Step 4: the new KEK alone opens everything; the old alone nothing.
    let c = start(&config(dir_a.path(), &new, &[])).await.unwrap();
    let mut served = kids(&c).await;
    served.sort();
    assert_eq!(served, all);
    c.shutdown().await;
    let err = start(&config(dir_a.path(), &old, &[])).await.err().unwrap();
    assert!(
        err.contains(&format!("encrypted under KEK {new_id}")),
        "{err}"
    );
    // A KEK set that cannot open a record is reported by rewrap, which
    // changes nothing.
    let stranger = tokio::task::block_in_place(|| {
        let kek = kek::Kek::parse(&random_kek()).unwrap();
        let report = kek::rewrap(&kek, store.as_ref()).unwrap();
        (report, sealed_under(store.as_ref()))
    });
    assert_eq!(stranger.0.resealed, 0);
    assert!(!stranger.0.unopenable.is_empty());
    assert_eq!(stranger.1, [new_id].into());
}
