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
