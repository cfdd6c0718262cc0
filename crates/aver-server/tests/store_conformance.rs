//! One conformance suite for every `Store` backend: SQLite always,
//! PostgreSQL when `AVER_TEST_POSTGRES_URL` is set (each test in a fresh
//! random schema, dropped at the end). Without it the PostgreSQL tests skip
//! loudly, and fail under `AVER_TEST_STRICT=1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use aver_server::store::postgres::PostgresStore;
use aver_server::store::{
    AuditRecord, PolicyRecord, ProviderRecord, SignerRemoval, SqliteStore, Store, StoreError,
    StoredKey,
};

// ---------------------------------------------------------------- fixtures

fn record(provider: &str, action: &str, at: i64) -> AuditRecord {
    AuditRecord {
        at,
        provider: provider.into(),
        actor: "admin-key:test".into(),
        action: action.into(),
        target: format!("{action}-target"),
        policy_hash: None,
        detail: format!("{action} on {provider}"),
    }
}

fn provider(name: &str, isolated: bool, host: Option<&str>, created_at: i64) -> ProviderRecord {
    ProviderRecord {
        name: name.into(),
        isolated,
        host: host.map(str::to_owned),
        created_at,
    }
}

fn policy(attestation_type: &str, version: u8, signer: Option<&str>, at: i64) -> PolicyRecord {
    PolicyRecord {
        attestation_type: attestation_type.into(),
        jws: format!("eyJhbGciOiJub25lIn0.{attestation_type}{version}."),
        text: format!("version=1.0; authorizationrules {{ => permit(); }}; // {version}"),
        signer: signer.map(str::to_owned),
        updated_at: at,
    }
}

fn key(kid: &str, created_at: i64) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        pkcs8: format!("pkcs8 of {kid}").into_bytes(),
        certificate: format!("certificate of {kid}").into_bytes(),
        created_at,
        not_before_signing: created_at,
        retired_at: None,
    }
}

/// A fake DER blob; `len` lets a test use certificates larger than a
/// PostgreSQL B-tree entry.
fn der(tag: u8, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag))
        .collect();
    v[0] = 0x30;
    v[1] = tag;
    v
}

fn hash(tag: u8) -> Vec<u8> {
    vec![tag; 32]
}

const NAMES: [&str; 6] = ["alpha", "beta", "gamma", "delta", "epsilon", "nope"];

/// Everything observable through the trait, for the providers in `NAMES`.
#[derive(Debug, PartialEq)]
struct Snapshot {
    generation: i64,
    providers: Vec<ProviderRecord>,
    keys: Vec<Vec<StoredKey>>,
    policies: Vec<Vec<PolicyRecord>>,
    signers: Vec<Vec<Vec<u8>>>,
    admin: Vec<Vec<Vec<u8>>>,
    audit: Vec<Vec<AuditRecord>>,
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn sorted_policies(mut v: Vec<PolicyRecord>) -> Vec<PolicyRecord> {
    v.sort_by(|a, b| a.attestation_type.cmp(&b.attestation_type));
    v
}

/// Reads everything, and checks that reading did not move the generation.
fn snapshot(store: &dyn Store) -> Snapshot {
    let generation = store.generation().unwrap();
    let s = Snapshot {
        generation,
        providers: store.providers().unwrap(),
        keys: NAMES
            .iter()
            .map(|n| store.signing_keys(n).unwrap())
            .collect(),
        policies: NAMES
            .iter()
            .map(|n| sorted_policies(store.policies(n).unwrap()))
            .collect(),
        signers: NAMES.iter().map(|n| store.signers(n).unwrap()).collect(),
        admin: NAMES
            .iter()
            .map(|n| sorted(store.admin_key_hashes(n).unwrap()))
            .collect(),
        audit: NAMES
            .iter()
            .map(|n| store.audit_log(n, 1000).unwrap())
            .collect(),
    };
    assert_eq!(
        store.generation().unwrap(),
        generation,
        "reads must not bump the generation"
    );
    s
}

/// Runs a mutation that must succeed and bump the generation by exactly one.
#[track_caller]
fn mutate<T>(store: &dyn Store, op: impl FnOnce(&dyn Store) -> Result<T, StoreError>) -> T {
    let before = store.generation().unwrap();
    let out = match op(store) {
        Ok(out) => out,
        Err(e) => panic!("mutation failed: {e}"),
    };
    assert_eq!(
        store.generation().unwrap(),
        before + 1,
        "a mutation bumps the generation by one"
    );
    out
}

/// Runs a mutation that must fail and change nothing at all.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    store: &dyn Store,
    op: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
) -> StoreError {
    let before = snapshot(store);
    let err = op(store).expect_err("mutation should have been refused");
    assert_eq!(
        snapshot(store),
        before,
        "a failed mutation must change nothing ({err})"
    );
    err
}

