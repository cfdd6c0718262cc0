//! Where CPU-heavy work runs: evidence verification, policy evaluation and
//! token signing never run on the async I/O workers.
//!
//! [`CpuPool`] owns [`CpuLimits::max_concurrent`] threads (`aver-cpu-N`)
//! that take jobs from one bounded queue. A burst of expensive requests
//! waits there (for at most `queue_timeout`, then `503 ServerBusy` with
//! `Retry-After`; a full queue answers the same at once) instead of
//! occupying every thread, so `/health`, metadata and cheap requests keep
//! being answered.
//!
//! Why its own threads rather than tokio's blocking pool behind a
//! semaphore (what Aver did first): that design woke a parked thread for
//! every job and woke another request task for every released slot, about
//! 3.4 context switches per attestation, ~12% of the server's CPU under
//! load in a `perf` profile. Here a pool thread that finishes a job takes
//! the next queued one without sleeping, and a queued request needs no
//! slot hand-over: under load the threads run back to back
//! (BENCHMARKS.md, "Handing jobs to the CPU pool").
//!
//! Every closure receives a [`Cancel`] flag. It is raised when the request's
//! future is dropped — the client disconnected, or the server is shutting
//! down — so a queued job is skipped and a running one that checks it (the
//! policy engine does, every few thousand steps) stops consuming CPU for
//! nobody. Each job also gets a deadline (`job_deadline`, counted from when
//! it starts) that the policy engine enforces.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::error::ApiError;

/// Bounds on CPU-heavy work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuLimits {
    /// Most jobs running at once, i.e. the pool's threads (default: the
    /// number of CPUs).
    pub max_concurrent: usize,
    /// Most jobs waiting for a thread; one more is refused at once with
    /// 503 (default: 64 per thread).
    pub max_queued: usize,
    /// Longest a job waits for a thread before the request gets 503.
    pub queue_timeout: Duration,
    /// Longest one job may run; the policy engine stops at this deadline.
    pub job_deadline: Duration,
}

/// Jobs waiting for a pool thread, over every pool of the process (a
/// process serves with one pool; tests may start several).
static BACKLOG: AtomicUsize = AtomicUsize::new(0);

/// Jobs waiting for a pool thread in this process right now, counting
/// queued jobs that were withdrawn or abandoned until a thread skips them.
///
/// Why process-wide rather than per pool: it is read by the async
/// runtime's threads just before they go idle (`aver serve
/// --io-scheduling auto`), and that runtime exists before any pool does.
/// While it is above zero, answers wait for the pool anyway, so an I/O
/// thread need not preempt a verification to be woken promptly.
pub fn process_backlog() -> usize {
    BACKLOG.load(Ordering::Relaxed)
}

/// How long a pool thread runs jobs back to back, with more queued, before
/// it yields its core between two jobs.
///
/// Why: while jobs are queued, `aver serve --io-scheduling auto` (the
/// default) has the I/O threads stop preempting verifications, so they
/// run when a core is free or a time slice ends. A pool thread with a
/// backlog never frees its core, and a time slice can be several
/// milliseconds: answers that were ready, and requests that arrived,
/// waited for it (p99 at half load 3.1 → 5.1–5.9 ms for RS256 on one
/// core). Yielding after 1 ms bounds that wait by 1 ms plus one job, and
/// between jobs, where no verification's working set is lost; it costs
/// one system call per millisecond of work. BENCHMARKS.md, "I/O threads
/// that follow the backlog".
pub const YIELD_AFTER: Duration = Duration::from_millis(1);

/// Queued jobs allowed per pool thread by default.
pub const QUEUED_PER_THREAD: usize = 64;

