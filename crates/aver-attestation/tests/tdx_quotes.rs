//! Real TDX quotes (v4, v5 with a TD 1.5 body) parse and verify through
//! the DCAP path shared with SGX, and with their real collateral give the
//! TCB verdict the vectors README gives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::collateral::{
    CollateralBundle, TcbStatus, bundle_from_named_files, verify_collateral,
};
use aver_attestation::dcap::{DcapVerifier, TrustAnchors, parse_quote};
use aver_attestation::parse_rfc3339;

fn bundle(test: &str, dir: &str) -> Option<CollateralBundle> {
    let json = aver_testkit::read_vector(test, &format!("{dir}/collateral.json"))?;
    Some(CollateralBundle::from_dcap_qvl_json(&json).unwrap())
}

#[test]
fn tdx_v4_quote_is_up_to_date_at_its_pin() {
    let test = "tdx_v4_quote_is_up_to_date_at_its_pin";
    let dir = "tdx/dcap-qvl-tdx-v4";
    let Some(bytes) = aver_testkit::read_vector(test, &format!("{dir}/quote.bin")) else {
        return;
    };
    let Some(b) = bundle(test, dir) else { return };
    let quote = parse_quote(&bytes).unwrap();
    let td = quote.td_report().unwrap();
    assert_eq!(
        hex::encode(td.mr_td),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(hex::encode(td.td_attributes), "0000001000000000");
    assert!(!td.is_debug());
    let time = parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    let c = verify_collateral(&b, &TrustAnchors::intel(), time).unwrap();
    let v = DcapVerifier::intel()
        .verify_with_collateral(&quote, &c, time)
        .unwrap();
    assert_eq!(v.status, TcbStatus::UpToDate);
    assert!(v.advisory_ids.is_empty(), "{:?}", v.advisory_ids);
    assert_eq!(v.fmspc, "B0C06F000000");
    // The two older quotes of the same platform (hex text): below every
    // level, as dcap-qvl 0.7.1 says ("No matching TCB level found").
    for name in ["tdx-quote.hex", "quote-from-tappd.hex"] {
        let Some(text) = aver_testkit::read_vector(test, &format!("{dir}/{name}")) else {
            return;
        };
        let text = String::from_utf8(text).unwrap();
        let text = text.trim().trim_start_matches("0x");
        let older = hex::decode(text).unwrap();
        let q = parse_quote(&older).unwrap();
        let e = DcapVerifier::intel()
            .verify_with_collateral(&q, &c, time)
            .unwrap_err();
        assert_eq!(e.code(), "TcbLevelNotSupported", "{name}: {e}");
    }
}

#[test]
fn tdx_v5_outdated_quote_matches_no_level() {
    let test = "tdx_v5_outdated_quote_matches_no_level";
    let dir = "tdx/dcap-qvl-tdx-v5-outdated";
    let Some(bytes) = aver_testkit::read_vector(test, &format!("{dir}/quote.bin")) else {
        return;
    };
    let Some(b) = bundle(test, dir) else { return };
    let quote = parse_quote(&bytes).unwrap();
    assert_eq!(quote.header.version, 5);
    let td = quote.td_report().unwrap();
    assert!(td.tee_tcb_svn2.is_some(), "a TD 1.5 body");
    let time = parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let c = verify_collateral(&b, &TrustAnchors::intel(), time).unwrap();
    let e = DcapVerifier::intel()
        .verify_with_collateral(&quote, &c, time)
        .unwrap_err();
    assert_eq!(e.code(), "TcbLevelNotSupported", "{e}");
}

#[test]
fn spr_e4_quote_with_pcs_bodies_matches_no_level() {
    let test = "spr_e4_quote_with_pcs_bodies_matches_no_level";
    let Some(path) = aver_testkit::vector(test, "tdx/go-tdx-guest-spr-e4") else {
        return;
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&path).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "collateral.derived.json" {
            files.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    // go-tdx-guest's capture carries 39 non-zero bytes after the signature
    // data; Aver refuses unsigned trailing bytes that are not zero, so the
    // test hands over the quote proper.
    let mut bytes = std::fs::read(path.join("quote.bin")).unwrap();
    bytes.truncate(bytes.len() - 39);
    let quote = parse_quote(&bytes).unwrap();
    let time = parse_rfc3339("2023-07-01T01:00:00Z").unwrap();
    let c = verify_collateral(
        &bundle_from_named_files(&files).unwrap(),
        &TrustAnchors::intel(),
        time,
    )
    .unwrap();
    let e = DcapVerifier::intel()
        .verify_with_collateral(&quote, &c, time)
        .unwrap_err();
    assert_eq!(e.code(), "TcbLevelNotSupported", "{e}");
}

#[test]
fn other_real_tdx_quotes_parse() {
    for path in [
        "tdx/go-tdx-guest-cos113-ccel/quote.bin",
        "tdx/trustee/tdx_quote_4.dat",
        "tdx/trustee/tdx_quote_5.dat",
        "tdx/trustee/tdx_quote_6.dat",
        "tpm/azure-cvm-vtpm-tdx/td-quote.bin",
    ] {
        let Some(bytes) = aver_testkit::read_vector("other_real_tdx_quotes_parse", path) else {
            return;
        };
        let q = parse_quote(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(q.td_report().is_some(), "{path}");
    }
    let Some(bytes) =
        aver_testkit::read_vector("other_real_tdx_quotes_parse", "tdx/trustee/tdx_quote_4.dat")
    else {
        return;
    };
    assert!(parse_quote(&bytes).unwrap().td_report().unwrap().is_debug());
}
