//! Token signing (RS256) and relying-party verification.
//! Baseline: one raw RSA-2048 PKCS#1 v1.5 SHA-256 signature (aws-lc-rs,
//! same key, same signing input).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_bench::{SgxFixture, jku, jwks, rsa_key_pair, rsa_sign, sgx_token_claims, token_key};
use aver_token::{VerifyOptions, verify_token};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn token(c: &mut Criterion) {
    let f = SgxFixture::load();
    let claims = sgx_token_claims(&f);
    let key = token_key();
    let raw = rsa_key_pair();
    let jwks = jwks(&key);
    let jku = jku();
    let token = key.sign_jwt(&jku, &claims).expect("signs");
    let (signing_input, _) = token.rsplit_once('.').expect("compact JWS");
    let signing_input = signing_input.as_bytes().to_vec();
    let options = VerifyOptions {
        issuer: Some(aver_bench::TOKEN_ISSUER.into()),
        now: f.time.unix_seconds() + 60,
        leeway: 0,
    };
    let verified = verify_token(&token, &jwks, &options).expect("token verifies");
    assert_eq!(verified, claims);
    assert_eq!(
        key.sign_jwt(&jku, &claims).expect("signs"),
        token,
        "RS256 is deterministic"
    );

    let mut g = c.benchmark_group("token");
    g.bench_function("baseline_rsa2048_pkcs1_sign", |b| {
        b.iter(|| rsa_sign(&raw, black_box(&signing_input)))
    });
    g.bench_function(BenchmarkId::new("sign_jwt", "sgx-claims"), |b| {
        b.iter(|| key.sign_jwt(&jku, black_box(&claims)).ok())
    });
    g.bench_function(BenchmarkId::new("verify_token", "sgx-claims"), |b| {
        b.iter(|| verify_token(black_box(&token), &jwks, &options).is_ok())
    });
    g.finish();
}

criterion_group!(benches, token);
criterion_main!(benches);
