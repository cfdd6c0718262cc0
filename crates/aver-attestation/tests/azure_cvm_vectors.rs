//! The real Azure confidential VM vector (trustee's az-snp-vtpm: HCL report
//! with an SEV-SNP report, VCEK chain, vTPM quote over "challenge")
//! verifies end to end at a pinned time, through the core's flow with the
//! default policy; altered runtime JSON, another nonce, a quote signed by a
//! key other than HCLAkPub, altered PCRs and a tampered HCL report each get
//! their own error. The TDX vector (HCL report with a TDREPORT, TD quote)
//! verifies through the DCAP path, with its own negatives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aver_attestation::evidence::azure_cvm::{
    AZURE_CVM, AzureCvmEvidence, HardwareKind, encode_evidence, parse_evidence, parse_hcl_report,
    parse_quote_json, verify_evidence,
};
use aver_attestation::evidence::snp::certs::split_chain;
use aver_attestation::{
    ActivePolicy, AttestRequest, PolicyChoice, VerificationTime, Verifiers, parse_rfc3339, tail,
};

/// Inside the VCEK's validity (2023-05-02 … 2030-05-02).
const PINNED: &str = "2025-06-01T00:00:00Z";
const NONCE: &str = "challenge";

fn at() -> VerificationTime {
    parse_rfc3339(PINNED).unwrap()
}

struct Vector {
    hcl: Vec<u8>,
    pem: Vec<u8>,
    quote_json: Vec<u8>,
}

fn vector(test: &str) -> Option<Vector> {
    let dir = "tpm/azure-cvm-vtpm-snp";
    Some(Vector {
        hcl: aver_testkit::read_vector(test, &format!("{dir}/hcl-report.bin"))?,
        pem: aver_testkit::read_vector(test, &format!("{dir}/vcek.pem"))?,
        quote_json: aver_testkit::read_vector(test, &format!("{dir}/tpm-quote-v1.json"))?,
    })
}

fn evidence(v: &Vector) -> AzureCvmEvidence {
    AzureCvmEvidence {
        hcl_report: v.hcl.clone(),
        certs: split_chain(&v.pem).unwrap(),
        td_quote: None,
        quote: parse_quote_json(&v.quote_json).unwrap(),
    }
}

fn code(ev: &AzureCvmEvidence, nonce: &str) -> String {
    verify_evidence(&Verifiers::production(), ev, nonce.as_bytes(), at())
        .unwrap_err()
        .code()
        .to_string()
}

#[test]
fn hcl_report_parses() {
    let Some(v) = vector("hcl_report_parses") else {
        return;
    };
    let r = parse_hcl_report(&v.hcl).unwrap();
    assert_eq!(r.kind, HardwareKind::Snp);
    assert_eq!(r.variable_data.len(), 1110);
    assert!(r.variable_data.starts_with(b"{\"keys\""));
    for n in 0..1236 + 1110 {
        assert!(parse_hcl_report(&v.hcl[..n]).is_err(), "truncated at {n}");
    }
}

