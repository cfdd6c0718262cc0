//! Aver's DCAP verification beside the published `dcap-qvl` crate (0.7.1,
//! ring backend, offline), on the same quote and the same collateral, in
//! one run: dcap-qvl's SGX v3 and TDX v4 samples with their collateral at
//! the vectors README's pinned time (2025-07-01T00:00:00Z).
//!
//! * `aver_steady/*`: what the service does per quote. The collateral was
//!   verified once (`verify_collateral`, into the `CollateralCache` the
//!   service reads) and the quote's PCK chain is in the `PckChainCache`
//!   from an earlier quote of the platform: `evidence::{sgx,tdx}::verify`
//!   looks the collateral up by FMSPC, checks the PCK chain (a cache hit:
//!   revocation and time fixed by the cached window), the QE report and
//!   quote signatures, the QE identity and TCB level, and builds the
//!   verified facts.
//! * `aver_cold/*`: nothing cached: the collateral bundle verified (three
//!   issuer chains, two CRLs, TCB info and QE identity signatures), a fresh
//!   verifier (empty chain cache), then the quote. What the first quote of
//!   a platform costs, and the like-for-like counterpart of dcap-qvl.
//! * `dcap_qvl/*`: `dcap_qvl::verify::QuoteVerifier::verify` with Intel's
//!   root, which verifies everything on every call.
//!
//! Both sides get their collateral already decoded from JSON (Aver's
//! `CollateralBundle`, dcap-qvl's `QuoteCollateralV3`). The TCB status of
//! the SGX sample (ConfigurationAndSWHardeningNeeded) is outside Aver's
//! default acceptance, so the bench's verifiers accept every status but
//! Revoked: the verdict is computed either way; only then refused.
//! Baseline: one raw ECDSA-P256 verify (aws-lc-rs), of the SGX quote's own
//! signature.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_attestation::dcap::collateral::{CollateralBundle, TcbStatus, verify_collateral};
use aver_attestation::dcap::{DcapVerifier, TcbAcceptance, TrustAnchors};
use aver_attestation::evidence::{sgx, tdx};
use aver_attestation::{AttestRequest, VerificationTime, Verifiers, parse_rfc3339};
use aver_bench::{EcdsaBaseline, require_vector};
use criterion::{Criterion, criterion_group, criterion_main};
use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;

/// The vectors README's pin for both samples.
const PIN: &str = "2025-07-01T00:00:00Z";

struct Sample {
    name: &'static str,
    quote: Vec<u8>,
    bundle: CollateralBundle,
    qvl: QuoteCollateralV3,
    /// Aver's verifiers with the collateral cached and the chain cache warm.
    warm: Verifiers,
    status: TcbStatus,
}

fn load(name: &'static str, dir: &str, time: VerificationTime) -> Sample {
    let quote = require_vector(&format!("{dir}/quote.bin"));
    let json = require_vector(&format!("{dir}/collateral.json"));
    let bundle = CollateralBundle::from_dcap_qvl_json(&json).expect("bundle parses");
    let qvl: QuoteCollateralV3 = serde_json::from_slice(&json).expect("dcap-qvl parses it");
    let mut warm = Verifiers::production();
    warm.tcb_acceptance = TcbAcceptance::all_but_revoked();
    let c = verify_collateral(&bundle, &TrustAnchors::intel(), time).expect("collateral verifies");
    assert!(warm.collateral.insert(c));
    let mut s = Sample {
        name,
        quote,
        bundle,
        qvl,
        warm,
        status: TcbStatus::Revoked,
    };
    // The first quote fills the chain cache; it must give the verdict.
    s.status = aver_steady(&s, time);
    assert_eq!(s.warm.dcap.chain_cache().len(), 1, "{name}: chain cached");
    s
}

fn request(quote: &[u8]) -> AttestRequest {
    AttestRequest {
        evidence: quote.to_vec(),
        ..AttestRequest::default()
    }
}

/// The service's per-quote path; the status of the verdict.
fn aver_steady(s: &Sample, time: VerificationTime) -> TcbStatus {
    let req = request(&s.quote);
    aver_steady_req(s, &req, time)
}

fn aver_steady_req(s: &Sample, req: &AttestRequest, time: VerificationTime) -> TcbStatus {
    let tcb = if s.name == "sgx-v3" {
        sgx::verify(sgx::SgxEvidenceKind::Quote, &s.warm, req, time)
            .expect("verifies")
            .tcb
    } else {
        tdx::verify(&s.warm, req, time).expect("verifies").tcb
    };
    tcb.expect("a TCB verdict").status
}

/// Nothing cached: collateral verified, fresh verifier, then the quote.
fn aver_cold(s: &Sample, time: VerificationTime) -> TcbStatus {
    let c = verify_collateral(&s.bundle, &TrustAnchors::intel(), time).expect("verifies");
    let dcap = DcapVerifier::intel();
    let tcb = if s.name == "sgx-v3" {
        sgx::verify_evidence_with_collateral(
            sgx::SgxEvidenceKind::Quote,
            &dcap,
            &s.quote,
            None,
            None,
            &c,
            time,
        )
        .expect("verifies")
        .tcb
    } else {
        tdx::verify_evidence_with_collateral(&dcap, &s.quote, None, None, &c, time)
            .expect("verifies")
            .tcb
    };
    tcb.expect("a TCB verdict").status
}

fn dcap_qvl_verify(s: &Sample, time: VerificationTime) -> String {
    QuoteVerifier::new_prod()
        .with_config::<dcap_qvl::configs::RingConfig>()
        .verify(&s.quote, &s.qvl, time.unix_seconds())
        .expect("dcap-qvl verifies")
        .status
}

fn dcap(c: &mut Criterion) {
    let time = parse_rfc3339(PIN).expect("pin parses");
    let samples = [
        load("sgx-v3", "sgx/dcap-qvl-sgx-v3", time),
        load("tdx-v4", "tdx/dcap-qvl-tdx-v4", time),
    ];
    // Same verdict on both sides before anything is timed.
    for s in &samples {
        assert_eq!(aver_cold(s, time), s.status, "{}", s.name);
        assert_eq!(dcap_qvl_verify(s, time), s.status.as_str(), "{}", s.name);
    }
    let ecdsa = EcdsaBaseline::from_quote(&samples[0].quote);
    assert!(ecdsa.verify(), "baseline signature verifies");

    let mut g = c.benchmark_group("dcap");
    g.bench_function("baseline_ecdsa_p256_verify", |b| {
        b.iter(|| black_box(&ecdsa).verify())
    });
    for s in &samples {
        let req = request(&s.quote);
        g.bench_function(format!("aver_steady/{}", s.name), |b| {
            b.iter(|| aver_steady_req(s, black_box(&req), time))
        });
        g.bench_function(format!("aver_cold/{}", s.name), |b| {
            b.iter(|| aver_cold(black_box(s), time))
        });
        g.bench_function(format!("dcap_qvl/{}", s.name), |b| {
            b.iter(|| dcap_qvl_verify(black_box(s), time))
        });
    }
    g.finish();
}

criterion_group!(benches, dcap);
criterion_main!(benches);
