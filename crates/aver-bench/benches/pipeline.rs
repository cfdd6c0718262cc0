//! The service's per-request CPU cost for `POST /attest/SgxEnclave`,
//! in process (no HTTP, no TLS): verification + claims + default policy
//! (the attestation core, `aver_attestation`), then stamping and RS256
//! signing; and the same with the request body's JSON and base64url
//! decoding and the response's encoding around it.
//! Baseline: one raw ECDSA-P256-SHA256 verify (aws-lc-rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_attestation::{AttestRequest, TypedData};
use aver_bench::{
    SgxFixture, attest_body, jku, sgx_claims, sgx_default_policy, stamp_fixed, token_key,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;

fn pipeline(c: &mut Criterion) {
    let f = SgxFixture::load();
    let ecdsa = f.ecdsa_baseline();
    assert!(ecdsa.verify());
    let active = sgx_default_policy();
    let request = f.request();
    let key = token_key();
    let jku = jku();
    let now = f.time.unix_seconds();
    let body = attest_body(&f);

    let attest = |request: &AttestRequest| sgx_claims(&f, &active, request);
    let attest_and_sign = |request: &AttestRequest| {
        let mut claims = attest(request).ok()?;
        stamp_fixed(&mut claims, now);
        key.sign_jwt(&jku, &claims).ok()
    };
    // The handler's work on a body: JSON, base64url, pipeline, token,
    // response JSON.
    let handle = |body: &[u8]| {
        let obj: serde_json::Value = serde_json::from_slice(body).ok()?;
        let b64 = |v: &serde_json::Value| aver_token::b64::decode_lenient(v.as_str()?);
        let request = AttestRequest {
            evidence: b64(&obj["quote"])?,
            runtime_data: Some(TypedData {
                bytes: b64(&obj["runtimeData"]["data"])?,
                json: None,
            }),
            init_time_data: None,
            nonce: None,
            tcb_baseline: Default::default(),
            ccel_event_log: None,
        };
        let token = attest_and_sign(&request)?;
        serde_json::to_vec(&json!({ "token": token })).ok()
    };
    let token = attest_and_sign(&request).expect("fixture attests and signs");
    let response = handle(&body).expect("handler path works");
    assert!(response.len() > token.len());
    let mut claims = attest(&request).expect("attests");
    stamp_fixed(&mut claims, now);

    let mut g = c.benchmark_group("pipeline");
    g.bench_function("baseline_ecdsa_p256_verify", |b| {
        b.iter(|| black_box(&ecdsa).verify())
    });
    g.bench_function(BenchmarkId::new("attest_sgx", f.source), |b| {
        b.iter(|| attest(black_box(&request)).is_ok())
    });
    g.bench_function(BenchmarkId::new("sign_jwt", f.source), |b| {
        b.iter(|| key.sign_jwt(&jku, black_box(&claims)).ok())
    });
    g.bench_function(BenchmarkId::new("attest_sgx_and_sign", f.source), |b| {
        b.iter(|| attest_and_sign(black_box(&request)))
    });
    g.bench_function(
        BenchmarkId::new("request_body_to_response", f.source),
        |b| b.iter(|| handle(black_box(&body))),
    );
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
