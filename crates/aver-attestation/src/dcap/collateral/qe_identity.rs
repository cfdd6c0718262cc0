//! Intel QE Identity v2 (`enclaveIdentity`): which quoting enclave Intel
//! vouches for (MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES) and
//! the status of each of its ISVSVN levels.
//!
//! [`parse_qe_identity`] reads the exact bytes of the `enclaveIdentity`
//! member as received; pure, bounded.

use serde::Deserialize;

use super::tcb_info::TcbStatus;
use super::{MAX_ADVISORIES, MAX_ITEM_LEN, MAX_TCB_LEVELS, parse_date, parse_hex};

/// One ISVSVN level of the QE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeTcbLevel {
    pub isv_svn: u16,
    pub tcb_date: String,
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
}

/// Parsed QE identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeIdentity {
    /// `QE`, `QVE` or `TD_QE`.
    pub id: String,
    pub issue_date: u64,
    pub next_update: u64,
    pub tcb_evaluation_data_number: u32,
    pub miscselect: [u8; 4],
    pub miscselect_mask: [u8; 4],
    pub attributes: [u8; 16],
    pub attributes_mask: [u8; 16],
    pub mrsigner: [u8; 32],
    pub isv_prod_id: u16,
    /// Highest ISVSVN first.
    pub levels: Vec<QeTcbLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<RawLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLevel {
    tcb: RawTcb,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs")]
    advisory_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawTcb {
    isvsvn: u16,
}

/// Parses the exact bytes of an `enclaveIdentity` object (version 2).
pub fn parse_qe_identity(raw: &[u8]) -> Result<QeIdentity, String> {
    if raw.len() > MAX_ITEM_LEN {
        return Err(format!(
            "QE identity is {} bytes, more than the {MAX_ITEM_LEN} accepted",
            raw.len()
        ));
    }
    let q: Raw = serde_json::from_slice(raw)
        .map_err(|e| format!("QE identity is not valid JSON of the expected shape: {e}"))?;
    if q.version != 2 {
        return Err(format!(
            "QE identity version {} is not supported (2)",
            q.version
        ));
    }
    if !matches!(q.id.as_str(), "QE" | "QVE" | "TD_QE") {
        return Err(format!("QE identity id {:?} is not QE, QVE or TD_QE", q.id));
    }
    if q.tcb_levels.is_empty() || q.tcb_levels.len() > MAX_TCB_LEVELS {
        return Err(format!(
            "QE identity has {} TCB levels; between 1 and {MAX_TCB_LEVELS} are accepted",
            q.tcb_levels.len()
        ));
    }
    let mut levels = Vec::with_capacity(q.tcb_levels.len());
    for (i, l) in q.tcb_levels.into_iter().enumerate() {
        let status = TcbStatus::parse(&l.tcb_status).ok_or_else(|| {
            format!(
                "QE identity level {i} has the unknown status {:?}",
                l.tcb_status
            )
        })?;
        let advisory_ids = l.advisory_ids.unwrap_or_default();
        if advisory_ids.len() > MAX_ADVISORIES {
            return Err(format!(
                "QE identity level {i} lists more than {MAX_ADVISORIES} advisories"
            ));
        }
        parse_date(&l.tcb_date, "tcbDate")?;
        levels.push(QeTcbLevel {
            isv_svn: l.tcb.isvsvn,
            tcb_date: l.tcb_date,
            status,
            advisory_ids,
        });
    }
    Ok(QeIdentity {
        id: q.id,
        issue_date: parse_date(&q.issue_date, "issueDate")?,
        next_update: parse_date(&q.next_update, "nextUpdate")?,
        tcb_evaluation_data_number: q.tcb_evaluation_data_number,
        miscselect: parse_hex(&q.miscselect, "miscselect")?,
        miscselect_mask: parse_hex(&q.miscselect_mask, "miscselectMask")?,
        attributes: parse_hex(&q.attributes, "attributes")?,
        attributes_mask: parse_hex(&q.attributes_mask, "attributesMask")?,
        mrsigner: parse_hex(&q.mrsigner, "mrsigner")?,
        isv_prod_id: q.isvprodid,
        levels,
    })
}
