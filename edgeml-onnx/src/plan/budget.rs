//! Bounded execution: what one run may spend (time, loop iterations, live memory) and
//! how it is stopped from outside.
//!
//! A [`RunState`] is created for each run from the plan's [`RunLimits`] and the run's
//! [`RunOptions`]. The interpreter passes it to the main program, which checks it once
//! per step (a relaxed atomic load, plus one clock read when a deadline is set) and
//! charges every value a step produces against the live-memory limit. `Loop` and `If`
//! operators, and `LSTM`/`GRU` before each time step, reach the state of the run they
//! belong to through a thread-local slot set for the length of the run ([`enter`]),
//! because operators are called through the [`Operator`](crate::Operator) trait. The
//! operators whose work can grow faster than their tensors (GEMM and convolution,
//! pooling windows as large as the image, `LRN` across every channel), whose outer
//! loops run on pool workers, get the run's cancellation and deadline as a [`Stop`]
//! taken by the operator and poll it once per block of work ([`Meter`]), so one huge
//! `MatMul`, `Conv` or `MaxPool` stops early too. Other operators do work linear in
//! their inputs and outputs, which the tensor limits bound, and are not polled inside.

use crate::{Error, Result, RunLimits};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A flag that stops runs from another thread, like onnxruntime's
/// `RunOptions.terminate`.
///
/// Clone it, give one copy to [`RunOptions::cancel_token`] and call
/// [`CancelToken::cancel`] on another: the run stops at its next step boundary (or
/// `Loop` iteration, recurrent time step, or block of a GEMM or convolution) with
/// [`Error::Cancelled`](crate::Error::Cancelled). The plan is not
/// affected and can run again at once. A cancelled token stays cancelled (every run
/// given it stops at its first step) until [`CancelToken::reset`].
///
/// ```
/// use edgeml_onnx::CancelToken;
/// let t = CancelToken::new();
/// let other = t.clone();
/// other.cancel();
/// assert!(t.is_cancelled());
/// t.reset();
/// assert!(!other.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every run holding this token (and every later one) to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelToken::cancel`] was called since the last reset.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Clears the cancellation, so the token can be given to new runs.
    pub fn reset(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Options of one run ([`Plan::run_with`](crate::Plan::run_with)): a deadline and a
/// cancellation token. The default sets neither, like [`Plan::run`](crate::Plan::run).
/// Loop and memory limits are the plan's ([`crate::PlanOptions::limits`]).
///
/// ```
/// use edgeml_onnx::{CancelToken, RunOptions};
/// use std::time::Duration;
/// let opts = RunOptions::new()
///     .timeout(Duration::from_millis(250))
///     .cancel_token(CancelToken::new());
/// assert!(opts.get_deadline().is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    cancel: Option<CancelToken>,
}

impl RunOptions {
    /// No deadline, no cancellation token.
    pub fn new() -> Self {
        Self::default()
    }

    /// The run must end within `d` of this call (the deadline is fixed now, not when
    /// the run starts); a run still going then fails with
    /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded) at its next check
    /// (the same points as for [`CancelToken`]). Durations too long to represent mean
    /// no deadline.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.deadline = Instant::now().checked_add(d);
        self.timeout = Some(d);
        self
    }

    /// The run must end by `at` (see [`RunOptions::timeout`]).
    pub fn deadline(mut self, at: Instant) -> Self {
        self.deadline = Some(at);
        self.timeout = None;
        self
    }

    /// Runs given these options stop when `token` is cancelled.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// The deadline in force, if any.
    pub fn get_deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// The budget of one run, shared by the main program and every subgraph it runs.
#[derive(Debug)]
pub(crate) struct RunState {
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    cancel: Option<CancelToken>,
    limits: RunLimits,
    /// Loop iterations started so far in this run (all `Loop` nodes, nested included).
    iterations: AtomicU64,
    /// Bytes of the values the run currently owns (intermediate values, loop state).
    live: AtomicU64,
}

