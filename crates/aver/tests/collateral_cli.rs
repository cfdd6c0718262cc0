//! DCAP collateral on the command line, as a user runs it: offline
//! verdicts with `--collateral --at`, and `aver collateral import|status`.
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

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn sgx_verdict_offline_at_the_pinned_time() {
    let test = "sgx_verdict_offline_at_the_pinned_time";
    let Some(dir) = aver_testkit::vector(test, "sgx/dcap-qvl-sgx-v3") else {
        return;
    };
    let quote = dir.join("quote.bin");
    let collateral = dir.join("collateral.json");
    let base = |extra: &[&str]| {
        let mut cmd = aver();
        cmd.args(["evidence", "verify", "sgx"])
            .arg(&quote)
            .arg("--collateral")
            .arg(&collateral)
            .args(extra);
        cmd.output().unwrap()
    };
    // The default accepted statuses refuse ConfigurationAndSWHardeningNeeded.
    let out = base(&["--at", "2025-07-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        json(&out)["error"]["code"],
        "TcbStatusConfigurationAndSWHardeningNeeded"
    );
    let out = base(&[
        "--at",
        "2025-07-01T00:00:00Z",
        "--accept-tcb-status",
        "ConfigurationAndSWHardeningNeeded",
    ]);
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(
        v["evidence"]["tcb"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(
        v["claims"]["x-ms-sgx-tcb-status"],
        "ConfigurationAndSWHardeningNeeded"
    );
    // Today the collateral has expired.
    let out = base(&["--at", "2026-11-28T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["code"], "CollateralExpired");
}

#[test]
fn tdx_verdict_offline_at_the_pinned_time() {
    let test = "tdx_verdict_offline_at_the_pinned_time";
    let Some(dir) = aver_testkit::vector(test, "tdx/dcap-qvl-tdx-v4") else {
        return;
    };
    let out = aver()
        .args(["evidence", "verify", "tdx"])
        .arg(dir.join("quote.bin"))
        .arg("--collateral")
        .arg(dir.join("collateral.json"))
        .args(["--at", "2025-07-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["evidence"]["tcb"]["status"], "UpToDate");
    assert_eq!(v["claims"]["attester_tcb_status"], "UpToDate");
    assert_eq!(v["claims"]["x-ms-attestation-type"], "tdxvm");
    assert_eq!(
        v["claims"]["tdx_mrtd"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
}

#[test]
fn import_then_status() {
    let test = "import_then_status";
    let Some(bundle) = aver_testkit::vector(test, "sgx/dcap-qvl-sgx-v3/collateral.json") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let out = aver()
        .args(["collateral", "import"])
        .arg(&bundle)
        .args(["--at", "2025-07-01T00:00:00Z", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["fmspc"], "00A067110000");
    assert_eq!(json(&out)["tee"], "SGX");
    // Verified at today's time, the same bundle is refused (expired).
    let out = aver()
        .args(["collateral", "import"])
        .arg(&bundle)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CollateralExpired"));
    let out = aver()
        .args(["collateral", "status", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(
        v["collateral"][0]["key"],
        "intel/sgx/collateral/00A067110000/17"
    );
    assert_eq!(v["collateral"][0]["expires"], "2025-07-19T10:01:18Z");
}
