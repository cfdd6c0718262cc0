//! MAA-style claims answer the sample policies' JmesPath queries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use aver_testkit::read_vector;
use aver_tpm::claims::build_claims;
use aver_tpm::{parse_event_log, replay};
use common::*;

fn q(expr: &str, data: &serde_json::Value) -> serde_json::Value {
    let e = jmespath::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let v = jmespath::Variable::from_json(&data.to_string()).expect("variable");
    let r = e.search(v).expect("search");
    serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("json")
}

// Queries copied from the MAA sample policies (docs-policy-version-1-2_tpm-sample,
// docs-tpm-sample-policies_linux-boot-signers-v1.2).
const EFI_CONFIG: &str = "Events[?EventTypeString == 'EV_EFI_VARIABLE_DRIVER_CONFIG' && ProcessedData.VariableGuid == '8BE4DF61-93CA-11D2-AA0D-00E098032B8C']";
const SECURE_BOOT: &str = "[?ProcessedData.UnicodeName == 'SecureBoot'] | length(@) == `1` && @[0].ProcessedData.VariableData == 'AQ'";
const SECURE_BOOT_PCR7: &str = "[?ProcessedData.UnicodeName == 'SecureBoot'] | length(@) == `1` && @[0].PcrIndex == `7` && @[0].ProcessedData.VariableData == 'AQ'";

fn claims_json(t: &str, rel: &str) -> Option<(serde_json::Value, bool)> {
    let bin = read_vector(t, rel)?;
    let log = parse_event_log(&bin).expect("parse");
    let r = replay(&log).expect("replay");
    let c = build_claims(&log, Some(&r), &r.banks);
    let sb = c.secure_boot_enabled;
    Some((serde_json::to_value(&c).expect("serialize"), sb))
}

#[test]
fn secure_boot_policy_queries_work() {
    let t = "secure_boot_policy_queries_work";
    // uefivar: a single SecureBoot=1 event in PCR7.
    let Some((c, sb)) = claims_json(t, &format!("{T2T}/event-uefivar.bin")) else {
        return;
    };
    assert!(sb);
    let cfg = q(EFI_CONFIG, &c["events"]);
    assert_eq!(cfg.as_array().expect("array").len(), 1);
    assert_eq!(cfg[0]["ProcessedData"]["UnicodeName"], "SecureBoot");
    assert_eq!(cfg[0]["ProcessedData"]["VariableData"], "AQ");
    assert_eq!(q(SECURE_BOOT, &cfg), serde_json::json!(true));
    assert_eq!(q(SECURE_BOOT_PCR7, &cfg), serde_json::json!(true));

    // Real logs: the policy query and our own claim agree.
    for rel in [
        format!("{GCP}/eventlog.bin"),
        format!("{KEYLIME}/binary_bios_measurements-secureboot.bin"),
        format!("{KEYLIME}/binary_bios_measurements.bin"),
        format!("{KEYLIME}/mb_log.bin"),
        format!("{T2T}/event-arch-linux.bin"),
        format!("{T2T}/event-gce-ubuntu-2104-log.bin"),
    ] {
        let Some((c, sb)) = claims_json(t, &rel) else {
            return;
        };
        let by_policy = q(SECURE_BOOT, &q(EFI_CONFIG, &c["events"]));
        assert_eq!(by_policy, serde_json::json!(sb), "{rel}");
        eprintln!("{rel}: secureBootEnabled={sb}");
    }
    // README: the GCP Windows VM has Secure Boot enabled.
    let Some((_, sb)) = claims_json(t, &format!("{GCP}/eventlog.bin")) else {
        return;
    };
    assert!(sb);
}

