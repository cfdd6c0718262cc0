#![no_main]
//! OpenEnclave report header and the quote behind it.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aver_attestation::evidence::sgx::parse_openenclave_report(data);
});
