//! Fuzzes the SEV-SNP attestation report parser, the structural checks
//! and the Azure evidence wrapper: none may panic on any input.
#![no_main]

use aver_attestation::evidence::snp::{SnpTrust, parse_evidence, parse_report, verify_report};
use aver_attestation::VerificationTime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = parse_report(data) {
        let _ = report.signing_key();
        let _ = report.mitigation_vectors();
        let _ = report.reported_tcb.parts(true);
    }
    // The whole verification without a chain stops at the chain, after the
    // structural checks.
    let trust = SnpTrust::empty();
    let _ = verify_report(&trust, data, &[], None, None, VerificationTime::from_unix_seconds(0));
    let _ = parse_evidence(data);
});