#[test]
fn pcrs_claim_shape() {
    let t = "pcrs_claim_shape";
    let Some(bin) = read_vector(t, &format!("{KEYLIME}/binary_bios_measurements.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    let r = replay(&log).expect("replay");
    let c = serde_json::to_value(build_claims(&log, Some(&r), &r.banks)).expect("ser");
    let pcr0 = q("PCRs[? Index == `0`].Digests.SHA256 | @[0]", &c["pcrs"]);
    assert!(
        pcr0.as_str().expect("hex").starts_with("0ee9a7fe"),
        "{pcr0}"
    );
    let pcr0 = q("PCRs[? Index == `0`].Digests.SHA1 | @[0]", &c["pcrs"]);
    assert!(
        pcr0.as_str().expect("hex").starts_with("78f3e576"),
        "{pcr0}"
    );
    assert_eq!(c["pcrs"]["PCRs"].as_array().expect("array").len(), 24);
    assert_eq!(c["bootSummary"]["startupLocality"], 3);
}

#[test]
fn event_claims_cover_separators_images_and_variables() {
    let t = "event_claims_cover_separators_images_and_variables";
    let Some((c, _)) = claims_json(t, &format!("{T2T}/event-gce-ubuntu-2104-log.bin")) else {
        return;
    };
    // Query from docs-tpm-sample-policies (EV_SEPARATOR ordering).
    let sep = q(
        "Events[? EventTypeString == 'EV_SEPARATOR' && (PcrIndex == `0` || PcrIndex == `7`)] | @[0].EventSeq",
        &c["events"],
    );
    assert!(sep.as_u64().is_some(), "{sep}");
    assert_eq!(c["bootSummary"]["separatorsPcr0To7"], true);
    // Secure Boot key databases.
    let names: Vec<String> = c["secureBootVariables"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect();
    for n in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    let db = q(
        "Events[?ProcessedData.UnicodeName == 'db'] | @[0].ProcessedData.VariableGuid",
        &c["events"],
    );
    assert_eq!(db, "D719B2CB-3D3A-4596-A3BC-DAD00E67656F");
    // Boot applications: shim / grub with file paths.
    let apps = c["bootApplications"].as_array().expect("array");
    assert!(!apps.is_empty());
    assert!(
        apps.iter().any(|a| a["filePath"]
            .as_str()
            .is_some_and(|p| p.to_ascii_lowercase().ends_with(".efi"))),
        "{apps:?}"
    );
    // EV_EFI_ACTION strings and the GPT event decode.
    let actions = c["bootSummary"]["efiActions"].as_array().expect("array");
    assert!(
        actions.iter().any(|a| a == "Exit Boot Services Invocation"),
        "{actions:?}"
    );
    let gpt = q(
        "Events[?EventTypeString == 'EV_EFI_GPT_EVENT'] | @[0].ProcessedData.Header.Signature",
        &c["events"],
    );
    assert_eq!(gpt, hex::encode("EFI PART"));
    // Every event has a named type and digests in hex.
    let unnamed = q(
        "Events[?starts_with(EventTypeString, 'EV_UNKNOWN')]",
        &c["events"],
    );
    assert_eq!(unnamed, serde_json::json!([]));
}

#[test]
fn tampered_secure_boot_data_is_not_trusted() {
    // Change SecureBoot's data byte without changing the digest: the replay
    // is unchanged, so the claim must not trust the (unbound) event data.
    let t = "tampered_secure_boot_data_is_not_trusted";
    let Some(bin) = read_vector(t, &format!("{T2T}/event-uefivar.bin")) else {
        return;
    };
    let mut log = parse_event_log(&bin).expect("parse");
    assert!(aver_tpm::claims::secure_boot_enabled(&log));
    // The log borrows its data and digests from `bin`: a tampered copy
    // takes their place.
    let (data, digest) = (log.events[1].data, log.events[1].digests[0].digest);
    let mut tampered_data = data.to_vec();
    let last = tampered_data.len() - 1;
    tampered_data[last] = 2;
    log.events[1].data = &tampered_data;
    assert!(!aver_tpm::claims::secure_boot_enabled(&log));
    log.events[1].data = data;
    let mut tampered_digest = digest.to_vec();
    tampered_digest[0] ^= 1;
    log.events[1].digests[0].digest = &tampered_digest;
    assert!(!aver_tpm::claims::secure_boot_enabled(&log));
}
