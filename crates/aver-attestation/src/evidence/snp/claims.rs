//! The claims Azure Attestation issues for SEV-SNP VMs, in its formats
//! (taken from a recorded Azure token): digests and IDs as lowercase hex
//! strings, SVNs and VMPL as integers, policy flags as booleans.

use serde_json::{Map, Value};

use super::verify::VerifiedSnp;
use crate::request::AttestRequest;

/// The `x-ms-sevsnpvm-*` claims, `x-ms-attestation-type`, `x-ms-ver`, and
/// the runtime and init-time data when they are JSON.
pub fn claims(v: &VerifiedSnp, request: &AttestRequest) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("x-ms-attestation-type".into(), "sevsnpvm".into());
    let p = "x-ms-sevsnpvm-";
    let mut put = |name: &str, value: Value| {
        c.insert(format!("{p}{name}"), value);
    };
    put("authorkeydigest", hex::encode(v.author_key_digest).into());
    put("bootloader-svn", v.reported_tcb.bootloader.into());
    put("familyId", hex::encode(v.family_id).into());
    put("guestsvn", v.guest_svn.into());
    put("hostdata", hex::encode(v.host_data).into());
    put("idkeydigest", hex::encode(v.id_key_digest).into());
    put("imageId", hex::encode(v.image_id).into());
    put("is-debuggable", v.is_debuggable.into());
    put("launchmeasurement", hex::encode(v.measurement).into());
    put("microcode-svn", v.reported_tcb.microcode.into());
    put("migration-allowed", v.migration_allowed.into());
    put("reportdata", hex::encode(v.report_data).into());
    put("reportid", hex::encode(v.report_id).into());
    put("smt-allowed", v.smt_allowed.into());
    put("snpfw-svn", v.reported_tcb.snp.into());
    put("tee-svn", v.reported_tcb.tee.into());
    put("vmpl", v.vmpl.into());
    if let Some(fmc) = v.reported_tcb.fmc {
        // Turin's firmware loader SVN; Azure has no recorded name for it yet.
        put("fmc-svn", fmc.into());
    }
    if let Some(json) = request.runtime_data.as_ref().and_then(|d| d.json.clone()) {
        c.insert("x-ms-runtime".into(), json);
    }
    if let Some(json) = request.init_time_data.as_ref().and_then(|d| d.json.clone()) {
        c.insert("x-ms-inittime".into(), json);
    }
    c.insert("x-ms-ver".into(), "1.0".into());
    c
}
