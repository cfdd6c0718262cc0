//! Tests over the shared MAA vectors (read through `aver-testkit`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_policy::{
    Claim, ClaimValue, Decision, Policy, claims_from_json, policy_hash, with_legacy_aliases,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// Expected outcome of parsing each file of `maa/policies/`:
/// `Ok((major, minor))` or `Err(exact Display of the ParseError)`.
/// `Ok(version)` when the file parses, `Err(message)` when it is rejected.
type Outcome = Result<(u32, u32), &'static str>;

const POLICY_TABLE: &[(&str, Outcome)] = &[
    // D4: missing ';' after the rule.
    (
        "docs-author-sign-policy_sample-file.txt",
        Err("line 5, column 1: expected ';' after the rule, found '}'"),
    ),
    ("docs-author-sign-policy_step3-deny.txt", Ok((1, 0))),
    (
        "docs-author-sign-policy_step4-permit-secureboot.txt",
        Ok((1, 0)),
    ),
    (
        "docs-author-sign-policy_step5-issue-securitylevel.txt",
        Ok((1, 0)),
    ),
    // D12: a collection of fragments, not a policy.
    (
        "docs-claim-rule-functions_fragments.txt",
        Err("line 1, column 1: expected 'version', found '#'"),
    ),
    // D1: contains `issuer="AttestationPolicy"` (single '=') - accepted.
    ("docs-claim-rule-functions_sample-v1.2.txt", Ok((1, 2))),
    // D12 (fragments; they also contain D2 smart quotes).
    (
        "docs-claim-rule-grammar_rule-fragments.txt",
        Err("line 1, column 1: expected 'version', found 'F1'"),
    ),
    ("docs-claim-sets_mrsigner-rotation-after.txt", Ok((1, 0))),
    ("docs-claim-sets_mrsigner-rotation-before.txt", Ok((1, 0))),
    ("docs-claim-sets_mrsigner-rotation-during.txt", Ok((1, 0))),
    // D2: `value = "11”` - the string runs into the end of line; the error points at the smart quote.
    // (The file's `Issuancerules`, D3, would be rejected next.)
    (
        "docs-custom-tcb-baseline_sgx-v1.1.txt",
        Err(
            "line 5, column 45: expected '\"' to close the string, found '”' (typographic quote U+201D)",
        ),
    ),
    // D9: `value==<product-id>` template placeholder.
    (
        "docs-policy-examples_sgx-custom-v1.0.txt",
        Err(
            "line 5, column 50: expected an expression (string, integer, true, false, name.property or function call), found '<'",
        ),
    ),
    ("docs-policy-examples_sgx-default-v1.1.txt", Ok((1, 1))),
    (
        "docs-policy-examples_sgx-multiple-enclaves-v1.0.txt",
        Ok((1, 0)),
    ),
    (
        "docs-policy-examples_signed-jwt-decoded-policy-v1.0.txt",
        Ok((1, 0)),
    ),
    (
        "docs-policy-examples_unsigned-jwt-decoded-policy-v1.0.txt",
        Ok((1, 0)),
    ),
    ("docs-policy-version-1-0_tpm-sample.txt", Ok((1, 0))),
    ("docs-policy-version-1-1_tpm-sample.txt", Ok((1, 1))),
    // D12: a table of rule cells, not a policy.
    (
        "docs-policy-version-1-2_feature-rules-table.txt",
        Err("line 1, column 1: expected 'version', found '#'"),
    ),
    // D5: `issue("PlatformAttested", value=true)`.
    (
        "docs-policy-version-1-2_tpm-sample.txt",
        Err(
            "line 23, column 51: expected 'type', 'value', 'valueType', 'issuer' or 'claim', found '\"PlatformAttested\"'",
        ),
    ),
    (
        "docs-tpm-attestation-concepts_key-attestation-v1.2.txt",
        Ok((1, 2)),
    ),
    (
        "docs-tpm-attestation-concepts_linux-ima-v1.2.txt",
        Ok((1, 2)),
    ),
    (
        "docs-tpm-attestation-concepts_secureboot-hvci-malicious-v1.2.txt",
        Ok((1, 2)),
    ),
    ("docs-tpm-attestation-concepts_simple-v1.0.txt", Ok((1, 0))),
    ("docs-tpm-sample-policies_driver-list-v1.2.txt", Ok((1, 2))),
    (
        "docs-tpm-sample-policies_issue-all-incoming-v1.2.txt",
        Ok((1, 2)),
    ),
    // D11: issue() inside authorizationrules.
    (
        "docs-tpm-sample-policies_key-attestation-authz-v1.2.txt",
        Ok((1, 2)),
    ),
    (
        "docs-tpm-sample-policies_linux-boot-signers-v1.2.txt",
        Ok((1, 2)),
    ),
    ("docs-tpm-sample-policies_pcr-hashes-v1.2.txt", Ok((1, 2))),
    ("docs-tpm-sample-policies_system-guard-v1.2.txt", Ok((1, 2))),
    ("docs-tpm-sample-policies_v1.0.txt", Ok((1, 0))),
    (
        "docs-tpm-sample-policies_v1.2-windows-props.txt",
        Ok((1, 2)),
    ),
    (
        "docs-tpm-sample-policies_vbs-enclave-identity-v1.2.txt",
        Ok((1, 2)),
    ),
    (
        "docs-tpm-sample-policies_windows-critical-v1.2.txt",
        Ok((1, 2)),
    ),
    (
        "maa-recorded-default-sgx-policy-sharedwus-2022.txt",
        Ok((1, 0)),
    ),
    (
        "policy-samples-signingtool-add.custom.claim.txt",
        Ok((1, 0)),
    ),
    ("policy-samples-signingtool-deny.all.txt", Ok((1, 0))),
    (
        "policy-samples-signingtool-permit.secure.boot.txt",
        Ok((1, 0)),
    ),
    ("sdk-cpp-draft-policy-expect-reject.txt", Ok((1, 0))),
    ("sdk-cpp-draft-policy-permit-debug-oe.txt", Ok((1, 0))),
    ("sdk-minimal-policy-v1.0.txt", Ok((1, 0))),
];

