//! PCR files: tpm2-tools' serialized format (real swtpm files, every
//! truncation and byte flip, generated negatives) and the JSON format.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use aver_testkit::read_vector;
use aver_tpm::pcrfile::{
    DIGEST_LIST_LEN, PcrFileFormat, SELECTION_LEN, detect_pcr_file_format, parse_pcr_json,
    parse_tpm2_tools_pcrs,
};
use aver_tpm::reader::ParseError;
use aver_tpm::structures::parse_public2b;
use aver_tpm::{
    AkPublicKey, HashAlg, PcrFileError, PcrValues, parse_pcr_file, parse_signature, verify_quote,
};
use common::*;
use std::collections::BTreeMap;

const PCR16: &str = "9851312028952521510e8eaab5be94e7dc24b5fc292b2e9781173cf11ffa9878";
const PCR23: &str = "63a2cc09272ae4d03d8ae482a394d209bf2dfd1449f1dd75552198264a168ac3";

fn swtpm_expected() -> PcrValues {
    BTreeMap::from([(
        HashAlg::Sha256,
        BTreeMap::from([
            (0, vec![0u8; 32]),
            (16, hex::decode(PCR16).expect("hex")),
            (23, hex::decode(PCR23).expect("hex")),
        ]),
    )])
}

// ---------------------------------------------------------------------------
// A builder for serialized files
// ---------------------------------------------------------------------------

/// One TPMS_PCR_SELECTION slot: hash, sizeofSelect, pcrSelect, padding.
#[derive(Clone, Copy)]
struct Sel {
    hash: u16,
    size: u8,
    select: [u8; 4],
    pad: u8,
}

fn sel(hash: u16, pcrs: &[u32]) -> Sel {
    let mut select = [0u8; 4];
    for &p in pcrs {
        select[(p / 8) as usize] |= 1 << (p % 8);
    }
    Sel {
        hash,
        size: 3,
        select,
        pad: 0,
    }
}

/// One TPM2B_DIGEST: (size field, bytes in the buffer).
type Digest = (u16, Vec<u8>);
/// One TPML_DIGEST: (count field, digests).
type DigestList = (u32, Vec<Digest>);

/// A serialized file: `count` selection entries (the slots beyond are
/// filled with `filler`, as unused memory may be), then the digest lists.
/// Each list is (count field, digests as (size field, bytes)).
fn serialized(count: u32, sels: &[Sel], filler: u8, lists: &[DigestList]) -> Vec<u8> {
    let mut v = count.to_le_bytes().to_vec();
    for i in 0..16 {
        match sels.get(i) {
            Some(s) => {
                v.extend_from_slice(&s.hash.to_le_bytes());
                v.push(s.size);
                v.extend_from_slice(&s.select);
                v.push(s.pad);
            }
            None => v.extend_from_slice(&[filler; 8]),
        }
    }
    v.extend_from_slice(&(lists.len() as u32).to_le_bytes());
    for (n, digests) in lists {
        v.extend_from_slice(&n.to_le_bytes());
        for i in 0..8 {
            let (size, bytes) = digests.get(i).cloned().unwrap_or((0, vec![]));
            v.extend_from_slice(&size.to_le_bytes());
            let mut buf = bytes;
            buf.resize(64, filler);
            v.extend_from_slice(&buf);
        }
    }
    v
}

/// A well-formed file for `sels` whose values are `value(bank, pcr)`,
/// split into lists of 8 like TPM2_PCR_Read returns them.
fn well_formed(sels: &[Sel], filler: u8) -> (Vec<u8>, PcrValues) {
    let mut digests = Vec::new();
    let mut want = PcrValues::new();
    for s in sels {
        let bank = HashAlg::from_tpm(s.hash).expect("bank");
        for p in 0..24u32 {
            if s.select[(p / 8) as usize] & (1 << (p % 8)) != 0 {
                let value: Vec<u8> = (0..bank.size()).map(|i| (i as u32 + p) as u8).collect();
                digests.push((bank.size() as u16, value.clone()));
                want.entry(bank).or_default().insert(p, value);
            }
        }
    }
    let lists: Vec<DigestList> = digests
        .chunks(8)
        .map(|c| (c.len() as u32, c.to_vec()))
        .collect();
    (serialized(sels.len() as u32, sels, filler, &lists), want)
}

// ---------------------------------------------------------------------------
// Real files
// ---------------------------------------------------------------------------