// ------------------------------------------------------------------- suite

/// Every trait method and its edge cases, on an empty store.
fn conformance(store: &dyn Store) {
    empty_store(store);
    providers(store);
    signing_keys(store);
    secrets(store);
    policies(store);
    signers(store);
    admin_keys(store);
    audit_log(store);
    collateral(store);
    delete(store);
}

fn collateral(store: &dyn Store) {
    use aver_server::store::CollateralRecord;
    let generation = store.generation().unwrap();
    assert_eq!(
        store.collateral("intel/sgx/tcbinfo/00906ED50000").unwrap(),
        None
    );
    let first = CollateralRecord::new(
        "intel/sgx/tcbinfo/00906ED50000",
        b"{\"tcbInfo\":1}".to_vec(),
        "https://pcs.example/tcb",
        100,
        Some(200),
    );
    store.put_collateral(&first).unwrap();
    assert_eq!(store.collateral(&first.key).unwrap().as_ref(), Some(&first));
    // Replaced in place; the content address follows the body.
    let second = CollateralRecord::new(&first.key, vec![0, 1, 2, 255], "import:x", 150, None);
    store.put_collateral(&second).unwrap();
    let got = store.collateral(&first.key).unwrap().unwrap();
    assert_eq!(got, second);
    assert_ne!(got.sha256, first.sha256);
    let other = CollateralRecord::new("amd/milan/crl", vec![9; 5000], "kds", 1, Some(2));
    store.put_collateral(&other).unwrap();
    let index = store.collateral_index().unwrap();
    let keys: Vec<&str> = index.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["amd/milan/crl", "intel/sgx/tcbinfo/00906ED50000"]);
    assert!(
        index.iter().all(|r| r.body.is_empty()),
        "the index has no bodies"
    );
    // Collateral is not a provider change: replicas do not reload for it.
    assert_eq!(store.generation().unwrap(), generation);
}

fn empty_store(store: &dyn Store) {
    let s = snapshot(store);
    assert_eq!(s.generation, 0);
    assert!(s.providers.is_empty());
    assert!(s.keys.iter().all(Vec::is_empty));
    assert!(s.policies.iter().all(Vec::is_empty));
    assert!(s.signers.iter().all(Vec::is_empty));
    assert!(s.admin.iter().all(Vec::is_empty));
    assert!(s.audit.iter().all(Vec::is_empty));
}

fn providers(store: &dyn Store) {
    let alpha = provider("alpha", true, Some("alpha.example"), 1000);
    let created = record("alpha", "create_provider", 1000);
    // A duplicate in the initial signers is stored once.
    let initial = vec![der(1, 400), der(2, 3000), der(1, 400)];
    mutate(store, |s| {
        s.create_provider(&alpha, &initial, &hash(1), &created)
    });
    assert_eq!(store.providers().unwrap(), vec![alpha.clone()]);
    assert_eq!(
        store.signers("alpha").unwrap(),
        vec![der(1, 400), der(2, 3000)]
    );
    assert_eq!(store.admin_key_hashes("alpha").unwrap(), vec![hash(1)]);
    assert_eq!(store.audit_log("alpha", 10).unwrap(), vec![created]);

    // No signers, no host; several providers may have no host.
    let beta = provider("beta", false, None, 2000);
    mutate(store, |s| {
        s.create_provider(
            &beta,
            &[],
            &hash(2),
            &record("beta", "create_provider", 2000),
        )
    });
    let gamma = provider("gamma", false, None, 2000);
    mutate(store, |s| {
        s.create_provider(
            &gamma,
            &[der(9, 50)],
            &hash(3),
            &record("gamma", "create_provider", 2000),
        )
    });
    assert!(store.signers("beta").unwrap().is_empty());
    // Oldest first, then by name.
    assert_eq!(
        store.providers().unwrap(),
        vec![alpha.clone(), beta.clone(), gamma.clone()]
    );

    // An existing name is a conflict, whatever the rest says.
    let again = provider("alpha", false, Some("other.example"), 3000);
    let err = refused(store, |s| {
        s.create_provider(
            &again,
            &[der(7, 10)],
            &hash(7),
            &record("alpha", "dup", 3000),
        )
    });
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A taken host is a conflict, and none of the new provider's rows remain.
    let delta = provider("delta", false, Some("alpha.example"), 3000);
    let err = refused(store, |s| {
        s.create_provider(
            &delta,
            &[der(4, 10)],
            &hash(4),
            &record("delta", "create_provider", 3000),
        )
    });
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.signers("delta").unwrap().is_empty());
    assert!(store.audit_log("delta", 10).unwrap().is_empty());
}

