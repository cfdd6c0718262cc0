#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = aver_tpm::parse_public(data) {
        let _ = p.name();
        let _ = p.to_spki_der();
        let _ = p.to_jwk();
        let _ = aver_tpm::AkPublicKey::from_public(&p);
    }
    let _ = aver_tpm::parse_public2b(data);
    let _ = aver_tpm::AkPublicKey::from_spki_der(data);
});
