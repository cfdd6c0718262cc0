//! Intel DCAP ECDSA quotes: the wire format shared by SGX and TDX.
//!
//! A quote is a header, a body, and signature data:
//!
//! ```text
//! offset  size  field
//! 0       48    header: version u16, attestation key type u16, TEE type u32
//!               (reserved, 0 = SGX, in version 3), QE SVN u16, PCE SVN u16,
//!               QE vendor ID [16], user data [20]
//! 48      384   body: the SGX enclave's report (version 3)
//! 432     4     signature data length (u32 LE)
//! 436     n     signature data (version 3):
//!                 64   ECDSA-P256 signature (r || s) over header || body
//!                 64   attestation public key (x || y)
//!                 384  QE report body
//!                 64   QE report signature (r || s), by the PCK key
//!                 2+a  QE authentication data (u16 LE size, bytes)
//!                 2+4+c certification data (u16 type, u32 size, bytes)
//! ```
//!
//! All integers are little-endian. Version 3 with attestation key type 2
//! (ECDSA-256-with-P-256) and certification data type 5 (PEM PCK chain) is
//! what every SGX DCAP quoting enclave produces. Versions 4 and 5 (SGX, or
//! TDX with TEE type 0x81 and a TD 1.0 / TD 1.5 body, [`super::td_report`])
//! carry the same QE certification wrapped in certification data type 6;
//! version 5 puts a body descriptor (type u16, size u32) after the header,
//! and the signed region is header, descriptor and body.
//!
//! ## How versions 4 and 5 and TDX slot in
//! The parsed [`Quote`] separates what every version has: the [`QuoteHeader`]
//! (with [`TeeType`]), the [`QuoteBody`] (an enum: today the SGX report;
//! TD 1.0 and TD 1.5 reports join it), the signed region, the quote
//! signature and attestation key, and the [`QeCertification`] — the QE
//! report, its signature, the QE authentication data and the PCK chain. In
//! version 3 the QE certification is inline; in versions 4 and 5 it is the
//! certification data of type 6 that wraps the same fields, and version 5
//! adds a body descriptor (type, size) after the header. Each is one more
//! arm in [`parse_quote`]; verification ([`super::verify`]) only sees the
//! fields above and does not change.

use aver_codec::{ParseError, Reader};

use super::report::{REPORT_BODY_LEN, ReportBody, parse_report_body};
use super::td_report::{TD10_BODY_LEN, TD15_BODY_LEN, TdReportBody, parse_td_report};

/// Size of the quote header.
pub const HEADER_LEN: usize = 48;
/// Bytes covered by the quote signature in a version-3 SGX quote.
pub const SGX_SIGNED_LEN: usize = HEADER_LEN + REPORT_BODY_LEN;
/// Largest certification data accepted. Real PCK chains are about 4 KiB;
/// this bound keeps a hostile length field from describing a huge region.
pub const MAX_CERTIFICATION_DATA_LEN: usize = 64 * 1024;
/// Certification data type 5: the PEM PCK leaf, intermediate and root.
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Certification data type 6 (quote versions 4 and 5): the QE report
/// certification data, wrapping the QE report, its signature, the QE
/// authentication data and a type-5 PCK chain.
pub const CERT_TYPE_QE_REPORT: u16 = 6;

/// The attestation key algorithm named in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationKeyType {
    /// Type 2: ECDSA-256-with-P-256.
    EcdsaP256,
}

/// The TEE a quote is from (header bytes 4..8; reserved and zero in v3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TeeType {
    /// 0x00000000: an SGX enclave.
    Sgx,
    /// 0x00000081: a TDX trust domain.
    Tdx,
}

impl TeeType {
    /// The wire value.
    pub fn value(self) -> u32 {
        match self {
            TeeType::Sgx => 0,
            TeeType::Tdx => 0x81,
        }
    }
}

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteHeader<'a> {
    pub version: u16,
    pub attestation_key_type: AttestationKeyType,
    pub tee_type: TeeType,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub qe_vendor_id: &'a [u8; 16],
    pub user_data: &'a [u8; 20],
}

/// What the quote attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteBody<'a> {
    /// An SGX enclave's report.
    Sgx(ReportBody<'a>),
    /// A TDX trust domain's report (TD 1.0 or, with its extra fields, 1.5).
    Td(TdReportBody<'a>),
}

/// How the attestation key is certified: the quoting enclave's report,
/// signed by the PCK key, binding the attestation key; and the PCK chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeCertification<'a> {
    /// QE report body bytes exactly as signed by the PCK key.
    pub qe_report_raw: &'a [u8; REPORT_BODY_LEN],
    pub qe_report: ReportBody<'a>,
    /// ECDSA signature r || s over `qe_report_raw`, by the PCK key.
    pub qe_report_signature: &'a [u8; 64],
    pub qe_authentication_data: &'a [u8],
    /// The certification data type ([`CERT_TYPE_PCK_CHAIN`]).
    pub pck_data_type: u16,
    /// The PEM PCK chain, exactly as carried (checked byte for byte).
    pub pck_chain_pem: &'a [u8],
}

