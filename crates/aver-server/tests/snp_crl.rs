//! AMD's ARK CRLs in the real service, under a generated SEV-SNP PKI
//! (`aver_testkit::snp`) trusted as an extra ARK: fetched from a KDS on
//! loopback at start, shared through the store with every replica, a
//! revoked ASK refused with its code, an older CRL never taking a newer
//! one's place, an expired CRL refused, and `require_snp_crl`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aver_attestation::evidence::snp::certs::pem_chain;
use aver_client::{AttestOptions, ClientError};
use aver_server::state::Clock;
use aver_server::store::CollateralRecord;
use aver_testkit::snp::{CHIP, GEN, Pki, SVNS, crl, milan_report, pki, report, signing_cert};
use common::{FakeHttp, TestService};

/// 2026-06-01T00:00:00Z: inside the test PKI and the CRLs below.
const NOW: u64 = 1_780_272_000;
const CRL_ROUTE: &str = "/vcek/v1/Milan/crl";
const CRL_KEY: &str = "amd/crl/vcek/milan";

struct Lab {
    pki: Pki,
    report: Vec<u8>,
    chain: Vec<u8>,
}

fn lab() -> Lab {
    let pki = pki(GEN);
    let report = report(&pki, &milan_report());
    let vcek = signing_cert(&pki, GEN, false, SVNS, Some(CHIP.to_vec()), "350101000000Z");
    let chain = pem_chain(&[vcek, pki.ask.clone()]);
    Lab { pki, report, chain }
}

/// A CRL of the lab's ARK issued at `this` (UTCTime), revoking `serials`
/// (the ASK's is 1).
fn lab_crl(lab: &Lab, this: &str, next: &str, serials: &[u8]) -> Vec<u8> {
    crl(&format!("ARK-{GEN}"), &lab.pki.ark_key, this, next, serials)
}

/// A KDS whose Milan CRL route serves what `crl` holds (404 when empty).
async fn kds(crl: Arc<Mutex<Vec<u8>>>) -> FakeHttp {
    FakeHttp::start(move |path| {
        let body = crl.lock().unwrap().clone();
        if path == CRL_ROUTE && !body.is_empty() {
            ("200 OK", String::new(), body)
        } else {
            ("404 Not Found", String::new(), vec![])
        }
    })
    .await
}

