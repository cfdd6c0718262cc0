//! How the kernel schedules the threads that serve connections.
//!
//! Why this exists: every request that arrives, and every attestation the
//! CPU pool finishes, wakes an async I/O thread. Under Linux's default
//! policy a woken thread preempts whatever runs on its core, so on a busy
//! core the I/O thread interrupts a pool thread in the middle of its ECDSA
//! work for each event: 3.6 context switches per attestation on a saturated
//! core, which with the reschedule interrupts and the caches refilled after
//! them cost about a seventh of the server's CPU (BENCHMARKS.md, "Who
//! preempts whom").
//!
//! Under `SCHED_BATCH` (`--io-scheduling batch`) a woken thread does not
//! preempt a running one: the I/O thread runs when a core is free (at light
//! load, at once) or when the running thread's time slice ends, and then
//! reads, hands over and answers everything that arrived meanwhile in one
//! go: 20–30% more attestations on a dedicated core. It is not the default
//! because the same rule holds against every other process: on a core
//! shared with other busy work, even a `nice 19` one, the I/O thread waits
//! for the end of their time slices, and a measured run lost both latency
//! (p50 0.9 → 3.8 ms at half load) and throughput (−20%) to one `nice 19`
//! busy loop. So `batch` is for cores Aver has to itself; the default,
//! [`IoScheduling::Normal`], leaves the kernel's default policy.
//!
//! The policy applies to each thread of the async runtime as it starts
//! (tokio's workers and its blocking threads, named `aver-io`), never to
//! the CPU pool's threads (`aver-cpu-N`). Elsewhere than on Linux it does
//! nothing.

use std::sync::atomic::{AtomicBool, Ordering};

/// The kernel scheduling policy of the I/O threads (`--io-scheduling`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoScheduling {
    /// The policy the process was started with (normally `SCHED_OTHER`):
    /// a woken I/O thread may preempt a verification.
    #[default]
    Normal,
    /// `SCHED_BATCH`: an I/O thread that wakes up does not preempt a
    /// verification in progress, nor anything else (fewer context
    /// switches and more throughput on a dedicated core; longer waits on a
    /// core shared with other busy processes).
    Batch,
}

/// Puts the calling thread under `policy`. `Normal` changes nothing.
///
/// The one `unsafe` outside tests in Aver's own code: a single system call
/// with no pointer kept and no memory written, rather than a dependency
/// that would wrap the same call.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn apply(policy: IoScheduling) -> std::io::Result<()> {
    let linux_policy = match policy {
        IoScheduling::Batch => libc::SCHED_BATCH,
        IoScheduling::Normal => return Ok(()),
    };
    // SCHED_BATCH takes static priority 0; no privilege is needed for it.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, which
    // only reads it; pid 0 names the calling thread, so no other thread's
    // state is touched.
    let rc = unsafe { libc::sched_setscheduler(0, linux_policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Puts the calling thread under `policy`: nothing to do off Linux.
#[cfg(not(target_os = "linux"))]
pub fn apply(_policy: IoScheduling) -> std::io::Result<()> {
    Ok(())
}

/// [`apply`] for a runtime's `on_thread_start`: a refusal (a sandbox that
/// forbids `sched_setscheduler`, say) is not fatal, the threads keep the
/// default policy, and it is logged once rather than per thread.
pub fn apply_or_warn(policy: IoScheduling) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = apply(policy)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "could not put the I/O threads under {policy:?} scheduling ({e}); they keep the default policy"
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used, unsafe_code)]
    use super::*;

    fn policy_of_this_thread() -> i32 {
        // SAFETY: no arguments besides pid 0 (the calling thread).
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn batch_puts_the_calling_thread_alone_under_sched_batch() {
        let before = policy_of_this_thread();
        let (inside, outside) = std::thread::scope(|s| {
            let inside = s
                .spawn(|| {
                    apply(IoScheduling::Batch).unwrap(); // ok: test
                    policy_of_this_thread()
                })
                .join()
                .unwrap(); // ok: test
            (inside, s.spawn(policy_of_this_thread).join().unwrap()) // ok: test
        });
        assert_eq!(inside, libc::SCHED_BATCH);
        // Neither the caller nor a thread started afterwards is touched.
        assert_eq!(policy_of_this_thread(), before);
        assert_eq!(outside, before);
    }

    #[test]
    fn normal_leaves_the_policy_alone() {
        let before = policy_of_this_thread();
        let policy = std::thread::spawn(|| {
            apply(IoScheduling::Normal).unwrap(); // ok: test
            policy_of_this_thread()
        })
        .join()
        .unwrap(); // ok: test
        assert_eq!(policy, before);
    }
}
