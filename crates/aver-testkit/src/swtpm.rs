//! A software TPM (swtpm) for end-to-end tests, shared by `aver`'s
//! `tpm_e2e` and `aver-tpm-client`'s `swtpm_e2e`.
//!
//! - [`require_tools`]: swtpm, its tools and the libtss2 swtpm TCTI, or a
//!   loud skip ([`crate::skip`]).
//! - [`identity`]: a TPM manufactured once per test binary by `swtpm_setup`,
//!   with an RSA EK certificate from a private `swtpm_localca` CA (hermetic:
//!   nothing under /var/lib/swtpm-localca is read or written).
//! - [`Swtpm`]: a running swtpm on a copy of an identity's state, on free
//!   ports, stopped on drop.
//! - [`LogWriter`] and [`standard_boot`]: a TCG crypto-agile event log
//!   (SHA-1 + SHA-256) whose every logged event is also extended into the
//!   TPM through a caller-given step. The step is a parameter because the
//!   two suites extend differently: `aver` does not depend on tss-esapi and
//!   uses tpm2-tools ([`Swtpm::pcr_extend`]), the client tests use their
//!   own `TpmClient::pcr_extend`.
//!
//! Directories are made under a base directory the tests pass in (their
//! `env!("CARGO_TARGET_TMPDIR")`, which exists only when compiling
//! integration tests, not this library): the cached identities are statics,
//! never dropped, so they must live somewhere Cargo owns rather than leak
//! into /tmp.

use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// What [`LogWriter`] calls for every event it extends: `(pcr, sha1,
/// sha256)` digests, exactly as logged.
pub type Extend<'a> = dyn FnMut(u32, &[u8], &[u8]) + 'a;

/// The extra binary the tpm2-tools extending step ([`Swtpm::pcr_extend`])
/// needs, for [`require_tools`].
pub const TPM2_PCREXTEND: &str = "tpm2_pcrextend";

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

