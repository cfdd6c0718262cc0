//! Every event log vector parses and replays to its expected PCRs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use aver_testkit::read_vector;
use aver_tpm::eventlog::{EventData, LogFormat};
use aver_tpm::replay::{KNOWN_QUIRKS, MismatchKind};
use aver_tpm::{EventLogError, HashAlg, compare, parse_event_log, replay};
use common::*;

fn assert_replay_matches(name: &str, log_bytes: &[u8], expected: &aver_tpm::PcrValues) -> usize {
    let log = parse_event_log(log_bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let r = replay(&log).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut checked = 0;
    for (bank, vals) in expected {
        for (pcr, want) in vals {
            let got = r
                .get(*bank, *pcr)
                .unwrap_or_else(|| panic!("{name}: no {bank:?} bank"));
            assert_eq!(
                hex::encode(got),
                hex::encode(want),
                "{name}: PCR {pcr} {bank:?}"
            );
            checked += 1;
        }
    }
    // The same check through `compare` (mask = exactly the expected PCRs).
    for (bank, vals) in expected {
        let mask = vals.keys().fold(0u32, |m, p| m | (1 << p));
        let single = std::collections::BTreeMap::from([(*bank, vals.clone())]);
        compare(&log, &r, &single, Some(mask), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    checked
}

#[test]
fn tpm2_tools_logs_replay_to_upstream_pcrs() {
    let t = "tpm2_tools_logs_replay_to_upstream_pcrs";
    let mut total = 0;
    for name in T2T_LOGS {
        let Some(bin) = read_vector(t, &format!("{T2T}/{name}")) else {
            return;
        };
        let Some(yaml) = read_vector(t, &format!("{T2T}/{name}.expected.yaml")) else {
            return;
        };
        let yaml = String::from_utf8(yaml).expect("utf8");
        let expected = yaml_pcrs(&yaml);
        total += assert_replay_matches(name, &bin, &expected);
        // Same number of events as tpm2_eventlog printed.
        let log = parse_event_log(&bin).expect("parse");
        let n = yaml.matches("PCRIndex:").count();
        assert_eq!(log.events.len(), n, "{name}: event count");
        for ev in &log.events {
            assert!(
                !ev.type_name().starts_with("EV_UNKNOWN"),
                "{name}: unnamed type {:#x}",
                ev.event_type
            );
        }
    }
    // 11 of the 12 logs have a non-empty pcrs section.
    assert!(total > 100, "only {total} PCR values compared");
}

#[test]
fn tpm2_tools_formats_and_spec_id() {
    let t = "tpm2_tools_formats_and_spec_id";
    let Some(bin) = read_vector(t, &format!("{T2T}/event-uefi-sha1-log.bin")) else {
        return;
    };
    assert_eq!(
        parse_event_log(&bin).expect("parse").format,
        LogFormat::LegacySha1
    );
    let Some(bin) = read_vector(t, &format!("{T2T}/specid-vendordata.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    assert_eq!(log.format, LogFormat::CryptoAgile);
    let spec = log.spec_id.as_ref().expect("spec id");
    assert_eq!(hex::encode(&spec.vendor_info), "deadbeef");
    assert_eq!(spec.algorithms.len(), 2);
    assert_eq!(log.events.len(), 1);
    let Some(bin) = read_vector(t, &format!("{T2T}/event.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    assert_eq!(log.banks(), HashAlg::ALL.to_vec());
}

#[test]
fn unknown_spec_id_algorithm_is_skipped_by_size() {
    // Rewrite event.bin (sha1/256/384/512 digests) so that sha384 (0x000c)
    // becomes an unknown algorithm 0x0099 in the Spec ID event and in every
    // event: the log must still parse, skipping those digests by the size
    // the Spec ID declares, and replay the known banks to the same values.
    let t = "unknown_spec_id_algorithm_is_skipped_by_size";
    let Some(bin) = read_vector(t, &format!("{T2T}/event.bin")) else {
        return;
    };
    let orig = parse_event_log(&bin).expect("parse");
    let mut patched = bin.clone();
    let spec_alg_off = 32 + 28; // TCG_PCR_EVENT header + SpecID fixed part
    assert_eq!(&patched[spec_alg_off + 8..spec_alg_off + 10], &[0x0c, 0x00]);
    patched[spec_alg_off + 8] = 0x99;
    let mut off = 32 + orig.events[0].data.len();
    let mut changed = 0;
    for ev in &orig.events[1..] {
        off += 12; // pcrIndex, eventType, count
        for d in &ev.digests {
            if d.algorithm_id == 0x000c {
                assert_eq!(&patched[off..off + 2], &[0x0c, 0x00]);
                patched[off] = 0x99;
                changed += 1;
            }
            off += 2 + d.digest.len();
        }
        off += 4 + ev.data.len();
    }
    assert!(changed > 0);
    let log = parse_event_log(&patched).expect("patched log parses");
    assert_eq!(
        log.banks(),
        vec![HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512]
    );
    assert!(
        log.events[1]
            .digests
            .iter()
            .any(|d| d.algorithm_id == 0x0099 && d.digest.len() == 48)
    );
    let a = replay(&orig).expect("replay");
    let b = replay(&log).expect("replay");
    for bank in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
        assert_eq!(a.get(bank, 0), b.get(bank, 0));
    }
    assert!(b.get(HashAlg::Sha384, 0).is_none());
}

#[test]
fn banks_missing_from_events_are_not_replayed() {
    // event-uefivar.bin lists 4 algorithms but its events carry only sha1/sha256.
    let t = "banks_missing_from_events_are_not_replayed";
    let Some(bin) = read_vector(t, &format!("{T2T}/event-uefivar.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    assert_eq!(log.banks().len(), 4);
    let r = replay(&log).expect("replay");
    assert_eq!(r.incomplete_banks, vec![HashAlg::Sha384, HashAlg::Sha512]);
    assert_eq!(
        r.banks.keys().copied().collect::<Vec<_>>(),
        vec![HashAlg::Sha1, HashAlg::Sha256]
    );
}

#[test]
fn keylime_logs_replay_including_startup_locality() {
    let t = "keylime_logs_replay_including_startup_locality";
    let Some(exp) = read_vector(t, &format!("{KEYLIME}/expected-pcrs.json")) else {
        return;
    };
    let exp = json(&exp);
    for name in [
        "binary_bios_measurements.bin",
        "binary_bios_measurements-secureboot.bin",
        "mb_log.bin",
    ] {
        let Some(bin) = read_vector(t, &format!("{KEYLIME}/{name}")) else {
            return;
        };
        let e = &exp[name];
        assert_replay_matches(name, &bin, &json_pcrs(&e["pcrs"]));
        let log = parse_event_log(&bin).expect("parse");
        // expected-pcrs.json counts the records after the Spec ID header.
        assert_eq!(
            log.events.len() as u64 - 1,
            e["events"].as_u64().expect("events"),
            "{name}"
        );
    }
    let Some(bin) = read_vector(t, &format!("{KEYLIME}/binary_bios_measurements.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    let r = replay(&log).expect("replay");
    assert_eq!(r.startup_locality, Some(3));
    // tpm2_eventlog 5.4 (which ignores StartupLocality) prints ab3e9fd3…; we must not.
    assert!(hex::encode(r.get(HashAlg::Sha1, 0).expect("pcr0")).starts_with("78f3e576"));
    assert!(
        log.events
            .iter()
            .any(|e| e.decode() == EventData::StartupLocality(3))
    );
}

#[test]
fn bogus_log_is_rejected_with_a_clear_error() {
    let t = "bogus_log_is_rejected_with_a_clear_error";
    let Some(bin) = read_vector(t, &format!("{KEYLIME}/binary_bios_measurements-bogus.bin")) else {
        return;
    };
    let err = parse_event_log(&bin).expect_err("bogus log must be rejected");
    assert!(
        matches!(
            err,
            EventLogError::PcrIndexOutOfRange {
                seq: 0,
                pcr: 1969712994,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not a TCG PC Client event log"),
        "{err}"
    );
    assert_eq!(parse_event_log(&[]), Err(EventLogError::Empty));
}

#[test]
fn gcp_log_replays_to_tpm_pcrs() {
    let t = "gcp_log_replays_to_tpm_pcrs";
    let Some(bin) = read_vector(t, &format!("{GCP}/eventlog.bin")) else {
        return;
    };
    let Some(exp) = read_vector(t, &format!("{GCP}/expected-pcrs.json")) else {
        return;
    };
    let Some(tpm) = read_vector(t, &format!("{GCP}/pcrs-from-tpm.json")) else {
        return;
    };
    let exp = json(&exp);
    assert_replay_matches("gcp", &bin, &json_pcrs(&exp["eventlog.bin"]["pcrs"]));
    let log = parse_event_log(&bin).expect("parse");
    assert_eq!(log.format, LogFormat::LegacySha1);
    assert_eq!(log.events.len(), 21);
    let r = replay(&log).expect("replay");
    let mut quoted = json_pcrs(&json(&tpm));
    // All 24 PCRs (reset values included: 17–22 are ff…ff) match.
    let rep = compare(&log, &r, &quoted, Some(0x00ff_ffff), &[]).expect("all PCRs match");
    assert_eq!(rep.checked.len(), 24);
    assert!(rep.quirks_applied.is_empty());

    // Negative: a wrong quoted PCR7 is reported with PCR, bank and the last
    // event that extended PCR7.
    let last7 = log
        .events
        .iter()
        .filter(|e| e.pcr_index == 7)
        .map(|e| e.seq)
        .max();
    quoted
        .get_mut(&HashAlg::Sha1)
        .expect("bank")
        .insert(7, vec![0x42; 20]);
    let m = compare(&log, &r, &quoted, None, KNOWN_QUIRKS).expect_err("mismatch");
    assert_eq!(
        (m.pcr, m.bank, m.kind),
        (7, HashAlg::Sha1, MismatchKind::ValueDiffers)
    );
    assert_eq!(m.last_extend_seq, last7);
    assert_eq!(m.quoted.as_deref(), Some(&[0x42; 20][..]));
    assert_eq!(
        hex::encode(m.replayed.as_deref().expect("replayed")),
        "859a5877266b5c909613468091a73380a5386786"
    );
    assert_eq!(m.matched_after_seq, None);
}

#[test]
fn mismatch_reports_prefix_when_log_has_extra_events() {
    // Quoted values taken before the last PCR4 event: the report must name
    // PCR 4 and the event after which the quoted value was reached.
    let t = "mismatch_reports_prefix_when_log_has_extra_events";
    let Some(bin) = read_vector(t, &format!("{T2T}/event-arch-linux.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    let pcr4: Vec<u32> = log
        .events
        .iter()
        .filter(|e| e.pcr_index == 4 && e.event_type != 3)
        .map(|e| e.seq)
        .collect();
    assert!(pcr4.len() >= 2);
    let cut = *pcr4.last().expect("last");
    let mut short = log.clone();
    short.events.retain(|e| e.seq != cut);
    let quoted_from_short = replay(&short).expect("replay").banks;
    let r = replay(&log).expect("replay");
    let m = compare(&log, &r, &quoted_from_short, None, &[]).expect_err("mismatch");
    assert_eq!((m.pcr, m.bank), (4, HashAlg::Sha1));
    assert_eq!(m.last_extend_seq, Some(cut));
    assert_eq!(m.matched_after_seq, Some(pcr4[pcr4.len() - 2]));
    // PCRs the log never touches are not compared when no mask is given…
    let mut q = r.banks.clone();
    q.get_mut(&HashAlg::Sha256)
        .expect("bank")
        .insert(16, vec![1; 32]);
    assert!(compare(&log, &r, &q, None, &[]).is_ok());
    // …but are when the mask requires them.
    let m = compare(&log, &r, &q, Some(1 << 16), &[]).expect_err("masked pcr16");
    assert_eq!((m.pcr, m.bank), (16, HashAlg::Sha256));
    // A masked PCR absent from the quote is NotQuoted.
    let mut q = r.banks.clone();
    q.get_mut(&HashAlg::Sha1).expect("bank").remove(&2);
    let m = compare(&log, &r, &q, Some(0b111), &[]).expect_err("missing pcr2");
    assert_eq!((m.pcr, m.kind), (2, MismatchKind::NotQuoted));
}

#[test]
fn missing_exit_boot_services_quirk_is_explicit() {
    let t = "missing_exit_boot_services_quirk_is_explicit";
    let Some(bin) = read_vector(t, &format!("{T2T}/event-bootorder.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    let full = replay(&log).expect("replay").banks;
    let mut short = log.clone();
    let before = short.events.len();
    short
        .events
        .retain(|e| !(e.pcr_index == 5 && e.data.starts_with(b"Exit Boot Services")));
    assert_eq!(
        short.events.len(),
        before - 2,
        "log should have both ExitBootServices events"
    );
    let r = replay(&short).expect("replay");
    let m = compare(&short, &r, &full, None, &[]).expect_err("without quirk: mismatch");
    assert_eq!(m.pcr, 5);
    let rep = compare(&short, &r, &full, None, KNOWN_QUIRKS).expect("with quirk");
    assert_eq!(rep.quirks_applied, vec!["missing-exit-boot-services"]);
    // The quirk never applies to a log that has the events.
    let r_full = replay(&log).expect("replay");
    let rep = compare(&log, &r_full, &full, None, KNOWN_QUIRKS).expect("match");
    assert!(rep.quirks_applied.is_empty());
}