impl RunState {
    pub(crate) fn new(limits: RunLimits, options: &RunOptions) -> Self {
        Self {
            deadline: options.deadline,
            timeout: options.timeout,
            cancel: options.cancel.clone(),
            limits,
            iterations: AtomicU64::new(0),
            live: AtomicU64::new(0),
        }
    }

    /// The state of a run without deadline or token.
    pub(crate) fn unbounded(limits: RunLimits) -> Self {
        Self::new(limits, &RunOptions::default())
    }

    /// Fails when the run was cancelled or its deadline has passed; `at` names the node
    /// about to run (or running, for a loop iteration).
    #[inline]
    pub(crate) fn check(&self, at: &dyn Fn() -> String) -> Result<()> {
        if let Some(c) = &self.cancel
            && c.is_cancelled()
        {
            return Err(Error::Cancelled(format!("run cancelled at {}", at())));
        }
        if let Some(d) = self.deadline
            && Instant::now() >= d
        {
            let budget = match self.timeout {
                Some(t) => format!(" of {:.3} s", t.as_secs_f64()),
                None => String::new(),
            };
            return Err(Error::DeadlineExceeded(format!(
                "the run's deadline{budget} passed at {}",
                at()
            )));
        }
        Ok(())
    }

    /// Whether the run was cancelled or its deadline has passed (no message built).
    #[inline]
    fn stop_requested(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether the run can be stopped at all (it has a deadline or a token).
    fn stoppable(&self) -> bool {
        self.deadline.is_some() || self.cancel.is_some()
    }

    /// Counts one more iteration of `desc` (its `i`-th, from 0) against both loop limits.
    pub(crate) fn count_iteration(&self, desc: &str, i: u64) -> Result<()> {
        if i >= self.limits.loop_trip_count() {
            return Err(Error::LimitExceeded(format!(
                "{desc}: the loop would run more than {} iterations (the maximum trip \
                 count, RunLimits::max_loop_trip_count)",
                self.limits.loop_trip_count()
            )));
        }
        let n = self.iterations.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.limits.loop_iterations() {
            return Err(Error::LimitExceeded(format!(
                "{desc}: the run would execute more than {} loop iterations in total \
                 (RunLimits::max_loop_iterations; nested loops multiply)",
                self.limits.loop_iterations()
            )));
        }
        self.check(&|| format!("{desc}, iteration {i}"))
    }

    /// Fails, without charging, when `bytes` more would exceed the live-memory limit
    /// (used before a step whose output size the plan knows).
    pub(crate) fn precheck(&self, bytes: u64, desc: &str) -> Result<()> {
        let live = self.live.load(Ordering::Relaxed);
        if live.saturating_add(bytes) > self.limits.live_bytes() {
            return Err(self.over(live, bytes, desc));
        }
        Ok(())
    }

    /// Adds `bytes` to the live memory of the run; fails (and leaves the count as it
    /// was) when that exceeds the limit.
    pub(crate) fn charge(&self, bytes: u64, desc: &str) -> Result<()> {
        let before = self.live.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limits.live_bytes() {
            self.release(bytes);
            return Err(self.over(before, bytes, desc));
        }
        Ok(())
    }

    /// Takes `bytes` off the live memory of the run.
    pub(crate) fn release(&self, bytes: u64) {
        // Saturating: an error path may release what a failed charge never added.
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }

    fn over(&self, live: u64, bytes: u64, desc: &str) -> Error {
        Error::LimitExceeded(format!(
            "{desc}: its outputs ({bytes} bytes) on top of the {live} bytes the run already \
             holds would exceed the run's live-memory limit of {} bytes \
             (RunLimits::max_live_bytes)",
            self.limits.live_bytes()
        ))
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<RunState>>> = const { RefCell::new(None) };
}

/// Restores the previous run state of this thread when dropped.
pub(crate) struct Entered(Option<Arc<RunState>>);

impl Drop for Entered {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = prev;
            }
        });
    }
}

