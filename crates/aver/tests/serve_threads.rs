//! `aver serve`'s threads as the kernel sees them: with
//! `--io-scheduling batch` the connection threads (`aver-io`) run under
//! SCHED_BATCH and the CPU pool's threads (`aver-cpu-N`) keep the default
//! policy; by default (`auto`, with no attestation waiting) and with
//! `normal` every thread keeps it. Read from `/proc/<pid>/task/*/stat` of a
//! real server process (Linux only). How `auto` follows a backlog is
//! tested with a real runtime and CPU pool in `src/io_sched.rs`.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

use common::{aver, free_port, serve_with};

/// Linux's SCHED_OTHER and SCHED_BATCH (`sched(7)`).
const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// Each thread's name with its scheduling policy (field 41 of `stat`).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        // `pid (comm) state ...`: comm may hold spaces and parentheses, so
        // the fields are counted from the last ')'; state is field 3.
        let open = stat.find('(').unwrap();
        let close = stat.rfind(')').unwrap();
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        out.push((name, fields[41 - 3].parse().unwrap()));
    }
    out
}

/// Policies by thread kind: `aver-io`, `aver-cpu`, or the other names.
fn by_kind(pid: u32) -> BTreeMap<&'static str, Vec<u32>> {
    let mut kinds: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
    for (name, policy) in thread_policies(pid) {
        let kind = if name.starts_with("aver-io") {
            "io"
        } else if name.starts_with("aver-cpu-") {
            "cpu"
        } else {
            "other"
        };
        kinds.entry(kind).or_default().push(policy);
    }
    kinds
}

#[test]
fn with_batch_the_connection_threads_run_under_sched_batch_and_the_cpu_pool_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        free_port(),
        &[
            "--io-scheduling",
            "batch",
            "--io-threads",
            "2",
            "--max-concurrent-attestations",
            "2",
        ],
    );
    let kinds = by_kind(server.0.id());
    let io = &kinds["io"];
    assert!(io.len() >= 2, "two connection threads at least: {kinds:?}");
    assert!(io.iter().all(|&p| p == SCHED_BATCH), "{kinds:?}");
    assert_eq!(kinds["cpu"], [SCHED_OTHER, SCHED_OTHER], "{kinds:?}");
    // The main thread (which only waits for the service) is untouched.
    assert!(
        kinds["other"].iter().all(|&p| p == SCHED_OTHER),
        "{kinds:?}"
    );
}

#[test]
fn idle_by_default_and_with_normal_every_thread_keeps_the_default_policy() {
    for extra in [
        &[][..],
        &["--io-scheduling", "normal"],
        &["--io-scheduling", "auto"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = serve_with(dir.path(), free_port(), extra);
        let kinds = by_kind(server.0.id());
        assert!(!kinds["io"].is_empty(), "{extra:?}: {kinds:?}");
        for policies in kinds.values() {
            assert!(
                policies.iter().all(|&p| p == SCHED_OTHER),
                "{extra:?}: {kinds:?}"
            );
        }
    }
}

#[test]
fn io_scheduling_batch_in_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("aver.toml");
    std::fs::write(&config, "io_scheduling = \"batch\"\n").unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, free_port(), &["--config", config.to_str().unwrap()]);
    let kinds = by_kind(server.0.id());
    assert!(!kinds["io"].is_empty(), "{kinds:?}");
    assert!(kinds["io"].iter().all(|&p| p == SCHED_BATCH), "{kinds:?}");
    assert!(kinds["cpu"].iter().all(|&p| p == SCHED_OTHER), "{kinds:?}");
}

#[test]
fn an_unknown_io_scheduling_is_refused_with_the_choices() {
    let out = aver()
        .args(["serve", "--io-scheduling", "fifo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'fifo'")
            && err.contains("auto")
            && err.contains("batch")
            && err.contains("normal"),
        "{err}"
    );
}
