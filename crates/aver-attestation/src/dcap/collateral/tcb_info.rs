//! Intel TCB Info (v2 and v3): the TCB levels of one platform family
//! (FMSPC), each with Intel's status for platforms at that level.
//!
//! [`parse_tcb_info`] reads the exact bytes of the `tcbInfo` member as
//! received (the bytes Intel's signature covers); it never re-serializes.
//! It is a pure function over `&[u8]`, bounded in input size and in the
//! number of levels and advisories.

use serde::{Deserialize, Serialize};

use super::{MAX_ADVISORIES, MAX_ITEM_LEN, MAX_TCB_LEVELS, parse_date, parse_hex};

/// Intel's status of a TCB level (and of a QE identity level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
}

impl TcbStatus {
    /// Every status, in Intel's order.
    pub const ALL: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    /// Intel's spelling, as in TCB info and in the claims.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }

    /// Parses Intel's spelling; anything else is refused, as QVL does.
    pub fn parse(s: &str) -> Option<TcbStatus> {
        TcbStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One TCB level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbLevel {
    pub sgx_components: [u8; 16],
    pub pce_svn: u16,
    /// TDX TCB components (TCB info v3 for TDX only).
    pub tdx_components: Option<[u8; 16]>,
    /// `tcbDate` as written (RFC 3339), and as seconds.
    pub tcb_date: String,
    pub tcb_date_unix: u64,
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
}

/// The TDX module Intel signs (`tdxModule`, for module major version 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxModule {
    pub mrsigner: [u8; 48],
    pub attributes: [u8; 8],
    pub attributes_mask: [u8; 8],
}

/// One TDX module identity (`tdxModuleIdentities[]`, id `TDX_%02X` of the
/// module's major version), with its ISVSVN levels, highest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxModuleIdentity {
    pub id: String,
    pub module: TdxModule,
    pub levels: Vec<super::qe_identity::QeTcbLevel>,
}

