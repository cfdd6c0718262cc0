//! The SEV-SNP attestation report (AMD SEV-SNP ABI specification, table
//! "ATTESTATION_REPORT Structure"): a fixed 1184-byte little-endian
//! structure, versions 2, 3 and 5.
//!
//! Parsing is structural only: every field of every version is read into
//! [`SnpReport`], reserved regions included, so that the verifier can judge
//! them (version, signature algorithm, reserved bytes, policy bits) with
//! error codes of their own. The parser never panics, never indexes and
//! allocates nothing: all fields borrow from the input.

use aver_codec::{ParseError, Reader};

/// Size of every attestation report version.
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `0x000..0x2A0`.
pub const SIGNED_LEN: usize = 0x2A0;
/// ECDSA P-384 with SHA-384, the one signature algorithm of SNP reports.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Guest policy bit 16: SMT allowed.
pub const POLICY_SMT: u64 = 1 << 16;
/// Guest policy bit 17: reserved, must be one.
pub const POLICY_RESERVED_ONE: u64 = 1 << 17;
/// Guest policy bit 18: migration agent allowed.
pub const POLICY_MIGRATE_MA: u64 = 1 << 18;
/// Guest policy bit 19: debugging allowed.
pub const POLICY_DEBUG: u64 = 1 << 19;
/// Guest policy bits 63:26 are reserved and must be zero (ABI 1.58).
pub const POLICY_RESERVED_MBZ: u64 = !((1 << 26) - 1);

/// A TCB_VERSION: eight bytes whose layout depends on the processor
/// generation (see [`TcbVersion::parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcbVersion(pub [u8; 8]);

/// The security version numbers of a TCB_VERSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TcbParts {
    /// Firmware-loader SVN (Turin and later only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl TcbVersion {
    /// The SVNs. Milan and Genoa: `[bootloader, tee, 0, 0, 0, 0, snp,
    /// microcode]`; Turin: `[fmc, bootloader, tee, snp, 0, 0, 0, microcode]`.
    pub fn parts(&self, turin: bool) -> TcbParts {
        let [b0, b1, b2, b3, _, _, b6, b7] = self.0;
        if turin {
            TcbParts {
                fmc: Some(b0),
                bootloader: b1,
                tee: b2,
                snp: b3,
                microcode: b7,
            }
        } else {
            TcbParts {
                fmc: None,
                bootloader: b0,
                tee: b1,
                snp: b6,
                microcode: b7,
            }
        }
    }

    /// The bytes reserved in this generation's layout (must be zero).
    pub fn reserved_bytes(&self, turin: bool) -> [u8; 4] {
        let [_, _, b2, b3, b4, b5, b6, _] = self.0;
        if turin {
            [b4, b5, b6, 0]
        } else {
            [b2, b3, b4, b5]
        }
    }

    /// Little-endian u64, as AMD's tools print it.
    pub fn as_u64(&self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

/// Which key signed the report (`SIGNING_KEY`, bits 4:2 at 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SigningKey {
    /// The chip's versioned key (VCEK).
    Vcek,
    /// A loaded versioned key (VLEK) of a cloud provider.
    Vlek,
    /// No key: the report is unsigned.
    None,
    /// A reserved selector value.
    Reserved(u8),
}

/// A parsed attestation report. Fields borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpReport<'a> {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: &'a [u8; 16],
    pub image_id: &'a [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: TcbVersion,
    pub platform_info: u64,
    /// 0x48: AUTHOR_KEY_EN (bit 0), MASK_CHIP_KEY (bit 1), SIGNING_KEY
    /// (bits 4:2); bits 31:5 reserved.
    pub key_info: u32,
    /// 0x4C, reserved.
    pub reserved_4c: u32,
    pub report_data: &'a [u8; 64],
    pub measurement: &'a [u8; 48],
    pub host_data: &'a [u8; 32],
    pub id_key_digest: &'a [u8; 48],
    pub author_key_digest: &'a [u8; 48],
    pub report_id: &'a [u8; 32],
    pub report_id_ma: &'a [u8; 32],
    pub reported_tcb: TcbVersion,
    /// 0x188..0x18B: CPUID family, model, stepping (v3 and later; reserved
    /// in v2).
    pub cpuid: &'a [u8; 3],
    /// 0x18B..0x1A0, reserved.
    pub reserved_18b: &'a [u8; 21],
    pub chip_id: &'a [u8; 64],
    pub committed_tcb: TcbVersion,
    /// CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR, reserved.
    pub current_version: &'a [u8; 4],
    /// COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR, reserved.
    pub committed_version: &'a [u8; 4],
    pub launch_tcb: TcbVersion,
    /// 0x1F8..0x208: LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR in v5;
    /// reserved before.
    pub mit_vectors: &'a [u8; 16],
    /// 0x208..0x2A0, reserved.
    pub reserved_208: &'a [u8; 152],
    /// R, little-endian, zero-extended to 72 bytes.
    pub signature_r: &'a [u8; 72],
    /// S, little-endian, zero-extended to 72 bytes.
    pub signature_s: &'a [u8; 72],
    /// The rest of the 512-byte signature field, reserved.
    pub signature_reserved: &'a [u8; 368],
    /// Bytes 0x000..0x2A0, what the signature covers.
    pub signed: &'a [u8],
}

