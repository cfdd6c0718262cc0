#![allow(dead_code)]
//! Helpers shared by the integration tests.

pub mod build;

use aver_tpm::{HashAlg, PcrValues};
use base64::Engine as _;
use std::collections::BTreeMap;

pub const T2T: &str = "tpm/tpm2-tools-eventlogs";
pub const KEYLIME: &str = "tpm/keylime-eventlogs";
pub const GCP: &str = "tpm/go-attestation-windows-gcp-e2e";
pub const SWTPM: &str = "tpm/swtpm-local";

/// The 12 tpm2-tools logs.
pub const T2T_LOGS: &[&str] = &[
    "event-arch-linux.bin",
    "event-bootorder.bin",
    "event-gce-ubuntu-2104-log.bin",
    "event-moklisttrusted.bin",
    "event-postcode.bin",
    "event-sd-boot-fedora37.bin",
    "event-uefi-sha1-log.bin",
    "event-uefiaction.bin",
    "event-uefiservices.bin",
    "event-uefivar.bin",
    "event.bin",
    "specid-vendordata.bin",
];

pub fn bank(name: &str) -> HashAlg {
    match name.to_ascii_lowercase().as_str() {
        "sha1" => HashAlg::Sha1,
        "sha256" => HashAlg::Sha256,
        "sha384" => HashAlg::Sha384,
        "sha512" => HashAlg::Sha512,
        other => panic!("unknown bank {other}"),
    }
}

/// Minimal parser for the final `pcrs:` section of a tpm2_eventlog YAML.
pub fn yaml_pcrs(text: &str) -> PcrValues {
    let mut out: PcrValues = BTreeMap::new();
    let mut in_pcrs = false;
    let mut current = None;
    for line in text.lines() {
        if line.starts_with("pcrs:") {
            in_pcrs = true;
            continue;
        }
        if !in_pcrs || line.trim().is_empty() {
            continue;
        }
        let trimmed = line.trim();
        if let Some(b) = trimmed.strip_suffix(':') {
            current = Some(bank(b));
            out.entry(bank(b)).or_default();
        } else if let Some((idx, val)) = trimmed.split_once(':') {
            let b = current.expect("bank before value");
            let idx: u32 = idx.trim().parse().expect("pcr index");
            let v = val.trim().trim_start_matches("0x");
            out.entry(b)
                .or_default()
                .insert(idx, hex::decode(v).expect("hex"));
        }
    }
    out
}

/// `{"sha1": {"0": "hex", ...}, ...}` → PcrValues.
pub fn json_pcrs(v: &serde_json::Value) -> PcrValues {
    let mut out: PcrValues = BTreeMap::new();
    for (b, vals) in v.as_object().expect("object") {
        if b.starts_with('_') {
            continue;
        }
        let bk = bank(b);
        for (i, h) in vals.as_object().expect("object") {
            out.entry(bk).or_default().insert(
                i.parse().expect("index"),
                hex::decode(h.as_str().expect("str")).expect("hex"),
            );
        }
    }
    out
}

/// PCRs 0..n of one bank from a list of hex strings.
pub fn list_pcrs(bank: HashAlg, list: &[serde_json::Value]) -> PcrValues {
    let mut m = BTreeMap::new();
    for (i, h) in list.iter().enumerate() {
        m.insert(
            i as u32,
            hex::decode(h.as_str().expect("str")).expect("hex"),
        );
    }
    BTreeMap::from([(bank, m)])
}

pub fn hex_or_b64(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|_| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("neither hex nor base64")
    })
}

pub fn pem_der(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).expect("utf8");
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("pem base64")
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("json")
}
