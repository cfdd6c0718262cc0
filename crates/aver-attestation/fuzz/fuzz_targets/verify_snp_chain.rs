//! Fuzzes the AMD certificate chain path: splitting PEM/DER, parsing each
//! certificate, the RSA-PSS links to the built-in ARKs, the TCB and
//! hardware-ID extensions, and CRL loading. Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use aver_attestation::VerificationTime;
use aver_attestation::evidence::snp::SnpTrust;
use aver_attestation::evidence::snp::certs::split_chain;
use libfuzzer_sys::fuzz_target;

/// Built once: loading AMD's roots verifies their RSA-4096 signatures.
static AMD: OnceLock<SnpTrust> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let trust = AMD.get_or_init(SnpTrust::amd);
    if let Ok(certs) = split_chain(data) {
        // 2026-01-01: inside every real vector's validity.
        let _ = trust.verify_chain(&certs, VerificationTime::from_unix_seconds(1_767_225_600));
    }
    // A CRL named for a real ARK reaches the signature check.
    let _ = trust.add_crl_der(data);
});
