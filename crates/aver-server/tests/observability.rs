//! What an operator sees, over real listeners: request ids on every answer
//! (errors included), the probes on both listeners, and Prometheus metrics
//! that count attestations by type, provider and outcome and time their
//! stages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_client::{AttestOptions, DataType, SgxEndpoint};
use aver_server::state::Clock;
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use common::TestService;

fn https(ca: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .build()
        .unwrap()
}

async fn service() -> TestService {
    TestService::start_with(true, Clock::System, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_clients_plain_id_is_kept() {
    let svc = service().await;
    let http = https(&svc.ca);
    let ok = http
        .get(format!("{}/certs", svc.issuer()))
        .send()
        .await
        .unwrap();
    let generated = ok.headers()["x-ms-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(generated.len(), 32, "a fresh id is 16 random bytes in hex");

    // An error answer carries one too, beside its code.
    let bad = http
        .post(format!(
            "{}/attest/SgxEnclave?api-version=2022-08-01",
            svc.issuer()
        ))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let id = bad.headers()["x-ms-request-id"].to_str().unwrap();
    assert_ne!(id, generated);

    // A proxy's id is reused, so logs correlate across hops...
    let kept = http
        .get(format!("{}/certs", svc.issuer()))
        .header("x-request-id", "lb-1234.abc_DEF")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-ms-request-id"], "lb-1234.abc_DEF");
    // ...unless it could smuggle something into a log line.
    let replaced = http
        .get(format!("{}/certs", svc.issuer()))
        .header("x-ms-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-ms-request-id"], "a b\"c");
    svc.service.shutdown().await;
}

#[tokio::test]
async fn probes_answer_on_both_listeners() {
    let svc = service().await;
    let http = https(&svc.ca);
    let metrics_base = format!("http://{}", svc.service.metrics_addr.unwrap());
    for base in [svc.issuer().to_string(), metrics_base] {
        let client = if base.starts_with("https") {
            http.clone()
        } else {
            reqwest::Client::new()
        };
        let alive = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(alive.status(), 200, "{base}/healthz");
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{base}/readyz");
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["store"]["reachable"], true);
        assert!(body["providers"].as_u64().unwrap() >= 1);
    }
    // The metrics listener serves nothing of the API.
    let certs = reqwest::Client::new()
        .get(format!(
            "http://{}/certs",
            svc.service.metrics_addr.unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(certs.status(), 404);
    svc.service.shutdown().await;
}

/// The value of the sample whose line starts with `prefix` and contains
/// every label in `labels`.
fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[tokio::test]
async fn metrics_count_attestations_by_type_provider_and_outcome() {
    let svc = service().await;
    let metrics_url = format!("http://{}/metrics", svc.service.metrics_addr.unwrap());
    let scrape = || async {
        reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let ok_labels = [
        "type=\"SgxEnclave\"",
        "provider=\"default\"",
        "outcome=\"ok\"",
    ];
    let bad_labels = [
        "type=\"SgxEnclave\"",
        "provider=\"default\"",
        "outcome=\"InvalidParameter\"",
    ];
    // The recorder is process-wide (other tests in this binary count too),
    // so compare before and after.
    let before = scrape().await;
    let ok_before = sample(&before, "aver_attestations_total", &ok_labels).unwrap_or(0.0);
    let bad_before = sample(&before, "aver_attestations_total", &bad_labels).unwrap_or(0.0);

    let runtime = b"metrics";
    let platform = SimPlatform::generate().unwrap();
    let quote = platform
        .quote(&EnclaveIdentity {
            mr_enclave: [1; 32],
            mr_signer: [2; 32],
            product_id: 1,
            svn: 1,
            debug: false,
            report_data: report_data_for(runtime),
        })
        .unwrap();
    let options = AttestOptions {
        runtime_data: Some((runtime.to_vec(), DataType::Binary)),
        ..AttestOptions::default()
    };
    for _ in 0..2 {
        svc.client
            .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
            .await
            .unwrap();
    }
    let refused = https(&svc.ca)
        .post(format!(
            "{}/attest/SgxEnclave?api-version=2022-08-01",
            svc.issuer()
        ))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let after = scrape().await;
    // At least: a client may retry on a loaded machine, and the recorder is
    // the process's; what must hold is that each outcome was counted.
    assert!(
        sample(&after, "aver_attestations_total", &ok_labels).unwrap() - ok_before >= 2.0,
        "{after}"
    );
    assert!(
        sample(&after, "aver_attestations_total", &bad_labels).unwrap() - bad_before >= 1.0,
        "{after}"
    );
    for stage in ["decode", "verify", "policy", "sign"] {
        let count = sample(
            &after,
            "aver_attestation_stage_duration_seconds_count",
            &["type=\"SgxEnclave\"", &format!("stage=\"{stage}\"")],
        );
        assert!(count.unwrap_or(0.0) >= 2.0, "stage {stage}: {after}");
    }
    for name in [
        "aver_http_request_duration_seconds_bucket",
        "aver_http_requests_total",
        "aver_cpu_pool_capacity",
        "aver_signing_key_age_seconds",
        "aver_store_reachable",
        "process_resident_memory_bytes",
    ] {
        assert!(after.contains(name), "{name} missing from the metrics");
    }
    // Labels are bounded: a hostile path is "other", never itself.
    https(&svc.ca)
        .get(format!("{}/no/such/path-abcdef", svc.issuer()))
        .send()
        .await
        .unwrap();
    let last = scrape().await;
    assert!(!last.contains("path-abcdef"));
    assert!(last.contains("route=\"other\""));
    svc.service.shutdown().await;
}
