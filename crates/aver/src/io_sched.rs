//! How the kernel schedules the threads that serve connections.
//!
//! Why this exists: every request that arrives, and every attestation the
//! CPU pool finishes, wakes an async I/O thread. Under Linux's default
//! policy a woken thread preempts whatever runs on its core, so on a busy
//! core the I/O thread interrupts a pool thread in the middle of its ECDSA
//! work for each event: 3–3.6 context switches per attestation on a
//! saturated core, which with the reschedule interrupts and the caches
//! refilled after them cost a fifth to a quarter of the server's CPU
//! (BENCHMARKS.md, "Who preempts whom" and "I/O threads that follow the
//! backlog").
//!
//! Under `SCHED_BATCH` a woken thread does not preempt a running one: the
//! I/O thread runs when a core is free or when the running thread's time
//! slice ends, and then reads, hands over and answers everything that
//! arrived meanwhile in one go. That is right exactly when the CPU pool
//! has a backlog: answers then wait for the pool anyway, and each
//! preemption only takes CPU from it. It is wrong when the pool is idle,
//! and against other processes: on a core shared with other busy work,
//! even a `nice 19` loop, an I/O thread under `SCHED_BATCH` waits for the
//! end of their time slices (a measured run: p50 at half load 0.9 → 3.8 ms).
//!
//! So the default, [`IoScheduling::Auto`], follows the backlog: each I/O
//! thread, just before it goes idle, puts itself under `SCHED_BATCH` if
//! jobs are queued for the CPU pool ([`aver_server::cpu::process_backlog`])
//! and back under `SCHED_OTHER` if none are. A system call is made only
//! when that changes. Measured on one dedicated core it serves as many
//! attestations as `batch` (+30% over `normal`), and beside a busy
//! `nice 19` or `nice 0` process it kept `normal`'s latency at half load
//! with more throughput than either. `normal` and `batch` stay available.
//!
//! The policy applies to the async runtime's worker threads (`aver-io`);
//! `batch` also to its blocking threads, never to the CPU pool's threads
//! (`aver-cpu-N`). A thread that starts under a policy other than
//! `SCHED_OTHER` (the process run under `chrt`, say) is left alone by
//! `auto`. Elsewhere than on Linux this module does nothing.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The kernel scheduling policy of the I/O threads (`--io-scheduling`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoScheduling {
    /// `SCHED_BATCH` while jobs wait for the CPU pool, the default policy
    /// otherwise: no preemption of verifications under load, prompt
    /// answers when idle.
    #[default]
    Auto,
    /// The policy the process was started with (normally `SCHED_OTHER`):
    /// a woken I/O thread may preempt a verification.
    Normal,
    /// `SCHED_BATCH` always: an I/O thread that wakes up does not preempt a
    /// verification in progress, nor anything else (for cores Aver has to
    /// itself; longer waits on a core shared with other busy processes).
    Batch,
}

/// Where an I/O thread under [`IoScheduling::Auto`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Following {
    /// Not following the backlog (another mode, a thread that started
    /// under a policy of someone else's choosing, or a refused change).
    Off,
    /// Following, now under `SCHED_OTHER`.
    Other,
    /// Following, now under `SCHED_BATCH`.
    Batch,
}

thread_local! {
    static FOLLOWING: Cell<Following> = const { Cell::new(Following::Off) };
}

/// Linux's policies, by name, so that the logic below reads the same
/// everywhere.
#[cfg(target_os = "linux")]
const SCHED_OTHER: i32 = libc::SCHED_OTHER;
#[cfg(target_os = "linux")]
const SCHED_BATCH: i32 = libc::SCHED_BATCH;
#[cfg(not(target_os = "linux"))]
const SCHED_OTHER: i32 = 0;
#[cfg(not(target_os = "linux"))]
const SCHED_BATCH: i32 = 3;