impl SnpReport<'_> {
    /// Whether the guest policy allows debugging (bit 19).
    pub fn is_debuggable(&self) -> bool {
        self.policy & POLICY_DEBUG != 0
    }

    pub fn smt_allowed(&self) -> bool {
        self.policy & POLICY_SMT != 0
    }

    pub fn migration_allowed(&self) -> bool {
        self.policy & POLICY_MIGRATE_MA != 0
    }

    pub fn signing_key(&self) -> SigningKey {
        match (self.key_info >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            // The mask leaves three bits: the value fits a u8.
            other => SigningKey::Reserved(u8::try_from(other).unwrap_or(u8::MAX)),
        }
    }

    /// CPUID family (0x19 Milan/Genoa, 0x1A Turin), for v3 and later.
    pub fn cpuid_family(&self) -> Option<u8> {
        (self.version >= 3).then_some(self.cpuid[0])
    }

    /// (launch, current) mitigation vectors, for v5 and later.
    pub fn mitigation_vectors(&self) -> Option<(u64, u64)> {
        if self.version < 5 {
            return None;
        }
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
        ] = *self.mit_vectors;
        Some((
            u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        ))
    }
}

fn tcb(r: &mut Reader<'_>, field: &'static str) -> Result<TcbVersion, ParseError> {
    Ok(TcbVersion(*r.array::<8>(field)?))
}

/// Parses an attestation report: exactly [`REPORT_LEN`] bytes. What the
/// fields mean (supported version, algorithm, reserved bytes) is judged by
/// the verifier.
pub fn parse_report(bytes: &[u8]) -> Result<SnpReport<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let signed = r.bytes(SIGNED_LEN, "report")?;
    let mut r = Reader::new(bytes);
    let report = SnpReport {
        version: r.u32_le("version")?,
        guest_svn: r.u32_le("guest_svn")?,
        policy: r.u64_le("policy")?,
        family_id: r.array("family_id")?,
        image_id: r.array("image_id")?,
        vmpl: r.u32_le("vmpl")?,
        signature_algo: r.u32_le("signature_algo")?,
        current_tcb: tcb(&mut r, "current_tcb")?,
        platform_info: r.u64_le("platform_info")?,
        key_info: r.u32_le("key_info")?,
        reserved_4c: r.u32_le("reserved (0x4C)")?,
        report_data: r.array("report_data")?,
        measurement: r.array("measurement")?,
        host_data: r.array("host_data")?,
        id_key_digest: r.array("id_key_digest")?,
        author_key_digest: r.array("author_key_digest")?,
        report_id: r.array("report_id")?,
        report_id_ma: r.array("report_id_ma")?,
        reported_tcb: tcb(&mut r, "reported_tcb")?,
        cpuid: r.array("cpuid")?,
        reserved_18b: r.array("reserved (0x18B)")?,
        chip_id: r.array("chip_id")?,
        committed_tcb: tcb(&mut r, "committed_tcb")?,
        current_version: r.array("current_version")?,
        committed_version: r.array("committed_version")?,
        launch_tcb: tcb(&mut r, "launch_tcb")?,
        mit_vectors: r.array("mit_vectors")?,
        reserved_208: r.array("reserved (0x208)")?,
        signature_r: r.array("signature.r")?,
        signature_s: r.array("signature.s")?,
        signature_reserved: r.array("signature.reserved")?,
        signed,
    };
    r.finish("report")?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets() {
        let mut bytes = vec![0u8; REPORT_LEN];
        bytes[0] = 2;
        bytes[0x50] = 0xAA; // report_data
        bytes[0x90] = 0xBB; // measurement
        bytes[0xC0] = 0xCC; // host_data
        bytes[0x180] = 3; // reported_tcb bootloader
        bytes[0x1A0] = 0xDD; // chip_id
        bytes[0x2A0] = 0xEE; // r
        bytes[0x2E8] = 0xFF; // s
        let report = parse_report(&bytes).unwrap();
        assert_eq!(report.report_data[0], 0xAA);
        assert_eq!(report.measurement[0], 0xBB);
        assert_eq!(report.host_data[0], 0xCC);
        assert_eq!(report.reported_tcb.parts(false).bootloader, 3);
        assert_eq!(report.chip_id[0], 0xDD);
        assert_eq!(report.signature_r[0], 0xEE);
        assert_eq!(report.signature_s[0], 0xFF);
        assert_eq!(report.signed.len(), SIGNED_LEN);
    }

    #[test]
    fn every_length_but_the_right_one_is_refused() {
        let bytes = vec![0u8; REPORT_LEN + 1];
        for len in 0..=bytes.len() {
            let result = parse_report(&bytes[..len]);
            assert_eq!(result.is_ok(), len == REPORT_LEN, "length {len}");
        }
    }
}
