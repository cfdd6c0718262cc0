//! The Azure SDK's real SGX evidence through the service: the token carries
//! the claims live Azure Attestation issued for the same evidence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_client::{AttestOptions, DataType, SgxEndpoint};
use common::{TestService, now};
use serde_json::Value;

fn vector(name: &str) -> Option<Vec<u8>> {
    aver_testkit::read_vector("azure_vectors", name)
}

#[tokio::test]
async fn azure_sdk_quote_gives_the_recorded_claims() {
    let (Some(quote), Some(runtime), Some(recorded)) = (
        vector("azure-sdk/sgx_quote.bin"),
        vector("azure-sdk/runtime_data.bin"),
        vector("maa/maa-recorded-sgx-2022-10-07/response-token-decoded.json"),
    ) else {
        return;
    };
    let recorded: Value = serde_json::from_slice(&recorded).unwrap();
    let recorded = recorded
        .get("claims")
        .or(recorded.get("payload"))
        .unwrap_or(&recorded)
        .clone();
    let svc = TestService::start(false).await;
    let options = AttestOptions {
        runtime_data: Some((runtime.clone(), DataType::Binary)),
        ..AttestOptions::default()
    };
    let token = svc
        .client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), now(), 60)
        .await
        .unwrap();

    // Same claim names at the top level as the live Azure token.
    let names = |v: &serde_json::Map<String, Value>| {
        let mut k: Vec<String> = v.keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(names(&claims), names(recorded.as_object().unwrap()));
    // Same values wherever they do not depend on time, issuer or collateral.
    for name in [
        "aas-ehd",
        "maa-ehd",
        "x-ms-sgx-ehd",
        "is-debuggable",
        "product-id",
        "sgx-mrenclave",
        "sgx-mrsigner",
        "svn",
        "tee",
        "x-ms-attestation-type",
        "x-ms-policy",
        "x-ms-policy-hash",
        "x-ms-sgx-is-debuggable",
        "x-ms-sgx-mrenclave",
        "x-ms-sgx-mrsigner",
        "x-ms-sgx-product-id",
        "x-ms-sgx-report-data",
        "x-ms-sgx-svn",
        "x-ms-ver",
    ] {
        assert_eq!(claims[name], recorded[name], "claim {name}");
    }
    assert_eq!(
        claims["x-ms-sgx-collateral"]["quotehash"],
        recorded["x-ms-sgx-collateral"]["quotehash"]
    );
}

#[tokio::test]
async fn openenclave_report_and_json_runtime_data() {
    let (Some(report), Some(runtime)) = (
        vector("azure-sdk/oe_report.bin"),
        vector("azure-sdk/runtime_data.bin"),
    ) else {
        return;
    };
    let svc = TestService::start(false).await;
    let options = AttestOptions {
        runtime_data: Some((runtime.clone(), DataType::Json)),
        ..AttestOptions::default()
    };
    let token = svc
        .client
        .attest_sgx(SgxEndpoint::OpenEnclave, &report, &options)
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), now(), 60)
        .await
        .unwrap();
    // Recorded live Azure behaviour for this evidence.
    assert_eq!(claims["x-ms-attestation-type"], "sgx");
    assert_eq!(
        claims["x-ms-sgx-collateral"]["quotehash"],
        "949b189c928f25c0a8090ae57d9f481b3435f26fb9a4d7e86e2619770d29c13f"
    );
    assert_eq!(claims["x-ms-runtime"]["jwk"]["crv"], "P-256");
    assert_eq!(
        claims["x-ms-runtime"]["jwk"]["x"],
        "18wHLeIgW9wVN6VD1Txgpqy2LszYkMf6J8njVAibvhM"
    );
    assert!(
        claims.get("x-ms-sgx-ehd").is_none(),
        "no ehd for JSON runtime data"
    );
}

fn reqwest_client(ca: &[u8]) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn draft_policy_gives_an_unsecured_token_or_a_reasoned_deny() {
    let (Some(quote), Some(runtime)) = (
        vector("azure-sdk/sgx_quote.bin"),
        vector("azure-sdk/runtime_data.bin"),
    ) else {
        return;
    };
    let svc = TestService::start(false).await;
    let permit = "version=1.0; authorizationrules{=> permit();}; issuancerules{};";
    let options = AttestOptions {
        runtime_data: Some((runtime.clone(), DataType::Binary)),
        draft_policy: Some(permit.into()),
        ..AttestOptions::default()
    };
    let token = svc
        .client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
        .await
        .unwrap();
    let jws = aver_token::CompactJws::parse(&token).unwrap();
    assert_eq!(jws.alg, aver_token::JwsAlg::None);
    assert!(token.ends_with('.'));
    let claims = jws.payload_json().unwrap().unwrap();
    // Recorded: the hash of this exact policy text.
    assert_eq!(
        claims["x-ms-policy-hash"],
        "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"
    );

    // The verbose form returns the evaluation trace with the token.
    let body = serde_json::json!({
        "quote": aver_token::b64::encode_url(&quote),
        "draftPolicyForAttestation": permit,
    });
    let url = format!(
        "{}/attest/SgxEnclave?api-version=2022-08-01&verbose=true",
        svc.issuer()
    );
    let client = reqwest_client(&svc.ca);
    let reply: serde_json::Value = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(reply["token"].is_string());
    assert_eq!(reply["evaluation"]["decision"], "permit");
    assert!(
        reply["evaluation"]["trace"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );

    let deny = r#"version=1.0; authorizationrules{ c:[type=="x-ms-sgx-is-debuggable", value==false] => deny(); => permit(); }; issuancerules{};"#;
    let err = svc
        .client
        .attest_sgx(
            SgxEndpoint::SgxEnclave,
            &quote,
            &AttestOptions {
                draft_policy: Some(deny.into()),
                ..AttestOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PolicyEvaluationError"));
    assert!(err.to_string().contains("Deny"), "{err}");

    let broken = "version=1.0; authorizationrules{ => permit() }; issuancerules{};";
    let err = svc
        .client
        .attest_sgx(
            SgxEndpoint::SgxEnclave,
            &quote,
            &AttestOptions {
                draft_policy: Some(broken.into()),
                ..AttestOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PolicyParsingError"));
    assert!(err.to_string().contains("line 1"), "{err}");
}