#[test]
fn azure_cvm_vector_verifies_end_to_end() {
    let Some(v) = vector("azure_cvm_vector_verifies_end_to_end") else {
        return;
    };
    let request = AttestRequest {
        evidence: encode_evidence(
            &v.hcl,
            Some(&v.pem),
            None,
            &parse_quote_json(&v.quote_json).unwrap(),
        ),
        nonce: Some(NONCE.into()),
        ..AttestRequest::default()
    };
    let verified =
        aver_attestation::verify(&AZURE_CVM, &Verifiers::production(), &request, at()).unwrap();
    let active = ActivePolicy::from_text(AZURE_CVM.default_policy.unwrap(), None).unwrap();
    let (claims, _) = tail::claims(
        &AZURE_CVM,
        PolicyChoice::Active(&active),
        verified.claims,
        request.nonce.as_deref(),
        &aver_policy::Budget::default(),
    )
    .unwrap();
    assert_eq!(claims["x-ms-attestation-type"], "azurevm");
    assert_eq!(claims["nonce"], NONCE);
    assert_eq!(
        claims["x-ms-azurevm-vmid"],
        "911B0EF8-9DBA-48B0-B275-4E4DF2D39252"
    );
    assert_eq!(
        claims["x-ms-azurevm-attested-pcrs"],
        serde_json::json!((0..24).collect::<Vec<u32>>())
    );
    let pcrs = claims["pcrs"]["PCRs"].as_array().unwrap();
    assert_eq!(pcrs.len(), 24);
    assert_eq!(
        pcrs[0]["Digests"]["SHA256"],
        "f3a7e99a5f819a034386bce753a48a73cfdaa0bea0ecfc124bedbf5a8c4799be"
    );
    let tee = &claims["x-ms-isolation-tee"];
    assert_eq!(tee["x-ms-attestation-type"], "sevsnpvm");
    assert_eq!(
        tee["x-ms-sevsnpvm-launchmeasurement"],
        "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
    );
    assert_eq!(tee["x-ms-sevsnpvm-vmpl"], 0);
    assert_eq!(tee["x-ms-runtime"]["keys"][0]["kid"], "HCLAkPub");
    assert_eq!(tee["x-ms-runtime"]["vm-configuration"]["secure-boot"], true);
    assert!(verified.facts.to_json().get("tdx").is_none());
    assert_eq!(
        verified.facts.to_json()["firmware_version"],
        0x2020031200120003u64
    );
}

#[test]
fn altered_runtime_json_is_refused() {
    let Some(v) = vector("altered_runtime_json_is_refused") else {
        return;
    };
    let mut ev = evidence(&v);
    // "secure-boot":true → "secure-boot":trUe: same length, different hash.
    let pos = ev
        .hcl_report
        .windows(18)
        .position(|w| w == b"\"secure-boot\":true")
        .unwrap();
    ev.hcl_report[pos + 16] = b'U';
    assert_eq!(code(&ev, NONCE), "HclRuntimeDataMismatch");
}

#[test]
fn another_nonce_is_refused() {
    let Some(v) = vector("another_nonce_is_refused") else {
        return;
    };
    assert_eq!(code(&evidence(&v), "challengf"), "ChallengeMismatch");
    assert_eq!(code(&evidence(&v), ""), "ChallengeMismatch");
    // Through the registry, a request without a nonce cannot be fresh.
    let request = AttestRequest {
        evidence: encode_evidence(
            &v.hcl,
            Some(&v.pem),
            None,
            &parse_quote_json(&v.quote_json).unwrap(),
        ),
        ..AttestRequest::default()
    };
    let err =
        aver_attestation::verify(&AZURE_CVM, &Verifiers::production(), &request, at()).unwrap_err();
    assert_eq!(err.code, "AzureCvmNonceMissing");
}

#[test]
fn quote_not_signed_by_hcl_ak_is_refused() {
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let Some(v) = vector("quote_not_signed_by_hcl_ak_is_refused") else {
        return;
    };
    let mut ev = evidence(&v);
    // A well-formed quote over the same message, signed by another key.
    let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut sig = vec![0u8; other.public_modulus_len()];
    other
        .sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            &ev.quote.message,
            &mut sig,
        )
        .unwrap();
    ev.quote.signature = sig;
    assert_eq!(code(&ev, NONCE), "QuoteSignatureInvalid");
    // A quote whose extraData was edited no longer carries its signature.
    let mut ev = evidence(&v);
    let pos = ev
        .quote
        .message
        .windows(9)
        .position(|w| w == b"challenge")
        .unwrap();
    ev.quote.message[pos] = b'C';
    assert_eq!(code(&ev, "Challenge"), "QuoteSignatureInvalid");
}

#[test]
fn altered_pcrs_are_refused() {
    let Some(v) = vector("altered_pcrs_are_refused") else {
        return;
    };
    let mut ev = evidence(&v);
    ev.quote.pcrs[7][0] ^= 1;
    assert_eq!(code(&ev, NONCE), "PcrDigestMismatch");
    let mut ev = evidence(&v);
    ev.quote.pcrs.truncate(23);
    assert_eq!(code(&ev, NONCE), "PcrDigestMismatch");
}

