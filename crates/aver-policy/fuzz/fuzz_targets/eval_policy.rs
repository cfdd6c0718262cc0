#![no_main]
//! Parses arbitrary UTF-8 as a policy and evaluates it under the default
//! budget over a fixed, realistic claim set: SGX claims (with their legacy
//! aliases), a JSON `events` boot log and a few KB of JSON runtime data.
//!
//! Evaluation may fail; it must never panic, never run past its budget
//! (asserted below), and never allocate past it (the evaluator charges
//! before allocating, so the fuzzer's RSS limit would catch a leak of that
//! rule as an out-of-memory crash).

use std::sync::OnceLock;

use aver_policy::{Budget, Claim, Policy, claims_from_json, with_legacy_aliases};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let budget = Budget::default();
    let usage = match policy.evaluate_with_budget(claims(), &budget) {
        Ok(e) => {
            let _ = e.to_json();
            e.usage
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
            e.usage
        }
    };
    assert!(usage.value_bytes <= budget.max_value_bytes, "{usage:?}");
    assert!(usage.claims <= budget.max_claims, "{usage:?}");
    assert!(usage.steps <= budget.max_steps, "{usage:?}");
});

fn claims() -> &'static [Claim] {
    static CLAIMS: OnceLock<Vec<Claim>> = OnceLock::new();
    CLAIMS.get_or_init(|| {
        let claims = json!({
            "x-ms-attestation-type": "sgx",
            "x-ms-ver": "1.0",
            "x-ms-sgx-is-debuggable": false,
            "x-ms-sgx-mrsigner": "4aea5f9a0ed04b11f889aadfe6a1d376213a29a95a85ce7337ae6f7fece6610c",
            "x-ms-sgx-mrenclave": "ac1a5b4c0d77f4bd2d3ba0b85e47a1ad1c1bdab07b01e2a0a16e0f1e0df0e2b3",
            "x-ms-sgx-product-id": 1,
            "x-ms-sgx-svn": 2,
            "x-ms-sgx-ehd": "eyJrdHkiOiJFQyJ9",
            "x-ms-sgx-collateral": {"qeidhash": "ab", "tcbinfohash": "cd"},
            "aikValidated": true,
            "pcrs": {"PCRs": (0..24).map(|i| json!({"Index": i, "Digests": {"SHA256": format!("{i:064x}")}})).collect::<Vec<_>>()},
            "events": events(),
            "x-ms-runtime": runtime_data(),
            "runtimeText": runtime_data().to_string(),
            "tags": ["a", "b", "c"],
        });
        match claims {
            Value::Object(m) => with_legacy_aliases(&claims_from_json(&m)),
            _ => Vec::new(),
        }
    })
}

fn events() -> Value {
    const GUID: &str = "8BE4DF61-93CA-11D2-AA0D-00E098032B8C";
    let mut evs = Vec::new();
    for (i, name) in ["SecureBoot", "PK", "KEK", "db", "dbx"].iter().enumerate() {
        evs.push(json!({"EventSeq": i, "PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
            "Digests": [{"AlgorithmId": "sha256", "Digest": format!("{i:064x}")}],
            "ProcessedData": {"VariableGuid": GUID, "UnicodeName": name,
                "VariableData": if i == 0 { "AQ".to_string() } else { "QUJD".repeat(20) }}}));
    }
    for (i, pcr) in (5..20).zip([12, 13, 19, 20].into_iter().cycle()) {
        evs.push(json!({"EventSeq": i, "PcrIndex": pcr, "EventTypeString": "EV_EVENT_TAG",
            "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_BOOTDEBUGGING": false, "EVENT_CODEINTEGRITY": true,
                "EVENT_VBS_VSM_REQUIRED": true, "EVENT_DRTM_STATE_AUTH": {"SignatureValid": true},
                "EVENT_LOADEDMODULE_AGGREGATION": [{"EVENT_FILEPATH": "\\Windows\\System32\\drivers\\wd\\WdBoot.sys",
                    "EVENT_IMAGEVALIDATED": true}]}}}));
    }
    json!({"Events": evs})
}

fn runtime_data() -> Value {
    json!({
        "keys": (0..40).map(|i| json!({"kid": format!("key{i}"), "kty": "RSA", "e": "AQAB", "n": "u".repeat(64)})).collect::<Vec<_>>(),
        "nonce": "0123456789abcdef",
        "user-data": "x".repeat(256),
    })
}