fn signing_keys(store: &dyn Store) {
    mutate(store, |s| s.insert_signing_key("alpha", &key("k1", 100)));
    mutate(store, |s| s.insert_signing_key("alpha", &key("k2", 200)));
    mutate(store, |s| s.insert_signing_key("alpha", &key("k3", 200)));
    mutate(store, |s| s.insert_signing_key("beta", &key("k4", 50)));
    // Newest first; equal times: the later insert first.
    assert_eq!(
        store.signing_keys("alpha").unwrap(),
        vec![key("k3", 200), key("k2", 200), key("k1", 100)]
    );
    assert_eq!(store.signing_keys("beta").unwrap(), vec![key("k4", 50)]);
    assert!(store.signing_keys("gamma").unwrap().is_empty());
    // Key insertion is not audited.
    assert_eq!(store.audit_log("alpha", 100).unwrap().len(), 1);
    // A kid is unique across providers; the failure changes nothing.
    refused(store, |s| s.insert_signing_key("alpha", &key("k1", 300)));
    refused(store, |s| s.insert_signing_key("gamma", &key("k2", 300)));

    // Rotation: audited, its schedule kept; the provider must exist.
    let mut next = key("k5", 300);
    next.not_before_signing = 600;
    mutate(store, |s| {
        s.add_signing_key("alpha", &next, &record("alpha", "key.rotate", 300), None)
    });
    assert_eq!(store.signing_keys("alpha").unwrap()[0], next);
    assert_eq!(
        store.audit_log("alpha", 100).unwrap()[0].action,
        "key.rotate"
    );
    let err = refused(store, |s| {
        s.add_signing_key(
            "nope",
            &key("k6", 300),
            &record("nope", "key.rotate", 300),
            None,
        )
    });
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    refused(store, |s| {
        s.add_signing_key(
            "alpha",
            &key("k2", 300),
            &record("alpha", "key.rotate", 300),
            None,
        )
    });

    // A rotation conditioned on the newest key (scheduled rotation): refused,
    // with nothing written, when that key is no longer the newest; applied
    // while it is.
    let err = refused(store, |s| {
        s.add_signing_key(
            "beta",
            &key("k7", 300),
            &record("beta", "key.rotate", 300),
            Some("k-gone"),
        )
    });
    assert!(matches!(err, StoreError::Superseded(_)), "{err:?}");
    assert!(err.to_string().contains("k-gone"), "{err}");
    mutate(store, |s| {
        s.add_signing_key(
            "beta",
            &key("k7", 300),
            &record("beta", "key.rotate", 300),
            Some("k4"),
        )
    });
    let err = refused(store, |s| {
        s.add_signing_key(
            "beta",
            &key("k8", 301),
            &record("beta", "key.rotate", 301),
            Some("k4"),
        )
    });
    assert!(matches!(err, StoreError::Superseded(_)), "{err:?}");
    assert_eq!(store.signing_keys("beta").unwrap()[0].kid, "k7");
    // Only live keys count: once k7 is retired, k4 is the newest again.
    assert!(mutate(store, |s| s.retire_signing_key(
        "beta",
        "k7",
        302,
        &record("beta", "key.retire", 302)
    )));
    mutate(store, |s| {
        s.add_signing_key(
            "beta",
            &key("k8", 303),
            &record("beta", "key.rotate", 303),
            Some("k4"),
        )
    });

    // Retirement: once per key, audited; a no-op changes nothing.
    assert!(mutate(store, |s| s.retire_signing_key(
        "alpha",
        "k1",
        400,
        &record("alpha", "key.retire", 400)
    )));
    let k1 = store
        .signing_keys("alpha")
        .unwrap()
        .into_iter()
        .find(|k| k.kid == "k1")
        .unwrap();
    assert_eq!(k1.retired_at, Some(400));
    let before = snapshot(store);
    let again = record("alpha", "key.retire", 500);
    assert!(
        !store
            .retire_signing_key("alpha", "k1", 500, &again)
            .unwrap()
    );
    assert!(
        !store
            .retire_signing_key("alpha", "zz", 500, &again)
            .unwrap()
    );
    assert!(!store.retire_signing_key("beta", "k1", 500, &again).unwrap());
    assert_eq!(snapshot(store), before);

    // Sealing in place is a compare-and-swap on the stored bytes.
    assert!(mutate(store, |s| s.replace_key_material(
        "alpha",
        "k2",
        b"pkcs8 of k2",
        b"sealed k2"
    )));
    assert!(!mutate(store, |s| s.replace_key_material(
        "alpha",
        "k2",
        b"pkcs8 of k2",
        b"other"
    )));
    assert!(!mutate(store, |s| s.replace_key_material(
        "beta",
        "k2",
        b"sealed k2",
        b"other"
    )));
    let k2 = store
        .signing_keys("alpha")
        .unwrap()
        .into_iter()
        .find(|k| k.kid == "k2")
        .unwrap();
    assert_eq!(k2.pkcs8, b"sealed k2");
}

