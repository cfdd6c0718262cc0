//! Parsing (and evaluating) truncated and mutated policies never panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_policy::{Claim, ClaimValue, Policy};
use serde_json::json;

fn claims() -> Vec<Claim> {
    vec![
        Claim::service("x-ms-sgx-is-debuggable", ClaimValue::Bool(false)),
        Claim::service("x-ms-sgx-svn", ClaimValue::Integer(1)),
        Claim::service("x-ms-sgx-mrsigner", ClaimValue::String("00".into())),
        Claim::service("aikValidated", ClaimValue::Bool(true)),
        Claim::service(
            "events",
            ClaimValue::Json(
                json!({"Events": [{"EventTypeString": "EV_EVENT_TAG", "PcrIndex": 12,
                "ProcessedData": {"EVENT_TRUSTBOUNDARY": {"EVENT_BOOTDEBUGGING": false}}}]}),
            ),
        ),
    ]
}

fn check(bytes: &[u8], claims: &[Claim]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(p) = Policy::parse(&text) {
        // Runtime errors are fine; panics are not.
        let _ = p.evaluate(claims);
    }
}

fn policies(test: &str) -> Vec<Vec<u8>> {
    let dir = aver_testkit::vectors_dir().join("maa/policies");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        aver_testkit::skip(test, "maa/policies missing");
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(b) = aver_testkit::read_vector(test, &format!("maa/policies/{name}")) {
            out.push(b);
        }
    }
    out
}

#[test]
fn truncations_never_panic() {
    let claims = claims();
    let files = policies("truncations_never_panic");
    let mut parsed = 0;
    for f in &files {
        for len in 0..=f.len() {
            check(&f[..len], &claims);
            if len == f.len() && Policy::parse(&String::from_utf8_lossy(f)).is_ok() {
                parsed += 1;
            }
        }
    }
    if !files.is_empty() {
        assert_eq!(parsed, 34, "full-length files that parse");
    }
}

#[test]
fn single_byte_mutations_never_panic() {
    const REPLACEMENTS: &[u8] = b"\"!=[]();,{}.&<>:/*\\0aZ\n \xff\xe2";
    let claims = claims();
    let files = policies("single_byte_mutations_never_panic");
    let mut mutated = 0usize;
    for f in &files {
        let mut buf = f.clone();
        for pos in 0..f.len() {
            // One replacement byte per position (cycling through the list), plus deletion.
            buf[pos] = REPLACEMENTS[pos % REPLACEMENTS.len()];
            check(&buf, &claims);
            mutated += 1;
            buf[pos] = f[pos];
            let mut deleted = f.clone();
            deleted.remove(pos);
            check(&deleted, &claims);
        }
    }
    if !files.is_empty() {
        assert!(mutated > 50_000, "{mutated}");
    }
}

#[test]
fn pathological_inputs() {
    let claims = claims();
    for text in [
        String::new(),
        "[".repeat(100_000),
        "version=1.2; authorizationrules{ => add(type=\"x\", value=".to_string()
            + &"NegateBool(".repeat(10_000),
        "version=1.0; authorizationrules{".to_string()
            + &"[type==\"a\"] && ".repeat(20_000)
            + "[type==\"a\"] => permit(); };",
        "\"".repeat(1000),
        "/*".repeat(1000),
        "version=1.0;\u{0}".to_string(),
    ] {
        check(text.as_bytes(), &claims);
    }
}
