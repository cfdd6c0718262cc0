//! Parser decisions and evaluation semantics of every construct.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_policy::{Claim, ClaimValue, Decision, EvalErrorKind, Evaluation, Policy, Section};
use serde_json::{Value, json};

fn s(v: &str) -> ClaimValue {
    ClaimValue::String(v.into())
}
fn i(v: i64) -> ClaimValue {
    ClaimValue::Integer(v)
}
fn b(v: bool) -> ClaimValue {
    ClaimValue::Bool(v)
}
fn svc(t: &str, v: ClaimValue) -> Claim {
    Claim::service(t, v)
}

/// Wraps issuance rules in a 1.2 policy that permits.
fn issuance(rules: &str) -> String {
    format!("version=1.2; authorizationrules{{ => permit(); }}; issuancerules{{ {rules} }};")
}

fn eval(policy: &str, claims: &[Claim]) -> Evaluation {
    Policy::parse(policy)
        .unwrap_or_else(|e| panic!("parse failed: {e}\n{policy}"))
        .evaluate(claims)
        .unwrap_or_else(|e| panic!("evaluation failed: {e}\n{policy}"))
}

fn issued(policy: &str, claims: &[Claim]) -> Value {
    let e = eval(policy, claims);
    assert_eq!(e.decision, Decision::Permit, "{:?}", e.deny_reason);
    Value::Object(e.issued_json())
}