/// Puts the calling thread under `policy` (`SCHED_OTHER` or `SCHED_BATCH`).
///
/// The one `unsafe` outside tests in Aver's own code: a single system call
/// with no pointer kept and no memory written, rather than a dependency
/// that would wrap the same call.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_policy(policy: i32) -> std::io::Result<()> {
    // Both policies take static priority 0, need no privilege and keep the
    // thread's nice value.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, which
    // only reads it; pid 0 names the calling thread, so no other thread's
    // state is touched.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_policy(_policy: i32) -> std::io::Result<()> {
    Ok(())
}

/// The calling thread's policy.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn current_policy() -> i32 {
    // SAFETY: no arguments besides pid 0 (the calling thread).
    unsafe { libc::sched_getscheduler(0) }
}

/// Off Linux nothing is followed: report a policy `auto` leaves alone.
#[cfg(not(target_os = "linux"))]
fn current_policy() -> i32 {
    -1
}

/// Sets up the calling thread, as it starts, for `policy`: `batch` puts it
/// under `SCHED_BATCH`; `auto` makes it follow the backlog from now on if
/// it runs under `SCHED_OTHER`; `normal` changes nothing.
pub fn apply(policy: IoScheduling) -> std::io::Result<()> {
    match policy {
        IoScheduling::Normal => Ok(()),
        IoScheduling::Batch => set_policy(SCHED_BATCH),
        IoScheduling::Auto => {
            let start = if current_policy() == SCHED_OTHER {
                Following::Other
            } else {
                Following::Off
            };
            FOLLOWING.set(start);
            Ok(())
        }
    }
}

/// For a thread set up by [`apply`]`(Auto)`: `SCHED_BATCH` if `backlogged`,
/// else `SCHED_OTHER`. A system call only when that changes; after a
/// refusal the thread stops following (and keeps what it had).
pub fn follow_backlog(backlogged: bool) -> std::io::Result<()> {
    let (want, policy) = if backlogged {
        (Following::Batch, SCHED_BATCH)
    } else {
        (Following::Other, SCHED_OTHER)
    };
    let now = FOLLOWING.get();
    if now == Following::Off || now == want {
        return Ok(());
    }
    match set_policy(policy) {
        Ok(()) => {
            FOLLOWING.set(want);
            Ok(())
        }
        Err(e) => {
            FOLLOWING.set(Following::Off);
            Err(e)
        }
    }
}

/// Logged once per process rather than per thread or per park.
static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(policy: IoScheduling, e: &std::io::Error) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "could not put the I/O threads under {policy:?} scheduling ({e}); they keep the default policy"
        );
    }
}

/// [`apply`] for a runtime's `on_thread_start`: a refusal (a sandbox that
/// forbids `sched_setscheduler`, say) is not fatal, the threads keep the
/// default policy, and it is logged once rather than per thread.
pub fn apply_or_warn(policy: IoScheduling) {
    if let Err(e) = apply(policy) {
        warn_once(policy, &e);
    }
}

/// For a runtime's `on_thread_park` (a worker about to go idle): under
/// `auto`, follow the process's CPU-pool backlog. Costs an atomic load and
/// a thread-local read when nothing changes.
pub fn on_park(policy: IoScheduling) {
    if policy == IoScheduling::Auto
        && let Err(e) = follow_backlog(aver_server::cpu::process_backlog() > 0)
    {
        warn_once(policy, &e);
    }
}

