//! The value-bytes budget bounds real memory: under a counting allocator,
//! the heap an evaluation allocates stays within its budget, for every
//! hostile class.
//!
//! This file holds a single test on purpose: the allocator counts the whole
//! process, so no other test may run beside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// A counting GlobalAlloc needs `unsafe impl`; it only forwards to System.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use aver_policy::{Budget, Claim, ClaimValue, Policy};
use serde_json::{Value, json};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn issuance(rules: &str) -> String {
    format!("version=1.2; authorizationrules{{ => permit(); }}; issuancerules{{ {rules} }};")
}

fn chain(seed: &str, step: &str, rules: usize) -> String {
    let mut r = format!("=> add(type=\"t0\", value={seed});\n");
    for i in 0..rules {
        r += &format!(
            "c:[type==\"t{i}\"] => add(type=\"t{}\", value={step});\n",
            i + 1
        );
    }
    issuance(&r)
}

/// Peak heap growth while evaluating, and the evaluation's own count.
fn measure(text: &str, claims: &[Claim], budget: &Budget) -> (usize, u64, &'static str) {
    let policy = Policy::parse(text).expect("parses");
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let result = policy.evaluate_with_budget(claims, budget);
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    match result {
        Ok(e) => (peak, e.usage.value_bytes, "ok"),
        Err(e) => (peak, e.usage.value_bytes, e.code()),
    }
}

#[test]
fn real_heap_stays_within_the_value_bytes_budget() {
    let runtime: Value = Value::Array(
        (0..60_000)
            .map(|i| json!({"k": i, "s": "abcdef"}))
            .collect(),
    );
    let runtime_json = vec![Claim::service("runtime", ClaimValue::Json(runtime.clone()))];
    let runtime_text = vec![Claim::service(
        "runtime",
        ClaimValue::String(runtime.to_string()),
    )];
    let blob = vec![Claim::service(
        "runtime",
        ClaimValue::Json(json!({"blob": "x".repeat(4096)})),
    )];
    let many: Vec<Claim> = (0..10_000)
        .map(|i| Claim::service("x", ClaimValue::Integer(i)))
        .collect();
    let list: Vec<String> = (0..6000).map(|i| i.to_string()).collect();
    let list = list.join(",");
    // Distinct JSON texts, more than the evaluation's text cache keeps.
    let texts: Vec<Claim> = (0..12)
        .map(|t| {
            let items: Vec<Value> = (0..1000).map(|i| json!(i * 12 + t)).collect();
            Claim::service("r", ClaimValue::String(Value::Array(items).to_string()))
        })
        .collect();
    let amplify = "blob | ".to_string() + &"[@,@,@,@,@,@,@,@] | ".repeat(6) + "@";

    let cases: Vec<(&str, String, &[Claim])> = vec![
        (
            "AppendString doubling",
            chain("\"0123456789abcdef\"", "AppendString(c.value, c.value)", 40),
            &[],
        ),
        (
            "JmesPath multi-select chain",
            chain("\"[1]\"", "JmesPath(c.value, \"[@,@,@,@,@,@,@,@]\")", 20),
            &[],
        ),
        (
            "JmesPath amplification in one query",
            issuance(&format!(
                "c:[type==\"runtime\"] => add(type=\"x\", value=JmesPath(c.value, \"{amplify}\"));"
            )),
            &blob,
        ),
        (
            "JmesPath copying out runtime data",
            issuance(
                &"c:[type==\"runtime\"] => add(type=\"o\", value=JmesPath(c.value, \"@\"));\n"
                    .repeat(200),
            ),
            &runtime_json,
        ),
        (
            "JmesPath parsing runtime data text",
            issuance(
                &"c:[type==\"runtime\"] => add(type=\"o\", value=JmesPath(c.value, \"length(@)\"));\n"
                    .repeat(200),
            ),
            &runtime_text,
        ),
        (
            "JmesPath doubling copies of cached texts",
            issuance(
                &"c:[type==\"r\"] => add(type=\"r\", value=JmesPath(c.value, \"@\"));\n"
                    .repeat(30),
            ),
            &texts,
        ),
        (
            "add(claim=c) doubling",
            issuance(
                &("=> add(type=\"x\", value=JsonToClaimValue(\"[1,2,3,4,5,6,7,8]\"));\n"
                    .to_string()
                    + &"c:[type==\"x\"] => add(claim=c);\n".repeat(30)),
            ),
            &[],
        ),
        (
            "issue(claim=c) repeated",
            issuance(&"c:[type==\"x\"] => issue(claim=c);\n".repeat(100)),
            &many,
        ),
        (
            "quadratic join",
            issuance(&format!(
                "=> add(type=\"x\", value=JsonToClaimValue(\"[{list}]\"));
                 => add(type=\"y\", value=JsonToClaimValue(\"[{list}]\"));
                 c1:[type==\"x\"] && c2:[type==\"y\", value==c1.value] => add(type=\"z\", value=1);"
            )),
            &[],
        ),
    ];

    let mut report = String::new();
    for budget in [
        Budget::default(),
        Budget {
            max_value_bytes: 4 * 1024 * 1024,
            ..Budget::default()
        },
    ] {
        for (name, text, claims) in &cases {
            let (peak, counted, code) = measure(text, claims, &budget);
            report += &format!(
                "{name:40} budget {:>9} heap {peak:>9} counted {counted:>9} {code}\n",
                budget.max_value_bytes
            );
            assert_ne!(code, "ok", "{name} must be stopped\n{report}");
            assert!(counted <= budget.max_value_bytes, "{name}\n{report}");
            // The real heap peak stays within the budget (plus 64 KiB of
            // bookkeeping the evaluator does not itemize).
            assert!(
                peak as u64 <= budget.max_value_bytes + 64 * 1024,
                "{name}: real heap above the budget\n{report}"
            );
        }
    }
    println!("{report}");
}
