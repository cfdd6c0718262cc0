//! TDX through the real service in Azure's request shape
//! (`/attest/TdxVm?api-version=2025-06-01`): a real v4 quote with its
//! imported TDX collateral at its pinned time gives a signed token with
//! Azure's TDX EAT claims and Intel's TCB status; broken or misdirected
//! evidence is a 400 with its code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_attestation::VerificationTime;
use aver_attestation::dcap::TrustAnchors;
use aver_attestation::dcap::collateral::CollateralBundle;
use aver_client::{AttestOptions, ClientError, DataType};
use aver_server::state::Clock;
use common::TestService;

/// 2025-07-01T00:00:00Z: inside the v4 vector's collateral window.
const PIN: u64 = 1_751_328_000;

fn vector(name: &str) -> Option<Vec<u8>> {
    aver_testkit::read_vector("tdx", name)
}

/// A service whose clock is at the pin and whose store holds the v4
/// quote's TDX collateral (as `aver collateral import` puts it there).
async fn service_with_collateral(json: &[u8]) -> TestService {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), false);
    {
        let store = aver_server::open_store(&config).unwrap();
        let bundle = CollateralBundle::from_dcap_qvl_json(json).unwrap();
        aver_server::collateral::import(
            store.as_ref(),
            &TrustAnchors::intel(),
            &bundle,
            "import:test",
            VerificationTime::from_unix_seconds(PIN),
            PIN as i64,
        )
        .unwrap();
        let keys: Vec<String> = store
            .collateral_index()
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys, ["intel/tdx/collateral/B0C06F000000/17"]);
    }
    TestService::start_in(dir, config, Clock::Fixed(PIN)).await
}