fn secrets(store: &dyn Store) {
    assert_eq!(
        mutate(store, |s| s.secret_or_insert(
            "alpha",
            "tpm-context",
            b"first"
        )),
        b"first"
    );
    // Another writer's value wins over ours.
    assert_eq!(
        mutate(store, |s| s.secret_or_insert(
            "alpha",
            "tpm-context",
            b"second"
        )),
        b"first"
    );
    assert_eq!(
        mutate(store, |s| s.secret_or_insert("alpha", "ak-ca", b"ca")),
        b"ca"
    );
    // Secrets are per provider.
    assert_eq!(
        mutate(store, |s| s.secret_or_insert(
            "beta",
            "tpm-context",
            b"beta's"
        )),
        b"beta's"
    );
    assert_eq!(
        mutate(store, |s| s.secret_or_insert("alpha", "tpm-context", b"")),
        b"first"
    );
    // Empty and binary values round-trip.
    assert_eq!(
        mutate(store, |s| s.secret_or_insert("gamma", "empty", b"")),
        b""
    );
    let binary: Vec<u8> = (0..=255).collect();
    assert_eq!(
        mutate(store, |s| s.secret_or_insert("gamma", "binary", &binary)),
        binary
    );
    assert_eq!(
        mutate(store, |s| s.secret_or_insert("gamma", "binary", b"x")),
        binary
    );
    // Not audited.
    assert_eq!(store.audit_log("gamma", 100).unwrap().len(), 1);

    // Listed by name; replaced only if unchanged.
    assert_eq!(
        store.secrets("alpha").unwrap(),
        vec![
            ("ak-ca".to_string(), b"ca".to_vec()),
            ("tpm-context".to_string(), b"first".to_vec())
        ]
    );
    assert!(mutate(store, |s| s.replace_secret(
        "alpha",
        "ak-ca",
        b"ca",
        b"sealed ca"
    )));
    assert!(!mutate(store, |s| s
        .replace_secret("alpha", "ak-ca", b"ca", b"other")));
    assert_eq!(store.secrets("alpha").unwrap()[0].1, b"sealed ca");
    assert!(store.secrets("nobody").unwrap().is_empty());
}

