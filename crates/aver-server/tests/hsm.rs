//! A provider's token-signing key in a PKCS#11 token (SoftHSM2): imported
//! with `keys::import_hsm` (what `aver keys import-hsm` runs), it signs
//! attestation tokens through C_Sign that verify through `/certs`, RS256
//! and ES256; earlier tokens still verify; it retires like any key; and a
//! stored key whose token is missing is a clear start-up error.
//!
//! One test function: SoftHSM reads `SOFTHSM2_CONF` once per process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aver_client::{AttestOptions, Client, DataType, SgxEndpoint};
use aver_server::kek::{Kek, KekSource};
use aver_server::state::Clock;
use aver_server::store::{SqliteStore, Store, StoredKey};
use aver_server::{Config, DEFAULT_PROVIDER, Service};
use aver_sim::{EnclaveIdentity, SimPlatform, report_data_for};
use aver_testkit::softhsm;
use aver_token::{KeyAlg, VerifyOptions};
use serde_json::Value;

const ISSUER: &str = "https://aver-hsm.example";

struct Replica {
    service: Service,
    client: Client,
}

impl Replica {
    async fn start(config: &Config, at: u64) -> Replica {
        let service = Service::start_with_clock(config, Clock::Fixed(at))
            .await
            .unwrap();
        let ca = std::fs::read(&service.tls.cert).unwrap();
        let client = Client::new(&format!("https://{}", service.addr), Some(&ca)).unwrap();
        Replica { service, client }
    }

    async fn token(&self) -> String {
        let platform = SimPlatform::generate().unwrap();
        let identity = EnclaveIdentity {
            mr_enclave: [0xab; 32],
            mr_signer: [0xcd; 32],
            product_id: 7,
            svn: 3,
            debug: false,
            report_data: report_data_for(b"hsm"),
        };
        let quote = platform.quote(&identity).unwrap();
        let options = AttestOptions {
            runtime_data: Some((b"hsm".to_vec(), DataType::Binary)),
            ..AttestOptions::default()
        };
        self.client
            .attest_sgx(SgxEndpoint::SgxEnclave, &quote, &options)
            .await
            .unwrap()
    }

    async fn jwks(&self) -> Value {
        self.client
            .get_json(&format!("{}/certs", self.client.base_url()))
            .await
            .unwrap()
    }
}

fn header(token: &str) -> (String, &'static str) {
    let jws = aver_token::CompactJws::parse(token).unwrap();
    (
        jws.header["kid"].as_str().unwrap().to_string(),
        jws.alg.name(),
    )
}

fn verify(token: &str, jwks: &Value, now: u64) {
    let options = VerifyOptions {
        issuer: Some(ISSUER.into()),
        now,
        leeway: 60,
    };
    aver_token::verify_token(token, jwks, &options).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hsm_keys_sign_tokens_that_verify_through_certs() {
    let base = std::env::temp_dir();
    let Some(hsm) = softhsm::setup("hsm_keys_sign_tokens_that_verify_through_certs", &base) else {
        return;
    };
    // SAFETY: the only test in this binary, before the module is loaded.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        std::env::remove_var(aver_pkcs11::MODULE_ENV);
    }
    hsm.init_token("aver");
    let rsa = hsm.uri("aver", "rs256");
    let ec = hsm.uri("aver", "es256");
    aver_pkcs11::generate_key_pair(&rsa, KeyAlg::Rs256).unwrap();
    aver_pkcs11::generate_key_pair(&ec, KeyAlg::Es256).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (kek, kek_text) = Kek::generate().unwrap();
    let mut config = common::config(dir.path(), true);
    config.issuer = Some(ISSUER.into());
    config.kek = Some(KekSource::Value(kek_text));
    let t0 = common::now() - 3600;

    // The first start makes a software key; a token signed with it.
    let replica = Replica::start(&config, t0).await;
    let before = replica.token().await;
    let (software_kid, _) = header(&before);
    replica.service.shutdown().await;

    // Import the RSA key from the token, signing at once.
    let store = SqliteStore::open(&dir.path().join("aver.db")).unwrap();
    let err = aver_server::keys::import_hsm(
        &store,
        &kek,
        DEFAULT_PROVIDER,
        &hsm.uri("missing", "rs256"),
        t0 + 10,
        0,
        "cli:test",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no PKCS#11 token matches"),
        "{err}"
    );
    let row =
        aver_server::keys::import_hsm(&store, &kek, DEFAULT_PROVIDER, &rsa, t0 + 10, 0, "cli:test")
            .unwrap();
    let sealed = String::from_utf8_lossy(&row.pkcs8).to_string();
    assert!(!sealed.contains("pkcs11:"), "the reference is sealed");

    let t1 = t0 + 20;
    let replica = Replica::start(&config, t1).await;
    let after = replica.token().await;
    assert_eq!(header(&after), (row.kid.clone(), "RS256"));
    let jwks = replica.jwks().await;
    verify(&after, &jwks, t1);
    verify(&before, &jwks, t1);
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(published, [row.kid.as_str(), software_kid.as_str()]);
    replica.service.shutdown().await;

    // Then the P-256 key (ES256), and retire the RSA one.
    let ec_row =
        aver_server::keys::import_hsm(&store, &kek, DEFAULT_PROVIDER, &ec, t1 + 10, 0, "cli:test")
            .unwrap();
    aver_server::keys::retire(&store, DEFAULT_PROVIDER, &row.kid, t1 + 15, "cli:test").unwrap();
    let t2 = t1 + 20;
    let replica = Replica::start(&config, t2).await;
    let es = replica.token().await;
    assert_eq!(header(&es), (ec_row.kid.clone(), "ES256"));
    let jwks = replica.jwks().await;
    verify(&es, &jwks, t2);
    verify(&after, &jwks, t2);
    verify(&before, &jwks, t2);
    replica.service.shutdown().await;

    // A stored key whose token is gone: start-up fails and says why.
    let gone = format!(
        "pkcs11:token=gone;object=k?pin-value=1&module-path={}",
        softhsm::MODULE
    );
    store
        .insert_signing_key(
            DEFAULT_PROVIDER,
            &StoredKey {
                kid: "gone".into(),
                pkcs8: kek
                    .seal(
                        &aver_server::kek::key_aad(DEFAULT_PROVIDER, "gone"),
                        gone.as_bytes(),
                    )
                    .unwrap(),
                certificate: row.certificate.clone(),
                created_at: t2 as i64,
                not_before_signing: t2 as i64 + 600,
                retired_at: None,
            },
        )
        .unwrap();
    let err = Service::start_with_clock(&config, Clock::Fixed(t2 + 1))
        .await
        .err()
        .expect("start-up must fail")
        .to_string();
    assert!(
        err.contains("PKCS#11") && err.contains("no PKCS#11 token matches"),
        "{err}"
    );
    assert!(!err.contains("pin-value=1"), "no PIN in errors: {err}");
    let _ = std::fs::remove_dir_all(&hsm.dir);
}
