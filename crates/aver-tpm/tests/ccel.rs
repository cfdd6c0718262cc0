//! TDX CCEL replay on the real GCP TD log (go-tdx-guest's cos-113 vector):
//! the replay reproduces the RTMRs the vectors README gives, and negatives
//! generated from the log (a digest flipped, an event dropped or appended,
//! the log cut, the padding changed, garbage) are each named as they should.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_testkit::read_vector;
use aver_tpm::ccel::{
    CcelError, MAX_CCEL_BYTES, RTMR_COUNT, mr_index, replay_ccel, rtmr_of, verify_ccel,
};
use aver_tpm::eventlog::{EventLogError, types};
use common::build::*;

const DIR: &str = "tdx/go-tdx-guest-cos113-ccel";
/// Bytes of the area the log uses (vectors README); the rest is 0xFF.
const USED: usize = 18101;
const RTMR0: &str = "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6";
/// The README gives RTMR1 and RTMR2 by their prefixes.
const RTMR1_PREFIX: &str = "f62dbc072bd5d3f3438b7b35c3";
const RTMR2_PREFIX: &str = "4969684dc87381fc3b313417";

fn area(test: &str) -> Option<Vec<u8>> {
    read_vector(test, &format!("{DIR}/ccel_data.dat"))
}

/// The quote's RTMR0–3: TD report body (after the 48-byte v4 header),
/// RTMRs at body offset 328.
fn quoted(test: &str) -> Option<[[u8; 48]; RTMR_COUNT]> {
    let q = read_vector(test, &format!("{DIR}/quote.bin"))?;
    let mut out = [[0u8; 48]; RTMR_COUNT];
    for (i, r) in out.iter_mut().enumerate() {
        let at = 48 + 328 + 48 * i;
        r.copy_from_slice(&q[at..at + 48]);
    }
    Some(out)
}

/// (offset, length, MR index, type, digest offset) of each record after
/// the Spec ID header; the vector's records carry one SHA-384 digest.
fn records(area: &[u8]) -> Vec<(usize, usize, u32, u32, usize)> {
    let u32_at = |o: usize| u32::from_le_bytes(area[o..o + 4].try_into().unwrap());
    let mut o = 32 + u32_at(28) as usize;
    let mut out = Vec::new();
    while o < USED {
        let (mr, ty, count) = (u32_at(o), u32_at(o + 4), u32_at(o + 8));
        assert_eq!(count, 1);
        let digest = o + 14;
        let size = u32_at(digest + 48) as usize;
        let len = 12 + 2 + 48 + 4 + size;
        out.push((o, len, mr, ty, digest));
        o += len;
    }
    assert_eq!(o, USED);
    out
}

fn mismatch(e: CcelError) -> aver_tpm::ccel::RtmrMismatch {
    match e {
        CcelError::Mismatch(m) => *m,
        other => panic!("expected a replay mismatch, got {other:?}"),
    }
}

#[test]
fn gcp_ccel_replays_to_the_quoted_rtmrs() {
    let t = "gcp_ccel_replays_to_the_quoted_rtmrs";
    let (Some(a), Some(q)) = (area(t), quoted(t)) else {
        return;
    };
    assert_eq!(a.len(), 256 * 1024);
    let r = verify_ccel(&a, &q).unwrap();
    assert_eq!(hex::encode(r.rtmr[0]), RTMR0);
    assert!(hex::encode(r.rtmr[1]).starts_with(RTMR1_PREFIX));
    assert!(hex::encode(r.rtmr[2]).starts_with(RTMR2_PREFIX));
    assert_eq!(r.rtmr[..3], q[..3]);
    // No event extends RTMR3, so it is not compared (and stays zero).
    assert_eq!(r.rtmr[3], [0; 48]);
    assert_eq!(r.compared(), vec![0, 1, 2]);
    // 43 events after the Spec ID header; the 0xFF tail is padding.
    assert_eq!(r.log.events.len(), 44);
    assert_eq!(r.padding, 0xFF);
    assert_eq!(r.log.trailing_zero_bytes, a.len() - USED);
    assert_eq!(r.events, [16, 7, 20, 0]);
    assert_eq!(r.last_event[1], Some((43, types::EV_EFI_ACTION)));
    assert_eq!(r.last_event[2], Some((41, types::EV_IPL)));
    // The area cut at the log's end, or zero-padded instead, is the same log.
    assert_eq!(verify_ccel(&a[..USED], &q).unwrap().rtmr, r.rtmr);
    let mut zeroed = a.clone();
    zeroed[USED..].fill(0);
    let z = verify_ccel(&zeroed, &q).unwrap();
    assert_eq!((z.rtmr, z.padding), (r.rtmr, 0));
}

