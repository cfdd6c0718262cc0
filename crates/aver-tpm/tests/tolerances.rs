//! Real-world event-log tolerances (the table in `aver_tpm::eventlog` and
//! the PCR 0 rules in `aver_tpm::replay`), each exercised on a log
//! assembled here byte by byte, plus the real vectors that show them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use aver_testkit::read_vector;
use aver_tpm::claims::build_claims;
use aver_tpm::eventlog::{Event, EventData, EventDigest, EventDigests, EventLog, LogFormat};
use aver_tpm::reader::ParseError;
use aver_tpm::replay::{KNOWN_QUIRKS, MismatchKind, ReplayError};
use aver_tpm::{EventLogError, HashAlg, PcrValues, compare, parse_event_log, replay};
use common::build::*;
use common::*;
use std::collections::BTreeMap;

fn alg(id: u16) -> HashAlg {
    HashAlg::from_tpm(id).expect("known bank")
}

fn pcr(log: &EventLog, bank: u16, index: u32) -> Vec<u8> {
    let r = replay(log).expect("replay");
    r.get(alg(bank), index).expect("pcr").to_vec()
}

fn malformed_detail(err: &EventLogError) -> (usize, usize, &'static str, String) {
    match err {
        EventLogError::Malformed {
            seq,
            offset,
            source: ParseError::Invalid { field, detail },
        } => (*seq, *offset, *field, detail.clone()),
        other => panic!("expected an Invalid field error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// EV_NO_ACTION with any PCR index
// ---------------------------------------------------------------------------

#[test]
fn legacy_no_action_events_may_name_any_pcr_and_are_never_extended() {
    // Shaped like go-attestation's option_rom_eventlog: a legacy SHA-1 log
    // whose Windows EV_NO_ACTION records name PCR 0xFFFFFFFF and carry a
    // non-zero digest.
    let crtm = b"S-CRTM 1.0".to_vec();
    let log_bytes = concat(&[
        legacy_m(0, EV_S_CRTM_VERSION, &crtm),
        legacy(
            0xFFFF_FFFF,
            EV_NO_ACTION,
            &[0xa6; 20],
            b"\x04\x00\x01\xc0SIPA",
        ),
        legacy_m(0, EV_SEPARATOR, &[0; 4]),
        legacy(24, EV_NO_ACTION, &[0x11; 20], b"pcr 24"),
        legacy(0x8000_0000, EV_NO_ACTION, &[0; 20], b""),
        legacy(0xFFFF_FFFF, EV_NO_ACTION, &[0xa6; 20], b"last"),
    ]);
    let log = parse_event_log(&log_bytes).expect("parses");
    assert_eq!(log.format, LogFormat::LegacySha1);
    assert_eq!(log.events.len(), 6);
    let ff = &log.events[1];
    assert_eq!(
        (ff.seq, ff.pcr_index, ff.event_type),
        (1, 0xFFFF_FFFF, EV_NO_ACTION)
    );
    assert_eq!(ff.data, b"\x04\x00\x01\xc0SIPA");
    assert_eq!(ff.digests[0].digest, vec![0xa6; 20]);
    assert_eq!(log.events[3].pcr_index, 24);
    assert_eq!(log.events[5].pcr_index, 0xFFFF_FFFF);

    let r = replay(&log).expect("replay");
    let want = extend_chain(SHA1, &[0; 20], &[sha1(&crtm), sha1(&[0; 4])]);
    assert_eq!(r.get(HashAlg::Sha1, 0), Some(&want[..]));
    // Nothing outside 0–23 appears in the replay, and only PCR 0 is touched.
    assert_eq!(r.banks[&HashAlg::Sha1].len(), 24);
    assert_eq!(r.touched().into_iter().collect::<Vec<_>>(), vec![0]);
    assert_eq!(r.last_extend.get(&0), Some(&2));
    // The replay equals that of the log without the EV_NO_ACTION records.
    let mut without = log.clone();
    without.events.retain(|e| e.event_type != EV_NO_ACTION);
    assert_eq!(replay(&without).expect("replay").banks, r.banks);
    // Claims list the records with their PCR index; nothing panics.
    let claims = serde_json::to_value(build_claims(&log, Some(&r), &r.banks)).expect("json");
    assert_eq!(claims["events"]["Events"][1]["PcrIndex"], 0xFFFF_FFFFu32);
    assert_eq!(claims["events"]["Events"].as_array().map(Vec::len), Some(6));
}

#[test]
fn crypto_agile_no_action_events_may_name_any_pcr() {
    let banks = [SHA1, SHA256];
    let log_bytes = concat(&[
        spec_id(&banks),
        agile_m(0, EV_POST_CODE, &banks, b"POST CODE"),
        agile_no_action(0xFFFF_FFFF, &banks, b"SIPA"),
        // An EV_NO_ACTION with no digests at all must not make a bank
        // incomplete.
        agile(0xFFFF_FFFF, EV_NO_ACTION, &[], b""),
        agile(100, EV_NO_ACTION, &[(SHA256, vec![9; 32])], b"x"),
        agile_m(7, EV_SEPARATOR, &banks, &[0; 4]),
    ]);
    let log = parse_event_log(&log_bytes).expect("parses");
    assert_eq!(log.format, LogFormat::CryptoAgile);
    assert_eq!(log.events.len(), 6);
    assert_eq!(log.events[2].pcr_index, 0xFFFF_FFFF);
    assert!(log.events[3].digests.is_empty());
    assert_eq!(log.events[4].pcr_index, 100);
    let r = replay(&log).expect("replay");
    assert!(r.incomplete_banks.is_empty());
    for b in banks {
        assert_eq!(
            r.get(alg(b), 0),
            Some(&extend_chain(b, &vec![0; size(b)], &[hash(b, b"POST CODE")])[..])
        );
        assert_eq!(
            r.get(alg(b), 7),
            Some(&extend_chain(b, &vec![0; size(b)], &[hash(b, &[0; 4])])[..])
        );
    }
    assert_eq!(
        r.touched().into_iter().collect::<Vec<_>>(),
        vec![0, 7],
        "EV_NO_ACTION records touch nothing"
    );
}

#[test]
fn extended_event_with_out_of_range_pcr_is_rejected_naming_the_event() {
    for bad_pcr in [24u32, 31, 0x8000_0000, 0xFFFF_FFFF] {
        for ty in [EV_SEPARATOR, EV_EFI_ACTION, 0x1234] {
            // Legacy: the bad event is record 2.
            let head = concat(&[
                legacy_m(0, EV_S_CRTM_VERSION, b"v"),
                legacy_m(4, EV_EFI_ACTION, b"a"),
            ]);
            let log_bytes = concat(&[head.clone(), legacy_m(bad_pcr, ty, b"b")]);
            let err = parse_event_log(&log_bytes).expect_err("must reject");
            assert_eq!(
                err,
                EventLogError::PcrIndexOutOfRange {
                    seq: 2,
                    offset: head.len(),
                    pcr: bad_pcr,
                    event_type: ty,
                }
            );
            let msg = err.to_string();
            let name = aver_tpm::eventlog::event_type_name(ty);
            for part in [
                "event 2".to_string(),
                format!("offset {}", head.len()),
                name.clone(),
                format!("PCR {bad_pcr}"),
                "not a TCG PC Client event log".to_string(),
            ] {
                assert!(msg.contains(&part), "{msg:?} lacks {part:?}");
            }

            // Crypto-agile: the Spec ID record is event 0, the bad one is 2.
            let head = concat(&[
                spec_id(&[SHA256]),
                agile_m(0, EV_POST_CODE, &[SHA256], b"p"),
            ]);
            let log_bytes = concat(&[head.clone(), agile_m(bad_pcr, ty, &[SHA256], b"b")]);
            let err = parse_event_log(&log_bytes).expect_err("must reject");
            assert_eq!(
                err,
                EventLogError::PcrIndexOutOfRange {
                    seq: 2,
                    offset: head.len(),
                    pcr: bad_pcr,
                    event_type: ty,
                }
            );
            assert!(err.to_string().contains(&name), "{err}");
        }
    }
    // PCR 23 is the last valid index.
    let log_buf = legacy_m(23, EV_IPL, b"x");
    let log = parse_event_log(&log_buf).expect("PCR 23 is valid");
    assert_eq!(
        pcr(&log, SHA1, 23),
        extend_chain(SHA1, &[0; 20], &[sha1(b"x")])
    );
}

#[test]
fn replay_rejects_out_of_range_pcr_in_hand_built_logs() {
    // parse_event_log never produces this, but EventLog's fields are
    // public: replay must not silently create PCR 30.
    let digest = sha1(b"d");
    let ev = |seq, pcr_index, event_type| Event {
        seq,
        pcr_index,
        event_type,
        digests: EventDigests::from_slice(&[EventDigest {
            algorithm_id: SHA1,
            digest: &digest,
        }])
        .expect("one digest"),
        data: b"d",
    };
    let mut log = EventLog {
        format: LogFormat::LegacySha1,
        spec_id: None,
        events: vec![ev(0, 0, EV_IPL), ev(1, 30, EV_NO_ACTION)],
        trailing_zero_bytes: 0,
    };
    assert!(replay(&log).is_ok(), "EV_NO_ACTION on PCR 30 is fine");
    log.events.push(ev(2, 30, EV_IPL));
    assert_eq!(
        replay(&log),
        Err(ReplayError::PcrIndexOutOfRange { seq: 2, pcr: 30 })
    );
}

// ---------------------------------------------------------------------------
// Spec ID event and format detection
// ---------------------------------------------------------------------------

#[test]
fn spec_id_event_is_recognised_by_its_signature_alone() {
    // PCR index 5, a non-zero digest and version 2.1 errata 105: still the
    // crypto-agile header (go-attestation accepts, tpm2-tools would not).
    let data = spec_id_data(&[(SHA256, 32)], (2, 1, 105), b"vendor");
    for (pcr_index, digest) in [(5u32, [0x77u8; 20]), (0xFFFF_FFFF, [0; 20])] {
        let log_bytes = concat(&[
            legacy(pcr_index, EV_NO_ACTION, &digest, &data),
            agile_m(0, EV_POST_CODE, &[SHA256], b"p"),
        ]);
        let log = parse_event_log(&log_bytes).expect("parses");
        assert_eq!(log.format, LogFormat::CryptoAgile);
        let spec = log.spec_id.as_ref().expect("spec id");
        assert_eq!(
            (
                spec.spec_version_major,
                spec.spec_version_minor,
                spec.spec_errata
            ),
            (2, 1, 105)
        );
        assert_eq!(spec.vendor_info, b"vendor");
        assert_eq!(log.events[0].pcr_index, pcr_index);
        assert_eq!(
            pcr(&log, SHA256, 0),
            extend_chain(SHA256, &[0; 32], &[sha256(b"p")])
        );
    }
}

#[test]
fn first_no_action_without_spec_id_event03_is_a_legacy_log() {
    // StartupLocality as the very first record (go-attestation's
    // short_no_action_eventlog) and a TPM 1.2 "Spec ID Event00" header.
    let first = legacy(0, EV_NO_ACTION, &[0; 20], &startup_locality(3));
    let log_bytes = concat(&[first, legacy_m(0, EV_S_CRTM_VERSION, b"v")]);
    let log = parse_event_log(&log_bytes).expect("parses");
    assert_eq!(log.format, LogFormat::LegacySha1);
    let r = replay(&log).expect("replay");
    assert_eq!(r.startup_locality, Some(3));
    assert_eq!(
        r.get(HashAlg::Sha1, 0),
        Some(&extend_chain(SHA1, &locality(SHA1, 3), &[sha1(b"v")])[..])
    );

    let mut tpm12 = b"Spec ID Event00\0".to_vec();
    tpm12.extend_from_slice(&[0; 12]);
    let log_bytes = concat(&[
        legacy(0, EV_NO_ACTION, &[0; 20], &tpm12),
        legacy_m(4, EV_IPL, b"x"),
    ]);
    let log = parse_event_log(&log_bytes).expect("parses");
    assert_eq!(log.format, LogFormat::LegacySha1);
    assert_eq!(log.events.len(), 2);
}

// ---------------------------------------------------------------------------
// Digest lists
// ---------------------------------------------------------------------------

#[test]
fn unknown_spec_id_algorithm_is_skipped_by_its_declared_size() {
    // SM3_256 (and an unassigned id with an odd size) listed in the Spec ID
    // event and present in every event: skipped, other banks replayed.
    let algs = [(SM3_256, 32u16), (0x7777, 7), (SHA256, 32)];
    let header = legacy(
        0,
        EV_NO_ACTION,
        &[0; 20],
        &spec_id_data(&algs, (2, 0, 0), &[]),
    );
    let ev = |pcr, data: &[u8]| {
        agile(
            pcr,
            EV_POST_CODE,
            &[
                (SM3_256, vec![0x5a; 32]),
                (0x7777, vec![1; 7]),
                (SHA256, sha256(data)),
            ],
            data,
        )
    };
    let log_buf = concat(&[header, ev(0, b"a"), ev(0, b"b")]);
    let log = parse_event_log(&log_buf).expect("parses");
    assert_eq!(log.banks(), vec![HashAlg::Sha256]);
    assert_eq!(log.events[1].digests.len(), 3);
    assert_eq!(log.events[1].digests[1].digest, vec![1; 7]);
    assert_eq!(
        pcr(&log, SHA256, 0),
        extend_chain(SHA256, &[0; 32], &[sha256(b"a"), sha256(b"b")])
    );
}

#[test]
fn fewer_digests_than_the_spec_id_lists_make_that_bank_incomplete() {
    let banks = [SHA1, SHA256];
    let log_bytes = concat(&[
        spec_id(&banks),
        agile_m(0, EV_POST_CODE, &banks, b"a"),
        agile_m(0, EV_POST_CODE, &[SHA256], b"b"), // no SHA-1 digest
        agile(3, EV_NO_ACTION, &[], b"no digests, never extended"),
    ]);
    let log = parse_event_log(&log_bytes).expect("parses");
    let r = replay(&log).expect("replay");
    assert_eq!(r.incomplete_banks, vec![HashAlg::Sha1]);
    assert_eq!(
        r.banks.keys().copied().collect::<Vec<_>>(),
        vec![HashAlg::Sha256]
    );
    assert_eq!(
        r.get(HashAlg::Sha256, 0),
        Some(&extend_chain(SHA256, &[0; 32], &[sha256(b"a"), sha256(b"b")])[..])
    );
    // A quote over the incomplete bank is not "verified" by a partial replay.
    let quoted: PcrValues = BTreeMap::from([(HashAlg::Sha1, BTreeMap::from([(0, vec![0; 20])]))]);
    let m = compare(&log, &r, &quoted, None, &[]).expect_err("sha1 bank not in log");
    assert_eq!(m.kind, MismatchKind::BankNotInLog);
}

#[test]
fn surplus_duplicate_or_unlisted_digests_are_rejected() {
    let banks = [SHA1, SHA256];
    let head = concat(&[spec_id(&banks), agile_m(0, EV_POST_CODE, &banks, b"a")]);
    let at = head.len();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            agile(
                0,
                EV_POST_CODE,
                &[
                    (SHA1, sha1(b"b")),
                    (SHA256, sha256(b"b")),
                    (SHA1, sha1(b"b")),
                ],
                b"b",
            ),
            "TPML_DIGEST_VALUES.count",
            "3 digests but the Spec ID event lists 2 algorithms",
        ),
        (
            agile(
                0,
                EV_POST_CODE,
                &[(SHA256, sha256(b"b")), (SHA256, sha256(b"c"))],
                b"b",
            ),
            "TPMT_HA.hashAlg",
            "algorithm 0x000b appears twice in one event",
        ),
        (
            agile(0, EV_POST_CODE, &[(SHA384, hash(SHA384, b"b"))], b"b"),
            "TPMT_HA.hashAlg",
            "algorithm 0x000c not in the Spec ID event",
        ),
    ];
    for (ev, what, detail) in cases {
        let err = parse_event_log(&concat(&[head.clone(), ev])).expect_err("reject");
        assert_eq!(
            malformed_detail(&err),
            (2, at, what, detail.to_string()),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("event 2 (offset {at})"))
        );
    }
}

