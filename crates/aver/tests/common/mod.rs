//! A real `aver serve` process for the binary's integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn aver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aver"));
    cmd.env("AVER_LOG", "warn");
    cmd
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server process, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn serve(dir: &Path, port: u16) -> Server {
    serve_with(dir, port, &[])
}

/// `aver serve` on 127.0.0.1:`port` with `extra` flags, once its
/// management API answers.
pub fn serve_with(dir: &Path, port: u16, extra: &[&str]) -> Server {
    serve_with_env(dir, port, extra, &[])
}

/// [`serve_with`] with `env` added to the server's environment.
pub fn serve_with_env(dir: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let child = aver()
        .envs(env.iter().copied())
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    // Ready when /health answers over TLS.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = dir.join("tls/cert.pem").exists()
            && admin_of(
                aver().args(["policy", "get", "--type", "SgxEnclave"]),
                dir,
                port,
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return server;
        }
        assert!(Instant::now() < deadline, "aver serve did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `cmd` pointed at the server `serve_with` started in `dir` on `port`,
/// as its default provider's administrator.
pub fn admin_of<'c>(cmd: &'c mut Command, dir: &Path, port: u16) -> &'c mut Command {
    cmd.arg("--url")
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--ca")
        .arg(dir.join("tls/cert.pem"))
        .arg("--admin-key")
        .arg(format!("@{}", dir.join("admin-key").display()))
}
