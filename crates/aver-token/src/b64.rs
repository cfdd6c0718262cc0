//! Base64 the way Azure Attestation's wire format needs it: base64url
//! without padding out; padded or unpadded, url-safe or standard in.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD,
};

const LENIENT_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const LENIENT_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// base64url without padding.
pub fn encode_url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Standard base64 with padding (used for `x5c`).
pub fn encode_std(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes base64url or standard base64, with or without padding.
pub fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    // The two alphabets differ only in `-_` and `+/`, so a text decodes
    // in at most one of them (or in both to the same bytes). base64url,
    // what the Azure SDKs send, is tried first; scanning the text for `+/`
    // to choose was a measurable share of decoding a 6 KB quote.
    LENIENT_URL
        .decode(text)
        .or_else(|_| LENIENT_STD.decode(text))
        .ok()
}

/// Decodes standard base64 (padding optional), e.g. an `x5c` entry.
pub fn decode_std(text: &str) -> Option<Vec<u8>> {
    LENIENT_STD.decode(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_decoding_accepts_all_four_spellings() {
        let data = [0xfb, 0xff];
        for text in ["-_8", "-_8=", "+/8", "+/8="] {
            assert_eq!(decode_lenient(text).as_deref(), Some(&data[..]), "{text}");
        }
        assert_eq!(decode_lenient("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_lenient("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_lenient("%%%"), None);
        // One alphabet per text: `-` with `+` is neither.
        assert_eq!(decode_lenient("-+8="), None);
        assert_eq!(decode_lenient("_/8"), None);
        assert_eq!(encode_url(&data), "-_8");
        assert_eq!(encode_std(&data), "+/8=");
    }
}
