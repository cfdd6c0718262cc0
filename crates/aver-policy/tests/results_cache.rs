//! A `JmesPath` result that a later rule queries (through the claim it was
//! added as) is read from the structure the evaluation kept, not parsed
//! from its text: the answers are those of parsing the text, checked here
//! against the `jmespath` crate on chains of two queries; a claim whose
//! text merely has a kept result's length is parsed; budgets still stop
//! such policies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::reference;

use aver_policy::{Budget, Claim, ClaimValue, Decision, EvalErrorKind, Policy};
use serde_json::{Value, json};

fn data() -> Value {
    json!({
        "Events": [
            {"PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
             "ProcessedData": {"VariableGuid": "8BE4DF61", "UnicodeName": "SecureBoot", "VariableData": "AQ"}},
            {"PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
             "ProcessedData": {"VariableGuid": "8BE4DF61", "UnicodeName": "PK", "VariableData": "MIIB\"\\x\n"}},
            {"PcrIndex": 12, "EventTypeString": "EV_EVENT_TAG",
             "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_VBS_HVCI_POLICY": [{"String": "HypervisorEnforcedCodeIntegrityEnable", "Value": 1}],
                "EVENT_LOADEDMODULE_AGGREGATION": [
                    {"EVENT_FILEPATH": "\\windows\\system32\\drivers\\wd\\WdBoot.sys", "EVENT_IMAGEVALIDATED": true},
                    {"EVENT_FILEPATH": "\\Windows\\System32\\drivers\\Malicious.sys", "EVENT_IMAGEVALIDATED": true}]}}},
            {"PcrIndex": 20, "EventTypeString": "EV_EVENT_TAG", "Zeta": 1.5, "Alpha": -3,
             "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_DRTM_STATE_AUTH": {"SignatureValid": true}}}},
        ],
        "wide": (0..40).map(|i| (format!("k{i:02}"), json!(i))).collect::<serde_json::Map<String, Value>>(),
    })
}

/// First queries (their results are added as a claim) …
const FIRST: &[&str] = &[
    "Events[?EventTypeString == 'EV_EFI_VARIABLE_DRIVER_CONFIG' && ProcessedData.VariableGuid == '8BE4DF61']",
    "Events[? EventTypeString == 'EV_EVENT_TAG' && (PcrIndex == `12` || PcrIndex == `20`)].ProcessedData.EVENT_TRUSTBOUNDARY",
    "Events",
    "Events[3]",
    "wide",
    "{w: wide, e: Events[0], lit: `{\"b\": [1, {\"d\": 2, \"c\": 3}], \"a\": null}`}",
    "[Events[0].ProcessedData, `[1, 2.5, \"x\"]`, 'text']",
    "map(&PcrIndex, Events)",
];

/// … and second queries, over the first ones' results.
const SECOND: &[&str] = &[
    "@",
    "[?ProcessedData.UnicodeName == 'SecureBoot'] | length(@) == `1` && @[0].ProcessedData.VariableData == 'AQ'",
    "[*].EVENT_VBS_HVCI_POLICY | @[?String == 'HypervisorEnforcedCodeIntegrityEnable'].Value",
    "[*].EVENT_LOADEDMODULE_AGGREGATION[] | [? EVENT_IMAGEVALIDATED == true && equals_ignore_case(EVENT_FILEPATH, '\\windows\\system32\\drivers\\malicious.sys')] | @ != null",
    "[*].ProcessedData",
    "keys(@)",
    "values(@)",
    "*",
    "w.k39",
    "w.k07",
    "lit",
    "e.ProcessedData.VariableData",
    "[0].UnicodeName",
    "to_string(@)",
    "length(@)",
    "[0]",
    "[1]",
    "Zeta",
    "Alpha",
    "sort(@)",
];

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Two rules: the first adds `first`'s result as claim `r1`, the second
/// issues `second` over `r1` as `r2`.
fn chained(first: &str, second: &str) -> String {
    format!(
        "version=1.2; authorizationrules{{ => permit(); }}; issuancerules{{\n\
         c:[type==\"d\"] => add(type=\"r1\", value=JmesPath(c.value, \"{}\"));\n\
         c:[type==\"r1\"] => issue(type=\"r2\", value=JmesPath(c.value, \"{}\"));\n}};",
        quote(first),
        quote(second)
    )
}

