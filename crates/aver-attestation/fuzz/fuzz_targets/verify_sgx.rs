#![no_main]
//! The whole SGX verification of arbitrary bytes: parsing, the byte-exact
//! PEM and DER checks of the PCK chain, webpki path building, the QE and
//! quote signatures. Seed it with real quotes (see FUZZING.md); mutations
//! of their certification data reach the X.509 code.
use aver_attestation::dcap::DcapVerifier;
use aver_attestation::evidence::sgx::{SgxEvidenceKind, verify_evidence};
use aver_attestation::VerificationTime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verifier = DcapVerifier::intel();
    // 2024-01-01: inside the validity of the real quotes' PCK chains.
    let time = VerificationTime::from_unix_seconds(1_704_067_200);
    let _ = verify_evidence(
        SgxEvidenceKind::Quote,
        &verifier,
        data,
        Some(b"runtime"),
        None,
        None,
        time,
    );
});
