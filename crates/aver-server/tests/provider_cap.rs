//! A provider's own cap on attestations in flight (`max_in_flight`): while
//! one slow attestation of a capped provider runs, a second one of that
//! provider is refused with 503 `ServerBusy` and `Retry-After`, the
//! default provider keeps attesting, and the capped provider is admitted
//! again once its attestation ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use aver_server::state::Clock;
use aver_sim::SimPlatform;
use common::{
    TestService, create_provider, https_client, large_runtime, set_sgx_policy, sgx_body,
    slow_policy,
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_over_its_cap_is_refused_and_others_are_not() {
    let svc = TestService::start_with(true, Clock::System, |c| {
        c.cpu.max_concurrent = 4;
    })
    .await;
    let http = https_client(&svc.ca);
    let base = svc.issuer().to_string();
    let platform = SimPlatform::generate().unwrap();
    let slow = Arc::new(sgx_body(&platform, &large_runtime()));
    let quick = sgx_body(&platform, br#"[{"k":1}]"#);

    // Provider "capped": the slow policy and at most one attestation in flight.
    let settings = aver_server::state::ProviderSettings {
        max_in_flight: Some(1),
        ..Default::default()
    };
    let key = create_provider(&svc, "capped", Some(settings)).await;
    set_sgx_policy(&http, &base, "capped", &key, &slow_policy()).await;
    let capped_url = format!("{base}/providers/capped/attest/SgxEnclave?api-version=2022-08-01");
    let default_url = format!("{base}/attest/SgxEnclave?api-version=2022-08-01");

    // The slow attestation is in flight; a second one of the same provider
    // must be refused while it is. That is a race against the slow job's
    // length on a loaded machine, so up to three attempts.
    let mut refused = None;
    for _attempt in 0..3 {
        let first = {
            let (http, url, body) = (http.clone(), capped_url.clone(), slow.clone());
            tokio::spawn(async move {
                let r = http.post(&url).json(&*body).send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        };
        for _ in 0..400 {
            if svc.service.state.cpu.in_flight("capped") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            svc.service.state.cpu.in_flight("capped"),
            1,
            "never admitted"
        );
        let second = http.post(&capped_url).json(&quick).send().await.unwrap();
        // The default provider has no cap of its own.
        let other = http.post(&default_url).json(&quick).send().await.unwrap();
        assert_eq!(other.status(), 200, "{}", other.text().await.unwrap());
        let still_running = !first.is_finished();
        let (status, body) = first.await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "PolicyStepLimitExceeded", "{body}");
        if second.status() == 503 {
            refused = Some((
                second
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
                second.json::<Value>().await.unwrap(),
            ));
            break;
        }
        // Admitted: only possible if the slow one had already ended.
        assert!(
            !still_running,
            "a second attestation was admitted over the cap"
        );
    }
    let (retry_after, body) = refused.expect("the slow attestation ended too soon, 3 times");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "ServerBusy", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("provider capped is at its limit of 1"),
        "{message}"
    );

    // The slot is back once the slow attestation has ended.
    assert_eq!(svc.service.state.cpu.in_flight("capped"), 0);
    let r = http.post(&capped_url).json(&quick).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