#[test]
fn more_digests_than_an_event_holds_are_rejected_not_truncated() {
    // A Spec ID event may list up to MAX_SPEC_ALGORITHMS (16) algorithms,
    // an event holds MAX_EVENT_DIGESTS (5) digests inline: an event with
    // more is refused, naming the event, while the largest one that fits
    // keeps every digest.
    use aver_tpm::eventlog::{MAX_EVENT_DIGESTS, MAX_SPEC_ALGORITHMS};
    assert!(MAX_EVENT_DIGESTS < MAX_SPEC_ALGORITHMS as usize);
    let unknown: Vec<(u16, u16)> = (0..=MAX_EVENT_DIGESTS as u16)
        .map(|i| (0x7000 + i, 4))
        .collect();
    let mut algs = unknown.clone();
    algs.push((SHA256, 32));
    let header = legacy(
        0,
        EV_NO_ACTION,
        &[0; 20],
        &spec_id_data(&algs, (2, 0, 0), &[]),
    );
    let digests = |n: usize| -> Vec<(u16, Vec<u8>)> {
        let mut d: Vec<(u16, Vec<u8>)> = unknown[..n - 1]
            .iter()
            .map(|&(id, size)| (id, vec![id as u8; size as usize]))
            .collect();
        d.push((SHA256, sha256(b"a")));
        d
    };
    let fits = concat(&[
        header.clone(),
        agile(0, EV_POST_CODE, &digests(MAX_EVENT_DIGESTS), b"a"),
    ]);
    let log = parse_event_log(&fits).expect("MAX_EVENT_DIGESTS digests fit");
    assert_eq!(log.events[1].digests.len(), MAX_EVENT_DIGESTS);
    assert_eq!(log.events[1].digests[0].digest, vec![0; 4]);
    assert_eq!(
        pcr(&log, SHA256, 0),
        extend_chain(SHA256, &[0; 32], &[sha256(b"a")])
    );
    let at = header.len();
    let too_many = concat(&[
        header,
        agile(0, EV_POST_CODE, &digests(MAX_EVENT_DIGESTS + 1), b"a"),
    ]);
    let err = parse_event_log(&too_many).expect_err("one more does not fit");
    assert!(
        matches!(
            &err,
            EventLogError::Malformed {
                seq: 1,
                offset,
                source: ParseError::TooLarge {
                    field: "TPML_DIGEST_VALUES.count",
                    value,
                    cap,
                },
            } if *offset == at
                && *value == MAX_EVENT_DIGESTS as u64 + 1
                && *cap == MAX_EVENT_DIGESTS as u64
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "event 1 (offset {at}): TPML_DIGEST_VALUES.count = {} exceeds the cap of {MAX_EVENT_DIGESTS}",
            MAX_EVENT_DIGESTS + 1
        )
    );
}

