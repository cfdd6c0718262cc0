//! SGX collateral in the service: imported into the store's shared cache
//! (what `aver collateral import` does) or fetched from a PCCS-compatible
//! server on loopback; quotes then get Intel's TCB verdict as claims, and
//! statuses the service does not accept are refused with their own code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::{Arc, Mutex};

use aver_attestation::VerificationTime;
use aver_attestation::dcap::TrustAnchors;
use aver_attestation::dcap::collateral::{CollateralBundle, rfc3339};
use aver_client::{AttestOptions, ClientError, SgxEndpoint};
use aver_sim::{EnclaveIdentity, SimCollateral, SimCollateralSpec, SimPlatform, SimTcbLevel};
use common::{TestService, now};

/// Collateral valid from two days ago for a month.
fn spec_now() -> SimCollateralSpec {
    let ymd = |secs: u64| {
        let t = rfc3339(secs);
        let y = t[0..4].parse().unwrap();
        let m = t[5..7].parse().unwrap();
        let d = t[8..10].parse().unwrap();
        (y, m, d)
    };
    let from = now() - 2 * 86_400;
    let until = now() + 30 * 86_400;
    SimCollateralSpec {
        issue_date: rfc3339(from),
        next_update: rfc3339(until),
        crl_this_update: ymd(from),
        crl_next_update: ymd(until),
        ..SimCollateralSpec::default()
    }
}

fn sim_roots() -> TrustAnchors {
    let mut roots = TrustAnchors::intel();
    roots
        .add_pem(aver_sim::root_certificate_pem().unwrap().as_bytes(), "sim")
        .unwrap();
    roots
}

fn import(dir: &std::path::Path, c: &SimCollateral) {
    let mut config = common::config(dir, true);
    config.data_dir = dir.to_path_buf();
    let store = aver_server::open_store(&config).unwrap();
    let bundle = CollateralBundle::from_dcap_qvl_json(c.to_dcap_qvl_json().as_bytes()).unwrap();
    aver_server::collateral::import(
        store.as_ref(),
        &sim_roots(),
        &bundle,
        "import:test",
        VerificationTime::from_unix_seconds(now()),
        now() as i64,
    )
    .unwrap();
}

async fn attest(svc: &TestService, quote: &[u8]) -> Result<serde_json::Value, ClientError> {
    attest_map(svc, quote).await.map(serde_json::Value::Object)
}

async fn attest_map(
    svc: &TestService,
    quote: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ClientError> {
    let token = svc
        .client
        .attest_sgx(SgxEndpoint::SgxEnclave, quote, &AttestOptions::default())
        .await?;
    svc.client
        .verify_token(&token, svc.issuer(), now(), 60)
        .await
}

/// Attests every half second until it succeeds (the background source has
/// fetched what the quote needs), for up to 75 s; panics with `what`.
async fn attest_eventually(svc: &TestService, quote: &[u8], what: &str) -> serde_json::Value {
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if let Ok(c) = attest(svc, quote).await {
            return c;
        }
    }
    panic!("{what}");
}