#[test]
fn chained_queries_answer_as_over_the_parsed_text() {
    let data = data();
    let claims = [Claim::service("d", ClaimValue::Json(data.clone()))];
    let mut compared = 0;
    for first in FIRST {
        let first_text = reference(first, &data).unwrap();
        let first_value: Value = serde_json::from_str(&first_text).unwrap();
        for second in SECOND {
            let policy = Policy::parse(&chained(first, second)).unwrap();
            let want = reference(second, &first_value);
            match (policy.evaluate(&claims), want) {
                (Ok(e), Ok(want)) => {
                    assert_eq!(e.decision, Decision::Permit);
                    let r1 = e
                        .trace
                        .iter()
                        .flat_map(|t| &t.produced)
                        .find(|c| c.claim_type == "r1");
                    assert_eq!(
                        r1.map(|c| &c.value),
                        Some(&ClaimValue::String(first_text.clone())),
                        "{first}"
                    );
                    let got: Vec<_> = e.issued.iter().map(|c| c.value.clone()).collect();
                    assert_eq!(got, vec![ClaimValue::String(want)], "{first} | {second}");
                    compared += 1;
                }
                (Err(e), Err(_)) => {
                    assert!(
                        matches!(e.kind, EvalErrorKind::JmesPath(_)),
                        "{first} | {second}: {e}"
                    );
                }
                (got, want) => panic!("{first} | {second}: Aver {got:?}, jmespath crate {want:?}"),
            }
        }
    }
    assert!(compared > 100, "{compared}");
}

#[test]
fn a_claim_text_of_a_kept_results_length_is_parsed() {
    // Rule 1 keeps the result `[1,2]`; claim `t` holds `[3,4]`, as long.
    let policy = Policy::parse(
        "version=1.2; authorizationrules{ => permit(); }; issuancerules{\n\
         c:[type==\"d\"] => add(type=\"r1\", value=JmesPath(c.value, \"a\"));\n\
         c:[type==\"r1\"] => issue(type=\"from_r1\", value=JmesPath(c.value, \"[1]\"));\n\
         c:[type==\"t\"] => issue(type=\"from_t\", value=JmesPath(c.value, \"[1]\"));\n\
         c:[type==\"same\"] => issue(type=\"from_same\", value=JmesPath(c.value, \"[1]\"));\n};",
    )
    .unwrap();
    let claims = [
        Claim::service("d", ClaimValue::Json(json!({"a": [1, 2]}))),
        Claim::service("t", ClaimValue::String("[3,4]".into())),
        Claim::service("same", ClaimValue::String("[1,2]".into())),
    ];
    let e = policy.evaluate(&claims).unwrap();
    let got: Vec<(&str, &ClaimValue)> = e
        .issued
        .iter()
        .map(|c| (c.claim_type.as_str(), &c.value))
        .collect();
    assert_eq!(
        got,
        vec![
            ("from_r1", &ClaimValue::String("2".into())),
            ("from_t", &ClaimValue::String("4".into())),
            ("from_same", &ClaimValue::String("2".into())),
        ]
    );
}

#[test]
fn budgets_still_stop_chained_queries() {
    let data = data();
    let claims = [Claim::service("d", ClaimValue::Json(data))];
    let policy = Policy::parse(&chained(FIRST[2], SECOND[1])).unwrap();
    let ok = policy.evaluate(&claims).unwrap();
    assert_eq!(ok.decision, Decision::Permit);
    let exact = Budget {
        max_steps: ok.usage.steps,
        ..Budget::default()
    };
    let again = policy.evaluate_with_budget(&claims, &exact).unwrap();
    assert_eq!(again.usage, ok.usage);
    let tight = Budget {
        max_steps: ok.usage.steps - 1,
        ..Budget::default()
    };
    let e = policy.evaluate_with_budget(&claims, &tight).unwrap_err();
    assert_eq!(e.code(), "PolicyStepLimitExceeded", "{e}");
    // Too little memory to keep the first result (an eighth of the budget
    // is the most caches may hold): it is not kept, and parsing its text
    // in rule 2 does not fit either, as before the cache existed.
    let small = Budget {
        max_value_bytes: 4096,
        ..Budget::default()
    };
    let e = policy.evaluate_with_budget(&claims, &small).unwrap_err();
    assert_eq!(e.code(), "PolicyMemoryLimitExceeded", "{e}");
    assert_eq!(e.rule, 2, "{e}");
}
