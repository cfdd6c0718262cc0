#![no_main]
//! Parses arbitrary UTF-8 as a policy and evaluates it against a few claims.

use aver_policy::{Claim, ClaimValue, Policy, with_legacy_aliases};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let events = serde_json_events();
    let claims = with_legacy_aliases(&[
        Claim::service("x-ms-sgx-is-debuggable", ClaimValue::Bool(false)),
        Claim::service("x-ms-sgx-svn", ClaimValue::Integer(1)),
        Claim::service("x-ms-sgx-mrsigner", ClaimValue::String("ab".into())),
        Claim::service("x-ms-attestation-type", ClaimValue::String("sgx".into())),
        Claim::service("events", events),
    ]);
    if let Ok(e) = policy.evaluate(&claims) {
        let _ = e.to_json();
    }
});

fn serde_json_events() -> ClaimValue {
    ClaimValue::String(
        r#"{"Events":[{"EventTypeString":"EV_EFI_VARIABLE_DRIVER_CONFIG","PcrIndex":7,"ProcessedData":{"UnicodeName":"SecureBoot","VariableData":"AQ"}}]}"#
            .into(),
    )
}
