//! SEV-SNP through the real service in Azure's request shape: the Azure
//! confidential VM's report with its VCEK chain and HCL runtime JSON gives
//! the claim set of Azure's recorded SevSnpVm token; broken evidence is a
//! 400 with its code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_client::{AttestOptions, ClientError, DataType};
use common::{TestService, now};
use serde_json::{Map, Value};

fn vector(name: &str) -> Option<Vec<u8>> {
    aver_testkit::read_vector("snp", name)
}

/// The SNP report and runtime JSON inside the HCL report, and the PEM chain.
fn azure_cvm() -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let hcl = vector("tpm/azure-cvm-vtpm-snp/hcl-report.bin")?;
    let pem = vector("tpm/azure-cvm-vtpm-snp/vcek.pem")?;
    let report = hcl[32..32 + 1184].to_vec();
    let len = u32::from_le_bytes(hcl[1232..1236].try_into().unwrap()) as usize;
    Some((report, hcl[1236..1236 + len].to_vec(), pem))
}

fn recorded_claims() -> Option<Map<String, Value>> {
    let jwt = vector("maa/samples-sevsnp-maa-token.jwt")?;
    let jwt = String::from_utf8(jwt).unwrap();
    let payload = jwt.trim().split('.').nth(1).unwrap();
    let bytes = aver_token::b64::decode_lenient(payload).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[tokio::test]
async fn azure_cvm_report_gives_azures_sevsnpvm_claims() {
    let (Some((report, runtime, pem)), Some(recorded)) = (azure_cvm(), recorded_claims()) else {
        return;
    };
    let svc = TestService::start(false).await;
    let options = AttestOptions {
        runtime_data: Some((runtime.clone(), DataType::Json)),
        nonce: Some("n-123".into()),
        ..AttestOptions::default()
    };
    let token = svc
        .client
        .attest_sev_snp(&report, Some(&pem), &options)
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), now(), 60)
        .await
        .unwrap();

    // Every x-ms-sevsnpvm-* claim of Azure's token, with the same JSON type
    // (and lowercase hex of the same length for strings), and no other.
    let snp = |m: &Map<String, Value>| {
        let mut names: Vec<String> = m
            .keys()
            .filter(|k| k.starts_with("x-ms-sevsnpvm-"))
            .cloned()
            .collect();
        names.sort();
        names
    };
    assert_eq!(snp(&claims), snp(&recorded));
    for name in snp(&recorded) {
        assert_eq!(kind(&claims[&name]), kind(&recorded[&name]), "{name}");
        if let (Value::String(ours), Value::String(theirs)) = (&claims[&name], &recorded[&name]) {
            assert_eq!(ours.len(), theirs.len(), "{name}");
            assert_eq!(ours, &ours.to_lowercase(), "{name}");
        }
    }
    for name in ["x-ms-attestation-type", "x-ms-ver", "x-ms-policy-hash"] {
        assert!(claims.contains_key(name), "{name}");
    }
    assert_eq!(claims["x-ms-attestation-type"], "sevsnpvm");
    // The default policy is Azure's, byte for byte.
    assert_eq!(claims["x-ms-policy-hash"], recorded["x-ms-policy-hash"]);
    assert_eq!(claims["x-ms-ver"], "1.0");
    assert_eq!(claims["nonce"], "n-123");
    let runtime_json: Value = serde_json::from_slice(&runtime).unwrap();
    assert_eq!(claims["x-ms-runtime"], runtime_json);
    assert_eq!(
        claims["x-ms-sevsnpvm-launchmeasurement"],
        "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
    );
    assert_eq!(claims["x-ms-sevsnpvm-bootloader-svn"], 3);
    assert_eq!(claims["x-ms-sevsnpvm-microcode-svn"], 115);
    assert_eq!(claims["x-ms-sevsnpvm-snpfw-svn"], 8);
    assert_eq!(claims["x-ms-sevsnpvm-is-debuggable"], false);
}

