//! Test support: a software TPM (swtpm) per test, a TCG crypto-agile event
//! log writer that extends the TPM as it logs, an in-process transport to
//! `TpmAttestService`, and test PKI (AK CA, untrusted EK root).
#![allow(dead_code)]

use aver_tpm_attest::{
    ReplayCache, RequestOptions, TpmAttestConfig, TpmAttestService, TpmStep, VerifiedTpm,
    encode_payload, report_reply,
};
use aver_tpm_client::{TpmClient, decode_data};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn libtss2_swtpm_tcti() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libtss2-tcti-swtpm.so.0",
        "/usr/lib/aarch64-linux-gnu/libtss2-tcti-swtpm.so.0",
        "/usr/lib64/libtss2-tcti-swtpm.so.0",
        "/usr/lib/libtss2-tcti-swtpm.so.0",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

/// `None` (after a loud skip) when swtpm, swtpm_setup or the swtpm TCTI are missing.
pub fn require_tools(test: &str) -> Option<()> {
    for bin in ["swtpm", "swtpm_setup", "swtpm_localca"] {
        if !on_path(bin) {
            aver_testkit::skip(
                test,
                &format!(
                    "{bin} not found (apt-get install swtpm swtpm-tools tpm2-tools libtss2-dev)"
                ),
            );
            return None;
        }
    }
    if !libtss2_swtpm_tcti() {
        aver_testkit::skip(
            test,
            "libtss2-tcti-swtpm.so.0 not found (apt-get install libtss2-dev)",
        );
        return None;
    }
    Some(())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "aver-swtpm-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A manufactured TPM: state with an RSA EK certificate issued by a
/// private swtpm_localca CA created in `ca_dir` (hermetic: nothing under
/// /var/lib/swtpm-localca is used).
pub struct Manufactured {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub ca_root_der: Vec<u8>,
    pub ca_intermediate_der: Vec<u8>,
}

fn manufacture(tag: &str) -> Result<Manufactured, String> {
    // Templates live in Cargo's per-target test scratch directory and are
    // re-made on every run (statics are never dropped, so /tmp would leak).
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("aver-swtpm-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = dir.join("ca");
    let state = dir.join("state");
    std::fs::create_dir_all(&ca).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    let d = ca.display();
    std::fs::write(
        ca.join("localca.conf"),
        format!(
            "statedir = {d}\nsigningkey = {d}/signkey.pem\nissuercert = {d}/issuercert.pem\ncertserial = {d}/certserial\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        ca.join("localca.options"),
        "--platform-manufacturer Aver\n--platform-version 2.1\n--platform-model test\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        ca.join("setup.conf"),
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {d}/localca.conf\ncreate_certs_tool_options = {d}/localca.options\nactive_pcr_banks = sha1,sha256\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("swtpm_setup")
        .args(["--tpm2", "--tpmstate"])
        .arg(&state)
        .args([
            "--create-ek-cert",
            "--pcr-banks",
            "sha1,sha256",
            "--overwrite",
            "--config",
        ])
        .arg(ca.join("setup.conf"))
        .output()
        .map_err(|e| format!("swtpm_setup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "swtpm_setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let pem = |f: &str| -> Result<Vec<u8>, String> {
        CertificateDer::from_pem_file(ca.join(f))
            .map(|c| c.as_ref().to_vec())
            .map_err(|e| format!("{f}: {e}"))
    };
    Ok(Manufactured {
        ca_root_der: pem("swtpm-localca-rootca-cert.pem")?,
        ca_intermediate_der: pem("issuercert.pem")?,
        dir,
        state,
    })
}

static TPM_A: OnceLock<Result<Manufactured, String>> = OnceLock::new();
static TPM_B: OnceLock<Result<Manufactured, String>> = OnceLock::new();

/// The two manufactured TPM identities used by the tests (made once per
/// test binary; each test runs a fresh swtpm on a copy of the state).
pub fn identity(which: char) -> &'static Manufactured {
    let cell = if which == 'a' { &TPM_A } else { &TPM_B };
    match cell.get_or_init(|| manufacture(&format!("template-{which}"))) {
        Ok(m) => m,
        Err(e) => panic!("manufacturing TPM {which}: {e}"),
    }
}

/// A running swtpm; killed and its directory removed on drop.
pub struct Swtpm {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Swtpm {
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Starts swtpm on a copy of `identity`'s state.
    pub fn start(identity: &Manufactured) -> Swtpm {
        let dir = scratch("run");
        std::fs::copy(
            identity.state.join("tpm2-00.permall"),
            dir.join("tpm2-00.permall"),
        )
        .unwrap();
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port_pair();
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", dir.display()))
                .args([
                    "--server",
                    &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                ])
                .args([
                    "--ctrl",
                    &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
                ])
                .args(["--flags", "not-need-init,startup-clear"])
                .args([
                    "--log",
                    &format!("file={}/swtpm.log,level=1", dir.display()),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn swtpm");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("swtpm exited: {status}");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && TcpStream::connect(("127.0.0.1", port + 1)).is_ok()
                {
                    return Swtpm { child, port, dir };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = "swtpm did not listen within 5 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start swtpm: {last}");
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65535 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

// ---------------------------------------------------------------- event log

pub const EV_NO_ACTION: u32 = 0x3;
pub const EV_SEPARATOR: u32 = 0x4;
pub const EV_S_CRTM_VERSION: u32 = 0x8;
pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
pub const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
pub const EV_EFI_ACTION: u32 = 0x8000_0007;

/// EFI_GLOBAL_VARIABLE 8BE4DF61-93CA-11D2-AA0D-00E098032B8C (mixed-endian).
pub const GLOBAL_GUID: [u8; 16] = [
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
];
/// EFI_IMAGE_SECURITY_DATABASE D719B2CB-3D3A-4596-A3BC-DAD00E67656F.
pub const DB_GUID: [u8; 16] = [
    0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f,
];

/// Writes a TCG PC Client crypto-agile log (SHA-1 + SHA-256) and extends
/// the TPM with exactly what it logs.
pub struct LogWriter {
    buf: Vec<u8>,
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

pub fn efi_variable(guid: &[u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let mut v = guid.to_vec();
    v.extend_from_slice(&(name.encode_utf16().count() as u64).to_le_bytes());
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend_from_slice(&utf16(name));
    v.extend_from_slice(data);
    v
}

pub fn image_load_event(path: &str, length: u64) -> Vec<u8> {
    let mut file = utf16(path);
    file.extend_from_slice(&[0, 0]);
    let mut dp = vec![0x04, 0x04];
    dp.extend_from_slice(&((file.len() + 4) as u16).to_le_bytes());
    dp.extend_from_slice(&file);
    dp.extend_from_slice(&[0x7f, 0xff, 0x04, 0x00]);
    let mut v = 0x1000_0000u64.to_le_bytes().to_vec();
    v.extend_from_slice(&length.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&(dp.len() as u64).to_le_bytes());
    v.extend_from_slice(&dp);
    v
}

impl LogWriter {
    pub fn new() -> Self {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass
        spec.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintnSize
        spec.extend_from_slice(&2u32.to_le_bytes());
        spec.extend_from_slice(&0x0004u16.to_le_bytes());
        spec.extend_from_slice(&20u16.to_le_bytes());
        spec.extend_from_slice(&0x000bu16.to_le_bytes());
        spec.extend_from_slice(&32u16.to_le_bytes());
        spec.push(0); // vendorInfoSize
        let mut buf = Vec::new();
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        buf.extend_from_slice(&[0u8; 20]);
        buf.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        buf.extend_from_slice(&spec);
        LogWriter { buf }
    }

    /// Logs an event whose digests are H(`measured`) and extends the TPM
    /// (when `tpm` is given) with the same digests.
    pub fn measure(
        &mut self,
        tpm: Option<&mut TpmClient>,
        pcr: u32,
        event_type: u32,
        data: &[u8],
        measured: &[u8],
    ) {
        let d1 = Sha1::digest(measured).to_vec();
        let d256 = Sha256::digest(measured).to_vec();
        self.buf.extend_from_slice(&pcr.to_le_bytes());
        self.buf.extend_from_slice(&event_type.to_le_bytes());
        self.buf.extend_from_slice(&2u32.to_le_bytes());
        self.buf.extend_from_slice(&0x0004u16.to_le_bytes());
        self.buf.extend_from_slice(&d1);
        self.buf.extend_from_slice(&0x000bu16.to_le_bytes());
        self.buf.extend_from_slice(&d256);
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(data);
        if let Some(t) = tpm {
            t.pcr_extend(
                pcr,
                &[
                    (HashingAlgorithm::Sha1, d1),
                    (HashingAlgorithm::Sha256, d256),
                ],
            )
            .unwrap();
        }
    }

    /// An event whose digest is H(data).
    pub fn event(&mut self, tpm: Option<&mut TpmClient>, pcr: u32, event_type: u32, data: &[u8]) {
        self.measure(tpm, pcr, event_type, data, data);
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

/// A UEFI Secure Boot measured boot: CRTM version, SecureBoot=1/PK/KEK/
/// db/dbx, BootOrder, separators on PCRs 0–7, a boot application, and
/// ExitBootServices.
pub fn standard_boot(tpm: &mut TpmClient) -> LogWriter {
    let mut log = LogWriter::new();
    log.event(Some(tpm), 0, EV_S_CRTM_VERSION, &utf16("1.0\0"));
    for (guid, name, data) in [
        (&GLOBAL_GUID, "SecureBoot", vec![1u8]),
        (&GLOBAL_GUID, "PK", b"platform key".to_vec()),
        (&GLOBAL_GUID, "KEK", b"key exchange keys".to_vec()),
        (&DB_GUID, "db", b"allowed signatures".to_vec()),
        (&DB_GUID, "dbx", b"forbidden signatures".to_vec()),
    ] {
        log.event(
            Some(tpm),
            7,
            EV_EFI_VARIABLE_DRIVER_CONFIG,
            &efi_variable(guid, name, &data),
        );
    }
    log.event(
        Some(tpm),
        1,
        EV_EFI_VARIABLE_BOOT,
        &efi_variable(&GLOBAL_GUID, "BootOrder", &[1, 0]),
    );
    for pcr in 0..8 {
        log.event(Some(tpm), pcr, EV_SEPARATOR, &[0, 0, 0, 0]);
    }
    log.event(
        Some(tpm),
        4,
        EV_EFI_ACTION,
        b"Calling EFI Application from Boot Option",
    );
    log.measure(
        Some(tpm),
        4,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        &image_load_event("\\EFI\\BOOT\\BOOTX64.EFI", 4096),
        b"authenticode hash stand-in",
    );
    log.event(
        Some(tpm),
        5,
        EV_EFI_ACTION,
        b"Exit Boot Services Invocation",
    );
    log
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