fn refused(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Service { status, code, .. } => (status, code),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn v4_quote_gives_a_token_with_azures_tdx_claims() {
    let (Some(quote), Some(json)) = (
        vector("tdx/dcap-qvl-tdx-v4/quote.bin"),
        vector("tdx/dcap-qvl-tdx-v4/collateral.json"),
    ) else {
        return;
    };
    let svc = service_with_collateral(&json).await;
    let options = AttestOptions {
        nonce: Some("n-tdx".into()),
        ..AttestOptions::default()
    };
    let token = svc.client.attest_tdx(&quote, &options).await.unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), PIN, 60)
        .await
        .unwrap();
    assert_eq!(claims["x-ms-attestation-type"], "tdxvm");
    assert_eq!(
        claims["eat_profile"],
        "https://aka.ms/maa-eat-profile-tdxvm"
    );
    assert_eq!(claims["attester_tcb_status"], "UpToDate");
    assert_eq!(claims["dbgstat"], "disabled");
    assert_eq!(claims["intuse"], "generic");
    assert_eq!(claims["tdx_seamsvn"], 0x0106);
    assert_eq!(claims["tdx_td_attributes_septve_disable"], true);
    assert_eq!(
        claims["tdx_mrtd"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(claims["nonce"], "n-tdx");
    assert!(claims["x-ms-policy-hash"].is_string());
    assert_eq!(claims["x-ms-ver"], "1.0");

    // Negatives, each a 400 with its code.
    let wrong = AttestOptions {
        runtime_data: Some((b"other data".to_vec(), DataType::Binary)),
        ..AttestOptions::default()
    };
    let e = svc.client.attest_tdx(&quote, &wrong).await.unwrap_err();
    assert_eq!(refused(e), (400, "RuntimeDataMismatch".into()));
    let e = svc
        .client
        .attest_tdx(&quote[..quote.len() / 2], &AttestOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused(e), (400, "InvalidQuote".into()));
    if let Some(sgx) = vector("sgx/dcap-qvl-sgx-v3/quote.bin") {
        let e = svc
            .client
            .attest_tdx(&sgx, &AttestOptions::default())
            .await
            .unwrap_err();
        assert_eq!(refused(e), (400, "InvalidQuote".into()));
    }
}

/// trustee's debug TD quote (no collateral for it: status Unknown) is
/// refused by the default TdxVm policy, and accepted by a draft policy
/// that permits it.
#[tokio::test]
async fn debug_td_is_refused_by_the_default_policy() {
    let Some(quote) = vector("tdx/trustee/tdx_quote_4.dat") else {
        return;
    };
    // 2023-07-01T01:00:00Z.
    let svc = TestService::start_with(false, Clock::Fixed(1_688_173_200), |_| {}).await;
    let e = svc
        .client
        .attest_tdx(&quote, &AttestOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused(e), (400, "PolicyEvaluationError".into()));
    let draft = AttestOptions {
        draft_policy: Some(
            "version=1.0; authorizationrules { => permit(); }; issuancerules {};".into(),
        ),
        ..AttestOptions::default()
    };
    let token = svc.client.attest_tdx(&quote, &draft).await.unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&aver_token::b64::decode_lenient(payload).unwrap()).unwrap();
    assert_eq!(claims["dbgstat"], "enabled");
    assert_eq!(claims["attester_tcb_status"], "Unknown");

    // A provider sets its own TdxVm policy (the management API reads the
    // registry) that permits debug TDs, and says so in the token.
    let admin = aver_client::AdminClient::new(
        svc.client.clone(),
        svc.service.new_admin_key.as_deref().unwrap(),
    );
    let lab = "version=1.0; authorizationrules { => permit(); }; \
               issuancerules { c:[type==\"dbgstat\"] => issue(type=\"td-debug\", value=c.value); };";
    // The service's clock is pinned in 2023, so the signed receipt has
    // expired by the client's clock: the change is made all the same.
    match admin
        .set_policy("TdxVm", &aver_token::policy::unsigned(Some(lab)))
        .await
    {
        Ok(_) | Err(ClientError::Receipt(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let token = svc
        .client
        .attest_tdx(&quote, &AttestOptions::default())
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), 1_688_173_200, 60)
        .await
        .unwrap();
    assert_eq!(claims["td-debug"], "enabled");
}

/// A PCCS-compatible server on loopback serving the v4 vector's TDX
/// collateral in PCS's shapes: TCB info and TD_QE identity under `/tdx/`,
/// the CRLs under `/sgx/`. SGX TCB info and QE identity are not served, so
/// a refresher that asked for SGX collateral would get nothing.
async fn tdx_pccs(b: CollateralBundle) -> String {
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::routing::get;
    fn enc(pem: &[u8]) -> HeaderValue {
        let mut out = String::new();
        for b in pem {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
                out.push(*b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        HeaderValue::from_str(&out).unwrap()
    }
    let b = std::sync::Arc::new(b);
    let answer = move |which: &'static str| {
        let b = b.clone();
        move || {
            let b = b.clone();
            async move {
                let mut h = HeaderMap::new();
                let body = match which {
                    "tcb" => {
                        h.insert("TCB-Info-Issuer-Chain", enc(&b.tcb_info_issuer_chain));
                        [
                            b"{\"tcbInfo\":".as_slice(),
                            &b.tcb_info,
                            b",\"signature\":\"",
                            hex::encode(&b.tcb_info_signature).as_bytes(),
                            b"\"}",
                        ]
                        .concat()
                    }
                    "qe" => {
                        h.insert(
                            "SGX-Enclave-Identity-Issuer-Chain",
                            enc(&b.qe_identity_issuer_chain),
                        );
                        [
                            b"{\"enclaveIdentity\":".as_slice(),
                            &b.qe_identity,
                            b",\"signature\":\"",
                            hex::encode(&b.qe_identity_signature).as_bytes(),
                            b"\"}",
                        ]
                        .concat()
                    }
                    "pckcrl" => {
                        h.insert("SGX-PCK-CRL-Issuer-Chain", enc(&b.pck_crl_issuer_chain));
                        b.pck_crl.clone()
                    }
                    _ => b.root_ca_crl.clone(),
                };
                (StatusCode::OK, h, body)
            }
        }
    };
    let app = axum::Router::new()
        .route("/tdx/certification/v4/tcb", get(answer("tcb")))
        .route("/tdx/certification/v4/qe/identity", get(answer("qe")))
        .route("/sgx/certification/v4/pckcrl", get(answer("pckcrl")))
        .route("/sgx/certification/v4/rootcacrl", get(answer("root")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// With a collateral source, a TDX quote with no TDX collateral cached is
/// refused at once naming its FMSPC; the background refresher then
/// fetches the TDX TCB info and TD_QE identity (`/tdx/certification/v4/`)
/// and the quote gets its TCB verdict, shared through the store.
#[tokio::test]
async fn tdx_collateral_is_fetched_from_a_pccs() {
    let (Some(quote), Some(json)) = (
        vector("tdx/dcap-qvl-tdx-v4/quote.bin"),
        vector("tdx/dcap-qvl-tdx-v4/collateral.json"),
    ) else {
        return;
    };
    let url = tdx_pccs(CollateralBundle::from_dcap_qvl_json(&json).unwrap()).await;
    let svc = TestService::start_with(false, Clock::Fixed(PIN), |c| {
        c.collateral_url = Some(url.clone());
        c.refresh_secs = 1;
        c.collateral_timeout = std::time::Duration::from_secs(2);
        c.collateral_retry = std::time::Duration::from_secs(1);
    })
    .await;
    let e = svc
        .client
        .attest_tdx(&quote, &AttestOptions::default())
        .await
        .unwrap_err();
    match e {
        ClientError::Service { code, message, .. } => {
            assert_eq!(code, "CollateralMissing");
            assert!(message.contains("B0C06F000000"), "{message}");
        }
        other => panic!("{other}"),
    }
    let mut token = None;
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if let Ok(t) = svc
            .client
            .attest_tdx(&quote, &AttestOptions::default())
            .await
        {
            token = Some(t);
            break;
        }
    }
    let token = token.expect("TDX collateral was never fetched from the PCCS");
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), PIN, 60)
        .await
        .unwrap();
    assert_eq!(claims["attester_tcb_status"], "UpToDate");
    let index = svc.service.state.store.collateral_index().unwrap();
    assert!(
        index
            .iter()
            .any(|r| r.key == "intel/tdx/collateral/B0C06F000000/17"),
        "{:?}",
        index.iter().map(|r| &r.key).collect::<Vec<_>>()
    );
}

/// The GCP TD quote (no collateral: status `Unknown`) with its CCEL event
/// log in Aver's `ccelEventLog` field: the token says the log replayed to
/// RTMR0–2 and keeps the event list out; a flipped digest is
/// `EventLogReplayMismatch` naming the register, garbage is
/// `EventLogMalformed`, and a log sent to another type is refused.
#[tokio::test]
async fn ccel_event_log_is_replayed_to_the_rtmrs() {
    let (Some(quote), Some(log)) = (
        vector("tdx/go-tdx-guest-cos113-ccel/quote.bin"),
        vector("tdx/go-tdx-guest-cos113-ccel/ccel_data.dat"),
    ) else {
        return;
    };
    // 2025-01-01T00:00:00Z, inside the PCK certificate's validity.
    let pin = 1_735_689_600;
    let svc = TestService::start_with(false, Clock::Fixed(pin), |_| {}).await;
    let with_log = |log: &[u8]| AttestOptions {
        ccel_event_log: Some(log.to_vec()),
        ..AttestOptions::default()
    };
    let token = svc
        .client
        .attest_tdx(&quote, &with_log(&log))
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), pin, 60)
        .await
        .unwrap();
    assert_eq!(claims["attester_tcb_status"], "Unknown");
    assert_eq!(claims["x-aver-ccel-replayed"], true);
    assert_eq!(claims["x-aver-ccel-rtmrs"], serde_json::json!([0, 1, 2]));
    assert!(claims.get("x-aver-ccel-events").is_none());
    assert_eq!(
        claims["tdx_rtmr0"],
        "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6"
    );
    // Without a log: no CCEL claim.
    let token = svc
        .client
        .attest_tdx(&quote, &AttestOptions::default())
        .await
        .unwrap();
    let claims = svc
        .client
        .verify_token(&token, svc.issuer(), pin, 60)
        .await
        .unwrap();
    assert!(claims.get("x-aver-ccel-replayed").is_none());

    // Negatives: a digest of the first RTMR1 (MR index 2) event flipped is
    // named by its register.
    let mut bad = log.clone();
    let first_rtmr1 = first_record_on(&log, 2);
    bad[first_rtmr1 + 14] ^= 1;
    let e = svc
        .client
        .attest_tdx(&quote, &with_log(&bad))
        .await
        .unwrap_err();
    match e {
        ClientError::Service {
            status,
            code,
            message,
        } => {
            assert_eq!((status, code.as_str()), (400, "EventLogReplayMismatch"));
            assert!(message.contains("RTMR1"), "{message}");
        }
        other => panic!("{other}"),
    }
    let e = svc
        .client
        .attest_tdx(&quote, &with_log(b"garbage, not a CCEL area"))
        .await
        .unwrap_err();
    assert_eq!(refused(e), (400, "EventLogMalformed".into()));
    if let Some(sgx) = vector("sgx/dcap-qvl-sgx-v3/quote.bin") {
        let e = svc
            .client
            .attest_sgx(aver_client::SgxEndpoint::SgxEnclave, &sgx, &with_log(&log))
            .await
            .unwrap_err();
        assert_eq!(refused(e), (400, "InvalidParameter".into()));
    }
}

/// Offset of the first crypto-agile record extending MR index `mr` in a
/// CCEL area whose records carry one SHA-384 digest.
fn first_record_on(area: &[u8], mr: u32) -> usize {
    let u32_at = |o: usize| u32::from_le_bytes(area[o..o + 4].try_into().unwrap());
    let mut o = 32 + u32_at(28) as usize;
    loop {
        if u32_at(o) == mr {
            return o;
        }
        o += 12 + 2 + 48 + 4 + u32_at(o + 12 + 2 + 48) as usize;
    }
}
