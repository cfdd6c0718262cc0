//! The evaluation budget: how much memory, how many claims and how much work
//! one evaluation may use, plus an optional deadline and cancellation flag.
//!
//! Policies are untrusted input (draft policies are unauthenticated; stored
//! policies run on every attestation), and a few lines of policy can ask for
//! exponential memory or quadratic work. Every place in the evaluator that
//! allocates or loops charges the [`Meter`] **before** doing so; when a charge
//! does not fit, evaluation stops with an [`EvalErrorKind::Budget`] error.
//! See the crate documentation ("Limits") for the defaults and their reasoning.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::EvalErrorKind;

/// Limits for one evaluation ([`crate::Policy::evaluate_with_budget`]).
///
/// A `Budget` is only a description: every evaluation starts counting from
/// zero, so one `Budget` can be shared by any number of evaluations (clone it
/// to give each its own deadline or cancellation flag).
///
/// ```
/// use std::sync::{Arc, atomic::AtomicBool};
/// use std::time::Duration;
/// use aver_policy::Budget;
///
/// let cancel = Arc::new(AtomicBool::new(false));
/// let budget = Budget::default()
///     .with_timeout(Duration::from_millis(500))
///     .with_cancel_flag(cancel.clone());
/// // ... hand `cancel` to whatever notices that the client went away.
/// # let _ = budget;
/// ```
#[derive(Clone, Debug)]
pub struct Budget {
    /// Most bytes of values the evaluation may hold at once: strings and JSON
    /// it creates, JSON it parses, JMESPath intermediate and output values,
    /// claims it creates or copies (including their copies in the trace), and
    /// its own bookkeeping (value sets, bindings, trace entries). The incoming
    /// claims are borrowed, not copied, and are not counted.
    pub max_value_bytes: u64,
    /// Most claims the evaluation may hold: incoming (evidence and added),
    /// issued and property claims, copies made by `issue(claim=c)` included.
    pub max_claims: usize,
    /// Most units of work. A step is one rule run, one claim compared with
    /// one value, one value produced, one JMESPath node evaluated, or a
    /// proportional share of a byte-heavy operation (copying, parsing,
    /// serializing); measured at 1–13 ns of CPU each on a 2.3 GHz cloud vCPU.
    pub max_steps: u64,
    /// Evaluation fails with [`BudgetResource::Deadline`] once this instant
    /// has passed. Checked every few thousand steps, never per step.
    pub deadline: Option<Instant>,
    /// Evaluation fails with [`BudgetResource::Cancelled`] once this flag is
    /// `true` (e.g. set by a server when the client disconnects). Checked
    /// at the same points as the deadline.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Budget {
    /// Default for [`Budget::max_value_bytes`]: 64 MiB (real policies
    /// peak under 1 MB; see the crate documentation, "Limits").
    pub const DEFAULT_MAX_VALUE_BYTES: u64 = 64 * 1024 * 1024;
    /// Default for [`Budget::max_claims`]: 50 000 (real evaluations hold
    /// about a hundred).
    pub const DEFAULT_MAX_CLAIMS: usize = 50_000;
    /// Default for [`Budget::max_steps`]: 30 million, about 0.4 s of CPU at
    /// most (real policies use under 0.6% of it).
    pub const DEFAULT_MAX_STEPS: u64 = 30_000_000;

    /// This budget with a deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Budget {
        self.deadline = Some(deadline);
        self
    }

    /// This budget with a deadline `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Budget {
        // An absurd timeout (overflowing Instant) means no deadline.
        match Instant::now().checked_add(timeout) {
            Some(d) => self.with_deadline(d),
            None => self,
        }
    }

    /// This budget with a cancellation flag.
    pub fn with_cancel_flag(mut self, cancel: Arc<AtomicBool>) -> Budget {
        self.cancel = Some(cancel);
        self
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max_value_bytes: Budget::DEFAULT_MAX_VALUE_BYTES,
            max_claims: Budget::DEFAULT_MAX_CLAIMS,
            max_steps: Budget::DEFAULT_MAX_STEPS,
            deadline: None,
            cancel: None,
        }
    }
}

/// Which part of the [`Budget`] ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BudgetResource {
    /// [`Budget::max_value_bytes`].
    ValueBytes,
    /// [`Budget::max_claims`].
    Claims,
    /// [`Budget::max_steps`].
    Steps,
    /// [`Budget::deadline`].
    Deadline,
    /// [`Budget::cancel`].
    Cancelled,
}

