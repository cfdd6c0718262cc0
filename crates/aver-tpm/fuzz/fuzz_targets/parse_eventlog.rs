#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = aver_tpm::parse_event_log(data) {
        // Tolerance invariants: padding is part of the input, and only
        // EV_NO_ACTION events (never extended) may name a PCR above 23.
        assert!(log.trailing_zero_bytes < data.len());
        for ev in &log.events {
            assert!(
                ev.event_type == aver_tpm::eventlog::types::EV_NO_ACTION
                    || ev.pcr_index <= aver_tpm::eventlog::MAX_PCR_INDEX
            );
        }
        if let Ok(r) = aver_tpm::replay(&log) {
            let claims = aver_tpm::claims::build_claims(&log, Some(&r), &r.banks);
            let _ = serde_json_len(&claims);
            let _ = aver_tpm::compare(
                &log,
                &r,
                &r.banks,
                Some(0x00ff_ffff),
                aver_tpm::replay::KNOWN_QUIRKS,
            );
        }
    }
});

fn serde_json_len(c: &aver_tpm::claims::TpmClaims) -> usize {
    c.events.events.len() + c.pcrs.pcrs.len()
}
