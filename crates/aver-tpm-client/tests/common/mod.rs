//! Test support specific to this crate: the swtpm harness of
//! `aver_testkit::swtpm` wired to `TpmClient` (the log is extended through
//! tss-esapi), an in-process transport to `TpmAttestService`, and test PKI
//! (AK CA, untrusted EK root). These stay here because they need
//! `aver-tpm-attest` and tss-esapi, which the testkit must not depend on.

use aver_testkit::swtpm::{self, LogWriter, Manufactured};
use aver_tpm_attest::{
    ReplayCache, RequestOptions, TpmAttestConfig, TpmAttestService, TpmStep, VerifiedTpm,
    encode_payload, report_reply,
};
use aver_tpm_client::{TpmClient, decode_data};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// swtpm and its tools (the log is extended through `TpmClient`, so no
/// tpm2-tools are needed).
pub fn require_tools(test: &str) -> Option<()> {
    swtpm::require_tools(test, &[])
}

/// The two manufactured TPM identities used by the tests, `'a'` and `'b'`
/// (made once per test binary under Cargo's target tmpdir).
pub fn identity(which: char) -> &'static Manufactured {
    swtpm::identity(env!("CARGO_TARGET_TMPDIR"), &which.to_string())
}

/// The standard measured boot, extended through the client's own
/// `TpmClient::pcr_extend` (tss-esapi).
pub fn standard_boot(tpm: &mut TpmClient) -> LogWriter {
    swtpm::standard_boot(&mut |pcr, sha1, sha256| {
        tpm.pcr_extend(
            pcr,
            &[
                (HashingAlgorithm::Sha1, sha1.to_vec()),
                (HashingAlgorithm::Sha256, sha256.to_vec()),
            ],
        )
        .unwrap();
    })
}

// ---------------------------------------------------------------- service

pub struct TestPki {
    pub ak_ca_cert: Vec<u8>,
    pub ak_ca_key: Vec<u8>,
}

pub fn ak_ca() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let kp = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "Aver test AK CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&kp).unwrap();
    TestPki {
        ak_ca_cert: cert.der().to_vec(),
        ak_ca_key: kp.serialize_der(),
    }
}

/// A service trusting `identity`'s EK CA (root + intermediate).
pub fn service_for(identity: &Manufactured) -> TpmAttestService {
    let pki = ak_ca();
    let mut cfg = TpmAttestConfig::new(
        [42u8; 32],
        pki.ak_ca_cert,
        pki.ak_ca_key,
        vec![identity.ca_root_der.clone()],
    );
    cfg.ek_intermediates = vec![identity.ca_intermediate_der.clone()];
    TpmAttestService::new(cfg).unwrap()
}

/// In-process transport: encodes the message as the HTTP `data` value,
/// calls `handle_with`, decodes the reply as a client would. Verified
/// results are stored in `verified` and answered with a stand-in token.
pub struct Loopback<'a> {
    pub service: &'a TpmAttestService,
    pub cache: &'a ReplayCache,
    pub now: u64,
    pub options: RequestOptions,
    pub verified: Rc<RefCell<Option<VerifiedTpm>>>,
    pub last_error: Rc<RefCell<Option<aver_tpm_attest::TpmError>>>,
}

pub const TEST_TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJ0ZXN0Ijp0cnVlfQ.";

impl<'a> Loopback<'a> {
    pub fn new(service: &'a TpmAttestService, cache: &'a ReplayCache) -> Self {
        Loopback {
            service,
            cache,
            now: now(),
            options: RequestOptions::default(),
            verified: Rc::default(),
            last_error: Rc::default(),
        }
    }

    pub fn send(&self, message: &Value) -> Result<Value, String> {
        let body = aver_tpm_client::encode_data(message);
        let data = body["data"].as_str().unwrap();
        match self
            .service
            .handle_with(data, self.now, self.cache, &self.options)
        {
            Ok(TpmStep::Reply(payload)) => {
                decode_data(&json!({ "data": encode_payload(&payload) })).map_err(|e| e.to_string())
            }
            Ok(TpmStep::Verified(v)) => {
                *self.verified.borrow_mut() = Some(*v);
                decode_data(&json!({ "data": report_reply(TEST_TOKEN) })).map_err(|e| e.to_string())
            }
            Err(e) => {
                let s = format!("{}: {e}", e.code());
                *self.last_error.borrow_mut() = Some(e);
                Err(s)
            }
        }
    }

    pub fn transport(&self) -> impl FnMut(&Value) -> Result<Value, String> + '_ {
        move |m| self.send(m)
    }

    pub fn error_code(&self) -> Option<&'static str> {
        self.last_error.borrow().as_ref().map(|e| e.code())
    }
}
