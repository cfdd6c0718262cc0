//! Test support shared by every Aver crate.
//!
//! Real hardware vectors are never copied into the repository; tests read them
//! from `AVER_VECTORS` (default: `../shared/vectors` next to the repository).
//! When something a test needs is missing (vectors, swtpm, PostgreSQL, an SDK),
//! the test says so loudly and skips, unless `AVER_TEST_STRICT=1` is set (as
//! `.ci/run` does), in which case the skip is a failure.
//!
//! [`swtpm`] is the software-TPM harness of the TPM end-to-end tests.
// Test support only: a missing vector under AVER_TEST_STRICT, or a swtpm
// that cannot be manufactured or started, must fail the test, which is what
// a panic here does.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

pub mod snp;
pub mod softhsm;
pub mod swtpm;

/// Directory holding the shared real-hardware vectors.
pub fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AVER_VECTORS") {
        return PathBuf::from(dir);
    }
    // Every crate lives at <repo>/crates/<name>; cargo runs tests with that
    // crate's CARGO_MANIFEST_DIR set, so <repo>/../shared/vectors is three
    // levels up. Read at run time: a build directory shared between two
    // checkouts must not point one checkout's tests at the other's files.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.join("../../../shared/vectors")
}

/// True when skips must fail (CI sets `AVER_TEST_STRICT=1`).
pub fn strict() -> bool {
    matches!(
        std::env::var("AVER_TEST_STRICT").as_deref(),
        Ok("1") | Ok("true")
    )
}

/// Reports a skipped test. Panics under `AVER_TEST_STRICT=1`.
pub fn skip(test: &str, reason: &str) {
    if strict() {
        panic!("{test}: required component missing under AVER_TEST_STRICT=1: {reason}");
    }
    // Written straight to the process's stderr: the test harness captures
    // `eprintln!` of passing tests, and a skip must never be silent.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {reason} (set AVER_TEST_STRICT=1 to make this a failure)"
    );
}

/// Path of a vector file, or `None` after a loud skip when it is absent.
pub fn vector(test: &str, relative: &str) -> Option<PathBuf> {
    let path = vectors_dir().join(relative);
    if path.exists() {
        Some(path)
    } else {
        skip(
            test,
            &format!("vector {} not found (AVER_VECTORS)", path.display()),
        );
        None
    }
}

/// Reads a vector file, or `None` after a loud skip when it is absent.
pub fn read_vector(test: &str, relative: &str) -> Option<Vec<u8>> {
    let path = vector(test, relative)?;
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => panic!("{test}: cannot read {}: {e}", path.display()),
    }
}