fn policies(store: &dyn Store) {
    let sgx = policy("SgxEnclave", 1, None, 10);
    let mut audit = record("alpha", "set_policy", 10);
    audit.policy_hash = Some("hash-of-sgx-1".into());
    mutate(store, |s| s.set_policy("alpha", &sgx, &audit));
    assert_eq!(store.policies("alpha").unwrap(), vec![sgx]);
    assert_eq!(store.audit_log("alpha", 1).unwrap(), vec![audit]);

    // Setting again replaces, signer included.
    let sgx2 = policy(
        "SgxEnclave",
        2,
        Some(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#),
        20,
    );
    mutate(store, |s| {
        s.set_policy("alpha", &sgx2, &record("alpha", "set_policy", 20))
    });
    let tpm = policy("Tpm", 1, None, 30);
    mutate(store, |s| {
        s.set_policy("alpha", &tpm, &record("alpha", "set_policy", 30))
    });
    assert_eq!(
        sorted_policies(store.policies("alpha").unwrap()),
        vec![sgx2.clone(), tpm.clone()]
    );
    assert!(store.policies("beta").unwrap().is_empty());

    // A missing provider: NotFound, nothing stored, nothing audited.
    let err = refused(store, |s| {
        s.set_policy("nope", &tpm, &record("nope", "set_policy", 40))
    });
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    mutate(store, |s| {
        s.remove_policy("alpha", "SgxEnclave", &record("alpha", "remove_policy", 50))
    });
    assert_eq!(store.policies("alpha").unwrap(), vec![tpm]);
    // Removing an absent policy succeeds, and is still a recorded mutation.
    mutate(store, |s| {
        s.remove_policy(
            "alpha",
            "SgxEnclave",
            &record("alpha", "remove_policy again", 60),
        )
    });
    assert_eq!(
        store.audit_log("alpha", 1).unwrap()[0].action,
        "remove_policy again"
    );
    assert_eq!(store.policies("alpha").unwrap().len(), 1);
}

fn signers(store: &dyn Store) {
    // alpha has [1, 2] from creation (added at 1000).
    assert!(mutate(store, |s| s.add_signer(
        "alpha",
        &der(3, 500),
        &record("alpha", "add_signer", 1500)
    )));
    // Already present: false, but still a recorded mutation.
    assert!(!mutate(store, |s| s.add_signer(
        "alpha",
        &der(3, 500),
        &record("alpha", "add_signer dup", 1600)
    )));
    assert_eq!(
        store.audit_log("alpha", 1).unwrap()[0].action,
        "add_signer dup"
    );
    // Oldest first, by the audit time of the addition.
    assert!(mutate(store, |s| s.add_signer(
        "alpha",
        &der(5, 4000),
        &record("alpha", "add_signer", 10)
    )));
    assert_eq!(
        store.signers("alpha").unwrap(),
        vec![der(5, 4000), der(1, 400), der(2, 3000), der(3, 500)]
    );

    let rm = |d: Vec<u8>| {
        move |s: &dyn Store| s.remove_signer("alpha", &d, &record("alpha", "remove_signer", 2000))
    };
    assert_eq!(mutate(store, rm(der(2, 3000))), SignerRemoval::Removed);
    assert_eq!(mutate(store, rm(der(2, 3000))), SignerRemoval::Absent);
    assert_eq!(mutate(store, rm(der(5, 4000))), SignerRemoval::Removed);
    assert_eq!(mutate(store, rm(der(1, 400))), SignerRemoval::Removed);
    assert_eq!(mutate(store, rm(der(3, 500))), SignerRemoval::LastSigner);
    assert_eq!(store.signers("alpha").unwrap(), vec![der(3, 500)]);
    // Unknown signer of the last-signer provider: absent, not refused.
    assert_eq!(mutate(store, rm(der(8, 20))), SignerRemoval::Absent);

    // A provider without signers.
    let beta_rm = |s: &dyn Store| {
        s.remove_signer("beta", &der(1, 400), &record("beta", "remove_signer", 2000))
    };
    assert_eq!(mutate(store, beta_rm), SignerRemoval::Absent);
    // The same certificate may belong to several providers.
    assert!(mutate(store, |s| s.add_signer(
        "beta",
        &der(1, 400),
        &record("beta", "add_signer", 2000)
    )));
    assert_eq!(mutate(store, beta_rm), SignerRemoval::LastSigner);
    assert_eq!(store.signers("beta").unwrap(), vec![der(1, 400)]);
    assert_eq!(store.signers("alpha").unwrap(), vec![der(3, 500)]);
}

fn admin_keys(store: &dyn Store) {
    mutate(store, |s| {
        s.add_admin_key("alpha", &hash(10), &record("alpha", "add_admin_key", 3000))
    });
    assert_eq!(
        sorted(store.admin_key_hashes("alpha").unwrap()),
        vec![hash(1), hash(10)]
    );
    // Adding again keeps one copy, and is still a recorded mutation.
    mutate(store, |s| {
        s.add_admin_key(
            "alpha",
            &hash(10),
            &record("alpha", "add_admin_key dup", 3001),
        )
    });
    assert_eq!(
        sorted(store.admin_key_hashes("alpha").unwrap()),
        vec![hash(1), hash(10)]
    );
    assert_eq!(
        store.audit_log("alpha", 1).unwrap()[0].action,
        "add_admin_key dup"
    );
    assert_eq!(store.admin_key_hashes("beta").unwrap(), vec![hash(2)]);
}

fn audit_log(store: &dyn Store) {
    let all = store.audit_log("alpha", 1000).unwrap();
    assert!(all.len() > 10);
    assert!(all.iter().all(|a| a.provider == "alpha"));
    // Newest first: the first record is the latest mutation, the last the creation.
    assert_eq!(all[0].action, "add_admin_key dup");
    assert_eq!(all.last().unwrap().action, "create_provider");
    assert_eq!(
        all.last().unwrap(),
        &record("alpha", "create_provider", 1000)
    );
    // The limit keeps the newest.
    assert_eq!(store.audit_log("alpha", 3).unwrap(), all[..3].to_vec());
    assert!(store.audit_log("alpha", 0).unwrap().is_empty());
    assert_eq!(store.audit_log("alpha", usize::MAX).unwrap(), all);
    assert!(store.audit_log("nobody", 10).unwrap().is_empty());
    // Every field round-trips, including unusual text.
    let odd = AuditRecord {
        at: i64::MIN,
        provider: "gamma".into(),
        actor: "ünïcødé 'quoted' \"double\" \\ ; --".into(),
        action: "add_admin_key".into(),
        target: String::new(),
        policy_hash: Some("00ff".into()),
        detail: "line\nbreak\ttab".into(),
    };
    mutate(store, |s| s.add_admin_key("gamma", &hash(11), &odd));
    assert_eq!(store.audit_log("gamma", 1).unwrap(), vec![odd]);
}

fn delete(store: &dyn Store) {
    let before = snapshot(store);
    assert!(mutate(store, |s| s.delete_provider(
        "alpha",
        &record("alpha", "delete_provider", 5000)
    )));
    let after = snapshot(store);
    let names: Vec<_> = after.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["beta", "gamma"]);
    // Everything alpha owned is gone ...
    assert!(store.signing_keys("alpha").unwrap().is_empty());
    assert!(store.policies("alpha").unwrap().is_empty());
    assert!(store.signers("alpha").unwrap().is_empty());
    assert!(store.admin_key_hashes("alpha").unwrap().is_empty());
    assert_eq!(
        mutate(store, |s| s.secret_or_insert(
            "alpha",
            "tpm-context",
            b"new"
        )),
        b"new"
    );
    // ... except its audit trail, which records the deletion.
    let trail = store.audit_log("alpha", 1000).unwrap();
    assert_eq!(trail[0], record("alpha", "delete_provider", 5000));
    assert_eq!(trail[1..], before.audit[0][..]);
    // Other providers are untouched.
    for i in 1..NAMES.len() {
        assert_eq!(after.keys[i], before.keys[i]);
        assert_eq!(after.policies[i], before.policies[i]);
        assert_eq!(after.signers[i], before.signers[i]);
        assert_eq!(after.admin[i], before.admin[i]);
        assert_eq!(after.audit[i], before.audit[i]);
    }
    // Deleting an absent provider: false, still a recorded mutation.
    assert!(!mutate(store, |s| s.delete_provider(
        "alpha",
        &record("alpha", "delete_provider again", 5001)
    )));
    assert_eq!(
        store.audit_log("alpha", 1).unwrap()[0].action,
        "delete_provider again"
    );
    // The name and the host are free again.
    let reborn = provider("alpha", false, Some("alpha.example"), 6000);
    mutate(store, |s| {
        s.create_provider(
            &reborn,
            &[],
            &hash(1),
            &record("alpha", "create_provider", 6000),
        )
    });
    assert!(store.signers("alpha").unwrap().is_empty());
    assert!(store.signing_keys("alpha").unwrap().is_empty());
}

