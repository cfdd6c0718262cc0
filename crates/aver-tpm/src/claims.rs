//! MAA-style TPM claims built from a parsed event log and PCR values.
//!
//! Shapes follow Azure Attestation policy 1.2 (the `docs-tpm-*` sample
//! policies query them with JmesPath):
//! * `pcrs` = `{"PCRs":[{"Index":n,"Digests":{"SHA1":"…","SHA256":"…"}}]}`.
//!   **Every bank is lower-case hex.** The only real-value sample
//!   (`pcr-hashes-v1.2`) compares `Digests.SHA256` to lower-case hex; the one
//!   SHA1 sample compares against `"KCk6Ow"` (4 bytes, a placeholder that
//!   matches no SHA-1 in any encoding), so there is no evidence for a
//!   different encoding per bank.
//! * `events` = `{"Events":[{"EventSeq","PcrIndex","EventType",
//!   "EventTypeString","Digests":[{"AlgorithmId","Digest"}],
//!   "ProcessedData":{…}}]}`. EFI variable events give
//!   `ProcessedData.VariableGuid` (upper-case, dashed), `UnicodeName` and
//!   `VariableData` (**base64url without padding**, so SecureBoot=1 is
//!   `"AQ"` as the samples expect). Other binary fields are base64url too;
//!   event digests are lower-case hex.
//! * `secureBootEnabled`: true iff PCR 7 has at least one
//!   EV_EFI_VARIABLE_DRIVER_CONFIG `SecureBoot` event of the EFI global
//!   variable GUID, every such event has data `01`, and every such event's
//!   digests equal H(event data) (otherwise the data is not bound to what
//!   was measured and could be edited without changing the replay).
//!
//! Windows WBCL (`EV_EVENT_TAG` SIPA) events are not decoded into
//! `EVENT_TRUSTBOUNDARY` objects; their ProcessedData carries the raw tag.

use crate::alg::{HashAlg, PcrValues};
use crate::eventlog::{Event, EventData, EventLog, LogFormat, types};
use crate::replay::Replay;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// EFI_GLOBAL_VARIABLE GUID (SecureBoot, PK, KEK, Boot####, BootOrder).
pub const EFI_GLOBAL_VARIABLE: &str = "8BE4DF61-93CA-11D2-AA0D-00E098032B8C";
/// EFI_IMAGE_SECURITY_DATABASE_GUID (db, dbx).
pub const EFI_IMAGE_SECURITY_DATABASE: &str = "D719B2CB-3D3A-4596-A3BC-DAD00E67656F";

pub(crate) fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// One entry of `pcrs.PCRs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PcrClaim {
    /// PCR index.
    #[serde(rename = "Index")]
    pub index: u32,
    /// Bank name (`SHA1`, `SHA256`, …) → lower-case hex.
    #[serde(rename = "Digests")]
    pub digests: Map<String, Value>,
}

/// The `pcrs` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PcrsClaim {
    /// PCRs in ascending index order.
    #[serde(rename = "PCRs")]
    pub pcrs: Vec<PcrClaim>,
}

/// Builds the `pcrs` claim from PCR values (typically the quoted ones).
pub fn pcrs_claim(values: &PcrValues) -> PcrsClaim {
    let mut indices: Vec<u32> = values.values().flat_map(|b| b.keys().copied()).collect();
    indices.sort_unstable();
    indices.dedup();
    let pcrs = indices
        .into_iter()
        .map(|index| {
            let mut digests = Map::new();
            for (bank, vals) in values {
                if let Some(v) = vals.get(&index) {
                    digests.insert(bank.maa_name().to_string(), Value::String(hex::encode(v)));
                }
            }
            PcrClaim { index, digests }
        })
        .collect();
    PcrsClaim { pcrs }
}

