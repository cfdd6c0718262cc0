#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = aver_tpm::parse_event_log(data) {
        if let Ok(r) = aver_tpm::replay(&log) {
            let claims = aver_tpm::claims::build_claims(&log, Some(&r), &r.banks);
            let _ = serde_json_len(&claims);
        }
    }
});

fn serde_json_len(c: &aver_tpm::claims::TpmClaims) -> usize {
    c.events.events.len() + c.pcrs.pcrs.len()
}