// ---------------------------------------------- replicas and concurrency

/// Two stores over the same database see each other's changes.
fn replicas(a: &dyn Store, b: &dyn Store) {
    assert_eq!(a.generation().unwrap(), b.generation().unwrap());
    let p = provider("alpha", true, Some("alpha.example"), 1);
    a.create_provider(
        &p,
        &[der(1, 100), der(2, 100)],
        &hash(1),
        &record("alpha", "create_provider", 1),
    )
    .unwrap();
    let g = a.generation().unwrap();
    assert_eq!(
        b.generation().unwrap(),
        g,
        "the other replica sees the new generation"
    );
    assert_eq!(b.providers().unwrap(), vec![p.clone()]);
    assert_eq!(b.signers("alpha").unwrap(), vec![der(1, 100), der(2, 100)]);

    let pol = policy("Tpm", 1, None, 2);
    b.set_policy("alpha", &pol, &record("alpha", "set_policy", 2))
        .unwrap();
    assert_eq!(a.generation().unwrap(), g + 1);
    assert_eq!(a.policies("alpha").unwrap(), vec![pol]);
    assert_eq!(
        a.audit_log("alpha", 10).unwrap(),
        b.audit_log("alpha", 10).unwrap()
    );

    // A decision made on one replica accounts for the other's changes.
    assert_eq!(
        b.remove_signer("alpha", &der(1, 100), &record("alpha", "remove_signer", 3))
            .unwrap(),
        SignerRemoval::Removed
    );
    assert_eq!(
        a.remove_signer("alpha", &der(2, 100), &record("alpha", "remove_signer", 4))
            .unwrap(),
        SignerRemoval::LastSigner
    );
    let err = a
        .create_provider(
            &provider("beta", false, Some("alpha.example"), 5),
            &[],
            &hash(2),
            &record("beta", "c", 5),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert!(
        b.delete_provider("alpha", &record("alpha", "delete_provider", 6))
            .unwrap()
    );
    assert!(a.providers().unwrap().is_empty());
    assert!(a.policies("alpha").unwrap().is_empty());
    assert_eq!(a.generation().unwrap(), b.generation().unwrap());
}

/// Runs `f(store, i)` on two threads at once, one per replica, `rounds`
/// times, and returns each round's pair of results.
fn race<T: Send + 'static>(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    rounds: usize,
    f: impl Fn(&dyn Store, usize, usize) -> T + Send + Sync + 'static,
) -> Vec<(T, T)> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(2));
    let spawn = |store: Arc<dyn Store>, side: usize| {
        let (f, barrier) = (f.clone(), barrier.clone());
        thread::spawn(move || {
            (0..rounds)
                .map(|i| {
                    barrier.wait();
                    f(&*store, i, side)
                })
                .collect::<Vec<T>>()
        })
    };
    let ta = spawn(a, 0);
    let tb = spawn(b, 1);
    let ra = ta.join().unwrap();
    let rb = tb.join().unwrap();
    ra.into_iter().zip(rb).collect()
}

/// Round `i` of a race: exactly one side succeeded, and the other was
/// refused as `loser` says a refusal looks.
#[track_caller]
fn one_wins(
    i: usize,
    x: &Result<(), StoreError>,
    y: &Result<(), StoreError>,
    loser: fn(&StoreError) -> bool,
) {
    let ok = [x, y].iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "round {i}: exactly one succeeds: {x:?} {y:?}");
    assert!(
        [x, y].iter().any(|r| r.as_ref().is_err_and(loser)),
        "round {i}: {x:?} {y:?}"
    );
}