/// One entry of `events.Events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventClaim {
    /// Position in the log.
    #[serde(rename = "EventSeq")]
    pub event_seq: u32,
    /// PCR index.
    #[serde(rename = "PcrIndex")]
    pub pcr_index: u32,
    /// Numeric type.
    #[serde(rename = "EventType")]
    pub event_type: u32,
    /// `EV_...` name.
    #[serde(rename = "EventTypeString")]
    pub event_type_string: String,
    /// `[{"AlgorithmId":"sha256","Digest":"<hex>"}]`.
    #[serde(rename = "Digests")]
    pub digests: Vec<Value>,
    /// Decoded event data.
    #[serde(rename = "ProcessedData")]
    pub processed_data: Value,
}

/// The `events` claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventsClaim {
    /// All events in log order.
    #[serde(rename = "Events")]
    pub events: Vec<EventClaim>,
}

fn alg_name(id: u16) -> String {
    HashAlg::from_tpm(id)
        .map(|a| a.lower_name().to_string())
        .unwrap_or_else(|| format!("0x{id:04x}"))
}

/// ProcessedData object for one event.
pub fn processed_data(ev: &Event<'_>) -> Value {
    match ev.decode() {
        EventData::SpecId(s) => json!({
            "Signature": "Spec ID Event03",
            "PlatformClass": s.platform_class,
            "SpecVersionMinor": s.spec_version_minor,
            "SpecVersionMajor": s.spec_version_major,
            "SpecErrata": s.spec_errata,
            "UintnSize": s.uintn_size,
            "Algorithms": s.algorithms.iter().map(|a| json!({
                "AlgorithmId": alg_name(a.algorithm_id),
                "DigestSize": a.digest_size,
            })).collect::<Vec<_>>(),
            "VendorInfo": b64(&s.vendor_info),
        }),
        EventData::StartupLocality(l) => {
            json!({ "Signature": "StartupLocality", "StartupLocality": l })
        }
        EventData::NoAction { signature } => json!({ "Signature": signature }),
        EventData::EfiVariable {
            variable_guid,
            unicode_name,
            variable_data,
        } => json!({
            "VariableGuid": variable_guid,
            "UnicodeName": unicode_name,
            "VariableData": b64(&variable_data),
        }),
        EventData::ImageLoad {
            location,
            length,
            link_time_address,
            device_path,
        } => json!({
            "ImageLocationInMemory": location,
            "ImageLengthInMemory": length,
            "ImageLinkTimeAddress": link_time_address,
            "LengthOfDevicePath": device_path.len(),
            "DevicePath": b64(&device_path),
            "FilePath": device_path_file(&device_path),
        }),
        EventData::Gpt { header, partitions } => json!({
            "Header": header,
            "Partitions": partitions,
        }),
        EventData::Separator(v) => json!({ "Value": v }),
        EventData::Text(s) => json!({ "String": s }),
        EventData::FirmwareBlob { base, length } => {
            json!({ "BlobBase": base, "BlobLength": length })
        }
        EventData::HandoffTables(t) => json!({
            "Tables": t.iter().map(|(g, p)| json!({"VendorGuid": g, "VendorTable": p})).collect::<Vec<_>>(),
        }),
        EventData::Tagged { id, data } => {
            json!({ "TaggedEventId": id, "TaggedEventData": b64(&data) })
        }
        EventData::Raw => json!({ "Data": b64(ev.data) }),
    }
}

/// Builds the `events` claim.
pub fn events_claim(log: &EventLog<'_>) -> EventsClaim {
    EventsClaim {
        events: log
            .events
            .iter()
            .map(|ev| EventClaim {
                event_seq: ev.seq,
                pcr_index: ev.pcr_index,
                event_type: ev.event_type,
                event_type_string: ev.type_name(),
                digests: ev
                    .digests
                    .iter()
                    .map(|d| json!({"AlgorithmId": alg_name(d.algorithm_id), "Digest": hex::encode(d.digest)}))
                    .collect(),
                processed_data: processed_data(ev),
            })
            .collect(),
    }
}

