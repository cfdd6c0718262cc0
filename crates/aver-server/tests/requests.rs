//! Request handling found lax by a hostile-input probe: routing by host over
//! HTTP/1.1 and HTTP/2, exact nonces, duplicate keys, reset bodies, the
//! policy signer's key size, and a malformed-request corpus over every
//! endpoint (each answer a 4xx with a code; the service healthy after).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_client::AdminClient;
use aver_server::store::ProviderRecord;
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use common::{TestService, now};
use serde_json::{Value, json};

const ATTEST: &str = "/attest/SgxEnclave?api-version=2022-08-01";

/// A raw HTTPS client: `http2` selects HTTP/2 (by ALPN) or HTTP/1.1 only.
/// Host names resolve to the test service, whose self-signed certificate
/// does not name them, so certificate verification is off (tests only).
fn http(svc: &TestService, http2: bool) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("a.example", svc.service.addr)
        .resolve("a.example.", svc.service.addr)
        .resolve("localhost", svc.service.addr);
    builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

fn url(svc: &TestService, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", svc.service.addr.port())
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    auth: Option<&str>,
) -> (u16, Value, reqwest::Version) {
    let mut req = http
        .request(method, url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(auth) = auth {
        req = req.header("authorization", format!("Bearer {auth}"));
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let version = response.version();
    let value = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, value, version)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

fn quote_for(runtime: &[u8]) -> Vec<u8> {
    SimPlatform::generate()
        .unwrap()
        .quote(&EnclaveIdentity {
            report_data: report_data_for(runtime),
            ..EnclaveIdentity::default()
        })
        .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    aver_token::b64::encode_url(bytes)
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&aver_token::b64::decode_lenient(part).unwrap()).unwrap()
}

async fn host_provider(svc: &TestService) -> String {
    let state = svc.service.state.clone();
    let record = ProviderRecord {
        name: "hosted".into(),
        isolated: false,
        host: Some("a.example".into()),
        created_at: now() as i64,
    };
    let key = tokio::task::spawn_blocking(move || {
        aver_server::load::create_provider(state.store.as_ref(), &record, &[], "test").unwrap()
    })
    .await
    .unwrap();
    svc.service.state.reload().await.unwrap();
    key
}

#[tokio::test]
async fn providers_route_by_host_over_http1_and_http2() {
    let svc = TestService::start(true).await;
    let admin_key = host_provider(&svc).await;
    let quote = quote_for(b"rt");
    let body = serde_json::to_vec(&json!({"quote": b64(&quote)})).unwrap();
    for http2 in [false, true] {
        let http = http(&svc, http2);
        for host in ["a.example", "a.example."] {
            let (status, v, version) = send(
                &http,
                reqwest::Method::POST,
                &url(&svc, host, ATTEST),
                body.clone(),
                None,
            )
            .await;
            assert_eq!(status, 200, "{host} http2={http2}: {v}");
            assert_eq!(
                version,
                if http2 {
                    reqwest::Version::HTTP_2
                } else {
                    reqwest::Version::HTTP_11
                }
            );
            // The hosted provider's issuer: https://<host>, no port.
            assert_eq!(
                payload(v["token"].as_str().unwrap())["iss"],
                "https://a.example",
                "{host} http2={http2}"
            );
        }
        // Its admin key works on its own routes, under either protocol.
        let (status, v, _) = send(
            &http,
            reqwest::Method::GET,
            &url(
                &svc,
                "a.example",
                "/policies/SgxEnclave?api-version=2022-08-01",
            ),
            vec![],
            Some(&admin_key),
        )
        .await;
        assert_eq!(status, 200, "http2={http2}: {v}");
        // The default provider answers on other names.
        let (status, v, _) = send(
            &http,
            reqwest::Method::POST,
            &url(&svc, "localhost", ATTEST),
            body.clone(),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(payload(v["token"].as_str().unwrap())["iss"], svc.issuer());
    }
}

#[tokio::test]
async fn nonces_come_back_exactly_or_are_refused() {
    let svc = TestService::start(true).await;
    let http = http(&svc, false);
    let quote = quote_for(b"rt");
    let attest =
        |nonce: &str| format!(r#"{{"quote":"{}","nonce":{nonce}}}"#, b64(&quote)).into_bytes();
    for (nonce, expected) in [
        (r#""abc""#, json!("abc")),
        ("123", json!("123")),
        ("18446744073709551615", json!("18446744073709551615")),
        ("-5", json!("-5")),
    ] {
        let (status, v, _) = send(
            &http,
            reqwest::Method::POST,
            &url(&svc, "localhost", ATTEST),
            attest(nonce),
            None,
        )
        .await;
        assert_eq!(status, 200, "{nonce}: {v}");
        assert_eq!(payload(v["token"].as_str().unwrap())["nonce"], expected);
    }
    for nonce in [
        "1e20",
        "1.5",
        "123456789012345678901234567890",
        "true",
        "{}",
    ] {
        let (status, v, _) = send(
            &http,
            reqwest::Method::POST,
            &url(&svc, "localhost", ATTEST),
            attest(nonce),
            None,
        )
        .await;
        assert_eq!(
            (status, code(&v)),
            (400, "InvalidParameter"),
            "{nonce}: {v}"
        );
    }
}

#[tokio::test]
async fn duplicate_keys_are_refused() {
    let svc = TestService::start(true).await;
    let http = http(&svc, false);
    let quote = b64(&quote_for(b"rt"));
    for body in [
        format!(r#"{{"quote":"{quote}","quote":"{quote}"}}"#),
        format!(r#"{{"quote":"{quote}","Quote":"{quote}"}}"#),
        format!(
            r#"{{"quote":"{quote}","runtimeData":{{"data":"cnQ","data":"cnQ","dataType":"Binary"}}}}"#
        ),
        format!(
            r#"{{"quote":"{quote}","runtimeData":{{"data":"cnQ","Data":"eHg","dataType":"Binary"}}}}"#
        ),
        // JSON runtime data with a duplicate key inside it.
        format!(
            r#"{{"quote":"{quote}","runtimeData":{{"data":"{}","dataType":"JSON"}}}}"#,
            b64(br#"{"k":1,"k":2}"#)
        ),
    ] {
        let (status, v, _) = send(
            &http,
            reqwest::Method::POST,
            &url(&svc, "localhost", ATTEST),
            body.clone().into_bytes(),
            None,
        )
        .await;
        assert_eq!((status, code(&v)), (400, "InvalidParameter"), "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("twice")
                || v["error"]["message"].as_str().unwrap().contains("both"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn reset_refuses_a_body_carrying_a_policy() {
    let svc = TestService::start(true).await;
    let admin = AdminClient::new(
        svc.client.clone(),
        svc.service.new_admin_key.as_deref().unwrap(),
    );
    let http = http(&svc, false);
    let key = svc.service.new_admin_key.clone().unwrap();
    for body in [
        aver_token::policy::unsigned(Some("version=1.0; authorizationrules{=> permit();};")),
        aver_token::policy::unsigned(Some("not a policy at all")),
    ] {
        let (status, v, _) = send(
            &http,
            reqwest::Method::POST,
            &url(
                &svc,
                "localhost",
                "/policies/SgxEnclave:reset?api-version=2022-08-01",
            ),
            body.into_bytes(),
            Some(&key),
        )
        .await;
        assert_eq!((status, code(&v)), (400, "InvalidParameter"), "{v}");
    }
    // The proper reset (empty payload) still works.
    let result = admin
        .reset_policy("SgxEnclave", &aver_token::policy::unsigned(None))
        .await
        .unwrap();
    assert_eq!(result["x-ms-policy-result"], "Removed");
}

#[tokio::test]
async fn a_1024_bit_policy_signer_is_named_and_can_be_allowed_per_provider() {
    let svc = TestService::start(true).await;
    let jws = include_str!("data/rsa1024-signed-policy.jws").trim();
    let http = http(&svc, false);
    let key = svc.service.new_admin_key.clone().unwrap();
    let policy_url = url(
        &svc,
        "localhost",
        "/policies/SgxEnclave?api-version=2022-08-01",
    );
    let put = async |body: &str| {
        send(
            &http,
            reqwest::Method::PUT,
            &policy_url,
            body.as_bytes().to_vec(),
            Some(&key),
        )
        .await
    };
    let (status, v, _) = put(jws).await;
    assert_eq!((status, code(&v)), (400, "SignerKeyTooSmall"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the policy signer's RSA key has 1024 bits; the minimum is 2048"),
        "{v}"
    );
    // The operator lowers the minimum for this provider: accepted, and the
    // signature really is checked (a tampered one is refused).
    let store = svc.service.state.store.clone();
    tokio::task::spawn_blocking(move || {
        let audit = aver_server::store::AuditRecord {
            at: 0,
            provider: "default".into(),
            actor: "test".into(),
            action: "provider.configure".into(),
            target: "default".into(),
            policy_hash: None,
            detail: String::new(),
        };
        store
            .set_provider_settings("default", r#"{"min_signer_rsa_bits":1024}"#, &audit)
            .unwrap()
    })
    .await
    .unwrap();
    svc.service.state.reload().await.unwrap();
    let (status, v, _) = put(jws).await;
    assert_eq!(status, 200, "{v}");
    let mut tampered = jws.to_string();
    tampered.pop();
    tampered.push(if jws.ends_with('A') { 'B' } else { 'A' });
    let (status, v, _) = put(&tampered).await;
    assert_eq!((status, code(&v)), (400, "InvalidSignature"), "{v}");
}

/// Every endpoint, a corpus of malformed requests: a 4xx with a code and a
/// message for each, never a 5xx, and the service healthy afterwards.
#[tokio::test]
async fn malformed_requests_get_a_4xx_with_a_code_on_every_endpoint() {
    let svc = TestService::start(true).await;
    let key = svc.service.new_admin_key.clone().unwrap();
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"string\"".to_vec(),
        b"{\"quote\":5}".to_vec(),
        b"{\"data\":{}}".to_vec(),
        b"{\"quote\":\"!!\"}".to_vec(),
        b"{\"report\":\"AAAA\",\"runtimeData\":7}".to_vec(),
        b"{\"a\":1,\"a\":1}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        "{\"quote\":\"\u{0000}\"}".as_bytes().to_vec(),
        format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        b"eyJhbGciOiJub25lIn0.e30.".to_vec(),
        b"a.b.c".to_vec(),
        b"eyJhbGciOiJub25lIiwiY3JpdCI6WyJ4Il19.e30.".to_vec(),
    ];
    let paths = [
        ("POST", "/attest/SgxEnclave"),
        ("POST", "/attest/OpenEnclave"),
        ("POST", "/attest/Tpm"),
        ("PUT", "/policies/SgxEnclave"),
        ("PUT", "/policies/Tpm"),
        ("POST", "/policies/SgxEnclave:reset"),
        ("POST", "/certificates:add"),
        ("POST", "/certificates:remove"),
        ("GET", "/policies/Nope"),
        ("GET", "/audit"),
        ("DELETE", "/certs"),
        ("POST", "/.well-known/openid-configuration"),
        ("GET", "/providers/ghost/certs"),
    ];
    for http2 in [false, true] {
        let http = http(&svc, http2);
        for (method, path) in paths {
            for query in ["?api-version=2022-08-01", "", "?api-version=1999-01-01"] {
                for body in &bodies {
                    for auth in [None, Some(key.as_str()), Some("aver_wrong")] {
                        if path == "/audit" && auth == Some(key.as_str()) && query.contains("2022")
                        {
                            continue; // a valid request
                        }
                        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                        let (status, v, _) = send(
                            &http,
                            method.clone(),
                            &url(&svc, "localhost", &format!("{path}{query}")),
                            body.clone(),
                            auth,
                        )
                        .await;
                        assert!(
                            (400..500).contains(&status),
                            "{method} {path}{query} body {:?}: {status} {v}",
                            String::from_utf8_lossy(body)
                        );
                        assert_ne!(code(&v), "<no code>", "{method} {path}{query}: {v}");
                        assert!(
                            v["error"]["message"]
                                .as_str()
                                .is_some_and(|m| !m.is_empty()),
                            "{v}"
                        );
                    }
                }
            }
        }
        let (status, _, _) = send(
            &http,
            reqwest::Method::GET,
            &url(&svc, "localhost", "/health"),
            vec![],
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    // Nothing changed: the default policy is still in force.
    let (status, v, _) = send(
        &http(&svc, false),
        reqwest::Method::POST,
        &url(&svc, "localhost", ATTEST),
        serde_json::to_vec(&json!({"quote": b64(&quote_for(b"x"))})).unwrap(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        payload(v["token"].as_str().unwrap())["x-ms-policy-hash"],
        "bROrN897ZfWmWY2V0FLUlu3uwk5xatGnKYHn3zBbSlw"
    );
}

/// A TPM policy whose configuration rules fail is refused when it is set:
/// silently dropping its configuration (`require_valid_aik_cert`,
/// `required_pcr_mask`) would make the service more permissive than the
/// policy says.
#[tokio::test]
async fn a_policy_whose_configuration_rules_fail_is_refused() {
    let svc = TestService::start(true).await;
    let http = http(&svc, false);
    let key = svc.service.new_admin_key.clone().unwrap();
    let url = url(&svc, "localhost", "/policies/Tpm?api-version=2022-08-01");
    let failing = r#"version=1.2;
configurationrules {
    => issueproperty(type="require_valid_aik_cert", value=true);
    => issueproperty(type="required_pcr_mask", value=JsonToClaimValue("{not json"));
};
authorizationrules { => permit(); };"#;
    let (status, v, _) = send(
        &http,
        reqwest::Method::PUT,
        &url,
        aver_token::policy::unsigned(Some(failing)).into_bytes(),
        Some(&key),
    )
    .await;
    assert_eq!((status, code(&v)), (400, "PolicyEvaluationError"), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("configurationrules") && message.contains("JsonToClaimValue"),
        "{message}"
    );
    // Nothing was stored: TPM still has no policy.
    let (status, v, _) = send(&http, reqwest::Method::GET, &url, vec![], Some(&key)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        payload(v["token"].as_str().unwrap())["x-ms-policy"],
        "eyJhbGciOiJub25lIn0.."
    );
}
