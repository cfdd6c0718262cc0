//! Policy parsing and evaluation. Baseline: SHA-256 of the policy text.
//!
//! `policy`: the default SGX policy on the Azure SDK quote's claims.
//! `policy_tpm`: MAA's TPM 1.2 JmesPath sample (Secure Boot, HVCI,
//! malicious driver) on the claims of the GCP Shielded VM event log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_attestation::evidence::sgx::{DEFAULT_SGX_POLICY, SGX_ENCLAVE};
use aver_bench::{SgxFixture, parse_policy, require_vector, sha256, tpm_incoming_claims};
use aver_policy::{Decision, Policy};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn sgx_policy(c: &mut Criterion) {
    let f = SgxFixture::load();
    let text = DEFAULT_SGX_POLICY;
    let policy = parse_policy(text);
    let service = f.service_claims();
    let incoming = f.incoming_claims();
    let evaluation = policy.evaluate(&incoming).expect("evaluates");
    assert_eq!(evaluation.decision, Decision::Permit);
    assert_eq!(
        evaluation.issued_json().len(),
        6,
        "the default policy issues 6 claims"
    );

    let mut g = c.benchmark_group("policy");
    g.bench_function("baseline_sha256_policy_text", |b| {
        b.iter(|| sha256(black_box(text.as_bytes())))
    });
    g.bench_function(BenchmarkId::new("parse", "sgx-default"), |b| {
        b.iter(|| Policy::parse(black_box(text)).is_ok())
    });
    g.bench_function(BenchmarkId::new("evaluate", "sgx-default"), |b| {
        b.iter(|| {
            policy
                .evaluate(black_box(&incoming))
                .map(|e| e.decision)
                .ok()
        })
    });
    // As the service does it: JSON claims -> incoming claims (+ legacy
    // aliases) -> evaluate -> deny check.
    g.bench_function(
        BenchmarkId::new("claims_and_evaluate", "sgx-default"),
        |b| {
            b.iter(|| {
                aver_attestation::policy::evaluate(
                    &SGX_ENCLAVE,
                    &policy,
                    black_box(&service),
                    &aver_policy::Budget::default(),
                )
                .is_ok()
            })
        },
    );
    g.finish();
}

fn tpm_policy(c: &mut Criterion) {
    let text = String::from_utf8(require_vector(aver_bench::TPM_POLICY_VECTOR)).expect("utf-8");
    let policy = parse_policy(&text);
    let incoming = tpm_incoming_claims(&require_vector(&format!(
        "{}/eventlog.bin",
        aver_bench::GCP
    )));
    let evaluation = policy.evaluate(&incoming).expect("evaluates");
    assert_eq!(evaluation.decision, Decision::Permit);
    let issued = evaluation.issued_json();
    assert!(issued.contains_key("hvciEnabled"), "issued: {issued:?}");
    assert!(
        issued.contains_key("MaliciousDriverLoaded"),
        "issued: {issued:?}"
    );

    let mut g = c.benchmark_group("policy_tpm");
    g.bench_function("baseline_sha256_policy_text", |b| {
        b.iter(|| sha256(black_box(text.as_bytes())))
    });
    g.bench_function(BenchmarkId::new("parse", "secureboot-hvci-v1.2"), |b| {
        b.iter(|| Policy::parse(black_box(&text)).is_ok())
    });
    g.bench_function(BenchmarkId::new("evaluate", "gcp-eventlog"), |b| {
        b.iter(|| {
            policy
                .evaluate(black_box(&incoming))
                .map(|e| e.decision)
                .ok()
        })
    });
    g.finish();
}

criterion_group!(benches, sgx_policy, tpm_policy);
criterion_main!(benches);
