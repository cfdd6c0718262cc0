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
use super::td_report::TdReportBody;
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
    /// TD 1.5 only: the TD runs on an out-of-date TCB only because it was
    /// launched before a TD-preserving update of the TDX module; its
    /// TEE_TCB_SVN_2 (the module now loaded) meets the newest TCB level,
    /// so relaunching it would bring it up to date. Intel's QVL reports
    /// this as `TD_RELAUNCH_ADVISED`; Aver keeps the status (OutOfDate or
    /// OutOfDateConfigurationNeeded, which is what the running TD is)
    /// and adds this advice.
    pub td_relaunch_advised: bool,
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
    if tee != TeeType::Sgx {
        return Err(DcapError::TcbInfoMismatch(
            "evaluate_sgx was given a TDX quote".into(),
        ));
    }
    evaluate(qe_vendor_id, qe_report, None, pck, collateral)
}

/// Evaluates a quote's TCB: SGX when `td` is `None`, else TDX with the TD
/// report's TEE_TCB_SVN, MRSIGNERSEAM and SEAM attributes (the TDX
/// components, skipping the module's two when its major version is above
/// 0, and the TDX module identity `TDX_%02X` combined like the QE's).
pub fn evaluate(
    qe_vendor_id: &[u8; 16],
    qe_report: &ReportBody<'_>,
    td: Option<&TdReportBody<'_>>,
    pck: &PckExtensions,
    collateral: &VerifiedCollateral,
) -> Result<TcbVerdict, DcapError> {
    let tcb = &collateral.tcb_info;
    let qe = &collateral.qe_identity;
    let (want_tcb, want_qe) = if td.is_some() {
        ("TDX", "TD_QE")
    } else {
        ("SGX", "QE")
    };
    if tcb.id != want_tcb {
        return Err(DcapError::TcbInfoMismatch(format!(
            "the TCB info is for {}, the quote needs {want_tcb}",
            tcb.id
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
    if qe.id != want_qe {
        return Err(DcapError::QeIdentityMismatch(format!(
            "the QE identity is for {:?}, the quote needs {want_qe:?}",
            qe.id
        )));
    }
    let qe_level = match_qe_identity(qe_report, collateral)?;
    let module_level = match td {
        Some(td) => match_tdx_module(td, tcb)?,
        None => None,
    };
    // Module major version > 0: its identity covers TDX components 0 and 1.
    let tdx_skip = match td {
        Some(td) if td.tee_tcb_svn.get(1).is_some_and(|m| *m > 0) => 2,
        _ => 0,
    };

    let Some(level) = tcb.levels.iter().find(|l| {
        let tdx_ok = match (td, &l.tdx_components) {
            (None, _) => true,
            (Some(td), Some(need)) => need
                .iter()
                .zip(td.tee_tcb_svn.iter())
                .skip(tdx_skip)
                .all(|(need, have)| need <= have),
            (Some(_), None) => false,
        };
        l.sgx_components
            .iter()
            .zip(pck.cpu_svn_components)
            .all(|(need, have)| *need <= have)
            && l.pce_svn <= pck.pce_svn
            && tdx_ok
    }) else {
        let tdx = td
            .map(|td| format!(", TEE_TCB_SVN {}", hex::encode(td.tee_tcb_svn)))
            .unwrap_or_default();
        return Err(DcapError::TcbLevelNotSupported(format!(
            "the platform's TCB (CPUSVN components {}, PCESVN {}{tdx}) is below every level of the TCB info for FMSPC {}",
            hex::encode(pck.cpu_svn_components),
            pck.pce_svn,
            hex::encode_upper(pck.fmspc)
        )));
    };
    let td_relaunch_advised = td.is_some_and(|td| {
        let sgx_status = tcb
            .levels
            .iter()
            .find(|l| {
                l.sgx_components
                    .iter()
                    .zip(pck.cpu_svn_components)
                    .all(|(need, have)| *need <= have)
                    && l.pce_svn <= pck.pce_svn
            })
            .map(|l| l.status);
        relaunch_advised(
            td.tee_tcb_svn2,
            tcb,
            sgx_status,
            level.status,
            module_level.map(|m| m.status),
            qe_level.status,
        )
    });
    let mut status = combine(level.status, qe_level.status);
    let mut advisory_ids = level.advisory_ids.clone();
    let mut extra: Vec<&String> = qe_level.advisory_ids.iter().collect();
    if let Some(m) = module_level {
        status = combine(status, m.status);
        extra.extend(m.advisory_ids.iter());
    }
    for a in extra {
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
        td_relaunch_advised,
    })
}

/// Intel's TD relaunch check (QVL `checkForRelaunch`): a TD 1.5 whose TDX
/// status is out of date only because of its TDX module — the QE is not
/// out of date or revoked, the SGX part of the platform is current (up to
/// date, or needing only configuration or software hardening), the TDX
/// level is OutOfDate(ConfigurationNeeded) and the module's level is
/// OutOfDate — while the module loaded now (TEE_TCB_SVN_2) meets the newest
/// TCB level: its SVN (component 0, or the newest level of its
/// `TDX_%02X` identity for a module above major version 0) and component
/// 2. A module identity missing from the TCB info gives no advice.
fn relaunch_advised(
    tee_tcb_svn2: Option<&[u8; 16]>,
    tcb: &super::collateral::TcbInfo,
    sgx_status: Option<TcbStatus>,
    tdx_status: TcbStatus,
    module_status: Option<TcbStatus>,
    qe_status: TcbStatus,
) -> bool {
    use TcbStatus::*;
    let Some(svn2) = tee_tcb_svn2 else {
        return false;
    };
    let qe_current = !matches!(
        qe_status,
        OutOfDate | OutOfDateConfigurationNeeded | Revoked
    );
    let sgx_current = matches!(
        sgx_status,
        Some(
            UpToDate | SWHardeningNeeded | ConfigurationNeeded | ConfigurationAndSWHardeningNeeded
        )
    );
    let tdx_out = matches!(tdx_status, OutOfDate | OutOfDateConfigurationNeeded);
    if !(qe_current && sgx_current && tdx_out && module_status == Some(OutOfDate)) {
        return false;
    }
    let Some(newest) = tcb.levels.first().and_then(|l| l.tdx_components) else {
        return false;
    };
    let (minor, major, component2) = (svn2[0], svn2[1], svn2[2]);
    let module_current = if major == 0 {
        minor >= newest[0]
    } else {
        let id = format!("TDX_{major:02X}");
        tcb.tdx_module_identities
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.levels.first())
            .is_some_and(|l| u16::from(minor) >= l.isv_svn)
    };
    module_current && component2 >= newest[2]
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

/// The TDX module identity: `tdxModuleIdentities[id = TDX_%02X]` of the
/// module's major version (TEE_TCB_SVN[1]) when above 0, else `tdxModule`;
/// MRSIGNERSEAM and the masked SEAM attributes must match; the module's
/// level is the first whose ISVSVN is at most TEE_TCB_SVN[0].
fn match_tdx_module<'c>(
    td: &TdReportBody<'_>,
    tcb: &'c super::collateral::TcbInfo,
) -> Result<Option<&'c super::collateral::QeTcbLevel>, DcapError> {
    let minor = td.tee_tcb_svn.first().copied().unwrap_or(0);
    let major = td.tee_tcb_svn.get(1).copied().unwrap_or(0);
    let (module, identity) = if major > 0 {
        let id = format!("TDX_{major:02X}");
        let Some(identity) = tcb.tdx_module_identities.iter().find(|m| m.id == id) else {
            return Err(DcapError::TcbInfoMismatch(format!(
                "the TCB info has no TDX module identity {id} for the TD's module"
            )));
        };
        (&identity.module, Some(identity))
    } else {
        let Some(module) = &tcb.tdx_module else {
            return Err(DcapError::TcbInfoMismatch(
                "the TCB info has no tdxModule for the TD's module".into(),
            ));
        };
        (module, None)
    };
    if td.mr_signer_seam != &module.mrsigner {
        return Err(DcapError::TdxModuleMismatch(format!(
            "MRSIGNERSEAM {} is not {}",
            hex::encode_upper(td.mr_signer_seam),
            hex::encode_upper(module.mrsigner)
        )));
    }
    let attributes_ok = td
        .seam_attributes
        .iter()
        .zip(module.attributes_mask.iter().zip(module.attributes.iter()))
        .all(|(have, (m, want))| have & m == want & m);
    if !attributes_ok {
        return Err(DcapError::TdxModuleMismatch(format!(
            "SEAM attributes {} under mask {} are not {}",
            hex::encode_upper(td.seam_attributes),
            hex::encode_upper(module.attributes_mask),
            hex::encode_upper(module.attributes)
        )));
    }
    match identity {
        None => Ok(None),
        Some(identity) => identity
            .levels
            .iter()
            .find(|l| l.isv_svn <= u16::from(minor))
            .map(Some)
            .ok_or_else(|| {
                DcapError::TcbLevelNotSupported(format!(
                    "the TDX module's SVN {minor} is below every level of {}",
                    identity.id
                ))
            }),
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
            hint: if verdict.td_relaunch_advised {
                ". Intel advises relaunching the TD: the TDX module loaded now is up to date, the TD was launched before it was updated".into()
            } else {
                String::new()
            },
        })
    }
}