#[tokio::test]
async fn broken_snp_evidence_is_a_400_with_its_code() {
    let Some((report, runtime, pem)) = azure_cvm() else {
        return;
    };
    let svc = TestService::start(false).await;
    let refused = |r: Result<String, ClientError>| match r {
        Err(ClientError::Service { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    };
    // A changed measurement.
    let mut bad = report.clone();
    bad[0x90] ^= 1;
    let (status, code) = refused(
        svc.client
            .attest_sev_snp(&bad, Some(&pem), &AttestOptions::default())
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "SnpReportSignatureInvalid"));
    // Runtime data that is not what REPORT_DATA commits to.
    let options = AttestOptions {
        runtime_data: Some((b"{}".to_vec(), DataType::Json)),
        ..AttestOptions::default()
    };
    let (status, code) = refused(
        svc.client
            .attest_sev_snp(&report, Some(&pem), &options)
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "RuntimeDataMismatch"));
    // initTimeData whose SHA-256 is not HOST_DATA.
    let options = AttestOptions {
        runtime_data: Some((runtime, DataType::Json)),
        init_time_data: Some((b"init".to_vec(), DataType::Binary)),
        ..AttestOptions::default()
    };
    let (status, code) = refused(
        svc.client
            .attest_sev_snp(&report, Some(&pem), &options)
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "InitTimeDataMismatch"));
    // No chain: this service has no VCEK source.
    let (status, code) = refused(
        svc.client
            .attest_sev_snp(&report, None, &AttestOptions::default())
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "SnpCertificateChainMissing"));
    // Not Azure's wrapper at all.
    let (status, code) = refused(
        svc.client
            .attest(
                &aver_attestation::evidence::snp::SEV_SNP_VM,
                &report,
                &AttestOptions::default(),
            )
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "SnpEvidenceMalformed"));
}

// ---- VCEKs from a KDS-compatible server on loopback ----

#[derive(Clone, Copy)]
enum KdsMode {
    /// Serve the VCEK at its exact path (404 elsewhere, ARK CRLs included).
    Serve,
    /// 429 with Retry-After: 120.
    RateLimited,
}

struct FakeKds {
    url: String,
    http: common::FakeHttp,
}

impl FakeKds {
    /// Requests for VCEKs (the service also asks for ARK CRLs, in the
    /// background, which these tests do not count).
    fn vcek_hits(&self) -> usize {
        self.http.hits(|p| !p.ends_with("/crl"))
    }
}

/// AMD KDS's VCEK route on loopback.
async fn fake_kds(mode: KdsMode, vcek_path: String, vcek: Vec<u8>) -> FakeKds {
    let http = common::FakeHttp::start(move |path| match mode {
        KdsMode::RateLimited => (
            "429 Too Many Requests",
            "Retry-After: 120\r\n".into(),
            vec![],
        ),
        KdsMode::Serve if path == vcek_path => ("200 OK", String::new(), vcek.clone()),
        KdsMode::Serve => ("404 Not Found", String::new(), vec![]),
    })
    .await;
    FakeKds {
        url: http.url.clone(),
        http,
    }
}

fn vcek_der(pem: &[u8]) -> Vec<u8> {
    aver_attestation::evidence::snp::certs::split_chain(pem)
        .unwrap()
        .remove(0)
}

fn milan_vcek_path(report: &[u8]) -> String {
    format!(
        "/vcek/v1/Milan/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
        hex::encode(&report[0x1A0..0x1E0])
    )
}

async fn service_with_kds(url: &str) -> TestService {
    let url = url.to_string();
    TestService::start_with(false, aver_server::state::Clock::System, move |c| {
        c.amd_kds_url = Some(url);
    })
    .await
}

#[tokio::test]
async fn a_report_without_chain_gets_its_vcek_from_kds_once() {
    let Some((report, runtime, pem)) = azure_cvm() else {
        return;
    };
    let kds = fake_kds(KdsMode::Serve, milan_vcek_path(&report), vcek_der(&pem)).await;
    let svc = service_with_kds(&kds.url).await;
    let options = AttestOptions {
        runtime_data: Some((runtime, DataType::Json)),
        ..AttestOptions::default()
    };
    for _ in 0..3 {
        let token = svc
            .client
            .attest_sev_snp(&report, None, &options)
            .await
            .unwrap();
        let claims = svc
            .client
            .verify_token(&token, svc.issuer(), now(), 60)
            .await
            .unwrap();
        assert_eq!(claims["x-ms-sevsnpvm-microcode-svn"], 115);
    }
    // Fetched once, then served from the store's shared cache.
    assert_eq!(kds.vcek_hits(), 1);
    let key = format!(
        "amd/milan/vcek/{}/blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
        hex::encode(&report[0x1A0..0x1E0])
    );
    let cached = svc.service.state.store.collateral(&key).unwrap().unwrap();
    assert_eq!(cached.body, vcek_der(&pem));
    assert!(cached.expires_at.is_some());
}

