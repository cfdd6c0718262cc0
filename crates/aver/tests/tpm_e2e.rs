//! The TPM command line: `aver attest tpm` end to end over HTTPS against a
//! real software TPM (swtpm) and an in-process Aver service, plus offline
//! `aver evidence verify tpm` / `aver evidence eventlog` on the shared
//! vectors. swtpm tests skip loudly when swtpm / tpm2-tools / libtss2 are
//! missing; vector tests when the vectors are.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aver_server::{Config, Service};
use aver_testkit::swtpm::{self, EV_EFI_ACTION, Manufactured, Swtpm, TPM2_PCREXTEND};
use serde_json::Value;

/// Cargo's per-target scratch directory for integration tests: the swtpm
/// template and every scratch directory live there (the testkit, a library,
/// has no `CARGO_TARGET_TMPDIR` of its own).
const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// swtpm and its tools, plus tpm2-tools' `tpm2_pcrextend`: this crate does
/// not depend on tss-esapi, so the log is extended into the TPM with it.
fn require_tools(test: &str) -> Option<()> {
    swtpm::require_tools(test, &[TPM2_PCREXTEND])
}

/// The one TPM identity of this test binary.
fn identity() -> &'static Manufactured {
    swtpm::identity(TMP, "template")
}

fn scratch(tag: &str) -> PathBuf {
    swtpm::scratch(TMP, tag)
}

/// The standard measured boot, extended with `tpm2_pcrextend`.
fn standard_boot(tpm: &Swtpm) -> swtpm::LogWriter {
    swtpm::standard_boot(&mut tpm.extender())
}

/// The documentation's simple TPM policy (Azure "TPM attestation concepts").
const SIMPLE_TPM_POLICY: &str = r#"version=1.0;
authorizationrules {
    => permit();
};
issuancerules {
    [type=="aikValidated", value==true] &&
    [type=="secureBootEnabled", value==true] => issue(type="PlatformAttested", value=true);
};
"#;

fn aver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aver"));
    cmd.env("AVER_LOG", "warn")
        .env_remove("AVER_URL")
        .env_remove("AVER_CA")
        .env_remove("AVER_TPM_TCTI");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run aver"))
        .await
        .unwrap()
}

async fn start_service(data_dir: &Path, ek_roots: Option<&Path>) -> Service {
    let mut config = Config::with_defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.to_path_buf();
    config.tpm_ek_roots = ek_roots.map(Path::to_path_buf);
    Service::start(&config).await.expect("service starts")
}

fn ca_pem(service: &Service) -> Vec<u8> {
    std::fs::read(&service.tls.cert).unwrap()
}

async fn set_tpm_policy(service: &Service, admin_key: &str, policy: &str) {
    let client = aver_client::Client::new(&service.issuer, Some(&ca_pem(service))).unwrap();
    aver_client::AdminClient::new(client, admin_key)
        .set_policy("Tpm", &aver_token::policy::unsigned(Some(policy)))
        .await
        .expect("set the TPM policy");
}

/// `aver attest tpm` against `service` with the given AK file and log.
fn attest_cmd(service: &Service, swtpm: &Swtpm, ak_file: &Path, log: &Path) -> Command {
    let mut cmd = aver();
    cmd.args(["attest", "tpm", "--tcti", &swtpm.tcti()])
        .args(["--url", &service.issuer])
        .arg("--ca")
        .arg(&service.tls.cert)
        .arg("--ak-file")
        .arg(ak_file)
        .arg("--event-log")
        .arg(log)
        .args(["--pcrs", "0,1,2,3,4,5,6,7"]);
    cmd
}

async fn verify_token(service: &Service, token: &str) -> serde_json::Map<String, Value> {
    let client = aver_client::Client::new(&service.issuer, Some(&ca_pem(service))).unwrap();
    client
        .verify_token(token, &service.issuer, aver_client::unix_now(), 60)
        .await
        .expect("the token verifies through the issuer's JWKS")
}

