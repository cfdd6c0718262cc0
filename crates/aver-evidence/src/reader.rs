//! A bounds-checked cursor over untrusted bytes.

use crate::ParseError;

/// Reads fixed-size and length-prefixed fields from a byte slice.
///
/// Every method checks the remaining length first and returns
/// [`ParseError::Truncated`] naming the field, so callers never index.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, offset: 0 }
    }

    /// Offset of the next unread byte from the start of the input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.offset..).unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ParseError> {
        let rest = self.rest();
        match rest.get(..n) {
            Some(bytes) => {
                self.offset += n;
                Ok(bytes)
            }
            None => Err(ParseError::Truncated {
                field,
                offset: self.offset,
                needed: n,
                available: rest.len(),
            }),
        }
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<&'a [u8; N], ParseError> {
        let bytes = self.take(N, field)?;
        bytes.try_into().map_err(|_| ParseError::Truncated {
            field,
            offset: self.offset,
            needed: N,
            available: 0,
        })
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(*self.array(field)?))
    }

    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(*self.array(field)?))
    }

    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(*self.array(field)?))
    }

    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(*self.array(field)?))
    }

    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(*self.array(field)?))
    }

    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(*self.array(field)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_past_end_is_a_named_error() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_le("a").unwrap(), 0x0201);
        let err = r.u16_le("b").unwrap_err();
        assert_eq!(
            err,
            ParseError::Truncated {
                field: "b",
                offset: 2,
                needed: 2,
                available: 1
            }
        );
        assert_eq!(r.offset(), 2, "a failed read consumes nothing");
        assert_eq!(r.u8("c").unwrap(), 3);
        assert!(r.is_empty());
    }
}
