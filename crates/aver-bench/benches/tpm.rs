//! TPM event-log parsing and replay (keylime `mb_log.bin`, 101 events) and
//! quote verification (GCP Shielded VM quote: RSA-2048 AK, RSASSA-SHA1,
//! SHA-1 PCRs 0..23). Baseline: SHA-256 over the log bytes.
//!
//! `tpm_attest`: one TPM attestation's verification work end to end:
//! the GCP quote verified, the 101-event keylime log parsed and replayed,
//! and MAA's Secure Boot / HVCI / malicious-driver JmesPath sample policy
//! evaluated on the GCP event-log claims (the claims built once, as the
//! policy bench does). Its baseline is that work's cryptographic floor,
//! measured in the same run: the AK's RSA-2048 signature check (aws-lc-rs,
//! as the quote verifier calls it), the quote's PCR digest, and one hash per
//! PCR extend of the log (per event and bank), nothing else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_bench::{GcpQuote, KEYLIME_MB_LOG, TpmAttest, require_vector, sha256};
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

fn tpm_attest(c: &mut Criterion) {
    let work = TpmAttest::load();
    assert!(work.floor.run(), "the floor's signature verifies");
    assert!(work.all(), "quote verifies, log replays, policy permits");

    let mut g = c.benchmark_group("tpm_attest");
    g.bench_function("baseline_crypto_floor", |b| {
        b.iter(|| black_box(&work.floor).run())
    });
    g.bench_function(BenchmarkId::new("policy", "secureboot-hvci-v1.2"), |b| {
        b.iter(|| work.policy())
    });
    g.bench_function(
        BenchmarkId::new("quote_replay_policy", "gcp-quote+mb_log+secureboot-hvci"),
        |b| b.iter(|| work.all()),
    );
    g.finish();
}

criterion_group!(benches, tpm, tpm_attest);
criterion_main!(benches);