/// Concurrent writers on two replicas: one secret value wins, one creation
/// succeeds, and the last-signer rule holds.
fn concurrency(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const ROUNDS: usize = 20;
    let start = a.generation().unwrap();

    let secrets = race(a.clone(), b.clone(), ROUNDS, |s, i, side| {
        s.secret_or_insert(
            "p",
            &format!("secret-{i}"),
            format!("value from {side}").as_bytes(),
        )
        .unwrap()
    });
    for (i, (x, y)) in secrets.iter().enumerate() {
        assert_eq!(x, y, "round {i}: both writers must get the same value");
        assert_eq!(
            a.secret_or_insert("p", &format!("secret-{i}"), b"late")
                .unwrap(),
            *x
        );
    }

    let creations = race(a.clone(), b.clone(), ROUNDS, |s, i, side| {
        let name = format!("p{i}");
        let p = provider(
            &name,
            false,
            Some(&format!("{name}-{side}.example")),
            i as i64,
        );
        s.create_provider(
            &p,
            &[der(1, 64), der(2, 64)],
            &hash(side as u8),
            &record(&name, "create_provider", 0),
        )
    });
    for (i, (x, y)) in creations.iter().enumerate() {
        one_wins(i, x, y, |e| matches!(e, StoreError::Conflict(_)));
        assert_eq!(a.audit_log(&format!("p{i}"), 10).unwrap().len(), 1);
        assert_eq!(a.admin_key_hashes(&format!("p{i}")).unwrap().len(), 1);
    }

    let removals = race(a.clone(), b.clone(), ROUNDS, |s, i, side| {
        let name = format!("p{i}");
        s.remove_signer(
            &name,
            &der(side as u8 + 1, 64),
            &record(&name, "remove_signer", 0),
        )
        .unwrap()
    });
    for (i, pair) in removals.iter().enumerate() {
        let mut got = [pair.0, pair.1];
        got.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            got,
            [SignerRemoval::LastSigner, SignerRemoval::Removed],
            "round {i}"
        );
        assert_eq!(a.signers(&format!("p{i}")).unwrap().len(), 1);
    }

    // Scheduled rotation on both replicas at once, each conditioned on the
    // key both saw as the newest: one key is added, the other is refused.
    for i in 0..ROUNDS {
        a.insert_signing_key(&format!("p{i}"), &key(&format!("first-{i}"), 10))
            .unwrap();
    }
    let rotations = race(a.clone(), b.clone(), ROUNDS, |s, i, side| {
        let name = format!("p{i}");
        s.add_signing_key(
            &name,
            &key(&format!("next-{i}-{side}"), 20),
            &record(&name, "key.rotate", 20),
            Some(&format!("first-{i}")),
        )
    });
    for (i, (x, y)) in rotations.iter().enumerate() {
        one_wins(i, x, y, |e| matches!(e, StoreError::Superseded(_)));
        assert_eq!(b.signing_keys(&format!("p{i}")).unwrap().len(), 2);
        let audited = a.audit_log(&format!("p{i}"), 10).unwrap();
        assert_eq!(
            audited.iter().filter(|r| r.action == "key.rotate").count(),
            1,
            "round {i}: only the applied rotation is audited"
        );
    }

    // Every call was one mutation, except the refused creations and
    // rotations.
    let expected = start + (ROUNDS as i64) * (2 + 1 + 1 + 2 + 1 + 1);
    assert_eq!(a.generation().unwrap(), expected);
    assert_eq!(b.generation().unwrap(), expected);
}

// ------------------------------------------------------------------ SQLite

fn sqlite(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("aver.db")).unwrap()
}

#[test]
fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&sqlite(dir.path()));
}

#[test]
fn sqlite_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = sqlite(dir.path());
        conformance(&store);
        snapshot(&store)
    };
    assert_eq!(snapshot(&sqlite(dir.path())), before);
}

#[test]
fn sqlite_replicas() {
    let dir = tempfile::tempdir().unwrap();
    replicas(&sqlite(dir.path()), &sqlite(dir.path()));
}

#[test]
fn sqlite_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    concurrency(Arc::new(sqlite(dir.path())), Arc::new(sqlite(dir.path())));
}

// -------------------------------------------------------------- PostgreSQL

