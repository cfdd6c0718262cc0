//! A bounds-checked cursor over a byte slice. Every read returns a
//! [`ParseError`] instead of panicking, so parsers built on it can be fed
//! arbitrary bytes.

use thiserror::Error;

/// Error produced by the low-level reader and the structure parsers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The input ended before a field of `what` could be read.
    #[error(
        "truncated input reading {what}: need {need} bytes at offset {offset}, {have} available"
    )]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A field holds a value this parser does not accept.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Field name.
        what: &'static str,
        /// Human-readable detail.
        detail: String,
    },
    /// A count or size exceeds a documented cap.
    #[error("{what} = {value} exceeds the cap of {cap}")]
    TooLarge {
        /// Field name.
        what: &'static str,
        /// Value found.
        value: u64,
        /// Cap.
        cap: u64,
    },
    /// Bytes remain after a structure that must fill its buffer.
    #[error("{count} trailing bytes after {what}")]
    Trailing {
        /// Structure name.
        what: &'static str,
        /// Number of trailing bytes.
        count: usize,
    },
}

/// Bounds-checked big/little-endian reader.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when everything has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unconsumed bytes (not consumed by this call).
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Reads `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(ParseError::Truncated {
                what,
                offset: self.pos,
                need: n,
                have: self.remaining(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ParseError> {
        let s = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// Big-endian u16 (TPM structures).
    pub fn u16_be(&mut self, what: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    /// Big-endian u32.
    pub fn u32_be(&mut self, what: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    /// Big-endian u64.
    pub fn u64_be(&mut self, what: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    /// Little-endian u16 (TCG event logs).
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    /// Little-endian u32.
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// Little-endian u64.
    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A TPM2B: big-endian u16 size then that many bytes, at most `cap` bytes.
    pub fn tpm2b(&mut self, what: &'static str, cap: usize) -> Result<&'a [u8], ParseError> {
        let n = self.u16_be(what)? as usize;
        if n > cap {
            return Err(ParseError::TooLarge {
                what,
                value: n as u64,
                cap: cap as u64,
            });
        }
        self.bytes(n, what)
    }
    /// Fails when unconsumed bytes remain.
    pub fn finish(&self, what: &'static str) -> Result<(), ParseError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(ParseError::Trailing { what, count }),
        }
    }
}

/// Little-endian u16 from the first two bytes of `c` (0 if shorter).
pub fn le16(c: &[u8]) -> u16 {
    match c {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 0,
    }
}