#[cfg(test)]
mod relaunch_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dcap::collateral::tcb_info::{TdxModule, TdxModuleIdentity};
    use crate::dcap::collateral::{QeTcbLevel, TcbInfo, TcbLevel};
    use TcbStatus::*;

    fn level(tdx: [u8; 16], status: TcbStatus) -> TcbLevel {
        TcbLevel {
            sgx_components: [0; 16],
            pce_svn: 0,
            tdx_components: Some(tdx),
            tcb_date: "2025-01-01T00:00:00Z".into(),
            tcb_date_unix: 0,
            status,
            advisory_ids: vec![],
        }
    }

    /// The newest level needs TDX components 0 and 2 at 5; module TDX_03's
    /// newest level needs ISVSVN 5.
    fn tcb_info() -> TcbInfo {
        let mut newest = [0u8; 16];
        newest[0] = 5;
        newest[2] = 5;
        let module_level = |svn, status| QeTcbLevel {
            isv_svn: svn,
            tcb_date: String::new(),
            status,
            advisory_ids: vec![],
        };
        TcbInfo {
            id: "TDX".into(),
            version: 3,
            issue_date: 0,
            next_update: 0,
            fmspc: [0; 6],
            pce_id: [0; 2],
            tcb_evaluation_data_number: 17,
            levels: vec![level(newest, UpToDate), level([0; 16], OutOfDate)],
            tdx_module: None,
            tdx_module_identities: vec![TdxModuleIdentity {
                id: "TDX_03".into(),
                module: TdxModule {
                    mrsigner: [0; 48],
                    attributes: [0; 8],
                    attributes_mask: [0; 8],
                },
                levels: vec![module_level(5, UpToDate), module_level(2, OutOfDate)],
            }],
        }
    }

    fn svn2(minor: u8, major: u8, c2: u8) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[0] = minor;
        s[1] = major;
        s[2] = c2;
        s
    }

    #[test]
    fn relaunch_is_advised_only_as_intels_check_says() {
        let t = tcb_info();
        let advised = |s2: Option<&[u8; 16]>, sgx, tdx, module, qe| {
            relaunch_advised(s2, &t, sgx, tdx, module, qe)
        };
        let now = svn2(5, 3, 5);
        // The module loaded now meets the newest level: relaunch.
        assert!(advised(
            Some(&now),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        assert!(advised(
            Some(&now),
            Some(ConfigurationNeeded),
            OutOfDateConfigurationNeeded,
            Some(OutOfDate),
            UpToDate
        ));
        // Module major version 0: component 0 is the module's SVN.
        assert!(advised(
            Some(&svn2(5, 0, 5)),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        assert!(!advised(
            Some(&svn2(4, 0, 5)),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        // Not TD 1.5 (no TEE_TCB_SVN_2): no advice.
        assert!(!advised(
            None,
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        // The module now loaded is still behind, or component 2 is.
        assert!(!advised(
            Some(&svn2(4, 3, 5)),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        assert!(!advised(
            Some(&svn2(5, 3, 4)),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        // An unknown module identity: no advice.
        assert!(!advised(
            Some(&svn2(5, 4, 5)),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        // Out of date for another reason than the module: no advice.
        assert!(!advised(
            Some(&now),
            Some(OutOfDate),
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        assert!(!advised(
            Some(&now),
            Some(UpToDate),
            OutOfDate,
            Some(UpToDate),
            UpToDate
        ));
        assert!(!advised(
            Some(&now),
            Some(UpToDate),
            OutOfDate,
            None,
            UpToDate
        ));
        assert!(!advised(
            Some(&now),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            OutOfDate
        ));
        assert!(!advised(
            Some(&now),
            Some(UpToDate),
            OutOfDate,
            Some(OutOfDate),
            Revoked
        ));
        assert!(!advised(
            Some(&now),
            None,
            OutOfDate,
            Some(OutOfDate),
            UpToDate
        ));
        // Nothing to relaunch for when the TD is current or revoked.
        assert!(!advised(
            Some(&now),
            Some(UpToDate),
            UpToDate,
            Some(OutOfDate),
            UpToDate
        ));
        assert!(!advised(
            Some(&now),
            Some(UpToDate),
            Revoked,
            Some(OutOfDate),
            UpToDate
        ));
    }
}