#[test]
fn swtpm_quote_pcr_files_parse_and_verify_the_quotes() {
    let t = "swtpm_quote_pcr_files_parse_and_verify_the_quotes";
    let Some(nonce) = read_vector(t, &format!("{SWTPM}/nonce.hex")) else {
        return;
    };
    let nonce = hex::decode(String::from_utf8(nonce).expect("utf8").trim()).expect("hex");
    for (pcrs, msg, sig) in [
        ("quote.pcrs", "quote.msg", "quote.sig"),
        ("quoteec.pcrs", "quoteec.msg", "quoteec.sig"),
    ] {
        let Some(bytes) = read_vector(t, &format!("{SWTPM}/{pcrs}")) else {
            return;
        };
        assert_eq!(bytes.len(), SELECTION_LEN + 4 + DIGEST_LIST_LEN);
        assert_eq!(
            detect_pcr_file_format(&bytes),
            PcrFileFormat::Tpm2ToolsSerialized
        );
        let values = parse_pcr_file(&bytes).unwrap_or_else(|e| panic!("{pcrs}: {e}"));
        assert_eq!(values, swtpm_expected(), "{pcrs}");
        assert_eq!(parse_tpm2_tools_pcrs(&bytes), Ok(values.clone()));

        // The parsed values are exactly what the quote's pcrDigest covers.
        let Some(attest) = read_vector(t, &format!("{SWTPM}/{msg}")) else {
            return;
        };
        let Some(sig) = read_vector(t, &format!("{SWTPM}/{sig}")) else {
            return;
        };
        let ak = if msg == "quote.msg" {
            let Some(p) = read_vector(t, &format!("{SWTPM}/ak.tpm2b_public")) else {
                return;
            };
            AkPublicKey::from_public(&parse_public2b(&p).expect("ak")).expect("ak")
        } else {
            let Some(p) = read_vector(t, &format!("{SWTPM}/akec.pub")) else {
                return;
            };
            AkPublicKey::from_spki_der(&pem_der(&p)).expect("akec")
        };
        let sig = parse_signature(&sig).expect("sig");
        let v = verify_quote(&attest, &sig, &ak, &nonce, &values).expect("quote verifies");
        assert_eq!(
            v.selected,
            vec![
                (HashAlg::Sha256, 0),
                (HashAlg::Sha256, 16),
                (HashAlg::Sha256, 23)
            ]
        );
    }
}

#[test]
fn swtpm_pcr_file_truncated_at_every_length_is_an_error() {
    let t = "swtpm_pcr_file_truncated_at_every_length_is_an_error";
    let Some(bytes) = read_vector(t, &format!("{SWTPM}/quote.pcrs")) else {
        return;
    };
    assert_eq!(parse_tpm2_tools_pcrs(&[]), Err(PcrFileError::Empty));
    assert_eq!(parse_pcr_file(&[]), Err(PcrFileError::Empty));
    for len in 1..bytes.len() {
        let cut = &bytes[..len];
        let err = parse_pcr_file(cut).expect_err("truncated file must fail");
        assert_eq!(err, parse_tpm2_tools_pcrs(cut).expect_err("same"), "{len}");
        if len < SELECTION_LEN + 4 {
            assert!(
                matches!(err, PcrFileError::Malformed(ParseError::Truncated { .. })),
                "{len}: {err:?}"
            );
        } else {
            assert_eq!(
                err,
                PcrFileError::Length {
                    len,
                    lists: 1,
                    expected: bytes.len()
                },
                "{len}"
            );
            assert!(
                err.to_string().contains(&format!("is {len} bytes")),
                "{err}"
            );
        }
    }
    // One byte too many is an error too.
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        parse_pcr_file(&long),
        Err(PcrFileError::Length { len: 669, .. })
    ));
}

#[test]
fn swtpm_pcr_file_every_byte_flip_returns() {
    let t = "swtpm_pcr_file_every_byte_flip_returns";
    let Some(bytes) = read_vector(t, &format!("{SWTPM}/quote.pcrs")) else {
        return;
    };
    let mut m = bytes.clone();
    let mut ok = 0;
    for i in 0..m.len() {
        for x in [0xffu8, 0x01, 0x80] {
            m[i] ^= x;
            if let Ok(v) = parse_pcr_file(&m) {
                ok += 1;
                // Whatever parses has well-formed values.
                for (bank, vals) in &v {
                    for (pcr, val) in vals {
                        assert!(*pcr <= 23);
                        assert_eq!(val.len(), bank.size());
                    }
                }
            }
            m[i] ^= x;
        }
    }
    // Flips in padding, unused slots and value bytes still parse.
    assert!(ok > 1000, "{ok}");
}

// ---------------------------------------------------------------------------
// Generated serialized files
// ---------------------------------------------------------------------------