#[test]
fn zero_size_events_are_accepted_in_both_formats() {
    let d = sha1(b"measured elsewhere");
    let log_buf = concat(&[
        legacy_m(0, EV_S_CRTM_VERSION, b"v"),
        legacy(4, EV_IPL, &d, b""),
    ]);
    let log = parse_event_log(&log_buf).expect("legacy");
    assert_eq!(log.events[1].data, b"");
    assert_eq!(pcr(&log, SHA1, 4), extend_chain(SHA1, &[0; 20], &[d]));

    let d = sha256(b"measured elsewhere");
    let log_buf = concat(&[
        spec_id(&[SHA256]),
        agile(4, EV_IPL, &[(SHA256, d.clone())], b""),
        agile(0, EV_NO_ACTION, &[], b""),
    ]);
    let log = parse_event_log(&log_buf).expect("agile");
    assert_eq!(log.events.len(), 3);
    assert_eq!(pcr(&log, SHA256, 4), extend_chain(SHA256, &[0; 32], &[d]));
}

// ---------------------------------------------------------------------------
// Trailing zero padding
// ---------------------------------------------------------------------------

fn legacy_log() -> Vec<u8> {
    // Ends with a separator whose data is 00000000: the zero tail of the
    // last event must not be mistaken for padding.
    concat(&[
        legacy_m(0, EV_S_CRTM_VERSION, b"v"),
        legacy_m(
            4,
            EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        ),
        legacy_m(7, EV_SEPARATOR, &[0; 4]),
    ])
}

