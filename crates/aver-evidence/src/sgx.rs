//! Intel SGX DCAP ECDSA quotes, version 3.
//!
//! Layout (Intel SGX ECDSA Quote Library reference, "Quote Format"):
//!
//! ```text
//! offset  size  field
//! 0       48    quote header
//! 48      384   ISV enclave report body
//! 432     4     signature data length (u32 LE)
//! 436     n     signature data:
//!                 64   ECDSA-P256 signature (r || s) over header || report body
//!                 64   attestation public key (x || y)
//!                 384  QE report body
//!                 64   QE report signature (r || s), by the PCK key
//!                 2+a  QE authentication data (u16 LE size, bytes)
//!                 2+4+c certification data (u16 type, u32 size, bytes)
//! ```
//!
//! All multi-byte integers are little-endian. Only attestation key type 2
//! (ECDSA-256-with-P-256) and certification data type 5 (PEM PCK chain) are
//! accepted: they are what every DCAP quoting enclave in the field produces.

use crate::ParseError;
use crate::reader::Reader;

/// Size of the quote header.
pub const HEADER_LEN: usize = 48;
/// Size of an SGX report body (ISV enclave or QE).
pub const REPORT_BODY_LEN: usize = 384;
/// Bytes covered by the quote signature: header and ISV report body.
pub const SIGNED_LEN: usize = HEADER_LEN + REPORT_BODY_LEN;
/// Largest certification data accepted. Real PCK chains are about 4 KiB;
/// this bound keeps a hostile length field from describing a huge region.
pub const MAX_CERTIFICATION_DATA_LEN: usize = 64 * 1024;

/// The attestation key algorithm named in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationKeyType {
    EcdsaP256,
}

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteHeader<'a> {
    pub version: u16,
    pub attestation_key_type: AttestationKeyType,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub qe_vendor_id: &'a [u8; 16],
    pub user_data: &'a [u8; 20],
}

/// An SGX report body (`sgx_report_body_t`), used for both the ISV enclave
/// and the quoting enclave.
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

/// SGX ATTRIBUTES.FLAGS bit 1: the enclave was launched in debug mode.
pub const ATTRIBUTE_DEBUG: u64 = 1 << 1;

impl ReportBody<'_> {
    /// ATTRIBUTES.FLAGS as an integer.
    pub fn attribute_flags(&self) -> u64 {
        let mut flags = [0u8; 8];
        flags.copy_from_slice(&self.attributes[..8]);
        u64::from_le_bytes(flags)
    }

    /// Whether the enclave is debuggable (its memory can be read by the host).
    pub fn is_debuggable(&self) -> bool {
        self.attribute_flags() & ATTRIBUTE_DEBUG != 0
    }
}

/// Certification data carried in the quote: how the PCK key is certified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificationData<'a> {
    /// 5 = PEM-encoded PCK leaf, intermediate CA and root CA certificates.
    pub data_type: u16,
    pub data: &'a [u8],
}

/// A parsed DCAP v3 quote. Every field borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote<'a> {
    pub header: QuoteHeader<'a>,
    pub report_body: ReportBody<'a>,
    /// Header and ISV report body exactly as signed by the attestation key.
    pub signed_region: &'a [u8],
    /// ECDSA signature r || s (32 bytes each, big-endian) over `signed_region`.
    pub signature: &'a [u8; 64],
    /// Attestation public key x || y (32 bytes each, big-endian).
    pub attestation_key: &'a [u8; 64],
    /// QE report body bytes exactly as signed by the PCK key.
    pub qe_report_raw: &'a [u8; REPORT_BODY_LEN],
    pub qe_report: ReportBody<'a>,
    /// ECDSA signature r || s over `qe_report_raw`, by the PCK key.
    pub qe_report_signature: &'a [u8; 64],
    pub qe_authentication_data: &'a [u8],
    pub certification_data: CertificationData<'a>,
}

/// Parses a report body from exactly [`REPORT_BODY_LEN`] bytes.
pub fn parse_report_body(bytes: &[u8]) -> Result<ReportBody<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let body = read_report_body(&mut r)?;
    if !r.is_empty() {
        return Err(ParseError::InconsistentLength(
            "report body longer than 384 bytes",
        ));
    }
    Ok(body)
}

