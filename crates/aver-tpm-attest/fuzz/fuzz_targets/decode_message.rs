#![no_main]
//! The `POST /attest/Tpm` decoder: the `data` string, the payload JSON and
//! the sealed service context must never panic on any input.
use aver_tpm_attest::context::{Purpose, unseal};
use aver_tpm_attest::message::{b64url, decode_message, decode_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = decode_message(s);
        let _ = unseal(&[0u8; 32], s, Purpose::Attest, 0);
    }
    // Raw bytes as the decoded JSON (the common path past base64).
    let _ = decode_message(&b64url(data));
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = decode_payload(v);
    }
});