fn agile_log() -> Vec<u8> {
    let banks = [SHA1, SHA256];
    concat(&[
        spec_id(&banks),
        agile_m(0, EV_POST_CODE, &banks, b"p"),
        agile_m(7, EV_SEPARATOR, &banks, &[0; 4]),
    ])
}

#[test]
fn trailing_zero_padding_is_ignored_and_reported() {
    for (name, base) in [("legacy", legacy_log()), ("agile", agile_log())] {
        let exact = parse_event_log(&base).expect(name);
        assert_eq!(exact.trailing_zero_bytes, 0);
        let want = replay(&exact).expect("replay").banks;
        // 12 zero bytes would read as a complete crypto-agile record (PCR 0,
        // EV_PREBOOT_CERT, no digests, no data), 32 as a legacy one.
        for pad in [1usize, 3, 4, 11, 12, 13, 31, 32, 33, 4096] {
            let mut padded = base.clone();
            padded.resize(base.len() + pad, 0);
            let log = parse_event_log(&padded).unwrap_or_else(|e| panic!("{name} +{pad}: {e}"));
            assert_eq!(log.trailing_zero_bytes, pad, "{name} +{pad}");
            assert_eq!(log.events, exact.events, "{name} +{pad}");
            assert_eq!(replay(&log).expect("replay").banks, want, "{name} +{pad}");
        }
    }
}