#[test]
fn tampered_hcl_report_is_refused() {
    let Some(v) = vector("tampered_hcl_report_is_refused") else {
        return;
    };
    // A changed measurement in the SNP report.
    let mut ev = evidence(&v);
    ev.hcl_report[32 + 0x90] ^= 1;
    assert_eq!(code(&ev, NONCE), "SnpReportSignatureInvalid");
    // A changed REPORT_DATA: the signature catches it first.
    let mut ev = evidence(&v);
    ev.hcl_report[32 + 0x50] ^= 1;
    assert_eq!(code(&ev, NONCE), "SnpReportSignatureInvalid");
    // Not an HCL report.
    let mut ev = evidence(&v);
    ev.hcl_report[0] = b'X';
    assert_eq!(code(&ev, NONCE), "HclReportMalformed");
    // A variable data size past the end.
    let mut ev = evidence(&v);
    ev.hcl_report.truncate(1236 + 1000);
    assert_eq!(code(&ev, NONCE), "HclReportMalformed");
    // A chain for another chip: the virtee Milan VCEK.
    if let (Some(vcek), Some(rest)) = (
        aver_testkit::read_vector(
            "tampered_hcl_report_is_refused",
            "sev-snp/virtee-milan-turin/vcek_milan.der",
        ),
        aver_testkit::read_vector(
            "tampered_hcl_report_is_refused",
            "sev-snp/virtee-milan-turin/cert_chain_milan",
        ),
    ) {
        let mut ev = evidence(&v);
        ev.certs = split_chain(&vcek).unwrap();
        ev.certs.extend(split_chain(&rest).unwrap());
        let c = code(&ev, NONCE);
        assert!(
            c == "SnpChipIdMismatch" || c == "SnpReportSignatureInvalid" || c == "SnpTcbMismatch",
            "{c}"
        );
    }
}

#[test]
fn evidence_json_round_trips_and_rejects_junk() {
    let Some(v) = vector("evidence_json_round_trips_and_rejects_junk") else {
        return;
    };
    let ev = evidence(&v);
    let bytes = encode_evidence(&v.hcl, Some(&v.pem), None, &ev.quote);
    assert_eq!(parse_evidence(&bytes).unwrap(), ev);
    for junk in [
        &b"{}"[..],
        b"[]",
        b"{\"HclReport\":\"!\",\"VcekCertChain\":\"\",\"TpmQuote\":{\"message\":\"\",\"signature\":\"\",\"pcrs\":[]}}",
    ] {
        assert_eq!(
            parse_evidence(junk).unwrap_err().code(),
            "AzureCvmEvidenceMalformed"
        );
    }
    let mut quote: serde_json::Value = serde_json::from_slice(&v.quote_json).unwrap();
    quote["pcrs"] = serde_json::json!(vec!["00"; 25]);
    assert!(parse_quote_json(quote.to_string().as_bytes()).is_err());
}

struct TdxVector {
    hcl: Vec<u8>,
    td_quote: Vec<u8>,
    quote_json: Vec<u8>,
}

fn tdx_vector(test: &str) -> Option<TdxVector> {
    let dir = "tpm/azure-cvm-vtpm-tdx";
    Some(TdxVector {
        hcl: aver_testkit::read_vector(test, &format!("{dir}/hcl-report.bin"))?,
        td_quote: aver_testkit::read_vector(test, &format!("{dir}/td-quote.bin"))?,
        quote_json: aver_testkit::read_vector(test, &format!("{dir}/tpm-quote-v1.json"))?,
    })
}

fn tdx_evidence(v: &TdxVector) -> AzureCvmEvidence {
    AzureCvmEvidence {
        hcl_report: v.hcl.clone(),
        certs: Vec::new(),
        td_quote: Some(v.td_quote.clone()),
        quote: parse_quote_json(&v.quote_json).unwrap(),
    }
}

