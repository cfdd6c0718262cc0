//! SoftHSM2 tokens for PKCS#11 tests, each in its own directory (nothing
//! under /var/lib/softhsm is touched).
//!
//! SoftHSM reads its configuration file from `SOFTHSM2_CONF` when the
//! module is initialized, once per process: a test binary loading the
//! module in-process sets that variable before anything else, and keeps all
//! its tokens under one [`SoftHsm::conf`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of every test token.
pub const PIN: &str = "4321";

/// A SoftHSM2 configuration with its token directory.
pub struct SoftHsm {
    pub dir: PathBuf,
    /// The configuration file: set `SOFTHSM2_CONF` to it.
    pub conf: PathBuf,
    /// A file holding [`PIN`] (for `pin-source=file:`).
    pub pin_file: PathBuf,
}

/// A fresh SoftHSM2 configuration under `base`; `None` after a loud skip
/// (a failure under `AVER_TEST_STRICT=1`) when softhsm2 is not installed.
pub fn setup(test: &str, base: impl AsRef<Path>) -> Option<SoftHsm> {
    let util = Command::new("softhsm2-util").arg("--version").output();
    if util.is_err() || !Path::new(MODULE).exists() {
        crate::skip(
            test,
            &format!(
                "softhsm2 is not installed (softhsm2-util and {MODULE}; Debian package softhsm2)"
            ),
        );
        return None;
    }
    let dir = crate::swtpm::scratch(base, "softhsm");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap(); // ok: test harness set-up; a failure must fail the test
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap(); // ok: test harness set-up; a failure must fail the test
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap(); // ok: test harness set-up; a failure must fail the test
    Some(SoftHsm {
        dir,
        conf,
        pin_file,
    })
}

impl SoftHsm {
    /// Initializes a token labelled `label` (user PIN [`PIN`]).
    pub fn init_token(&self, label: &str) {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                "87654321",
            ])
            .output()
            .unwrap(); // ok: test harness set-up; a failure must fail the test
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A URI for key `object` in token `label`, PIN from the file, module
    /// by path.
    pub fn uri(&self, label: &str, object: &str) -> String {
        format!(
            "pkcs11:token={label};object={object}?pin-source=file:{}&module-path={MODULE}",
            self.pin_file.display()
        )
    }
}
