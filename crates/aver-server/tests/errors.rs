//! Bad input gets a 4xx with `{"error":{"code","message"}}`, never a 5xx.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use common::TestService;
use serde_json::{Value, json};

struct Raw {
    http: reqwest::Client,
    base: String,
}

impl Raw {
    fn new(svc: &TestService) -> Raw {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cert = reqwest::Certificate::from_pem(&svc.ca).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([cert])
            .build()
            .unwrap();
        Raw {
            http,
            base: svc.issuer().to_string(),
        }
    }

    async fn send(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "PUT" => self.http.put(&url),
            _ => self.http.post(&url),
        };
        let response = request
            .header("content-type", "application/json")
            .header("authorization", "Bearer anything-the-sdk-sends")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, value)
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

const ATTEST: &str = "/attest/SgxEnclave?api-version=2022-08-01";

#[tokio::test]
async fn every_rejection_is_a_4xx_with_a_code() {
    let svc = TestService::start(true).await;
    let raw = Raw::new(&svc);
    let platform = SimPlatform::generate().unwrap();
    let identity = EnclaveIdentity {
        report_data: report_data_for(b"rt"),
        ..EnclaveIdentity::default()
    };
    let quote = platform.quote(&identity).unwrap();
    let b64 = aver_token::b64::encode_url;
    let body = |v: Value| serde_json::to_vec(&v).unwrap();

    // Accepted: older field casing and an Authorization header.
    let (status, v) = raw
        .send("POST", ATTEST, body(json!({"Quote": b64(&quote), "runtimeData": {"data": b64(b"rt"), "dataType": "Binary"}})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["token"].is_string());
    // 2020-10-01 works too.
    let (status, _) = raw
        .send(
            "POST",
            "/attest/SgxEnclave?api-version=2020-10-01",
            body(json!({"quote": b64(&quote)})),
        )
        .await;
    assert_eq!(status, 200);

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/attest/SgxEnclave",
            body(json!({"quote": b64(&quote)})),
            400,
            "MissingApiVersion",
        ),
        (
            "POST",
            "/attest/SgxEnclave?api-version=2019-01-01",
            body(json!({"quote": b64(&quote)})),
            400,
            "UnsupportedApiVersion",
        ),
        (
            "POST",
            ATTEST,
            b"{not json".to_vec(),
            400,
            "InvalidParameter",
        ),
        ("POST", ATTEST, body(json!([1, 2])), 400, "InvalidParameter"),
        ("POST", ATTEST, body(json!({})), 400, "InvalidParameter"),
        (
            "POST",
            ATTEST,
            body(json!({"quote": "!!!"})),
            400,
            "InvalidParameter",
        ),
        (
            "POST",
            ATTEST,
            body(json!({"quote": b64(b"short")})),
            400,
            "InvalidQuote",
        ),
        (
            "POST",
            ATTEST,
            body(
                json!({"quote": b64(&quote), "runtimeData": {"data": b64(b"other"), "dataType": "Binary"}}),
            ),
            400,
            "RuntimeDataMismatch",
        ),
        (
            "POST",
            ATTEST,
            body(
                json!({"quote": b64(&quote), "runtimeData": {"data": b64(b"rt"), "dataType": "JSON"}}),
            ),
            400,
            "InvalidParameter",
        ),
        (
            "POST",
            ATTEST,
            body(
                json!({"quote": b64(&quote), "initTimeData": {"data": b64(b"cfg"), "dataType": "Binary"}}),
            ),
            400,
            "InitTimeDataMismatch",
        ),
        (
            "POST",
            ATTEST,
            body(json!({"quote": b64(&quote), "draftPolicyForAttestation": 5})),
            400,
            "InvalidParameter",
        ),
        (
            "POST",
            ATTEST,
            vec![b' '; 2 * 1024 * 1024],
            413,
            "PayloadTooLarge",
        ),
        ("GET", "/nope", vec![], 404, "NotFound"),
        ("GET", ATTEST, vec![], 405, "MethodNotAllowed"),
    ];
    for (method, path, payload, want_status, want_code) in cases {
        let (status, v) = raw.send(method, path, payload).await;
        assert_eq!(
            (status, code(&v)),
            (want_status, want_code),
            "{method} {path}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // Tampered quote signature region: the specific verification error.
    let mut tampered = quote.clone();
    tampered[48 + 64] ^= 1;
    let (status, v) = raw
        .send("POST", ATTEST, body(json!({"quote": b64(&tampered)})))
        .await;
    assert_eq!((status, code(&v)), (400, "QuoteSignatureInvalid"));

    // The SDK's inittime_json bug: dataType without data counts as absent.
    let (status, _) = raw
        .send(
            "POST",
            ATTEST,
            body(json!({"quote": b64(&quote), "initTimeData": {"dataType": "JSON"}})),
        )
        .await;
    assert_eq!(status, 200);
}
