//! SGX quote parsing and verification on the real Azure SDK quote.
//! Baseline: one raw ECDSA-P256-SHA256 verify (aws-lc-rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_attestation::dcap::parse_quote;
use aver_attestation::evidence::sgx::{SgxEvidenceKind, verify_evidence};
use aver_bench::SgxFixture;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn sgx(c: &mut Criterion) {
    let f = SgxFixture::load();
    let ecdsa = f.ecdsa_baseline();
    assert!(ecdsa.verify(), "baseline signature verifies");
    let verify = || {
        verify_evidence(
            SgxEvidenceKind::Quote,
            &f.verifiers.dcap,
            black_box(&f.quote),
            Some(black_box(&f.runtime_data)),
            None,
            None,
            f.time,
        )
    };
    let verified = verify().expect("fixture quote verifies");
    assert_eq!(
        verified.product_id,
        parse_quote(&f.quote)
            .expect("parses")
            .sgx_report()
            .expect("an SGX quote")
            .isv_prod_id
    );

    let mut g = c.benchmark_group("sgx");
    g.bench_function("baseline_ecdsa_p256_verify", |b| {
        b.iter(|| black_box(&ecdsa).verify())
    });
    g.bench_function(BenchmarkId::new("parse_quote", f.source), |b| {
        b.iter(|| {
            parse_quote(black_box(&f.quote))
                .ok()
                .and_then(|q| q.sgx_report().map(|r| r.isv_svn))
        })
    });
    g.bench_function(BenchmarkId::new("verify", f.source), |b| {
        b.iter(|| verify().map(|v| v.svn).ok())
    });
    g.finish();
}

criterion_group!(benches, sgx);
criterion_main!(benches);
