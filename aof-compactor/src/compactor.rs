//! The background task, its handle and its status.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::growth_percent;
use crate::source::{DiskSpace, SizeSource, Statvfs};
use crate::{Config, Error};

/// The error type a compaction callback may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// The size check decided.
    Auto,
    /// [`Handle::compact_now`] asked.
    Manual,
}

/// What the compaction callback receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CompactionContext {
    /// Cancelled when the run should stop early: on shutdown with
    /// [`InFlight::Cancel`], or by [`Handle::cancel_run`]. The callback should
    /// then clean up (drop its temporary file) and return an error.
    pub cancel: CancellationToken,
    /// Why the run started.
    pub trigger: Trigger,
    /// The size measured just before the run, if it could be measured.
    pub size_before: Option<u64>,
    /// The base size the growth rule compared against.
    pub base_size: u64,
}

/// What a successful compaction reports. Build it with
/// [`CompactionOutcome::new`]; fields may be added in a minor release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionOutcome {
    /// The size of the log right after the compaction, including any bytes
    /// appended while it ran. It becomes the new base size for the growth rule.
    pub new_size: u64,
}

impl CompactionOutcome {
    /// The outcome of a compaction that left the log `new_size` bytes long.
    pub fn new(new_size: u64) -> Self {
        CompactionOutcome { new_size }
    }
}

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunFailure {
    /// The callback returned an error; its message.
    Failed(String),
    /// The callback panicked; the panic message.
    Panicked(String),
    /// The run was cancelled (shutdown or [`Handle::cancel_run`]) and the
    /// callback returned an error. Cancellation does not count towards back-off.
    Cancelled,
    /// The disk has less free space than `min_free_percent` requires; the
    /// callback was not called.
    NoSpace {
        /// Bytes the rule asked for.
        needed: u64,
        /// Bytes the disk reported free.
        available: u64,
    },
    /// Free space could not be measured; the callback was not called.
    DiskSpace(String),
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunFailure::Failed(m) => write!(f, "compaction failed: {m}"),
            RunFailure::Panicked(m) => write!(f, "compaction panicked: {m}"),
            RunFailure::Cancelled => f.write_str("compaction cancelled"),
            RunFailure::NoSpace { needed, available } => write!(
                f,
                "not enough free disk space: {available} bytes free, {needed} needed"
            ),
            RunFailure::DiskSpace(m) => write!(f, "cannot measure free disk space: {m}"),
        }
    }
}

impl RunFailure {
    fn counts_as_failure(&self) -> bool {
        !matches!(self, RunFailure::Cancelled)
    }
}

/// The record of one finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// Runs are numbered from 1 in the order they started.
    pub id: u64,
    /// Why it started.
    pub trigger: Trigger,
    /// The size measured before it started.
    pub size_before: Option<u64>,
    /// How long it took.
    pub duration: Duration,
    /// What came of it.
    pub result: Result<CompactionOutcome, RunFailure>,
}

/// A snapshot of the compactor's state, modelled on Redis's INFO persistence
/// section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Automatic compaction is configured (`min_size > 0`).
    pub enabled: bool,
    /// Automatic checks are paused.
    pub paused: bool,
    /// A run is in flight (`aof_rewrite_in_progress`).
    pub in_progress: bool,
    /// A manual run was requested and has not started yet (`aof_rewrite_scheduled`).
    pub scheduled: bool,
    /// How long the run in flight has been going (`aof_current_rewrite_time_sec`).
    pub current_duration: Option<Duration>,
    /// The outcome of the last finished run, `None` before the first
    /// (`aof_last_bgrewrite_status`).
    pub last_status: Option<Result<(), RunFailure>>,
    /// How long the last finished run took (`aof_last_rewrite_time_sec`).
    pub last_duration: Option<Duration>,
    /// Successful runs (`aof_rewrites`).
    pub runs: u64,
    /// Failed runs, all time.
    pub failures: u64,
    /// Failures since the last success (`aof_rewrites_consecutive_failures`).
    pub consecutive_failures: u32,
    /// The size at the last check or run (`aof_current_size`).
    pub current_size: Option<u64>,
    /// The error of the last size measurement, cleared by the next success.
    pub size_error: Option<String>,
    /// The size after the last successful run (`aof_base_size`).
    pub base_size: u64,
    /// Growth of the current size over the base, in percent.
    pub growth_percent: Option<i64>,
    /// When the next automatic check is due.
    pub next_check_at: Option<Instant>,
    /// Automatic runs are held back by cooldown or back-off until then.
    pub held_until: Option<Instant>,
}