/// The async runtime that serves connections: `io_threads` workers named
/// `aver-io` under `policy`.
pub fn runtime(
    io_threads: usize,
    policy: IoScheduling,
) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .thread_name("aver-io")
        .on_thread_start(move || apply_or_warn(policy))
        .on_thread_park(move || on_park(policy))
        .enable_all()
        .build()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, unsafe_code)]
    use super::*;

    use std::time::{Duration, Instant};

    use aver_server::cpu::{CpuLimits, CpuPool};

    /// The policy of thread `tid` of this process (field 41 of its `stat`).
    fn policy_of(tid: i32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap(); // ok: test
        let after_comm = &stat[stat.rfind(')').unwrap() + 1..]; // ok: test
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        fields[41 - 3].parse().unwrap() // ok: test
    }

    /// Waits (up to 10 s) for thread `tid` to be under `policy`.
    fn wait_for_policy(tid: i32, policy: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if policy_of(tid) == policy {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn batch_puts_the_calling_thread_alone_under_sched_batch() {
        let before = current_policy();
        let (inside, outside) = std::thread::scope(|s| {
            let inside = s
                .spawn(|| {
                    apply(IoScheduling::Batch).unwrap(); // ok: test
                    current_policy()
                })
                .join()
                .unwrap(); // ok: test
            (inside, s.spawn(current_policy).join().unwrap()) // ok: test
        });
        assert_eq!(inside, libc::SCHED_BATCH);
        // Neither the caller nor a thread started afterwards is touched.
        assert_eq!(current_policy(), before);
        assert_eq!(outside, before);
    }

    #[test]
    fn normal_leaves_the_policy_alone() {
        let before = current_policy();
        let policy = std::thread::spawn(|| {
            apply(IoScheduling::Normal).unwrap(); // ok: test
            follow_backlog(true).unwrap(); // ok: test
            current_policy()
        })
        .join()
        .unwrap(); // ok: test
        assert_eq!(policy, before);
    }

    #[test]
    fn auto_follows_the_backlog_both_ways() {
        let seen = std::thread::spawn(|| {
            apply(IoScheduling::Auto).unwrap(); // ok: test
            let mut seen = vec![current_policy()];
            for backlogged in [true, true, false, false, true, false] {
                follow_backlog(backlogged).unwrap(); // ok: test
                seen.push(current_policy());
            }
            seen
        })
        .join()
        .unwrap(); // ok: test
        let (o, b) = (libc::SCHED_OTHER, libc::SCHED_BATCH);
        assert_eq!(seen, [o, b, b, o, o, b, o]);
    }

    #[test]
    fn auto_leaves_a_thread_started_under_another_policy_alone() {
        let policy = std::thread::spawn(|| {
            // As if the operator had started the service under `chrt -b`.
            set_policy(libc::SCHED_BATCH).unwrap(); // ok: test
            apply(IoScheduling::Auto).unwrap(); // ok: test
            follow_backlog(false).unwrap(); // ok: test
            current_policy()
        })
        .join()
        .unwrap(); // ok: test
        assert_eq!(policy, libc::SCHED_BATCH);
    }

    /// The runtime `aver serve` builds, with a real CPU pool: its worker
    /// goes idle under SCHED_BATCH while jobs are queued for the pool, and
    /// under SCHED_OTHER once the backlog is gone.
    #[test]
    fn the_runtime_worker_follows_a_real_pool_backlog() {
        let rt = runtime(1, IoScheduling::Auto).unwrap(); // ok: test
        let pool = CpuPool::new(CpuLimits {
            max_concurrent: 1,
            ..CpuLimits::default()
        });
        // SAFETY: gettid takes nothing and only returns the caller's id.
        let tid = || unsafe { libc::gettid() };
        let worker = rt.block_on(async { tokio::spawn(async move { tid() }).await.unwrap() }); // ok: test
        assert!(wait_for_policy(worker, libc::SCHED_OTHER), "idle worker");

        // One job holds the pool's only thread; three more queue behind it.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = pool.clone();
        let mut jobs =
            vec![rt.spawn(async move { first.run(move |_| held.recv().unwrap()).await })]; // ok: test
        for _ in 0..3 {
            let pool = pool.clone();
            jobs.push(rt.spawn(async move { pool.run(|_| ()).await }));
        }
        assert!(
            wait_for_policy(worker, libc::SCHED_BATCH),
            "the worker went idle with {} job(s) queued but is not under SCHED_BATCH",
            pool.queued()
        );

        release.send(()).unwrap(); // ok: test
        for job in jobs {
            rt.block_on(job).unwrap().unwrap(); // ok: test
        }
        assert!(
            wait_for_policy(worker, libc::SCHED_OTHER),
            "the backlog is gone but the worker stays under SCHED_BATCH"
        );
    }
}