/// The TDX vector: its TD quote through the DCAP path (no collateral in
/// the vector: signatures and the PCK chain, no TCB verdict).
#[test]
fn azure_tdx_cvm_vector_verifies_end_to_end() {
    let Some(v) = tdx_vector("azure_tdx_cvm_vector_verifies_end_to_end") else {
        return;
    };
    let r = parse_hcl_report(&v.hcl).unwrap();
    assert_eq!(r.kind, HardwareKind::Tdx);
    let request = AttestRequest {
        evidence: encode_evidence(
            &v.hcl,
            None,
            Some(&v.td_quote),
            &parse_quote_json(&v.quote_json).unwrap(),
        ),
        nonce: Some(NONCE.into()),
        ..AttestRequest::default()
    };
    let verified =
        aver_attestation::verify(&AZURE_CVM, &Verifiers::production(), &request, at()).unwrap();
    let claims = verified.claims;
    assert_eq!(claims["x-ms-attestation-type"], "azurevm");
    let tee = &claims["x-ms-isolation-tee"];
    assert_eq!(tee["x-ms-attestation-type"], "tdxvm");
    assert!(
        tee["tdx_mrtd"].as_str().unwrap().starts_with("024a32b0"),
        "{tee}"
    );
    assert!(tee["tdx_mrtd"].as_str().unwrap().ends_with("ab7b"));
    assert!(
        tee["tdx_report_data"]
            .as_str()
            .unwrap()
            .starts_with("9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839")
    );
    assert_eq!(tee["x-ms-runtime"]["keys"][0]["kid"], "HCLAkPub");
    // No TDX collateral was given: the status is unknown, as for TdxVm.
    assert_eq!(tee["attester_tcb_status"], "Unknown");
    assert_eq!(claims["pcrs"]["PCRs"].as_array().unwrap().len(), 24);
}

#[test]
fn azure_tdx_negatives() {
    let Some(v) = tdx_vector("azure_tdx_negatives") else {
        return;
    };
    assert!(
        verify_evidence(
            &Verifiers::production(),
            &tdx_evidence(&v),
            NONCE.as_bytes(),
            at()
        )
        .is_ok()
    );
    // No TD quote.
    let mut ev = tdx_evidence(&v);
    ev.td_quote = None;
    assert_eq!(code(&ev, NONCE), "AzureCvmTdQuoteMissing");
    // Altered runtime JSON.
    let mut ev = tdx_evidence(&v);
    let pos = ev
        .hcl_report
        .windows(7)
        .position(|w| w == b"\"kty\":\"")
        .unwrap();
    ev.hcl_report[pos + 1] = b'K';
    assert_eq!(code(&ev, NONCE), "HclRuntimeDataMismatch");
    // The TDREPORT's MRTD is not the quote's.
    let mut ev = tdx_evidence(&v);
    ev.hcl_report[32 + 528] ^= 1;
    assert_eq!(code(&ev, NONCE), "AzureCvmTdReportMismatch");
    // A tampered TD quote (MRTD in its body).
    let mut ev = tdx_evidence(&v);
    ev.td_quote.as_mut().unwrap()[48 + 136] ^= 1;
    assert_eq!(code(&ev, NONCE), "QuoteSignatureInvalid");
    // Another nonce.
    assert_eq!(code(&tdx_evidence(&v), "other"), "ChallengeMismatch");
    // Evidence for the other hardware is refused, not ignored.
    let Some(snp) = vector("azure_tdx_negatives") else {
        return;
    };
    let mut ev = tdx_evidence(&v);
    ev.hcl_report = snp.hcl.clone();
    assert_eq!(code(&ev, NONCE), "AzureCvmEvidenceMalformed");
    let mut ev = tdx_evidence(&v);
    ev.certs = evidence(&snp).certs;
    assert_eq!(code(&ev, NONCE), "AzureCvmEvidenceMalformed");
    // An SNP HCL report without a chain.
    let mut ev = evidence(&snp);
    ev.certs.clear();
    assert_eq!(code(&ev, NONCE), "SnpCertificateChainMissing");
}
