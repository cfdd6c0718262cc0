#![no_main]
use libfuzzer_sys::fuzz_target;

// A TDX CCEL area: the padding rule, the MR-index mapping, the SHA-384
// replay, the comparison with RTMRs, and the claims built from the log.
fuzz_target!(|data: &[u8]| {
    // Quoted RTMRs: the all-zero registers, so that both the match and the
    // mismatch paths (with the prefix search) run.
    let zero = [[0u8; 48]; 4];
    match aver_tpm::ccel::verify_ccel(data, &zero) {
        Ok(r) => {
            assert!(r.log.trailing_zero_bytes < data.len());
            check(&r);
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
            if let Ok(r) = aver_tpm::ccel::replay_ccel(data) {
                check(&r);
                // Its own replay is what it must verify against.
                assert!(aver_tpm::ccel::verify_ccel(data, &r.rtmr).is_ok());
            }
        }
    }
});

fn check(r: &aver_tpm::ccel::CcelReplay) {
    // Every extended record names an RTMR (MR index 1-4).
    for ev in &r.log.events {
        assert!(
            ev.event_type == aver_tpm::eventlog::types::EV_NO_ACTION
                || aver_tpm::ccel::rtmr_of(ev.pcr_index).is_some()
        );
    }
    assert!(r.log.events.len() <= aver_tpm::ccel::MAX_CCEL_EVENTS);
    let _ = aver_tpm::claims::events_claim(&r.log);
}
