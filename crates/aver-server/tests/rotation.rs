//! Token-signing key rotation with no downtime: the next key is published
//! before anyone signs with it, a token issued before a rotation verifies
//! through `/certs` on every replica after it, a token issued after is
//! signed with the new `kid`, and a retired key stays published until its
//! tokens expired. Time is pinned; replicas are restarted at later pinned
//! times to move it. Also the ES256 option.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::PgSchema;

use std::path::Path;

use aver_client::{AdminClient, AttestOptions, Client, DataType, SgxEndpoint};
use aver_server::kek::KekSource;
use aver_server::keys::RETIRED_PUBLISH_SECS;
use aver_server::state::Clock;
use aver_server::{Config, Service};
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use aver_token::VerifyOptions;
use serde_json::Value;

const ISSUER: &str = "https://aver-lb.example";

fn sim_quote() -> Vec<u8> {
    let platform = SimPlatform::generate().unwrap();
    let identity = EnclaveIdentity {
        mr_enclave: [0xab; 32],
        mr_signer: [0xcd; 32],
        product_id: 7,
        svn: 3,
        debug: false,
        report_data: report_data_for(b"rotation"),
    };
    platform.quote(&identity).unwrap()
}

struct Replica {
    service: Service,
    client: Client,
}

impl Replica {
    async fn start(config: &Config, at: u64) -> Replica {
        let service = Service::start_with_clock(config, Clock::Fixed(at))
            .await
            .unwrap();
        let ca = std::fs::read(&service.tls.cert).unwrap();
        let client = Client::new(&format!("https://{}", service.addr), Some(&ca)).unwrap();
        Replica { service, client }
    }

    async fn token(&self) -> String {
        let options = AttestOptions {
            runtime_data: Some((b"rotation".to_vec(), DataType::Binary)),
            ..AttestOptions::default()
        };
        self.client
            .attest_sgx(SgxEndpoint::SgxEnclave, &sim_quote(), &options)
            .await
            .unwrap()
    }

    async fn jwks(&self) -> Value {
        self.client
            .get_json(&format!("{}/certs", self.client.base_url()))
            .await
            .unwrap()
    }

