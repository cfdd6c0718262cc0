#![no_main]
//! The DCAP quote parser: any bytes, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = aver_attestation::dcap::parse_quote(data) {
        // Touch the derived accessors too: they must not panic either.
        if let Some(report) = quote.sgx_report() {
            let _ = report.is_debuggable();
        }
        let _ = quote.qe.qe_report.attribute_flags();
    }
});