/// A parsed DCAP quote. Every field borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote<'a> {
    pub header: QuoteHeader<'a>,
    pub body: QuoteBody<'a>,
    /// The bytes the attestation key signed (header and body).
    pub signed_region: &'a [u8],
    /// ECDSA signature r || s (32 bytes each, big-endian) over `signed_region`.
    pub signature: &'a [u8; 64],
    /// Attestation public key x || y (32 bytes each, big-endian).
    pub attestation_key: &'a [u8; 64],
    pub qe: QeCertification<'a>,
}

impl<'a> Quote<'a> {
    /// The SGX enclave report, if this is an SGX quote.
    pub fn sgx_report(&self) -> Option<&ReportBody<'a>> {
        match &self.body {
            QuoteBody::Sgx(r) => Some(r),
            QuoteBody::Td(_) => None,
        }
    }

    /// The TD report, if this is a TDX quote.
    pub fn td_report(&self) -> Option<&TdReportBody<'a>> {
        match &self.body {
            QuoteBody::Td(r) => Some(r),
            QuoteBody::Sgx(_) => None,
        }
    }
}

fn read_header<'a>(r: &mut Reader<'a>) -> Result<QuoteHeader<'a>, ParseError> {
    let version = r.u16_le("header.version")?;
    if !(3..=5).contains(&version) {
        return Err(ParseError::invalid(
            "header.version",
            format!("unsupported quote version {version} (supported: 3, 4, 5)"),
        ));
    }
    let key_type = r.u16_le("header.attestation_key_type")?;
    let attestation_key_type = match key_type {
        2 => AttestationKeyType::EcdsaP256,
        other => {
            return Err(ParseError::invalid(
                "header.attestation_key_type",
                format!(
                    "unsupported attestation key type {other} (supported: 2 = ECDSA-256-with-P-256)"
                ),
            ));
        }
    };
    let tee = r.u32_le("header.tee_type")?;
    let tee_type = match (version, tee) {
        (_, 0) => TeeType::Sgx,
        (4 | 5, 0x81) => TeeType::Tdx,
        (_, other) => {
            return Err(ParseError::invalid(
                "header.tee_type",
                format!(
                    "TEE type 0x{other:08x} in a version {version} quote (version 3 quotes are SGX, 0; versions 4 and 5 SGX or TDX, 0x81)"
                ),
            ));
        }
    };
    let qe_svn = r.u16_le("header.qe_svn")?;
    let pce_svn = r.u16_le("header.pce_svn")?;
    let qe_vendor_id = r.array("header.qe_vendor_id")?;
    let user_data = r.array("header.user_data")?;
    Ok(QuoteHeader {
        version,
        attestation_key_type,
        tee_type,
        qe_svn,
        pce_svn,
        qe_vendor_id,
        user_data,
    })
}

/// The QE certification of a version-4/5 quote: certification data of
/// type 6 whose content is the version-3 layout, read as a sub-region that
/// must be consumed exactly.
fn read_qe_certification_v4<'a>(s: &mut Reader<'a>) -> Result<QeCertification<'a>, ParseError> {
    let data_type = s.u16_le("signature_data.certification_data_type")?;
    if data_type != CERT_TYPE_QE_REPORT {
        return Err(ParseError::invalid(
            "signature_data.certification_data_type",
            format!(
                "certification data type {data_type} in a version 4/5 quote (supported: 6 = QE report certification data)"
            ),
        ));
    }
    let len = s.u32_le("signature_data.certification_data_size")? as usize;
    if len > MAX_CERTIFICATION_DATA_LEN + REPORT_BODY_LEN + 1024 {
        return Err(ParseError::TooLarge {
            field: "signature_data.certification_data_size",
            value: len as u64,
            cap: (MAX_CERTIFICATION_DATA_LEN + REPORT_BODY_LEN + 1024) as u64,
        });
    }
    let mut inner = s.sub(len, "signature_data.qe_report_certification_data")?;
    let qe = read_qe_certification(&mut inner)?;
    inner.finish("signature_data.qe_report_certification_data")?;
    Ok(qe)
}