fn read_text(test: &str, rel: &str) -> Option<String> {
    let bytes = aver_testkit::read_vector(test, rel)?;
    Some(String::from_utf8(bytes).unwrap_or_else(|e| panic!("{rel} is not UTF-8: {e}")))
}

#[test]
fn every_policy_file_has_its_expected_outcome() {
    let dir = aver_testkit::vectors_dir().join("maa/policies");
    if !dir.is_dir() {
        aver_testkit::skip(
            "every_policy_file_has_its_expected_outcome",
            "maa/policies missing",
        );
        return;
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("read policies dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut in_table: Vec<String> = POLICY_TABLE.iter().map(|(n, _)| n.to_string()).collect();
    in_table.sort();
    assert_eq!(
        on_disk, in_table,
        "the table must list exactly the files of maa/policies/"
    );
    assert_eq!(on_disk.len(), 41);

    for (name, expected) in POLICY_TABLE {
        let Some(text) = read_text(
            "every_policy_file_has_its_expected_outcome",
            &format!("maa/policies/{name}"),
        ) else {
            return;
        };
        match (Policy::parse(&text), expected) {
            (Ok(p), Ok(v)) => assert_eq!(p.version(), *v, "{name}"),
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), *msg, "{name}"),
            (Ok(_), Err(msg)) => panic!("{name}: parsed, expected rejection: {msg}"),
            (Err(e), Ok(_)) => panic!("{name}: rejected: {e}"),
        }
    }
}

#[test]
fn policy_hash_of_recorded_default_sgx_policy() {
    let Some(text) = read_text(
        "policy_hash_of_recorded_default_sgx_policy",
        "maa/maa-recorded-sgx-2022-10-07/default-sgx-policy-sharedwus.txt",
    ) else {
        return;
    };
    assert_eq!(
        policy_hash(&text),
        "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"
    );
    // The copy in policies/ is the same text.
    if let Some(copy) = read_text(
        "policy_hash_of_recorded_default_sgx_policy",
        "maa/policies/maa-recorded-default-sgx-policy-sharedwus-2022.txt",
    ) {
        assert_eq!(
            policy_hash(&copy),
            "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"
        );
    }
}