/// Makes `state` the run state of this thread until the guard is dropped (runs nest:
/// a pool worker waiting inside one run may execute another run's job).
pub(crate) fn enter(state: Arc<RunState>) -> Entered {
    let prev = CURRENT.with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.replace(state)));
    Entered(prev)
}

/// The run state of the run this thread is executing, or a fresh unbounded one with
/// default limits (an operator called outside a plan run, e.g. by a test).
pub(crate) fn current() -> Arc<RunState> {
    CURRENT
        .with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
        .unwrap_or_else(|| Arc::new(RunState::unbounded(RunLimits::default())))
}

/// A run's stop conditions (cancellation token and deadline) for the outer loops of
/// long kernels (GEMM, convolution), which run on pool workers that do not see the
/// thread-local run state. The operator takes it on its own thread ([`Stop::current`])
/// and the kernel's parallel closures share it; a [`Meter`] polls it once per block of
/// work. Outside a run, or in a run with neither deadline nor token, it is empty and
/// polling it costs one branch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop(Option<Arc<RunState>>);

impl Stop {
    /// The stop conditions of the run this thread is executing (empty outside a run).
    pub(crate) fn current() -> Self {
        Self(CURRENT.with(|c| {
            c.try_borrow()
                .ok()
                .and_then(|c| c.as_ref().filter(|s| s.stoppable()).cloned())
        }))
    }

    /// Whether the run was cancelled or its deadline has passed: a relaxed atomic load
    /// and, with a deadline, one clock read.
    #[inline]
    pub(crate) fn requested(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.stop_requested())
    }

    /// The typed error of a run stopped at `at` ([`Error::Cancelled`] or
    /// [`Error::DeadlineExceeded`]; a token reset since the stop still reads as
    /// cancelled, since the work was left unfinished).
    pub(crate) fn error(&self, at: &dyn Fn() -> String) -> Error {
        match self.0.as_ref().map(|s| s.check(at)) {
            Some(Err(e)) => e,
            _ => Error::Cancelled(format!("run cancelled at {}", at())),
        }
    }
}

/// The cancellation token and deadline of the run the calling thread is executing, for
/// operators with long loops of their own (the INT8 operators of `edgeml-quant`, custom
/// operators): take it on the operator's thread with [`RunStop::current`] (worker
/// threads do not see the run), poll [`RunStop::should_stop`] from any thread once per
/// block of work, and return [`RunStop::error`] when it says so. The plan then names the
/// node in the error and stays usable.
///
/// Outside a run, or in a run with neither a deadline nor a token, it is inactive and
/// polling it costs one branch; otherwise a poll is a relaxed atomic load and, with a
/// deadline, one clock read (about 25 ns), so a block of about 0.1 ms keeps the cost
/// under 0.1 %.
#[derive(Debug, Clone, Default)]
pub struct RunStop(Stop);

impl RunStop {
    /// The stop conditions of the run this thread is executing (inactive outside a run).
    pub fn current() -> Self {
        Self(Stop::current())
    }

    /// Whether the run has a deadline or a cancellation token at all (when not,
    /// [`RunStop::should_stop`] is always false and need not be polled).
    pub fn is_active(&self) -> bool {
        self.0.0.is_some()
    }

    /// Whether the run was cancelled or its deadline has passed.
    #[inline]
    pub fn should_stop(&self) -> bool {
        self.0.requested()
    }

    /// The typed error of a run stopped while doing `what` ([`Error::Cancelled`] or
    /// [`Error::DeadlineExceeded`]).
    pub fn error(&self, what: &str) -> Error {
        self.0.error(&|| what.to_owned())
    }

    /// A [`RunMeter`] on these stop conditions, for one task of a loop whose blocks are
    /// too small to poll each (one per parallel task; it is not `Sync`).
    pub fn meter(&self) -> RunMeter<'_> {
        RunMeter(Meter::new(&self.0))
    }
}