/// `None` (after a loud skip, a failure under `AVER_TEST_STRICT=1`) when
/// swtpm, swtpm_setup, swtpm_localca, any of `extra` (e.g.
/// [`TPM2_PCREXTEND`]) or the libtss2 swtpm TCTI is missing.
pub fn require_tools(test: &str, extra: &[&str]) -> Option<()> {
    let base = ["swtpm", "swtpm_setup", "swtpm_localca"];
    for bin in base.iter().chain(extra) {
        if !on_path(bin) {
            crate::skip(
                test,
                &format!(
                    "{bin} not found (apt-get install swtpm swtpm-tools tpm2-tools libtss2-dev)"
                ),
            );
            return None;
        }
    }
    if !libtss2_swtpm_tcti() {
        crate::skip(
            test,
            "libtss2-tcti-swtpm.so.0 not found (apt-get install libtss2-dev)",
        );
        return None;
    }
    Some(())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty scratch directory under `base` (unique per process and
/// call; the caller removes it).
pub fn scratch(base: impl AsRef<Path>, tag: &str) -> PathBuf {
    let d = base.as_ref().join(format!(
        "aver-swtpm-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap(); // ok: test harness set-up; a failure must fail the test
    d
}

/// A manufactured TPM: swtpm state with an RSA EK certificate issued by a
/// private swtpm_localca CA (nothing under /var/lib/swtpm-localca is used).
pub struct Manufactured {
    /// The template's directory (CA, state, EK roots).
    pub dir: PathBuf,
    /// swtpm state (`tpm2-00.permall`), copied by [`Swtpm::start`].
    pub state: PathBuf,
    /// A directory holding the CA's root and intermediate (PEM): what the
    /// service is given as `--tpm-ek-roots`. The EK certificate is issued
    /// by the intermediate and clients send no chain, so both are needed.
    pub ek_roots: PathBuf,
    /// The CA's root certificate (DER).
    pub ca_root_der: Vec<u8>,
    /// The CA's intermediate, the EK certificate's issuer (DER).
    pub ca_intermediate_der: Vec<u8>,
    /// Where [`Swtpm::start`] makes its run directories.
    base: PathBuf,
}

/// Manufactures a TPM in `dir` (removed first: templates are re-made on
/// every run).
fn manufacture(base: &Path, dir: PathBuf) -> Result<Manufactured, String> {
    let _ = std::fs::remove_dir_all(&dir);
    let ca = dir.join("ca");
    let state = dir.join("state");
    let ek_roots = dir.join("ek-roots");
    for d in [&ca, &state, &ek_roots] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
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
    let (root, intermediate) = ("swtpm-localca-rootca-cert.pem", "issuercert.pem");
    for f in [root, intermediate] {
        std::fs::copy(ca.join(f), ek_roots.join(f)).map_err(|e| format!("{f}: {e}"))?;
    }
    let der = |f: &str| -> Result<Vec<u8>, String> {
        CertificateDer::from_pem_file(ca.join(f))
            .map(|c| c.as_ref().to_vec())
            .map_err(|e| format!("{f}: {e}"))
    };
    Ok(Manufactured {
        ca_root_der: der(root)?,
        ca_intermediate_der: der(intermediate)?,
        dir,
        state,
        ek_roots,
        base: base.to_path_buf(),
    })
}

type Cell = OnceLock<Result<Manufactured, String>>;

/// The cache of identities: one cell per name, leaked (a handful per test
/// binary) so that the identity is `'static` and each is made only once
/// even when tests ask for it concurrently.
static IDENTITIES: OnceLock<Mutex<HashMap<String, &'static Cell>>> = OnceLock::new();

/// The manufactured TPM identity `name`, made under `base` on first use and
/// shared by every test of this binary after that (each test runs a fresh
/// swtpm on a copy of its state). Panics when manufacturing fails.
///
/// The template directory is `base/aver-swtpm-<test target>-<name>`: fixed
/// across runs, so a run replaces the previous run's template instead of
/// leaking one, and distinct per test target, since `CARGO_TARGET_TMPDIR`
/// is shared by all of a workspace's packages. (`base` is the one given
/// with the first call for `name`.)
pub fn identity(base: impl AsRef<Path>, name: &str) -> &'static Manufactured {
    // The map's lock is held only to find or add the cell, not while
    // manufacturing: 'a' and 'b' can be made concurrently.
    let cell = {
        let mut map = IDENTITIES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(name.to_owned())
            .or_insert_with(|| Box::leak(Box::default()))
    };
    let base = base.as_ref();
    let result = cell.get_or_init(|| {
        let binary = test_binary_name();
        manufacture(base, base.join(format!("aver-swtpm-{binary}-{name}")))
    });
    match result {
        Ok(m) => m,
        Err(e) => panic!("manufacturing TPM {name}: {e}"),
    }
}

/// The test target's name: the running executable's name without the
/// `-<hash>` Cargo appends (which changes with the dependencies, and would
/// leave a template behind at every change).
fn test_binary_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(Path::file_stem)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "test".into());
    match stem.rsplit_once('-') {
        Some((name, _hash)) => name.to_owned(),
        None => stem,
    }
}

/// A running swtpm; killed and its directory removed on drop.
pub struct Swtpm {
    child: Child,
    /// The TPM command port (the control port is `port + 1`).
    pub port: u16,
    dir: PathBuf,
}

impl Swtpm {
    /// The TCTI string for tss-esapi and tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Starts swtpm on a copy of `identity`'s state, in a scratch directory
    /// under the identity's base directory, on a free pair of ports
    /// (retried: another process may take a port between the probe and
    /// swtpm's bind).
    pub fn start(identity: &Manufactured) -> Swtpm {
        let dir = scratch(&identity.base, "swtpm");
        std::fs::copy(
            identity.state.join("tpm2-00.permall"),
            dir.join("tpm2-00.permall"),
        )
        .unwrap(); // ok: test harness set-up; a failure must fail the test
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
                .expect("spawn swtpm"); // ok: test harness set-up; a failure must fail the test
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("swtpm exited: {status}");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && TcpStream::connect(("127.0.0.1", port + 1)).is_ok()
                    // Ours is listening, not some other process on the port.
                    && matches!(child.try_wait(), Ok(None))
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

    /// Extends `pcr` with a SHA-1 and a SHA-256 digest through tpm2-tools'
    /// `tpm2_pcrextend` (for tests that do not depend on tss-esapi; they
    /// pass [`TPM2_PCREXTEND`] to [`require_tools`]). Panics on failure.
    pub fn pcr_extend(&self, pcr: u32, sha1: &[u8], sha256: &[u8]) {
        let spec = format!("{pcr}:sha1={},sha256={}", hex(sha1), hex(sha256));
        let out = Command::new(TPM2_PCREXTEND)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .arg(&spec)
            .output()
            .expect("run tpm2_pcrextend"); // ok: test harness set-up; a failure must fail the test
        assert!(
            out.status.success(),
            "tpm2_pcrextend {spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// [`Swtpm::pcr_extend`] as the extending step of a [`LogWriter`].
    pub fn extender(&self) -> impl FnMut(u32, &[u8], &[u8]) + '_ {
        move |pcr, sha1, sha256| self.pcr_extend(pcr, sha1, sha256)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two free adjacent ports (server, control), never handed out twice in
/// this process: tests start swtpms in parallel, and a port pair given to
/// two of them would let one test's readiness check succeed against the
/// other's swtpm.
fn free_port_pair() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind(("127.0.0.1", 0)).unwrap(); // ok: test harness set-up; a failure must fail the test
        let p = l.local_addr().unwrap().port(); // ok: test harness set-up; a failure must fail the test
        if p == u16::MAX || TcpListener::bind(("127.0.0.1", p + 1)).is_err() {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.iter().any(|g| g.abs_diff(p) <= 1) {
            continue;
        }
        given.push(p);
        return p;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// UTF-16LE, as UEFI strings are measured (no terminator added).
pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// An `UEFI_VARIABLE_DATA` event body.
pub fn efi_variable(guid: &[u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let mut v = guid.to_vec();
    v.extend_from_slice(&(name.encode_utf16().count() as u64).to_le_bytes());
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend_from_slice(&utf16(name));
    v.extend_from_slice(data);
    v
}

/// An `UEFI_IMAGE_LOAD_EVENT` body for a file-path device path.
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

impl Default for LogWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl LogWriter {
    /// A log holding only the Spec ID event (SHA-1 and SHA-256 banks).
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
    /// (when `extend` is given) with the same digests. `None` logs an event
    /// the TPM never saw.
    pub fn measure(
        &mut self,
        extend: Option<&mut Extend<'_>>,
        pcr: u32,
        event_type: u32,
        data: &[u8],
        measured: &[u8],
    ) {
        let d1 = Sha1::digest(measured);
        let d256 = Sha256::digest(measured);
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
        if let Some(extend) = extend {
            extend(pcr, &d1, &d256);
        }
    }

    /// An event whose digest is H(data).
    pub fn event(
        &mut self,
        extend: Option<&mut Extend<'_>>,
        pcr: u32,
        event_type: u32,
        data: &[u8],
    ) {
        self.measure(extend, pcr, event_type, data, data);
    }

    /// The log so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

/// A UEFI Secure Boot measured boot: CRTM version, SecureBoot=1/PK/KEK/
/// db/dbx, BootOrder, separators on PCRs 0–7, a boot application, and
/// ExitBootServices; every event is extended through `extend`.
pub fn standard_boot(extend: &mut Extend<'_>) -> LogWriter {
    let mut log = LogWriter::new();
    log.event(Some(&mut *extend), 0, EV_S_CRTM_VERSION, &utf16("1.0\0"));
    for (guid, name, data) in [
        (&GLOBAL_GUID, "SecureBoot", vec![1u8]),
        (&GLOBAL_GUID, "PK", b"platform key".to_vec()),
        (&GLOBAL_GUID, "KEK", b"key exchange keys".to_vec()),
        (&DB_GUID, "db", b"allowed signatures".to_vec()),
        (&DB_GUID, "dbx", b"forbidden signatures".to_vec()),
    ] {
        log.event(
            Some(&mut *extend),
            7,
            EV_EFI_VARIABLE_DRIVER_CONFIG,
            &efi_variable(guid, name, &data),
        );
    }
    log.event(
        Some(&mut *extend),
        1,
        EV_EFI_VARIABLE_BOOT,
        &efi_variable(&GLOBAL_GUID, "BootOrder", &[1, 0]),
    );
    for pcr in 0..8 {
        log.event(Some(&mut *extend), pcr, EV_SEPARATOR, &[0, 0, 0, 0]);
    }
    log.event(
        Some(&mut *extend),
        4,
        EV_EFI_ACTION,
        b"Calling EFI Application from Boot Option",
    );
    log.measure(
        Some(&mut *extend),
        4,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        &image_load_event("\\EFI\\BOOT\\BOOTX64.EFI", 4096),
        b"authenticode hash stand-in",
    );
    log.event(
        Some(&mut *extend),
        5,
        EV_EFI_ACTION,
        b"Exit Boot Services Invocation",
    );
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Spec ID header: a 32-byte SHA-1 event header and a 37-byte
    /// `TCG_EfiSpecIDEvent` (signature 16, platform class 4, versions and
    /// uintnSize 4, algorithm count 4, two (id, size) pairs 8, vendor info
    /// size 1).
    const HEADER_LEN: usize = 32 + 37;

    #[test]
    fn extends_exactly_what_it_logs() {
        let mut extended = Vec::new();
        let log = standard_boot(&mut |pcr, sha1: &[u8], sha256: &[u8]| {
            extended.push((pcr, sha1.to_vec(), sha256.to_vec()));
        });
        // 1 CRTM + 5 Secure Boot variables + BootOrder + 8 separators +
        // 2 actions + 1 application.
        assert_eq!(extended.len(), 18);
        let pcrs: Vec<u32> = extended.iter().map(|(p, _, _)| *p).collect();
        assert_eq!(pcrs, [0, 7, 7, 7, 7, 7, 1, 0, 1, 2, 3, 4, 5, 6, 7, 4, 4, 5]);
        // Walk the log: every event's digests are the ones extended.
        let bytes = log.bytes();
        let mut at = HEADER_LEN;
        for (pcr, sha1, sha256) in &extended {
            let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()); // ok: test harness set-up; a failure must fail the test
            assert_eq!(u32_at(at), *pcr);
            assert_eq!(u32_at(at + 8), 2, "two digests");
            assert_eq!(&bytes[at + 14..at + 34], sha1.as_slice());
            assert_eq!(&bytes[at + 36..at + 68], sha256.as_slice());
            at += 68 + 4 + u32_at(at + 68) as usize;
        }
        assert_eq!(at, bytes.len());
    }

    #[test]
    fn an_unextended_event_is_only_logged() {
        let mut log = LogWriter::new();
        log.event(None, 4, EV_EFI_ACTION, b"abc");
        let bytes = log.bytes();
        let event = &bytes[HEADER_LEN..];
        assert_eq!(event[..8], [4, 0, 0, 0, 7, 0, 0, 0x80]);
        // SHA-1("abc") and SHA-256("abc") (FIPS 180-2 examples).
        assert_eq!(
            hex(&event[14..34]),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&event[36..68]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(&event[72..], b"abc");
    }

    #[test]
    fn efi_variable_layout() {
        let v = efi_variable(&GLOBAL_GUID, "PK", &[9]);
        assert_eq!(v[..16], GLOBAL_GUID);
        assert_eq!(v[16..24], 2u64.to_le_bytes());
        assert_eq!(v[24..32], 1u64.to_le_bytes());
        assert_eq!(v[32..], [b'P', 0, b'K', 0, 9]);
    }
}