#[test]
fn policy_hash_of_minimal_policy() {
    assert_eq!(
        policy_hash("version=1.0; authorizationrules{=> permit();}; issuancerules{};"),
        "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"
    );
    assert_ne!(
        policy_hash("version=1.0; authorizationrules{=> permit();}; issuancerules{}; "),
        "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"
    );
}

fn unsigned_jwt_policy(test: &str) -> Option<String> {
    let jws = read_text(test, "maa/docs-unsigned-policy-jwt.txt")?;
    let payload = jws.trim().split('.').nth(1).expect("JWS has a payload");
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("payload is base64url");
    let body: Value = serde_json::from_slice(&payload).expect("payload is JSON");
    let policy_b64 = body["AttestationPolicy"]
        .as_str()
        .expect("AttestationPolicy field");
    let policy = URL_SAFE_NO_PAD
        .decode(policy_b64)
        .expect("policy is base64url");
    Some(String::from_utf8(policy).expect("policy is UTF-8"))
}

#[test]
fn policy_hash_of_unsigned_jwt_policy() {
    let Some(policy) = unsigned_jwt_policy("policy_hash_of_unsigned_jwt_policy") else {
        return;
    };
    assert!(policy.contains("$is-debuggable"));
    assert_eq!(
        policy_hash(&policy),
        "egjnANIzEpS2WgpE4Nk-QEwM69XRCgTs42_G0qLlbnk"
    );
    assert!(Policy::parse(&policy).is_ok());
}

/// The SGX claims of the recorded token (as the service would produce them)
/// and the token's `x-ms-policy` object.
fn recorded_sgx(test: &str) -> Option<(Vec<Claim>, Value)> {
    let text = read_text(
        test,
        "maa/maa-recorded-sgx-2022-10-07/response-token-decoded.json",
    )?;
    let token: Value = serde_json::from_str(&text).expect("decoded token JSON");
    let payload = token["payload"].as_object().expect("payload object");
    let mut sgx = Map::new();
    for k in [
        "x-ms-sgx-is-debuggable",
        "x-ms-sgx-mrsigner",
        "x-ms-sgx-mrenclave",
        "x-ms-sgx-product-id",
        "x-ms-sgx-svn",
        "x-ms-attestation-type",
    ] {
        sgx.insert(
            k.to_string(),
            payload.get(k).cloned().expect("claim in token"),
        );
    }
    Some((claims_from_json(&sgx), payload["x-ms-policy"].clone()))
}

#[test]
fn recorded_default_sgx_policy_issues_the_tokens_x_ms_policy() {
    let test = "recorded_default_sgx_policy_issues_the_tokens_x_ms_policy";
    let (Some(text), Some((claims, expected))) = (
        read_text(
            test,
            "maa/maa-recorded-sgx-2022-10-07/default-sgx-policy-sharedwus.txt",
        ),
        recorded_sgx(test),
    ) else {
        return;
    };
    assert_eq!(claims.len(), 6);
    let eval = Policy::parse(&text)
        .expect("parses")
        .evaluate(&claims)
        .expect("evaluates");
    assert_eq!(eval.decision, Decision::Permit);
    assert_eq!(Value::Object(eval.issued_json()), expected);
    assert_eq!(eval.issued.len(), 6);
    assert!(eval.issued.iter().all(|c| c.issuer == "AttestationPolicy"));
    // Type fidelity: booleans and integers stay typed.
    assert_eq!(eval.issued_json()["is-debuggable"], json!(false));
    assert_eq!(eval.issued_json()["svn"], json!(1));
}

#[test]
fn legacy_dollar_policy_needs_aliases_and_then_issues_the_same_claims() {
    let test = "legacy_dollar_policy_needs_aliases_and_then_issues_the_same_claims";
    let (Some(policy), Some((claims, expected))) = (unsigned_jwt_policy(test), recorded_sgx(test))
    else {
        return;
    };
    let policy = Policy::parse(&policy).expect("parses");
    // Without aliases the legacy policy sees no `$is-debuggable` claim: default deny.
    let bare = policy.evaluate(&claims).expect("evaluates");
    assert_eq!(bare.decision, Decision::Deny);
    assert_eq!(
        bare.deny_reason.as_deref(),
        Some("no permit() was issued by authorizationrules")
    );

    let eval = policy
        .evaluate(&with_legacy_aliases(&claims))
        .expect("evaluates");
    assert_eq!(eval.decision, Decision::Permit);
    assert_eq!(Value::Object(eval.issued_json()), expected);
}

