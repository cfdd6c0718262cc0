//! # aver-codec — reading untrusted bytes
//!
//! Every parser of evidence in Aver (DCAP quotes, TPM structures, TCG event
//! logs, AMD reports, ...) reads through one [`Reader`]: a cursor over a
//! borrowed `&[u8]` whose every read checks the remaining length first and
//! returns a [`ParseError`] naming the field and its offset instead of
//! panicking or indexing out of bounds. Variable-length regions are borrowed
//! slices; nothing is allocated in proportion to a length field.
//!
//! * [`Reader::sub`] carves a length-delimited region into its own reader
//!   (offsets stay absolute, so errors point into the original input);
//! * [`Reader::finish`] is the one "all bytes consumed" check: a structure
//!   that must fill its region fails with [`ParseError::Trailing`] otherwise.
//!
//! Like rustls' codec layer, this crate knows nothing about what the bytes
//! mean; the parsers built on it do.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use thiserror::Error;

/// Why bytes could not be read as the structure a parser expected. Each
/// variant names the field, so messages point at what a client got wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The input ended before `field` could be read.
    #[error("truncated: {field} needs {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field from the start of the input.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A field holds a value the format (or this parser) does not accept.
    #[error("invalid {field}: {detail}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A count or size exceeds a documented cap.
    #[error("{field} = {value} exceeds the cap of {cap}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The cap.
        cap: u64,
    },
    /// Bytes remain after a structure that must fill its region.
    #[error("{count} unexpected bytes after {field}")]
    Trailing {
        /// The structure.
        field: &'static str,
        /// How many bytes are left over.
        count: usize,
    },
}

impl ParseError {
    /// An [`ParseError::Invalid`] error.
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        ParseError::Invalid {
            field,
            detail: detail.into(),
        }
    }
}

/// A bounds-checked cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the outermost input (for error messages).
    base: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            base: 0,
        }
    }

    /// Offset of the next unread byte from the start of the outermost input.
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes (without consuming them).
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    /// Reads the next `n` bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.data.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(ParseError::Truncated {
                field,
                offset: self.offset(),
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    /// Reads exactly `N` bytes as an array reference.
    pub fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<&'a [u8; N], ParseError> {
        let offset = self.offset();
        let available = self.remaining();
        self.bytes(N, field)?
            .try_into()
            .map_err(|_| ParseError::Truncated {
                field,
                offset,
                needed: N,
                available,
            })
    }

    /// Skips `n` bytes (reserved fields the caller does not check).
    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), ParseError> {
        self.bytes(n, field).map(|_| ())
    }

    /// Carves the next `n` bytes into a reader of their own, for a
    /// length-delimited region; finish it with [`Reader::finish`].
    pub fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader<'a>, ParseError> {
        let base = self.offset();
        let data = self.bytes(n, field)?;
        Ok(Reader { data, pos: 0, base })
    }

    /// A `u16` big-endian length, then that many bytes (at most `cap`): the
    /// TPM2B shape.
    pub fn sized_u16_be(
        &mut self,
        field: &'static str,
        cap: usize,
    ) -> Result<&'a [u8], ParseError> {
        let n = usize::from(self.u16_be(field)?);
        if n > cap {
            return Err(ParseError::TooLarge {
                field,
                value: n as u64,
                cap: cap as u64,
            });
        }
        self.bytes(n, field)
    }

    /// Fails with [`ParseError::Trailing`] unless every byte was read.
    pub fn finish(&self, field: &'static str) -> Result<(), ParseError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(ParseError::Trailing { field, count }),
        }
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Little-endian `u16` (DCAP quotes, TCG event logs, AMD reports).
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(*self.array(field)?))
    }

    /// Little-endian `u32`.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(*self.array(field)?))
    }

    /// Little-endian `u64`.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(*self.array(field)?))
    }

    /// Big-endian `u16` (TPM structures).
    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(*self.array(field)?))
    }

    /// Big-endian `u32`.
    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(*self.array(field)?))
    }

    /// Big-endian `u64`.
    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(*self.array(field)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_named_errors_and_consume_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_le("a").unwrap(), 0x0201);
        assert_eq!(
            r.u16_le("b").unwrap_err(),
            ParseError::Truncated {
                field: "b",
                offset: 2,
                needed: 2,
                available: 1
            }
        );
        assert_eq!(r.offset(), 2);
        assert_eq!(r.u8("c").unwrap(), 3);
        assert!(r.is_empty());
        assert!(r.bytes(usize::MAX, "huge").is_err());
    }

    #[test]
    fn sub_readers_keep_absolute_offsets_and_finish_checks_the_rest() {
        let data = [0u8, 0, 5, 6, 7, 8, 9];
        let mut r = Reader::new(&data);
        r.skip(2, "pad").unwrap();
        let mut s = r.sub(3, "region").unwrap();
        assert_eq!(s.offset(), 2);
        assert_eq!(s.u8("x").unwrap(), 5);
        assert_eq!(
            s.finish("region"),
            Err(ParseError::Trailing {
                field: "region",
                count: 2
            })
        );
        assert_eq!(
            s.u32_le("y").unwrap_err(),
            ParseError::Truncated {
                field: "y",
                offset: 3,
                needed: 4,
                available: 2
            }
        );
        assert_eq!(r.offset(), 5);
        assert_eq!(r.rest(), &[8, 9]);
    }

    #[test]
    fn sized_fields_respect_their_cap() {
        let mut r = Reader::new(&[0, 2, 0xaa, 0xbb, 0, 9]);
        assert_eq!(r.sized_u16_be("a", 4).unwrap(), &[0xaa, 0xbb]);
        assert!(matches!(
            r.sized_u16_be("b", 4),
            Err(ParseError::TooLarge {
                value: 9,
                cap: 4,
                ..
            })
        ));
    }
}
