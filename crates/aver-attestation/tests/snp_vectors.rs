//! Real SEV-SNP reports (virtee Milan, trustee VCEK and VLEK, an Azure
//! confidential VM's HCL report) verify with their AMD chains at a pinned
//! time; mutating every byte, truncating at every length, invalid VCEKs,
//! expired certificates and foreign roots give their specific errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::evidence::snp::certs::split_chain;
use aver_attestation::evidence::snp::report::REPORT_LEN;
use aver_attestation::evidence::snp::{
    KeyKind, Product, SnpError, SnpTrust, parse_evidence, verify_report,
};
use aver_attestation::{VerificationTime, parse_rfc3339};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn at(text: &str) -> VerificationTime {
    parse_rfc3339(text).unwrap()
}

/// Inside every real certificate's validity (the VLEK's ends 2025-12-10).
const PINNED: &str = "2025-06-01T00:00:00Z";

struct Case {
    report: Vec<u8>,
    certs: Vec<Vec<u8>>,
}

fn read(test: &str, rel: &str) -> Option<Vec<u8>> {
    aver_testkit::read_vector(test, rel)
}

fn chain(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().flat_map(|p| split_chain(p).unwrap()).collect()
}

fn milan(test: &str) -> Option<Case> {
    let report = read(test, "sev-snp/virtee-milan-turin/report_milan.bin")?;
    let vcek = read(test, "sev-snp/virtee-milan-turin/vcek_milan.der")?;
    let rest = read(test, "sev-snp/virtee-milan-turin/cert_chain_milan")?;
    Some(Case {
        report,
        certs: chain(&[&vcek, &rest]),
    })
}

fn verify(
    case: &Case,
    time: &str,
) -> Result<aver_attestation::evidence::snp::VerifiedSnp, SnpError> {
    verify_report(
        &SnpTrust::amd(),
        &case.report,
        &case.certs,
        None,
        None,
        at(time),
    )
}

