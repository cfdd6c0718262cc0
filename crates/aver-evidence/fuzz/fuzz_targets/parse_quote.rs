#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = aver_evidence::parse_quote(data) {
        // Touch the derived accessors too: they must not panic either.
        let _ = quote.report_body.is_debuggable();
        let _ = quote.qe_report.attribute_flags();
    }
});
