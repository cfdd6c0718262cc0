//! Policy and signer management over HTTPS: Azure's data plane, admin
//! authentication, isolated mode, providers, audit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_client::{AdminClient, AttestOptions, Client, ClientError, DataType, SgxEndpoint};
use aver_server::store::ProviderRecord;
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use aver_token::SigningKey;
use aver_token::policy::{certificate_management, signed, unsigned};
use common::{TestService, now};

const PERMIT: &str = "version=1.0; authorizationrules{=> permit();}; issuancerules{};";

fn admin(svc: &TestService) -> AdminClient {
    AdminClient::new(
        svc.client.clone(),
        svc.service.new_admin_key.as_deref().unwrap(),
    )
}

async fn create_provider(svc: &TestService, name: &str, signers: Vec<Vec<u8>>) -> (String, Client) {
    let state = svc.service.state.clone();
    let record = ProviderRecord {
        name: name.into(),
        isolated: !signers.is_empty(),
        host: None,
        created_at: now() as i64,
    };
    let key = tokio::task::spawn_blocking(move || {
        aver_server::load::create_provider(state.store.as_ref(), &record, &signers, "test").unwrap()
    })
    .await
    .unwrap();
    svc.service.state.reload().await.unwrap();
    let client = Client::new(&format!("{}/providers/{name}", svc.issuer()), Some(&svc.ca)).unwrap();
    (key, client)
}

async fn attest(
    client: &Client,
) -> Result<serde_json::Map<String, serde_json::Value>, ClientError> {
    let quote = SimPlatform::generate()
        .unwrap()
        .quote(&EnclaveIdentity {
            report_data: report_data_for(b"rt"),
            ..EnclaveIdentity::default()
        })
        .unwrap();
    let options = AttestOptions {
        runtime_data: Some((b"rt".to_vec(), DataType::Binary)),
        ..AttestOptions::default()
    };
    let token = client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
        .await?;
    client
        .verify_token(&token, client.base_url(), now(), 60)
        .await
}

