//! Every parser, on every vector, truncated at every length and with every
//! single-byte mutation, returns instead of panicking.
//!
//! Logs of 4 KiB and more are covered exhaustively only by the ignored test
//! `event_log_parsers_never_panic_exhaustive` (about 70 s in debug); the
//! default test covers all their structural fields (see
//! `structural_offsets`).
//!
//! For event logs, the downstream stages (replay, claims: they decode event
//! data) also run on every successfully parsed truncation / mutation at a
//! stride of `STRIDE` bytes (every position for logs under 4 KiB), to keep
//! the debug-build test under a few seconds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use aver_testkit::read_vector;
use aver_tpm::claims::build_claims;
use aver_tpm::structures::{parse_attest2b, parse_public2b};
use aver_tpm::{parse_attest, parse_event_log, parse_public, parse_signature, replay};
use common::*;

const STRIDE: usize = 97;

fn exercise_log(bytes: &[u8], deep: bool) {
    if let Ok(log) = parse_event_log(bytes)
        && deep
    {
        for ev in &log.events {
            let _ = ev.decode();
        }
        if let Ok(r) = replay(&log) {
            let c = build_claims(&log, Some(&r), &r.banks);
            let _ = serde_json::to_string(&c);
        }
    }
}

fn exercise_struct(bytes: &[u8]) {
    let _ = parse_attest(bytes);
    let _ = parse_attest2b(bytes);
    let _ = parse_signature(bytes);
    if let Ok(p) = parse_public(bytes) {
        let _ = p.name();
        let _ = p.to_spki_der();
        let _ = p.to_jwk();
    }
    let _ = parse_public2b(bytes);
    let _ = aver_tpm::AkPublicKey::from_spki_der(bytes);
}

fn mutate_all(name: &str, bytes: &[u8], f: &dyn Fn(&[u8], bool)) -> usize {
    mutate_positions(name, bytes, &|_| true, f)
}

/// Truncates at every length and flips every byte for which `pick` is true.
fn mutate_positions(
    name: &str,
    bytes: &[u8],
    pick: &dyn Fn(usize) -> bool,
    f: &dyn Fn(&[u8], bool),
) -> usize {
    let small = bytes.len() < 4096;
    let mut runs = 0;
    for len in 0..=bytes.len() {
        if pick(len) {
            f(&bytes[..len], small || len % STRIDE == 0);
            runs += 1;
        }
    }
    let mut m = bytes.to_vec();
    for i in 0..m.len() {
        if !pick(i) {
            continue;
        }
        let flips: &[u8] = if small { &[0xff, 0x01] } else { &[0xff] };
        for &x in flips {
            m[i] ^= x;
            f(&m, small || i % STRIDE == 0);
            m[i] ^= x;
            runs += 1;
        }
    }
    assert!(runs > 0, "{name}");
    runs
}

/// Byte offsets of every structural field (not digest or data bytes) of a
/// log, plus the first 2 KiB, plus every `STRIDE`-th byte.
fn structural_offsets(bytes: &[u8]) -> std::collections::HashSet<usize> {
    let log = parse_event_log(bytes).expect("vector parses");
    let mut set: std::collections::HashSet<usize> = (0..2048.min(bytes.len() + 1)).collect();
    set.extend((0..=bytes.len()).step_by(STRIDE));
    let mut off = 0usize;
    for (i, ev) in log.events.iter().enumerate() {
        let agile = i > 0 && log.spec_id.is_some();
        set.extend(off..off + 8); // pcrIndex, eventType
        off += 8;
        if agile {
            set.extend(off..off + 4); // digest count
            off += 4;
            for d in &ev.digests {
                set.extend(off..off + 2); // algorithm id
                off += 2 + d.digest.len();
            }
        } else {
            off += 20;
        }
        set.extend(off..off + 4); // eventSize
        off += 4;
        // first bytes of the event data carry the decoded structure headers
        set.extend(off..off + ev.data.len().min(24));
        off += ev.data.len();
        set.extend(off.saturating_sub(4)..off + 4);
    }
    set
}

fn event_logs(exhaustive: bool) {
    let t = "event_log_parsers_never_panic";
    let mut files: Vec<String> = T2T_LOGS.iter().map(|n| format!("{T2T}/{n}")).collect();
    for n in [
        "binary_bios_measurements.bin",
        "binary_bios_measurements-secureboot.bin",
        "binary_bios_measurements-bogus.bin",
        "mb_log.bin",
    ] {
        files.push(format!("{KEYLIME}/{n}"));
    }
    files.push(format!("{GCP}/eventlog.bin"));
    let mut total = 0;
    for f in &files {
        let Some(b) = read_vector(t, f) else { return };
        if b.len() < 4096 || exhaustive {
            total += mutate_all(f, &b, &|x, deep| exercise_log(x, deep));
        } else {
            let set = structural_offsets(&b);
            total += mutate_positions(f, &b, &|i| set.contains(&i), &|x, deep| {
                exercise_log(x, deep)
            });
        }
    }
    eprintln!("{total} event-log parser runs");
}

#[test]
fn event_log_parsers_never_panic() {
    // Every length / byte for logs < 4 KiB; for larger logs every
    // structural field, the first 2 KiB and every STRIDE-th byte.
    event_logs(false);
}

#[test]
#[ignore = "exhaustive over every byte of the large logs: ~70 s in a debug build"]
fn event_log_parsers_never_panic_exhaustive() {
    event_logs(true);
}

#[test]
fn structure_parsers_never_panic() {
    let t = "structure_parsers_never_panic";
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for f in [
        format!("{GCP}/ak.tpmt_public"),
        format!("{GCP}/quote.tpms_attest"),
        format!("{GCP}/quote.tpmt_signature"),
        format!("{SWTPM}/ak.tpm2b_public"),
        format!("{SWTPM}/quote.msg"),
        format!("{SWTPM}/quote.sig"),
        format!("{SWTPM}/quoteec.msg"),
        format!("{SWTPM}/quoteec.sig"),
        format!("{SWTPM}/ek.pub"),
    ] {
        let Some(b) = read_vector(t, &f) else { return };
        blobs.push((f, b));
    }
    let Some(pem) = read_vector(t, &format!("{SWTPM}/akec.pub")) else {
        return;
    };
    blobs.push(("akec.pub DER".into(), pem_der(&pem)));
    for dir in ["azure-cvm-vtpm-snp", "azure-cvm-vtpm-tdx"] {
        let Some(j) = read_vector(t, &format!("tpm/{dir}/tpm-quote-v1.json")) else {
            return;
        };
        let j = json(&j);
        blobs.push((
            format!("{dir} message"),
            hex_or_b64(j["message"].as_str().expect("msg")),
        ));
    }
    let Some(j) = read_vector(t, "tpm/trustee-swtpm-evidence/tpm_evidence.json") else {
        return;
    };
    let j = json(&j);
    blobs.push((
        "trustee ak".into(),
        hex_or_b64(j["ak_public"].as_str().expect("ak")),
    ));
    blobs.push((
        "trustee message".into(),
        hex_or_b64(j["tpm_quote"]["message"].as_str().expect("m")),
    ));
    let mut total = 0;
    for (name, b) in &blobs {
        total += mutate_all(name, b, &|x, _| exercise_struct(x));
    }
    eprintln!("{total} structure parser runs");
}