#[test]
fn padding_does_not_excuse_truncation_or_other_fill_bytes() {
    for (name, base) in [("legacy", legacy_log()), ("agile", agile_log())] {
        // 0xFF fill (what TDX CCEL areas use) reads as an extended event on
        // PCR 0xFFFFFFFF: rejected.
        let mut ff = base.clone();
        ff.resize(base.len() + 64, 0xff);
        assert!(
            matches!(
                parse_event_log(&ff),
                Err(EventLogError::PcrIndexOutOfRange {
                    pcr: 0xFFFF_FFFF,
                    event_type: 0xFFFF_FFFF,
                    ..
                })
            ),
            "{name}"
        );
        // Short 0xFF fill is a truncated record.
        let mut short = base.clone();
        short.extend_from_slice(&[0xff; 5]);
        assert!(
            matches!(
                parse_event_log(&short),
                Err(EventLogError::Malformed {
                    source: ParseError::Truncated { .. },
                    ..
                })
            ),
            "{name}"
        );
    }
    // A record whose eventSize runs past the end stays truncated even when
    // zeros follow its first bytes.
    let mut cut = legacy_log();
    let at = cut.len();
    let mut ev = legacy_m(4, EV_IPL, &[b'x'; 1000]);
    ev.truncate(32 + 10);
    cut.extend_from_slice(&ev);
    cut.resize(cut.len() + 100, 0);
    match parse_event_log(&cut) {
        Err(EventLogError::Malformed {
            seq: 3,
            offset,
            source: ParseError::Truncated { field, .. },
        }) => assert_eq!((offset, field), (at, "event data")),
        other => panic!("{other:?}"),
    }
    // Only zero bytes: no log at all.
    for n in [0usize, 1, 12, 32, 4096] {
        assert_eq!(
            parse_event_log(&vec![0; n]),
            Err(EventLogError::Empty),
            "{n}"
        );
    }
}

