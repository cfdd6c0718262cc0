//! Where CPU-heavy work runs: evidence verification, policy evaluation and
//! token signing never run on the async I/O workers.
//!
//! [`CpuPool::run`] hands a closure to tokio's blocking pool, but admits at
//! most [`CpuLimits::max_concurrent`] closures at once: a burst of expensive
//! requests queues here (for at most `queue_timeout`, then `503 ServerBusy`
//! with `Retry-After`) instead of occupying every thread, so `/health`,
//! metadata and cheap requests keep being answered.
//!
//! Every closure receives a [`Cancel`] flag. It is raised when the request's
//! future is dropped — the client disconnected, or the server is shutting
//! down — so evaluation that checks it (the policy engine does, every few
//! thousand steps) stops consuming CPU for nobody. Each job also gets a
//! deadline (`job_deadline`) that the policy engine enforces.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Bounds on CPU-heavy work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuLimits {
    /// Most jobs running at once (default: the number of CPUs).
    pub max_concurrent: usize,
    /// Longest a job waits for a slot before the request gets 503.
    pub queue_timeout: Duration,
    /// Longest one job may run; the policy engine stops at this deadline.
    pub job_deadline: Duration,
}

impl Default for CpuLimits {
    fn default() -> Self {
        CpuLimits {
            max_concurrent: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            queue_timeout: Duration::from_secs(10),
            job_deadline: Duration::from_secs(5),
        }
    }
}

/// A job's cancellation flag and deadline.
#[derive(Debug, Clone)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Instant,
}

impl Cancel {
    /// A flag nobody raises, with a deadline `within` from now (offline
    /// tools, tests).
    pub fn never(within: Duration) -> Self {
        Cancel {
            flag: Arc::new(AtomicBool::new(false)),
            deadline: Instant::now() + within,
        }
    }

    /// The shared flag, for code that polls it.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The default policy budget, stopped by this job's deadline and flag.
    pub fn budget(&self) -> aver_policy::Budget {
        aver_policy::Budget::default()
            .with_deadline(self.deadline)
            .with_cancel_flag(self.flag.clone())
    }
}

/// Raises the flag when the request future is dropped before the job ended.
struct RaiseOnDrop(Option<Arc<AtomicBool>>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// The bounded pool for CPU-heavy work.
#[derive(Debug, Clone)]
pub struct CpuPool {
    slots: Arc<Semaphore>,
    limits: CpuLimits,
    /// Jobs that ended after their request was abandoned.
    abandoned: Arc<std::sync::atomic::AtomicU64>,
}

impl CpuPool {
    pub fn new(limits: CpuLimits) -> Self {
        CpuPool {
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            abandoned: Arc::default(),
        }
    }

    pub fn limits(&self) -> &CpuLimits {
        &self.limits
    }

    /// Jobs that could start right now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// Jobs running right now.
    pub fn running(&self) -> usize {
        self.limits
            .max_concurrent
            .max(1)
            .saturating_sub(self.slots.available_permits())
    }

    /// Jobs so far that ended after their request had been abandoned (the
    /// client gone): they saw the cancellation flag.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Runs `job` on the blocking pool once a slot is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Cancel) -> T + Send + 'static,
    {
        let permit = match tokio::time::timeout(
            self.limits.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(ApiError::internal("CPU pool closed", "semaphore closed")),
            Err(_) => {
                metrics::counter!("aver_load_shed_total").increment(1);
                return Err(busy());
            }
        };
        let cancel = Cancel {
            flag: Arc::new(AtomicBool::new(false)),
            deadline: Instant::now() + self.limits.job_deadline,
        };
        let mut raise = RaiseOnDrop(Some(cancel.flag.clone()));
        let abandoned = self.abandoned.clone();
        // The job's log lines carry the request's span (its request id).
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            // The slot is held until the job itself ends, even when the
            // request was abandoned: the CPU is busy until then.
            let _permit = permit;
            let out = job(&cancel);
            if cancel.is_cancelled() {
                abandoned.fetch_add(1, Ordering::Relaxed);
                tracing::info!("a verification job ended after its client left");
            }
            out
        })
        .await;
        raise.0 = None;
        result.map_err(|e| ApiError::internal("a verification task failed", e))
    }
}

/// 503 with `Retry-After`: every CPU slot stayed busy for the queue time.
pub fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServerBusy",
        "the service is at its limit of concurrent attestations; retry shortly",
    )
    .with_retry_after(1)
}
