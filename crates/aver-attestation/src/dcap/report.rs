//! The SGX report body (`sgx_report_body_t`), 384 bytes: the enclave's
//! identity in an SGX quote, and the quoting enclave's own report.

use aver_codec::{ParseError, Reader};

/// Size of an SGX report body.
pub const REPORT_BODY_LEN: usize = 384;

/// SGX ATTRIBUTES.FLAGS bit 1: the enclave was launched in debug mode.
pub const ATTRIBUTE_DEBUG: u64 = 1 << 1;

/// An SGX report body, borrowing the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBody<'a> {
    pub cpu_svn: &'a [u8; 16],
    pub misc_select: u32,
    pub isv_ext_prod_id: &'a [u8; 16],
    /// SGX ATTRIBUTES: flags (u64 LE) then XFRM (u64 LE).
    pub attributes: &'a [u8; 16],
    pub mr_enclave: &'a [u8; 32],
    pub mr_signer: &'a [u8; 32],
    pub config_id: &'a [u8; 64],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: &'a [u8; 16],
    pub report_data: &'a [u8; 64],
}

impl ReportBody<'_> {
    /// ATTRIBUTES.FLAGS as an integer.
    pub fn attribute_flags(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = *self.attributes;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }

    /// Whether the enclave is debuggable (its memory can be read by the host).
    pub fn is_debuggable(&self) -> bool {
        self.attribute_flags() & ATTRIBUTE_DEBUG != 0
    }
}

/// Parses a report body from exactly [`REPORT_BODY_LEN`] bytes.
pub fn parse_report_body(bytes: &[u8; REPORT_BODY_LEN]) -> Result<ReportBody<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let cpu_svn = r.array("report.cpu_svn")?;
    let misc_select = r.u32_le("report.misc_select")?;
    r.skip(12, "report.reserved1")?;
    let isv_ext_prod_id = r.array("report.isv_ext_prod_id")?;
    let attributes = r.array("report.attributes")?;
    let mr_enclave = r.array("report.mr_enclave")?;
    r.skip(32, "report.reserved2")?;
    let mr_signer = r.array("report.mr_signer")?;
    r.skip(32, "report.reserved3")?;
    let config_id = r.array("report.config_id")?;
    let isv_prod_id = r.u16_le("report.isv_prod_id")?;
    let isv_svn = r.u16_le("report.isv_svn")?;
    let config_svn = r.u16_le("report.config_svn")?;
    r.skip(42, "report.reserved4")?;
    let isv_family_id = r.array("report.isv_family_id")?;
    let report_data = r.array("report.report_data")?;
    r.finish("report")?;
    Ok(ReportBody {
        cpu_svn,
        misc_select,
        isv_ext_prod_id,
        attributes,
        mr_enclave,
        mr_signer,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        isv_family_id,
        report_data,
    })
}