impl BudgetResource {
    /// The stable error code the HTTP service returns for this resource.
    pub fn code(self) -> &'static str {
        match self {
            BudgetResource::ValueBytes => "PolicyMemoryLimitExceeded",
            BudgetResource::Claims => "PolicyClaimLimitExceeded",
            BudgetResource::Steps => "PolicyStepLimitExceeded",
            BudgetResource::Deadline => "PolicyEvaluationTimeout",
            BudgetResource::Cancelled => "PolicyEvaluationCancelled",
        }
    }
}

impl fmt::Display for BudgetResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetResource::ValueBytes => "value bytes",
            BudgetResource::Claims => "claims",
            BudgetResource::Steps => "steps",
            BudgetResource::Deadline => "deadline",
            BudgetResource::Cancelled => "cancellation",
        })
    }
}

/// How much of a [`Budget`] an evaluation used (or had used when it failed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BudgetUsage {
    /// Peak of the value bytes held at once (never above the budget's maximum).
    pub value_bytes: u64,
    /// Peak number of claims held (incoming, added, issued, properties).
    pub claims: usize,
    /// Steps charged (never above the budget's maximum).
    pub steps: u64,
}

impl BudgetUsage {
    /// The largest fraction of the three counted limits that was used
    /// (0.0 = nothing, 1.0 = a limit was reached).
    pub fn max_fraction(&self, budget: &Budget) -> f64 {
        fn frac(used: f64, max: f64) -> f64 {
            if max <= 0.0 { 1.0 } else { used / max }
        }
        frac(self.value_bytes as f64, budget.max_value_bytes as f64)
            .max(frac(self.claims as f64, budget.max_claims as f64))
            .max(frac(self.steps as f64, budget.max_steps as f64))
    }
}

/// How many steps may pass between two looks at the clock and the
/// cancellation flag. At ~10 ns per step this is ~0.15 ms of work, and one
/// `Instant::now()` (~25 ns) per 16 384 steps costs nothing measurable.
const INTERRUPT_CHECK_INTERVAL: u64 = 16_384;

/// Steps charged per this many bytes copied, created or serialized.
pub(crate) const BYTES_PER_STEP: u64 = 16;
/// Steps charged per this many bytes compared (`memcmp` is far faster than
/// building bytes).
pub(crate) const COMPARE_BYTES_PER_STEP: u64 = 128;

/// The running counters of one evaluation. Charging is a couple of integer
/// additions and one comparison; the slow path (limit reached, or time to look
/// at the clock and the cancellation flag) is out of line.
pub(crate) struct Meter<'b> {
    budget: &'b Budget,
    steps: u64,
    /// `steps` value above which [`Meter::step`] takes the slow path.
    check_at: u64,
    live: u64,
    /// Bytes held until the evaluation ends, whatever `release_to` says:
    /// the JSON texts the JMESPath cache keeps parsed
    /// ([`crate::jmes::Caches`]). Counted with `live` against the budget.
    held: u64,
    peak: u64,
    claims: usize,
    /// The policy's compiled JMESPath queries and the JSON texts parsed in
    /// this evaluation. Kept here because every function call already
    /// receives the meter, and because what the cache holds is charged to it.
    pub(crate) jmes: crate::jmes::Caches,
}

type R<T> = Result<T, EvalErrorKind>;

