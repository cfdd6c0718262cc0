//! `aver token verify` against a real `aver serve`: a token that does not
//! verify is refused with exit code 2 and one "token rejected:" reason; a
//! token that could not be checked is not called rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{aver, free_port, serve};

#[test]
fn a_token_that_does_not_verify_is_rejected_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(dir.path(), port);
    let out = aver()
        .args(["token", "verify", "--issuer"])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--ca")
        .arg(dir.path().join("tls/cert.pem"))
        .arg("abc.def.ghi")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("token rejected: "), "{err}");
    assert_eq!(err.matches("token rejected").count(), 1, "{err}");
    assert!(out.stdout.is_empty(), "no claims are printed: {out:?}");
}

#[test]
fn an_unreachable_issuer_is_not_a_rejected_token() {
    // Nothing listens on this port.
    let port = free_port();
    let out = aver()
        .args(["token", "verify", "--issuer"])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("abc.def.ghi")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the token could not be checked: cannot reach the service"),
        "{err}"
    );
    assert!(!err.contains("token rejected"), "{err}");
    assert!(out.stdout.is_empty(), "no claims are printed: {out:?}");
}