#[test]
fn a_flipped_digest_names_its_rtmr_and_last_event() {
    let t = "a_flipped_digest_names_its_rtmr_and_last_event";
    let (Some(a), Some(q)) = (area(t), quoted(t)) else {
        return;
    };
    // One event per register: the register it extends is the one named.
    for rtmr in 0..3 {
        let recs = records(&a);
        let (_, _, _, _, digest) = *recs.iter().find(|r| rtmr_of(r.2) == Some(rtmr)).unwrap();
        let mut bad = a.clone();
        bad[digest] ^= 1;
        let m = mismatch(verify_ccel(&bad, &q).unwrap_err());
        assert_eq!(m.rtmr, rtmr);
        assert_eq!(m.quoted, q[rtmr]);
        assert_ne!(m.replayed, q[rtmr]);
        assert_eq!(m.events, [16, 7, 20][rtmr]);
        let last = recs
            .iter()
            .rposition(|r| rtmr_of(r.2) == Some(rtmr))
            .unwrap();
        assert_eq!(m.last_event, Some((last as u32 + 1, recs[last].3)));
        assert_eq!(m.quoted_after, None);
        let text = CcelError::Mismatch(Box::new(m.clone())).to_string();
        assert!(
            text.contains(&format!("RTMR{rtmr} (MR index {})", mr_index(rtmr))),
            "{text}"
        );
        assert!(text.contains(&hex::encode(q[rtmr])), "{text}");
        assert_eq!(
            CcelError::Mismatch(Box::new(m)).code(),
            "EventLogReplayMismatch"
        );
    }
}

#[test]
fn a_dropped_or_added_event_is_a_mismatch() {
    let t = "a_dropped_or_added_event_is_a_mismatch";
    let (Some(a), Some(q)) = (area(t), quoted(t)) else {
        return;
    };
    let recs = records(&a);
    // Drop the last event (RTMR1's EV_EFI_ACTION "Exit Boot Services
    // Returned with Success"): the area keeps its size, the hole is padding.
    let (off, len, ..) = recs[recs.len() - 1];
    let mut dropped = a[..off].to_vec();
    dropped.extend_from_slice(&a[off + len..]);
    dropped.resize(a.len(), 0xFF);
    let m = mismatch(verify_ccel(&dropped, &q).unwrap_err());
    assert_eq!((m.rtmr, m.events), (1, 6));
    assert_eq!(m.last_event, Some((42, types::EV_EFI_ACTION)));
    // Drop an RTMR0 event from the middle.
    let (off, len, mr, ..) = recs[3];
    assert_eq!(rtmr_of(mr), Some(0));
    let mut dropped = a[..off].to_vec();
    dropped.extend_from_slice(&a[off + len..]);
    let m = mismatch(verify_ccel(&dropped, &q).unwrap_err());
    assert_eq!((m.rtmr, m.events), (0, 15));
    // An extra RTMR2 event after the log: the quoted value is reached
    // before it, and the error says so.
    let mut added = a[..USED].to_vec();
    added.extend(agile_m(3, EV_IPL, &[SHA384], b"extra"));
    let m = mismatch(verify_ccel(&added, &q).unwrap_err());
    assert_eq!((m.rtmr, m.events), (2, 21));
    assert_eq!(m.quoted_after, Some(41));
    assert!(
        m.describe().contains("reached after record #41"),
        "{}",
        m.describe()
    );
    // An event on RTMR3, which the quote has at zero: RTMR3 is compared.
    let mut rtmr3 = a[..USED].to_vec();
    rtmr3.extend(agile_m(4, EV_IPL, &[SHA384], b"rtmr3"));
    let m = mismatch(verify_ccel(&rtmr3, &q).unwrap_err());
    assert_eq!((m.rtmr, m.events), (3, 1));
}

