//! Fuzzes the HCL report parser and the AzureCvm evidence and quote JSON
//! decoders, then the whole AzureCvm verification (which stops at the SNP
//! chain without trusted roots): none may panic on any input.
#![no_main]

use aver_attestation::evidence::azure_cvm::{
    AzureCvmEvidence, VtpmQuote, parse_evidence, parse_hcl_report, parse_quote_json,
    verify_evidence,
};
use aver_attestation::evidence::snp::SnpTrust;
use aver_attestation::{VerificationTime, Verifiers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = parse_hcl_report(data) {
        let _ = report.hardware_report();
    }
    let _ = parse_evidence(data);
    let _ = parse_quote_json(data);
    let evidence = AzureCvmEvidence {
        hcl_report: data.to_vec(),
        certs: Vec::new(),
        td_quote: Some(data.to_vec()),
        quote: VtpmQuote {
            message: Vec::new(),
            signature: Vec::new(),
            pcrs: Vec::new(),
        },
    };
    let mut verifiers = Verifiers::production();
    verifiers.snp = SnpTrust::empty();
    let _ = verify_evidence(
        &verifiers,
        &evidence,
        b"challenge",
        VerificationTime::from_unix_seconds(0),
    );
});
