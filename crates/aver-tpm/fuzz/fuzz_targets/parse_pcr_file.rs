#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Auto-detected, and each format directly (random bytes are rarely
    // JSON, so the detector alone would starve the JSON parser and vice
    // versa for inputs starting with '{').
    let auto = aver_tpm::parse_pcr_file(data);
    let serialized = aver_tpm::pcrfile::parse_tpm2_tools_pcrs(data);
    let json = aver_tpm::pcrfile::parse_pcr_json(data);
    // Whatever parses has in-range PCRs and values of the bank's size.
    for values in [auto, serialized, json].into_iter().flatten() {
        for (bank, vals) in &values {
            for (pcr, v) in vals {
                assert!(*pcr <= aver_tpm::pcrfile::MAX_PCR_INDEX);
                assert_eq!(v.len(), bank.size());
            }
        }
    }
});