#[test]
fn a_truncated_log_is_malformed_or_a_mismatch() {
    let t = "a_truncated_log_is_malformed_or_a_mismatch";
    let (Some(a), Some(q)) = (area(t), quoted(t)) else {
        return;
    };
    let recs = records(&a);
    // Cut inside an event (and inside the header): the parser says where.
    for cut in [USED - 1, recs[20].0 + 7, 40] {
        let e = verify_ccel(&a[..cut], &q).unwrap_err();
        assert!(
            matches!(e, CcelError::Parse(EventLogError::Malformed { .. })),
            "cut at {cut}: {e:?}"
        );
        assert_eq!(e.code(), "EventLogMalformed");
    }
    // Cut at an event boundary, the rest padding: events are missing.
    let (off, ..) = recs[30];
    let mut cut = a[..off].to_vec();
    cut.resize(a.len(), 0xFF);
    let m = mismatch(verify_ccel(&cut, &q).unwrap_err());
    assert_eq!(m.rtmr, 1, "RTMR0 is complete by record 31; RTMR1 is not");
}

#[test]
fn a_log_for_another_quote_is_a_mismatch_on_rtmr0() {
    let t = "a_log_for_another_quote_is_a_mismatch_on_rtmr0";
    let (Some(a), Some(mut q)) = (area(t), quoted(t)) else {
        return;
    };
    q[0][0] ^= 0x80;
    let m = mismatch(verify_ccel(&a, &q).unwrap_err());
    assert_eq!((m.rtmr, m.events), (0, 16));
    assert_eq!(hex::encode(&m.replayed), RTMR0);
    // Another TD's RTMRs (all zero: a TD whose firmware logged nothing).
    let m = mismatch(verify_ccel(&a, &[[0; 48]; 4]).unwrap_err());
    assert_eq!(m.rtmr, 0);
}

#[test]
fn garbage_padding_and_wrong_registers_are_malformed() {
    let t = "garbage_padding_and_wrong_registers_are_malformed";
    let (Some(a), Some(q)) = (area(t), quoted(t)) else {
        return;
    };
    let malformed = |bytes: &[u8]| {
        let e = verify_ccel(bytes, &q).unwrap_err();
        assert_eq!(e.code(), "EventLogMalformed", "{e:?}");
        e
    };
    // Only padding, nothing at all.
    assert!(matches!(
        malformed(&vec![0xFF; 4096]),
        CcelError::Parse(EventLogError::Empty)
    ));
    assert!(matches!(
        malformed(&[]),
        CcelError::Parse(EventLogError::Empty)
    ));
    // Pseudo-random bytes.
    let mut x: u32 = 0x1234_5678;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    malformed(&garbage);
    // A tail of zeros then 0xFF is not padding: the zero records name MR 0.
    let mut mixed = a.clone();
    mixed[USED..USED + 64].fill(0);
    assert!(matches!(
        malformed(&mixed),
        CcelError::MrIndexOutOfRange { mr_index: 0, .. }
    ));
    // Over the cap.
    let mut big = a.clone();
    big.resize(MAX_CCEL_BYTES + 1, 0xFF);
    assert!(matches!(malformed(&big), CcelError::TooLarge { .. }));
    // An extended event on MRTD (0) or past RTMR3 (5).
    for mr in [0u32, 5] {
        let mut log = a[..USED].to_vec();
        log.extend(agile_m(mr, EV_IPL, &[SHA384], b"x"));
        let e = malformed(&log);
        assert!(
            matches!(e, CcelError::MrIndexOutOfRange { mr_index, seq: 44, event_type: EV_IPL } if mr_index == mr),
            "{e:?}"
        );
        assert!(e.to_string().contains("#44 (EV_IPL)"), "{e}");
    }
    // An EV_NO_ACTION record may name any index: it is never extended.
    let mut log = a[..USED].to_vec();
    log.extend(agile_no_action(0, &[SHA384], b"vendor"));
    assert!(verify_ccel(&log, &q).is_ok());
    // A legacy SHA-1 log, and a SHA-256-only crypto-agile log.
    let legacy = concat(&[legacy_m(1, EV_IPL, b"a")]);
    assert!(matches!(malformed(&legacy), CcelError::NotCryptoAgile));
    let sha256_only = concat(&[spec_id(&[SHA256]), agile_m(1, EV_IPL, &[SHA256], b"a")]);
    assert!(matches!(
        malformed(&sha256_only),
        CcelError::NoSha384 { seq: None }
    ));
    // SHA-384 listed, but an event without it.
    let partial = concat(&[
        spec_id(&[SHA256, SHA384]),
        agile_m(1, EV_IPL, &[SHA256, SHA384], b"a"),
        agile_m(2, EV_IPL, &[SHA256], b"b"),
    ]);
    assert!(matches!(
        malformed(&partial),
        CcelError::NoSha384 { seq: Some(2) }
    ));
}

