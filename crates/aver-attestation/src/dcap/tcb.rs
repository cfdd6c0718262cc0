//! The TCB verdict, as Intel's Quote Verification Library reaches it.
//!
//! With verified collateral ([`super::collateral::VerifiedCollateral`]) and
//! the PCK certificate's SGX extensions ([`super::pck_ext`]):
//!
//! 1. the TCB info is for this TEE (`SGX`), this FMSPC and this PCE-ID;
//! 2. the QE identity is for the QE (`QE`), and the QE report matches it:
//!    MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES under their masks;
//!    its ISVSVN selects the QE's level (highest first);
//! 3. the platform's level is the first one (newest first) whose sixteen
//!    SGX components and PCESVN are all at most the PCK certificate's;
//!    none matching is its own verdict ([`super::DcapError::TcbLevelNotSupported`]);
//! 4. QVL's combination: a Revoked QE makes the verdict Revoked; an
//!    OutOfDate QE turns UpToDate / SWHardeningNeeded into OutOfDate and
//!    ConfigurationNeeded / ConfigurationAndSWHardeningNeeded into
//!    OutOfDateConfigurationNeeded. Advisory IDs are the union of the
//!    platform's and the QE's (platform first), as dcap-qvl reports them.
//!
//! The verdict is data ([`TcbVerdict`]); which statuses are accepted is a
//! setting ([`TcbAcceptance`]).

use serde::Serialize;

use super::collateral::{CollateralHashes, TcbStatus, VerifiedCollateral, rfc3339};
use super::pck_ext::PckExtensions;
use super::report::ReportBody;
use super::{DcapError, TeeType};

/// Intel's QE vendor ID (`939A7233F79C4CA9940A0DB3957F0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// The outcome of TCB evaluation: what policies and the CLI read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcbVerdict {
    /// The combined status (platform and QE).
    pub status: TcbStatus,
    /// The platform's TCB level status alone.
    pub platform_status: TcbStatus,
    /// The QE identity level status.
    pub qe_status: TcbStatus,
    pub advisory_ids: Vec<String>,
    /// The lower of the TCB info's and the QE identity's numbers.
    pub tcb_evaluation_data_number: u32,
    /// `tcbDate` of the platform's matching level.
    pub tcb_date: String,
    pub qe_tcb_date: String,
    /// Uppercase hex, as Intel writes it.
    pub fmspc: String,
    pub pce_id: String,
    /// Earliest issue date and nextUpdate of the collateral used (RFC 3339).
    pub collateral_issued: String,
    pub collateral_expiry: String,
    /// The collateral items' SHA-256 (the `x-ms-sgx-collateral` claim).
    pub collateral_hashes: CollateralHashes,
}

/// Evaluates an SGX quote's TCB. `qe_vendor_id` and `qe_report` come from
/// the verified quote, `pck` from its verified PCK certificate.
pub fn evaluate_sgx(
    tee: TeeType,
    qe_vendor_id: &[u8; 16],
    qe_report: &ReportBody<'_>,
    pck: &PckExtensions,
    collateral: &VerifiedCollateral,
) -> Result<TcbVerdict, DcapError> {
    let tcb = &collateral.tcb_info;
    let qe = &collateral.qe_identity;
    if tee != TeeType::Sgx || tcb.id != "SGX" {
        return Err(DcapError::TcbInfoMismatch(format!(
            "the TCB info is for {}, the quote is {:?}",
            tcb.id, tee
        )));
    }
    if tcb.fmspc != pck.fmspc {
        return Err(DcapError::FmspcMismatch {
            quote: hex::encode_upper(pck.fmspc),
            collateral: hex::encode_upper(tcb.fmspc),
        });
    }
    if tcb.pce_id != pck.pce_id {
        return Err(DcapError::TcbInfoMismatch(format!(
            "the TCB info is for PCE-ID {}, the PCK certificate says {}",
            hex::encode_upper(tcb.pce_id),
            hex::encode_upper(pck.pce_id)
        )));
    }
    if qe_vendor_id != &INTEL_QE_VENDOR_ID {
        return Err(DcapError::QeIdentityMismatch(format!(
            "the QE vendor ID {} is not Intel's",
            hex::encode_upper(qe_vendor_id)
        )));
    }
    if qe.id != "QE" {
        return Err(DcapError::QeIdentityMismatch(format!(
            "the QE identity is for {:?}, an SGX quote needs \"QE\"",
            qe.id
        )));
    }
    let qe_level = match_qe_identity(qe_report, collateral)?;

    let Some(level) = tcb.levels.iter().find(|l| {
        l.sgx_components
            .iter()
            .zip(pck.cpu_svn_components)
            .all(|(need, have)| *need <= have)
            && l.pce_svn <= pck.pce_svn
    }) else {
        return Err(DcapError::TcbLevelNotSupported(format!(
            "the platform's TCB (CPUSVN components {}, PCESVN {}) is below every level of the TCB info for FMSPC {}",
            hex::encode(pck.cpu_svn_components),
            pck.pce_svn,
            hex::encode_upper(pck.fmspc)
        )));
    };
    let status = combine(level.status, qe_level.status);
    let mut advisory_ids = level.advisory_ids.clone();
    for a in &qe_level.advisory_ids {
        if !advisory_ids.contains(a) {
            advisory_ids.push(a.clone());
        }
    }
    Ok(TcbVerdict {
        status,
        platform_status: level.status,
        qe_status: qe_level.status,
        advisory_ids,
        tcb_evaluation_data_number: tcb
            .tcb_evaluation_data_number
            .min(qe.tcb_evaluation_data_number),
        tcb_date: level.tcb_date.clone(),
        qe_tcb_date: qe_level.tcb_date.clone(),
        fmspc: hex::encode_upper(pck.fmspc),
        pce_id: hex::encode_upper(pck.pce_id),
        collateral_issued: rfc3339(collateral.valid_from),
        collateral_expiry: rfc3339(collateral.valid_until),
        collateral_hashes: collateral.hashes.clone(),
    })
}