async fn service(lab: &Lab, kds_url: Option<&str>, require: bool) -> TestService {
    let ark = pem_chain(std::slice::from_ref(&lab.pki.ark));
    let kds_url = kds_url.map(str::to_string);
    TestService::start_with(false, Clock::Fixed(NOW), move |c| {
        let path = c.data_dir.join("lab-ark.pem");
        std::fs::write(&path, ark).unwrap();
        c.extra_snp_roots = vec![path];
        c.amd_kds_url = kds_url;
        c.require_snp_crl = require;
        c.refresh_secs = 1;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

async fn attest(svc: &TestService, lab: &Lab) -> Result<(), (u16, String, String)> {
    match svc
        .client
        .attest_sev_snp(&lab.report, Some(&lab.chain), &AttestOptions::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(ClientError::Service {
            status,
            code,
            message,
            ..
        }) => Err((status, code, message)),
        Err(other) => panic!("not a service answer: {other:?}"),
    }
}

/// Waits (bounded) until the service holds `slot` issued at `this_update`.
async fn until_held(svc: &TestService, slot: &str, this_update: i64) {
    for _ in 0..100 {
        let held = svc.service.state.verifiers.snp.crls().get(slot);
        if held.is_some_and(|h| h.this_update == this_update) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the service never held the CRL of {this_update} in {slot}: {:?}",
        svc.service.state.verifiers.snp.crls().list()
    );
}

/// Waits (bounded) until the service has asked `kds` for the Milan CRL.
async fn until_asked(kds: &FakeHttp) {
    for _ in 0..100 {
        if kds.hits(|p| p == CRL_ROUTE) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service never asked the KDS for {CRL_ROUTE}");
}

/// 2026-01-01 and 2026-03-01 as Unix seconds (thisUpdate of the CRLs).
const JAN: i64 = 1_767_225_600;
const MAR: i64 = 1_772_323_200;

#[tokio::test]
async fn the_service_fetches_the_ark_crl_and_refuses_a_revoked_ask() {
    let lab = lab();
    let served = Arc::new(Mutex::new(lab_crl(
        &lab,
        "260101000000Z",
        "270101000000Z",
        &[7],
    )));
    let kds = kds(served.clone()).await;
    let svc = service(&lab, Some(&kds.url), false).await;

    // Fetched at start and held; it revokes another serial: attests.
    until_held(&svc, CRL_KEY, JAN).await;
    attest(&svc, &lab).await.unwrap();
    assert_eq!(kds.hits(|p| p == CRL_ROUTE), 1);
    // Every route of every product was asked, once.
    assert_eq!(kds.hits(|p| p.ends_with("/crl")), 6);
    // Shared through the store, for the other replicas.
    let stored = svc
        .service
        .state
        .store
        .collateral(CRL_KEY)
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, *served.lock().unwrap());
    assert!(stored.source.ends_with(CRL_ROUTE), "{}", stored.source);
    // Its nextUpdate (2027-01-01) is a gauge, for an alert before it passes.
    let metrics = common::scrape_metrics(&svc).await;
    assert!(
        common::has_sample(
            &metrics,
            "aver_snp_crl_next_update_timestamp_seconds",
            &[&format!("slot=\"{CRL_KEY}\"")],
            "1798761600"
        ),
        "{metrics}"
    );

    // A newer CRL revoking the ASK arrives through the store (another
    // replica fetched it, or an operator imported it): refused.
    let revoking = lab_crl(&lab, "260301000000Z", "270101000000Z", &[1]);
    let record = CollateralRecord::new(CRL_KEY, revoking, "import:test", NOW as i64, None);
    svc.service.state.store.put_collateral(&record).unwrap();
    until_held(&svc, CRL_KEY, MAR).await;
    let (status, code, message) = attest(&svc, &lab).await.unwrap_err();
    assert_eq!(
        (status, code.as_str()),
        (400, "CertificateRevoked"),
        "{message}"
    );
    assert!(message.contains("revokes"), "{message}");

    // An older CRL (January's, revoking nothing) cannot undo it.
    let older = lab_crl(&lab, "260101000000Z", "270101000000Z", &[]);
    let record = CollateralRecord::new(CRL_KEY, older, "import:test", NOW as i64, None);
    svc.service.state.store.put_collateral(&record).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let held = svc.service.state.verifiers.snp.crls().get(CRL_KEY).unwrap();
    assert_eq!((held.this_update, held.revoked), (MAR, 1));
    let (_, code, _) = attest(&svc, &lab).await.unwrap_err();
    assert_eq!(code, "CertificateRevoked");
}

#[tokio::test]
async fn a_held_crl_past_its_next_update_refuses_chains_of_its_ark() {
    let lab = lab();
    // Issued 2025, next update 2026-01-01: expired at the service's time.
    let served = Arc::new(Mutex::new(lab_crl(
        &lab,
        "250101000000Z",
        "260101000000Z",
        &[],
    )));
    let kds = kds(served).await;
    let svc = service(&lab, Some(&kds.url), false).await;
    until_held(&svc, CRL_KEY, 1_735_689_600).await;
    let (status, code, message) = attest(&svc, &lab).await.unwrap_err();
    assert_eq!(
        (status, code.as_str()),
        (400, "CollateralExpired"),
        "{message}"
    );
    assert!(message.contains("2026-01-01"), "{message}");
}

#[tokio::test]
async fn required_crls_refuse_chains_until_one_is_held() {
    let lab = lab();
    // The KDS has no CRL: with the requirement, refused, saying why.
    let served = Arc::new(Mutex::new(Vec::new()));
    let kds = kds(served).await;
    let svc = service(&lab, Some(&kds.url), true).await;
    until_asked(&kds).await;
    let (status, code, message) = attest(&svc, &lab).await.unwrap_err();
    assert_eq!(
        (status, code.as_str()),
        (400, "CollateralMissing"),
        "{message}"
    );
    assert!(message.contains("no CRL of"), "{message}");
    // Imported into the store (an air-gapped service): accepted.
    let current = lab_crl(&lab, "260101000000Z", "270101000000Z", &[]);
    let record = CollateralRecord::new(CRL_KEY, current, "import:test", NOW as i64, None);
    svc.service.state.store.put_collateral(&record).unwrap();
    until_held(&svc, CRL_KEY, JAN).await;
    attest(&svc, &lab).await.unwrap();

    // Without the requirement and without any CRL: verified as before.
    let plain = service(&lab, None, false).await;
    attest(&plain, &lab).await.unwrap();
}

#[tokio::test]
async fn a_forged_crl_from_the_kds_is_not_held() {
    let lab = lab();
    // Named for the lab's ARK, signed by the ASK's key.
    let forged = crl(
        &format!("ARK-{GEN}"),
        &lab.pki.ask_key,
        "260101000000Z",
        "270101000000Z",
        &[1],
    );
    let kds = kds(Arc::new(Mutex::new(forged))).await;
    let svc = service(&lab, Some(&kds.url), false).await;
    until_asked(&kds).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(svc.service.state.verifiers.snp.crls().list().is_empty());
    assert!(
        svc.service
            .state
            .store
            .collateral(CRL_KEY)
            .unwrap()
            .is_none()
    );
    attest(&svc, &lab).await.unwrap();
}
