#![no_main]
//! The whole TdxVm verification of arbitrary bytes, as `/attest/TdxVm`
//! runs it: parsing (TD 1.0/1.5 bodies, v4/v5), the PCK chain, the QE and
//! quote signatures, the REPORT_DATA and MRCONFIGID bindings and the
//! claims. Seed it with real TDX quotes (scripts/fuzz.sh does).
use aver_attestation::evidence::tdx::TDX_VM;
use aver_attestation::{AttestRequest, TypedData, VerificationTime, Verifiers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verifiers = Verifiers::production();
    // 2024-01-01: inside the validity of the real quotes' PCK chains.
    let time = VerificationTime::from_unix_seconds(1_704_067_200);
    let request = AttestRequest {
        evidence: data.to_vec(),
        runtime_data: Some(TypedData {
            bytes: b"runtime".to_vec(),
            json: None,
        }),
        init_time_data: None,
        nonce: None,
        tcb_baseline: Default::default(),
        ccel_event_log: None,
    };
    let _ = aver_attestation::verify(&TDX_VM, &verifiers, &request, time);
    let plain = AttestRequest {
        evidence: data.to_vec(),
        ..AttestRequest::default()
    };
    let _ = aver_attestation::verify(&TDX_VM, &verifiers, &plain, time);
});
