//! The real quotes and reports in the shared vectors parse to the identities
//! their READMEs give; malformed variants fail with the named error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::dcap::{Quote, parse_quote};
use aver_attestation::evidence::sgx::parse_openenclave_report;
use aver_codec::ParseError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

struct Expected {
    mr_enclave: &'static str,
    mr_signer: &'static str,
    product_id: u16,
    svn: u16,
    debug: bool,
    report_data: &'static str,
}

fn check(quote: &Quote<'_>, e: &Expected) {
    let b = quote.sgx_report().unwrap();
    assert_eq!(hex::encode(b.mr_enclave), e.mr_enclave);
    assert_eq!(hex::encode(b.mr_signer), e.mr_signer);
    assert_eq!(b.isv_prod_id, e.product_id);
    assert_eq!(b.isv_svn, e.svn);
    assert_eq!(b.is_debuggable(), e.debug);
    assert!(
        hex::encode(b.report_data).starts_with(e.report_data),
        "report data {}",
        hex::encode(b.report_data)
    );
    assert_eq!(quote.qe.pck_data_type, 5);
    assert!(
        quote
            .qe
            .pck_chain_pem
            .starts_with(b"-----BEGIN CERTIFICATE-----"),
        "PCK chain is PEM"
    );
}

const AZURE_SDK: Expected = Expected {
    mr_enclave: "b779202618becb636768e5d902f28d524222735fafb539ea9ba07c3fc171a1c2",
    mr_signer: "2c1a44952ae8207135c6c29b75b8c029372ee94b677e15c20bd42340f10d41aa",
    product_id: 1,
    svn: 1,
    debug: false,
    report_data: "ed11a9eb97dfc17053a32a6992e71d04f7ec996e45519ab710936afb48f9041d\
                  0000000000000000000000000000000000000000000000000000000000000000",
};

#[test]
fn azure_sdk_sgx_quote() {
    let Some(bytes) = aver_testkit::read_vector("azure_sdk_sgx_quote", "azure-sdk/sgx_quote.bin")
    else {
        return;
    };
    let quote = parse_quote(&bytes).unwrap();
    check(&quote, &AZURE_SDK);
    assert_eq!(quote.header.qe_svn, 5);
    assert_eq!(quote.header.pce_svn, 10);
    assert_eq!(quote.sgx_report().unwrap().attribute_flags(), 0x05);
    assert_eq!(quote.qe.qe_authentication_data.len(), 32);
}

#[test]
fn azure_sdk_openenclave_report() {
    let Some(bytes) =
        aver_testkit::read_vector("azure_sdk_openenclave_report", "azure-sdk/oe_report.bin")
    else {
        return;
    };
    let quote = parse_openenclave_report(&bytes).unwrap();
    assert_eq!(quote, parse_quote(&bytes[16..]).unwrap());
    check(&quote, &AZURE_SDK);
}

fn b64url_vector(test: &str, path: &str) -> Option<Vec<u8>> {
    let text = aver_testkit::read_vector(test, path)?;
    let text = String::from_utf8(text).unwrap();
    Some(URL_SAFE_NO_PAD.decode(text.trim()).unwrap())
}

#[test]
fn cpp_sdk_openenclave_reports() {
    let Some(debug) = b64url_vector("cpp_sdk_openenclave_reports", "maa/oe-report-debug.b64url")
    else {
        return;
    };
    let quote = parse_openenclave_report(&debug).unwrap();
    check(
        &quote,
        &Expected {
            mr_enclave: "292a1f4b519e46627eb2478a3d9851405653c5b4b0a6925de843834d9216850e",
            mr_signer: "4aea5f9a0ed04b11f889aadfe6a1d376213a29a95a85ce7337ae6f7fece6610c",
            product_id: 1,
            svn: 1,
            debug: true,
            report_data: "28542e44fe7e73f6610f6b31ae7576925f09ccdbb4c5646583ecc1561337a8ff",
        },
    );
    let Some(nondebug) = b64url_vector(
        "cpp_sdk_openenclave_reports",
        "maa/oe-report-nondebug.b64url",
    ) else {
        return;
    };
    let quote = parse_openenclave_report(&nondebug).unwrap();
    check(
        &quote,
        &Expected {
            report_data: "28542e44fe7e73f6610f6b31ae7576925f09ccdbb4c5646583ecc1561337a8ff",
            ..AZURE_SDK
        },
    );
}