    async fn kids(&self) -> Vec<String> {
        self.jwks().await["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    fn admin(&self, key: &str) -> AdminClient {
        AdminClient::new(self.client.clone(), key).with_issuer(Some(ISSUER.into()))
    }

    /// Waits (bounded) until this replica's `/certs` is `kids`: it polls
    /// the store every second.
    async fn wait_for_kids(&self, kids: &[String]) {
        for _ in 0..300 {
            if self.kids().await == kids {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("replica never published {kids:?}: {:?}", self.kids().await);
    }
}

fn kid_of(token: &str) -> String {
    let jws = aver_token::CompactJws::parse(token).unwrap();
    jws.header["kid"].as_str().unwrap().to_string()
}

fn alg_of(token: &str) -> &'static str {
    aver_token::CompactJws::parse(token).unwrap().alg.name()
}

fn verifies(token: &str, jwks: &Value, now: u64) -> Result<(), aver_token::TokenError> {
    let options = VerifyOptions {
        issuer: Some(ISSUER.into()),
        now,
        leeway: 60,
    };
    aver_token::verify_token(token, jwks, &options).map(|_| ())
}

fn base_config(dir: &Path, kek: &KekSource) -> Config {
    let mut config = common::config(dir, true);
    config.issuer = Some(ISSUER.into());
    config.kek = Some(kek.clone());
    config.refresh_secs = 1;
    config
}

/// The whole rotation over `configs` (one per replica, sharing a store).
async fn rotation(configs: &[Config]) {
    // Pinned in the past so that t0 + delay is too: the admin client checks
    // its signed results against the real clock.
    let delay = 600;
    let t0 = common::now() - 2 * delay;
    let mut replicas = Vec::new();
    for c in configs {
        replicas.push(Replica::start(c, t0).await);
    }
    let admin_key = replicas[0].service.new_admin_key.clone().unwrap();
    let before = replicas[0].token().await;
    let old = kid_of(&before);

    // Rotate through the admin API of one replica.
    let result = replicas[0]
        .admin(&admin_key)
        .rotate_key(Some(delay))
        .await
        .unwrap();
    let new = result["x-aver-kid"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(result["x-aver-not-before-signing"], t0 + delay);
    // Every replica publishes it before anyone signs with it.
    for r in &replicas {
        r.wait_for_kids(&[old.clone(), new.clone()]).await;
        assert_eq!(
            kid_of(&r.token().await),
            old,
            "the next key must not sign yet"
        );
    }
    let listing = replicas[0].admin(&admin_key).keys().await.unwrap();
    let states: Vec<&str> = listing
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["next", "signing"]);

    // After the publish delay (restarted at a later pinned time).
    for r in replicas.drain(..) {
        r.service.shutdown().await;
    }
    let t1 = t0 + delay;
    for c in configs {
        replicas.push(Replica::start(c, t1).await);
    }
    for r in &replicas {
        assert_eq!(r.kids().await, [new.clone(), old.clone()]);
        verifies(&before, &r.jwks().await, t1).unwrap();
        let after = r.token().await;
        assert_eq!(kid_of(&after), new);
        verifies(&after, &r.jwks().await, t1).unwrap();
    }

    // Retire the old key through the last replica: it still verifies
    // everywhere, and the only signing key cannot be retired.
    let last = replicas.last().unwrap();
    let err = last.admin(&admin_key).retire_key("nope").await.unwrap_err();
    assert_eq!(err.code(), Some("KeyNotFound"), "{err}");
    let retired = last.admin(&admin_key).retire_key(&old).await.unwrap();
    assert_eq!(
        retired["x-aver-published-until"],
        t1 as i64 + RETIRED_PUBLISH_SECS
    );
    for again in [&old, &new] {
        let err = last.admin(&admin_key).retire_key(again).await.unwrap_err();
        assert_eq!(err.code(), Some("KeyRetirementRefused"), "{err}");
    }
    for r in &replicas {
        r.wait_for_kids(&[new.clone(), old.clone()]).await;
        verifies(&before, &r.jwks().await, t1).unwrap();
        assert_eq!(kid_of(&r.token().await), new);
    }

    // Once every token it signed has expired, it is no longer published.
    for r in replicas.drain(..) {
        r.service.shutdown().await;
    }
    let t2 = t1 + RETIRED_PUBLISH_SECS as u64;
    for c in configs {
        let r = Replica::start(c, t2).await;
        assert_eq!(r.kids().await, std::slice::from_ref(&new));
        r.service.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let kek = KekSource::Value(aver_server::kek::Kek::generate().unwrap().1);
    rotation(&[base_config(dir.path(), &kek)]).await;
}

/// Two replicas' configurations over one fresh PostgreSQL schema (dropped
/// with the returned guard), or `None` (a loud skip) without
/// `AVER_TEST_POSTGRES_URL`.
fn two_postgres_replicas(test: &str) -> Option<(Vec<Config>, PgSchema, [tempfile::TempDir; 2])> {
    let schema = PgSchema::new(test)?;
    let kek = KekSource::Value(aver_server::kek::Kek::generate().unwrap().1);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let configs = dirs
        .iter()
        .map(|dir| schema.apply(base_config(dir.path(), &kek)))
        .collect();
    Some((configs, schema, dirs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_across_two_replicas_over_postgres() {
    if let Some((configs, _schema, _dirs)) =
        two_postgres_replicas("rotation_across_two_replicas_over_postgres")
    {
        rotation(&configs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_provider_signs_verifiable_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let kek = KekSource::Value(aver_server::kek::Kek::generate().unwrap().1);
    let t0 = common::now();
    let r = Replica::start(&base_config(dir.path(), &kek), t0).await;
    let admin_key = r.service.new_admin_key.clone().unwrap();
    let before = r.token().await;
    assert_eq!(alg_of(&before), "RS256", "RS256 stays the default");

    // Opt in, then rotate at once.
    let audit = aver_server::store::AuditRecord {
        at: t0 as i64,
        provider: "default".into(),
        actor: "test".into(),
        action: "provider.configure".into(),
        target: "default".into(),
        policy_hash: None,
        detail: "token_signing_alg=ES256".into(),
    };
    let settings = aver_server::state::ProviderSettings {
        token_signing_alg: "ES256".into(),
        ..Default::default()
    };
    r.service
        .state
        .store
        .set_provider_settings(
            "default",
            &serde_json::to_string(&settings).unwrap(),
            &audit,
        )
        .unwrap();
    r.service.state.reload().await.unwrap();
    let metadata = r
        .client
        .get_json(&format!(
            "{}/.well-known/openid-configuration",
            r.client.base_url()
        ))
        .await
        .unwrap();
    assert_eq!(
        metadata["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256", "RS256"])
    );
    let result = r.admin(&admin_key).rotate_key(Some(0)).await.unwrap();
    assert_eq!(result["x-aver-alg"], "ES256");

    let after = r.token().await;
    assert_eq!(alg_of(&after), "ES256");
    let jwks = r.jwks().await;
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    assert_eq!(jwks["keys"][1]["kty"], "RSA");
    // aver_token::verify_token is what `aver token verify` and aver-client
    // run.
    verifies(&after, &jwks, t0).unwrap();
    verifies(&before, &jwks, t0).unwrap();
    let listing = r.admin(&admin_key).keys().await.unwrap();
    assert_eq!(listing[0]["alg"], "ES256");
    assert_eq!(listing[0]["state"], "signing");
    assert_eq!(listing[1]["alg"], "RS256");
    r.service.shutdown().await;
}

/// Keys changed by `aver serve --rotate-keys-every` so far: `key.rotate`
/// and `key.retire` audit records of the default provider by the schedule.
async fn scheduled_changes(r: &Replica) -> Vec<String> {
    let store = r.service.state.store.clone();
    tokio::task::spawn_blocking(move || store.audit_log("default", 100).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.actor == aver_server::rotation::ACTOR)
        .map(|a| format!("{} {}", a.action, a.target))
        .collect()
}

/// The default provider's keys as `aver keys list` shows them at `now`
/// (read from the store: the admin API's signed answers are checked
/// against the real clock, which these pinned times are far from).
async fn listing(r: &Replica, now: u64) -> Vec<Value> {
    let store = r.service.state.store.clone();
    let keys = tokio::task::spawn_blocking(move || store.signing_keys("default").unwrap())
        .await
        .unwrap();
    aver_server::keys::describe(&keys, now)
}

/// Scheduled rotation over `configs` (one per replica, sharing a store):
/// each replica runs the schedule at every refresh; between them they
/// rotate once when due, never before, and retire the superseded key a
/// minute after its successor signs. Time is pinned and moved by
/// restarting the replicas, as above.
async fn scheduled_rotation(configs: &[Config]) {
    let (every, delay) = (3600, 600);
    let t0 = common::now() - 10_000;
    let start = |at: u64| async move {
        let mut replicas = Vec::new();
        for c in configs {
            let mut c = c.clone();
            c.key_rotation = Some(aver_server::rotation::Schedule::new(every, delay).unwrap());
            replicas.push(Replica::start(&c, at).await);
        }
        replicas
    };
    // Long enough for every replica's schedule to run twice (one refresh a
    // second) and for the others to reload what one of them wrote.
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(3500));

    let mut replicas = start(t0).await;
    let before = replicas[0].token().await;
    let first = kid_of(&before);
    settle().await;
    for r in &replicas {
        assert_eq!(r.kids().await, std::slice::from_ref(&first), "not due yet");
    }
    assert!(scheduled_changes(&replicas[0]).await.is_empty());

    // Due: the first key has signed for `every - delay`. Every replica
    // finds it due at once; one new key is made between them.
    for r in replicas.drain(..) {
        r.service.shutdown().await;
    }
    let t1 = t0 + every - delay;
    replicas = start(t1).await;
    settle().await;
    let changes = scheduled_changes(&replicas[0]).await;
    assert_eq!(
        changes.len(),
        1,
        "exactly one scheduled rotation: {changes:?}"
    );
    let second = changes[0].strip_prefix("key.rotate ").unwrap().to_string();
    for r in &replicas {
        r.wait_for_kids(&[first.clone(), second.clone()]).await;
        assert_eq!(kid_of(&r.token().await), first, "the next key waits");
    }
    let keys = listing(&replicas[0], t1).await;
    assert_eq!(keys[0]["kid"], second.as_str());
    assert_eq!(keys[0]["state"], "next");
    assert_eq!(keys[0]["not_before_signing"], t1 + delay);
    assert_eq!(keys[1]["state"], "signing");

    // A minute after the new key began signing: the first key is retired,
    // still published (its tokens have hours to live), and no new rotation
    // is due.
    for r in replicas.drain(..) {
        r.service.shutdown().await;
    }
    let t2 = t1 + delay + aver_server::rotation::RETIRE_AFTER_SECS as u64;
    replicas = start(t2).await;
    settle().await;
    let changes = scheduled_changes(&replicas[0]).await;
    assert_eq!(
        changes,
        [
            format!("key.retire {first}"),
            format!("key.rotate {second}")
        ],
        "newest first"
    );
    for r in &replicas {
        r.wait_for_kids(&[second.clone(), first.clone()]).await;
        let after = r.token().await;
        assert_eq!(kid_of(&after), second);
        verifies(&after, &r.jwks().await, t2).unwrap();
        verifies(&before, &r.jwks().await, t2).unwrap();
    }
    let keys = listing(&replicas[0], t2).await;
    let states: Vec<&str> = keys.iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["signing", "retired"]);
    for r in replicas.drain(..) {
        r.service.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_with_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let kek = KekSource::Value(aver_server::kek::Kek::generate().unwrap().1);
    scheduled_rotation(&[base_config(dir.path(), &kek)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_across_two_replicas_over_postgres() {
    if let Some((configs, _schema, _dirs)) =
        two_postgres_replicas("scheduled_rotation_across_two_replicas_over_postgres")
    {
        scheduled_rotation(&configs).await;
    }
}
