//! SEV-SNP verification of a real report: the SNP report inside an Azure
//! confidential VM's HCL report with its VCEK → ASK → ARK chain
//! (`tpm/azure-cvm-vtpm-snp`), at a time inside the VCEK's validity.
//!
//! * `verify_report`: everything `/attest/SevSnpVm` verifies (chain, report
//!   signature, TCB and chip ID against the certificate, runtime data), for
//!   a platform seen before: its chain is found in the verified-chain cache;
//! * `verify_report_first_time`: the same with the cache empty (every link
//!   verified, as for a platform's first report);
//! * `verify_chain`, `verify_chain_first_time`: the chain alone;
//! * `baseline_p384_verify`: the floor of a report whose chain is known —
//!   one ECDSA P-384 / SHA-384 verification of the report with the VCEK's
//!   key (aws-lc-rs), nothing else;
//! * `floor_chain_rsa_pss`: what a chain seen for the first time adds to
//!   that floor — the three RSA-PSS-4096 / SHA-384 verifications of its
//!   links (not named `baseline_`: `bench-report` divides the group by the
//!   one baseline above).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aver_attestation::evidence::snp::certs::split_chain;
use aver_attestation::evidence::snp::report::REPORT_LEN;
use aver_attestation::evidence::snp::{SnpTrust, verify_report};
use aver_attestation::parse_rfc3339;
use aver_bench::require_vector;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384, UnparsedPublicKey};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn snp(c: &mut Criterion) {
    let hcl = require_vector("tpm/azure-cvm-vtpm-snp/hcl-report.bin");
    let pem = require_vector("tpm/azure-cvm-vtpm-snp/vcek.pem");
    let report = hcl[32..32 + REPORT_LEN].to_vec();
    let len = u32::from_le_bytes(hcl[1232..1236].try_into().unwrap()) as usize;
    let runtime = hcl[1236..1236 + len].to_vec();
    let certs = split_chain(&pem).unwrap();
    let time = parse_rfc3339("2025-06-01T00:00:00Z").unwrap();
    let trust = SnpTrust::amd();
    let verified = verify_report(&trust, &report, &certs, Some(&runtime), None, time).unwrap();
    assert!(verified.runtime_data_bound);

    // The floor's inputs, prepared outside the timed loop.
    let chain = trust.verify_chain(&certs, time).unwrap();
    let mut sig = Vec::with_capacity(96);
    // r and s are little-endian in the report (0x2A0 and 0x2E8, 72 bytes
    // each, the top 24 zero); the fixed encoding is big-endian.
    sig.extend(report[0x2A0..0x2A0 + 48].iter().rev());
    sig.extend(report[0x2E8..0x2E8 + 48].iter().rev());
    let vcek_key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, chain.public_key.clone());
    vcek_key.verify(&report[..0x2A0], &sig).unwrap();
    let links: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = [(0, 1), (1, 2), (2, 2)]
        .iter()
        .map(|&(child, parent)| {
            let (_, c) = x509_parser::parse_x509_certificate(&certs[child]).unwrap();
            let (_, p) = x509_parser::parse_x509_certificate(&certs[parent]).unwrap();
            (
                c.tbs_certificate.as_ref().to_vec(),
                c.signature_value.data.to_vec(),
                p.public_key().subject_public_key.data.to_vec(),
            )
        })
        .collect();
    for (tbs, sig, key) in &links {
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
            .verify(tbs, sig)
            .unwrap();
    }

    let mut g = c.benchmark_group("snp");
    g.bench_function("baseline_p384_verify", |b| {
        b.iter(|| vcek_key.verify(black_box(&report[..0x2A0]), black_box(&sig)))
    });
    g.bench_function("floor_chain_rsa_pss", |b| {
        b.iter(|| {
            for (tbs, sig, key) in &links {
                UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
                    .verify(black_box(tbs), black_box(sig))
                    .unwrap();
            }
        })
    });
    // A trust whose chain cache is empty: trusting an ARK again (the same
    // Milan ARK, a duplicate entry) starts a fresh cache. Made outside the
    // timed part.
    let cold = || {
        let mut t = trust.clone();
        t.add_ark_der(certs[2].clone(), "AMD ARK-Milan (again)")
            .unwrap();
        t
    };
    g.bench_function("verify_chain_first_time", |b| {
        b.iter_batched(
            cold,
            |t| t.verify_chain(black_box(&certs), time).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // What `/attest/SevSnpVm` verifies, under `t`.
    let verify = |t: &SnpTrust| {
        verify_report(
            t,
            black_box(&report),
            black_box(&certs),
            Some(&runtime),
            None,
            time,
        )
        .unwrap()
    };
    g.bench_function("verify_report_first_time", |b| {
        b.iter_batched(cold, |t| verify(&t), BatchSize::SmallInput)
    });
    g.bench_function("verify_chain", |b| {
        b.iter(|| trust.verify_chain(black_box(&certs), time).unwrap())
    });
    g.bench_function("verify_report", |b| b.iter(|| verify(&trust)));
    g.finish();
}

criterion_group!(benches, snp);
criterion_main!(benches);