#[tokio::test]
async fn unsigned_policy_lifecycle_on_the_default_provider() {
    let svc = TestService::start(true).await;
    let admin = admin(&svc);

    // Default: Azure's shared-provider SGX policy, as an unsigned JWS.
    let (jws, text) = admin.get_policy("SgxEnclave").await.unwrap();
    assert!(jws.starts_with("eyJhbGciOiJub25lIn0."));
    assert_eq!(
        text.as_deref(),
        Some(aver_attestation::evidence::sgx::DEFAULT_SGX_POLICY)
    );
    // TPM has none until set, as in Azure.
    let (jws, text) = admin.get_policy("Tpm").await.unwrap();
    assert_eq!(jws, "eyJhbGciOiJub25lIn0..");
    assert_eq!(text, None);

    // Set: the result carries the hash of the exact JWS sent.
    let jws = unsigned(Some(PERMIT));
    let result = admin.set_policy("SgxEnclave", &jws).await.unwrap();
    assert_eq!(result["x-ms-policy-result"], "Updated");
    assert_eq!(
        result["x-ms-policy"], jws,
        "PolicyResult carries the stored JWS"
    );
    assert_eq!(
        result["x-ms-policy-token-hash"],
        aver_token::b64::encode_url(&aver_attestation::sha256(jws.as_bytes()))
    );
    assert!(result.get("x-ms-policy-signer").is_none());
    let (stored, text) = admin.get_policy("SgxEnclave").await.unwrap();
    assert_eq!(stored, jws, "GET returns the exact JWS that was PUT");
    assert_eq!(text.as_deref(), Some(PERMIT));
    // Attestation now runs under it.
    let claims = attest(&svc.client).await.unwrap();
    assert_eq!(
        claims["x-ms-policy-hash"],
        "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"
    );
    assert!(claims.get("tee").is_none(), "the new policy issues nothing");

    // A policy that does not parse is refused and changes nothing.
    let err = admin
        .set_policy(
            "SgxEnclave",
            &unsigned(Some("version=1.0; authorizationrules{ => permit() };")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PolicyParsingError"));
    assert_eq!(admin.get_policy("SgxEnclave").await.unwrap().0, jws);
    // Unknown type, empty SGX policy.
    assert_eq!(
        admin.set_policy("Sev", &jws).await.unwrap_err().code(),
        Some("InvalidParameter")
    );
    assert_eq!(
        admin
            .set_policy("SgxEnclave", &unsigned(None))
            .await
            .unwrap_err()
            .code(),
        Some("InvalidParameter")
    );

    // A deny policy makes attestation fail with the rule named.
    let deny = r#"version=1.0; authorizationrules{ c:[type=="x-ms-sgx-is-debuggable", value==false] => deny(); => permit(); };"#;
    admin
        .set_policy("SgxEnclave", &unsigned(Some(deny)))
        .await
        .unwrap();
    let err = attest(&svc.client).await.unwrap_err();
    assert_eq!(err.code(), Some("PolicyEvaluationError"));

    // Reset: back to the default.
    let result = admin
        .reset_policy("SgxEnclave", &unsigned(None))
        .await
        .unwrap();
    assert_eq!(result["x-ms-policy-result"], "Removed");
    assert!(result.get("x-ms-policy-token-hash").is_none());
    let claims = attest(&svc.client).await.unwrap();
    assert_eq!(
        claims["x-ms-policy-hash"],
        "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"
    );

    // Every change is in the audit log, newest first, with the policy hash.
    let entries = svc
        .client
        .get_json(&format!("{}/audit?api-version=2022-08-01", svc.issuer()))
        .await
        .unwrap_err();
    assert!(matches!(entries, ClientError::Service { status: 401, .. }));
    // Like every data-plane path, /audit takes an api-version.
    let entries = svc
        .client
        .get_json(&format!("{}/audit", svc.issuer()))
        .await
        .unwrap_err();
    assert!(
        matches!(&entries, ClientError::Service { status: 400, code, .. } if code == "MissingApiVersion"),
        "{entries:?}"
    );
    let store = svc.service.state.store.clone();
    let log = tokio::task::spawn_blocking(move || store.audit_log("default", 10).unwrap())
        .await
        .unwrap();
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(&actions[..3], ["policy.reset", "policy.set", "policy.set"]);
    assert_eq!(
        log[2].policy_hash.as_deref(),
        Some("z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU")
    );
    assert!(log[0].actor.starts_with("admin-key:"));
}

#[tokio::test]
async fn signed_policy_in_aad_mode_records_its_signer() {
    let svc = TestService::start(true).await;
    let admin = admin(&svc);
    let signer = SigningKey::generate("CN of some policy author").unwrap();
    let jws = signed(Some(PERMIT), &signer).unwrap();
    let result = admin.set_policy("SgxEnclave", &jws).await.unwrap();
    let reported = &result["x-ms-policy-signer"];
    assert_eq!(reported["kty"], "RSA");
    assert_eq!(
        reported["x5c"][0],
        aver_token::b64::encode_std(signer.certificate_der())
    );
    let claims = attest(&svc.client).await.unwrap();
    assert_eq!(claims["x-ms-policy-signer"]["x5c"], reported["x5c"]);
    // A signature that does not verify is refused.
    // Change one character in the middle of the signature: the final
    // character of base64url carries padding bits, and a non-canonical
    // encoding would be a malformed JWS rather than a bad signature.
    let mut forged: Vec<char> = jws.chars().collect();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    assert_eq!(
        admin
            .set_policy("SgxEnclave", &forged)
            .await
            .unwrap_err()
            .code(),
        Some("InvalidSignature")
    );
}

#[tokio::test]
async fn admin_authentication_is_required_and_scoped() {
    let svc = TestService::start(true).await;
    let (other_key, other) = create_provider(&svc, "other", vec![]).await;
    let jws = unsigned(Some(PERMIT));
    for (credential, code) in [
        ("not-a-key", "Unauthorized"),
        ("aver_wrongwrongwrong", "Unauthorized"),
        (other_key.as_str(), "Unauthorized"),
    ] {
        let client = AdminClient::new(svc.client.clone(), credential);
        let err = client.set_policy("SgxEnclave", &jws).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Service { status: 401, code: c, .. } if c == code),
            "{credential}: {err}"
        );
    }
    // The other provider's key works on the other provider only.
    let other_admin = AdminClient::new(other.clone(), &other_key);
    other_admin.set_policy("SgxEnclave", &jws).await.unwrap();
    // And providers are independent: the default's policy is unchanged.
    let default_admin = admin(&svc);
    assert!(
        default_admin
            .get_policy("SgxEnclave")
            .await
            .unwrap()
            .0
            .starts_with("eyJhbGciOiJub25lIn0.")
    );
    assert_ne!(default_admin.get_policy("SgxEnclave").await.unwrap().0, jws);
    // Each provider has its own issuer and signing key.
    let claims = attest(&other).await.unwrap();
    assert_eq!(claims["iss"], format!("{}/providers/other", svc.issuer()));
    assert_eq!(
        claims["x-ms-policy-hash"],
        "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"
    );
    let jwks_default = svc
        .client
        .get_json(&format!("{}/certs", svc.issuer()))
        .await
        .unwrap();
    let jwks_other = other
        .get_json(&format!("{}/certs", other.base_url()))
        .await
        .unwrap();
    assert_ne!(jwks_default["keys"][0]["kid"], jwks_other["keys"][0]["kid"]);
    // Unknown provider.
    let ghost = Client::new(&format!("{}/providers/ghost", svc.issuer()), Some(&svc.ca)).unwrap();
    assert_eq!(
        attest(&ghost).await.unwrap_err().code(),
        Some("ProviderNotFound")
    );
}

