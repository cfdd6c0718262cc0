//! OpenEnclave remote reports: a 16-byte header in front of an SGX quote.
//!
//! ```text
//! u32 LE version   = 1
//! u32 LE type      = 2 (OE_REPORT_TYPE_SGX_REMOTE)
//! u64 LE size      = length of the quote that follows
//! ```
//!
//! This is what `oe_get_report` returns and what Azure Attestation's
//! `/attest/OpenEnclave` takes as `report`.

use crate::ParseError;
use crate::reader::Reader;
use crate::sgx::{Quote, parse_quote};

/// Size of the OpenEnclave report header.
pub const HEADER_LEN: usize = 16;

/// An OpenEnclave report and the SGX quote inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenEnclaveReport<'a> {
    /// The raw quote bytes (`report[16..]`).
    pub quote_bytes: &'a [u8],
    pub quote: Quote<'a>,
}

/// Parses an OpenEnclave remote report.
pub fn parse_openenclave_report(bytes: &[u8]) -> Result<OpenEnclaveReport<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let version = r.u32_le("oe_header.version")?;
    if version != 1 {
        return Err(ParseError::InvalidField {
            field: "oe_header.version",
            detail: "must be 1",
        });
    }
    let report_type = r.u32_le("oe_header.type")?;
    if report_type != 2 {
        return Err(ParseError::InvalidField {
            field: "oe_header.type",
            detail: "must be 2 (SGX remote report)",
        });
    }
    let size = r.u64_le("oe_header.size")?;
    let quote_bytes = r.rest();
    if u64::try_from(quote_bytes.len()).ok() != Some(size) {
        return Err(ParseError::InconsistentLength(
            "OpenEnclave header size differs from the quote length",
        ));
    }
    let quote = parse_quote(quote_bytes)?;
    Ok(OpenEnclaveReport { quote_bytes, quote })
}