/// A fresh random schema, dropped (with everything in it) on drop.
struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    /// `None` after a loud skip when `AVER_TEST_POSTGRES_URL` is not set.
    fn new(test: &str) -> Option<PgSchema> {
        let Ok(url) = std::env::var("AVER_TEST_POSTGRES_URL") else {
            aver_testkit::skip(test, "AVER_TEST_POSTGRES_URL not set");
            return None;
        };
        use aws_lc_rs::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut bytes)
            .unwrap();
        let name = format!("aver_test_{}", hex::encode(bytes));
        Some(PgSchema { url, name })
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::connect_with_schema(&self.url, &self.name).unwrap()
    }

    /// A store whose sessions carry `application_name`, so a test can find
    /// and terminate them.
    fn store_named(&self, application_name: &str) -> PostgresStore {
        let url = if self.url.contains("://") {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}application_name={application_name}", self.url)
        } else {
            format!("{} application_name={application_name}", self.url)
        };
        PostgresStore::connect_with_schema(&url, &self.name).unwrap()
    }

    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let dropped =
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
            if let Err(e) = dropped {
                eprintln!("could not drop test schema {}: {e}", self.name);
            }
        }
    }
}

#[test]
fn postgres_conformance() {
    let Some(schema) = PgSchema::new("postgres_conformance") else {
        return;
    };
    let store = schema.store();
    conformance(&store);
    // Reconnecting to the same schema (and re-running the idempotent schema
    // creation) keeps everything.
    let before = snapshot(&store);
    drop(store);
    assert_eq!(snapshot(&schema.store()), before);
}

#[test]
fn postgres_replicas() {
    let Some(schema) = PgSchema::new("postgres_replicas") else {
        return;
    };
    replicas(&schema.store(), &schema.store());
}

#[test]
fn postgres_concurrency() {
    let Some(schema) = PgSchema::new("postgres_concurrency") else {
        return;
    };
    concurrency(Arc::new(schema.store()), Arc::new(schema.store()));
}

#[test]
fn postgres_replicas_start_together() {
    let Some(schema) = PgSchema::new("postgres_replicas_start_together") else {
        return;
    };
    let schema = Arc::new(schema);
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (schema, barrier) = (schema.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                PostgresStore::connect_with_schema(&schema.url, &schema.name)
                    .map(|s| s.generation().unwrap())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap(), 0);
    }
}

#[test]
fn postgres_reconnects_once_after_losing_the_connection() {
    let Some(schema) = PgSchema::new("postgres_reconnects") else {
        return;
    };
    let app = schema.name.clone();
    let store = schema.store_named(&app);
    let mut admin = schema.admin();
    let kill = |admin: &mut postgres::Client| {
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap();
        assert_eq!(rows.len(), 1, "one session to terminate");
        // pg_terminate_backend only signals; wait until the session is gone.
        for _ in 0..100 {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&app],
                )
                .unwrap()
                .get(0);
            if left == 0 {
                return;
            }
            thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the session was not terminated");
    };

    let p = provider("alpha", false, None, 1);
    store
        .create_provider(
            &p,
            &[der(1, 10)],
            &hash(1),
            &record("alpha", "create_provider", 1),
        )
        .unwrap();

    // A read after the session was killed: served on a new connection, in
    // the same schema.
    kill(&mut admin);
    assert_eq!(store.generation().unwrap(), 1);
    assert_eq!(store.providers().unwrap(), vec![p]);

    // A mutation after the session was killed: applied exactly once.
    let before = snapshot(&store);
    kill(&mut admin);
    store
        .add_admin_key("alpha", &hash(2), &record("alpha", "add_admin_key", 2))
        .unwrap();
    assert_eq!(store.generation().unwrap(), before.generation + 1);
    assert_eq!(store.audit_log("alpha", 10).unwrap().len(), 2);
    assert_eq!(
        sorted(store.admin_key_hashes("alpha").unwrap()),
        vec![hash(1), hash(2)]
    );

    // A refusal after the session was killed is still a refusal, and
    // changes nothing.
    let before = snapshot(&store);
    kill(&mut admin);
    let err = store
        .set_policy(
            "nope",
            &policy("Tpm", 1, None, 3),
            &record("nope", "set_policy", 3),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(snapshot(&store), before);

    // A conflict likewise.
    kill(&mut admin);
    let err = store
        .create_provider(
            &provider("alpha", true, None, 4),
            &[],
            &hash(3),
            &record("alpha", "dup", 4),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(snapshot(&store), before);
}

#[test]
fn postgres_refuses_tls_and_bad_urls_without_connecting() {
    // No database needed: these fail before any connection attempt.
    let err = PostgresStore::connect("postgres://user:secret@127.0.0.1:1/db?sslmode=require")
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("TLS")),
        "{err:?}"
    );
    let err = PostgresStore::connect("postgres://user:secret@[not a host/db?sslmode=bogus")
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Backend(m) if !m.contains("secret")),
        "{err:?}"
    );
}

#[test]
fn postgres_unreachable_database_is_unavailable() {
    // Port 1 on loopback: connection refused at once. Unavailable (worth
    // retrying, a 503 for management calls), not a generic backend fault.
    let err = PostgresStore::connect("postgres://aver@127.0.0.1:1/aver?connect_timeout=2")
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}