#[test]
fn multi_bank_multi_list_files_follow_selection_order() {
    // sha1 + sha256, PCRs 0–23 each: 48 values in 6 lists. Unused slots,
    // padding, select bytes beyond sizeofSelect and buffer tails hold
    // garbage, which must be ignored.
    let mut a = sel(0x0004, &(0..24).collect::<Vec<_>>());
    a.pad = 0xee;
    a.select[3] = 0xff; // beyond sizeofSelect = 3
    let b = sel(0x000b, &(0..24).collect::<Vec<_>>());
    let (bytes, want) = well_formed(&[a, b], 0xcc);
    assert_eq!(bytes.len(), SELECTION_LEN + 4 + 6 * DIGEST_LIST_LEN);
    assert_eq!(parse_pcr_file(&bytes), Ok(want));

    // The same PCRs split over two entries of one bank.
    let (bytes, want) = well_formed(&[sel(0x000b, &[0, 7]), sel(0x000b, &[16, 23])], 0);
    let got = parse_pcr_file(&bytes).expect("parses");
    assert_eq!(got, want);
    assert_eq!(got[&HashAlg::Sha256].len(), 4);

    // sha384 / sha512 and an empty selection with no lists.
    let (bytes, want) = well_formed(&[sel(0x000c, &[1]), sel(0x000d, &[2])], 0);
    assert_eq!(parse_pcr_file(&bytes), Ok(want));
    let empty = serialized(0, &[], 0, &[]);
    assert_eq!(parse_pcr_file(&empty), Ok(PcrValues::new()));
    // An unknown algorithm that selects nothing is irrelevant.
    let (bytes, want) = well_formed(&[sel(0x000b, &[4])], 0);
    let mut with_unused = bytes.clone();
    with_unused[0] = 2; // count 2: slot 1 is all zero (hash 0, nothing selected)
    assert_eq!(parse_pcr_file(&with_unused), Ok(want));
}

#[test]
fn generated_negatives_name_what_is_wrong_and_where() {
    let d32 = |b: u8| (32u16, vec![b; 32]);
    let ok_lists = vec![(1u32, vec![d32(1)])];
    let one = [sel(0x000b, &[16])];

    // Selection count above 16.
    let f = serialized(17, &one, 0, &ok_lists);
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::SelectionCount { count: 17 })
    );
    // sizeofSelect above 4, in entry 1 (offset 4 + 8).
    let mut bad = sel(0x000b, &[1]);
    bad.size = 5;
    let f = serialized(2, &[one[0], bad], 0, &ok_lists);
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::SelectSize {
            entry: 1,
            offset: 12,
            size: 5
        })
    );
    // A bank Aver cannot hash (SM3_256) with PCRs selected.
    let f = serialized(1, &[sel(0x0012, &[0])], 0, &ok_lists);
    let err = parse_pcr_file(&f).expect_err("sm3");
    assert_eq!(
        err,
        PcrFileError::UnsupportedBank {
            entry: 0,
            offset: 4,
            alg: 0x0012
        }
    );
    assert!(err.to_string().contains("0x0012"), "{err}");
    // PCR 24 (sizeofSelect 4, byte 3 bit 0).
    let mut s = sel(0x000b, &[]);
    s.size = 4;
    s.select[3] = 1;
    let f = serialized(1, &[s], 0, &ok_lists);
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::PcrIndexOutOfRange {
            bank: HashAlg::Sha256,
            pcr: 24
        })
    );
    // The same PCR selected by two entries.
    let f = serialized(
        2,
        &[sel(0x000b, &[3]), sel(0x000b, &[3])],
        0,
        &[(2, vec![d32(1), d32(2)])],
    );
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::DuplicatePcr {
            bank: HashAlg::Sha256,
            pcr: 3
        })
    );
    // More than 32 digest lists (checked before the length).
    let mut f = serialized(1, &one, 0, &ok_lists);
    f[SELECTION_LEN..SELECTION_LEN + 4].copy_from_slice(&33u32.to_le_bytes());
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::DigestListCount { count: 33 })
    );
    // A huge list count is not an allocation.
    f[SELECTION_LEN..SELECTION_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse_pcr_file(&f),
        Err(PcrFileError::DigestListCount { .. })
    ));
    // TPML_DIGEST.count above 8, in list 1.
    let f = serialized(1, &one, 0, &[(1, vec![d32(1)]), (9, vec![])]);
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::DigestCount {
            list: 1,
            offset: SELECTION_LEN + 4 + DIGEST_LIST_LEN,
            count: 9
        })
    );
    // TPM2B_DIGEST.size above 64 (digest 0 of list 0).
    let f = serialized(1, &one, 0, &[(1, vec![(65, vec![0; 64])])]);
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::DigestSizeField {
            list: 0,
            index: 0,
            offset: SELECTION_LEN + 8,
            size: 65
        })
    );
    // Fewer and more digests than selected PCRs.
    let f = serialized(1, &[sel(0x000b, &[0, 16])], 0, &ok_lists);
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::ValueCount {
            selected: 2,
            values: 1
        })
    );
    let f = serialized(1, &one, 0, &[(2, vec![d32(1), d32(2)])]);
    assert_eq!(
        parse_pcr_file(&f),
        Err(PcrFileError::ValueCount {
            selected: 1,
            values: 2
        })
    );
    // A SHA-1-sized value in the sha256 bank.
    let f = serialized(1, &one, 0, &[(1, vec![(20, vec![7; 20])])]);
    let err = parse_pcr_file(&f).expect_err("length");
    assert_eq!(
        err,
        PcrFileError::DigestLength {
            bank: HashAlg::Sha256,
            pcr: 16,
            len: 20,
            expected: 32
        }
    );
    assert_eq!(
        err.to_string(),
        "sha256 PCR 16: value is 20 bytes, a sha256 digest is 32"
    );
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