/// Polls a [`RunStop`] once per about 2²² units of counted work (multiply-adds,
/// compares, or comparable units: about 0.1 ms of SIMD work), so a loop can count every
/// small block and still pay for a poll only rarely. The first
/// [`tick`](RunMeter::tick) polls.
///
/// ```
/// use edgeml_onnx::RunStop;
/// let stop = RunStop::current(); // outside a run: inactive
/// let mut meter = stop.meter();
/// for _row in 0..1000 {
///     if meter.tick(4096) {
///         return Err(stop.error("my operator's rows"));
///     }
///     // ... 4096 units of work ...
/// }
/// # Ok::<(), edgeml_onnx::Error>(())
/// ```
#[derive(Debug)]
pub struct RunMeter<'a>(Meter<'a>);

impl RunMeter<'_> {
    /// Counts `units` of work about to be done; true when the run must stop (the
    /// caller then returns [`RunStop::error`]). Always false for an inactive
    /// [`RunStop`].
    #[inline]
    pub fn tick(&mut self, units: u64) -> bool {
        self.0.tick(units)
    }
}

/// Work (multiply-adds, or comparable units) between two polls of a [`Stop`]: 2²² is
/// about 0.1 ms for the AVX2/AVX-512 float kernels on one core, about 1 ms for NEON on
/// a Cortex-A72 and a few ms for scalar code, so a poll (an atomic load and a clock
/// read, ~25 ns) costs well under 0.1 % and a stop comes within about that time.
pub(crate) const POLL_EVERY: u64 = 1 << 22;

/// [`Meter`] units per element that packing (a strided or gathering copy, e.g. im2col)
/// writes: such a copy costs about as much as 32 multiply-adds of the SIMD kernels, so
/// packing polls about every 128 Ki elements.
pub(crate) const COPY_UNITS: u64 = 32;

/// Polls a [`Stop`] at its first tick and then once per [`POLL_EVERY`] units of work;
/// one per parallel task (rayon job), so a task shorter than [`POLL_EVERY`] still polls
/// once.
#[derive(Debug)]
pub(crate) struct Meter<'a> {
    stop: &'a Stop,
    /// Units counted since the last poll (starts due).
    work: u64,
}

impl<'a> Meter<'a> {
    /// A meter on `stop` whose first tick polls.
    pub(crate) fn new(stop: &'a Stop) -> Self {
        Self {
            stop,
            work: POLL_EVERY,
        }
    }

    /// Counts `work` units about to be done; true when the run must stop (polled when
    /// the count since the last poll has reached [`POLL_EVERY`]).
    #[inline]
    pub(crate) fn tick(&mut self, work: u64) -> bool {
        if self.stop.0.is_none() {
            return false;
        }
        if self.work < POLL_EVERY {
            self.work = self.work.saturating_add(work);
            return false;
        }
        self.work = work;
        self.stop.requested()
    }
}

/// Names the step in a cancellation or deadline error that an operator returned from
/// inside a kernel (`..., in MatMul "mm"`), unless the message already names it; other
/// errors pass through unchanged.
pub(crate) fn at_step(e: Error, desc: &str) -> Error {
    match e {
        Error::Cancelled(m) if !m.contains(desc) => Error::Cancelled(format!("{m}, in {desc}")),
        Error::DeadlineExceeded(m) if !m.contains(desc) => {
            Error::DeadlineExceeded(format!("{m}, in {desc}"))
        }
        other => other,
    }
}

/// Bytes of a tensor, as `u64`.
pub(crate) fn bytes_of(t: &crate::Tensor) -> u64 {
    u64::try_from(t.size_bytes()).unwrap_or(u64::MAX)
}

/// Adds where a budget error happened inside a subgraph (`in Loop "l", iteration 3`),
/// so that the message names every enclosing control-flow node; other errors pass
/// through unchanged.
pub(crate) fn within(e: Error, at: &dyn Fn() -> String) -> Error {
    match e {
        Error::Cancelled(m) => Error::Cancelled(format!("{m} (in {})", at())),
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{m} (in {})", at())),
        Error::LimitExceeded(m) => Error::LimitExceeded(format!("{m} (in {})", at())),
        other => other,
    }
}