/// Text of the Media/File-path nodes of a UEFI device path (joined with
/// `\`), or `None` when there are none or the path is malformed.
pub fn device_path_file(dp: &[u8]) -> Option<String> {
    let mut rest = dp;
    let mut parts = Vec::new();
    // at most 256 nodes; each node is ≥ 4 bytes so this also bounds work.
    for _ in 0..256 {
        let (&ty, r1) = rest.split_first()?;
        let (&sub, r2) = r1.split_first()?;
        let len_bytes = r2.get(..2)?;
        let len = crate::reader::le16(len_bytes) as usize;
        if len < 4 || len > rest.len() {
            return None;
        }
        if ty == 0x7f {
            break;
        }
        if ty == 4 && sub == 4 {
            let body = rest.get(4..len)?;
            let units: Vec<u16> = body.chunks_exact(2).map(crate::reader::le16).collect();
            let s = String::from_utf16_lossy(&units);
            parts.push(s.trim_end_matches('\0').to_string());
        }
        rest = rest.get(len..)?;
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\\").replace("\\\\", "\\"))
    }
}

/// A measured Secure Boot policy variable (PK, KEK, db, dbx, SecureBoot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecureBootVariable {
    /// Variable name.
    pub name: String,
    /// Vendor GUID.
    pub guid: String,
    /// Event sequence number.
    pub event_seq: u32,
    /// PCR it was measured into.
    pub pcr_index: u32,
    /// Length of the variable data.
    pub data_length: usize,
    /// SHA-256 of the variable data (lower-case hex).
    pub data_sha256: String,
    /// Event digests per bank (lower-case hex), e.g. `{"sha256":"…"}`.
    pub event_digests: Map<String, Value>,
    /// Whether the event digests equal H(event data).
    pub digest_matches_data: bool,
}

