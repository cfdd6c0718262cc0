//! The replay (which extends PCRs in place, in fixed buffers) gives exactly
//! what a naive replay gives — a new `Vec` per extend, hashed with an
//! independent implementation (aws-lc-rs) — on every real event log vector,
//! and `HashAlg`'s hashes equal aws-lc-rs's on inputs of every
//! block-boundary length.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use aver_testkit::read_vector;
use aver_tpm::eventlog::{EventData, EventLog, types};
use aver_tpm::{HashAlg, PcrValues, parse_event_log, replay};
use aws_lc_rs::digest;

fn reference_hash(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    let alg = match alg {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => &digest::SHA256,
        HashAlg::Sha384 => &digest::SHA384,
        HashAlg::Sha512 => &digest::SHA512,
    };
    digest::digest(alg, data).as_ref().to_vec()
}

/// The replay rules of `aver_tpm::replay`, written the plain way.
fn reference_replay(log: &EventLog, banks: &[HashAlg]) -> PcrValues {
    let mut out = PcrValues::new();
    for &b in banks {
        let mut pcrs: BTreeMap<u32, Vec<u8>> = (0..24)
            .map(|p| {
                let fill = if (17..=22).contains(&p) { 0xff } else { 0 };
                (p, vec![fill; b.size()])
            })
            .collect();
        for ev in &log.events {
            let mut set_pcr0 = |loc: u8| {
                let mut v = vec![0u8; b.size()];
                *v.last_mut().unwrap() = loc;
                pcrs.insert(0, v);
            };
            if ev.event_type == types::EV_NO_ACTION {
                if let EventData::StartupLocality(loc) = ev.decode() {
                    set_pcr0(loc);
                }
                continue;
            }
            if ev.event_type == types::EV_EFI_HCRTM_EVENT && ev.pcr_index == 0 {
                set_pcr0(4);
            }
            let mut buf = pcrs[&ev.pcr_index].clone();
            buf.extend_from_slice(ev.digest(b).unwrap());
            pcrs.insert(ev.pcr_index, reference_hash(b, &buf));
        }
        out.insert(b, pcrs);
    }
    out
}

#[test]
fn replay_equals_a_naive_replay_on_every_vector_log() {
    let logs = [
        "tpm/keylime-eventlogs/mb_log.bin",
        "tpm/keylime-eventlogs/binary_bios_measurements.bin",
        "tpm/keylime-eventlogs/binary_bios_measurements-secureboot.bin",
        "tpm/go-attestation-windows-gcp-e2e/eventlog.bin",
        "tpm/tpm2-tools-eventlogs/event-arch-linux.bin",
        "tpm/tpm2-tools-eventlogs/event-bootorder.bin",
    ];
    let mut checked = 0;
    for name in logs {
        let Some(bytes) = read_vector("replay_reference", name) else {
            continue;
        };
        let log = parse_event_log(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = replay(&log).unwrap_or_else(|e| panic!("{name}: {e}"));
        let banks: Vec<HashAlg> = r.banks.keys().copied().collect();
        assert!(!banks.is_empty(), "{name}");
        assert_eq!(r.banks, reference_replay(&log, &banks), "{name}");
        let touched: Vec<u32> = log
            .events
            .iter()
            .filter(|e| e.event_type != types::EV_NO_ACTION)
            .map(|e| e.pcr_index)
            .collect();
        for pcr in touched {
            assert!(r.last_extend.contains_key(&pcr), "{name}: PCR {pcr}");
        }
        checked += 1;
    }
    eprintln!("{checked} logs checked");
}

#[test]
fn hashes_equal_aws_lc_at_every_block_boundary() {
    let data: Vec<u8> = (0..=300u32).map(|i| (i * 7 + 3) as u8).collect();
    for alg in [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ] {
        for len in 0..=data.len() {
            let d = &data[..len];
            let want = reference_hash(alg, d);
            assert_eq!(alg.hash(d), want, "{alg:?} len {len}");
            let (a, b) = d.split_at(len / 3);
            assert_eq!(alg.hash_parts(&[a, b]), want, "{alg:?} parts len {len}");
            assert_eq!(alg.digest_parts(&[a, &[], b]).as_ref(), &want[..]);
        }
        assert_eq!(
            alg.extend(&data[..5], &data[5..9]),
            reference_hash(alg, &data[..9])
        );
    }
}