/// The QE certification as a version-3 quote carries it, inline.
fn read_qe_certification<'a>(s: &mut Reader<'a>) -> Result<QeCertification<'a>, ParseError> {
    let qe_report_raw = s.array::<REPORT_BODY_LEN>("signature_data.qe_report")?;
    let qe_report = parse_report_body(qe_report_raw)?;
    let qe_report_signature = s.array("signature_data.qe_report_signature")?;
    let auth_len = usize::from(s.u16_le("signature_data.qe_authentication_data_size")?);
    let qe_authentication_data = s.bytes(auth_len, "signature_data.qe_authentication_data")?;
    let pck_data_type = s.u16_le("signature_data.certification_data_type")?;
    let cert_len = s.u32_le("signature_data.certification_data_size")? as usize;
    if cert_len > MAX_CERTIFICATION_DATA_LEN {
        return Err(ParseError::TooLarge {
            field: "signature_data.certification_data_size",
            value: cert_len as u64,
            cap: MAX_CERTIFICATION_DATA_LEN as u64,
        });
    }
    let pck_chain_pem = s.bytes(cert_len, "signature_data.certification_data")?;
    if pck_data_type != CERT_TYPE_PCK_CHAIN {
        return Err(ParseError::invalid(
            "signature_data.certification_data_type",
            format!(
                "unsupported certification data type {pck_data_type} (supported: 5 = PCK certificate chain)"
            ),
        ));
    }
    Ok(QeCertification {
        qe_report_raw,
        qe_report,
        qe_report_signature,
        qe_authentication_data,
        pck_data_type,
        pck_chain_pem,
    })
}

/// The body: in versions 3 and 4 its kind follows from the TEE type; in
/// version 5 a descriptor (type u16: 1 SGX, 2 TD 1.0, 3 TD 1.5; size u32)
/// precedes it and must agree with the TEE type and the size.
fn read_body<'a>(
    r: &mut Reader<'a>,
    header: &QuoteHeader<'a>,
) -> Result<QuoteBody<'a>, ParseError> {
    let (kind, len) = if header.version == 5 {
        let kind = r.u16_le("body_descriptor.type")?;
        let len = r.u32_le("body_descriptor.size")? as usize;
        (kind, len)
    } else {
        match header.tee_type {
            TeeType::Sgx => (1, REPORT_BODY_LEN),
            TeeType::Tdx => (2, TD10_BODY_LEN),
        }
    };
    let expected = match (header.tee_type, kind) {
        (TeeType::Sgx, 1) => REPORT_BODY_LEN,
        (TeeType::Tdx, 2) => TD10_BODY_LEN,
        (TeeType::Tdx, 3) => TD15_BODY_LEN,
        (tee, other) => {
            return Err(ParseError::invalid(
                "body_descriptor.type",
                format!("body type {other} in a {tee:?} quote"),
            ));
        }
    };
    if len != expected {
        return Err(ParseError::invalid(
            "body_descriptor.size",
            format!("body type {kind} is {expected} bytes, the descriptor says {len}"),
        ));
    }
    let body = r.bytes(len, "body")?;
    Ok(match kind {
        1 => {
            let arr: &[u8; REPORT_BODY_LEN] = body
                .try_into()
                .map_err(|_| ParseError::invalid("body", "wrong size"))?;
            QuoteBody::Sgx(parse_report_body(arr)?)
        }
        _ => QuoteBody::Td(parse_td_report(body, kind == 3)?),
    })
}

/// Parses a DCAP quote (versions 3, 4 and 5; SGX or TDX; ECDSA-P256; PCK
/// chain).
///
/// Bytes after the signature data are accepted only when they are all
/// zero: some quote providers hand out fixed-size, zero-padded buffers (the
/// zeros are covered by `quotehash`, which hashes the evidence as
/// submitted). Anything else after the quote is rejected, so no bytes can
/// ride along unsigned and unnoticed.
pub fn parse_quote(bytes: &[u8]) -> Result<Quote<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let header = read_header(&mut r)?;
    let body = read_body(&mut r, &header)?;
    let signed_region = bytes.get(..r.offset()).ok_or(ParseError::Truncated {
        field: "header and body",
        offset: 0,
        needed: SGX_SIGNED_LEN,
        available: bytes.len(),
    })?;

    let sig_len = r.u32_le("signature_data_len")? as usize;
    let mut s = r.sub(sig_len, "signature_data")?;
    let padding = r.rest();
    let non_zero = padding.iter().filter(|b| **b != 0).count();
    if non_zero != 0 {
        return Err(ParseError::invalid(
            "quote",
            format!("{non_zero} non-zero bytes after the end of the signature data"),
        ));
    }
    let signature = s.array("signature_data.quote_signature")?;
    let attestation_key = s.array("signature_data.attestation_key")?;
    let qe = if header.version == 3 {
        read_qe_certification(&mut s)?
    } else {
        read_qe_certification_v4(&mut s)?
    };
    s.finish("signature_data")?;
    Ok(Quote {
        header,
        body,
        signed_region,
        signature,
        attestation_key,
        qe,
    })
}