#[test]
fn dcap_qvl_sgx_v3_quote() {
    let Some(bytes) =
        aver_testkit::read_vector("dcap_qvl_sgx_v3_quote", "sgx/dcap-qvl-sgx-v3/quote.bin")
    else {
        return;
    };
    let quote = parse_quote(&bytes).unwrap();
    check(
        &quote,
        &Expected {
            mr_enclave: "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
            mr_signer: "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
            product_id: 0,
            svn: 0,
            debug: false,
            report_data: hex_of(b"Hello, world!"),
        },
    );
    assert_eq!(
        hex::encode(quote.sgx_report().unwrap().attributes),
        "0500000000000000e700000000000000"
    );
    assert_eq!(
        hex::encode(quote.qe.qe_report.mr_signer),
        "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff"
    );
    assert_eq!(quote.qe.qe_report.isv_svn, 10);
}

fn hex_of(s: &[u8]) -> &'static str {
    Box::leak(hex::encode(s).into_boxed_str())
}

#[test]
fn trustee_occlum_debug_quote() {
    let Some(bytes) = aver_testkit::read_vector(
        "trustee_occlum_debug_quote",
        "sgx/trustee-occlum/occlum_quote.dat",
    ) else {
        return;
    };
    let quote = parse_quote(&bytes).unwrap();
    check(
        &quote,
        &Expected {
            mr_enclave: "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68",
            mr_signer: "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e",
            product_id: quote.sgx_report().unwrap().isv_prod_id,
            svn: quote.sgx_report().unwrap().isv_svn,
            debug: true,
            report_data: hex_of(b"test"),
        },
    );
}

#[test]
fn azure_samples_intel_sdk_quotes() {
    for (name, product_id, svn, debug) in [
        ("debug", 1, 1, true),
        ("release", 1, 1, false),
        ("prodid", 9999, 1, false),
        ("securityversion", 1, 8888, false),
    ] {
        let path = format!("maa/samples-intel-sdk-enclave.info.{name}.json");
        let Some(json) = aver_testkit::read_vector("azure_samples_intel_sdk_quotes", &path) else {
            return;
        };
        let info: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let quote_bytes = hex::decode(info["QuoteHex"].as_str().unwrap()).unwrap();
        let quote = parse_quote(&quote_bytes).unwrap();
        let b = quote.sgx_report().unwrap();
        assert_eq!(
            hex::encode(b.mr_enclave),
            info["MrEnclaveHex"].as_str().unwrap().to_lowercase(),
            "{name}"
        );
        assert_eq!(
            hex::encode(b.mr_signer),
            info["MrSignerHex"].as_str().unwrap().to_lowercase(),
            "{name}"
        );
        assert_eq!(b.isv_prod_id, product_id, "{name}");
        assert_eq!(b.isv_svn, svn, "{name}");
        assert_eq!(b.is_debuggable(), debug, "{name}");
    }
}

#[test]
fn intel_synthetic_quote_has_unsupported_certification_type() {
    let Some(bytes) = aver_testkit::read_vector(
        "intel_synthetic_quote_has_unsupported_certification_type",
        "sgx/intel-qvl-synthetic-testroot/quote.dat",
    ) else {
        return;
    };
    assert!(matches!(
        parse_quote(&bytes),
        Err(ParseError::Invalid {
            field: "signature_data.certification_data_type",
            ..
        })
    ));
}

// ---- malformed input -------------------------------------------------------

fn azure_quote() -> Option<Vec<u8>> {
    aver_testkit::read_vector("malformed", "azure-sdk/sgx_quote.bin")
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let Some(bytes) = azure_quote() else { return };
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        assert!(parse_quote(cut).is_err(), "truncated at {len} must fail");
    }
    let Some(report) = aver_testkit::read_vector("truncation", "azure-sdk/oe_report.bin") else {
        return;
    };
    for len in 0..report.len() {
        assert!(
            parse_openenclave_report(&report[..len]).is_err(),
            "OE at {len}"
        );
    }
}

