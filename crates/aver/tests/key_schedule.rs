//! `aver serve --rotate-keys-every`: a real server process makes a new
//! signing key on its schedule, published before it signs (what
//! `aver keys list` shows), and bad schedules are refused at start with a
//! message that says why. The schedule's rules, retirement and the race
//! between replicas are tested in aver-server (`rotation.rs`).
//!
//! Also the key and provider commands in store mode over PostgreSQL
//! (`--database-url`, `--database-schema`), next to a server using the
//! same schema: they used to panic there (the PostgreSQL client's own
//! runtime inside the command's).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::{admin_of, aver, free_port, serve_with, serve_with_env};

/// `aver serve` with `flags` must refuse to start, saying `why`.
fn refused(flags: &[&str], why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = aver()
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .args(flags)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{flags:?} started");
    assert!(stderr.contains(why), "{flags:?}: {stderr}");
}

#[test]
fn bad_schedules_are_refused_at_start() {
    refused(
        &[
            "--rotate-keys-every",
            "10s",
            "--rotation-publish-delay",
            "1m",
        ],
        "must be longer than the publish delay of its keys (60 s)",
    );
    refused(&["--rotate-keys-every", "3x"], "is not a duration");
    refused(&["--rotate-keys-every", "d"], "is not a duration");
    refused(
        &["--rotation-publish-delay", "1m"],
        "rotation_publish_delay is set without rotate_keys_every",
    );
}

/// The listing's rows: (kid, state, created_at, not_before_signing).
fn keys(dir: &std::path::Path, port: u16) -> Vec<(String, String, i64, i64)> {
    let out = admin_of(aver().args(["keys", "list"]), dir, port)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                f[0].to_string(),
                f[2].to_string(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_service_rotates_its_key_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Each key signs for 6 s, published 3 s before: the first key (made at
    // start) is due 3 s after it, the next key then signs 3 s later.
    let _server = serve_with(
        dir.path(),
        port,
        &[
            "--rotate-keys-every",
            "6s",
            "--rotation-publish-delay",
            "3s",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let listing = loop {
        let now = keys(dir.path(), port);
        if now.len() >= 2 {
            break now;
        }
        assert!(Instant::now() < deadline, "no scheduled rotation: {now:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    // Newest first. Every key the schedule made is published 3 s before it
    // signs, and was made no earlier than 3 s before its predecessor's
    // 6 s of signing ended (a slow start may have let more than one
    // rotation happen before the first listing).
    for pair in listing.windows(2) {
        let ((kid, state, created, signs_from), (older, _, _, older_from)) = (&pair[0], &pair[1]);
        assert_ne!(kid, older);
        assert_eq!(signs_from - created, 3, "{listing:?}");
        assert!(
            *created >= older_from + 6 - 3,
            "rotated before it was due: {listing:?}"
        );
        assert!(
            state == "next" || state == "signing" || state == "published",
            "{listing:?}"
        );
    }
    assert_eq!(
        listing.iter().filter(|k| k.1 == "signing").count(),
        1,
        "{listing:?}"
    );
}

#[test]
fn key_and_provider_commands_work_on_a_postgresql_store() {
    let Ok(db) = std::env::var("AVER_TEST_POSTGRES_URL") else {
        aver_testkit::skip(
            "key_and_provider_commands_work_on_a_postgresql_store",
            "AVER_TEST_POSTGRES_URL is not set",
        );
        return;
    };
    let schema = format!("aver_cli_store_{}", std::process::id());
    let kek = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = serve_with_env(
        dir.path(),
        port,
        &["--database-url", &db, "--database-schema", &schema],
        &[("AVER_KEK", kek)],
    );
    let store = |args: &[&str]| {
        let out = aver()
            .env("AVER_KEK", kek)
            .args(args)
            .args(["--database-url", &db, "--database-schema", &schema])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        text
    };
    assert!(store(&["provider", "list"]).contains("default"));
    let before = store(&["keys", "list"]);
    assert_eq!(before.lines().count(), 2, "{before}");
    let kid = store(&["keys", "rotate", "--publish-delay", "0"]);
    let after = store(&["keys", "list"]);
    assert_eq!(after.lines().count(), 3, "{after}");
    assert!(after.contains(kid.trim()), "{after}");
    assert!(store(&["collateral", "status"]).contains("collateral"));
    drop(server);
    let _ = std::process::Command::new("psql")
        .args([
            &db,
            "-q",
            "-c",
            &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        ])
        .output();
}
