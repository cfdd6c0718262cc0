//! Test support for `tpm_e2e`: a software TPM (swtpm) manufactured with an
//! EK certificate from a private swtpm_localca CA, and a TCG crypto-agile
//! event log writer that extends the TPM (through tpm2-tools'
//! `tpm2_pcrextend`) with exactly what it logs.
//!
//! Adapted from `crates/aver-tpm-client/tests/common/mod.rs`; the aver crate
//! does not depend on tss-esapi, so PCRs are extended with tpm2-tools and
//! digests come from `aver_tpm::HashAlg`.
#![allow(dead_code)]

use aver_tpm::HashAlg;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// `None` (after a loud skip) when swtpm, its tools, tpm2-tools or the
/// swtpm TCTI are missing.
pub fn require_tools(test: &str) -> Option<()> {
    for bin in ["swtpm", "swtpm_setup", "swtpm_localca", "tpm2_pcrextend"] {
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

/// A fresh scratch directory under Cargo's per-target test tmpdir.
pub fn scratch(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "aver-tpm-e2e-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A manufactured TPM: swtpm state with an RSA EK certificate issued by a
/// private swtpm_localca CA (nothing under /var/lib/swtpm-localca is used).
pub struct Manufactured {
    pub dir: PathBuf,
    pub state: PathBuf,
    /// A directory holding the CA's root and intermediate (PEM): what the
    /// service is given as `--tpm-ek-roots`.
    pub ek_roots: PathBuf,
}

fn manufacture(tag: &str) -> Result<Manufactured, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("aver-tpm-e2e-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = dir.join("ca");
    let state = dir.join("state");
    let ek_roots = dir.join("ek-roots");
    for d in [&ca, &state, &ek_roots] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
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
    // The EK certificate is issued by the local CA's intermediate; the
    // client sends no chain, so both certificates are configured.
    for f in ["swtpm-localca-rootca-cert.pem", "issuercert.pem"] {
        std::fs::copy(ca.join(f), ek_roots.join(f)).map_err(|e| format!("{f}: {e}"))?;
    }
    Ok(Manufactured {
        dir,
        state,
        ek_roots,
    })
}

static TPM: OnceLock<Result<Manufactured, String>> = OnceLock::new();

/// The manufactured TPM identity (made once per test binary; each test
/// runs a fresh swtpm on a copy of its state).
pub fn identity() -> &'static Manufactured {
    match TPM.get_or_init(|| manufacture("template")) {
        Ok(m) => m,
        Err(e) => panic!("manufacturing the TPM: {e}"),
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
        let dir = scratch("swtpm");
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

    /// Extends `pcr` with a SHA-1 and a SHA-256 digest (tpm2_pcrextend).
    pub fn pcr_extend(&self, pcr: u32, sha1: &[u8], sha256: &[u8]) {
        let spec = format!(
            "{pcr}:sha1={},sha256={}",
            hex::encode(sha1),
            hex::encode(sha256)
        );
        let out = Command::new("tpm2_pcrextend")
            .env("TPM2TOOLS_TCTI", self.tcti())
            .arg(&spec)
            .output()
            .expect("run tpm2_pcrextend");
        assert!(
            out.status.success(),
            "tpm2_pcrextend {spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

/// Writes a TCG PC Client crypto-agile log (SHA-1 + SHA-256) and extends
/// the TPM with exactly what it logs.
pub struct LogWriter {
    buf: Vec<u8>,
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
        tpm: Option<&Swtpm>,
        pcr: u32,
        event_type: u32,
        data: &[u8],
        measured: &[u8],
    ) {
        let d1 = HashAlg::Sha1.hash(measured);
        let d256 = HashAlg::Sha256.hash(measured);
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
            t.pcr_extend(pcr, &d1, &d256);
        }
    }

    /// An event whose digest is H(data).
    pub fn event(&mut self, tpm: Option<&Swtpm>, pcr: u32, event_type: u32, data: &[u8]) {
        self.measure(tpm, pcr, event_type, data, data);
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

/// A UEFI Secure Boot measured boot: CRTM version, SecureBoot=1/PK/KEK/
/// db/dbx, BootOrder, separators on PCRs 0–7, a boot application, and
/// ExitBootServices.
pub fn standard_boot(tpm: &Swtpm) -> LogWriter {
    let tpm = Some(tpm);
    let mut log = LogWriter::new();
    log.event(tpm, 0, EV_S_CRTM_VERSION, &utf16("1.0\0"));
    for (guid, name, data) in [
        (&GLOBAL_GUID, "SecureBoot", vec![1u8]),
        (&GLOBAL_GUID, "PK", b"platform key".to_vec()),
        (&GLOBAL_GUID, "KEK", b"key exchange keys".to_vec()),
        (&DB_GUID, "db", b"allowed signatures".to_vec()),
        (&DB_GUID, "dbx", b"forbidden signatures".to_vec()),
    ] {
        log.event(
            tpm,
            7,
            EV_EFI_VARIABLE_DRIVER_CONFIG,
            &efi_variable(guid, name, &data),
        );
    }
    log.event(
        tpm,
        1,
        EV_EFI_VARIABLE_BOOT,
        &efi_variable(&GLOBAL_GUID, "BootOrder", &[1, 0]),
    );
    for pcr in 0..8 {
        log.event(tpm, pcr, EV_SEPARATOR, &[0, 0, 0, 0]);
    }
    log.event(
        tpm,
        4,
        EV_EFI_ACTION,
        b"Calling EFI Application from Boot Option",
    );
    log.measure(
        tpm,
        4,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        &image_load_event("\\EFI\\BOOT\\BOOTX64.EFI", 4096),
        b"authenticode hash stand-in",
    );
    log.event(tpm, 5, EV_EFI_ACTION, b"Exit Boot Services Invocation");
    log
}