/// Parsed TCB info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbInfo {
    /// `SGX` or `TDX` (v2 has no id: SGX).
    pub id: String,
    pub version: u32,
    pub issue_date: u64,
    pub next_update: u64,
    pub fmspc: [u8; 6],
    pub pce_id: [u8; 2],
    pub tcb_evaluation_data_number: u32,
    /// Newest first, as Intel orders them (and as matching requires).
    pub levels: Vec<TcbLevel>,
    /// TDX only.
    pub tdx_module: Option<TdxModule>,
    pub tdx_module_identities: Vec<TdxModuleIdentity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTcbInfo {
    id: Option<String>,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: Option<u32>,
    tcb_evaluation_data_number: Option<u32>,
    tcb_levels: Vec<RawLevel>,
    tdx_module: Option<RawModule>,
    tdx_module_identities: Option<Vec<RawModuleIdentity>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModule {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModuleIdentity {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<RawModuleLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModuleLevel {
    tcb: RawIsvSvn,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs")]
    advisory_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawIsvSvn {
    isvsvn: u16,
}

fn module(m: &RawModule) -> Result<TdxModule, String> {
    Ok(TdxModule {
        mrsigner: parse_hex(&m.mrsigner, "tdxModule mrsigner")?,
        attributes: parse_hex(&m.attributes, "tdxModule attributes")?,
        attributes_mask: parse_hex(&m.attributes_mask, "tdxModule attributesMask")?,
    })
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
struct RawComponent {
    svn: u8,
}

/// v3 has component arrays; v2 has sixteen flat `sgxtcbcompNNsvn` fields.
#[derive(Deserialize)]
struct RawTcb {
    sgxtcbcomponents: Option<Vec<RawComponent>>,
    tdxtcbcomponents: Option<Vec<RawComponent>>,
    pcesvn: u16,
    sgxtcbcomp01svn: Option<u8>,
    sgxtcbcomp02svn: Option<u8>,
    sgxtcbcomp03svn: Option<u8>,
    sgxtcbcomp04svn: Option<u8>,
    sgxtcbcomp05svn: Option<u8>,
    sgxtcbcomp06svn: Option<u8>,
    sgxtcbcomp07svn: Option<u8>,
    sgxtcbcomp08svn: Option<u8>,
    sgxtcbcomp09svn: Option<u8>,
    sgxtcbcomp10svn: Option<u8>,
    sgxtcbcomp11svn: Option<u8>,
    sgxtcbcomp12svn: Option<u8>,
    sgxtcbcomp13svn: Option<u8>,
    sgxtcbcomp14svn: Option<u8>,
    sgxtcbcomp15svn: Option<u8>,
    sgxtcbcomp16svn: Option<u8>,
}

impl RawTcb {
    fn flat(&self) -> [Option<u8>; 16] {
        [
            self.sgxtcbcomp01svn,
            self.sgxtcbcomp02svn,
            self.sgxtcbcomp03svn,
            self.sgxtcbcomp04svn,
            self.sgxtcbcomp05svn,
            self.sgxtcbcomp06svn,
            self.sgxtcbcomp07svn,
            self.sgxtcbcomp08svn,
            self.sgxtcbcomp09svn,
            self.sgxtcbcomp10svn,
            self.sgxtcbcomp11svn,
            self.sgxtcbcomp12svn,
            self.sgxtcbcomp13svn,
            self.sgxtcbcomp14svn,
            self.sgxtcbcomp15svn,
            self.sgxtcbcomp16svn,
        ]
    }
}

fn components16(list: &[RawComponent], what: &str) -> Result<[u8; 16], String> {
    if list.len() != 16 {
        return Err(format!("{what} has {} components, not 16", list.len()));
    }
    let mut out = [0u8; 16];
    for (o, c) in out.iter_mut().zip(list) {
        *o = c.svn;
    }
    Ok(out)
}

/// Parses the exact bytes of a `tcbInfo` object (v2 or v3).
pub fn parse_tcb_info(raw: &[u8]) -> Result<TcbInfo, String> {
    if raw.len() > MAX_ITEM_LEN {
        return Err(format!(
            "TCB info is {} bytes, more than the {MAX_ITEM_LEN} accepted",
            raw.len()
        ));
    }
    let t: RawTcbInfo = serde_json::from_slice(raw)
        .map_err(|e| format!("TCB info is not valid JSON of the expected shape: {e}"))?;
    let id = match (t.version, t.id) {
        (2, None) => "SGX".to_string(),
        (3, Some(id)) if id == "SGX" || id == "TDX" => id,
        (3, Some(id)) => return Err(format!("TCB info id {id:?} is neither SGX nor TDX")),
        (3, None) => return Err("TCB info v3 has no id".into()),
        (v, _) => return Err(format!("TCB info version {v} is not supported (2 or 3)")),
    };
    if t.tcb_type.unwrap_or(0) != 0 {
        return Err("TCB info tcbType is not 0, the only type Intel defines".into());
    }
    if t.tcb_levels.is_empty() || t.tcb_levels.len() > MAX_TCB_LEVELS {
        return Err(format!(
            "TCB info has {} TCB levels; between 1 and {MAX_TCB_LEVELS} are accepted",
            t.tcb_levels.len()
        ));
    }
    let mut levels = Vec::with_capacity(t.tcb_levels.len());
    for (i, l) in t.tcb_levels.into_iter().enumerate() {
        let sgx_components = match (&l.tcb.sgxtcbcomponents, t.version) {
            (Some(list), 3) => components16(list, "sgxtcbcomponents")?,
            (None, 2) => {
                let mut out = [0u8; 16];
                for (n, (o, c)) in out.iter_mut().zip(l.tcb.flat()).enumerate() {
                    *o =
                        c.ok_or_else(|| format!("TCB level {i} lacks sgxtcbcomp{:02}svn", n + 1))?;
                }
                out
            }
            _ => {
                return Err(format!(
                    "TCB level {i}: the components do not have the shape of version {}",
                    t.version
                ));
            }
        };
        let tdx_components = match &l.tcb.tdxtcbcomponents {
            Some(list) => Some(components16(list, "tdxtcbcomponents")?),
            None => None,
        };
        if id == "TDX" && tdx_components.is_none() {
            return Err(format!(
                "TCB level {i} of a TDX TCB info lacks tdxtcbcomponents"
            ));
        }
        let status = TcbStatus::parse(&l.tcb_status)
            .ok_or_else(|| format!("TCB level {i} has the unknown status {:?}", l.tcb_status))?;
        let advisory_ids = l.advisory_ids.unwrap_or_default();
        if advisory_ids.len() > MAX_ADVISORIES {
            return Err(format!(
                "TCB level {i} lists more than {MAX_ADVISORIES} advisories"
            ));
        }
        let tcb_date_unix = parse_date(&l.tcb_date, "tcbDate")?;
        levels.push(TcbLevel {
            sgx_components,
            pce_svn: l.tcb.pcesvn,
            tdx_components,
            tcb_date: l.tcb_date,
            tcb_date_unix,
            status,
            advisory_ids,
        });
    }
    let tdx_module = t.tdx_module.as_ref().map(module).transpose()?;
    let raw_ids = t.tdx_module_identities.unwrap_or_default();
    if raw_ids.len() > MAX_TCB_LEVELS {
        return Err("TCB info has too many TDX module identities".into());
    }
    let mut tdx_module_identities = Vec::with_capacity(raw_ids.len());
    for m in raw_ids {
        if m.tcb_levels.len() > MAX_TCB_LEVELS {
            return Err(format!("TDX module identity {} has too many levels", m.id));
        }
        let mut levels = Vec::with_capacity(m.tcb_levels.len());
        for l in m.tcb_levels {
            let status = TcbStatus::parse(&l.tcb_status).ok_or_else(|| {
                format!(
                    "TDX module {} has the unknown status {:?}",
                    m.id, l.tcb_status
                )
            })?;
            let advisory_ids = l.advisory_ids.unwrap_or_default();
            if advisory_ids.len() > MAX_ADVISORIES {
                return Err(format!("TDX module {} lists too many advisories", m.id));
            }
            parse_date(&l.tcb_date, "tcbDate")?;
            levels.push(super::qe_identity::QeTcbLevel {
                isv_svn: l.tcb.isvsvn,
                tcb_date: l.tcb_date,
                status,
                advisory_ids,
            });
        }
        tdx_module_identities.push(TdxModuleIdentity {
            module: module(&RawModule {
                mrsigner: m.mrsigner,
                attributes: m.attributes,
                attributes_mask: m.attributes_mask,
            })?,
            id: m.id,
            levels,
        });
    }
    Ok(TcbInfo {
        tdx_module,
        tdx_module_identities,
        id,
        version: t.version,
        issue_date: parse_date(&t.issue_date, "issueDate")?,
        next_update: parse_date(&t.next_update, "nextUpdate")?,
        fmspc: parse_hex(&t.fmspc, "fmspc")?,
        pce_id: parse_hex(&t.pce_id, "pceId")?,
        tcb_evaluation_data_number: t.tcb_evaluation_data_number.unwrap_or(0),
        levels,
    })
}
