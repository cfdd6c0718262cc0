//! The metered JMESPath interpreter gives the results the `jmespath` crate's
//! own interpreter gave (the evaluator used it before budgets existed), on
//! a spread of queries covering every AST node and built-in function.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::reference;

use aver_policy::{Claim, ClaimValue, Decision, EvalErrorKind, Policy};
use serde_json::{Value, json};

fn data() -> Value {
    json!({
        "Events": [
            {"EventSeq": 0, "PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
             "ProcessedData": {"UnicodeName": "SecureBoot", "VariableData": "AQ"}},
            {"EventSeq": 1, "PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
             "ProcessedData": {"UnicodeName": "PK", "VariableData": "MIIB"}},
            {"EventSeq": 2, "PcrIndex": 12, "EventTypeString": "EV_EVENT_TAG",
             "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_BOOTDEBUGGING": false,
                "EVENT_LOADEDMODULE_AGGREGATION": [
                    {"EVENT_FILEPATH": "\\Windows\\System32\\drivers\\wd\\WdBoot.sys", "EVENT_IMAGEVALIDATED": true},
                    {"EVENT_FILEPATH": "\\Windows\\x.sys", "EVENT_IMAGEVALIDATED": false}]}}},
            {"EventSeq": 3, "PcrIndex": 20, "EventTypeString": "EV_EVENT_TAG",
             "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_DRTM_STATE_AUTH": {"SignatureValid": true}}}},
        ],
        "nums": [3, 1.5, -2, 10, 0],
        "strs": ["b", "a", "c\"q", "é\u{1}"],
        "mixed": [1, "a", null, true, {"k": 1}, [1, 2]],
        "nested": [[1, 2], [3, [4, 5]], 6, []],
        "obj": {"z": 1, "a": {"b": [1, 2, 3]}, "m": "x"},
        "people": [{"name": "bo", "age": 30}, {"name": "al", "age": 25}, {"name": "cy", "age": 35}],
        "empty": [],
        "emptyobj": {},
        "n": null,
        "t": true,
        "big": 12345678901234_i64,
        "neg": -7,
        "float": 2.5,
    })
}

const QUERIES: &[&str] = &[
    "@",
    "Events",
    "Events[0]",
    "Events[-1]",
    "Events[-10]",
    "Events[10]",
    "Events[*].EventSeq",
    "Events[].PcrIndex",
    "Events[?PcrIndex == `7`].ProcessedData.UnicodeName",
    "Events[?EventTypeString == 'EV_EVENT_TAG' && PcrIndex == `20`] | length(@) == `1` && @[0] | @.{EventSeq: EventSeq, Valid: ProcessedData.EVENT_TRUSTBOUNDARY.EVENT_DRTM_STATE_AUTH.SignatureValid}",
    "Events[?EventTypeString == 'EV_EVENT_TAG'].ProcessedData.EVENT_TRUSTBOUNDARY.EVENT_LOADEDMODULE_AGGREGATION[] | [?EVENT_IMAGEVALIDATED == `true` && equals_ignore_case(EVENT_FILEPATH, '\\windows\\system32\\drivers\\wd\\wdboot.sys')] | @ != `null`",
    "Events[?ProcessedData.UnicodeName == 'SecureBoot'] | length(@) == `1` && @[0].ProcessedData.VariableData == 'AQ'",
    "Events[?PcrIndex == '20']",
    "Events[?PcrIndex > `7`].EventSeq",
    "Events[?PcrIndex >= `7`].EventSeq",
    "Events[?PcrIndex < `12`].EventSeq",
    "Events[?PcrIndex <= `12`].EventSeq",
    "Events[?PcrIndex != `7`].EventSeq",
    "Events[?!(PcrIndex == `7`)].EventSeq",
    "Events[?PcrIndex == `7` || PcrIndex == `20`].EventSeq",
    "nums[?@ > `1`]",
    "nums[0:2]",
    "nums[::2]",
    "nums[::-1]",
    "nums[-2:]",
    "nums[:-2]",
    "nums[10:]",
    "nums[1:4:2]",
    "nums[4:1:-1]",
    "nested[]",
    "nested[][]",
    "nested[*][0]",
    "obj.*",
    "obj.a.b[1]",
    "obj.missing.deep",
    "obj | keys(@)",
    "values(obj)",
    "[obj.z, obj.m, n]",
    "{z: obj.z, m: obj.m, x: n}",
    "n.[a, b]",
    "n.{a: a}",
    "people[*].name",
    "people[?age > `26`].name | sort(@)",
    "sort_by(people, &age)[*].name",
    "sort_by(people, &name)[0]",
    "max_by(people, &age).name",
    "min_by(people, &age).name",
    "max_by(empty, &age)",
    "map(&name, people)",
    "map(&[name, age], people)",
    "abs(neg)",
    "abs(`3`)",
    "avg(nums)",
    "ceil(float)",
    "floor(float)",
    "contains(strs, 'a')",
    "contains(mixed, `{\"k\": 1}`)",
    "contains(mixed, `[1, 2]`)",
    "contains('abcdef', 'cd')",
    "contains('abcdef', `1`)",
    "ends_with('abcdef', 'ef')",
    "starts_with('abcdef', 'ab')",
    "join(', ', strs)",
    "join('', `[]`)",
    "length(strs)",
    "length(obj)",
    "length('héllo')",
    "max(nums)",
    "min(nums)",
    "max(strs)",
    "min(strs)",
    "max(empty)",
    "merge(obj, `{\"z\": 2, \"new\": [1]}`)",
    "not_null(n, obj.missing, `\"x\"`, `1`)",
    "not_null(n)",
    "reverse(nums)",
    "reverse('abc')",
    "sort(nums)",
    "sort(strs)",
    "sum(nums)",
    "sum(empty)",
    "to_array(`1`)",
    "to_array(nums)",
    "to_number('12')",
    "to_number('-1.5')",
    "to_number('x')",
    "to_number(`true`)",
    "to_number(neg)",
    "to_string(obj)",
    "to_string('s')",
    "to_string(nums)",
    "to_string(`null`)",
    "type(obj)",
    "type(nums)",
    "type(n)",
    "type(t)",
    "type('s')",
    "type(`1`)",
    "big",
    "float",
    "strs",
    "mixed",
    "`\"\\u0007 tab\\t\"`",
    "'raw \\' string'",
    "t && n",
    "n || t",
    "!t",
    "!empty",
    "!emptyobj",
    "obj.a.b == `[1, 2, 3]`",
    "obj == obj",
    "people[0] == people[0]",
    "nums[0] == `3.0`",
    "`1` < `2`",
    "'a' < 'b'",
    "obj.z == 'a'",
    "emptyobj",
    "empty",
    "@.Events[0].ProcessedData | keys(@)",
    "[Events[0].EventSeq, Events[1].EventSeq][?@ > `0`]",
    "people[?contains(name, 'o')] | [0].age",
    "people[*].[name, age][]",
    "length(people[?age > `100`])",
    "obj.a.b[?@ > `1`] | [0]",
];