#[test]
fn every_single_byte_mutation_is_handled() {
    let Some(bytes) = azure_quote() else { return };
    // Flip every byte of the structural prefix and a stride of the rest:
    // whatever the outcome, parsing must return, not panic.
    for i in (0..bytes.len()).step_by(3) {
        let mut m = bytes.clone();
        m[i] ^= 0xff;
        let _ = parse_quote(&m);
    }
}

#[test]
fn region_mutations_give_the_specific_error() {
    let Some(bytes) = azure_quote() else { return };
    let set = |at: usize, val: &[u8]| {
        let mut m = bytes.clone();
        m[at..at + val.len()].copy_from_slice(val);
        m
    };
    assert!(matches!(
        parse_quote(&set(0, &7u16.to_le_bytes())),
        Err(ParseError::Invalid {
            field: "header.version",
            ..
        })
    ));
    assert!(matches!(
        parse_quote(&set(2, &3u16.to_le_bytes())),
        Err(ParseError::Invalid {
            field: "header.attestation_key_type",
            ..
        })
    ));
    // A v3 quote must be SGX (TEE type 0).
    assert!(matches!(
        parse_quote(&set(4, &0x81u32.to_le_bytes())),
        Err(ParseError::Invalid {
            field: "header.tee_type",
            ..
        })
    ));
    // Signature data length larger than the quote.
    let big = set(432, &(bytes.len() as u32).to_le_bytes());
    assert!(matches!(
        parse_quote(&big),
        Err(ParseError::Truncated {
            field: "signature_data",
            ..
        })
    ));
    // Signature data length shorter than its contents.
    let sig_len = u32::from_le_bytes(bytes[432..436].try_into().unwrap());
    let short = set(432, &(sig_len - 1).to_le_bytes());
    assert!(parse_quote(&short).is_err());
    // QE authentication data size pointing past the end.
    let auth_at = 436 + 64 + 64 + 384 + 64;
    let auth = set(auth_at, &0xffffu16.to_le_bytes());
    assert!(matches!(
        parse_quote(&auth),
        Err(ParseError::Truncated { .. }) | Err(ParseError::Trailing { .. })
    ));
    // Certification data type and size.
    let auth_len = u16::from_le_bytes(bytes[auth_at..auth_at + 2].try_into().unwrap()) as usize;
    let cert_at = auth_at + 2 + auth_len;
    assert!(matches!(
        parse_quote(&set(cert_at, &3u16.to_le_bytes())),
        Err(ParseError::Invalid {
            field: "signature_data.certification_data_type",
            ..
        })
    ));
    assert!(matches!(
        parse_quote(&set(cert_at + 2, &(1u32 << 20).to_le_bytes())),
        Err(ParseError::TooLarge {
            field: "signature_data.certification_data_size",
            ..
        })
    ));
    // Trailing garbage is rejected, zero padding accepted.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    assert!(parse_quote(&trailing).is_ok());
    trailing.push(1);
    assert!(matches!(
        parse_quote(&trailing),
        Err(ParseError::Invalid { field: "quote", .. })
    ));
}

#[test]
fn openenclave_header_is_checked() {
    let Some(report) = aver_testkit::read_vector("oe_header", "azure-sdk/oe_report.bin") else {
        return;
    };
    let mut m = report.clone();
    m[0] = 2;
    assert!(matches!(
        parse_openenclave_report(&m),
        Err(ParseError::Invalid {
            field: "oe_header.version",
            ..
        })
    ));
    let mut m = report.clone();
    m[4] = 1;
    assert!(matches!(
        parse_openenclave_report(&m),
        Err(ParseError::Invalid {
            field: "oe_header.type",
            ..
        })
    ));
    let mut m = report.clone();
    m[8] ^= 1;
    assert!(matches!(
        parse_openenclave_report(&m),
        Err(ParseError::Invalid {
            field: "oe_header.size",
            ..
        })
    ));
}
