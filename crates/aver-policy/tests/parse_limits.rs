//! Size limits on policy text: refusals are distinguishable from syntax
//! errors (`PolicyTooLarge` vs `PolicyParsingError`), and draft policies
//! have their own, smaller limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_policy::{MAX_DRAFT_POLICY_BYTES, MAX_POLICY_BYTES, MAX_RULES, Policy};

#[test]
fn size_refusals_have_their_own_code() {
    let rules = "=> permit();\n".repeat(MAX_RULES + 1);
    let text = format!("version=1.0; authorizationrules{{ {rules} }};");
    assert!(text.len() < MAX_POLICY_BYTES);
    let e = Policy::parse(&text).expect_err("too many rules");
    assert_eq!(e.code(), "PolicyTooLarge", "{e}");
    assert!(e.to_string().contains("at most 10000 rules"), "{e}");
    let ok = format!(
        "version=1.0; authorizationrules{{ {} }};",
        "=> permit();\n".repeat(MAX_RULES)
    );
    assert!(Policy::parse(&ok).is_ok());

    // Draft policies: a smaller size limit, refused before parsing.
    let big = format!(
        "version=1.0; authorizationrules{{ => permit(); }};{}",
        " ".repeat(MAX_DRAFT_POLICY_BYTES)
    );
    let e = Policy::parse_with_limit(&big, MAX_DRAFT_POLICY_BYTES).expect_err("too large");
    assert_eq!(e.code(), "PolicyTooLarge", "{e}");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(Policy::parse(&big).is_ok(), "stored policies may be larger");
    // The limit can never exceed MAX_POLICY_BYTES.
    let huge = " ".repeat(MAX_POLICY_BYTES + 1);
    let e = Policy::parse_with_limit(&huge, usize::MAX).expect_err("too large");
    assert_eq!(e.code(), "PolicyTooLarge");
    assert_eq!(
        Policy::parse(&huge).expect_err("too large").code(),
        "PolicyTooLarge"
    );
    // Ordinary syntax errors keep their code.
    let e = Policy::parse("version=1.0; authorizationrules{ => permit() };").expect_err("syntax");
    assert_eq!(e.code(), "PolicyParsingError", "{e}");
}
