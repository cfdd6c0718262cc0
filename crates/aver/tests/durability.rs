//! Acknowledged changes survive `kill -9`; the CLI mirrors Azure's
//! management quickstart against a real `aver serve` process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{aver, free_port, serve, serve_with};

fn policy(n: usize) -> String {
    format!(
        "version=1.0; authorizationrules{{=> permit();}}; issuancerules{{ => issue(type=\"generation\", value={n}); }};"
    )
}

fn admin_args(cmd: &mut Command, dir: &Path, url: &str) {
    cmd.arg("--url")
        .arg(url)
        .arg("--ca")
        .arg(dir.join("tls/cert.pem"))
        .arg("--admin-key")
        .arg(format!("@{}", dir.join("admin-key").display()));
}

fn get_policy(dir: &Path, url: &str) -> String {
    let mut cmd = aver();
    cmd.args(["policy", "get", "--type", "SgxEnclave"]);
    admin_args(&mut cmd, dir, url);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn set_policy(dir: &Path, url: &str, text: &str) -> std::process::Output {
    let file = dir.join(format!(
        "policy-{}.txt",
        text.len() ^ text.as_bytes()[text.len() - 5] as usize
    ));
    std::fs::write(&file, text).unwrap();
    let mut cmd = aver();
    cmd.args(["policy", "set", "--type", "SgxEnclave", "--file"])
        .arg(&file);
    admin_args(&mut cmd, dir, url);
    cmd.output().unwrap()
}

#[test]
fn acknowledged_policy_changes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let mut server = serve(dir.path(), port);

    let mut acknowledged = String::new();
    for n in 0..5 {
        let text = policy(n);
        let out = set_policy(dir.path(), &url, &text);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["x-ms-policy-result"], "Updated");
        acknowledged = text;
    }
    // One more change in flight while the process is killed.
    let in_flight = policy(5);
    let racer = {
        let dir = dir.path().to_path_buf();
        let url = url.clone();
        let text = in_flight.clone();
        std::thread::spawn(move || set_policy(&dir, &url, &text))
    };
    std::thread::sleep(Duration::from_millis(30));
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    let raced = racer.join().unwrap();
    drop(server);

    let _server = serve(dir.path(), port);
    let now = get_policy(dir.path(), &url);
    if raced.status.success() {
        assert_eq!(now, in_flight, "an acknowledged change was lost");
    } else {
        assert!(
            now == acknowledged || now == in_flight,
            "state after the crash is neither the last acknowledged nor the in-flight change: {now}"
        );
    }
}

#[test]
fn provider_and_signer_cli_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = serve(dir.path(), port);

    // An isolated provider whose signer we hold.
    let signer = aver_token::SigningKey::generate("cli signer").unwrap();
    let key_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        aver_token::b64::encode_std(signer.pkcs8_der().unwrap())
    );
    let cert_pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        aver_token::b64::encode_std(signer.certificate_der())
    );
    std::fs::write(dir.path().join("signer.key"), key_pem).unwrap();
    std::fs::write(dir.path().join("signer.pem"), cert_pem).unwrap();
    let out = aver()
        .args(["provider", "create", "contoso", "--signers"])
        .arg(dir.path().join("signer.pem"))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("aver_"));
    let list = aver()
        .args(["provider", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("contoso\tisolated"));

    let provider_url = format!("{url}/providers/contoso");
    let admin = |cmd: &mut Command| {
        cmd.arg("--url")
            .arg(&provider_url)
            .arg("--ca")
            .arg(dir.path().join("tls/cert.pem"))
            .arg("--admin-key")
            .arg(&key);
    };
    // The running service picks the new provider up from the store.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut cmd = aver();
        cmd.args(["signer", "list"]);
        admin(&mut cmd);
        let out = cmd.output().unwrap();
        if out.status.success() {
            assert_eq!(
                String::from_utf8(out.stdout).unwrap().trim(),
                aver_server::policy_jws::thumbprint(signer.certificate_der())
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let file = dir.path().join("p.txt");
    std::fs::write(&file, policy(7)).unwrap();
    // Unsigned: refused by the isolated provider.
    let mut cmd = aver();
    cmd.args(["policy", "set", "--type", "SgxEnclave", "--file"])
        .arg(&file);
    admin(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidOperation"));
    // `policy sign` then `policy set` of the JWS: accepted.
    let signed = aver()
        .args(["policy", "sign", "--file"])
        .arg(&file)
        .arg("--key")
        .arg(dir.path().join("signer.key"))
        .arg("--cert")
        .arg(dir.path().join("signer.pem"))
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let jws_file = dir.path().join("p.jws");
    std::fs::write(&jws_file, &signed.stdout).unwrap();
    let mut cmd = aver();
    cmd.args(["policy", "set", "--type", "SgxEnclave", "--file"])
        .arg(&jws_file);
    admin(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result["x-ms-policy-token-hash"],
        aver_token::b64::encode_url(&aver_attestation::sha256(
            String::from_utf8(signed.stdout).unwrap().trim().as_bytes()
        ))
    );
    // Signed reset.
    let mut cmd = aver();
    cmd.args(["policy", "reset", "--type", "SgxEnclave", "--signing-key"])
        .arg(dir.path().join("signer.key"))
        .arg("--signing-cert")
        .arg(dir.path().join("signer.pem"));
    admin(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["x-ms-policy-result"], "Removed");

    let out = aver()
        .args(["provider", "delete", "contoso", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// A replica reached directly while its issuer is a load balancer's URL
/// (`--issuer https://lb.example:8443`): a management change through it
/// succeeds and is reported as such — the receipt is checked against the
/// issuer the service names, or the one given with `--issuer`.
#[test]
fn management_through_a_replica_behind_another_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve_with(dir.path(), port, &["--issuer", "https://lb.example:8443"]);
    let url = format!("https://127.0.0.1:{port}");
    let out = set_policy(dir.path(), &url, &policy(7));
    assert!(
        out.status.success(),
        "a change that was made is reported as a failure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(get_policy(dir.path(), &url).contains("value=7"));

    // Told to expect another issuer, the CLI says the change was made but
    // its receipt does not verify — once, without repeating itself.
    let file = dir.path().join("p8.txt");
    std::fs::write(&file, policy(8)).unwrap();
    let mut cmd = aver();
    cmd.args(["policy", "set", "--type", "SgxEnclave", "--file"])
        .arg(&file)
        .args(["--issuer", "https://elsewhere.example"]);
    admin_args(&mut cmd, dir.path(), &url);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("the change is made"), "{stderr}");
    assert_eq!(stderr.matches("the token issuer is").count(), 1, "{stderr}");
    assert!(get_policy(dir.path(), &url).contains("value=8"));
}