#[test]
fn virtee_milan_report_verifies() {
    let Some(case) = milan("virtee_milan_report_verifies") else {
        return;
    };
    let v = verify(&case, PINNED).unwrap();
    assert_eq!(v.version, 2);
    assert_eq!(v.policy, 0x30000);
    assert_eq!(
        hex::encode(v.measurement),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(v.reported_tcb.bootloader, 3);
    assert_eq!(v.reported_tcb.snp, 8);
    assert_eq!(v.reported_tcb.microcode, 0x73);
    assert_eq!(v.signing_key, KeyKind::Vcek);
    assert_eq!(v.product, Product::Milan);
    assert_eq!(v.root, "AMD ARK-Milan");
    assert!(hex::encode(v.chip_id).starts_with("d49554ec"));
}

#[test]
fn a_vcek_alone_is_completed_with_the_built_in_ask_and_ark() {
    let test = "a_vcek_alone_is_completed_with_the_built_in_ask_and_ark";
    let Some(mut case) = milan(test) else { return };
    case.certs.truncate(1);
    verify(&case, PINNED).unwrap();
    case = milan(test).unwrap();
    case.certs.truncate(2);
    verify(&case, PINNED).unwrap();
}

#[test]
fn trustee_vcek_report_verifies_and_invalid_vceks_fail_their_signature() {
    let test = "trustee_vcek_report_verifies_and_invalid_vceks_fail_their_signature";
    let Some(report) = read(test, "sev-snp/trustee/test-report.bin") else {
        return;
    };
    let good = read(test, "sev-snp/trustee/test-vcek.der").unwrap();
    let v = verify(
        &Case {
            report: report.clone(),
            certs: vec![good],
        },
        PINNED,
    )
    .unwrap();
    assert_eq!(v.guest_svn, 4);
    assert_eq!(v.policy, 0x3001f);
    assert!(!v.is_debuggable);
    assert_eq!(
        hex::encode(v.measurement),
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    for bad in [
        "sev-snp/trustee/test-vcek-invalid-legacy.der",
        "sev-snp/trustee/test-vcek-invalid-new.der",
    ] {
        let der = read(test, bad).unwrap();
        let err = verify(
            &Case {
                report: report.clone(),
                certs: vec![der],
            },
            PINNED,
        )
        .unwrap_err();
        // Their own signature (by the ASK) is broken: the chain fails.
        assert_eq!(err.code(), "CertificateChainInvalid", "{bad}: {err}");
        assert!(err.to_string().contains("does not verify"), "{err}");
    }
}

#[test]
fn trustee_vlek_report_verifies_before_the_vlek_expires() {
    let test = "trustee_vlek_report_verifies_before_the_vlek_expires";
    let Some(report) = read(test, "sev-snp/trustee/test-vlek-report.bin") else {
        return;
    };
    let vlek = read(test, "sev-snp/trustee/test-vlek.der").unwrap();
    let asvk_ark = read(test, "sev-snp/trustee/milanvlek.testcer").unwrap();
    let case = Case {
        report,
        certs: chain(&[&vlek, &asvk_ark]),
    };
    let v = verify(&case, PINNED).unwrap();
    assert_eq!(v.version, 3);
    assert_eq!(v.vmpl, 1);
    assert_eq!(v.signing_key, KeyKind::Vlek);
    assert!(v.chip_id.iter().all(|b| *b == 0));
    assert!(hex::encode(v.measurement).starts_with("8922ebbd"));
    let err = verify(&case, "2025-12-11T00:00:00Z").unwrap_err();
    assert_eq!(err.code(), "CertificateExpired", "{err}");
    // A VLEK report claiming to be VCEK-signed (SIGNING_KEY bits 4:2 = 0).
    let mut as_vcek = Case {
        report: case.report.clone(),
        certs: case.certs.clone(),
    };
    as_vcek.report[0x48] &= !0b11100;
    let err = verify(&as_vcek, PINNED).unwrap_err();
    assert_eq!(err.code(), "SnpSigningKeyMismatch", "{err}");
}

/// The SNP report inside an Azure confidential VM's HCL report, with the
/// HCL runtime JSON as runtime data (SHA-256 = REPORT_DATA[0..32]).
#[test]
fn azure_cvm_hcl_report_verifies_with_its_runtime_json() {
    let test = "azure_cvm_hcl_report_verifies_with_its_runtime_json";
    let Some(hcl) = read(test, "tpm/azure-cvm-vtpm-snp/hcl-report.bin") else {
        return;
    };
    let pem = read(test, "tpm/azure-cvm-vtpm-snp/vcek.pem").unwrap();
    let report = hcl[32..32 + REPORT_LEN].to_vec();
    let len = u32::from_le_bytes(hcl[1232..1236].try_into().unwrap()) as usize;
    let runtime = &hcl[1236..1236 + len];
    let certs = split_chain(&pem).unwrap();
    assert_eq!(certs.len(), 3);
    let v = verify_report(
        &SnpTrust::amd(),
        &report,
        &certs,
        Some(runtime),
        None,
        at(PINNED),
    )
    .unwrap();
    assert!(v.runtime_data_bound);
    assert_eq!(
        hex::encode(v.measurement),
        "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
    );
    let err = verify_report(
        &SnpTrust::amd(),
        &report,
        &certs,
        Some(b"other runtime data"),
        None,
        at(PINNED),
    )
    .unwrap_err();
    assert_eq!(err.code(), "RuntimeDataMismatch");
    let err = verify_report(
        &SnpTrust::amd(),
        &report,
        &certs,
        Some(runtime),
        Some(b"init time data"),
        at(PINNED),
    )
    .unwrap_err();
    assert_eq!(err.code(), "InitTimeDataMismatch");
}

#[test]
fn turin_vcek_chain_verifies_to_the_built_in_turin_ark() {
    let test = "turin_vcek_chain_verifies_to_the_built_in_turin_ark";
    let Some(vcek) = read(test, "sev-snp/virtee-milan-turin/vcek_turin.der") else {
        return;
    };
    let rest = read(test, "sev-snp/virtee-milan-turin/cert_chain_turin").unwrap();
    let chain = SnpTrust::amd()
        .verify_chain(&chain(&[&vcek, &rest]), at(PINNED))
        .unwrap();
    assert_eq!(chain.product, Product::Turin);
    assert_eq!(chain.hwid.as_ref().map(Vec::len), Some(8));
    assert!(chain.tcb.fmc.is_some());
    assert_eq!(chain.tcb.microcode, Some(9));
}

#[test]
fn expired_and_not_yet_valid_vceks_are_refused() {
    let Some(case) = milan("expired_and_not_yet_valid_vceks_are_refused") else {
        return;
    };
    // VCEK Milan: 2023-04-03 .. 2030-04-03.
    let err = verify(&case, "2030-04-04T00:00:00Z").unwrap_err();
    assert_eq!(err.code(), "CertificateExpired", "{err}");
    let err = verify(&case, "2023-04-01T00:00:00Z").unwrap_err();
    assert_eq!(err.code(), "CertificateNotYetValid", "{err}");
}

#[test]
fn foreign_roots_are_refused() {
    let test = "foreign_roots_are_refused";
    let Some(case) = milan(test) else { return };
    // Nothing trusted.
    let err = verify_report(
        &SnpTrust::empty(),
        &case.report,
        &case.certs,
        None,
        None,
        at(PINNED),
    )
    .unwrap_err();
    assert_eq!(err.code(), "UntrustedRoot", "{err}");
    // The Genoa ARK at the end of a Milan chain.
    let genoa = read(test, "sev-snp/virtee-builtin-ark-ask/genoa_ark.pem").unwrap();
    let mut certs = case.certs.clone();
    certs[2] = split_chain(&genoa).unwrap().remove(0);
    let err = verify_report(
        &SnpTrust::amd(),
        &case.report,
        &certs,
        None,
        None,
        at(PINNED),
    )
    .unwrap_err();
    assert_eq!(err.code(), "UntrustedRoot", "{err}");
    // Trusting only Genoa's ARK.
    let mut only_genoa = SnpTrust::empty();
    only_genoa.add_ark_pem(&genoa, "genoa").unwrap();
    let err = verify_report(
        &only_genoa,
        &case.report,
        &case.certs,
        None,
        None,
        at(PINNED),
    )
    .unwrap_err();
    assert_eq!(err.code(), "UntrustedRoot", "{err}");
    // The chain out of order.
    let mut swapped = case.certs.clone();
    swapped.swap(1, 2);
    let err = verify_report(
        &SnpTrust::amd(),
        &case.report,
        &swapped,
        None,
        None,
        at(PINNED),
    )
    .unwrap_err();
    assert_eq!(err.code(), "CertificateChainMalformed", "{err}");
    // No chain at all.
    let err =
        verify_report(&SnpTrust::amd(), &case.report, &[], None, None, at(PINNED)).unwrap_err();
    assert_eq!(err.code(), "SnpCertificateChainMissing", "{err}");
}

/// The error each byte of a v2 report gives when flipped.
fn expected_code(offset: usize, mask: u8) -> &'static str {
    match offset {
        // Version 2 → 3 is a supported version whose signature fails.
        0x00 if mask == 0x01 => "SnpReportSignatureInvalid",
        0x00..=0x03 => "SnpReportVersionUnsupported",
        // Policy: bit 17 (byte 0x0A bit 1) must be set, bits 63:26 clear.
        0x0A if mask & 0b10 != 0 => "SnpGuestPolicyInvalid",
        0x0B if mask & !0b11 != 0 => "SnpGuestPolicyInvalid",
        0x0C..=0x0F => "SnpGuestPolicyInvalid",
        // VMPL above 3.
        0x30 if mask & !0b11 != 0 => "SnpReservedFieldNonZero",
        0x31..=0x33 => "SnpReservedFieldNonZero",
        0x34..=0x37 => "SnpSignatureAlgorithmUnsupported",
        // SIGNING_KEY bits 4:2 (VCEK → another value), then reserved bits.
        0x48 if mask & 0b1110_0000 != 0 => "SnpReservedFieldNonZero",
        0x48 if mask & 0b1_1100 != 0 => "SnpSigningKeyMismatch",
        0x49..=0x4F => "SnpReservedFieldNonZero",
        0x188..=0x19F => "SnpReservedFieldNonZero",
        0x1EB | 0x1EF => "SnpReservedFieldNonZero",
        0x1F8..=0x29F => "SnpReservedFieldNonZero",
        // R and S beyond 48 bytes.
        0x2D0..=0x2E7 | 0x318..=0x32F => "SnpReportSignatureInvalid",
        0x330.. => "SnpReservedFieldNonZero",
        _ => "SnpReportSignatureInvalid",
    }
}

#[test]
fn every_byte_mutated_gives_its_regions_error() {
    let Some(case) = milan("every_byte_mutated_gives_its_regions_error") else {
        return;
    };
    for offset in 0..REPORT_LEN {
        for mask in [0x01u8, 0x80] {
            let mut report = case.report.clone();
            report[offset] ^= mask;
            let err = verify_report(
                &SnpTrust::amd(),
                &report,
                &case.certs,
                None,
                None,
                at(PINNED),
            )
            .expect_err(&format!(
                "flipping 0x{mask:02x} at 0x{offset:03x} must fail"
            ));
            assert_eq!(
                err.code(),
                expected_code(offset, mask),
                "flip 0x{mask:02x} at 0x{offset:03x}: {err}"
            );
        }
    }
}

#[test]
fn truncation_at_every_length_is_malformed() {
    let Some(case) = milan("truncation_at_every_length_is_malformed") else {
        return;
    };
    let mut longer = case.report.clone();
    longer.push(0);
    for len in (0..REPORT_LEN).chain([REPORT_LEN + 1]) {
        let err = verify_report(
            &SnpTrust::amd(),
            &longer[..len],
            &case.certs,
            None,
            None,
            at(PINNED),
        )
        .unwrap_err();
        assert_eq!(err.code(), "SnpReportMalformed", "length {len}: {err}");
    }
}

#[test]
fn azure_evidence_wrapper_decodes() {
    let test = "azure_evidence_wrapper_decodes";
    let Some(report) = read(test, "sev-snp/virtee-milan-turin/report_milan.bin") else {
        return;
    };
    let vcek = read(test, "sev-snp/virtee-milan-turin/vcek_milan.der").unwrap();
    let rest = read(test, "sev-snp/virtee-milan-turin/cert_chain_milan").unwrap();
    let mut pem = pem_of(&vcek).into_bytes();
    pem.extend_from_slice(&rest);
    let json = serde_json::json!({
        "SnpReport": URL_SAFE_NO_PAD.encode(&report),
        "VcekCertChain": URL_SAFE_NO_PAD.encode(&pem),
    });
    let evidence = parse_evidence(json.to_string().as_bytes()).unwrap();
    assert_eq!(evidence.report, report);
    assert_eq!(evidence.certs.len(), 3);
    assert_eq!(evidence.certs[0], vcek);
    // Without a chain.
    let json = serde_json::json!({ "SnpReport": URL_SAFE_NO_PAD.encode(&report) });
    assert!(
        parse_evidence(json.to_string().as_bytes())
            .unwrap()
            .certs
            .is_empty()
    );
    for bad in [
        &b"not json"[..],
        br#"{"SnpReport": "***"}"#,
        br#"{"SnpReport": "AA", "Other": 1}"#,
        br#"{"VcekCertChain": "AA"}"#,
        br#"{"SnpReport": "AA", "VcekCertChain": "AAAA"}"#,
    ] {
        let err = parse_evidence(bad).unwrap_err();
        assert!(
            matches!(
                err.code(),
                "SnpEvidenceMalformed" | "CertificateChainMalformed"
            ),
            "{err}"
        );
    }
}

fn pem_of(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