impl Default for CpuLimits {
    fn default() -> Self {
        let max_concurrent = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        CpuLimits {
            max_concurrent,
            max_queued: max_concurrent.saturating_mul(QUEUED_PER_THREAD),
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

/// Where a queued job stands: exactly one of the pool thread (to run it)
/// and the waiting request (to give up on it) moves it out of `QUEUED`.
const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const WITHDRAWN: u8 = 2;

/// A queued job: the closure (which runs the work and sends its result)
/// and the state the request and the pool thread race on.
struct Job {
    state: Arc<AtomicU8>,
    flag: Arc<AtomicBool>,
    work: Box<dyn FnOnce(Cancel) + Send>,
}

/// What the pool threads and the handles share.
struct Shared {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    closed: AtomicBool,
    running: AtomicUsize,
    abandoned: AtomicU64,
    /// Times a pool thread gave up its core between jobs ([`YIELD_AFTER`]).
    yields: AtomicU64,
    /// Jobs in `queue`, readable without its lock.
    waiting: AtomicUsize,
    limits: CpuLimits,
    /// Attestations in flight per provider, for providers with a cap
    /// (an entry goes when its count returns to 0).
    in_flight: Mutex<HashMap<String, usize>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        // A job never runs under the lock, so a poisoned queue is intact.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One pool thread: take jobs until the pool is dropped.
    fn work(&self) {
        // When this thread last let others have its core: it waited for a
        // job, or it yielded.
        let mut rested = Instant::now();
        loop {
            let job = {
                let mut queue = self.lock();
                loop {
                    if let Some(job) = queue.pop_front() {
                        BACKLOG.fetch_sub(1, Ordering::Relaxed);
                        self.waiting.fetch_sub(1, Ordering::Relaxed);
                        break job;
                    }
                    if self.closed.load(Ordering::Acquire) {
                        return;
                    }
                    queue = self
                        .ready
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                    rested = Instant::now();
                }
            };
            // Withdrawn (timed out in the queue) or abandoned (the client
            // left) before a thread was free: nobody waits for it.
            if job
                .state
                .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
                || job.flag.load(Ordering::Relaxed)
            {
                continue;
            }
            self.running.fetch_add(1, Ordering::Relaxed);
            let cancel = Cancel {
                flag: job.flag,
                deadline: Instant::now() + self.limits.job_deadline,
            };
            // A panicking job must not take the thread with it: its
            // request sees the result channel closed (500).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.work)(cancel)));
            // With more jobs queued this thread would run on without a
            // pause; after YIELD_AFTER it lets a waiting I/O thread in
            // between two jobs instead (without a queue it will wait for
            // the next job anyway).
            if self.waiting.load(Ordering::Relaxed) > 0 && rested.elapsed() >= YIELD_AFTER {
                self.yields.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
                rested = Instant::now();
            }
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Stops the pool threads when the last [`CpuPool`] handle goes (they
/// finish the jobs already queued first).
struct Threads(Arc<Shared>);

impl Drop for Threads {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        let _queue = self.0.lock();
        self.0.ready.notify_all();
    }
}

/// The bounded pool for CPU-heavy work.
#[derive(Clone)]
pub struct CpuPool {
    shared: Arc<Shared>,
    _threads: Arc<Threads>,
}

impl std::fmt::Debug for CpuPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuPool")
            .field("limits", &self.shared.limits)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl CpuPool {
    /// Starts `limits.max_concurrent` pool threads.
    pub fn new(limits: CpuLimits) -> Self {
        let limits = CpuLimits {
            max_concurrent: limits.max_concurrent.max(1),
            max_queued: limits.max_queued.max(1),
            ..limits
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            closed: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            abandoned: AtomicU64::new(0),
            yields: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            limits,
            in_flight: Mutex::new(HashMap::new()),
        });
        for n in 0..shared.limits.max_concurrent {
            let worker = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("aver-cpu-{n}"))
                .spawn(move || worker.work());
            if let Err(e) = spawned {
                // Fewer threads only means less parallelism; with none at
                // all every job waits out its queue time and gets 503.
                tracing::error!("could not start CPU pool thread {n}: {e}");
            }
        }
        CpuPool {
            _threads: Arc::new(Threads(shared.clone())),
            shared,
        }
    }

    pub fn limits(&self) -> &CpuLimits {
        &self.shared.limits
    }

    /// Jobs that could start right now.
    pub fn available(&self) -> usize {
        self.shared
            .limits
            .max_concurrent
            .saturating_sub(self.running())
    }

    /// Jobs running right now.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a thread right now.
    pub fn queued(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// Jobs so far that ended after their request had been abandoned (the
    /// client gone): they saw the cancellation flag.
    pub fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::Relaxed)
    }

    /// Admits one attestation of `provider` when it has fewer than `cap`
    /// in flight (queued or running, from admission until the returned
    /// slot is dropped); no cap admits all. Beyond the cap: 503
    /// `ServerBusy` with `Retry-After`, so one tenant's burst cannot take
    /// every thread and the whole queue from the others.
    pub fn provider_slot(
        &self,
        provider: &str,
        cap: Option<usize>,
    ) -> Result<ProviderSlot, ApiError> {
        let Some(cap) = cap else {
            return Ok(ProviderSlot(None));
        };
        let mut in_flight = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = in_flight.entry(provider.to_string()).or_insert(0);
        if *count >= cap {
            drop(in_flight);
            metrics::counter!("aver_load_shed_total").increment(1);
            metrics::counter!("aver_provider_load_shed_total", "provider" => provider.to_string())
                .increment(1);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServerBusy",
                format!(
                    "provider {provider} is at its limit of {cap} attestation(s) in flight; retry shortly"
                ),
            )
            .with_retry_after(1));
        }
        *count += 1;
        Ok(ProviderSlot(Some((
            self.shared.clone(),
            provider.to_string(),
        ))))
    }

    /// Attestations of `provider` in flight now (counted only while it has
    /// a cap).
    pub fn in_flight(&self, provider: &str) -> usize {
        self.shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(provider)
            .copied()
            .unwrap_or(0)
    }

    /// Runs `job` on a pool thread once one is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Cancel) -> T + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let flag = Arc::new(AtomicBool::new(false));
        let mut raise = RaiseOnDrop(Some(flag.clone()));
        let shared = self.shared.clone();
        // The job's log lines carry the request's span (its request id).
        let span = tracing::Span::current();
        let work = Box::new(move |cancel: Cancel| {
            let _entered = span.enter();
            let out = job(&cancel);
            if cancel.is_cancelled() {
                shared.abandoned.fetch_add(1, Ordering::Relaxed);
                tracing::info!("a verification job ended after its client left");
            }
            let _ = tx.send(out);
        });
        {
            let mut queue = self.shared.lock();
            if queue.len() >= self.shared.limits.max_queued {
                drop(queue);
                metrics::counter!("aver_load_shed_total").increment(1);
                raise.0 = None;
                return Err(busy());
            }
            BACKLOG.fetch_add(1, Ordering::Relaxed);
            self.shared.waiting.fetch_add(1, Ordering::Relaxed);
            queue.push_back(Job {
                state: state.clone(),
                flag,
                work,
            });
            self.shared.ready.notify_one();
        }
        let result = match tokio::time::timeout(self.shared.limits.queue_timeout, &mut rx).await {
            Ok(result) => result,
            // Still queued after the queue time: withdraw it. If a thread
            // took it meanwhile, its result is coming (bounded by the job
            // deadline).
            Err(_) => {
                if state
                    .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    metrics::counter!("aver_load_shed_total").increment(1);
                    raise.0 = None;
                    return Err(busy());
                }
                rx.await
            }
        };
        raise.0 = None;
        result.map_err(|_| {
            ApiError::internal(
                "a verification task failed",
                "the job ended without a result",
            )
        })
    }
}