impl<'b> Meter<'b> {
    pub(crate) fn new(budget: &'b Budget) -> Meter<'b> {
        let mut m = Meter {
            budget,
            steps: 0,
            check_at: 0,
            live: 0,
            held: 0,
            peak: 0,
            claims: 0,
            jmes: crate::jmes::Caches::default(),
        };
        m.check_at = m.next_check_at();
        m
    }

    fn has_interrupts(&self) -> bool {
        self.budget.deadline.is_some() || self.budget.cancel.is_some()
    }

    fn next_check_at(&self) -> u64 {
        if self.has_interrupts() {
            self.steps
                .saturating_add(INTERRUPT_CHECK_INTERVAL)
                .min(self.budget.max_steps)
        } else {
            self.budget.max_steps
        }
    }

    /// Charges `n` steps of work that is about to be done.
    #[inline]
    pub(crate) fn step(&mut self, n: u64) -> R<()> {
        let next = self.steps.saturating_add(n);
        if next > self.check_at {
            return self.step_slow(next);
        }
        self.steps = next;
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn step_slow(&mut self, next: u64) -> R<()> {
        if next > self.budget.max_steps {
            return Err(exhausted(
                BudgetResource::Steps,
                format!(
                    "the evaluation needs more than {} steps of work",
                    self.budget.max_steps
                ),
            ));
        }
        self.check_interrupts()?;
        self.steps = next;
        self.check_at = self.next_check_at();
        Ok(())
    }

    /// Looks at the cancellation flag and the clock.
    pub(crate) fn check_interrupts(&self) -> R<()> {
        if let Some(flag) = &self.budget.cancel
            && flag.load(Ordering::Relaxed)
        {
            return Err(exhausted(
                BudgetResource::Cancelled,
                "the evaluation was cancelled".into(),
            ));
        }
        if let Some(deadline) = self.budget.deadline
            && Instant::now() >= deadline
        {
            return Err(exhausted(
                BudgetResource::Deadline,
                "the evaluation passed its deadline".into(),
            ));
        }
        Ok(())
    }

    /// Charges `bytes` of memory that is about to be allocated and held
    /// (until [`Meter::release_to`]). Fails, without charging, when they do
    /// not fit.
    #[inline]
    pub(crate) fn alloc(&mut self, bytes: u64) -> R<()> {
        let next = self.live.saturating_add(bytes);
        let total = next.saturating_add(self.held);
        if total > self.budget.max_value_bytes {
            return Err(self.out_of_bytes(bytes));
        }
        self.live = next;
        if total > self.peak {
            self.peak = total;
        }
        Ok(())
    }

    /// Charges `bytes` that stay allocated until the evaluation ends (a
    /// cache entry): unlike [`Meter::alloc`], no `release_to` gives them
    /// back. Fails, without charging, when they do not fit.
    pub(crate) fn hold(&mut self, bytes: u64) -> R<()> {
        let held = self.held.saturating_add(bytes);
        let total = self.live.saturating_add(held);
        if total > self.budget.max_value_bytes {
            return Err(self.out_of_bytes(bytes));
        }
        self.held = held;
        if total > self.peak {
            self.peak = total;
        }
        Ok(())
    }

    /// Bytes held by caches ([`Meter::hold`]).
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Most bytes caches may hold in one evaluation: an eighth of the value
    /// budget, so that caching never takes more than that from the room a
    /// policy had before it.
    pub(crate) fn cache_cap(&self) -> u64 {
        self.budget.max_value_bytes / 8
    }

    #[cold]
    #[inline(never)]
    fn out_of_bytes(&self, bytes: u64) -> EvalErrorKind {
        exhausted(
            BudgetResource::ValueBytes,
            format!(
                "the evaluation would hold more than {} bytes of values ({} in use, {} more needed)",
                self.budget.max_value_bytes,
                self.live.saturating_add(self.held),
                bytes
            ),
        )
    }

    /// Charges `bytes` that are about to be written (allocated and filled):
    /// the memory plus the proportional work.
    #[inline]
    pub(crate) fn produce(&mut self, bytes: u64) -> R<()> {
        self.alloc(bytes)?;
        self.step(1 + bytes / BYTES_PER_STEP)
    }

    /// Bytes that can still be charged.
    pub(crate) fn room(&self) -> u64 {
        self.budget
            .max_value_bytes
            .saturating_sub(self.live.saturating_add(self.held))
    }

    /// Bytes currently held.
    #[inline]
    pub(crate) fn live(&self) -> u64 {
        self.live
    }

    /// Releases memory: the values charged since `live()` returned `mark`
    /// have been dropped (or `mark` accounts for those still held).
    #[inline]
    pub(crate) fn release_to(&mut self, mark: u64) {
        self.live = self.live.min(mark);
    }

    /// Charges `n` claims about to be held.
    pub(crate) fn add_claims(&mut self, n: usize) -> R<()> {
        let next = self.claims.saturating_add(n);
        if next > self.budget.max_claims {
            return Err(exhausted(
                BudgetResource::Claims,
                format!(
                    "the evaluation would hold more than {} claims ({} held, {n} more)",
                    self.budget.max_claims, self.claims
                ),
            ));
        }
        self.claims = next;
        Ok(())
    }

    pub(crate) fn usage(&self) -> BudgetUsage {
        BudgetUsage {
            value_bytes: self.peak,
            claims: self.claims,
            steps: self.steps,
        }
    }
}

fn exhausted(resource: BudgetResource, message: String) -> EvalErrorKind {
    EvalErrorKind::Budget { resource, message }
}

/// Size in bytes of `T`, as a charge.
pub(crate) const fn size_of<T>() -> u64 {
    std::mem::size_of::<T>() as u64
}