#[test]
fn json_pcr_values() {
    let z32 = "00".repeat(32);
    let text = format!(
        r#" {{"_comment": {{"from": "tpm2_pcrread", "x": [1, null, true]}},
            "SHA256": {{"0": "{z32}", "16": "{PCR16}", "23": " {} "}},
            "sha1": {{}} }}"#,
        PCR23.to_uppercase()
    );
    assert_eq!(detect_pcr_file_format(text.as_bytes()), PcrFileFormat::Json);
    let mut want = swtpm_expected();
    want.insert(HashAlg::Sha1, BTreeMap::new());
    assert_eq!(parse_pcr_file(text.as_bytes()), Ok(want.clone()));
    assert_eq!(parse_pcr_json(text.as_bytes()), Ok(want));
}

#[test]
fn json_negatives() {
    let v32 = "11".repeat(32);
    let cases: Vec<(String, PcrFileError)> = vec![
        (
            format!(r#"{{"sm3_256": {{"0": "{v32}"}}}}"#),
            PcrFileError::UnknownBank("sm3_256".into()),
        ),
        (
            format!(r#"{{"sha256": {{"0": "{v32}"}}, "SHA256": {{"1": "{v32}"}}}}"#),
            PcrFileError::DuplicateBank("SHA256".into()),
        ),
        (
            format!(r#"{{"sha256": {{"0": "{v32}"}}, "sha256": {{"1": "{v32}"}}}}"#),
            PcrFileError::DuplicateBank("sha256".into()),
        ),
        (
            r#"{"sha256": ["00"]}"#.into(),
            PcrFileError::BankNotObject("sha256".into()),
        ),
        (
            format!(r#"{{"sha256": {{"0": "{v32}", "0": "{v32}"}}}}"#),
            PcrFileError::DuplicatePcr {
                bank: HashAlg::Sha256,
                pcr: 0,
            },
        ),
        (
            format!(r#"{{"sha256": {{"7": "{v32}", "07": "{v32}"}}}}"#),
            PcrFileError::DuplicatePcr {
                bank: HashAlg::Sha256,
                pcr: 7,
            },
        ),
        (
            format!(r#"{{"sha256": {{"1": "{}"}}}}"#, "11".repeat(20)),
            PcrFileError::DigestLength {
                bank: HashAlg::Sha256,
                pcr: 1,
                len: 20,
                expected: 32,
            },
        ),
        (
            r#"{"sha1": {"2": "xyz"}}"#.into(),
            PcrFileError::NotHex {
                bank: HashAlg::Sha1,
                pcr: 2,
            },
        ),
        (
            r#"{"sha1": {"2": 5}}"#.into(),
            PcrFileError::NotHex {
                bank: HashAlg::Sha1,
                pcr: 2,
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_pcr_file(text.as_bytes()), Err(want), "{text}");
    }
    for key in ["24", "-1", "+1", "0x1", "", "one", "99999999999"] {
        let text = format!(r#"{{"sha256": {{"{key}": "{v32}"}}}}"#);
        assert_eq!(
            parse_pcr_file(text.as_bytes()),
            Err(PcrFileError::BadPcrIndex {
                bank: "sha256".into(),
                key: key.into()
            }),
            "{key}"
        );
    }
    // Not an object, and not JSON at all but starting like it.
    for text in ["[1, 2]", "\"sha256\"", "{\"sha256\": {\"0\": ", "{oops}"] {
        let err = parse_pcr_file(text.as_bytes()).expect_err(text);
        assert!(matches!(err, PcrFileError::Json(_)), "{text}: {err:?}");
    }
    let err = parse_pcr_json(b"{\n  \"sha256\": {\"0\": 1,}\n}").expect_err("syntax");
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_eq!(parse_pcr_json(b""), Err(PcrFileError::Empty));
    assert_eq!(parse_pcr_json(b"{}"), Ok(PcrValues::new()));
}