fn code(r: Result<serde_json::Value, ClientError>) -> String {
    match r {
        Err(ClientError::Service { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn imported_collateral_gives_the_tcb_verdict_as_claims() {
    let platform = SimPlatform::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &platform.collateral(&spec_now()).unwrap());
    let config = common::config(dir.path(), true);
    let svc = TestService::start_in(dir, config, aver_server::state::Clock::System).await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    let claims = attest(&svc, &quote).await.unwrap();
    assert_eq!(claims["x-ms-sgx-tcb-status"], "UpToDate");
    assert_eq!(claims["x-ms-sgx-fmspc"], "00906ED50000");
    assert_eq!(claims["x-ms-sgx-tcb-evaluation-data-number"], 17);
    assert_eq!(claims["x-ms-sgx-collateral"].as_object().unwrap().len(), 7);
}

#[tokio::test]
async fn statuses_not_accepted_are_refused_with_their_code() {
    let platform = SimPlatform::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = SimCollateralSpec {
        levels: vec![SimTcbLevel::platform("OutOfDate", &["INTEL-SA-00999"])],
        ..spec_now()
    };
    import(dir.path(), &platform.collateral(&spec).unwrap());
    let config = common::config(dir.path(), true);
    let svc = TestService::start_in(dir, config, aver_server::state::Clock::System).await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    assert_eq!(code(attest(&svc, &quote).await), "TcbStatusOutOfDate");
}

/// A PCCS-compatible server on loopback serving one bundle in PCS's
/// shapes (JSON bodies with the signed member, URL-encoded issuer-chain
/// headers, DER CRLs); `up` switches it off and on.
async fn pccs(c: SimCollateral, up: Arc<Mutex<bool>>) -> String {
    pccs_with_delay(c, up, Arc::new(Mutex::new(None))).await
}

/// [`pccs`] that, while `delay` is set, answers the TCB info that late.
async fn pccs_with_delay(
    c: SimCollateral,
    up: Arc<Mutex<bool>>,
    delay: Arc<Mutex<Option<std::time::Duration>>>,
) -> String {
    pccs_serving(
        std::collections::HashMap::from([(None, c)]),
        up,
        delay,
        None,
    )
    .await
}

/// A PCCS holding `by_number`: the `None` entry is its current
/// collateral, the others answer `tcbEvaluationDataNumber=N` (PCS v4); a
/// number it lacks is a 404.
async fn pccs_serving(
    by_number: std::collections::HashMap<Option<u32>, SimCollateral>,
    up: Arc<Mutex<bool>>,
    delay: Arc<Mutex<Option<std::time::Duration>>>,
    tls: Option<rustls::ServerConfig>,
) -> String {
    use axum::extract::RawQuery;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::routing::get;
    fn enc(pem: &str) -> HeaderValue {
        let mut out = String::new();
        for b in pem.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        HeaderValue::from_str(&out).unwrap()
    }
    let by_number = Arc::new(by_number);
    let answer = move |which: &'static str| {
        let by_number = by_number.clone();
        let up = up.clone();
        let delay = delay.clone();
        move |RawQuery(query): RawQuery| {
            let number = query
                .as_deref()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| {
                    kv.strip_prefix("tcbEvaluationDataNumber=")
                        .map(|n| n.parse::<u32>().unwrap())
                });
            let c = by_number.get(&number).cloned();
            let up = up.clone();
            let delay = *delay.lock().unwrap();
            async move {
                if let (Some(d), "tcb") = (delay, which) {
                    tokio::time::sleep(d).await;
                }
                if !*up.lock().unwrap() {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        HeaderMap::new(),
                        Vec::new(),
                    );
                }
                let Some(c) = c else {
                    return (StatusCode::NOT_FOUND, HeaderMap::new(), Vec::new());
                };
                let mut h = HeaderMap::new();
                let body = match which {
                    "tcb" => {
                        h.insert("TCB-Info-Issuer-Chain", enc(&c.tcb_info_issuer_chain));
                        format!(
                            "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                            c.tcb_info,
                            hex::encode(&c.tcb_info_signature)
                        )
                        .into_bytes()
                    }
                    "qe" => {
                        h.insert(
                            "SGX-Enclave-Identity-Issuer-Chain",
                            enc(&c.qe_identity_issuer_chain),
                        );
                        format!(
                            "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                            c.qe_identity,
                            hex::encode(&c.qe_identity_signature)
                        )
                        .into_bytes()
                    }
                    "pckcrl" => {
                        h.insert("SGX-PCK-CRL-Issuer-Chain", enc(&c.pck_crl_issuer_chain));
                        c.pck_crl.clone()
                    }
                    _ => c.root_ca_crl.clone(),
                };
                (StatusCode::OK, h, body)
            }
        }
    };
    let app = axum::Router::new()
        .route("/sgx/certification/v4/tcb", get(answer("tcb")))
        .route("/sgx/certification/v4/qe/identity", get(answer("qe")))
        .route("/sgx/certification/v4/pckcrl", get(answer("pckcrl")))
        .route("/sgx/certification/v4/rootcacrl", get(answer("root")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let Some(tls) = tls else {
        tokio::spawn(async move { axum::serve(listener, app).await });
        return format!("http://{addr}");
    };
    // HTTPS, as a real PCCS serves it.
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    format!("https://localhost:{}", addr.port())
}

#[tokio::test]
async fn collateral_is_fetched_from_a_pccs_in_the_background_and_shared() {
    let platform = SimPlatform::generate().unwrap();
    let up = Arc::new(Mutex::new(false));
    let url = pccs(platform.collateral(&spec_now()).unwrap(), up.clone()).await;
    let svc = TestService::start_with(true, aver_server::state::Clock::System, |c| {
        c.collateral_url = Some(url.clone());
        c.refresh_secs = 1;
        c.collateral_timeout = std::time::Duration::from_secs(2);
        c.collateral_retry = std::time::Duration::from_secs(1);
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    // Nothing cached and the source down: a clear refusal naming the
    // FMSPC, at once (the request never waits on the source).
    let r = attest(&svc, &quote).await;
    match &r {
        Err(ClientError::Service { code, message, .. }) => {
            assert_eq!(code, "CollateralMissing");
            assert!(message.contains("00906ED50000"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The source comes back: the background round fetches what the quote
    // asked for (after its retry pause), stores and caches it.
    *up.lock().unwrap() = true;
    let claims =
        attest_eventually(&svc, &quote, "collateral was never fetched from the PCCS").await;
    assert_eq!(claims["x-ms-sgx-tcb-status"], "UpToDate");
    // Shared through the store: a replica (or `aver collateral status`) sees it.
    let index = svc.service.state.store.collateral_index().unwrap();
    assert!(
        index
            .iter()
            .any(|r| r.key == "intel/sgx/collateral/00906ED50000/17"),
        "{index:?}"
    );
    // When it stops being current is a gauge, for an alert before then.
    let until = svc.service.state.verifiers.collateral.list()[0].valid_until;
    let metrics = common::scrape_metrics(&svc).await;
    assert!(
        common::has_sample(
            &metrics,
            "aver_dcap_collateral_expiry_timestamp_seconds",
            &["fmspc=\"00906ED50000\"", "tee=\"SGX\""],
            &until.to_string()
        ),
        "{metrics}"
    );
    // The source goes down again: quotes are still answered from the cache.
    *up.lock().unwrap() = false;
    let claims = attest(&svc, &quote).await.unwrap();
    assert_eq!(claims["x-ms-sgx-tcb-status"], "UpToDate");
}

#[tokio::test]
async fn a_slow_source_is_bounded_by_the_time_out_and_never_delays_requests() {
    let platform = SimPlatform::generate().unwrap();
    let up = Arc::new(Mutex::new(true));
    // Slower than the source time-out below: every fetch gives up.
    let delay = Arc::new(Mutex::new(Some(std::time::Duration::from_secs(3600))));
    let url = pccs_with_delay(platform.collateral(&spec_now()).unwrap(), up, delay.clone()).await;
    let svc = TestService::start_with(true, aver_server::state::Clock::System, |c| {
        c.collateral_url = Some(url.clone());
        c.refresh_secs = 1;
        c.collateral_timeout = std::time::Duration::from_secs(1);
        c.collateral_retry = std::time::Duration::from_secs(1);
    })
    .await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    // While the source hangs, each request is answered at once from the
    // cache (nothing there: CollateralMissing), a few times over several
    // fetch attempts.
    for _ in 0..3 {
        assert_eq!(code(attest(&svc, &quote).await), "CollateralMissing");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    // The source recovers: the next attempt (the hung one was cut off by
    // the time-out) succeeds.
    *delay.lock().unwrap() = None;
    let mut ok = false;
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if attest(&svc, &quote).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "collateral was never fetched after the source recovered"
    );
}

#[tokio::test]
async fn collateral_near_its_next_update_is_refreshed_ahead_of_time() {
    let platform = SimPlatform::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Imported collateral that expires in twelve hours: within the day
    // ahead of nextUpdate in which the service refreshes it.
    let soon = SimCollateralSpec {
        next_update: rfc3339(now() + 12 * 3600),
        ..spec_now()
    };
    import(dir.path(), &platform.collateral(&soon).unwrap());
    let fresh = spec_now();
    let url = pccs(
        platform.collateral(&fresh).unwrap(),
        Arc::new(Mutex::new(true)),
    )
    .await;
    let mut config = common::config(dir.path(), true);
    config.collateral_url = Some(url);
    config.refresh_secs = 1;
    let svc = TestService::start_in(dir, config, aver_server::state::Clock::System).await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    let mut expiry = String::new();
    for _ in 0..150 {
        let claims = attest(&svc, &quote).await.unwrap();
        expiry = claims["x-ms-sgx-collateral-expiry"]
            .as_str()
            .unwrap()
            .to_string();
        // Refreshed: the earliest nextUpdate is now beyond the day ahead.
        if expiry.as_str() > rfc3339(now() + 86_400).as_str() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        expiry.as_str() > rfc3339(now() + 86_400).as_str(),
        "still the old collateral: expiry {expiry}"
    );
}

#[tokio::test]
async fn a_provider_may_accept_more_statuses_than_the_service() {
    let platform = SimPlatform::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = SimCollateralSpec {
        levels: vec![SimTcbLevel::platform("OutOfDate", &["INTEL-SA-00999"])],
        ..spec_now()
    };
    import(dir.path(), &platform.collateral(&spec).unwrap());
    let config = common::config(dir.path(), true);
    let svc = TestService::start_in(dir, config, aver_server::state::Clock::System).await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    assert_eq!(code(attest(&svc, &quote).await), "TcbStatusOutOfDate");
    // What `aver provider configure default --accept-tcb-status ...` does.
    let store = svc.service.state.store.clone();
    let settings = aver_server::state::ProviderSettings {
        accepted_tcb_statuses: Some(vec![
            aver_attestation::dcap::TcbStatus::UpToDate,
            aver_attestation::dcap::TcbStatus::OutOfDate,
        ]),
        ..Default::default()
    };
    let audit = aver_server::store::AuditRecord {
        at: now() as i64,
        provider: "default".into(),
        actor: "test".into(),
        action: "provider.configure".into(),
        target: "default".into(),
        policy_hash: None,
        detail: "accepted_tcb_statuses".into(),
    };
    store
        .set_provider_settings(
            "default",
            &serde_json::to_string(&settings).unwrap(),
            &audit,
        )
        .unwrap();
    svc.service.state.reload().await.unwrap();
    let claims = attest(&svc, &quote).await.unwrap();
    assert_eq!(claims["x-ms-sgx-tcb-status"], "OutOfDate");
    assert_eq!(
        claims["x-ms-sgx-tcb-advisory-ids"],
        serde_json::json!(["INTEL-SA-00999"])
    );
}

/// A platform whose collateral exists at two TCB evaluation data numbers:
/// #16 judges its TCB UpToDate, #17 (the newest, after a TCB recovery)
/// OutOfDate.
fn two_baselines(platform: &SimPlatform, dir: &std::path::Path) {
    let old = SimCollateralSpec {
        tcb_evaluation_data_number: 16,
        ..spec_now()
    };
    let new = SimCollateralSpec {
        tcb_evaluation_data_number: 17,
        levels: vec![SimTcbLevel::platform("OutOfDate", &["INTEL-SA-01000"])],
        ..spec_now()
    };
    import(dir, &platform.collateral(&old).unwrap());
    import(dir, &platform.collateral(&new).unwrap());
}

fn baseline_policy(identifier: &str) -> String {
    format!(
        "version=1.1; configurationrules{{ => issueproperty(type=\"x-ms-sgx-tcbidentifier\", value=\"{identifier}\"); }}; authorizationrules{{ => permit(); }}; issuancerules{{ c:[type==\"x-ms-sgx-tcb-status\"] => issue(claim=c); }};"
    )
}

#[tokio::test]
async fn a_policy_pins_its_tcb_baseline() {
    let platform = SimPlatform::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    two_baselines(&platform, dir.path());
    let config = common::config(dir.path(), true);
    let svc = TestService::start_in(dir, config, aver_server::state::Clock::System).await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    // No baseline in the policy: the newest collateral judges.
    assert_eq!(code(attest(&svc, &quote).await), "TcbStatusOutOfDate");

    let admin = aver_client::AdminClient::new(
        svc.client.clone(),
        svc.service.new_admin_key.as_deref().unwrap(),
    );
    let set = |identifier: &str| {
        let jws = aver_token::policy::unsigned(Some(&baseline_policy(identifier)));
        let admin = admin.clone();
        async move { admin.set_policy("SgxEnclave", &jws).await }
    };
    set("16").await.unwrap();
    let claims = attest(&svc, &quote).await.unwrap();
    assert_eq!(claims["x-ms-sgx-tcb-status"], "UpToDate");
    assert_eq!(claims["x-ms-sgx-tcb-evaluation-data-number"], 16);

    // `/tcbbaselines` lists both numbers and says which one is selected.
    let url = format!(
        "{}/tcbbaselines/SgxEnclave?api-version=2022-09-01-preview",
        svc.issuer()
    );
    let listed = svc.client.get_json(&url).await.unwrap();
    let baselines = listed["tcbBaselines"].as_array().unwrap();
    let ids: Vec<&str> = baselines
        .iter()
        .map(|b| b["tcbIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["azuredefault", "17", "16"]);
    assert_eq!(baselines[0]["tcbEvaluationDataNumber"], 17);
    let selected: Vec<&str> = baselines
        .iter()
        .filter(|b| b["isSelectedTcb"] == true)
        .map(|b| b["tcbIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(selected, ["16"]);
    assert_eq!(baselines[2]["tcbReleaseDate"], "2024-11-13T00:00:00Z");

    // A baseline nobody holds collateral for is refused by name, never
    // judged by another number.
    set("15").await.unwrap();
    match attest(&svc, &quote).await {
        Err(ClientError::Service { code, message, .. }) => {
            assert_eq!(code, "TcbBaselineUnavailable");
            assert!(message.contains("number 15"), "{message}");
            assert!(message.contains("00906ED50000"), "{message}");
        }
        other => panic!("expected TcbBaselineUnavailable, got {other:?}"),
    }

    // `azuredefault` is the service's default: the newest here.
    set("azuredefault").await.unwrap();
    assert_eq!(code(attest(&svc, &quote).await), "TcbStatusOutOfDate");

    // A value that is neither is refused when the policy is set, and the
    // policy in force stays.
    match set("sixteen").await {
        Err(ClientError::Service { code, .. }) => assert_eq!(code, "TcbBaselineInvalid"),
        other => panic!("expected TcbBaselineInvalid, got {other:?}"),
    }
    assert_eq!(code(attest(&svc, &quote).await), "TcbStatusOutOfDate");
}

#[tokio::test]
async fn the_service_default_baseline_and_draft_policies() {
    let platform = SimPlatform::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    two_baselines(&platform, dir.path());
    let mut config = common::config(dir.path(), true);
    config.tcb_baseline = Some(16);
    let svc = TestService::start_in(dir, config, aver_server::state::Clock::System).await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    // The service pins #16 for policies that do not choose.
    let claims = attest(&svc, &quote).await.unwrap();
    assert_eq!(claims["x-ms-sgx-tcb-evaluation-data-number"], 16);
    let listed = svc
        .client
        .get_json(&format!(
            "{}/tcbbaselines/SgxEnclave?api-version=2022-09-01-preview",
            svc.issuer()
        ))
        .await
        .unwrap();
    assert_eq!(listed["tcbBaselines"][0]["tcbIdentifier"], "azuredefault");
    assert_eq!(listed["tcbBaselines"][0]["tcbEvaluationDataNumber"], 16);
    assert_eq!(listed["tcbBaselines"][0]["isSelectedTcb"], true);

    // A draft policy's configuration rules choose too (the token is
    // unsecured, so only the outcome is read).
    let options = AttestOptions {
        draft_policy: Some(baseline_policy("17")),
        ..AttestOptions::default()
    };
    let refused = svc
        .client
        .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
        .await;
    match refused {
        Err(ClientError::Service { code, .. }) => assert_eq!(code, "TcbStatusOutOfDate"),
        other => panic!("expected TcbStatusOutOfDate, got {other:?}"),
    }

    // Only SGX quotes have TCB baselines.
    let url = format!(
        "{}/tcbbaselines/TdxVm?api-version=2022-09-01-preview",
        svc.issuer()
    );
    match svc.client.get_json(&url).await {
        Err(ClientError::Service { code, .. }) => assert_eq!(code, "InvalidParameter"),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pinned_baseline_is_fetched_from_the_pccs_by_its_number() {
    let platform = SimPlatform::generate().unwrap();
    let current = SimCollateralSpec {
        levels: vec![SimTcbLevel::platform("OutOfDate", &["INTEL-SA-01000"])],
        ..spec_now()
    };
    let old = SimCollateralSpec {
        tcb_evaluation_data_number: 16,
        ..spec_now()
    };
    let url = pccs_serving(
        std::collections::HashMap::from([
            (None, platform.collateral(&current).unwrap()),
            (Some(16), platform.collateral(&old).unwrap()),
        ]),
        Arc::new(Mutex::new(true)),
        Arc::new(Mutex::new(None)),
        None,
    )
    .await;
    let svc = TestService::start_with(true, aver_server::state::Clock::System, |c| {
        c.collateral_url = Some(url.clone());
        c.refresh_secs = 1;
        c.collateral_timeout = std::time::Duration::from_secs(2);
        c.collateral_retry = std::time::Duration::from_secs(1);
    })
    .await;
    let admin = aver_client::AdminClient::new(
        svc.client.clone(),
        svc.service.new_admin_key.as_deref().unwrap(),
    );
    let jws = aver_token::policy::unsigned(Some(&baseline_policy("16")));
    admin.set_policy("SgxEnclave", &jws).await.unwrap();
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    // Nothing held for #16 yet: refused by name; the miss makes the
    // refresher ask the PCCS for that number.
    assert_eq!(code(attest(&svc, &quote).await), "TcbBaselineUnavailable");
    let claims =
        attest_eventually(&svc, &quote, "baseline #16 was never fetched from the PCCS").await;
    assert_eq!(claims["x-ms-sgx-tcb-status"], "UpToDate");
    assert_eq!(claims["x-ms-sgx-tcb-evaluation-data-number"], 16);
    let index = svc.service.state.store.collateral_index().unwrap();
    assert!(
        index
            .iter()
            .any(|r| r.key == "intel/sgx/collateral/00906ED50000/16"),
        "{index:?}"
    );
}

#[tokio::test]
async fn a_pccs_over_https_with_its_own_ca() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // A PCCS with a self-signed certificate, as Intel's PCCS ships.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let platform = SimPlatform::generate().unwrap();
    let url = pccs_serving(
        std::collections::HashMap::from([(None, platform.collateral(&spec_now()).unwrap())]),
        Arc::new(Mutex::new(true)),
        Arc::new(Mutex::new(None)),
        Some(tls),
    )
    .await;
    let quote = platform.quote(&EnclaveIdentity::default()).unwrap();
    let start = |ca: Option<std::path::PathBuf>| {
        let url = url.clone();
        TestService::start_with(true, aver_server::state::Clock::System, move |c| {
            c.collateral_url = Some(url);
            c.collateral_ca = ca;
            c.refresh_secs = 1;
            c.collateral_timeout = std::time::Duration::from_secs(2);
            c.collateral_retry = std::time::Duration::from_secs(1);
        })
    };
    // With the PCCS's certificate as the CA: fetched over TLS.
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("pccs-ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let svc = start(Some(ca)).await;
    assert_eq!(code(attest(&svc, &quote).await), "CollateralMissing");
    let claims = attest_eventually(
        &svc,
        &quote,
        "collateral was never fetched from the HTTPS PCCS",
    )
    .await;
    assert_eq!(claims["x-ms-sgx-tcb-status"], "UpToDate");
    // With the system's roots the self-signed certificate is refused:
    // nothing is fetched, however long the service tries.
    let strict = start(None).await;
    for _ in 0..3 {
        assert_eq!(code(attest(&strict, &quote).await), "CollateralMissing");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    assert_eq!(code(attest(&strict, &quote).await), "CollateralMissing");
}
