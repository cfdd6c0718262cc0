//! The two-replica deployment of `deploy/haproxy/haproxy.cfg`, run for
//! real: two `aver serve` processes over one PostgreSQL, behind HAProxy
//! (Debian's), with the issuer set to the balancer's URL.
//!
//! Microsoft's Python SDK attests through the balancer and validates the
//! token (issuer, signature through `/certs`) whichever replica answered;
//! then one replica is killed with SIGKILL while attestations run, and no
//! request fails: HAProxy retries the ones in flight on the other replica.
//!
//! Needs `AVER_TEST_POSTGRES_URL`, `haproxy` and the Python SDK
//! (`bash compat/setup.sh`); skips loudly without them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aver_client::{AttestOptions, Client, DataType, SgxEndpoint};
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};

const TEST: &str = "deployment";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn python() -> Option<PathBuf> {
    let py = std::env::var_os("AVER_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("compat/python/.venv/bin/python"));
    py.exists().then_some(py)
}

/// Starts a replica and waits until it answers `/readyz` over TLS.
fn replica(
    dir: &Path,
    port: u16,
    issuer: &str,
    db: &str,
    schema: &str,
    tls: Option<&Path>,
) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aver"));
    // Replicas over PostgreSQL share one key-encryption key.
    cmd.env("AVER_LOG", "warn")
        .env("AVER_KEK", "dGhlIHJlcGxpY2FzJyBzaGFyZWQgdGVzdCBLRUsgISE=")
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--issuer")
        .arg(issuer)
        .arg("--data-dir")
        .arg(dir)
        .arg("--database-url")
        .arg(db)
        .arg("--database-schema")
        .arg(schema)
        .arg("--trust-root")
        .arg(dir.parent().unwrap().join("sim-root.pem"));
    if let Some(tls) = tls {
        cmd.arg("--tls-cert")
            .arg(tls.join("cert.pem"))
            .arg("--tls-key")
            .arg(tls.join("key.pem"));
    }
    let proc = Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ok = Command::new("curl")
            .args(["-skf", &format!("https://127.0.0.1:{port}/readyz")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return proc;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("replica on port {port} did not become ready");
}

fn sdk_attest(py: &Path, base: &str, ca: &Path, quote: &Path, runtime: &Path) -> serde_json::Value {
    let out = Command::new(py)
        .arg(repo_root().join("compat/python/sdk_check.py"))
        .arg(base)
        .arg(ca)
        .arg("attest-sgx")
        .arg(quote)
        .arg("--runtime-binary")
        .arg(runtime)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "SDK output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn two_replicas_behind_haproxy_serve_the_sdk_and_survive_a_kill() {
    let Ok(db) = std::env::var("AVER_TEST_POSTGRES_URL") else {
        aver_testkit::skip(TEST, "AVER_TEST_POSTGRES_URL is not set");
        return;
    };
    if Command::new("haproxy").arg("-v").output().is_err() {
        aver_testkit::skip(TEST, "haproxy is not installed (apt-get install haproxy)");
        return;
    }
    let Some(py) = python() else {
        aver_testkit::skip(TEST, "the Python SDK is not set up (bash compat/setup.sh)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    std::fs::write(
        root.join("sim-root.pem"),
        aver_sim::root_certificate_pem().unwrap(),
    )
    .unwrap();
    let schema = format!("aver_deploy_{}", std::process::id());
    let (lb, pa, pb) = (free_port(), free_port(), free_port());
    let issuer = format!("https://127.0.0.1:{lb}");

    // Replica A creates the shared state (default provider, signing key)
    // and a TLS certificate naming the issuer's host; B reuses both.
    let dir_a = root.join("a");
    let dir_b = root.join("b");
    let a = replica(&dir_a, pa, &issuer, &db, &schema, None);
    let _b = replica(&dir_b, pb, &issuer, &db, &schema, Some(&dir_a.join("tls")));
    let tls = dir_a.join("tls");
    let ca = tls.join("cert.pem");
    let front = root.join("front.pem");
    let mut pem = std::fs::read(&ca).unwrap();
    pem.extend(std::fs::read(tls.join("key.pem")).unwrap());
    std::fs::write(&front, pem).unwrap();
    let config = std::fs::read_to_string(repo_root().join("deploy/haproxy/haproxy.cfg"))
        .unwrap()
        .replace("@BIND@", &format!("127.0.0.1:{lb}"))
        .replace("@FRONT_PEM@", front.to_str().unwrap())
        .replace("@REPLICA_CA@", ca.to_str().unwrap())
        .replace("@REPLICA_A@", &format!("127.0.0.1:{pa}"))
        .replace("@REPLICA_B@", &format!("127.0.0.1:{pb}"));
    let cfg = root.join("haproxy.cfg");
    std::fs::write(&cfg, config).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy rejects deploy/haproxy/haproxy.cfg: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _haproxy = Proc(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    // Evidence: a simulated quote binding runtime data.
    let runtime = b"through the balancer";
    let quote = SimPlatform::generate()
        .unwrap()
        .quote(&EnclaveIdentity {
            report_data: report_data_for(runtime),
            ..EnclaveIdentity::default()
        })
        .unwrap();
    std::fs::write(root.join("quote.bin"), &quote).unwrap();
    std::fs::write(root.join("runtime.bin"), runtime).unwrap();

    // Wait for the balancer's health checks to see both replicas.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new("curl")
            .args([
                "-sf",
                "--cacert",
                ca.to_str().unwrap(),
                &format!("{issuer}/readyz"),
            ])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the balancer never answered");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The SDK through the balancer, twice (round robin: both replicas),
    // validating the token against the balancer's issuer and /certs.
    for _ in 0..2 {
        let out = sdk_attest(
            &py,
            &issuer,
            &ca,
            &root.join("quote.bin"),
            &root.join("runtime.bin"),
        );
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(out["token"]["body"]["iss"], issuer.as_str(), "{out}");
    }

    // Load through the balancer while replica A is killed.
    let runtime_rt = tokio::runtime::Runtime::new().unwrap();
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicUsize::new(0));
    let ca_pem = std::fs::read(&ca).unwrap();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = Client::new(&issuer, Some(&ca_pem)).unwrap();
        let quote = quote.clone();
        let (failures, done, successes) = (failures.clone(), done.clone(), successes.clone());
        workers.push(runtime_rt.spawn(async move {
            let options = AttestOptions {
                runtime_data: Some((runtime.to_vec(), DataType::Binary)),
                ..AttestOptions::default()
            };
            while !done.load(Ordering::Relaxed) {
                match client
                    .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
                    .await
                {
                    Ok(_) => successes.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("attestation through the balancer failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before_kill = successes.load(Ordering::Relaxed);
    drop(a); // SIGKILL, mid-run
    std::thread::sleep(Duration::from_secs(4));
    // The SDK still works, through the survivor.
    let out = sdk_attest(
        &py,
        &issuer,
        &ca,
        &root.join("quote.bin"),
        &root.join("runtime.bin"),
    );
    assert_eq!(out["ok"], true, "{out}");
    done.store(true, Ordering::Relaxed);
    runtime_rt.block_on(async {
        for w in workers {
            w.await.unwrap();
        }
    });
    let total = successes.load(Ordering::Relaxed);
    eprintln!("{before_kill} attestations before the kill, {total} in all, through the balancer");
    assert!(before_kill > 0, "no attestation succeeded before the kill");
    assert!(
        total > before_kill,
        "no attestation succeeded after the kill"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed when a replica died ({total} succeeded)"
    );

    // Tidy the shared database.
    drop(_b);
    let mut client = postgres_client(&db);
    client(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// Runs one SQL statement through `psql` (the binary crate has no
/// PostgreSQL driver of its own, on purpose).
fn postgres_client(url: &str) -> impl FnMut(&str) + '_ {
    move |sql: &str| {
        let _ = Command::new("psql")
            .arg(url)
            .arg("-qc")
            .arg(sql)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