#[test]
fn signed_jwt_legacy_policy_denies_debuggable_enclaves() {
    let test = "signed_jwt_legacy_policy_denies_debuggable_enclaves";
    let (Some(text), Some((claims, _))) = (
        read_text(
            test,
            "maa/policies/docs-policy-examples_signed-jwt-decoded-policy-v1.0.txt",
        ),
        recorded_sgx(test),
    ) else {
        return;
    };
    let policy = Policy::parse(&text).expect("parses");
    let ok = policy
        .evaluate(&with_legacy_aliases(&claims))
        .expect("evaluates");
    assert_eq!(ok.decision, Decision::Permit);
    assert_eq!(ok.issued_json()["NotDebuggable"], json!(false));

    let debug: Vec<Claim> = claims
        .iter()
        .map(|c| {
            if c.claim_type == "x-ms-sgx-is-debuggable" {
                Claim::service("x-ms-sgx-is-debuggable", ClaimValue::Bool(true))
            } else {
                c.clone()
            }
        })
        .collect();
    let denied = policy
        .evaluate(&with_legacy_aliases(&debug))
        .expect("evaluates");
    assert_eq!(denied.decision, Decision::Deny);
    assert_eq!(
        denied.deny_reason.as_deref(),
        Some("rule 1 of authorizationrules (line 1) issued deny()")
    );
    assert!(denied.issued.is_empty());
}

#[test]
fn sdk_draft_policy_rejects_the_debug_oe_report() {
    // cpp attestation_test: `is-debuggable==false && product-id==0` rejects the debug OE report
    // (mrsigner 4aea…, product 1, svn 1, debuggable), the second draft permits it.
    let test = "sdk_draft_policy_rejects_the_debug_oe_report";
    let (Some(reject), Some(permit)) = (
        read_text(test, "maa/policies/sdk-cpp-draft-policy-expect-reject.txt"),
        read_text(
            test,
            "maa/policies/sdk-cpp-draft-policy-permit-debug-oe.txt",
        ),
    ) else {
        return;
    };
    let claims = claims_from_json(
        json!({
            "x-ms-sgx-is-debuggable": true,
            "x-ms-sgx-product-id": 1,
            "x-ms-sgx-svn": 1,
            "x-ms-sgx-mrsigner": "4aea5f9a0ed04b11f889aadfe6a1d376213a29a95a85ce7337ae6f7fece6610c",
        })
        .as_object()
        .expect("object"),
    );
    let r = Policy::parse(&reject)
        .expect("parses")
        .evaluate(&claims)
        .expect("evaluates");
    assert_eq!(r.decision, Decision::Deny);
    let p = Policy::parse(&permit)
        .expect("parses")
        .evaluate(&claims)
        .expect("evaluates");
    assert_eq!(p.decision, Decision::Permit);
    assert_eq!(
        p.issued_json()["custom-name"],
        json!("4aea5f9a0ed04b11f889aadfe6a1d376213a29a95a85ce7337ae6f7fece6610c")
    );
}

fn events(secure_boot_data: Option<&str>) -> Value {
    let mut evs = vec![json!({
        "EventSeq": 1, "PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
        "ProcessedData": {"VariableGuid": "8BE4DF61-93CA-11D2-AA0D-00E098032B8C", "UnicodeName": "PK", "VariableData": "MIIB"}
    })];
    if let Some(data) = secure_boot_data {
        evs.push(json!({
            "EventSeq": 2, "PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
            "ProcessedData": {"VariableGuid": "8BE4DF61-93CA-11D2-AA0D-00E098032B8C", "UnicodeName": "SecureBoot", "VariableData": data}
        }));
    }
    evs.push(json!({"EventSeq": 3, "PcrIndex": 12, "EventTypeString": "EV_EVENT_TAG", "ProcessedData": {}}));
    json!({ "Events": evs })
}

