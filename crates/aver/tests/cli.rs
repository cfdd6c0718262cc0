//! The command line, as a user runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

fn aver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aver"));
    cmd.env("AVER_LOG", "warn");
    cmd
}

/// `aver sim quote` into `dir/q.bin`.
fn simulated_quote(dir: &std::path::Path) -> std::path::PathBuf {
    let quote = dir.join("q.bin");
    let status = aver()
        .args(["sim", "quote", "--out"])
        .arg(&quote)
        .status()
        .unwrap();
    assert!(status.success());
    quote
}

#[test]
fn demo_walks_the_workflow_and_trusts_the_enclave() {
    let out = aver().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in ["== 1.", "== 2.", "== 3.", "== 4.", "Decision: TRUST"] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
}

#[test]
fn offline_verification_of_the_azure_quote() {
    let (Some(quote), Some(runtime)) = (
        aver_testkit::vector("offline_verification", "azure-sdk/sgx_quote.bin"),
        aver_testkit::vector("offline_verification", "azure-sdk/runtime_data.bin"),
    ) else {
        return;
    };
    let out = aver()
        .args(["evidence", "verify", "sgx"])
        .arg(&quote)
        .arg("--runtime-data")
        .arg(&runtime)
        .args(["--at", "2024-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "verified");
    assert_eq!(
        report["claims"]["x-ms-sgx-mrenclave"],
        "b779202618becb636768e5d902f28d524222735fafb539ea9ba07c3fc171a1c2"
    );
    assert_eq!(
        report["claims"]["x-ms-policy-hash"],
        "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"
    );

    // After the PCK certificate's notAfter: rejected with its code.
    let out = aver()
        .args(["evidence", "verify", "sgx"])
        .arg(&quote)
        .args(["--at", "2029-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "rejected");
    assert_eq!(report["error"]["code"], "CertificateExpired");
}

#[test]
fn simulated_quote_needs_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let quote = simulated_quote(dir.path());
    let root = dir.path().join("root.pem");
    let pem = aver().args(["sim", "root"]).output().unwrap().stdout;
    std::fs::write(&root, pem).unwrap();
    let out = aver()
        .args(["evidence", "verify", "sgx"])
        .arg(&quote)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"]["code"], "UntrustedRoot");
    let out = aver()
        .args(["evidence", "verify", "sgx"])
        .arg(&quote)
        .arg("--trust-root")
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// `aver … | head` closes stdout before the output ends. The command
/// drops the rest of its output and ends with its own status: `println!`
/// used to panic ("failed printing to stdout: Broken pipe", exit 101).
#[test]
fn a_reader_that_goes_away_only_loses_the_output() {
    let closed_stdout = || {
        let (reader, writer) = std::io::pipe().unwrap();
        // Closed before the command starts: its first write fails with
        // EPIPE, deterministically.
        drop(reader);
        writer
    };
    let out = aver()
        .args(["sim", "root"])
        .stdout(closed_stdout())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A command that fails keeps its failure (here: a simulated quote
    // without its root, whose report goes to the closed stdout).
    let dir = tempfile::tempdir().unwrap();
    let quote = simulated_quote(dir.path());
    let out = aver()
        .args(["evidence", "verify", "sgx"])
        .arg(&quote)
        .stdout(closed_stdout())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Output nobody chose to drop (a full disk under `> token.jwt`) fails the
/// command with a message, not a panic.
#[test]
fn output_that_cannot_be_written_fails_the_command() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        aver_testkit::skip(
            "output_that_cannot_be_written_fails_the_command",
            "no /dev/full on this system",
        );
        return;
    };
    let out = aver()
        .args(["sim", "root"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing the output to stdout failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A service that cannot start says what it was doing: which address it
/// could not listen on, which file it could not read (it used to print the
/// bare OS error twice: "I/O: Address already in use (os error 98):
/// Address already in use (os error 98)").
#[test]
fn serve_names_the_address_or_file_it_could_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = aver()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("error: listening on {addr}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");

    let missing = dir.path().join("no-such-root.pem");
    let out = aver()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("b"))
        .arg("--trust-root")
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("error: reading {}: ", missing.display())),
        "{stderr}"
    );
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
}

#[test]
fn policy_eval_prints_decision_issued_claims_and_trace() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.txt");
    let claims = dir.path().join("c.json");
    std::fs::write(
        &policy,
        r#"version=1.0; authorizationrules{ c:[type=="x-ms-sgx-is-debuggable", value==true] => deny(); => permit(); }; issuancerules{ c:[type=="x-ms-sgx-mrsigner"] => issue(type="signer", value=c.value); };"#,
    )
    .unwrap();
    std::fs::write(
        &claims,
        r#"{"x-ms-sgx-is-debuggable": false, "x-ms-sgx-mrsigner": ["aa", "bb"]}"#,
    )
    .unwrap();
    let out = aver()
        .args(["policy", "eval", "--json", "--policy"])
        .arg(&policy)
        .arg("--claims")
        .arg(&claims)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "permit");
    assert_eq!(v["issued"]["signer"], serde_json::json!(["aa", "bb"]));
    assert!(v["trace"].as_array().is_some_and(|t| !t.is_empty()));

    std::fs::write(&claims, r#"{"x-ms-sgx-is-debuggable": true}"#).unwrap();
    let out = aver()
        .args(["policy", "eval", "--json", "--policy"])
        .arg(&policy)
        .arg("--claims")
        .arg(&claims)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "deny");

    std::fs::write(&policy, "version=1.0; authorizationrules{ => permit() };").unwrap();
    let out = aver()
        .args(["policy", "eval", "--policy"])
        .arg(&policy)
        .arg("--claims")
        .arg(&claims)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PolicyParsingError"));
}

#[test]
fn serve_config_file_and_flags() {
    // A config file with an unknown key is refused before anything starts.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aver.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nbogus = 1\n").unwrap();
    let out = aver()
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

#[test]
fn offline_verification_of_an_azure_cvm() {
    let test = "offline_verification_of_an_azure_cvm";
    let dir = "tpm/azure-cvm-vtpm-snp";
    let (Some(hcl), Some(quote), Some(certs)) = (
        aver_testkit::vector(test, &format!("{dir}/hcl-report.bin")),
        aver_testkit::vector(test, &format!("{dir}/tpm-quote-v1.json")),
        aver_testkit::vector(test, &format!("{dir}/vcek.pem")),
    ) else {
        return;
    };
    let run = |nonce: &str| {
        let out = aver()
            .args(["evidence", "verify", "azure-cvm"])
            .arg(&hcl)
            .arg("--quote")
            .arg(&quote)
            .arg("--certs")
            .arg(&certs)
            .args(["--nonce", nonce, "--at", "2025-06-01T00:00:00Z"])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let (status, report) = run("challenge");
    assert_eq!(status, Some(0), "{report}");
    assert_eq!(report["verdict"], "verified");
    assert_eq!(report["claims"]["x-ms-attestation-type"], "azurevm");
    assert_eq!(
        report["claims"]["x-ms-isolation-tee"]["x-ms-sevsnpvm-launchmeasurement"],
        "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
    );
    let (status, report) = run("not-the-challenge");
    assert_eq!(status, Some(2));
    assert_eq!(report["error"]["code"], "ChallengeMismatch");
}

#[test]
fn offline_verification_of_an_azure_tdx_cvm() {
    let test = "offline_verification_of_an_azure_tdx_cvm";
    let dir = "tpm/azure-cvm-vtpm-tdx";
    let (Some(hcl), Some(quote), Some(td_quote)) = (
        aver_testkit::vector(test, &format!("{dir}/hcl-report.bin")),
        aver_testkit::vector(test, &format!("{dir}/tpm-quote-v1.json")),
        aver_testkit::vector(test, &format!("{dir}/td-quote.bin")),
    ) else {
        return;
    };
    let out = aver()
        .args(["evidence", "verify", "azure-cvm"])
        .arg(&hcl)
        .arg("--quote")
        .arg(&quote)
        .arg("--td-quote")
        .arg(&td_quote)
        .args(["--nonce", "challenge", "--at", "2025-06-01T00:00:00Z"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(
        report["claims"]["x-ms-isolation-tee"]["x-ms-attestation-type"],
        "tdxvm"
    );
}

/// `aver attest tdx` against `aver serve`, as a user runs them: the Azure
/// confidential VM's TD quote with the HCL runtime JSON whose SHA-256 is
/// its REPORT_DATA[0..32] gets a token; other runtime data, an SGX quote
/// and a debug TD are refused with their codes (exit status 2).
#[cfg(feature = "server")]
#[test]
fn attest_tdx_against_a_running_service() {
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};
    let test = "attest_tdx_against_a_running_service";
    let (Some(quote), Some(hcl)) = (
        aver_testkit::vector(test, "tpm/azure-cvm-vtpm-tdx/td-quote.bin"),
        aver_testkit::read_vector(test, "tpm/azure-cvm-vtpm-tdx/hcl-report.bin"),
    ) else {
        return;
    };
    struct Proc(Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("data");
    let _server = Proc(
        aver()
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = || {
        Command::new("curl")
            .args(["-skf", &format!("{url}/readyz")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    while !ready() {
        assert!(Instant::now() < deadline, "aver serve did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let len = u32::from_le_bytes(hcl[1232..1236].try_into().unwrap()) as usize;
    let runtime = dir.path().join("runtime.json");
    std::fs::write(&runtime, &hcl[1236..1236 + len]).unwrap();
    let attest = |quote: &std::path::Path, runtime: Option<&std::path::Path>| {
        let mut cmd = aver();
        cmd.args(["attest", "tdx", "--quote"])
            .arg(quote)
            .args(["--url", &url, "--ca"])
            .arg(data.join("tls/cert.pem"))
            .args(["--nonce", "cli"]);
        if let Some(r) = runtime {
            cmd.arg("--runtime-data")
                .arg(r)
                .args(["--runtime-data-type", "json"]);
        }
        cmd.output().unwrap()
    };
    let out = attest(&quote, Some(&runtime));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let payload = token.trim().split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&aver_token::b64::decode_lenient(payload).unwrap()).unwrap();
    assert_eq!(claims["x-ms-attestation-type"], "tdxvm");
    assert_eq!(claims["nonce"], "cli");
    assert_eq!(claims["x-ms-runtime"]["keys"][0]["kid"], "HCLAkPub");

    // The GCP TD quote with its CCEL log (--ccel): replayed by the service.
    if let (Some(gcp), Some(log)) = (
        aver_testkit::vector(test, "tdx/go-tdx-guest-cos113-ccel/quote.bin"),
        aver_testkit::read_vector(test, "tdx/go-tdx-guest-cos113-ccel/ccel_data.dat"),
    ) {
        let with_ccel = |log: &[u8]| {
            let path = dir.path().join("ccel.bin");
            std::fs::write(&path, log).unwrap();
            let mut cmd = aver();
            cmd.args(["attest", "tdx", "--quote"])
                .arg(&gcp)
                .arg("--ccel")
                .arg(&path)
                .args(["--url", &url, "--ca"])
                .arg(data.join("tls/cert.pem"));
            cmd.output().unwrap()
        };
        let out = with_ccel(&log);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap();
        let payload = token.trim().split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&aver_token::b64::decode_lenient(payload).unwrap()).unwrap();
        assert_eq!(claims["x-aver-ccel-replayed"], true);
        let mut bad = log.clone();
        bad[100] ^= 1; // inside the first event's SHA-384 digest (RTMR0)
        let out = with_ccel(&bad);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("EventLogReplayMismatch"), "{stderr}");
        assert!(stderr.contains("RTMR0"), "{stderr}");
    }

    let other = dir.path().join("other.json");
    std::fs::write(&other, b"{\"other\": true}").unwrap();
    let out = attest(&quote, Some(&other));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RuntimeDataMismatch"));
    for (path, code) in [
        ("sgx/dcap-qvl-sgx-v3/quote.bin", "InvalidQuote"),
        ("tdx/trustee/tdx_quote_4.dat", "PolicyEvaluationError"),
    ] {
        let Some(p) = aver_testkit::vector(test, path) else {
            return;
        };
        let out = attest(&p, None);
        assert_eq!(out.status.code(), Some(2), "{path}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(code),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `aver openapi` prints the document `aver serve` serves, with no service.
#[test]
fn openapi_prints_the_document_without_a_service() {
    let out = aver().arg("openapi").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/attest/SgxEnclave",
        "/policies/{attestationType}",
        "/openapi.json",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert_eq!(
        doc,
        serde_json::to_value(aver_server::openapi::document()).unwrap(),
        "the same document as the library builds"
    );
}

/// `aver evidence verify tdx --ccel`: the GCP TD quote and its CCEL log,
/// offline at a time inside the PCK certificate's validity; the verdict
/// shows the replay, and a log cut short is refused with its code.
#[test]
fn offline_tdx_verification_replays_the_ccel_log() {
    let test = "offline_tdx_verification_replays_the_ccel_log";
    let Some(dir) = aver_testkit::vector(test, "tdx/go-tdx-guest-cos113-ccel") else {
        return;
    };
    let run = |log: &std::path::Path| {
        aver()
            .args(["evidence", "verify", "tdx"])
            .arg(dir.join("quote.bin"))
            .arg("--ccel")
            .arg(log)
            .args(["--at", "2025-01-01T00:00:00Z"])
            .output()
            .unwrap()
    };
    let out = run(&dir.join("ccel_data.dat"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["evidence"]["ccel"]["rtmrs"], serde_json::json!([0, 1, 2]));
    assert_eq!(v["claims"]["x-aver-ccel-replayed"], true);
    assert_eq!(v["claims"]["attester_tcb_status"], "Unknown");
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.bin");
    let log = std::fs::read(dir.join("ccel_data.dat")).unwrap();
    std::fs::write(&cut, &log[..10_000]).unwrap();
    let out = run(&cut);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "EventLogMalformed");
}
