//! The HCL report of Azure confidential VMs: what the paravisor (HCL) reads
//! from the vTPM's NV index 0x01400001 and what binds the vTPM to the
//! hardware.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | signature `"HCLA"` |
//! | 4 | 4 | version (1; 2 on TDX hosts) |
//! | 8 | 4 | report size |
//! | 12 | 4 | request type (2: key release/attestation) |
//! | 16 | 4 | status |
//! | 20 | 12 | reserved |
//! | 32 | 1184 | hardware report: an SEV-SNP attestation report, or a TDREPORT (1024 bytes, zero-padded) |
//! | 1216 | 4 | IGVM request data size (20 + variable data size) |
//! | 1220 | 4 | IGVM request version (1) |
//! | 1224 | 4 | report type (2 SNP, 4 TDX) |
//! | 1228 | 4 | report-data hash type (1 SHA-256, 2 SHA-384, 3 SHA-512) |
//! | 1232 | 4 | variable data size |
//! | 1236 | n | variable data: the HCL runtime JSON (`keys` with `HCLAkPub` and `HCLEkPub`, `vm-configuration`, `user-data`) |
//!
//! The NV index is larger than the report; what follows the variable data
//! is padding and is ignored (its bytes are covered by nothing).
//!
//! Parsing is structural only and borrows from the input: no allocation,
//! no indexing, no panic. The binding checks (hash of the runtime JSON in
//! the hardware report's REPORT_DATA) are the verifier's.

use aver_codec::{ParseError, Reader};

/// `"HCLA"` read as a little-endian u32.
pub const HCL_SIGNATURE: [u8; 4] = *b"HCLA";
/// Size of the hardware report region (an SNP report is exactly this).
pub const HW_REPORT_LEN: usize = 1184;
/// Size of a TDREPORT at the start of the hardware report region.
pub const TD_REPORT_LEN: usize = 1024;
/// Size of the IGVM request-data header before the variable data.
pub const IGVM_HEADER_LEN: u32 = 20;
/// Largest runtime JSON accepted: real ones are about 1–2 KiB, and the NV
/// index that holds the report is a few KiB.
pub const MAX_VARIABLE_DATA: usize = 16 * 1024;

/// Which hardware produced the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HardwareKind {
    /// AMD SEV-SNP (IGVM report type 2).
    Snp,
    /// Intel TDX (IGVM report type 4).
    Tdx,
}

/// The hash named by the IGVM request's hash type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HashType {
    Sha256,
    Sha384,
    Sha512,
}

/// A parsed HCL report; every slice borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport<'a> {
    pub version: u32,
    pub report_size: u32,
    pub request_type: u32,
    pub status: u32,
    pub kind: HardwareKind,
    /// The hardware report region: 1184 bytes (for TDX, the TDREPORT and
    /// its zero padding).
    pub hw_report: &'a [u8],
    pub igvm_version: u32,
    pub hash_type: HashType,
    /// The runtime JSON exactly as hashed into REPORT_DATA.
    pub variable_data: &'a [u8],
}

impl HclReport<'_> {
    /// The hardware report proper: the whole region for SNP, the first
    /// 1024 bytes for TDX.
    pub fn hardware_report(&self) -> &[u8] {
        match self.kind {
            HardwareKind::Snp => self.hw_report,
            HardwareKind::Tdx => self
                .hw_report
                .get(..TD_REPORT_LEN)
                .unwrap_or(self.hw_report),
        }
    }
}