// ---------------------------------------------------------------------------
// PCR 0 initial value: StartupLocality and H-CRTM
// ---------------------------------------------------------------------------

#[test]
fn startup_locality_applies_only_once_only_on_pcr0_and_only_first() {
    let banks = [SHA1, SHA256];
    let sl = |pcr_index, data: &[u8]| agile_no_action(pcr_index, &banks, data);
    let post = agile_m(0, EV_POST_CODE, &banks, b"p");
    let pcr1 = agile_m(1, EV_POST_CODE, &banks, b"q");
    let expect = |log: &EventLog, start: &dyn Fn(u16) -> Vec<u8>| {
        for b in banks {
            assert_eq!(pcr(log, b, 0), extend_chain(b, &start(b), &[hash(b, b"p")]));
        }
    };

    // Applied: on PCR 0, before any PCR 0 extend (a PCR 1 extend before it
    // does not matter).
    let log_buf = concat(&[
        spec_id(&banks),
        pcr1.clone(),
        sl(0, &startup_locality(3)),
        post.clone(),
    ]);
    let log = parse_event_log(&log_buf).expect("parses");
    assert_eq!(replay(&log).expect("replay").startup_locality, Some(3));
    expect(&log, &|b| locality(b, 3));

    // Not applied: another PCR index, or not exactly 17 bytes.
    let mut long = startup_locality(3);
    long.push(0);
    for ev in [
        sl(0xFFFF_FFFF, &startup_locality(3)),
        sl(5, &startup_locality(3)),
        sl(0, &long),
        sl(0, &startup_locality(3)[..16]),
    ] {
        let log_buf = concat(&[spec_id(&banks), ev, post.clone()]);
        let log = parse_event_log(&log_buf).expect("parses");
        assert_eq!(replay(&log).expect("replay").startup_locality, None);
        assert!(matches!(log.events[1].decode(), EventData::NoAction { .. }));
        expect(&log, &|b| vec![0; size(b)]);
    }

    // After a PCR 0 extend: error naming the event.
    let log_buf = concat(&[spec_id(&banks), post.clone(), sl(0, &startup_locality(3))]);
    let log = parse_event_log(&log_buf).expect("parses");
    assert_eq!(
        replay(&log),
        Err(ReplayError::LateStartupLocality { seq: 2 })
    );

    // Twice: error naming both (even with the same value).
    let log_buf = concat(&[
        spec_id(&banks),
        sl(0, &startup_locality(3)),
        sl(0, &startup_locality(3)),
        post,
    ]);
    let log = parse_event_log(&log_buf).expect("parses");
    let err = replay(&log).expect_err("duplicate");
    assert_eq!(
        err,
        ReplayError::DuplicateStartupLocality {
            seq: 2,
            first_seq: 1
        }
    );
    assert!(err.to_string().contains("StartupLocality event 2"), "{err}");
}

