//! Azure confidential-VM evidence through the real service
//! (`POST /attest/AzureCvm`): the real HCL report, VCEK chain and vTPM
//! quote give an `azurevm` token with the SNP claims under
//! `x-ms-isolation-tee` and the vTPM PCRs; broken evidence is a 400 with
//! its code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_attestation::evidence::azure_cvm::{AZURE_CVM, encode_evidence, parse_quote_json};
use aver_client::{AttestOptions, ClientError, DataType};
use common::{TestService, now};

/// The evidence JSON built from the vector, and the HCL report alone.
fn evidence(alter: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) -> Option<Vec<u8>> {
    let read = |name: &str| {
        aver_testkit::read_vector("azure_cvm", &format!("tpm/azure-cvm-vtpm-snp/{name}"))
    };
    let mut hcl = read("hcl-report.bin")?;
    let pem = read("vcek.pem")?;
    let mut quote = read("tpm-quote-v1.json")?;
    alter(&mut hcl, &mut quote);
    Some(encode_evidence(
        &hcl,
        Some(&pem),
        None,
        &parse_quote_json(&quote).unwrap(),
    ))
}

fn options(nonce: Option<&str>) -> AttestOptions {
    AttestOptions {
        nonce: nonce.map(str::to_string),
        ..AttestOptions::default()
    }
}

#[tokio::test]
async fn azure_cvm_evidence_gives_an_azurevm_token() {
    let Some(ev) = evidence(|_, _| {}) else {
        return;
    };
    let svc = TestService::start(false).await;
    let token = svc
        .client
        .attest(&AZURE_CVM, &ev, &options(Some("challenge")))
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), now(), 60)
        .await
        .unwrap();
    assert_eq!(claims["x-ms-attestation-type"], "azurevm");
    assert_eq!(claims["nonce"], "challenge");
    assert_eq!(claims["x-ms-ver"], "1.0");
    assert!(claims.contains_key("x-ms-policy-hash"));
    assert_eq!(
        claims["x-ms-azurevm-vmid"],
        "911B0EF8-9DBA-48B0-B275-4E4DF2D39252"
    );
    assert_eq!(
        claims["x-ms-azurevm-attested-pcrs"]
            .as_array()
            .unwrap()
            .len(),
        24
    );
    assert_eq!(claims["pcrs"]["PCRs"].as_array().unwrap().len(), 24);
    let tee = &claims["x-ms-isolation-tee"];
    assert_eq!(tee["x-ms-attestation-type"], "sevsnpvm");
    assert_eq!(
        tee["x-ms-sevsnpvm-launchmeasurement"],
        "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
    );
    assert_eq!(tee["x-ms-sevsnpvm-is-debuggable"], false);
    assert_eq!(tee["x-ms-runtime"]["keys"][0]["kid"], "HCLAkPub");
}

#[tokio::test]
async fn broken_azure_cvm_evidence_is_a_400_with_its_code() {
    let Some(good) = evidence(|_, _| {}) else {
        return;
    };
    let svc = TestService::start(false).await;
    let refused = |r: Result<String, ClientError>| match r {
        Err(ClientError::Service { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let attest = |ev: Vec<u8>, opts: AttestOptions| {
        let client = &svc.client;
        async move { refused(client.attest(&AZURE_CVM, &ev, &opts).await) }
    };
    // Another caller's nonce.
    let (status, code) = attest(good.clone(), options(Some("replayed"))).await;
    assert_eq!((status, code.as_str()), (400, "ChallengeMismatch"));
    // No nonce at all.
    let (status, code) = attest(good.clone(), options(None)).await;
    assert_eq!((status, code.as_str()), (400, "AzureCvmNonceMissing"));
    // Runtime data of the caller's own: refused, the HCL report's is bound.
    let mut opts = options(Some("challenge"));
    opts.runtime_data = Some((b"{}".to_vec(), DataType::Json));
    let (status, code) = attest(good.clone(), opts).await;
    assert_eq!((status, code.as_str()), (400, "InvalidParameter"));
    // Altered runtime JSON inside the HCL report.
    let altered = evidence(|hcl, _| {
        let pos = hcl
            .windows(18)
            .position(|w| w == b"\"secure-boot\":true")
            .unwrap();
        hcl[pos + 16] = b'U';
    })
    .unwrap();
    let (status, code) = attest(altered, options(Some("challenge"))).await;
    assert_eq!((status, code.as_str()), (400, "HclRuntimeDataMismatch"));
    // A tampered SNP report.
    let tampered = evidence(|hcl, _| hcl[32 + 0x90] ^= 1).unwrap();
    let (status, code) = attest(tampered, options(Some("challenge"))).await;
    assert_eq!((status, code.as_str()), (400, "SnpReportSignatureInvalid"));
    // Not the evidence JSON.
    let (status, code) = attest(b"HCLA".to_vec(), options(Some("challenge"))).await;
    assert_eq!((status, code.as_str()), (400, "AzureCvmEvidenceMalformed"));
}

/// The TDX variant: its TD quote through the DCAP path (no collateral is
/// configured, so signatures and the PCK chain, no TCB verdict).
#[tokio::test]
async fn azure_tdx_cvm_evidence_gives_an_azurevm_token() {
    let read = |name: &str| {
        aver_testkit::read_vector("azure_cvm", &format!("tpm/azure-cvm-vtpm-tdx/{name}"))
    };
    let (Some(hcl), Some(td_quote), Some(quote)) = (
        read("hcl-report.bin"),
        read("td-quote.bin"),
        read("tpm-quote-v1.json"),
    ) else {
        return;
    };
    let ev = encode_evidence(
        &hcl,
        None,
        Some(&td_quote),
        &parse_quote_json(&quote).unwrap(),
    );
    let svc = TestService::start(false).await;
    let token = svc
        .client
        .attest(&AZURE_CVM, &ev, &options(Some("challenge")))
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), now(), 60)
        .await
        .unwrap();
    assert_eq!(claims["x-ms-attestation-type"], "azurevm");
    assert_eq!(
        claims["x-ms-isolation-tee"]["x-ms-attestation-type"],
        "tdxvm"
    );
    let refused = svc
        .client
        .attest(&AZURE_CVM, &ev, &options(Some("other")))
        .await;
    match refused {
        Err(ClientError::Service { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (400, "ChallengeMismatch"))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
