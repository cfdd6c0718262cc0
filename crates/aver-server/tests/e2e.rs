//! End to end over HTTPS: evidence in, token out, verified as a relying
//! party through OpenID metadata and JWKS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_client::{AttestOptions, ClientError, DataType, SgxEndpoint};
use aver_server::state::Clock;
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use aver_token::{TokenError, VerifyOptions};
use common::{TestService, now};

fn sim_quote(runtime: &[u8]) -> (Vec<u8>, EnclaveIdentity) {
    let platform = SimPlatform::generate().unwrap();
    let identity = EnclaveIdentity {
        mr_enclave: [0xab; 32],
        mr_signer: [0xcd; 32],
        product_id: 7,
        svn: 3,
        debug: false,
        report_data: report_data_for(runtime),
    };
    (platform.quote(&identity).unwrap(), identity)
}

fn binary(data: &[u8]) -> AttestOptions {
    AttestOptions {
        runtime_data: Some((data.to_vec(), DataType::Binary)),
        ..AttestOptions::default()
    }
}

#[tokio::test]
async fn simulated_quote_to_verified_token() {
    let svc = TestService::start(true).await;
    let runtime = br#"{"purpose":"e2e"}"#;
    let (quote, identity) = sim_quote(runtime);
    let options = AttestOptions {
        nonce: Some("n-123".into()),
        ..binary(runtime)
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
    assert_eq!(claims["iss"], svc.issuer());
    assert_eq!(claims["x-ms-attestation-type"], "sgx");
    assert_eq!(
        claims["x-ms-sgx-mrenclave"],
        hex::encode(identity.mr_enclave)
    );
    assert_eq!(claims["x-ms-sgx-mrsigner"], hex::encode(identity.mr_signer));
    assert_eq!(claims["x-ms-sgx-product-id"], 7);
    assert_eq!(claims["x-ms-sgx-svn"], 3);
    assert_eq!(claims["x-ms-sgx-is-debuggable"], false);
    assert_eq!(claims["nonce"], "n-123");
    assert_eq!(claims["x-ms-sgx-ehd"], aver_token::b64::encode_url(runtime));
    assert_eq!(
        claims["x-ms-policy-hash"],
        "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"
    );
    assert_eq!(claims["tee"], "sgx");
    assert_eq!(
        claims["x-ms-policy"]["sgx-mrenclave"],
        hex::encode(identity.mr_enclave)
    );
    let exp = claims["exp"].as_u64().unwrap();
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(exp - iat, 28_800);
    assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 64);

    // Relying-party rejections.
    let jwks = svc
        .client
        .get_json(&format!("{}/certs", svc.issuer()))
        .await
        .unwrap();
    let options = |issuer: &str| VerifyOptions {
        issuer: Some(issuer.to_string()),
        now: now(),
        leeway: 60,
    };
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_payload = {
        let mut c = claims.clone();
        c.insert("x-ms-sgx-is-debuggable".into(), true.into());
        aver_token::b64::encode_url(&serde_json::to_vec(&c).unwrap())
    };
    parts[1] = &forged_payload;
    assert_eq!(
        aver_token::verify_token(&parts.join("."), &jwks, &options(svc.issuer())),
        Err(TokenError::BadSignature)
    );
    assert!(matches!(
        aver_token::verify_token(&token, &jwks, &options("https://impostor.example")),
        Err(TokenError::WrongIssuer { .. })
    ));
    // A relying party that expects another issuer refuses the metadata.
    let wrong = svc
        .client
        .verify_token(&token, "https://impostor.example", now(), 60)
        .await;
    assert!(wrong.is_err());
    // A key the service never published.
    let stranger = aver_token::SigningKey::generate(svc.issuer()).unwrap();
    let foreign = stranger
        .sign_jwt(&format!("{}/certs", svc.issuer()), &claims)
        .unwrap();
    assert!(matches!(
        svc.client
            .verify_token(&foreign, svc.issuer(), now(), 60)
            .await,
        Err(ClientError::Token(TokenError::UnknownKid(_)))
    ));
}

#[tokio::test]
async fn expired_token_is_rejected() {
    // A service whose clock is nine hours behind issues tokens already
    // expired by now.
    let svc = TestService::start_with(true, Clock::Fixed(now() - 9 * 3600), |_| {}).await;
    let (quote, _) = sim_quote(b"x");
    let token = svc
        .client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &binary(b"x"))
        .await
        .unwrap();
    assert!(matches!(
        svc.client
            .verify_token(&token, svc.issuer(), now(), 60)
            .await,
        Err(ClientError::Token(TokenError::Expired { .. }))
    ));
}

#[tokio::test]
async fn restart_keeps_the_signing_key() {
    let first = TestService::start(true).await;
    let (quote, _) = sim_quote(b"k");
    let token = first
        .client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &binary(b"k"))
        .await
        .unwrap();
    let certs_before = first
        .client
        .get_json(&format!("{}/certs", first.issuer()))
        .await
        .unwrap();
    let TestService { service, dir, .. } = first;
    let old_issuer = service.issuer.clone();
    let old_addr = service.addr;
    service.shutdown().await;

    // Same data directory and address, as an operator restarts it.
    let mut config = common::config(dir.path(), true);
    config.listen = old_addr;
    let second = TestService::start_in(dir, config, Clock::System).await;
    let certs_after = second
        .client
        .get_json(&format!("{}/certs", second.service.issuer))
        .await
        .unwrap();
    assert_eq!(certs_before["keys"], certs_after["keys"]);
    let options = VerifyOptions {
        issuer: Some(old_issuer),
        now: now(),
        leeway: 60,
    };
    aver_token::verify_token(&token, &certs_after, &options).unwrap();
    // And the TLS certificate was kept, so clients keep trusting it.
    assert!(second.data_dir().join("tls/cert.pem").exists());
}

#[tokio::test]
async fn simulator_is_not_trusted_unless_configured() {
    let svc = TestService::start(false).await;
    let (quote, _) = sim_quote(b"x");
    let err = svc
        .client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &binary(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UntrustedRoot"));
}

#[tokio::test]
async fn openid_metadata_and_jwks_have_the_azure_shape() {
    let svc = TestService::start(false).await;
    let meta = svc
        .client
        .get_json(&format!(
            "{}/.well-known/openid-configuration",
            svc.issuer()
        ))
        .await
        .unwrap();
    assert_eq!(meta["issuer"], svc.issuer());
    assert_eq!(meta["jwks_uri"], format!("{}/certs", svc.issuer()));
    assert_eq!(meta["id_token_signing_alg_values_supported"][0], "RS256");
    let certs = svc
        .client
        .get_json(&format!("{}/certs", svc.issuer()))
        .await
        .unwrap();
    let key = &certs["keys"][0];
    assert_eq!(key["kty"], "RSA");
    let der = aver_token::b64::decode_std(key["x5c"][0].as_str().unwrap()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        svc.issuer(),
        "signing certificate CN is the issuer"
    );
}
