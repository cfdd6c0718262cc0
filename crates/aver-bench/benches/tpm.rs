//! TPM event-log parsing and replay (keylime `mb_log.bin`, 101 events) and
//! quote verification (GCP Shielded VM quote: RSA-2048 AK, RSASSA-SHA1,
//! SHA-1 PCRs 0..23). Baseline: SHA-256 over the log bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_bench::{GcpQuote, KEYLIME_MB_LOG, require_vector, sha256};
use aver_tpm::{parse_event_log, replay, verify_quote};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn tpm(c: &mut Criterion) {
    let log_bytes = require_vector(KEYLIME_MB_LOG);
    let log = parse_event_log(&log_bytes).expect("log parses");
    // `events` includes the Spec ID record of a crypto-agile log.
    let measured = log.events.len() - usize::from(log.spec_id.is_some());
    assert_eq!(
        measured, 101,
        "mb_log.bin has 101 events after its Spec ID record"
    );
    replay(&log).expect("log replays");
    let q = GcpQuote::load();
    verify_quote(&q.attest, &q.signature, &q.ak, &[], &q.pcrs).expect("GCP quote verifies");

    let mut g = c.benchmark_group("tpm");
    g.bench_function("baseline_sha256_log", |b| {
        b.iter(|| sha256(black_box(&log_bytes)))
    });
    g.bench_function(BenchmarkId::new("parse_event_log", "mb_log"), |b| {
        b.iter(|| {
            parse_event_log(black_box(&log_bytes))
                .map(|l| l.events.len())
                .ok()
        })
    });
    g.bench_function(BenchmarkId::new("replay", "mb_log"), |b| {
        b.iter(|| replay(black_box(&log)).map(|r| r.banks.len()).ok())
    });
    g.bench_function(BenchmarkId::new("parse_and_replay", "mb_log"), |b| {
        b.iter(|| {
            parse_event_log(black_box(&log_bytes))
                .ok()
                .and_then(|l| replay(&l).ok())
                .map(|r| r.banks.len())
        })
    });
    g.bench_function(BenchmarkId::new("verify_quote", "gcp"), |b| {
        b.iter(|| verify_quote(black_box(&q.attest), &q.signature, &q.ak, &[], &q.pcrs).is_ok())
    });
    g.finish();
}

criterion_group!(benches, tpm);
criterion_main!(benches);
