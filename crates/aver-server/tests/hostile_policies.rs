//! Hostile policies through the HTTP service: each class of policy that
//! asks for unbounded memory or work ends in a 400 with its own code,
//! costs a bounded amount of CPU — stated as a ratio to the cost of an
//! ordinary attestation under the default policy measured in the same run,
//! not as a wall-clock threshold — and leaves the service healthy. For
//! draft policies, for stored policies at attestation time, and when a
//! policy is set (its configuration rules are evaluated then).
//!
//! One test, run alone in this binary: the CPU time read is the process's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use common::TestService;
use serde_json::{Value, json};

/// CPU time of this process so far (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 here).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

struct Raw {
    http: reqwest::Client,
    base: String,
    admin_key: String,
}

impl Raw {
    fn new(svc: &TestService) -> Raw {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cert = reqwest::Certificate::from_pem(&svc.ca).unwrap();
        Raw {
            http: reqwest::Client::builder()
                .tls_certs_only([cert])
                .build()
                .unwrap(),
            base: svc.issuer().to_string(),
            admin_key: svc.service.new_admin_key.clone().unwrap(),
        }
    }

    async fn attest(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!(
                "{}/attest/SgxEnclave?api-version=2022-08-01",
                self.base
            ))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn set_policy(&self, text: &str) -> (u16, Value) {
        let r = self
            .http
            .put(format!(
                "{}/policies/SgxEnclave?api-version=2022-08-01",
                self.base
            ))
            .bearer_auth(&self.admin_key)
            .header("content-type", "text/plain")
            .body(aver_token::policy::unsigned(Some(text)))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn healthy(&self) -> bool {
        let r = self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await
            .unwrap();
        r.status().as_u16() == 200
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn issuance(rules: &str) -> String {
    format!("version=1.2; authorizationrules{{ => permit(); }}; issuancerules{{ {rules} }};")
}

/// Each rule doubles the value: 40 rules would be 16 TiB.
fn string_doubling() -> String {
    let mut r = String::from("=> add(type=\"t0\", value=\"0123456789abcdef\");\n");
    for i in 0..40 {
        r += &format!(
            "c:[type==\"t{i}\"] => add(type=\"t{}\", value=AppendString(c.value, c.value));\n",
            i + 1
        );
    }
    issuance(&r)
}

/// Each rule multiplies the previous JMESPath result by eight.
fn jmespath_multiselect() -> String {
    let mut r = String::from("=> add(type=\"t0\", value=\"[1]\");\n");
    for i in 0..20 {
        r += &format!(
            "c:[type==\"t{i}\"] => add(type=\"t{}\", value=JmesPath(c.value, \"[@,@,@,@,@,@,@,@]\"));\n",
            i + 1
        );
    }
    issuance(&r)
}

/// Runtime data the enclave bound (the attester controls it), queried by
/// every rule.
fn jmespath_over_runtime_data() -> String {
    issuance(
        &"c:[type==\"x-ms-runtime\"] => add(type=\"o\", value=JmesPath(c.value, \"length([*].k)\"));\n"
            .repeat(600),
    )
}

/// `add(claim=c)` copies: every rule doubles the claim set.
fn claim_copies() -> String {
    issuance(
        &("=> add(type=\"x\", value=JsonToClaimValue(\"[1,2,3,4,5,6,7,8]\"));\n".to_string()
            + &"c:[type==\"x\"] => add(claim=c);\n".repeat(30)),
    )
}

/// A join of two bound claim sets of 10 000 values: 10^8 comparisons.
fn quadratic_join() -> String {
    let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    issuance(&format!(
        "=> add(type=\"x\", value=JsonToClaimValue(\"[{}]\"));
         c1:[type==\"x\"] && c2:[type==\"x\", value==c1.value] => add(type=\"z\", value=1);",
        list.join(",")
    ))
}

/// Thousands of rules, each scanning the growing claim set.
fn many_rules(n: usize) -> String {
    issuance(
        &("=> add(type=\"a\", value=1);\n".to_string()
            + &"[type==\"a\"] => add(type=\"a\", value=1);\n".repeat(n)),
    )
}

/// Thousands of rules that only run with evidence (so setting the policy
/// succeeds), each scanning the growing claim set: the negated condition
/// tests no claim type, so the type index cannot narrow it, and it must
/// look at every claim to find none matches.
fn many_rules_on_evidence(n: usize) -> String {
    issuance(
        &"c:[type==\"x-ms-sgx-mrenclave\"] && ![issuer==\"AttestationPolicy\", value==2] => add(type=\"a\", value=1);\n"
            .repeat(n),
    )
}

/// The quadratic join, started by an evidence claim.
fn quadratic_join_on_evidence() -> String {
    let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    issuance(&format!(
        "[type==\"x-ms-attestation-type\"] => add(type=\"x\", value=JsonToClaimValue(\"[{}]\"));
         c1:[type==\"x\"] && c2:[type==\"x\", value==c1.value] => add(type=\"z\", value=1);",
        list.join(",")
    ))
}

/// Configuration rules that blow up when the policy is set.
fn hostile_configuration() -> String {
    let mut r = String::from("=> issueproperty(type=\"t0\", value=\"0123456789abcdef\");\n");
    for i in 0..40 {
        r += &format!(
            "c:[type==\"t{i}\"] => issueproperty(type=\"t{}\", value=AppendString(c.value, c.value));\n",
            i + 1
        );
    }
    format!("version=1.2; configurationrules{{ {r} }}; authorizationrules{{ => permit(); }};")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_policies_end_in_their_code_with_bounded_cpu_and_a_healthy_service() {
    let svc = TestService::start(true).await;
    let raw = Raw::new(&svc);
    let platform = SimPlatform::generate().unwrap();
    // Runtime data of ~500 KB that the enclave bound into its quote.
    let runtime: Vec<Value> = (0..20_000)
        .map(|i| json!({"k": i, "v": "xxxxxxxx"}))
        .collect();
    let runtime = serde_json::to_vec(&runtime).unwrap();
    let quote = platform
        .quote(&EnclaveIdentity {
            report_data: report_data_for(&runtime),
            ..EnclaveIdentity::default()
        })
        .unwrap();
    let b64 = aver_token::b64::encode_url;
    let body = |draft: Option<&str>| {
        let mut b = json!({
            "quote": b64(&quote),
            "runtimeData": {"data": b64(&runtime), "dataType": "JSON"},
        });
        if let Some(d) = draft {
            b["draftPolicyForAttestation"] = json!(d);
        }
        b
    };
    // An ordinary request: a small JSON runtime data (an enclave's key).
    let small_runtime = br#"{"jwk":{"kty":"EC","crv":"P-256","x":"abc","y":"def"}}"#;
    let small_quote = platform
        .quote(&EnclaveIdentity {
            report_data: report_data_for(small_runtime),
            ..EnclaveIdentity::default()
        })
        .unwrap();
    let ordinary_body = json!({
        "quote": b64(&small_quote),
        "runtimeData": {"data": b64(small_runtime), "dataType": "JSON"},
    });

    // The yardstick: an ordinary attestation under the default policy
    // (verification, the policy, signing, TLS and JSON), averaged.
    let (status, v) = raw.attest(&ordinary_body).await;
    assert_eq!(status, 200, "{v}");
    let runs = 50;
    let start = cpu_seconds();
    for _ in 0..runs {
        assert_eq!(raw.attest(&ordinary_body).await.0, 200);
    }
    let ordinary = ((cpu_seconds() - start) / runs as f64).max(0.001);
    eprintln!("an ordinary attestation: {:.4} s of CPU", ordinary);

    // A hostile request may cost at most this many ordinary attestations.
    // The step budget is ~0.4 s of optimized CPU and an ordinary request a
    // few milliseconds; without a budget the same policies run for seconds
    // to days (the probe measured 8 s and ~a day) or exhaust memory.
    const MAX_RATIO: f64 = 400.0;
    let check = async |label: &str, b: Value, expected: &str| {
        let start = cpu_seconds();
        let (status, v) = raw.attest(&b).await;
        let spent = cpu_seconds() - start;
        assert_eq!((status, code(&v)), (400, expected), "{label}: {v}");
        let ratio = spent / ordinary;
        eprintln!("{label}: {expected} after {spent:.3} s CPU = {ratio:.0} ordinary attestations");
        assert!(
            ratio < MAX_RATIO,
            "{label}: {spent:.3} s of CPU is {ratio:.0}x an ordinary attestation ({ordinary:.4} s)"
        );
        assert!(raw.healthy().await, "{label}: the service is unhealthy");
    };

    // Draft policies: every class.
    let classes: Vec<(&str, String, &str)> = vec![
        (
            "string growth",
            string_doubling(),
            "PolicyMemoryLimitExceeded",
        ),
        (
            "JMESPath amplification",
            jmespath_multiselect(),
            "PolicyMemoryLimitExceeded",
        ),
        (
            "JMESPath over runtime data",
            jmespath_over_runtime_data(),
            "PolicyStepLimitExceeded",
        ),
        ("claim copies", claim_copies(), "PolicyClaimLimitExceeded"),
        (
            "quadratic join",
            quadratic_join(),
            "PolicyStepLimitExceeded",
        ),
        // A draft has a smaller size limit than a stored policy, which is
        // what bounds this class for drafts (the most rules a 64 KiB draft
        // holds cost a few million steps).
        (
            "thousands of rules (draft)",
            many_rules(9_000),
            "PolicyTooLarge",
        ),
    ];
    for (label, policy, expected) in &classes {
        // The runtime-data class needs the large bound runtime data; the
        // others ride on an ordinary request.
        let mut b = if label.contains("runtime") {
            body(None)
        } else {
            ordinary_body.clone()
        };
        b["draftPolicyForAttestation"] = json!(policy);
        check(label, b, expected).await;
    }

    // Stored policies at attestation time: set (the rules need evidence
    // claims, so setting succeeds), then attest.
    for (label, policy, expected) in [
        (
            "stored: thousands of rules",
            many_rules_on_evidence(5_000),
            "PolicyStepLimitExceeded",
        ),
        (
            "stored: JMESPath over runtime data",
            jmespath_over_runtime_data(),
            "PolicyStepLimitExceeded",
        ),
        (
            "stored: quadratic join",
            quadratic_join_on_evidence(),
            "PolicyStepLimitExceeded",
        ),
    ] {
        let (status, v) = raw.set_policy(&policy).await;
        assert_eq!(status, 200, "{label}: setting it: {v}");
        let b = if label.contains("runtime") {
            body(None)
        } else {
            ordinary_body.clone()
        };
        check(label, b, expected).await;
    }

    // Setting a policy whose rules blow up without any evidence (its
    // configuration rules, or unconditional rules) is refused with the
    // budget's code, and changes nothing.
    for (label, policy, expected) in [
        (
            "set: configuration rules",
            hostile_configuration(),
            "PolicyMemoryLimitExceeded",
        ),
        (
            "set: thousands of unconditional rules",
            many_rules(9_000),
            "PolicyStepLimitExceeded",
        ),
        (
            "set: unconditional join",
            quadratic_join(),
            "PolicyStepLimitExceeded",
        ),
    ] {
        let start = cpu_seconds();
        let (status, v) = raw.set_policy(&policy).await;
        let spent = cpu_seconds() - start;
        assert_eq!((status, code(&v)), (400, expected), "{label}: {v}");
        assert!(
            spent / ordinary < MAX_RATIO,
            "{label}: setting took {spent:.3} s"
        );
        assert!(raw.healthy().await);
    }
    let (status, v) = raw
        .set_policy(aver_attestation::evidence::sgx::DEFAULT_SGX_POLICY)
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = raw.attest(&ordinary_body).await;
    assert_eq!(status, 200, "the service works normally afterwards: {v}");
    assert!(raw.healthy().await);
}