#[tokio::test]
async fn kds_rate_limiting_backs_off_and_says_so() {
    let Some((report, _, pem)) = azure_cvm() else {
        return;
    };
    let kds = fake_kds(
        KdsMode::RateLimited,
        milan_vcek_path(&report),
        vcek_der(&pem),
    )
    .await;
    let svc = service_with_kds(&kds.url).await;
    for _ in 0..3 {
        match svc
            .client
            .attest_sev_snp(&report, None, &AttestOptions::default())
            .await
        {
            Err(ClientError::Service { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (503, "VcekUnavailable"));
            }
            other => panic!("expected 503 VcekUnavailable, got {other:?}"),
        }
    }
    // One request to AMD; the others waited out its Retry-After.
    assert_eq!(kds.vcek_hits(), 1);
    // A request with its chain does not need the KDS at all.
    svc.client
        .attest_sev_snp(&report, Some(&pem), &AttestOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_chip_is_a_missing_chain() {
    let Some((report, _, pem)) = azure_cvm() else {
        return;
    };
    let kds = fake_kds(KdsMode::Serve, "/nowhere".into(), vcek_der(&pem)).await;
    let svc = service_with_kds(&kds.url).await;
    match svc
        .client
        .attest_sev_snp(&report, None, &AttestOptions::default())
        .await
    {
        Err(ClientError::Service { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (400, "SnpCertificateChainMissing"));
        }
        other => panic!("expected 400, got {other:?}"),
    }
    // A v2 report names no product: Milan, then Genoa.
    assert_eq!(kds.vcek_hits(), 2);
}

/// Raw HTTP in Azure's shape, with the api-version third-party SevSnpVm
/// clients send, a draft policy and a nonce.
#[tokio::test]
async fn raw_azure_request_with_api_version_2025_06_01_and_a_draft_policy() {
    let Some((report, runtime, pem)) = azure_cvm() else {
        return;
    };
    let svc = TestService::start(false).await;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&svc.ca).unwrap()])
        .build()
        .unwrap();
    let b64 = |b: &[u8]| aver_token::b64::encode_url(b);
    let evidence = serde_json::json!({ "SnpReport": b64(&report), "VcekCertChain": b64(&pem) });
    let body = serde_json::json!({
        "report": b64(evidence.to_string().as_bytes()),
        "runtimeData": { "data": b64(&runtime), "dataType": "JSON" },
        "draftPolicyForAttestation": "version=1.0; authorizationrules { [type==\"x-ms-sevsnpvm-is-debuggable\", value==false] => permit(); }; issuancerules { c:[type==\"x-ms-sevsnpvm-launchmeasurement\"] => issue(type=\"measurement\", value=c.value); };",
        "nonce": "raw-1",
    });
    let url = format!("{}/attest/SevSnpVm?api-version=2025-06-01", svc.issuer());
    let response = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    let token = reply["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&aver_token::b64::decode_lenient(payload).unwrap()).unwrap();
    assert_eq!(claims["nonce"], "raw-1");
    assert_eq!(
        claims["x-ms-policy"]["measurement"],
        claims["x-ms-sevsnpvm-launchmeasurement"]
    );
    assert_eq!(claims["x-ms-sevsnpvm-vmpl"], 0);
}

/// Offline hosts: a VCEK imported into the shared cache (what `aver
/// collateral import` does) serves reports without a chain, with no key
/// distribution service configured; before the import they are refused.
#[tokio::test]
async fn an_imported_vcek_serves_reports_without_a_chain_and_no_kds() {
    let Some((report, runtime, pem)) = azure_cvm() else {
        return;
    };
    let svc = TestService::start(false).await;
    let options = AttestOptions {
        runtime_data: Some((runtime, DataType::Json)),
        ..AttestOptions::default()
    };
    let err = svc
        .client
        .attest_sev_snp(&report, None, &options)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("SnpCertificateChainMissing"),
        "{err}"
    );
    let der = vcek_der(&pem);
    let key = aver_attestation::evidence::snp::kds::vcek_cache_key(
        &aver_attestation::evidence::snp::SnpTrust::amd(),
        &der,
        aver_attestation::VerificationTime::from_unix_seconds(now()),
    )
    .unwrap();
    let record = aver_server::store::CollateralRecord::new(key, der, "import:test", 0, None);
    svc.service.state.store.put_collateral(&record).unwrap();
    let token = svc
        .client
        .attest_sev_snp(&report, None, &options)
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), now(), 60)
        .await
        .unwrap();
    assert_eq!(claims["x-ms-sevsnpvm-microcode-svn"], 115);
}
