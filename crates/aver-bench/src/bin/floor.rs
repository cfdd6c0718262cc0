//! `crypto-floor`: the cryptographic floor of one SGX attestation, measured
//! on this machine, for `scripts/load.sh` to divide the service's CPU per
//! attestation by.
//!
//! One floor operation is what no implementation can avoid: two
//! ECDSA-P256-SHA256 verifications (the quote's signature and the QE
//! report's, here both the real Azure SDK quote's attestation-key
//! signature, which costs the same) and one token signature — RSA-2048
//! PKCS#1 v1.5 SHA-256 (RS256, the default), or ECDSA-P256 (ES256) with
//! `--es256`. aws-lc-rs, one thread, the same library and key sizes as
//! the service.
//!
//! ```text
//! cargo run --release -p aver-bench --bin crypto-floor [-- --seconds 5] [--es256]
//! ```
//!
//! Prints one line: `FLOOR alg=RS256 ops=... seconds=... us_per_op=...`.

// A benchmark tool on fixed inputs: a failed set-up is a bug to stop at.
#![allow(clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use aver_bench::{SgxFixture, rsa_key_pair, rsa_sign};

fn main() {
    let mut seconds = 5.0f64;
    let mut es256 = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(seconds)
                    .clamp(0.5, 600.0);
            }
            "--es256" => es256 = true,
            other => {
                eprintln!("crypto-floor: unknown argument {other:?} (--seconds S, --es256)");
                std::process::exit(2);
            }
        }
    }
    let fixture = SgxFixture::load();
    let ecdsa = fixture.ecdsa_baseline();
    assert!(ecdsa.verify(), "the baseline signature verifies"); // ok: fixed benchmark input
    let message = ecdsa.message.clone();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let rsa = rsa_key_pair();
    let p256 = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .expect("P-256 key"); // ok: benchmark set-up
    let op = || {
        let a = ecdsa.verify();
        let b = ecdsa.verify();
        let sig_len = if es256 {
            p256.sign(&rng, &message)
                .map(|s| s.as_ref().len())
                .unwrap_or(0)
        } else {
            rsa_sign(&rsa, &message).len()
        };
        std::hint::black_box((a, b, sig_len));
    };
    // Warm up, then measure for the given time.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        op();
    }
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..16 {
            op();
        }
        ops += 16;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "FLOOR alg={} ops={ops} seconds={elapsed:.3} us_per_op={:.2}",
        if es256 { "ES256" } else { "RS256" },
        elapsed * 1e6 / ops as f64
    );
}
