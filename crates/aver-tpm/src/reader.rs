//! The bounds-checked reader every Aver parser shares ([`aver_codec`]), and
//! a helper for the UTF-16 strings of EFI event data.

pub use aver_codec::{ParseError, Reader};

/// Little-endian u16 from the first two bytes of `c` (0 if shorter).
pub fn le16(c: &[u8]) -> u16 {
    match c {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 0,
    }
}