/// A measured EFI boot application / driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootApplication {
    /// Event sequence number.
    pub event_seq: u32,
    /// PCR index.
    pub pcr_index: u32,
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`, `..._DRIVER`, ...
    pub event_type: String,
    /// ImageLengthInMemory.
    pub image_length: u64,
    /// Device path bytes (base64url).
    pub device_path: String,
    /// File path from the device path, when present.
    pub file_path: Option<String>,
    /// Authenticode digests per bank (lower-case hex).
    pub digests: Map<String, Value>,
}

/// A short summary of the boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootSummary {
    /// Log format.
    pub log_format: LogFormat,
    /// Number of records, including the Spec ID record.
    pub event_count: usize,
    /// Banks replayed (lower-case names).
    pub banks: Vec<String>,
    /// StartupLocality, when the log has one.
    pub startup_locality: Option<u8>,
    /// See the module docs.
    pub secure_boot_enabled: bool,
    /// True when PCRs 0–7 each have an EV_SEPARATOR.
    pub separators_pcr0_to_7: bool,
    /// Any EV_SEPARATOR on PCRs 0–7 whose value is not 0 (the error
    /// value); separators on other PCRs (Windows' "WBCL") are ignored.
    pub separator_error: bool,
    /// Number of EFI boot applications / drivers measured.
    pub boot_application_count: usize,
    /// EV_EFI_ACTION strings, in order.
    pub efi_actions: Vec<String>,
}

/// All TPM claims Aver derives from a log and PCR values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmClaims {
    /// `pcrs`.
    pub pcrs: PcrsClaim,
    /// `events`.
    pub events: EventsClaim,
    /// `secureBootEnabled`.
    pub secure_boot_enabled: bool,
    /// PK, KEK, db, dbx (and SecureBoot) measurements.
    pub secure_boot_variables: Vec<SecureBootVariable>,
    /// EFI boot applications and drivers.
    pub boot_applications: Vec<BootApplication>,
    /// Summary.
    pub boot_summary: BootSummary,
}

fn digest_map(ev: &Event<'_>) -> Map<String, Value> {
    ev.digests
        .iter()
        .map(|d| {
            (
                alg_name(d.algorithm_id),
                Value::String(hex::encode(d.digest)),
            )
        })
        .collect()
}

/// Secure Boot state per the rule in the module docs.
pub fn secure_boot_enabled(log: &EventLog<'_>) -> bool {
    let mut seen = false;
    for ev in &log.events {
        if ev.event_type != types::EV_EFI_VARIABLE_DRIVER_CONFIG || ev.pcr_index != 7 {
            continue;
        }
        if let EventData::EfiVariable {
            variable_guid,
            unicode_name,
            variable_data,
        } = ev.decode()
            && variable_guid == EFI_GLOBAL_VARIABLE
            && unicode_name == "SecureBoot"
        {
            if variable_data != [1] || !ev.data_matches_digests() {
                return false;
            }
            seen = true;
        }
    }
    seen
}

/// Builds every claim. `pcr_values` are the PCRs to publish (normally the
/// quoted values, after [`crate::replay::compare`] succeeded).
pub fn build_claims(
    log: &EventLog<'_>,
    replay: Option<&Replay>,
    pcr_values: &PcrValues,
) -> TpmClaims {
    let secure = secure_boot_enabled(log);
    let mut vars = Vec::new();
    let mut apps = Vec::new();
    let mut efi_actions = Vec::new();
    let mut sep_pcrs = [false; 8];
    let mut separator_error = false;
    for ev in &log.events {
        match ev.decode() {
            EventData::EfiVariable {
                variable_guid,
                unicode_name,
                variable_data,
            } if ev.event_type == types::EV_EFI_VARIABLE_DRIVER_CONFIG
                && matches!(
                    unicode_name.as_str(),
                    "PK" | "KEK" | "db" | "dbx" | "SecureBoot"
                ) =>
            {
                vars.push(SecureBootVariable {
                    name: unicode_name,
                    guid: variable_guid,
                    event_seq: ev.seq,
                    pcr_index: ev.pcr_index,
                    data_length: variable_data.len(),
                    data_sha256: hex::encode(HashAlg::Sha256.hash(&variable_data)),
                    event_digests: digest_map(ev),
                    digest_matches_data: ev.data_matches_digests(),
                });
            }
            EventData::ImageLoad {
                length,
                device_path,
                ..
            } => apps.push(BootApplication {
                event_seq: ev.seq,
                pcr_index: ev.pcr_index,
                event_type: ev.type_name(),
                image_length: length,
                file_path: device_path_file(&device_path),
                device_path: b64(&device_path),
                digests: digest_map(ev),
            }),
            EventData::Text(s) if ev.event_type == types::EV_EFI_ACTION => efi_actions.push(s),
            EventData::Separator(v) if ev.event_type == types::EV_SEPARATOR => {
                // Only the firmware's separators (PCRs 0–7) carry the
                // error convention; Windows logs "WBCL" separators on
                // PCRs 12–14, which are not errors.
                if let Some(slot) = sep_pcrs.get_mut(ev.pcr_index as usize) {
                    *slot = true;
                    if v != 0 {
                        separator_error = true;
                    }
                }
            }
            _ => {}
        }
    }
    let summary = BootSummary {
        log_format: log.format,
        event_count: log.events.len(),
        banks: log
            .banks()
            .iter()
            .map(|b| b.lower_name().to_string())
            .collect(),
        startup_locality: replay.and_then(|r| r.startup_locality),
        secure_boot_enabled: secure,
        separators_pcr0_to_7: sep_pcrs.iter().all(|&b| b),
        separator_error,
        boot_application_count: apps.len(),
        efi_actions,
    };
    TpmClaims {
        pcrs: pcrs_claim(pcr_values),
        events: events_claim(log),
        secure_boot_enabled: secure,
        secure_boot_variables: vars,
        boot_applications: apps,
        boot_summary: summary,
    }
}