fn parse_err(policy: &str) -> String {
    match Policy::parse(policy) {
        Ok(_) => panic!("expected a parse error for:\n{policy}"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------- parsing

/// Decision table for documented typos and other deliberate choices
/// (crate docs D1..D14): input, `None` = accepted, `Some(message)` = exact error.
const DECISIONS: &[(&str, &str, Option<&str>)] = &[
    (
        "D1 single '=' in a condition",
        "version=1.0; authorizationrules{ [type=\"a\", issuer=\"AttestationService\"] => permit(); };",
        None,
    ),
    (
        "D2 smart quotes around a string",
        "version=1.0; authorizationrules{ [type==”OSName”] => permit(); };",
        Some(
            "line 1, column 41: expected '\"' (ASCII double quote), found '”' (typographic quote U+201D)",
        ),
    ),
    (
        "D2 string closed by a smart quote",
        "version=1.1;\nconfigurationrules{ => issueproperty(type=\"x-ms-sgx-tcbidentifier\", value=\"11”\n); };",
        Some(
            "line 2, column 78: expected '\"' to close the string, found '”' (typographic quote U+201D)",
        ),
    ),
    (
        "D3 Issuancerules capitalised",
        "version=1.0; authorizationrules{ => permit(); };\nIssuancerules{ };",
        Some(
            "line 2, column 1: expected 'issuancerules' (keywords are case-sensitive) or end of policy, found 'Issuancerules'",
        ),
    ),
    (
        "D3 Version capitalised",
        "Version=1.0; authorizationrules{ => permit(); };",
        Some("line 1, column 1: expected 'version' (keywords are case-sensitive), found 'Version'"),
    ),
    (
        "D4 missing ';' after a rule",
        "version=1.0;\nauthorizationrules{\n  => permit()\n  => deny();\n};",
        Some("line 4, column 3: expected ';' after the rule, found '=>'"),
    ),
    (
        "D4 missing ';' after a section",
        "version=1.0; authorizationrules{ => permit(); }\nissuancerules{};",
        Some("line 2, column 1: expected ';' after the section's '}', found 'issuancerules'"),
    ),
    (
        "D5 positional claim type",
        "version=1.0; authorizationrules{ => permit(); }; issuancerules{ => issue(\"PlatformAttested\", value=true); };",
        Some(
            "line 1, column 74: expected 'type', 'value', 'valueType', 'issuer' or 'claim', found '\"PlatformAttested\"'",
        ),
    ),
    (
        "D6 NegateBol",
        "version=1.2; authorizationrules{ => permit(); }; issuancerules{ c:[type==\"Input\"] => add(type=\"Result\", value=NegateBol(c.value)); };",
        Some(
            "line 1, column 111: expected a function (JmesPath, JsonToClaimValue, IsSubsetOf, AppendString, NegateBool, ContainsOnlyValue), found 'NegateBol'",
        ),
    ),
    (
        "D7 ContainsOnlyValue with one argument",
        "version=1.2; authorizationrules{ => permit(); }; issuancerules{ c:[type==\"Set\"] => add(type=\"Result\", value=ContainsOnlyValue(100)); };",
        Some("line 1, column 109: expected 2 arguments for ContainsOnlyValue, found 1 argument(s)"),
    ),
    (
        "D8 unbound identifier",
        "version=1.2; authorizationrules{ => permit(); }; issuancerules{ c:[type==\"String1\"] && c2:[type==\"String2\"] => add(type=\"Result\", value=AppendString(c1.value, c2.value)); };",
        Some(
            "line 1, column 150: expected an identifier bound by an earlier condition of this rule, found 'c1'",
        ),
    ),
    (
        "D9 template placeholder",
        "version=1.0; authorizationrules{ [type==\"x-ms-sgx-product-id\", value==<product-id>] => permit(); };",
        Some(
            "line 1, column 71: expected an expression (string, integer, true, false, name.property or function call), found '<'",
        ),
    ),
    (
        "D10 space before ':'",
        "version=1.2; authorizationrules{ => permit(); }; issuancerules{ c :[type==\"events\"] => issue(type=\"e\", value=c.value); };",
        None,
    ),
    (
        "D11 issue() in authorizationrules",
        "version=1.2; authorizationrules{ => issue(type=\"x\", value=1); => permit(); };",
        None,
    ),
    (
        "D12 fragments",
        "c:[type==\"x\"] => permit();",
        Some("line 1, column 1: expected 'version', found 'c'"),
    ),
    (
        "D13 spaced version",
        "version = 1.2 ; authorizationrules { => permit(); } ;",
        None,
    ),
    (
        "D14 comments in 1.0",
        "// leading\nversion=1.0; /* block */ authorizationrules{ => permit(); // trailing\n};",
        None,
    ),
    (
        "'!' needs 1.2",
        "version=1.1; authorizationrules{ ![type==\"x\"] => permit(); };",
        Some(
            "line 1, column 34: expected a condition ('[' or 'name:['); the '!' operator requires version=1.2, found '!'",
        ),
    ),
    (
        "functions need 1.2",
        "version=1.1; authorizationrules{ => permit(); }; issuancerules{ => issue(type=\"x\", value=NegateBool(true)); };",
        Some(
            "line 1, column 90: expected an expression (function calls require version=1.2), found 'NegateBool'",
        ),
    ),
    (
        "configurationrules needs 1.1",
        "version=1.0; configurationrules{ }; authorizationrules{ => permit(); };",
        Some(
            "line 1, column 14: expected 'authorizationrules' (configurationrules requires version=1.1 or later), found 'configurationrules'",
        ),
    ),
    (
        "unknown version",
        "version=1.3; authorizationrules{ => permit(); };",
        Some("line 1, column 9: expected version 1.0, 1.1 or 1.2, found '1.3'"),
    ),
    (
        "permit() outside authorizationrules",
        "version=1.0; authorizationrules{ => permit(); }; issuancerules{ => permit(); };",
        Some(
            "line 1, column 68: expected an action allowed in issuancerules (add, issue, issueproperty), found 'permit'",
        ),
    ),
    (
        "ordering on a string literal",
        "version=1.0; authorizationrules{ [type==\"x\", value < \"5\"] => permit(); };",
        Some(
            "line 1, column 54: expected an integer operand (<, <=, >, >= compare integers only), found '\"5\"'",
        ),
    ),
    (
        "ordering on type",
        "version=1.0; authorizationrules{ [type < 5] => permit(); };",
        Some("line 1, column 40: expected '==' or '!=' (only 'value' can be ordered), found '<'"),
    ),
    (
        "negated binding",
        "version=1.2; authorizationrules{ !c:[type==\"x\"] => permit(); };",
        Some(
            "line 1, column 35: expected '[' (a negated condition cannot bind an identifier), found 'c'",
        ),
    ),
    (
        "duplicate binding",
        "version=1.0; authorizationrules{ c:[type==\"x\"] && c:[type==\"y\"] => permit(); };",
        Some("line 1, column 51: expected an identifier not already bound in this rule, found 'c'"),
    ),
    (
        "self reference",
        "version=1.0; authorizationrules{ c:[type==\"x\", value==c.value] => permit(); };",
        Some(
            "line 1, column 55: expected an identifier bound by an earlier condition of this rule, found 'c'",
        ),
    ),
    (
        "trailing text",
        "version=1.0; authorizationrules{ => permit(); }; issuancerules{ }; extra",
        Some("line 1, column 68: expected end of policy, found 'extra'"),
    ),
    (
        "missing value=",
        "version=1.0; authorizationrules{ => add(type=\"x\"); };",
        Some("line 1, column 49: expected both 'type=' and 'value=' in add(), found ')'"),
    ),
    (
        "unterminated string",
        "version=1.0; authorizationrules{ [type==\"x] => permit(); };",
        Some("line 1, column 60: expected '\"' to close the string, found end of input"),
    ),
    (
        "unterminated block comment",
        "version=1.0; /* authorizationrules{ => permit(); };",
        Some("line 1, column 14: expected '*/' to close the comment, found end of input"),
    ),
    (
        "missing authorizationrules",
        "version=1.0; issuancerules{ };",
        Some("line 1, column 14: expected 'authorizationrules', found 'issuancerules'"),
    ),
    (
        "empty condition",
        "version=1.0; authorizationrules{ [] => permit(); };",
        Some(
            "line 1, column 35: expected a claim property (type, value, issuer, valueType), found ']'",
        ),
    ),
];

#[test]
fn decision_table() {
    let mut failures = Vec::new();
    for (name, text, expected) in DECISIONS {
        match (Policy::parse(text), expected) {
            (Ok(_), None) => {}
            (Err(e), Some(msg)) if e.to_string() == *msg => {}
            (Err(e), Some(msg)) => {
                failures.push(format!("{name}:\n  got      {e}\n  expected {msg}"))
            }
            (Ok(_), Some(msg)) => failures.push(format!("{name}: accepted, expected: {msg}")),
            (Err(e), None) => failures.push(format!("{name}: rejected: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parse_error_fields_and_display() {
    let e = Policy::parse("version=1.0;\nauthorizationrules{\n  => permit()\n};\nissuancerules{};")
        .expect_err("missing ';'");
    assert_eq!((e.line, e.column), (4, 1));
    assert_eq!(e.expected, "';' after the rule");
    assert_eq!(e.found, "'}'");
    let e = Policy::parse("version=1.0; authorizationrules{ => permit() }; issuancerules{};")
        .expect_err("x");
    assert_eq!(
        e.to_string(),
        "line 1, column 46: expected ';' after the rule, found '}'"
    );
}

#[test]
fn versions_and_sections() {
    for (text, v) in [
        ("version=1.0; authorizationrules{};", (1, 0)),
        (
            "version= 1.1; configurationrules{}; authorizationrules{}; issuancerules{};",
            (1, 1),
        ),
        ("version=1.2;authorizationrules{};issuancerules{};", (1, 2)),
    ] {
        let p = Policy::parse(text).expect("parses");
        assert_eq!(p.version(), v);
        assert!(p.rules(Section::Authorization).is_some());
    }
    let p = Policy::parse("version=1.0; authorizationrules{ => permit(); => deny(); };")
        .expect("parses");
    assert_eq!(p.rules(Section::Authorization).map(|r| r.len()), Some(2));
    assert!(p.rules(Section::Issuance).is_none());
}

#[test]
fn string_escapes_and_integers() {
    let out = issued(
        &issuance(
            r#"=> issue(type="q", value="a\"b\\c"); => issue(type="h", value=0x10); => issue(type="n", value=-5);"#,
        ),
        &[],
    );
    assert_eq!(out, json!({"q": "a\"b\\c", "h": 16, "n": -5}));
    assert!(
        Policy::parse(r#"version=1.0; authorizationrules{ => add(type="x", value="\q"); };"#)
            .is_err()
    );
    assert!(
        Policy::parse(
            "version=1.0; authorizationrules{ => add(type=\"x\", value=99999999999999999999); };"
        )
        .is_err()
    );
}

// ---------------------------------------------------------------- evaluation

#[test]
fn integer_operators() {
    let claims = [svc("svn", i(5))];
    for (op, rhs, expect) in [
        ("==", 5, true),
        ("==", 4, false),
        ("!=", 4, true),
        ("!=", 5, false),
        ("<", 6, true),
        ("<", 5, false),
        ("<=", 5, true),
        ("<=", 4, false),
        (">", 4, true),
        (">", 5, false),
        (">=", 5, true),
        (">=", 6, false),
    ] {
        let p = format!(
            "version=1.0; authorizationrules{{ [type==\"svn\", value {op} {rhs}] => permit(); }};"
        );
        let d = eval(&p, &claims).decision;
        assert_eq!(d == Decision::Permit, expect, "svn=5 {op} {rhs}");
    }
}

#[test]
fn string_and_bool_operators_and_no_coercion() {
    let claims = [
        svc("tee", s("sgx")),
        svc("dbg", b(false)),
        svc("num", s("1")),
    ];
    for (cond, expect) in [
        (r#"[type=="tee", value=="sgx"]"#, true),
        (r#"[type=="tee", value=="SGX"]"#, false),
        (r#"[type=="tee", value!="tdx"]"#, true),
        (r#"[type=="tee", value!="sgx"]"#, false),
        (r#"[type=="dbg", value==false]"#, true),
        (r#"[type=="dbg", value==true]"#, false),
        (r#"[type=="dbg", value!=true]"#, true),
        (r#"[type=="num", value==1]"#, false),
        (r#"[type=="num", value=="1"]"#, true),
        (r#"[type=="num", value>0]"#, false),
        (r#"[type=="tee", issuer=="AttestationService"]"#, true),
        (r#"[type=="tee", issuer=="AttestationPolicy"]"#, false),
        (r#"[type=="dbg", valueType=="Boolean"]"#, true),
        (r#"[type=="dbg", valueType=="String"]"#, false),
        (r#"[type!="tee", value==false]"#, true),
    ] {
        let p = format!("version=1.0; authorizationrules{{ {cond} => permit(); }};");
        assert_eq!(
            eval(&p, &claims).decision == Decision::Permit,
            expect,
            "{cond}"
        );
    }
}

#[test]
fn conditions_with_only_value_and_conjunctions() {
    let claims = [svc("a", i(1)), svc("b", i(2))];
    // `[value==2]` matches any claim with value 2.
    let p = "version=1.0; authorizationrules{ [type==\"a\"] && [value==2] => permit(); };";
    assert_eq!(eval(p, &claims).decision, Decision::Permit);
    let p = "version=1.0; authorizationrules{ [type==\"a\"] && [value==3] => permit(); };";
    assert_eq!(eval(p, &claims).decision, Decision::Deny);
    // All properties must hold for the same claim.
    let p = "version=1.0; authorizationrules{ [type==\"a\", value==2] => permit(); };";
    assert_eq!(eval(p, &claims).decision, Decision::Deny);
}

#[test]
fn multiple_matching_claims_issue_once_each() {
    let claims = [svc("x", i(1)), svc("x", i(2)), svc("y", i(3))];
    let out = issued(
        &issuance(r#"c:[type=="x"] => issue(type="out", value=c.value);"#),
        &claims,
    );
    assert_eq!(out, json!({"out": [1, 2]}));
    // A condition with no identifier fires the action once.
    let out = issued(
        &issuance(r#"[type=="x"] => issue(type="once", value=true);"#),
        &claims,
    );
    assert_eq!(out, json!({"once": true}));
}

#[test]
fn identifier_binding_across_conditions() {
    let claims = [
        Claim {
            claim_type: "OSName".into(),
            value: s("Windows"),
            issuer: "CustomClaim".into(),
        },
        svc("OSName", s("Windows")),
        svc("OSName", s("Linux")),
    ];
    let rules = r#"F1:[type=="OSName", issuer=="CustomClaim"] &&
        C2:[type=="OSName", issuer=="AttestationService", value==F1.value] => issue(claim=C2);
        F1:[type=="OSName", issuer=="CustomClaim"] &&
        [type=="OSName", issuer=="AttestationService", value==F1.value] => issueproperty(type="report_validity_in_minutes", value=1440);"#;
    let e = eval(&issuance(rules), &claims);
    assert_eq!(Value::Object(e.issued_json()), json!({"OSName": "Windows"}));
    // issue(claim=c) keeps the original issuer.
    assert_eq!(e.issued[0].issuer, "AttestationService");
    assert_eq!(
        Value::Object(e.properties_json()),
        json!({"report_validity_in_minutes": 1440})
    );

    // No service claim with the same value -> nothing.
    let claims2 = [claims[0].clone(), svc("OSName", s("Linux"))];
    let e = eval(&issuance(rules), &claims2);
    assert!(e.issued.is_empty() && e.properties.is_empty());
}

#[test]
fn negation() {
    let rules = r#"![type=="Claim3"] => add(type="Claim3", value=300);
                   c:[type=="Claim3"] => issue(type="out", value=c.value);
                   ![type=="Claim1"] => issue(type="never", value=1);"#;
    let claims = [svc("Claim1", i(100)), svc("Claim2", i(200))];
    assert_eq!(issued(&issuance(rules), &claims), json!({"out": 300}));
    let claims = [svc("Claim1", i(100)), svc("Claim3", i(7))];
    assert_eq!(issued(&issuance(rules), &claims), json!({"out": 7}));
}

#[test]
fn deny_beats_permit_and_stops() {
    let p = "version=1.0; authorizationrules{ => permit(); [type==\"bad\"] => deny(); => permit(); }; issuancerules{ => issue(type=\"x\", value=1); };";
    let ok = eval(p, &[]);
    assert_eq!(ok.decision, Decision::Permit);
    assert_eq!(Value::Object(ok.issued_json()), json!({"x": 1}));
    let denied = eval(p, &[svc("bad", b(true))]);
    assert_eq!(denied.decision, Decision::Deny);
    assert_eq!(
        denied.deny_reason.as_deref(),
        Some("rule 2 of authorizationrules (line 1) issued deny()")
    );
    assert!(denied.issued.is_empty());
    // Evaluation stopped at the deny: rules 3 of authz and the issuance rule were not run.
    assert_eq!(denied.trace.len(), 2);
    assert_eq!(denied.to_json()["decision"], json!("deny"));
    assert!(denied.to_json()["deny_reason"].is_string());
}

#[test]
fn no_permit_is_deny() {
    let p = "version=1.0; authorizationrules{ [type==\"x\"] => permit(); }; issuancerules{ => issue(type=\"y\", value=1); };";
    let e = eval(p, &[]);
    assert_eq!(e.decision, Decision::Deny);
    assert_eq!(
        e.deny_reason.as_deref(),
        Some("no permit() was issued by authorizationrules")
    );
    assert!(e.issued.is_empty());
    let e = eval("version=1.0; authorizationrules{};", &[]);
    assert_eq!(e.decision, Decision::Deny);
    let permit = eval(p, &[svc("x", b(true))]);
    assert_eq!(permit.decision, Decision::Permit);
    assert!(permit.to_json().get("deny_reason").is_none());
}

#[test]
fn add_issue_issueproperty_visibility() {
    let p = r#"version=1.1;
        configurationrules{ => issueproperty(type="cfg", value=1); };
        authorizationrules{ [type=="cfg"] => add(type="authz-added", value=2); [type=="authz-added"] => permit(); };
        issuancerules{
            => add(type="a", value=1);
            => issue(type="i", value=2);
            => issueproperty(type="p", value=3);
            [type=="a"] && [type=="i"] && [type=="p"] && [type=="cfg"] => issue(type="all-visible", value=true);
        };"#;
    let e = eval(p, &[]);
    assert_eq!(e.decision, Decision::Permit);
    assert_eq!(
        Value::Object(e.issued_json()),
        json!({"i": 2, "all-visible": true})
    );
    assert_eq!(
        Value::Object(e.properties_json()),
        json!({"cfg": 1, "p": 3})
    );
    assert!(e.issued.iter().all(|c| c.issuer == "AttestationPolicy"));
    // issue() in authorizationrules reaches the incoming set only.
    let p = "version=1.0; authorizationrules{ => issue(type=\"x\", value=1); [type==\"x\"] => permit(); }; issuancerules{};";
    let e = eval(p, &[]);
    assert_eq!(e.decision, Decision::Permit);
    assert!(e.issued.is_empty());
}

#[test]
fn a_rule_does_not_see_its_own_claims() {
    let out = issued(
        &issuance(
            r#"c:[type=="n"] => add(type="n", value=5); c:[type=="n"] => issue(type="out", value=c.value);"#,
        ),
        &[svc("n", i(1))],
    );
    assert_eq!(out, json!({"out": [1, 5]}));
}

#[test]
fn issue_claim_copy_and_explicit_issuer_and_value_type() {
    let out = eval(
        &issuance(
            r#"c:[type=="x"] => issue(claim=c);
               => issue(type="s", value=12, valueType="String");
               => issue(type="n", value="12", valueType="Integer");
               => issue(type="t", value="TRUE", valueType="Boolean");
               => issue(type="who", value=1, issuer="CustomIssuer");"#,
        ),
        &[svc("x", s("v"))],
    );
    assert_eq!(
        Value::Object(out.issued_json()),
        json!({"x": "v", "s": "12", "n": 12, "t": true, "who": 1})
    );
    assert_eq!(out.issued[0].issuer, "AttestationService");
    assert_eq!(out.issued[4].issuer, "CustomIssuer");
    let err = Policy::parse(&issuance(
        r#"=> issue(type="n", value="x", valueType="Integer");"#,
    ))
    .expect("parses")
    .evaluate(&[])
    .expect_err("conversion fails");
    assert!(matches!(err.kind, EvalErrorKind::Type(_)), "{err}");
}

// ---------------------------------------------------------------- functions

fn func_err(rules: &str, claims: &[Claim]) -> aver_policy::EvalError {
    Policy::parse(&issuance(rules))
        .unwrap_or_else(|e| panic!("{e}"))
        .evaluate(claims)
        .expect_err("evaluation should fail")
}

#[test]
fn jmespath_function() {
    // Literal JSON; the result is JSON text (string results stay quoted).
    let out = issued(
        &issuance(r#"=> issue(type="r", value=JmesPath("{\"foo\": \"bar\"}", "foo"));"#),
        &[],
    );
    assert_eq!(out, json!({"r": "\"bar\""}));
    // From claims (doc example): values[2] -> "2".
    let claims = [
        svc("JsonData", s(r#"{"values": [0,1,2,3,4]}"#)),
        svc("JmesPathQuery", s("values[2]")),
    ];
    let out = issued(
        &issuance(
            r#"c1:[type="JsonData"] && c2:[type=="JmesPathQuery"] => issue(type="JmesPathResult", value=JmesPath(c1.value, c2.value));"#,
        ),
        &claims,
    );
    assert_eq!(out, json!({"JmesPathResult": "2"}));
    // Structured Json claims, null results and equals_ignore_case.
    let claims = [svc(
        "j",
        ClaimValue::Json(json!({"a": {"Path": "\\Windows\\WDBOOT.sys"}})),
    )];
    let out = issued(
        &issuance(
            r#"c:[type=="j"] => issue(type="missing", value=JmesPath(c.value, "nope"));
               c:[type=="j"] => issue(type="eq", value=JmesPath(c.value, "equals_ignore_case(a.Path, '\\windows\\wdboot.sys')"));
               c:[type=="j"] => issue(type="ne", value=JmesPath(c.value, "equals_ignore_case(a.Nope, 'x')"));"#,
        ),
        &claims,
    );
    assert_eq!(out, json!({"missing": "null", "eq": "true", "ne": "false"}));
    // Errors: invalid JSON text, empty query, bad query.
    let e = func_err(
        r#"=> issue(type="r", value=JmesPath("{not json", "a"));"#,
        &[],
    );
    assert!(matches!(e.kind, EvalErrorKind::Function { .. }), "{e}");
    assert_eq!(e.line, 1);
    let e = func_err(r#"=> issue(type="r", value=JmesPath("{}", ""));"#, &[]);
    assert!(matches!(e.kind, EvalErrorKind::Function { .. }), "{e}");
    let e = func_err(r#"=> issue(type="r", value=JmesPath("{}", "a[?"));"#, &[]);
    assert!(matches!(e.kind, EvalErrorKind::JmesPath(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("rule 1 of issuancerules (line 1): JmesPath:"),
        "{e}"
    );
    // Deep queries are refused before reaching the JMESPath engine.
    let deep = "a.".repeat(300) + "a";
    let e = func_err(
        &format!(r#"=> issue(type="r", value=JmesPath("{{}}", "{deep}"));"#),
        &[],
    );
    assert!(matches!(e.kind, EvalErrorKind::Limit(_)), "{e}");
}

#[test]
fn json_to_claim_value_function() {
    let claims = [
        svc("int", s("100")),
        svc("bool", s("true")),
        svc("str", s("\"abc\"")),
        svc("arr", s(r#"[0, "abc", true, null]"#)),
        svc("null", s("null")),
        svc("fraction", s("1.5")),
        svc("object", s(r#"{"a": 1}"#)),
        svc("nested", s("[[1]]")),
        svc("json", ClaimValue::Json(json!([1, 2]))),
    ];
    let ok = r#"c:[type=="int"] => issue(type="IntegerResult", value=JsonToClaimValue(c.value));
        c:[type=="bool"] => issue(type="BooleanResult", value=JsonToClaimValue(c.value));
        c:[type=="str"] => issue(type="StringResult", value=JsonToClaimValue(c.value));
        c:[type=="arr"] => issue(type="Result", value=JsonToClaimValue(c.value));
        c:[type=="null"] => issue(type="NullResult", value=JsonToClaimValue(c.value));
        c:[type=="json"] => issue(type="JsonResult", value=JsonToClaimValue(c.value));
        => issue(type="Passthrough", value=JsonToClaimValue(7));"#;
    let e = eval(&issuance(ok), &claims);
    assert_eq!(
        Value::Object(e.issued_json()),
        json!({"IntegerResult": 100, "BooleanResult": true, "StringResult": "abc",
               "Result": [0, "abc", true], "JsonResult": [1, 2], "Passthrough": 7})
    );
    // null -> no claim at all; the array -> three claims of one type.
    assert_eq!(
        e.issued.iter().filter(|c| c.claim_type == "Result").count(),
        3
    );
    assert!(!e.issued.iter().any(|c| c.claim_type == "NullResult"));
    for bad in ["fraction", "object", "nested", "unquoted"] {
        let claims = [
            svc("unquoted", s("abc")),
            claims[5].clone(),
            claims[6].clone(),
            claims[7].clone(),
        ];
        let err = func_err(
            &format!(r#"c:[type=="{bad}"] => issue(type="r", value=JsonToClaimValue(c.value));"#),
            &claims,
        );
        assert!(
            matches!(err.kind, EvalErrorKind::Function { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn is_subset_of_function() {
    let claims = [
        svc("Subset", s("abc")),
        svc("Subset", i(100)),
        svc("Superset", b(true)),
        svc("Superset", s("abc")),
        svc("Superset", i(100)),
    ];
    let out = issued(
        &issuance(
            r#"c1:[type == "Subset"] && c2:[type=="Superset"] => issue(type="IsSubset", value=IsSubsetOf(c1.value, c2.value));
               c1:[type == "Subset"] && c2:[type=="Superset"] => issue(type="Reverse", value=IsSubsetOf(c2.value, c1.value));"#,
        ),
        &claims,
    );
    assert_eq!(out, json!({"IsSubset": true, "Reverse": false}));
}

#[test]
fn append_string_and_negate_bool() {
    let claims = [
        svc("String1", s("abc")),
        svc("String2", s("xyz")),
        svc("Input", b(true)),
    ];
    let out = issued(
        &issuance(
            r#"c1:[type=="String1"] && c2:[type=="String2"] => issue(type="Result", value=AppendString(c1.value, c2.value));
               c:[type=="Input"] => issue(type="Negated", value=NegateBool(c.value));
               => issue(type="Nested", value=AppendString(AppendString("a", "b"), "c"));"#,
        ),
        &claims,
    );
    assert_eq!(
        out,
        json!({"Result": "abcxyz", "Negated": false, "Nested": "abc"})
    );
    let e = func_err(r#"=> issue(type="r", value=AppendString("a", 1));"#, &[]);
    assert!(matches!(e.kind, EvalErrorKind::Function { .. }));
    let e = func_err(r#"=> issue(type="r", value=NegateBool("true"));"#, &[]);
    assert!(matches!(e.kind, EvalErrorKind::Function { .. }));
}

#[test]
fn contains_only_value_function() {
    let rules = r#"c:[type=="Set"] => issue(type="Only100", value=ContainsOnlyValue(c.value, 100));
                   c:[type=="Set"] => issue(type="OnlyX", value=ContainsOnlyValue(c.value, "x"));"#;
    assert_eq!(
        issued(&issuance(rules), &[svc("Set", i(100)), svc("Set", i(101))]),
        json!({"Only100": false, "OnlyX": false})
    );
    assert_eq!(
        issued(&issuance(rules), &[svc("Set", i(100)), svc("Set", i(100))]),
        json!({"Only100": true, "OnlyX": false})
    );
    // The empty set contains nothing: false. JsonToClaimValue("[]") is an empty set.
    let out = issued(
        &issuance(
            r#"=> issue(type="Empty", value=ContainsOnlyValue(JsonToClaimValue("[]"), true));"#,
        ),
        &[],
    );
    assert_eq!(out, json!({"Empty": false}));
    // Set built from JSON, as in the TPM policies.
    let out = issued(
        &issuance(
            r#"=> add(type="set", value=JsonToClaimValue("[true, true]"));
               c:[type=="set"] => issue(type="allTrue", value=ContainsOnlyValue(c.value, true));"#,
        ),
        &[],
    );
    assert_eq!(out, json!({"allTrue": true}));
}

#[test]
fn trace_and_to_json() {
    let e = eval(
        &issuance(r#"[type=="x"] => issue(type="a", value=1); => issue(type="b", value="v");"#),
        &[],
    );
    assert_eq!(e.trace.len(), 3);
    assert!(!e.trace[1].matched && e.trace[1].action.is_none());
    assert_eq!(e.trace[2].action, Some("issue"));
    let j = e.to_json();
    assert_eq!(j["decision"], json!("permit"));
    assert_eq!(j["issued"], json!({"b": "v"}));
    assert_eq!(j["properties"], json!({}));
    assert_eq!(j["trace"][2]["section"], json!("issuancerules"));
    assert_eq!(
        j["trace"][2]["produced"][0],
        json!({"type": "b", "value": "v", "issuer": "AttestationPolicy"})
    );
}

#[test]
fn claims_from_json_mapping() {
    let obj = json!({
        "b": true, "i": 7, "s": "x", "o": {"k": 1}, "arr": [1, 2, null], "objs": [{"a": 1}],
        "f": 1.5, "n": null
    });
    let claims = aver_policy::claims_from_json(obj.as_object().expect("object"));
    let get = |t: &str| {
        claims
            .iter()
            .filter(|c| c.claim_type == t)
            .map(|c| c.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("b"), vec![b(true)]);
    assert_eq!(get("i"), vec![i(7)]);
    assert_eq!(get("s"), vec![s("x")]);
    assert_eq!(get("o"), vec![ClaimValue::Json(json!({"k": 1}))]);
    assert_eq!(get("arr"), vec![i(1), i(2)]);
    assert_eq!(get("objs"), vec![ClaimValue::Json(json!([{"a": 1}]))]);
    assert_eq!(get("f"), vec![ClaimValue::Json(json!(1.5))]);
    assert!(get("n").is_empty());
    assert!(claims.iter().all(|c| c.issuer == "AttestationService"));
}

#[test]
fn limits_are_errors_not_panics() {
    // Function nesting depth.
    let deep = "NegateBool(".repeat(40) + "true" + &")".repeat(40);
    let err = parse_err(&issuance(&format!("=> issue(type=\"x\", value={deep});")));
    assert!(err.contains("at most 32 nested function calls"), "{err}");
    // Oversized policy.
    let big = "version=1.0; authorizationrules{};".to_string()
        + &" ".repeat(aver_policy::MAX_POLICY_BYTES);
    assert!(parse_err(&big).contains("bytes"));
    // Cartesian explosion.
    let many: Vec<Claim> = (0..200).map(|n| svc("m", i(n))).collect();
    let e = func_err(
        r#"c1:[type=="m"] && c2:[type=="m"] => issue(type="x", value=AppendString(JmesPath(c1.value, "@"), JmesPath(c2.value, "@")));"#,
        &many,
    );
    assert!(matches!(e.kind, EvalErrorKind::Limit(_)), "{e}");
}