/// Enrolls and attests over HTTPS; a second run at a service that could no
/// longer enroll (no EK roots) succeeds with the saved AK and certificate;
/// a fresh AK there is refused with EkCertificateUntrusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_tpm_enrolls_once_then_reuses_the_ak() {
    let test = "attest_tpm_enrolls_once_then_reuses_the_ak";
    if require_tools(test).is_none() {
        return;
    }
    let id = identity();
    let swtpm = Swtpm::start(id);
    let dir = scratch("e2e");
    let log = standard_boot(&swtpm);
    let log_path = dir.join("eventlog.bin");
    std::fs::write(&log_path, log.bytes()).unwrap();
    let ak_file = dir.join("ak.json");
    let data_dir = dir.join("data");

    // 1. First run: creates the AK, enrolls it, attests.
    let service = start_service(&data_dir, Some(&id.ek_roots)).await;
    let admin_key = service.new_admin_key.clone().expect("a new admin key");
    set_tpm_policy(&service, &admin_key, SIMPLE_TPM_POLICY).await;
    let mut cmd = attest_cmd(&service, &swtpm, &ak_file, &log_path);
    cmd.args(["--banks", "sha1,sha256"]);
    let out = run(cmd).await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "first run failed:\n{stderr}");
    assert!(stderr.contains("enrolling AK"), "{stderr}");
    let claims = verify_token(&service, text(&out.stdout).trim()).await;
    assert_eq!(claims["x-ms-attestation-type"], "tpm", "{claims:?}");
    assert_eq!(claims["aikValidated"], true, "{claims:?}");
    assert_eq!(claims["secureBootEnabled"], true, "{claims:?}");
    assert_eq!(claims["PlatformAttested"], true, "{claims:?}");
    let ak_saved = std::fs::read(&ak_file).expect("the AK file is saved");
    let ak_json: Value = serde_json::from_slice(&ak_saved).unwrap();
    assert!(ak_json["aik_cert"].is_string(), "{ak_json}");
    let aik_pub_hash = claims["aikPubHash"].clone();
    assert!(aik_pub_hash.is_string());

    // 2. Same provider (same data directory), restarted without EK roots:
    //    enrollment is now impossible, so success proves the AK and its
    //    certificate were reused.
    service.shutdown().await;
    let service = start_service(&data_dir, None).await;
    let out = run(attest_cmd(&service, &swtpm, &ak_file, &log_path)).await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "second run failed:\n{stderr}");
    assert!(stderr.contains("using the enrolled AK"), "{stderr}");
    assert!(!stderr.contains("enrolling"), "{stderr}");
    let claims = verify_token(&service, text(&out.stdout).trim()).await;
    assert_eq!(claims["x-ms-attestation-type"], "tpm");
    assert_eq!(claims["aikValidated"], true);
    assert_eq!(claims["PlatformAttested"], true);
    assert_eq!(claims["aikPubHash"], aik_pub_hash);
    assert_eq!(
        std::fs::read(&ak_file).unwrap(),
        ak_saved,
        "AK file rewritten"
    );

    // 3. A new AK must be enrolled, and this service trusts no EK root.
    let fresh = dir.join("fresh-ak.json");
    let out = run(attest_cmd(&service, &swtpm, &fresh, &log_path)).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("attestation refused (HTTP 4"), "{stderr}");
    assert!(stderr.contains("): EkCertificateUntrusted: "), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!fresh.exists(), "an unenrolled AK must not be saved");
    service.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A log that does not replay to the quoted PCRs is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_tpm_refuses_a_log_that_does_not_replay() {
    let test = "attest_tpm_refuses_a_log_that_does_not_replay";
    if require_tools(test).is_none() {
        return;
    }
    let id = identity();
    let swtpm = Swtpm::start(id);
    let dir = scratch("mismatch");
    let mut log = standard_boot(&swtpm);
    // Logged but never extended into the TPM.
    log.event(None, 4, EV_EFI_ACTION, b"an event the TPM never saw");
    let log_path = dir.join("eventlog.bin");
    std::fs::write(&log_path, log.bytes()).unwrap();

    let service = start_service(&dir.join("data"), Some(&id.ek_roots)).await;
    let admin_key = service.new_admin_key.clone().expect("a new admin key");
    set_tpm_policy(&service, &admin_key, SIMPLE_TPM_POLICY).await;
    // (An ECC AK here: enrollment succeeds, the attestation is refused.)
    let ak_file = dir.join("ak.json");
    let mut cmd = attest_cmd(&service, &swtpm, &ak_file, &log_path);
    cmd.args(["--ak-alg", "ecc", "--banks", "sha1,sha256"]);
    let out = run(cmd).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AK enrolled"), "{stderr}");
    assert!(stderr.contains("attestation refused (HTTP 4"), "{stderr}");
    assert!(stderr.contains("): EventLogReplayMismatch: "), "{stderr}");
    assert!(stderr.contains("PCR 4"), "{stderr}");
    assert!(out.stdout.is_empty());
    service.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ offline

fn verify_tpm(args: &[&str], files: &[(&str, &Path)]) -> (Option<i32>, Value, String) {
    let mut cmd = aver();
    cmd.args(["evidence", "verify", "tpm"]).args(args);
    for (flag, path) in files {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report, text(&out.stderr))
}

fn flipped_copy(src: &Path, dir: &Path, offset_from_end: usize) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    let i = bytes.len() - offset_from_end;
    bytes[i] ^= 0x01;
    let path = dir.join(format!(
        "flipped-{}",
        src.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn verify_tpm_offline_swtpm_quote() {
    let test = "verify_tpm_offline_swtpm_quote";
    let v = |f: &str| aver_testkit::vector(test, &format!("tpm/swtpm-local/{f}"));
    let (Some(quote), Some(sig), Some(ak), Some(ak_pem), Some(pcrs), Some(nonce)) = (
        v("quote.msg"),
        v("quote.sig"),
        v("ak.tpm2b_public"),
        v("ak.pub"),
        v("quote.pcrs"),
        v("nonce.hex"),
    ) else {
        return;
    };
    let nonce = std::fs::read_to_string(nonce).unwrap();
    let nonce = nonce.trim();

    for ak in [&ak, &ak_pem] {
        let (code, report, stderr) = verify_tpm(
            &["--nonce", nonce],
            &[
                ("--quote", &quote),
                ("--signature", &sig),
                ("--ak", ak),
                ("--pcrs", &pcrs),
            ],
        );
        assert_eq!(code, Some(0), "{report}\n{stderr}");
        assert_eq!(report["verdict"], "verified");
        let c = &report["claims"];
        let d = &report["details"];
        assert_eq!(c["x-ms-attestation-type"], "tpm");
        assert_eq!(d["quote"]["extraDataChecked"], true);
        assert_eq!(d["quote"]["extraData"], nonce);
        assert_eq!(
            d["quote"]["selectedPcrs"]["sha256"],
            serde_json::json!([0, 16, 23])
        );
        let pcrs = c["pcrs"]["PCRs"].as_array().unwrap();
        assert_eq!(pcrs.len(), 3, "{pcrs:?}");
        assert_eq!(pcrs[1]["Index"], 16);
        assert_eq!(
            pcrs[1]["Digests"]["SHA256"],
            "9851312028952521510e8eaab5be94e7dc24b5fc292b2e9781173cf11ffa9878"
        );
        assert_eq!(
            pcrs[2]["Digests"]["SHA256"],
            "63a2cc09272ae4d03d8ae482a394d209bf2dfd1449f1dd75552198264a168ac3"
        );
    }

    let dir = scratch("offline-swtpm");
    // A flipped byte inside the RSA signature.
    let bad_sig = flipped_copy(&sig, &dir, 10);
    let (code, report, _) = verify_tpm(
        &["--nonce", nonce],
        &[
            ("--quote", &quote),
            ("--signature", &bad_sig),
            ("--ak", &ak),
            ("--pcrs", &pcrs),
        ],
    );
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(report["verdict"], "rejected");
    assert_eq!(report["error"]["code"], "QuoteSignatureInvalid");

    // Another nonce.
    let (code, report, _) = verify_tpm(
        &["--nonce", "00112233"],
        &[
            ("--quote", &quote),
            ("--signature", &sig),
            ("--ak", &ak),
            ("--pcrs", &pcrs),
        ],
    );
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(report["error"]["code"], "ChallengeMismatch");

    // Another PCR 16 value: the pcrDigest no longer matches.
    let other = dir.join("pcrs.json");
    std::fs::write(
        &other,
        serde_json::json!({"sha256": {
            "0": "00".repeat(32),
            "16": "11".repeat(32),
            "23": "63a2cc09272ae4d03d8ae482a394d209bf2dfd1449f1dd75552198264a168ac3",
        }})
        .to_string(),
    )
    .unwrap();
    let (code, report, _) = verify_tpm(
        &["--nonce", nonce],
        &[
            ("--quote", &quote),
            ("--signature", &sig),
            ("--ak", &ak),
            ("--pcrs", &other),
        ],
    );
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(report["error"]["code"], "PcrDigestMismatch");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_tpm_offline_go_attestation_quote_with_event_log() {
    let test = "verify_tpm_offline_go_attestation_quote_with_event_log";
    let v =
        |f: &str| aver_testkit::vector(test, &format!("tpm/go-attestation-windows-gcp-e2e/{f}"));
    let (Some(quote), Some(sig), Some(ak), Some(log), Some(pcrs)) = (
        v("quote.tpms_attest"),
        v("quote.tpmt_signature"),
        v("ak.tpmt_public"),
        v("eventlog.bin"),
        v("pcrs-from-tpm.json"),
    ) else {
        return;
    };
    let base: [(&str, &Path); 3] = [("--quote", &quote), ("--signature", &sig), ("--ak", &ak)];

    // PCR values from the log's replay: the quote proves the log.
    let mut files = base.to_vec();
    files.push(("--event-log", &log));
    let (code, report, stderr) = verify_tpm(&["--nonce", ""], &files);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let c = &report["claims"];
    assert_eq!(report["details"]["pcrSource"], "event-log-replay");
    assert_eq!(
        report["details"]["quote"]["selectedPcrs"]["sha1"]
            .as_array()
            .unwrap()
            .len(),
        24
    );
    assert_eq!(
        c["pcrs"]["PCRs"][0]["Digests"]["SHA1"],
        "51c323de0c0c694f4601cdd02beb58ff13629f74"
    );
    assert_eq!(c["bootSummary"]["logFormat"], "LegacySha1");
    assert!(c["events"]["Events"].as_array().unwrap().len() >= 20);
    assert!(c["aikPubHash"].is_string());

    // The TPM's PCR values and the log together.
    let mut files = base.to_vec();
    files.push(("--event-log", &log));
    files.push(("--pcrs", &pcrs));
    let (code, report, stderr) = verify_tpm(&[], &files);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(report["details"]["pcrSource"], "supplied");
    assert_eq!(report["details"]["quote"]["extraDataChecked"], false);

    let dir = scratch("offline-go");
    // Flipped signature byte.
    let bad_sig = flipped_copy(&sig, &dir, 10);
    let files = [
        ("--quote", quote.as_path()),
        ("--signature", bad_sig.as_path()),
        ("--ak", ak.as_path()),
        ("--event-log", log.as_path()),
    ];
    let (code, report, _) = verify_tpm(&[], &files);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(report["verdict"], "rejected");
    assert_eq!(report["error"]["code"], "QuoteSignatureInvalid");

    // A log whose first event digest was altered (legacy SHA-1 header:
    // PCR index, type, then the digest at offset 8) no longer replays to
    // the quoted PCRs, with the TPM's values given or not.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[8] ^= 0x01;
    let bad_log = dir.join("eventlog-altered.bin");
    std::fs::write(&bad_log, bytes).unwrap();
    for with_pcrs in [false, true] {
        let mut files = base.to_vec();
        files.push(("--event-log", &bad_log));
        if with_pcrs {
            files.push(("--pcrs", &pcrs));
        }
        let (code, report, _) = verify_tpm(&[], &files);
        assert_eq!(code, Some(2), "{report}");
        assert_eq!(
            report["error"]["code"], "EventLogReplayMismatch",
            "{report}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eventlog_prints_events_and_replayed_pcrs() {
    let test = "eventlog_prints_events_and_replayed_pcrs";
    let Some(log) =
        aver_testkit::vector(test, "tpm/keylime-eventlogs/binary_bios_measurements.bin")
    else {
        return;
    };
    let out = aver()
        .args(["evidence", "eventlog"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["format"], "CryptoAgile");
    // 120 events after the Spec ID header record (event #0).
    assert_eq!(report["eventCount"], 121);
    let events = report["events"]["Events"].as_array().unwrap();
    assert_eq!(events.len(), 121);
    assert_eq!(events[0]["EventTypeString"], "EV_NO_ACTION");
    let replay = &report["replay"];
    assert_eq!(replay["startupLocality"], 3);
    assert_eq!(
        replay["pcrs"]["sha256"]["0"],
        "0ee9a7feba8f4172f1a7451594aa5731665a4d353ac61814042ce107a00742f2"
    );
    assert_eq!(
        replay["pcrs"]["sha1"]["0"],
        "78f3e576d5da8873860e557535d181f4a37e2963"
    );
    assert_eq!(
        replay["pcrs"]["sha256"]["1"],
        "d268196b8d9585b41e6de98d7b2af9cc2fcc5b8ae5923b354105bf7c4d73b9cc"
    );

    // Not an event log: an error, not a report.
    if let Some(bogus) = aver_testkit::vector(
        test,
        "tpm/keylime-eventlogs/binary_bios_measurements-bogus.bin",
    ) {
        let out = aver()
            .args(["evidence", "eventlog"])
            .arg(&bogus)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("not a TCG event log"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// `aver evidence verify tpm` and the service's `/attest/Tpm` verification
/// run one function: for the same quote, AK, PCR values and event log they
/// give the same claims.
#[test]
fn offline_and_service_tpm_verification_give_the_same_claims() {
    use aver_tpm_attest::message::{Attestation, LogEntry, PcrBank, PcrEntry};
    use aver_tpm_attest::{RequestOptions, TpmAttestConfig, TpmAttestService};
    let test = "offline_and_service_tpm_verification_give_the_same_claims";
    let v =
        |f: &str| aver_testkit::vector(test, &format!("tpm/go-attestation-windows-gcp-e2e/{f}"));
    let (Some(quote), Some(sig), Some(ak), Some(log), Some(pcrs)) = (
        v("quote.tpms_attest"),
        v("quote.tpmt_signature"),
        v("ak.tpmt_public"),
        v("eventlog.bin"),
        v("pcrs-from-tpm.json"),
    ) else {
        return;
    };
    // Offline.
    let files = [
        ("--quote", quote.as_path()),
        ("--signature", sig.as_path()),
        ("--ak", ak.as_path()),
        ("--event-log", log.as_path()),
        ("--pcrs", pcrs.as_path()),
    ];
    let (code, report, stderr) = verify_tpm(&["--nonce", ""], &files);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let offline = report["claims"].as_object().unwrap().clone();

    // The service's Request step on the same inputs (the quote's nonce is
    // empty: the challenge the service issued would be empty).
    let b64 = aver_token::b64::encode_url;
    let values = aver_tpm::parse_pcr_file(&std::fs::read(&pcrs).unwrap()).unwrap();
    let banks = values
        .iter()
        .map(|(alg, pcrs)| PcrBank {
            algorithm: alg.tpm_id(),
            values: pcrs
                .iter()
                .map(|(index, digest)| PcrEntry {
                    index: *index,
                    digest: b64(digest),
                })
                .collect(),
        })
        .collect();
    let attestation = Attestation {
        logs: vec![LogEntry {
            log_type: "TCG".into(),
            log: b64(&std::fs::read(&log).unwrap()),
        }],
        aik_cert: None,
        aik_pub: b64(&std::fs::read(&ak).unwrap()),
        ek_cert: None,
        ek_pub: None,
        pcrs: banks,
        quote: b64(&std::fs::read(&quote).unwrap()),
        signature: b64(&std::fs::read(&sig).unwrap()),
    };
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let service = TpmAttestService::new(TpmAttestConfig::new(
        [7; 32],
        ca.der().to_vec(),
        ca_key.serialize_der(),
        vec![],
    ))
    .unwrap();
    let served = service
        .verify_attestation(
            &attestation,
            &[],
            aver_client::unix_now(),
            &RequestOptions::default(),
        )
        .unwrap();
    assert_eq!(served.claims, offline);
    assert!(offline.contains_key("events") && offline.contains_key("pcrs"));
    assert_eq!(offline["aikValidated"], false);
}

/// `aver demo --tpm` walks the whole TPM workflow against swtpm and ends
/// with the relying party's decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tpm_walks_the_workflow() {
    let test = "demo_tpm_walks_the_workflow";
    if require_tools(test).is_none() {
        return;
    }
    let mut cmd = aver();
    cmd.args(["demo", "--tpm"]);
    let out = run(cmd).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for step in 1..=5 {
        assert!(
            stdout.contains(&format!("== {step}. ")),
            "step {step} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("PlatformAttested       true"), "{stdout}");
    assert!(
        stdout.contains("Decision: the platform booted with Secure Boot"),
        "{stdout}"
    );
}
