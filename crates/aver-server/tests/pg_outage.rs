//! A PostgreSQL outage, for real: the machine's cluster is stopped with
//! `pg_ctlcluster` while the service runs, then started again.
//!
//! While the database is down, attestations keep working from memory,
//! management calls fail at once with `503 StoreUnavailable` and
//! `Retry-After`, and `/readyz` stays ready while reporting the store
//! unreachable. When it returns, management works again with no restart and
//! no acknowledged change is lost.
//!
//! Needs `AVER_TEST_POSTGRES_URL`, `AVER_TEST_PG_OUTAGE=1` (stopping the
//! machine's database is not something a test should do unasked; `.ci/run`
//! sets it) and the right to stop and start the cluster (`pg_ctlcluster`,
//! as root); the cluster is taken from
//! `AVER_TEST_PG_CLUSTER` ("15 main") or found under /etc/postgresql. It is
//! one test in its own binary: cargo runs test binaries one after another,
//! so no other test sees the database go away. A guard starts the cluster
//! again even if the test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;
use std::time::Duration;

use aver_client::{AttestOptions, DataType, SgxEndpoint};
use aver_server::state::Clock;
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use common::TestService;

const TEST: &str = "pg_outage";

fn cluster() -> Option<(String, String)> {
    if let Ok(spec) = std::env::var("AVER_TEST_PG_CLUSTER") {
        let mut parts = spec.split_whitespace();
        return Some((parts.next()?.into(), parts.next()?.into()));
    }
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().join("main").is_dir())?
        .file_name()
        .into_string()
        .ok()?;
    Some((version, "main".into()))
}

fn pg_ctl(cluster: &(String, String), action: &str) -> bool {
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &cluster.0, &cluster.1, action])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts the cluster again when dropped, so a failing test cannot leave
/// the machine without its database.
struct Restart((String, String));

impl Drop for Restart {
    fn drop(&mut self) {
        pg_ctl(&self.0, "start");
    }
}

fn quote() -> (Vec<u8>, AttestOptions) {
    let runtime = b"outage";
    let quote = SimPlatform::generate()
        .unwrap()
        .quote(&EnclaveIdentity {
            report_data: report_data_for(runtime),
            ..EnclaveIdentity::default()
        })
        .unwrap();
    let options = AttestOptions {
        runtime_data: Some((runtime.to_vec(), DataType::Binary)),
        ..AttestOptions::default()
    };
    (quote, options)
}

fn policy(marker: &str) -> String {
    aver_token::policy::unsigned(Some(&format!(
        "version=1.0; authorizationrules{{=> permit();}}; \
         issuancerules{{=> issue(type=\"marker\", value=\"{marker}\");}};"
    )))
}

#[tokio::test(flavor = "multi_thread")]
async fn attestation_survives_a_database_outage_and_management_recovers() {
    let Ok(url) = std::env::var("AVER_TEST_POSTGRES_URL") else {
        aver_testkit::skip(TEST, "AVER_TEST_POSTGRES_URL is not set");
        return;
    };
    if std::env::var("AVER_TEST_PG_OUTAGE").as_deref() != Ok("1") {
        aver_testkit::skip(
            TEST,
            "set AVER_TEST_PG_OUTAGE=1 to let this test stop and start the local PostgreSQL cluster",
        );
        return;
    }
    let Some(cluster) = cluster() else {
        aver_testkit::skip(
            TEST,
            "no PostgreSQL cluster found to stop (set AVER_TEST_PG_CLUSTER)",
        );
        return;
    };
    if Command::new("pg_ctlcluster")
        .arg("--help")
        .output()
        .is_err()
    {
        aver_testkit::skip(TEST, "pg_ctlcluster is not installed");
        return;
    }
    let schema = format!("aver_outage_{}", std::process::id());
    let svc = TestService::start_with(true, Clock::System, |c| {
        c.database_url = Some(url.clone());
        c.database_schema = Some(schema.clone());
        // PostgreSQL needs a key-encryption key for the keys at rest.
        c.kek = Some(aver_server::kek::KekSource::Value(
            "dGhlIG91dGFnZSB0ZXN0IEtFSywgMzIgYnl0ZXMhISE=".into(),
        ));
        c.refresh_secs = 1;
    })
    .await;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&svc.ca).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let admin_key = svc.service.new_admin_key.clone().unwrap();
    let put_policy = |marker: &str| {
        http.put(format!(
            "{}/policies/SgxEnclave?api-version=2022-08-01",
            svc.issuer()
        ))
        .bearer_auth(&admin_key)
        .header("content-type", "text/plain")
        .body(policy(marker))
        .send()
    };
    let (quote, options) = quote();
    let marker_now = || async {
        let token = svc
            .client
            .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
            .await
            .unwrap();
        let claims = svc
            .client
            .verify_token(&token, svc.issuer(), common::now(), 60)
            .await
            .unwrap();
        claims["marker"].as_str().unwrap_or_default().to_string()
    };

    // Acknowledged before the outage.
    assert_eq!(put_policy("before").await.unwrap().status(), 200);
    svc.service.state.reload().await.unwrap();
    assert_eq!(marker_now().await, "before");

    assert!(pg_ctl(&cluster, "stop"), "pg_ctlcluster stop failed");
    let guard = Restart(cluster.clone());

    // Attestation goes on from memory, with the policy in force.
    for _ in 0..3 {
        assert_eq!(marker_now().await, "before");
    }
    // Management fails at once, with a code and a time to retry.
    let refused = put_policy("during").await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "StoreUnavailable");
    // Ready, and saying the store is unreachable once the refresh loop saw it.
    let mut seen_down = false;
    for _ in 0..50 {
        let ready = http
            .get(format!("{}/readyz", svc.issuer()))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap();
        if body["store"]["reachable"] == false {
            seen_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen_down, "/readyz never reported the store unreachable");

    assert!(pg_ctl(&cluster, "start"), "pg_ctlcluster start failed");
    drop(guard);

    // Management recovers without a restart (the first call reconnects).
    let mut recovered = false;
    for _ in 0..60 {
        match put_policy("after").await {
            Ok(r) if r.status() == 200 => {
                recovered = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    assert!(
        recovered,
        "management did not recover after PostgreSQL returned"
    );
    svc.service.state.reload().await.unwrap();
    assert_eq!(marker_now().await, "after");
    // Nothing acknowledged was lost: the audit log holds both changes.
    let store = svc.service.state.store.clone();
    let audit = tokio::task::spawn_blocking(move || store.audit_log("default", 100))
        .await
        .unwrap()
        .unwrap();
    let sets = audit.iter().filter(|a| a.action == "policy.set").count();
    assert_eq!(sets, 2, "{audit:?}");
    svc.service.shutdown().await;
    tokio::task::spawn_blocking(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
    })
    .await
    .unwrap();
}