/// QVL's combination of the platform status with the QE's.
pub fn combine(platform: TcbStatus, qe: TcbStatus) -> TcbStatus {
    use TcbStatus as S;
    match (platform, qe) {
        (S::Revoked, _) | (_, S::Revoked) => S::Revoked,
        (S::UpToDate | S::SWHardeningNeeded, S::OutOfDate | S::OutOfDateConfigurationNeeded) => {
            S::OutOfDate
        }
        (
            S::ConfigurationNeeded | S::ConfigurationAndSWHardeningNeeded,
            S::OutOfDate | S::OutOfDateConfigurationNeeded,
        ) => S::OutOfDateConfigurationNeeded,
        (p, _) => p,
    }
}

fn match_qe_identity<'c>(
    report: &ReportBody<'_>,
    collateral: &'c VerifiedCollateral,
) -> Result<&'c super::collateral::QeTcbLevel, DcapError> {
    let qe = &collateral.qe_identity;
    if report.mr_signer != &qe.mrsigner {
        return Err(DcapError::QeIdentityMismatch(format!(
            "the QE's MRSIGNER {} is not {}",
            hex::encode_upper(report.mr_signer),
            hex::encode_upper(qe.mrsigner)
        )));
    }
    if report.isv_prod_id != qe.isv_prod_id {
        return Err(DcapError::QeIdentityMismatch(format!(
            "the QE's ISVPRODID {} is not {}",
            report.isv_prod_id, qe.isv_prod_id
        )));
    }
    // MISCSELECT is a little-endian u32 in the report; Intel writes the
    // identity's value and mask as big-endian hex.
    let mask = u32::from_be_bytes(qe.miscselect_mask);
    if report.misc_select & mask != u32::from_be_bytes(qe.miscselect) & mask {
        return Err(DcapError::QeIdentityMismatch(format!(
            "the QE's MISCSELECT {:08X} under mask {mask:08X} is not {}",
            report.misc_select,
            hex::encode_upper(qe.miscselect)
        )));
    }
    let attributes_ok = report
        .attributes
        .iter()
        .zip(qe.attributes_mask.iter().zip(qe.attributes.iter()))
        .all(|(have, (m, want))| have & m == want & m);
    if !attributes_ok {
        return Err(DcapError::QeIdentityMismatch(format!(
            "the QE's ATTRIBUTES {} under mask {} are not {}",
            hex::encode_upper(report.attributes),
            hex::encode_upper(qe.attributes_mask),
            hex::encode_upper(qe.attributes)
        )));
    }
    qe.levels
        .iter()
        .find(|l| l.isv_svn <= report.isv_svn)
        .ok_or_else(|| {
            DcapError::QeTcbNotSupported(format!(
                "the QE's ISVSVN {} is below every level of the QE identity",
                report.isv_svn
            ))
        })
}

/// Which TCB statuses a provider accepts without its policy saying more.
/// The default, UpToDate and SWHardeningNeeded, is what Intel calls a
/// platform that needs no action from its owner (SWHardeningNeeded is
/// mitigated by enclave software, which the policy judges by MRENCLAVE
/// and SVN); configuration and out-of-date statuses need the provider's
/// explicit consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbAcceptance {
    pub accepted: Vec<TcbStatus>,
}

impl Default for TcbAcceptance {
    fn default() -> Self {
        TcbAcceptance {
            accepted: vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded],
        }
    }
}

impl TcbAcceptance {
    /// Every status but Revoked (for labs and the CLI's `--accept-any-tcb`).
    pub fn all_but_revoked() -> Self {
        TcbAcceptance {
            accepted: TcbStatus::ALL
                .into_iter()
                .filter(|s| *s != TcbStatus::Revoked)
                .collect(),
        }
    }

    /// Refuses a verdict whose status is not accepted, with the status's
    /// own error code.
    pub fn check(&self, verdict: &TcbVerdict) -> Result<(), DcapError> {
        if self.accepted.contains(&verdict.status) {
            return Ok(());
        }
        Err(DcapError::TcbStatusNotAccepted {
            status: verdict.status,
            advisories: verdict.advisory_ids.join(", "),
        })
    }
}
