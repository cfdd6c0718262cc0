//! The TDX TD report body of a quote: TD 1.0 (584 bytes) and TD 1.5 (648
//! bytes, adding TEE_TCB_SVN2 and MRSERVICETD). Pure, bounds-checked.

use aver_codec::{ParseError, Reader};

/// Size of a TD 1.0 report body.
pub const TD10_BODY_LEN: usize = 584;
/// Size of a TD 1.5 report body.
pub const TD15_BODY_LEN: usize = 648;

/// A TD report body; every field borrows from the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReportBody<'a> {
    /// TEE_TCB_SVN: [0] the TDX module's minor SVN, [1] its major
    /// version, the rest the TDX TCB components.
    pub tee_tcb_svn: &'a [u8; 16],
    pub mr_seam: &'a [u8; 48],
    pub mr_signer_seam: &'a [u8; 48],
    pub seam_attributes: &'a [u8; 8],
    pub td_attributes: &'a [u8; 8],
    pub xfam: &'a [u8; 8],
    pub mr_td: &'a [u8; 48],
    pub mr_config_id: &'a [u8; 48],
    pub mr_owner: &'a [u8; 48],
    pub mr_owner_config: &'a [u8; 48],
    pub rtmr: [&'a [u8; 48]; 4],
    pub report_data: &'a [u8; 64],
    /// TD 1.5 only.
    pub tee_tcb_svn2: Option<&'a [u8; 16]>,
    /// TD 1.5 only.
    pub mr_service_td: Option<&'a [u8; 48]>,
}

impl TdReportBody<'_> {
    /// TD_ATTRIBUTES bit 0: the TD is debuggable.
    pub fn is_debug(&self) -> bool {
        self.td_attributes.first().is_some_and(|b| b & 1 == 1)
    }
}

/// Parses a TD 1.0 body, or a TD 1.5 body when `td15`; `bytes` must be
/// exactly the body.
pub fn parse_td_report(bytes: &[u8], td15: bool) -> Result<TdReportBody<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let tee_tcb_svn = r.array("td_report.tee_tcb_svn")?;
    let mr_seam = r.array("td_report.mr_seam")?;
    let mr_signer_seam = r.array("td_report.mr_signer_seam")?;
    let seam_attributes = r.array("td_report.seam_attributes")?;
    let td_attributes = r.array("td_report.td_attributes")?;
    let xfam = r.array("td_report.xfam")?;
    let mr_td = r.array("td_report.mr_td")?;
    let mr_config_id = r.array("td_report.mr_config_id")?;
    let mr_owner = r.array("td_report.mr_owner")?;
    let mr_owner_config = r.array("td_report.mr_owner_config")?;
    let rtmr = [
        r.array("td_report.rtmr0")?,
        r.array("td_report.rtmr1")?,
        r.array("td_report.rtmr2")?,
        r.array("td_report.rtmr3")?,
    ];
    let report_data = r.array("td_report.report_data")?;
    let (tee_tcb_svn2, mr_service_td) = if td15 {
        (
            Some(r.array("td_report.tee_tcb_svn2")?),
            Some(r.array("td_report.mr_service_td")?),
        )
    } else {
        (None, None)
    };
    r.finish("td_report")?;
    Ok(TdReportBody {
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_service_td,
    })
}