/// Parses an HCL report (see the module docs). Refuses a wrong signature,
/// an unknown version, report type or hash type, an IGVM data size that
/// disagrees with the variable data size, and variable data larger than
/// [`MAX_VARIABLE_DATA`] or past the end of the input.
pub fn parse_hcl_report(bytes: &[u8]) -> Result<HclReport<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let signature: &[u8; 4] = r.array("HCL signature")?;
    if *signature != HCL_SIGNATURE {
        return Err(ParseError::invalid(
            "HCL signature",
            format!("{} is not \"HCLA\"", hex::encode(signature)),
        ));
    }
    let version = r.u32_le("HCL version")?;
    if !matches!(version, 1 | 2) {
        return Err(ParseError::invalid(
            "HCL version",
            format!("{version} is not supported (1 and 2 are)"),
        ));
    }
    let report_size = r.u32_le("HCL report size")?;
    let request_type = r.u32_le("HCL request type")?;
    let status = r.u32_le("HCL status")?;
    r.skip(12, "HCL reserved")?;
    let hw_report = r.bytes(HW_REPORT_LEN, "hardware report")?;
    let data_size = r.u32_le("IGVM data size")?;
    let igvm_version = r.u32_le("IGVM version")?;
    if igvm_version != 1 {
        return Err(ParseError::invalid(
            "IGVM version",
            format!("{igvm_version} is not supported (1 is)"),
        ));
    }
    let kind = match r.u32_le("IGVM report type")? {
        2 => HardwareKind::Snp,
        4 => HardwareKind::Tdx,
        other => {
            return Err(ParseError::invalid(
                "IGVM report type",
                format!("{other} is neither 2 (SEV-SNP) nor 4 (TDX)"),
            ));
        }
    };
    let hash_type = match r.u32_le("IGVM hash type")? {
        1 => HashType::Sha256,
        2 => HashType::Sha384,
        3 => HashType::Sha512,
        other => {
            return Err(ParseError::invalid(
                "IGVM hash type",
                format!("{other} is not 1, 2 or 3 (SHA-256, -384, -512)"),
            ));
        }
    };
    let var_size = r.u32_le("IGVM variable data size")?;
    if data_size.checked_sub(IGVM_HEADER_LEN) != Some(var_size) {
        return Err(ParseError::invalid(
            "IGVM data size",
            format!("{data_size} is not 20 + the variable data size {var_size}"),
        ));
    }
    let var_len = usize::try_from(var_size).unwrap_or(usize::MAX);
    if var_len > MAX_VARIABLE_DATA {
        return Err(ParseError::invalid(
            "IGVM variable data size",
            format!("{var_size} bytes, more than {MAX_VARIABLE_DATA}"),
        ));
    }
    let variable_data = r.bytes(var_len, "IGVM variable data")?;
    // What follows is the NV index's padding.
    Ok(HclReport {
        version,
        report_size,
        request_type,
        status,
        kind,
        hw_report,
        igvm_version,
        hash_type,
        variable_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(var: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"HCLA");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(&[0u8; HW_REPORT_LEN]);
        b.extend_from_slice(&(20 + var.len() as u32).to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&(var.len() as u32).to_le_bytes());
        b.extend_from_slice(var);
        b
    }

    #[test]
    fn parses_and_every_truncation_fails_cleanly() {
        let b = sample(b"{}");
        let r = parse_hcl_report(&b).unwrap();
        assert_eq!(r.variable_data, b"{}");
        assert_eq!(r.kind, HardwareKind::Snp);
        for n in 0..b.len() {
            assert!(parse_hcl_report(&b[..n]).is_err(), "truncated at {n}");
        }
    }

    #[test]
    fn refuses_bad_header_fields() {
        let good = sample(b"{}");
        for (offset, value) in [
            (0usize, 0u32),
            (4, 3),
            (1220, 7),
            (1224, 3),
            (1228, 9),
            (1216, 5),
        ] {
            let mut b = good.clone();
            b[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
            assert!(parse_hcl_report(&b).is_err(), "offset {offset}");
        }
        let mut huge = good.clone();
        huge[1216..1220].copy_from_slice(&(u32::MAX).to_le_bytes());
        huge[1232..1236].copy_from_slice(&(u32::MAX - 20).to_le_bytes());
        assert!(parse_hcl_report(&huge).is_err());
    }
}