/// One admitted attestation of a provider with a cap; its count drops when
/// this does.
pub struct ProviderSlot(Option<(Arc<Shared>, String)>);

impl Drop for ProviderSlot {
    fn drop(&mut self) {
        if let Some((shared, provider)) = self.0.take() {
            let mut in_flight = shared
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = in_flight.get_mut(&provider) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    in_flight.remove(&provider);
                }
            }
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pool(threads: usize, queued: usize, queue_timeout: Duration) -> CpuPool {
        CpuPool::new(CpuLimits {
            max_concurrent: threads,
            max_queued: queued,
            queue_timeout,
            job_deadline: Duration::from_secs(5),
        })
    }

    /// A job that holds its thread until `release` is sent to.
    fn blocker(
        pool: &CpuPool,
    ) -> (
        mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), ApiError>>,
    ) {
        let (release, wait) = mpsc::channel::<()>();
        let pool = pool.clone();
        let handle = tokio::spawn(async move {
            pool.run(move |_| {
                let _ = wait.recv();
            })
            .await
        });
        (release, handle)
    }

    async fn until(mut what: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("condition not reached within 5 s");
    }

    #[tokio::test]
    async fn jobs_run_on_the_pool_threads_and_return_their_results() {
        let pool = pool(2, 32, Duration::from_secs(10));
        let name = pool
            .run(|_| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("aver-cpu-"));
        let sums: Vec<_> = (0..20u64)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(move |_| (0..=i).sum::<u64>()).await })
            })
            .collect();
        for (i, sum) in sums.into_iter().enumerate() {
            let i = i as u64;
            assert_eq!(sum.await.unwrap().unwrap(), i * (i + 1) / 2);
        }
        // A thread counts itself idle just after sending its result.
        until(|| pool.running() == 0).await;
        assert_eq!(pool.queued(), 0);
    }

    #[tokio::test]
    async fn a_thread_with_a_backlog_yields_between_jobs_after_a_millisecond() {
        let pool = pool(1, 32, Duration::from_secs(10));
        let (release, held) = blocker(&pool);
        until(|| pool.running() == 1).await;
        // Six jobs of 0.4 ms queue behind the blocker: the thread runs them
        // back to back, about 2.4 ms without waiting for work.
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.run(|_| std::thread::sleep(Duration::from_micros(400)))
                        .await
                })
            })
            .collect();
        until(|| pool.queued() == 6).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        let yields = pool.shared.yields.load(Ordering::Relaxed);
        assert!((2..=6).contains(&yields), "{yields} yields");
        assert_eq!(pool.queued(), 0);
    }

    #[tokio::test]
    async fn a_thread_without_a_backlog_never_yields() {
        let pool = pool(1, 32, Duration::from_secs(10));
        // Each job is longer than YIELD_AFTER, but none waits behind it.
        for _ in 0..4 {
            pool.run(|_| std::thread::sleep(Duration::from_millis(2)))
                .await
                .unwrap();
            // The thread decides whether to yield before it counts itself
            // idle.
            until(|| pool.running() == 0).await;
        }
        assert_eq!(pool.shared.yields.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_job_that_waits_out_the_queue_time_gets_503_and_never_runs() {
        let pool = pool(1, 8, Duration::from_millis(100));
        let (release, held) = blocker(&pool);
        until(|| pool.running() == 1).await;
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let e = pool
            .run(move |_| flag.store(true, Ordering::SeqCst))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "ServerBusy")
        );
        assert_eq!(e.retry_after, Some(1));
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        // The withdrawn job was skipped, and the pool still works.
        assert_eq!(pool.run(|_| 7).await.unwrap(), 7);
        assert!(!ran.load(Ordering::SeqCst), "a withdrawn job ran");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let pool = pool(1, 2, Duration::from_secs(30));
        let (release, held) = blocker(&pool);
        until(|| pool.running() == 1).await;
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(move |_| i).await })
            })
            .collect();
        until(|| pool.queued() == 2).await;
        let started = Instant::now();
        let e = pool.run(|_| 99).await.unwrap_err();
        assert_eq!(e.code, "ServerBusy");
        assert!(started.elapsed() < Duration::from_secs(30), "it waited");
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap().unwrap(), i);
        }
    }

    #[tokio::test]
    async fn an_abandoned_queued_job_is_skipped_and_a_running_one_sees_the_flag() {
        let pool = pool(1, 8, Duration::from_secs(30));
        let (release, held) = blocker(&pool);
        until(|| pool.running() == 1).await;
        // Queued behind the blocker, then its request goes away.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move |_| flag.store(true, Ordering::SeqCst)).await })
        };
        until(|| pool.queued() == 1).await;
        queued.abort();
        let _ = queued.await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(pool.run(|_| ()).await.ok(), Some(()));
        assert!(!ran.load(Ordering::SeqCst), "an abandoned job ran");

        // A running job whose request goes away sees its flag raised.
        let started = Arc::new(AtomicBool::new(false));
        let running = {
            let (pool, started) = (pool.clone(), started.clone());
            tokio::spawn(async move {
                pool.run(move |cancel| {
                    started.store(true, Ordering::SeqCst);
                    while !cancel.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
                .await
            })
        };
        until(|| started.load(Ordering::SeqCst)).await;
        running.abort();
        until(|| pool.abandoned() == 1).await;
        until(|| pool.running() == 0).await;
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_500_and_the_thread_survives() {
        let pool = pool(1, 8, Duration::from_secs(10));
        let e = pool
            .run(|_| -> u8 { panic!("a bug in a job") })
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(pool.run(|_| 5).await.unwrap(), 5);
    }

    #[test]
    fn a_provider_over_its_cap_gets_503_and_others_are_not_counted() {
        let pool = pool(1, 8, Duration::from_secs(10));
        let a1 = pool.provider_slot("a", Some(2)).unwrap();
        let a2 = pool.provider_slot("a", Some(2)).unwrap();
        let e = pool.provider_slot("a", Some(2)).err().unwrap();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "ServerBusy")
        );
        assert!(
            e.message.contains("provider a is at its limit of 2"),
            "{}",
            e.message
        );
        assert_eq!(e.retry_after, Some(1));
        // Another provider, capped or not, is unaffected.
        let _b = pool.provider_slot("b", Some(1)).unwrap();
        let _c: Vec<_> = (0..5)
            .map(|_| pool.provider_slot("c", None).unwrap())
            .collect();
        assert_eq!(pool.in_flight("c"), 0, "uncapped providers are not counted");
        assert_eq!(pool.in_flight("a"), 2);
        drop(a1);
        let a3 = pool.provider_slot("a", Some(2)).unwrap();
        drop((a2, a3));
        assert_eq!(pool.in_flight("a"), 0);
        assert!(
            !pool.shared.in_flight.lock().unwrap().contains_key("a"),
            "an idle provider's entry stays"
        );
    }

    #[test]
    fn the_threads_end_with_the_last_handle() {
        let pool = pool(2, 8, Duration::from_secs(10));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Each pool thread holds the shared state until it ends.
        let shared = Arc::downgrade(&pool.shared);
        let other = pool.clone();
        drop(pool);
        assert_eq!(
            rt.block_on(other.run(|_| 3)).unwrap(),
            3,
            "a clone keeps the pool"
        );
        drop(other);
        for _ in 0..1000 {
            if shared.strong_count() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the pool threads outlived the pool");
    }
}