fn new_search(query: &str, data: &Value) -> Result<String, EvalErrorKind> {
    let escaped = query.replace('\\', "\\\\").replace('"', "\\\"");
    let policy = format!(
        "version=1.2; authorizationrules{{ => permit(); }}; issuancerules{{ c:[type==\"d\"] => issue(type=\"r\", value=JmesPath(c.value, \"{escaped}\")); }};"
    );
    let policy = Policy::parse(&policy).unwrap_or_else(|e| panic!("{query}: {e}"));
    let claims = [Claim::service("d", ClaimValue::Json(data.clone()))];
    match policy.evaluate(&claims) {
        Ok(e) => {
            assert_eq!(e.decision, Decision::Permit);
            // An array or object result is a `ClaimValue::JsonString`, a
            // scalar's a `ClaimValue::String`: both are Strings, compared
            // here by their text.
            match e.issued.first().and_then(|c| c.value.as_text()) {
                Some(s) => Ok(s.to_owned()),
                None => panic!("{query}: unexpected result {:?}", e.issued.first()),
            }
        }
        Err(e) => Err(e.kind),
    }
}

#[test]
fn the_metered_interpreter_matches_the_jmespath_crate() {
    let data = data();
    let mut compared = 0;
    for q in QUERIES {
        let old = reference(q, &data);
        let new = new_search(q, &data);
        match (&old, &new) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{q}"),
            (Err(_), Err(EvalErrorKind::JmesPath(_))) => {}
            _ => panic!("{q}: jmespath crate {old:?}, Aver {new:?}"),
        }
        compared += 1;
    }
    assert!(compared > 100);
}

#[test]
fn documented_differences_from_the_jmespath_crate() {
    let data = data();
    // avg([]) is null rather than an error.
    assert!(reference("avg(empty)", &data).is_err());
    assert_eq!(new_search("avg(empty)", &data).expect("null"), "null");
    // to_number only converts number text.
    assert_eq!(reference("to_number('[1]')", &data).expect("array"), "[1]");
    assert_eq!(new_search("to_number('[1]')", &data).expect("null"), "null");
    // An expression reference serializes as a fixed string.
    assert_eq!(new_search("&a", &data).expect("expref"), "\"<expression>\"");
    // Errors are errors in both (messages differ).
    for q in [
        "abs('x')",
        "unknown_fn(@)",
        "sort(mixed)",
        "nums[::0]",
        "length(`1`)",
    ] {
        assert!(reference(q, &data).is_err(), "{q}");
        assert!(
            matches!(new_search(q, &data), Err(EvalErrorKind::JmesPath(_))),
            "{q}"
        );
    }
}