#[test]
fn hcrtm_event_starts_pcr0_at_locality_4() {
    let banks = [SHA1, SHA256];
    let hcrtm = agile_m(0, EV_EFI_HCRTM_EVENT, &banks, b"HCRTM");
    let post = agile_m(0, EV_POST_CODE, &banks, b"p");
    let want = |b: u16| extend_chain(b, &locality(b, 4), &[hash(b, b"HCRTM"), hash(b, b"p")]);

    let log_buf = concat(&[spec_id(&banks), hcrtm.clone(), post.clone()]);
    let log = parse_event_log(&log_buf).expect("parses");
    let r = replay(&log).expect("replay");
    assert_eq!(r.hcrtm_seq, Some(1));
    for b in banks {
        assert_eq!(r.get(alg(b), 0), Some(&want(b)[..]));
    }
    // The mismatch report's prefix search applies the same start value.
    let mut quoted = r.banks.clone();
    let after_hcrtm = extend_chain(SHA256, &locality(SHA256, 4), &[sha256(b"HCRTM")]);
    quoted
        .get_mut(&HashAlg::Sha256)
        .expect("bank")
        .insert(0, after_hcrtm);
    let m = compare(&log, &r, &quoted, None, &[]).expect_err("quote taken earlier");
    assert_eq!((m.pcr, m.matched_after_seq), (0, Some(1)));

    // H-CRTM takes precedence over a StartupLocality event before it.
    let log_buf = concat(&[
        spec_id(&banks),
        agile_no_action(0, &banks, &startup_locality(3)),
        hcrtm.clone(),
        post.clone(),
    ]);
    let log = parse_event_log(&log_buf).expect("parses");
    let r = replay(&log).expect("replay");
    assert_eq!((r.startup_locality, r.hcrtm_seq), (Some(3), Some(2)));
    assert_eq!(r.get(HashAlg::Sha1, 0), Some(&want(SHA1)[..]));

    // An H-CRTM event after another PCR 0 extend is impossible on a TPM.
    let log_buf = concat(&[spec_id(&banks), post, hcrtm]);
    let log = parse_event_log(&log_buf).expect("parses");
    assert_eq!(replay(&log), Err(ReplayError::LateHcrtm { seq: 2 }));

    // On another PCR it is an ordinary event.
    let log_buf = concat(&[
        spec_id(&banks),
        agile_m(2, EV_EFI_HCRTM_EVENT, &banks, b"HCRTM"),
    ]);
    let log = parse_event_log(&log_buf).expect("parses");
    assert_eq!(
        pcr(&log, SHA256, 2),
        extend_chain(SHA256, &[0; 32], &[sha256(b"HCRTM")])
    );
    assert_eq!(replay(&log).expect("replay").hcrtm_seq, None);
}

// ---------------------------------------------------------------------------
// EV_SEPARATOR and ExitBootServices
// ---------------------------------------------------------------------------

#[test]
fn separator_values_outside_pcrs_0_to_7_are_not_errors() {
    let mut parts = vec![legacy_m(0, EV_S_CRTM_VERSION, b"v")];
    for p in 0..8 {
        parts.push(legacy_m(p, EV_SEPARATOR, &[0; 4]));
    }
    for p in 12..15 {
        parts.push(legacy_m(p, EV_SEPARATOR, b"WBCL"));
    }
    // A separator with 8 bytes of data is still extended by its digest.
    parts.push(legacy_m(15, EV_SEPARATOR, &[0; 8]));
    let log_buf = concat(&parts);
    let log = parse_event_log(&log_buf).expect("parses");
    let r = replay(&log).expect("replay");
    assert_eq!(
        r.get(HashAlg::Sha1, 15),
        Some(&extend_chain(SHA1, &[0; 20], &[sha1(&[0; 8])])[..])
    );
    let c = build_claims(&log, Some(&r), &r.banks);
    assert!(c.boot_summary.separators_pcr0_to_7);
    assert!(!c.boot_summary.separator_error);

    // The error value on a firmware PCR is reported.
    parts.push(legacy_m(4, EV_SEPARATOR, &[1, 0, 0, 0]));
    let log_buf = concat(&parts);
    let log = parse_event_log(&log_buf).expect("parses");
    let c = build_claims(&log, None, &BTreeMap::new());
    assert!(c.boot_summary.separator_error);
}