#[test]
fn tpm_secure_boot_sample_on_hand_built_events() {
    let test = "tpm_secure_boot_sample_on_hand_built_events";
    let Some(text) = read_text(
        test,
        "maa/policies/docs-claim-rule-functions_sample-v1.2.txt",
    ) else {
        return;
    };
    let policy = Policy::parse(&text).expect("parses");
    let run = |claims: Vec<Claim>| {
        let e = policy.evaluate(&claims).expect("evaluates");
        assert_eq!(e.decision, Decision::Permit);
        e
    };

    // SecureBoot = AQ -> true (issued by rule 2; the `!` rule 3 does not fire).
    let on = run(vec![Claim::service(
        "events",
        ClaimValue::Json(events(Some("AQ"))),
    )]);
    assert_eq!(
        Value::Object(on.issued_json()),
        json!({"secureBootEnabled": true})
    );
    assert_eq!(on.issued.len(), 1);
    let t = &on.trace;
    assert_eq!(t.len(), 4, "1 authorization rule + 3 issuance rules");
    assert!(t[1].matched && t[2].matched && !t[3].matched);
    // The intermediate claim went to the incoming set only.
    assert_eq!(t[1].action, Some("add"));
    assert_eq!(t[1].produced[0].claim_type, "efiConfigVariables");
    assert_eq!(t[1].produced[0].issuer, "AttestationPolicy");

    // SecureBoot variable present but 0 -> false.
    let off = run(vec![Claim::service(
        "events",
        ClaimValue::Json(events(Some("AA"))),
    )]);
    assert_eq!(
        Value::Object(off.issued_json()),
        json!({"secureBootEnabled": false})
    );

    // No SecureBoot variable -> false.
    let none = run(vec![Claim::service(
        "events",
        ClaimValue::Json(events(None)),
    )]);
    assert_eq!(
        Value::Object(none.issued_json()),
        json!({"secureBootEnabled": false})
    );

    // Events given as JSON text rather than structured JSON behave the same.
    let text_events = run(vec![Claim::service(
        "events",
        ClaimValue::String(events(Some("AQ")).to_string()),
    )]);
    assert_eq!(
        Value::Object(text_events.issued_json()),
        json!({"secureBootEnabled": true})
    );

    // No events claim at all -> only the `!` rule fires.
    let empty = run(vec![]);
    assert_eq!(
        Value::Object(empty.issued_json()),
        json!({"secureBootEnabled": false})
    );
    assert!(empty.trace[3].matched);
}

#[test]
fn tpm_v1_1_sample_sets_properties_and_platform_attested() {
    let test = "tpm_v1_1_sample_sets_properties_and_platform_attested";
    let Some(text) = read_text(test, "maa/policies/docs-policy-version-1-1_tpm-sample.txt") else {
        return;
    };
    let policy = Policy::parse(&text).expect("parses");
    let claims = claims_from_json(
        json!({"aikValidated": false, "secureBootEnabled": true, "bootDebuggingDisabled": true, "notSafeMode": true})
            .as_object()
            .expect("object"),
    );
    let e = policy.evaluate(&claims).expect("evaluates");
    assert_eq!(e.decision, Decision::Permit);
    assert_eq!(
        Value::Object(e.issued_json()),
        json!({"PlatformAttested": false})
    );
    assert_eq!(
        Value::Object(e.properties_json()),
        json!({"required_pcr_mask": 15, "require_valid_aik_cert": false})
    );
}

#[test]
fn every_parsable_vector_policy_evaluates_without_error_on_empty_and_sgx_claims() {
    let test = "every_parsable_vector_policy_evaluates_without_error_on_empty_and_sgx_claims";
    let Some((sgx, _)) = recorded_sgx(test) else {
        return;
    };
    for (name, expected) in POLICY_TABLE {
        if expected.is_err() {
            continue;
        }
        let Some(text) = read_text(test, &format!("maa/policies/{name}")) else {
            return;
        };
        let p = Policy::parse(&text).expect("parses");
        for claims in [&[][..], &sgx[..]] {
            if let Err(e) = p.evaluate(claims) {
                panic!("{name}: {e}");
            }
        }
    }
}