/// What happens to a run in flight when the shutdown token fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InFlight {
    /// Let it finish, then return. The default: a finished rewrite is never
    /// thrown away.
    #[default]
    Wait,
    /// Cancel its [`CompactionContext::cancel`] token and wait for the
    /// callback to return.
    Cancel,
}

struct State {
    config: Config,
    paused: bool,
    manual_requested: bool,
    stopped: bool,
    has_disk_probe: bool,
    started: u64,
    finished: u64,
    run_cancel: Option<CancellationToken>,
    run_started_at: Option<Instant>,
    last_report: Option<RunReport>,
    runs: u64,
    failures: u64,
    consecutive_failures: u32,
    current_size: Option<u64>,
    size_error: Option<String>,
    base_size: u64,
    last_check: Instant,
    next_check_at: Option<Instant>,
    last_success_at: Option<Instant>,
    last_failure_at: Option<Instant>,
}

impl State {
    /// The instant until which automatic runs are held back, if any.
    fn held_until(&self) -> Option<Instant> {
        let cooldown = self
            .last_success_at
            .map(|t| t + self.config.cooldown)
            .filter(|_| !self.config.cooldown.is_zero());
        let backoff = match (
            self.last_failure_at,
            self.config.backoff_for(self.consecutive_failures),
        ) {
            (Some(t), Some(d)) => Some(t + d),
            _ => None,
        };
        cooldown.max(backoff)
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    finished: watch::Sender<u64>,
}

/// A cloneable handle to a [`Compactor`]: reconfigure, pause, trigger and
/// observe it from anywhere.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.shared.state.lock().config.clone()
    }

    /// Replaces the configuration. It takes effect at the next check: the next
    /// check is rescheduled to one new `check_interval` after the previous
    /// check, and a run in flight is not affected.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if [`Config::validate`] rejects it, or if
    /// `min_free_percent` is set and the compactor has no disk-space probe. The
    /// old configuration then stays in force.
    pub fn set_config(&self, config: Config) -> Result<(), Error> {
        config.validate()?;
        {
            let mut st = self.shared.state.lock();
            if config.min_free_percent.is_some() && !st.has_disk_probe {
                return Err(Error::invalid(
                    "min_free_percent",
                    "no disk-space probe: give one with Compactor::with_disk_space",
                ));
            }
            st.config = config;
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Changes some fields of the configuration, as one `CONFIG SET` would.
    ///
    /// # Errors
    ///
    /// As [`Handle::set_config`]; on error nothing changes.
    pub fn update(&self, f: impl FnOnce(&mut Config)) -> Result<(), Error> {
        let mut config = self.config();
        f(&mut config);
        self.set_config(config)
    }

    /// Stops automatic runs until [`Handle::resume`]. A run in flight goes on,
    /// and manual runs still work (a follower that must not compact on its own
    /// can still be told to).
    pub fn pause(&self) {
        self.shared.state.lock().paused = true;
        self.shared.wake.notify_one();
    }

    /// Resumes automatic runs; the next check happens at its usual time.
    pub fn resume(&self) {
        self.shared.state.lock().paused = false;
        self.shared.wake.notify_one();
    }

    /// Whether automatic runs are paused.
    pub fn is_paused(&self) -> bool {
        self.shared.state.lock().paused
    }

    /// Runs a compaction now and waits for its report. Cooldown, back-off,
    /// pause and the size threshold do not apply; the free-space check does.
    /// Back-off is reset: the run starts with zero consecutive failures.
    ///
    /// If a run is already in flight, no second run starts: this waits for
    /// that run and returns its report. Concurrent callers share one run.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] if the compactor task has ended (or ends before the
    /// run). A failed run is not an error here: see [`RunReport::result`].
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future does not withdraw the request; the run still
    /// happens.
    pub async fn compact_now(&self) -> Result<RunReport, Error> {
        let mut rx = self.shared.finished.subscribe();
        let target = {
            let mut st = self.shared.state.lock();
            if st.stopped {
                return Err(Error::Stopped);
            }
            if st.run_cancel.is_some() {
                st.started
            } else {
                st.manual_requested = true;
                st.started + 1
            }
        };
        self.shared.wake.notify_one();
        loop {
            {
                let st = self.shared.state.lock();
                if st.finished >= target {
                    if let Some(report) = &st.last_report {
                        return Ok(report.clone());
                    }
                }
                if st.stopped {
                    return Err(Error::Stopped);
                }
            }
            if rx.changed().await.is_err() {
                return Err(Error::Stopped);
            }
        }
    }

    /// Cancels the run in flight, if any, through its context's token. Returns
    /// whether there was one. The run's report says
    /// [`RunFailure::Cancelled`] if the callback honoured it.
    pub fn cancel_run(&self) -> bool {
        match &self.shared.state.lock().run_cancel {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The report of the last finished run.
    pub fn last_report(&self) -> Option<RunReport> {
        self.shared.state.lock().last_report.clone()
    }

    /// A snapshot of the state.
    pub fn status(&self) -> Status {
        let st = self.shared.state.lock();
        let now = Instant::now();
        Status {
            enabled: st.config.auto_enabled(),
            paused: st.paused,
            in_progress: st.run_cancel.is_some(),
            scheduled: st.manual_requested,
            current_duration: st.run_started_at.map(|t| now.saturating_duration_since(t)),
            last_status: st
                .last_report
                .as_ref()
                .map(|r| r.result.as_ref().map(|_| ()).map_err(Clone::clone)),
            last_duration: st.last_report.as_ref().map(|r| r.duration),
            runs: st.runs,
            failures: st.failures,
            consecutive_failures: st.consecutive_failures,
            current_size: st.current_size,
            size_error: st.size_error.clone(),
            base_size: st.base_size,
            growth_percent: st
                .current_size
                .map(|s| i64::try_from(growth_percent(s, st.base_size)).unwrap_or(i64::MAX)),
            next_check_at: st.next_check_at,
            held_until: st.held_until().filter(|t| *t > now),
        }
    }
}

/// The compaction task. Build it with [`Compactor::new`], then run (or spawn)
/// the future returned by [`Compactor::run`]; control it through the
/// [`Handle`].
pub struct Compactor<F> {
    shared: Arc<Shared>,
    size: SizeSource,
    disk: Option<Box<dyn DiskSpace>>,
    compact: F,
    in_flight: InFlight,
}

impl<F> fmt::Debug for Compactor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compactor")
            .field("size", &self.size)
            .field("has_disk_probe", &self.disk.is_some())
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// Marks the compactor stopped however its future ends, including when the
/// caller drops it, so that [`Handle::compact_now`] never waits forever.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.stopped = true;
        st.run_cancel = None;
        st.run_started_at = None;
        st.next_check_at = None;
        drop(st);
        self.0.finished.send_modify(|_| {});
    }
}

impl<F, Fut, E> Compactor<F>
where
    F: FnMut(CompactionContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<CompactionOutcome, E>> + Send + 'static,
    E: Into<BoxError>,
{
    /// Builds a compactor and its handle. Nothing runs until the future from
    /// [`Compactor::run`] is polled.
    ///
    /// For a [`SizeSource::Path`] a [`Statvfs`] probe of its directory is set
    /// up for the free-space check; other sources need
    /// [`Compactor::with_disk_space`] if `min_free_percent` is used.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the configuration does not validate.
    pub fn new(config: Config, size: SizeSource, compact: F) -> Result<(Self, Handle), Error> {
        config.validate()?;
        let disk: Option<Box<dyn DiskSpace>> = match &size {
            SizeSource::Path(p) => Some(Box::new(Statvfs::for_file(p))),
            _ => None,
        };
        let state = State {
            config,
            paused: false,
            manual_requested: false,
            stopped: false,
            has_disk_probe: disk.is_some(),
            started: 0,
            finished: 0,
            run_cancel: None,
            run_started_at: None,
            last_report: None,
            runs: 0,
            failures: 0,
            consecutive_failures: 0,
            current_size: None,
            size_error: None,
            base_size: 0,
            last_check: Instant::now(),
            next_check_at: None,
            last_success_at: None,
            last_failure_at: None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Notify::new(),
            finished: watch::Sender::new(0),
        });
        let handle = Handle {
            shared: shared.clone(),
        };
        Ok((
            Compactor {
                shared,
                size,
                disk,
                compact,
                in_flight: InFlight::default(),
            },
            handle,
        ))
    }

    /// Uses `probe` for the free-space check.
    pub fn with_disk_space(mut self, probe: impl DiskSpace) -> Self {
        self.disk = Some(Box::new(probe));
        self.shared.state.lock().has_disk_probe = true;
        self
    }

    /// Sets the starting base size for the growth rule.
    ///
    /// Without this the base starts at zero, so after a restart the first
    /// check above `min_size` compacts whatever the growth rule says; that is
    /// deliberate, because resetting the base to the size found at start lets
    /// a frequently restarted server grow without bound (redis #716). Pass the
    /// size your last compaction produced if you persist it.
    pub fn with_base_size(self, base: u64) -> Self {
        self.shared.state.lock().base_size = base;
        self
    }

    /// What to do with a run in flight at shutdown. Default: [`InFlight::Wait`].
    pub fn on_shutdown(mut self, in_flight: InFlight) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// Runs the compactor until `shutdown` is cancelled.
    ///
    /// The first automatic check happens one `check_interval` after the start.
    /// On shutdown a run in flight is awaited or cancelled as chosen with
    /// [`Compactor::on_shutdown`]; the future completes once it has returned.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future instead of cancelling the token drops a run in
    /// flight at its next await point; prefer the token.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let _guard = StopGuard(self.shared.clone());
        {
            let mut st = self.shared.state.lock();
            st.last_check = Instant::now();
        }
        loop {
            let (deadline, manual) = {
                let mut st = self.shared.state.lock();
                let deadline = st.last_check + st.config.check_interval;
                st.next_check_at = Some(deadline);
                (deadline, st.manual_requested)
            };
            if shutdown.is_cancelled() {
                break;
            }
            if manual {
                let size = self.measure();
                self.execute(Trigger::Manual, size, &shutdown).await;
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {
                    self.shared.state.lock().last_check = Instant::now();
                    self.check(&shutdown).await;
                }
            }
        }
        tracing::debug!("aof compactor stopped");
    }

    /// Measures the size and records it in the status.
    fn measure(&self) -> Option<u64> {
        let result = self.size.size();
        let mut st = self.shared.state.lock();
        match result {
            Ok(size) => {
                st.current_size = Some(size);
                st.size_error = None;
                Some(size)
            }
            Err(e) => {
                tracing::warn!(error = %e, source = ?self.size, "cannot measure the log size");
                st.size_error = Some(e.to_string());
                None
            }
        }
    }

    /// One automatic check: measure, apply the trigger rule, run if due.
    async fn check(&mut self, shutdown: &CancellationToken) {
        let Some(size) = self.measure() else {
            return;
        };
        let now = Instant::now();
        {
            let st = self.shared.state.lock();
            if st.paused || !st.config.size_triggers(size, st.base_size) {
                tracing::trace!(
                    size,
                    base = st.base_size,
                    paused = st.paused,
                    "no compaction due"
                );
                return;
            }
            if let Some(until) = st.held_until() {
                if now < until {
                    tracing::debug!(
                        size,
                        consecutive_failures = st.consecutive_failures,
                        wait = ?until - now,
                        "compaction due but held back by cooldown or back-off"
                    );
                    return;
                }
            }
            tracing::info!(
                size,
                base = st.base_size,
                growth_percent = %growth_percent(size, st.base_size),
                min_size = st.config.min_size.as_u64(),
                "starting automatic compaction"
            );
        }
        self.execute(Trigger::Auto, Some(size), shutdown).await;
    }

    /// Applies the free-space rule; `Err` is the failure to report.
    fn free_space_check(&self, size: Option<u64>) -> Result<(), RunFailure> {
        let Some(pct) = self.shared.state.lock().config.min_free_percent else {
            return Ok(());
        };
        let Some(disk) = &self.disk else {
            return Err(RunFailure::DiskSpace(
                "min_free_percent is set but there is no disk-space probe".into(),
            ));
        };
        let needed = u64::try_from(u128::from(size.unwrap_or(0)) * u128::from(pct) / 100)
            .unwrap_or(u64::MAX);
        match disk.available() {
            Ok(available) if available >= needed => Ok(()),
            Ok(available) => Err(RunFailure::NoSpace { needed, available }),
            Err(e) => Err(RunFailure::DiskSpace(e.to_string())),
        }
    }

    /// Runs the callback once, catching panics, and records the outcome.
    async fn execute(&mut self, trigger: Trigger, size: Option<u64>, shutdown: &CancellationToken) {
        let cancel = CancellationToken::new();
        let started_at = Instant::now();
        let (id, base_size) = {
            let mut st = self.shared.state.lock();
            st.started += 1;
            st.manual_requested = false;
            st.run_cancel = Some(cancel.clone());
            st.run_started_at = Some(started_at);
            if trigger == Trigger::Manual {
                // An operator asking explicitly is the signal that the cause of
                // earlier failures may be fixed, so back-off starts over.
                st.consecutive_failures = 0;
            }
            (st.started, st.base_size)
        };

        let result = match self.free_space_check(size) {
            Err(failure) => Err(failure),
            Ok(()) => {
                let ctx = CompactionContext {
                    cancel: cancel.clone(),
                    trigger,
                    size_before: size,
                    base_size,
                };
                self.call(ctx, &cancel, shutdown).await
            }
        };

        let duration = started_at.elapsed();
        let report = RunReport {
            id,
            trigger,
            size_before: size,
            duration,
            result,
        };
        match &report.result {
            Ok(outcome) => tracing::info!(
                id,
                ?trigger,
                ?duration,
                new_size = outcome.new_size,
                "compaction finished"
            ),
            Err(failure) => tracing::warn!(id, ?trigger, ?duration, %failure, "compaction failed"),
        }
        {
            let mut st = self.shared.state.lock();
            let now = Instant::now();
            match &report.result {
                Ok(outcome) => {
                    st.runs += 1;
                    st.consecutive_failures = 0;
                    st.base_size = outcome.new_size;
                    st.current_size = Some(outcome.new_size);
                    st.last_success_at = Some(now);
                }
                Err(failure) if failure.counts_as_failure() => {
                    st.failures += 1;
                    st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                    st.last_failure_at = Some(now);
                }
                Err(_) => {}
            }
            st.finished = id;
            // The next automatic check is one interval after the run ended, so a
            // run longer than the interval is not followed by an immediate check.
            st.last_check = now;
            st.run_cancel = None;
            st.run_started_at = None;
            st.last_report = Some(report);
        }
        self.shared.finished.send_replace(id);
    }

    /// Calls the callback, turning a panic (while building the future or while
    /// polling it) into a failure, and reacting to shutdown while it runs.
    async fn call(
        &mut self,
        ctx: CompactionContext,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<CompactionOutcome, RunFailure> {
        let compact = &mut self.compact;
        let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| compact(ctx))) {
            Ok(fut) => fut,
            Err(payload) => return Err(RunFailure::Panicked(panic_message(&*payload))),
        };
        let mut fut = std::pin::pin!(AssertUnwindSafe(fut).catch_unwind());
        let mut shutdown_seen = false;
        let caught = loop {
            tokio::select! {
                biased;
                r = &mut fut => break r,
                () = shutdown.cancelled(), if !shutdown_seen => {
                    shutdown_seen = true;
                    if self.in_flight == InFlight::Cancel {
                        cancel.cancel();
                    }
                }
            }
        };
        match caught {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) if cancel.is_cancelled() => Err(RunFailure::Cancelled),
            Ok(Err(e)) => Err(RunFailure::Failed(e.into().to_string())),
            Err(payload) => Err(RunFailure::Panicked(panic_message(&*payload))),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