#[test]
fn windows_gcp_log_wbcl_separators_are_not_separator_errors() {
    // The real Windows log ends with "WBCL" separators on PCRs 12–14.
    let t = "windows_gcp_log_wbcl_separators_are_not_separator_errors";
    let Some(bin) = read_vector(t, &format!("{GCP}/eventlog.bin")) else {
        return;
    };
    let log = parse_event_log(&bin).expect("parse");
    assert_eq!(log.trailing_zero_bytes, 0);
    let wbcl: Vec<u32> = log
        .events
        .iter()
        .filter(|e| e.event_type == EV_SEPARATOR && e.data == b"WBCL")
        .map(|e| e.pcr_index)
        .collect();
    assert!(!wbcl.is_empty() && wbcl.iter().all(|p| *p > 7), "{wbcl:?}");
    let r = replay(&log).expect("replay");
    let c = build_claims(&log, Some(&r), &r.banks);
    assert!(!c.boot_summary.separator_error);
}

#[test]
fn exit_boot_services_failure_quirks_are_explicit() {
    let pcr5_logged = legacy_m(5, EV_EFI_ACTION, b"GPT stand-in");
    let log_buf = concat(&[legacy_m(0, EV_S_CRTM_VERSION, b"v"), pcr5_logged]);
    let log = parse_event_log(&log_buf).expect("parses");
    let r = replay(&log).expect("replay");
    let replayed5 = r.get(HashAlg::Sha1, 5).expect("pcr5").to_vec();
    let inv = sha1(b"Exit Boot Services Invocation");
    let fail = sha1(b"Exit Boot Services Returned with Failure");
    let ok = sha1(b"Exit Boot Services Returned with Success");
    for (unlogged, quirk) in [
        (vec![inv.clone(), ok.clone()], "missing-exit-boot-services"),
        (
            vec![inv.clone(), fail.clone()],
            "missing-exit-boot-services-failure",
        ),
        (
            vec![inv.clone(), fail.clone(), ok.clone()],
            "missing-exit-boot-services-failure-success",
        ),
    ] {
        let quoted5 = extend_chain(SHA1, &replayed5, &unlogged);
        let quoted: PcrValues = BTreeMap::from([(HashAlg::Sha1, BTreeMap::from([(5, quoted5)]))]);
        let m = compare(&log, &r, &quoted, None, &[]).expect_err("no quirk: mismatch");
        assert_eq!(m.pcr, 5);
        let rep = compare(&log, &r, &quoted, None, KNOWN_QUIRKS).expect(quirk);
        assert_eq!(rep.quirks_applied, vec![quirk]);
    }
}

// ---------------------------------------------------------------------------
// Robustness of the tolerance code paths
// ---------------------------------------------------------------------------

#[test]
fn generated_logs_never_panic_when_truncated_or_mutated() {
    let banks = [SHA1, SHA256];
    let logs = [
        legacy_log(),
        agile_log(),
        concat(&[
            legacy_m(0, EV_S_CRTM_VERSION, b"v"),
            legacy(0xFFFF_FFFF, EV_NO_ACTION, &[0xa6; 20], b"SIPA"),
            legacy(0, EV_NO_ACTION, &[0; 20], &startup_locality(3)),
            vec![0; 40],
        ]),
        concat(&[
            spec_id(&banks),
            agile_no_action(0, &banks, &startup_locality(3)),
            agile_m(0, EV_EFI_HCRTM_EVENT, &banks, b"HCRTM"),
            agile_no_action(0xFFFF_FFFF, &banks, b"SIPA"),
            agile(3, EV_NO_ACTION, &[], b""),
            vec![0; 40],
        ]),
    ];
    let run = |b: &[u8]| {
        if let Ok(log) = parse_event_log(b) {
            assert!(log.trailing_zero_bytes <= b.len());
            if let Ok(r) = replay(&log) {
                let c = build_claims(&log, Some(&r), &r.banks);
                let _ = serde_json::to_string(&c);
                let _ = compare(&log, &r, &r.banks, Some(0x00ff_ffff), KNOWN_QUIRKS);
            }
        }
    };
    for base in &logs {
        for len in 0..=base.len() {
            run(&base[..len]);
        }
        let mut m = base.clone();
        for i in 0..m.len() {
            for x in [0xff, 0x01, 0x80] {
                m[i] ^= x;
                run(&m);
                m[i] ^= x;
            }
        }
    }
}
