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

/// AMD ARK CRLs under a generated SEV-SNP PKI: `aver collateral import`
/// verifies one and stores it where the service's KDS refresh would, and
/// refuses a forged one; `aver evidence verify snp --crl` refuses a chain
/// whose ASK the CRL revokes.
#[test]
fn ark_crls_are_imported_and_checked_offline() {
    use aver_testkit::snp::{CHIP, GEN, SVNS, crl, milan_report, pki, report, signing_cert};
    let lab = pki(GEN);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let pem = aver_attestation::evidence::snp::certs::pem_chain;
    let ark = write("ark.pem", &pem(std::slice::from_ref(&lab.ark)));
    let ark_name = format!("ARK-{GEN}");
    let revoking = write(
        "revoking.crl",
        &crl(
            &ark_name,
            &lab.ark_key,
            "260101000000Z",
            "270101000000Z",
            &[1],
        ),
    );
    let forged = write(
        "forged.crl",
        &crl(
            &ark_name,
            &lab.ask_key,
            "260101000000Z",
            "270101000000Z",
            &[],
        ),
    );
    let data = dir.path().join("data");
    let import = |crl: &std::path::Path| {
        aver()
            .args(["collateral", "import"])
            .arg(crl)
            .arg("--snp-trust-root")
            .arg(&ark)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };

    let out = import(&revoking);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["tee"], "SEV-SNP");
    assert_eq!(v["key"], "amd/crl/vcek/milan");
    assert_eq!(v["revoked"], 1);
    assert_eq!(v["expires"], "2027-01-01T00:00:00Z");

    let out = import(&forged);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no trusted ARK of that name signed it"),
        "{stderr}"
    );

    // Offline: the same report verifies without the CRL, not with it.
    let report = write("report.bin", &report(&lab, &milan_report()));
    let vcek = signing_cert(&lab, GEN, false, SVNS, Some(CHIP.to_vec()), "350101000000Z");
    let chain = write("chain.pem", &pem(&[vcek, lab.ask.clone()]));
    let verify = |crls: &[&std::path::Path]| {
        let mut cmd = aver();
        cmd.args(["evidence", "verify", "snp"])
            .arg(&report)
            .arg("--certs")
            .arg(&chain)
            .arg("--trust-root")
            .arg(&ark)
            .args(["--at", "2026-06-01T00:00:00Z"]);
        for c in crls {
            cmd.arg("--crl").arg(c);
        }
        cmd.output().unwrap()
    };
    let out = verify(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify(&[&revoking]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CertificateRevoked"), "{text}");
    let out = verify(&[&forged]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("forged.crl"), "{stderr}");
}
