#![allow(dead_code)]

use std::path::PathBuf;

use aver_client::Client;
use aver_server::state::Clock;
use aver_server::{Config, Service};

/// A service on an ephemeral loopback port over real TLS, with its data in a
/// temporary directory.
pub struct TestService {
    pub service: Service,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub ca: Vec<u8>,
}

pub fn config(dir: &std::path::Path, trust_sim: bool) -> Config {
    let mut config = Config::with_defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir.to_path_buf();
    if trust_sim {
        let root = dir.join("sim-root.pem");
        std::fs::write(&root, aver_sim::root_certificate_pem().unwrap()).unwrap();
        config.extra_sgx_roots = vec![root];
    }
    config
}

impl TestService {
    pub async fn start(trust_sim: bool) -> TestService {
        Self::start_with(trust_sim, Clock::System, |_| {}).await
    }

    pub async fn start_with(
        trust_sim: bool,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> TestService {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), trust_sim);
        tweak(&mut config);
        Self::start_in(dir, config, clock).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: Config, clock: Clock) -> TestService {
        let service = Service::start_with_clock(&config, clock).await.unwrap();
        let ca = std::fs::read(&service.tls.cert).unwrap();
        let client = Client::new(&service.issuer, Some(&ca)).unwrap();
        TestService {
            service,
            client,
            dir,
            ca,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.service.issuer
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

pub fn now() -> u64 {
    aver_client::unix_now()
}

/// A reqwest client that trusts the service's (self-signed) certificate.
pub fn https_client(ca: &[u8]) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca).unwrap()])
        .build()
        .unwrap()
}

/// A stored policy whose every rule runs JMESPath over the runtime data:
/// on [`large_runtime`] it runs until the step budget stops it (a few
/// hundred ms, `PolicyStepLimitExceeded`); on a small runtime it permits.
pub fn slow_policy() -> String {
    let rules = "c:[type==\"x-ms-runtime\"] => add(type=\"o\", value=JmesPath(c.value, \"length([*].k)\"));\n"
        .repeat(600);
    format!("version=1.2; authorizationrules{{ => permit(); }}; issuancerules{{ {rules} }};")
}

/// JSON runtime data large enough for [`slow_policy`] to hit its budget.
pub fn large_runtime() -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..20_000)
        .map(|i| serde_json::json!({"k": i, "v": "xxxxxxxx"}))
        .collect();
    serde_json::to_vec(&items).unwrap()
}

/// An SgxEnclave request body: a simulated quote bound to `runtime` (JSON).
pub fn sgx_body(platform: &aver_sim::SimPlatform, runtime: &[u8]) -> serde_json::Value {
    let b64 = aver_token::b64::encode_url;
    let quote = platform
        .quote(&aver_sim::EnclaveIdentity {
            report_data: aver_sim::report_data_for(runtime),
            ..aver_sim::EnclaveIdentity::default()
        })
        .unwrap();
    serde_json::json!({
        "quote": b64(&quote),
        "runtimeData": {"data": b64(runtime), "dataType": "JSON"},
    })
}

/// Creates provider `name` in the service's store, optionally with
/// `settings`, reloads the service, and returns the provider's admin key.
pub async fn create_provider(
    svc: &TestService,
    name: &str,
    settings: Option<aver_server::state::ProviderSettings>,
) -> String {
    let state = svc.service.state.clone();
    let name = name.to_string();
    let key = tokio::task::spawn_blocking(move || {
        let store = state.store.as_ref();
        let record = aver_server::store::ProviderRecord {
            name: name.clone(),
            isolated: false,
            host: None,
            created_at: now() as i64,
        };
        let key = aver_server::load::create_provider(store, &record, &[], "test").unwrap();
        if let Some(settings) = settings {
            let audit = aver_server::store::AuditRecord {
                at: now() as i64,
                provider: name.clone(),
                actor: "test".into(),
                action: "provider.configure".into(),
                target: name.clone(),
                policy_hash: None,
                detail: "test settings".into(),
            };
            store
                .set_provider_settings(&name, &serde_json::to_string(&settings).unwrap(), &audit)
                .unwrap();
        }
        key
    })
    .await
    .unwrap();
    svc.service.state.reload().await.unwrap();
    key
}

/// Sets provider `provider`'s SgxEnclave policy to `text` (unsigned JWS,
/// admin key `key`) and checks that the service took it.
pub async fn set_sgx_policy(
    http: &reqwest::Client,
    base: &str,
    provider: &str,
    key: &str,
    text: &str,
) {
    let r = http
        .put(format!(
            "{base}/providers/{provider}/policies/SgxEnclave?api-version=2022-08-01"
        ))
        .bearer_auth(key)
        .body(aver_token::policy::unsigned(Some(text)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A fresh PostgreSQL schema for one test, dropped (with everything in it)
/// when this goes, even if the test fails.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    /// `None`, after saying loudly that `test` skips, when
    /// `AVER_TEST_POSTGRES_URL` is not set.
    pub fn new(test: &str) -> Option<PgSchema> {
        let Ok(url) = std::env::var("AVER_TEST_POSTGRES_URL") else {
            aver_testkit::skip(test, "AVER_TEST_POSTGRES_URL not set");
            return None;
        };
        let mut bytes = [0u8; 8];
        aws_lc_rs::rand::fill(&mut bytes).unwrap();
        Some(PgSchema {
            url,
            name: format!("aver_test_{}", hex::encode(bytes)),
        })
    }

    /// `config` pointed at this schema.
    pub fn apply(&self, mut config: Config) -> Config {
        config.database_url = Some(self.url.clone());
        config.database_schema = Some(self.name.clone());
        config
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // The blocking client cannot run inside the test's runtime.
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        })
        .join();
    }
}

/// One answer of [`FakeHttp`]: status line (`"200 OK"`), extra header
/// lines (each ending in CRLF) and body.
pub type FakeAnswer = (&'static str, String, Vec<u8>);

/// A minimal HTTP/1.1 server on loopback for the services Aver fetches
/// from (AMD's KDS, a PCCS): `answer` maps each request path to its
/// answer; every path asked is recorded, in order.
pub struct FakeHttp {
    pub url: String,
    pub asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeHttp {
    pub async fn start(answer: impl Fn(&str) -> FakeAnswer + Send + Sync + 'static) -> FakeHttp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                log.lock().unwrap().push(path.clone());
                let (status, extra, body) = answer(&path);
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            }
        });
        FakeHttp { url, asked }
    }

    /// How many requests asked for a path `matching`.
    pub fn hits(&self, matching: impl Fn(&str) -> bool) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|p| matching(p))
            .count()
    }
}

/// The text of the service's metrics listener (`metrics_listen` set).
pub async fn scrape_metrics(svc: &TestService) -> String {
    reqwest::get(format!(
        "http://{}/metrics",
        svc.service.metrics_addr.unwrap()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap()
}

/// Whether `metrics` has a sample of `name` carrying every one of `labels`
/// (`key="value"`) whose value is `value`.
pub fn has_sample(metrics: &str, name: &str, labels: &[&str], value: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && labels.iter().all(|lab| l.contains(lab))
            && l.ends_with(&format!(" {value}"))
    })
}