#[tokio::test]
async fn isolated_mode_accepts_only_trusted_signers() {
    let svc = TestService::start(true).await;
    let trusted = SigningKey::generate("trusted signer").unwrap();
    let second = SigningKey::generate("second signer").unwrap();
    let stranger = SigningKey::generate("stranger").unwrap();
    let (key, client) =
        create_provider(&svc, "iso", vec![trusted.certificate_der().to_vec()]).await;
    let admin = AdminClient::new(client.clone(), &key);

    let before = admin.get_policy("SgxEnclave").await.unwrap().0;
    for jws in [
        unsigned(Some(PERMIT)),
        signed(Some(PERMIT), &stranger).unwrap(),
    ] {
        assert_eq!(
            admin
                .set_policy("SgxEnclave", &jws)
                .await
                .unwrap_err()
                .code(),
            Some("InvalidOperation")
        );
    }
    assert_eq!(
        admin
            .reset_policy("SgxEnclave", &unsigned(None))
            .await
            .unwrap_err()
            .code(),
        Some("InvalidOperation")
    );
    assert_eq!(
        admin.get_policy("SgxEnclave").await.unwrap().0,
        before,
        "nothing changed"
    );

    let good = signed(Some(PERMIT), &trusted).unwrap();
    admin.set_policy("SgxEnclave", &good).await.unwrap();
    assert_eq!(admin.get_policy("SgxEnclave").await.unwrap().0, good);
    admin
        .reset_policy("SgxEnclave", &signed(None, &trusted).unwrap())
        .await
        .unwrap();

    // Signers: list, add (idempotent), remove (idempotent), never the last.
    assert_eq!(
        admin.signers().await.unwrap(),
        vec![trusted.certificate_der().to_vec()]
    );
    let add = certificate_management(second.certificate_der(), &trusted).unwrap();
    for _ in 0..2 {
        let r = admin.modify_signers(true, &add).await.unwrap();
        assert_eq!(r["x-ms-policycertificates-result"], "IsPresent");
        assert_eq!(
            r["x-ms-certificate-thumbprint"],
            aver_server::policy_jws::thumbprint(second.certificate_der())
        );
    }
    assert_eq!(admin.signers().await.unwrap().len(), 2);
    // The new signer can now set policies; a stranger cannot manage signers.
    admin
        .set_policy("SgxEnclave", &signed(Some(PERMIT), &second).unwrap())
        .await
        .unwrap();
    let by_stranger = certificate_management(stranger.certificate_der(), &stranger).unwrap();
    assert_eq!(
        admin
            .modify_signers(true, &by_stranger)
            .await
            .unwrap_err()
            .code(),
        Some("InvalidOperation")
    );
    let remove = certificate_management(second.certificate_der(), &trusted).unwrap();
    for _ in 0..2 {
        let r = admin.modify_signers(false, &remove).await.unwrap();
        assert_eq!(r["x-ms-policycertificates-result"], "IsAbsent");
    }
    let remove_last = certificate_management(trusted.certificate_der(), &trusted).unwrap();
    assert_eq!(
        admin
            .modify_signers(false, &remove_last)
            .await
            .unwrap_err()
            .code(),
        Some("InvalidOperation")
    );
    assert_eq!(admin.signers().await.unwrap().len(), 1);

    // Signer management on a non-isolated provider is refused.
    let default_admin = AdminClient::new(
        svc.client.clone(),
        svc.service.new_admin_key.as_deref().unwrap(),
    );
    assert_eq!(
        default_admin
            .modify_signers(true, &add)
            .await
            .unwrap_err()
            .code(),
        Some("InvalidOperation")
    );
}

fn pem_der(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(text.to_vec()).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    aver_token::b64::decode_std(&b64).unwrap()
}