fn read_report_body<'a>(r: &mut Reader<'a>) -> Result<ReportBody<'a>, ParseError> {
    let cpu_svn = r.array("report.cpu_svn")?;
    let misc_select = r.u32_le("report.misc_select")?;
    r.take(12, "report.reserved1")?;
    let isv_ext_prod_id = r.array("report.isv_ext_prod_id")?;
    let attributes = r.array("report.attributes")?;
    let mr_enclave = r.array("report.mr_enclave")?;
    r.take(32, "report.reserved2")?;
    let mr_signer = r.array("report.mr_signer")?;
    r.take(32, "report.reserved3")?;
    let config_id = r.array("report.config_id")?;
    let isv_prod_id = r.u16_le("report.isv_prod_id")?;
    let isv_svn = r.u16_le("report.isv_svn")?;
    let config_svn = r.u16_le("report.config_svn")?;
    r.take(42, "report.reserved4")?;
    let isv_family_id = r.array("report.isv_family_id")?;
    let report_data = r.array("report.report_data")?;
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

fn read_header<'a>(r: &mut Reader<'a>) -> Result<QuoteHeader<'a>, ParseError> {
    let version = r.u16_le("header.version")?;
    if version != 3 {
        return Err(ParseError::UnsupportedVersion(version));
    }
    let key_type = r.u16_le("header.attestation_key_type")?;
    let attestation_key_type = match key_type {
        2 => AttestationKeyType::EcdsaP256,
        other => return Err(ParseError::UnsupportedAttestationKeyType(other)),
    };
    r.take(4, "header.reserved")?;
    let qe_svn = r.u16_le("header.qe_svn")?;
    let pce_svn = r.u16_le("header.pce_svn")?;
    let qe_vendor_id = r.array("header.qe_vendor_id")?;
    let user_data = r.array("header.user_data")?;
    Ok(QuoteHeader {
        version,
        attestation_key_type,
        qe_svn,
        pce_svn,
        qe_vendor_id,
        user_data,
    })
}

/// Parses a DCAP v3 ECDSA-P256 quote.
///
/// Trailing bytes after the signature data are accepted only when they are
/// all zero: some quote providers hand out fixed-size, zero-padded buffers.
/// Anything else after the quote is rejected, so no bytes can ride along
/// unsigned and unnoticed.
pub fn parse_quote(bytes: &[u8]) -> Result<Quote<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let header = read_header(&mut r)?;
    let report_body = read_report_body(&mut r)?;
    let signed_region = bytes.get(..SIGNED_LEN).ok_or(ParseError::Truncated {
        field: "header and report body",
        offset: 0,
        needed: SIGNED_LEN,
        available: bytes.len(),
    })?;

    let sig_len = r.u32_le("signature_data_len")? as usize;
    let sig_data = r.take(sig_len, "signature_data")?;
    let padding = r.rest();
    let non_zero = padding.iter().filter(|b| **b != 0).count();
    if non_zero != 0 {
        return Err(ParseError::TrailingData(non_zero));
    }

    let mut s = Reader::new(sig_data);
    let signature = s.array("signature_data.quote_signature")?;
    let attestation_key = s.array("signature_data.attestation_key")?;
    let qe_report_raw = s.array::<REPORT_BODY_LEN>("signature_data.qe_report")?;
    let qe_report = parse_report_body(qe_report_raw)?;
    let qe_report_signature = s.array("signature_data.qe_report_signature")?;
    let auth_len = s.u16_le("signature_data.qe_authentication_data_size")? as usize;
    let qe_authentication_data = s.take(auth_len, "signature_data.qe_authentication_data")?;
    let cert_type = s.u16_le("signature_data.certification_data_type")?;
    let cert_len = s.u32_le("signature_data.certification_data_size")? as usize;
    if cert_len > MAX_CERTIFICATION_DATA_LEN {
        return Err(ParseError::InconsistentLength(
            "certification data larger than 64 KiB",
        ));
    }
    let cert_data = s.take(cert_len, "signature_data.certification_data")?;
    if !s.is_empty() {
        return Err(ParseError::InconsistentLength(
            "signature data length exceeds its contents",
        ));
    }
    if cert_type != 5 {
        return Err(ParseError::UnsupportedCertificationDataType(cert_type));
    }

    Ok(Quote {
        header,
        report_body,
        signed_region,
        signature,
        attestation_key,
        qe_report_raw,
        qe_report,
        qe_report_signature,
        qe_authentication_data,
        certification_data: CertificationData {
            data_type: cert_type,
            data: cert_data,
        },
    })
}