#[test]
fn replay_is_independent_of_the_pc_client_pcr_rules() {
    // A synthetic log: RTMR n = SHA-384 extend chain from zero of its
    // events, computed here independently.
    let log = concat(&[
        spec_id(&[SHA384]),
        agile_m(1, EV_POST_CODE, &[SHA384], b"a"),
        agile_m(3, EV_IPL, &[SHA384], b"b"),
        agile_m(1, EV_SEPARATOR, &[SHA384], &[0; 4]),
    ]);
    let r = replay_ccel(&log).unwrap();
    let z = vec![0u8; 48];
    assert_eq!(
        r.rtmr[0].to_vec(),
        extend_chain(SHA384, &z, &[hash(SHA384, b"a"), hash(SHA384, &[0; 4])])
    );
    assert_eq!(
        r.rtmr[2].to_vec(),
        extend_chain(SHA384, &z, &[hash(SHA384, b"b")])
    );
    assert_eq!(r.rtmr[1], [0; 48]);
    assert_eq!(r.padding, 0);
}

/// Every truncation of the real log and a flip of every byte of it return
/// (never panic) with one of the two codes, and the flips are classified
/// as they must be: a flipped digest byte is a mismatch of the record's
/// register; a flipped event-data byte is not seen by the replay (the
/// digests are what was extended; data is unbound unless it hashes to its
/// digest, as `docs/tdx.md` says).
#[test]
fn every_truncation_and_byte_flip_returns_a_coded_result() {
    let t = "every_truncation_and_byte_flip_returns_a_coded_result";
    let (Some(a), Some(q)) = (area(t), quoted(t)) else {
        return;
    };
    let log = &a[..USED];
    for len in 0..USED {
        if let Err(e) = verify_ccel(&log[..len], &q) {
            assert!(
                ["EventLogMalformed", "EventLogReplayMismatch"].contains(&e.code()),
                "{len}: {e:?}"
            );
        }
    }
    let recs = records(&a);
    let mut m = log.to_vec();
    for i in 0..USED {
        m[i] ^= 0x5a;
        // The replay borrows `m`: keep only the verdict before restoring it.
        let r = verify_ccel(&m, &q).map(drop);
        m[i] ^= 0x5a;
        let Some(&(_, _, mr, _, digest)) = recs.iter().find(|r| (r.0..r.0 + r.1).contains(&i))
        else {
            // The Spec ID header: never extended; a flip either breaks its
            // structure or changes nothing the replay reads.
            if let Err(e) = r {
                assert_eq!(e.code(), "EventLogMalformed", "{i}: {e:?}");
            }
            continue;
        };
        if (digest..digest + 48).contains(&i) {
            let e = mismatch(r.unwrap_err());
            assert_eq!(Some(e.rtmr), rtmr_of(mr), "{i}");
        } else if i >= digest + 48 + 4 {
            assert!(r.is_ok(), "{i}: a data byte is not extended");
        } else if let Err(e) = r {
            // A header field: some other error, never a panic.
            let _ = (e.code(), e.to_string());
        }
    }
}