#[tokio::test]
async fn azure_docs_signed_policy_and_add_signer_jws_are_accepted() {
    let test = "azure_docs_signed_policy_and_add_signer_jws_are_accepted";
    let (Some(policy_jws), Some(policy_cert), Some(add_jws), Some(cert1), Some(cert2)) = (
        aver_testkit::read_vector(test, "maa/docs-signed-policy-jwt.txt"),
        aver_testkit::read_vector(test, "maa/docs-policy-signer-AttestationCertificate0.pem"),
        aver_testkit::read_vector(test, "maa/docs-add-policy-signer-jws.txt"),
        aver_testkit::read_vector(test, "maa/docs-policy-signer-cert1.pem"),
        aver_testkit::read_vector(test, "maa/docs-policy-signer-cert2.pem"),
    ) else {
        return;
    };
    let svc = TestService::start(true).await;
    // The docs' signed policy (alg "RSA256"), on a provider that trusts
    // its signer.
    let (key, client) = create_provider(&svc, "docs-policy", vec![pem_der(&policy_cert)]).await;
    let admin = AdminClient::new(client, &key);
    let jws = String::from_utf8(policy_jws).unwrap().trim().to_string();
    let result = admin.set_policy("SgxEnclave", &jws).await.unwrap();
    assert_eq!(result["x-ms-policy-result"], "Updated");
    assert_eq!(admin.get_policy("SgxEnclave").await.unwrap().0, jws);

    // The docs' add-signer JWS (MaaTestCert1 adds MaaTestCert2).
    let (key, client) = create_provider(&svc, "docs-signers", vec![pem_der(&cert1)]).await;
    let admin = AdminClient::new(client, &key);
    let add = String::from_utf8(add_jws).unwrap().trim().to_string();
    let result = admin.modify_signers(true, &add).await.unwrap();
    assert_eq!(
        result["x-ms-certificate-thumbprint"],
        "71EB4146F73CAF98ABE882B365B1B5252FBED577"
    );
    assert_eq!(result["x-ms-policycertificates-result"], "IsPresent");
    assert!(admin.signers().await.unwrap().contains(&pem_der(&cert2)));
}

#[tokio::test]
async fn oidc_admin_tokens_need_audience_and_role() {
    let issuer = "https://login.example.test/tenant";
    let idp = SigningKey::generate(issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, aver_token::metadata::jwks([&idp]).to_string()).unwrap();
    let svc = TestService::start_with(true, aver_server::state::Clock::System, |c| {
        c.admin_oidc = Some(aver_server::config::OidcConfig {
            issuer: issuer.into(),
            audience: "api://aver".into(),
            role: "Aver.Admin".into(),
            jwks_file: jwks_file.clone(),
        });
    })
    .await;
    let token = |aud: &str, roles: serde_json::Value, iat: u64| {
        let mut c = aver_token::Claims::new();
        c.insert("iss".into(), issuer.into());
        c.insert("aud".into(), aud.into());
        c.insert("sub".into(), "alice".into());
        c.insert("roles".into(), roles);
        c.insert("iat".into(), iat.into());
        c.insert("nbf".into(), iat.into());
        c.insert("exp".into(), (iat + 600).into());
        idp.sign_jwt("unused", &c).unwrap()
    };
    let jws = unsigned(Some(PERMIT));
    let call = |credential: String| {
        let client = svc.client.clone();
        let jws = jws.clone();
        async move {
            AdminClient::new(client, &credential)
                .set_policy("SgxEnclave", &jws)
                .await
        }
    };
    call(token(
        "api://aver",
        serde_json::json!(["Aver.Admin"]),
        now(),
    ))
    .await
    .unwrap();
    call(token(
        "api://aver",
        serde_json::json!(["Aver.Admin:default"]),
        now(),
    ))
    .await
    .unwrap();
    let err = call(token("api://aver", serde_json::json!(["Reader"]), now()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Service { status: 403, .. }),
        "{err}"
    );
    let err = call(token(
        "api://aver",
        serde_json::json!(["Aver.Admin:other"]),
        now(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Service { status: 403, .. }),
        "{err}"
    );
    let err = call(token(
        "api://elsewhere",
        serde_json::json!(["Aver.Admin"]),
        now(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Service { status: 401, .. }),
        "{err}"
    );
    let err = call(token(
        "api://aver",
        serde_json::json!(["Aver.Admin"]),
        now() - 3600,
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Service { status: 401, .. }),
        "expired: {err}"
    );
    // A token signed by another key is refused.
    let impostor = SigningKey::generate(issuer).unwrap();
    let mut c = aver_token::Claims::new();
    c.insert("iss".into(), issuer.into());
    c.insert("aud".into(), "api://aver".into());
    c.insert("roles".into(), serde_json::json!(["Aver.Admin"]));
    c.insert("nbf".into(), now().into());
    c.insert("exp".into(), (now() + 600).into());
    let err = call(impostor.sign_jwt("x", &c).unwrap()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Service { status: 401, .. }),
        "{err}"
    );
}
