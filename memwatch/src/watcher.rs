//! The watcher: sampling loop, levels, the single-shot fire and the deadline.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::cgroup::{Cgroup, Limits};
use crate::config::MIN_POLL_INTERVAL;
use crate::config::{Config, Signal};
use crate::diagnostics::Bundle;
use crate::error::{Error, Result};
use crate::growth::{History, MIN_WINDOW};
use crate::profile::HeapProfiler;
use crate::source::{MemorySource, Readings, Sample, SystemSource};
use crate::wake::{Waiter, Woken};

/// The exit code a process should use after the watchdog fired, whatever its
/// own shutdown returned. It tells a supervisor "restarted for memory
/// pressure" apart from a crash (1) or a clean stop (0).
pub const EXIT_CODE_MEMORY_PRESSURE: i32 = 2;

/// The published memory level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    /// Below the soft level (or no soft level configured).
    Normal = 0,
    /// At or above the soft level; shed load.
    Elevated = 1,
    /// The threshold was crossed and the token cancelled.
    Critical = 2,
}

impl Level {
    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Normal,
            1 => Level::Elevated,
            _ => Level::Critical,
        }
    }

    /// The name used in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Elevated => "elevated",
            Level::Critical => "critical",
        }
    }
}

/// What [`Watcher::subscribe`] returns: tokio's `watch` receiver of the
/// level, named here so that a caller can store one without depending on
/// tokio's `sync` feature itself.
pub type LevelReceiver = watch::Receiver<Level>;

/// Why a run of the watcher ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The threshold was crossed; the token is cancelled.
    Fired,
    /// The caller's token was cancelled (by anyone, including this watcher
    /// through another run).
    Cancelled,
}

/// What one [`Watcher::check`] saw and did.
///
/// Marked `#[non_exhaustive]`: later releases may add fields, so read the
/// fields you need and do not build or destructure it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Check {
    /// The sample the decision was made on (after a purge, if one ran).
    pub sample: Sample,
    /// The level after this check.
    pub level: Level,
    /// True if a purge ran before deciding.
    pub purged: bool,
    /// True if this very call fired the watchdog.
    pub fired_now: bool,
    /// The sustained growth rate in bytes per second, when a shutdown
    /// budget is configured and memory grew over the window.
    pub growth_bytes_per_sec: Option<f64>,
    /// True if the source's cheap upper bound was below every level the
    /// watcher acts on, so no full sample was taken: `sample` is then the
    /// previous full sample and `level` is unchanged.
    pub estimated: bool,
}

/// A snapshot of the watcher's state for exporters.
///
/// Marked `#[non_exhaustive]`: later releases add fields as the watcher
/// learns to measure more, so read the fields you export and do not build
/// or destructure it exhaustively.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// The signal being watched (after any fallback).
    pub signal: Signal,
    /// Why the requested signal is not the one watched, if it fell back.
    pub degraded: Option<String>,
    /// The resolved threshold in bytes.
    pub threshold_bytes: u64,
    /// The resolved soft level in bytes.
    pub soft_bytes: Option<u64>,
    /// The effective limit in bytes, if one is known.
    pub effective_limit: Option<u64>,
    /// The poll interval in use.
    pub poll_interval: Duration,
    /// The most recent successful sample.
    pub last_sample: Option<Sample>,
    /// The current level.
    pub level: Level,
    /// Bytes left before the threshold at the last sample.
    pub headroom_bytes: Option<u64>,
    /// The sustained growth rate at the last full sample, in bytes per
    /// second, when a shutdown budget is configured and memory grew.
    pub growth_bytes_per_sec: Option<f64>,
    /// Full samples taken, including re-samples after a purge.
    pub samples: u64,
    /// Ticks answered by the source's cheap upper bound instead of a full
    /// sample (see [`Config::max_stats_age`]).
    pub estimates: u64,
    /// Checks made at once because a watched file changed (see
    /// [`Config::wake_files`]).
    pub event_checks: u64,
    /// Samples that failed.
    pub sample_errors: u64,
    /// Purges issued.
    pub purges: u64,
    /// Heap profiles written (see [`Config::heap_profile`]).
    pub heap_profiles: u64,
    /// Whether the watchdog has fired.
    pub fired: bool,
}

#[derive(Debug)]
struct Shared {
    token: CancellationToken,
    source: Mutex<Box<dyn MemorySource>>,
    signal: Signal,
    degraded: Option<String>,
    threshold: u64,
    soft: Option<u64>,
    soft_exit: u64,
    limits: Limits,
    interval: Duration,
    /// How many ticks in a row may go without a full sample, plus one:
    /// `max_stats_age / interval`. Below 2, every tick is a full sample.
    bound_ticks: u32,
    /// Ticks answered by the bound since the last full sample. Only changed
    /// under the source lock.
    since_full: AtomicU32,
    estimates: AtomicU64,
    /// Files whose modification triggers a check on the spawned thread.
    wake_files: Vec<PathBuf>,
    /// Set by an event-triggered check: take a full sample.
    force_full: AtomicBool,
    event_checks: AtomicU64,
    purge_before_fire: bool,
    shutdown_budget: Option<Duration>,
    /// The window the growth rate is measured over.
    growth_window: Duration,
    /// The last growth rate as `f64` bits; `u64::MAX` for none.
    growth: AtomicU64,
    diagnostics_dir: Option<PathBuf>,
    heap_profiler: Option<HeapProfiler>,
    heap_profiles: AtomicU64,
    history: Mutex<History>,
    exit_deadline: Option<Duration>,
    level: AtomicU8,
    level_tx: watch::Sender<Level>,
    fired: AtomicBool,
    samples: AtomicU64,
    sample_errors: AtomicU64,
    purges: AtomicU64,
    last: Mutex<Option<Sample>>,
}

impl std::fmt::Debug for dyn MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource")
            .field("signal", &self.signal())
            .finish_non_exhaustive()
    }
}

/// The memory watchdog. Cloning is cheap and every clone observes and
/// drives the same state.
#[derive(Debug, Clone)]
pub struct Watcher {
    shared: Arc<Shared>,
}

/// The handle of a watcher started with [`Watcher::spawn`].
#[derive(Debug)]
pub struct WatcherHandle {
    thread: thread::JoinHandle<Stopped>,
}

impl WatcherHandle {
    /// Waits for the watcher thread to end. It ends once the watchdog fired
    /// or the token was cancelled, so cancel the token first when shutting
    /// down for another reason.
    ///
    /// # Panics
    ///
    /// Re-raises a panic of the watcher thread.
    pub fn join(self) -> Stopped {
        match self.thread.join() {
            Ok(s) => s,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// True once the watcher thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

impl Watcher {
    /// Builds a watcher for this process from `config`, watching `token`.
    ///
    /// Returns `Ok(None)` when the config is disabled (no threshold, or a
    /// zero one): nothing is started and nothing needs to be. Otherwise the
    /// effective limit is discovered (configured value, cgroup v1/v2 limits,
    /// physical memory), the signal's source is opened and self-checked, and
    /// the thresholds are resolved. Nothing runs until the caller calls
    /// [`Watcher::spawn`] or polls [`Watcher::run`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the config does not validate or its
    /// levels resolve to nonsense, [`Error::NoLimit`] if a fractional
    /// threshold has no limit to apply to, [`Error::Io`] if no signal at all
    /// can be read.
    pub fn new(config: Config, token: CancellationToken) -> Result<Option<Watcher>> {
        config.validate()?;
        if !config.is_enabled() {
            tracing::info!("memwatch: disabled (no threshold configured)");
            return Ok(None);
        }
        let cgroup = Cgroup::discover().unwrap_or_else(|error| {
            tracing::warn!(%error, "memwatch: cannot read the process's cgroup");
            None
        });
        let limits = Limits::of(config.limit, cgroup.as_ref());
        let source = SystemSource::new(config.signal, cgroup.as_ref())?;
        let mut config = config;
        if config.wake_files.is_none() {
            config.wake_files = Some(
                cgroup
                    .as_ref()
                    .map(Cgroup::events_files)
                    .unwrap_or_default(),
            );
        }
        Self::with_source(config, token, Box::new(source), limits)
    }

    /// Builds a watcher over a caller-supplied source and limits. This is
    /// the seam for custom signals and for deterministic tests.
    ///
    /// # Errors
    ///
    /// As for [`Watcher::new`].
    pub fn with_source(
        config: Config,
        token: CancellationToken,
        source: Box<dyn MemorySource>,
        limits: Limits,
    ) -> Result<Option<Watcher>> {
        config.validate()?;
        let Some(threshold) = config.threshold.filter(|t| !t.is_zero()) else {
            return Ok(None);
        };
        let effective = limits.effective();
        let threshold = threshold.resolve(effective)?;
        if threshold == 0 {
            return Err(Error::InvalidConfig {
                field: "threshold",
                reason: "resolves to zero bytes".into(),
            });
        }
        let soft = config.soft.map(|s| s.resolve(effective)).transpose()?;
        if let Some(s) = soft {
            if s >= threshold {
                return Err(Error::InvalidConfig {
                    field: "soft",
                    reason: format!("soft level {s} B is not below the threshold {threshold} B"),
                });
            }
        }
        let hysteresis = (threshold as f64 * config.hysteresis) as u64;
        let soft_exit = soft.map_or(0, |s| s.saturating_sub(hysteresis));
        let interval = config.effective_poll_interval();
        if let Some(limit) = effective.filter(|l| threshold > *l) {
            tracing::warn!(
                threshold_bytes = threshold,
                effective_limit_bytes = limit,
                "memwatch: threshold is above the effective memory limit; the kernel may act first"
            );
        }
        let bound_ticks = u32::try_from(config.max_stats_age.as_nanos() / interval.as_nanos())
            .unwrap_or(u32::MAX);
        let signal = source.signal();
        let degraded = source.degraded().map(str::to_owned);
        let (level_tx, _) = watch::channel(Level::Normal);
        let heap_profiler = config
            .diagnostics_dir
            .clone()
            .filter(|_| config.heap_profile)
            .map(HeapProfiler::new);
        Ok(Some(Watcher {
            shared: Arc::new(Shared {
                token,
                source: Mutex::new(source),
                signal,
                degraded,
                threshold,
                soft,
                soft_exit,
                limits,
                interval,
                bound_ticks,
                since_full: AtomicU32::new(0),
                estimates: AtomicU64::new(0),
                wake_files: config.wake_files.clone().unwrap_or_default(),
                force_full: AtomicBool::new(false),
                event_checks: AtomicU64::new(0),
                purge_before_fire: config.purge_before_fire,
                shutdown_budget: config.shutdown_budget,
                growth_window: (interval * 8).max(MIN_WINDOW),
                growth: AtomicU64::new(u64::MAX),
                diagnostics_dir: config.diagnostics_dir,
                heap_profiler,
                heap_profiles: AtomicU64::new(0),
                history: Mutex::new(History::default()),
                exit_deadline: config.exit_deadline,
                level: AtomicU8::new(Level::Normal as u8),
                level_tx,
                fired: AtomicBool::new(false),
                samples: AtomicU64::new(0),
                sample_errors: AtomicU64::new(0),
                purges: AtomicU64::new(0),
                last: Mutex::new(None),
            }),
        }))
    }

    /// Starts the watcher on a dedicated OS thread named `memwatch`, with the
    /// same schedule and stopping rules as [`Watcher::run`].
    ///
    /// A thread of its own means sampling goes on when the caller's runtime
    /// is starved (every worker busy or blocked), which is exactly when
    /// memory tends to run away. Between ticks the thread waits in `poll` on
    /// an eventfd that the token's waker writes, so stopping never waits out
    /// an interval and no async runtime is needed on the thread, and on an
    /// inotify descriptor watching [`Config::wake_files`] (by default the
    /// cgroup v2 `memory.events` files), so that reaching `memory.high` or
    /// `memory.max` is checked at once rather than at the next tick.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread cannot be created.
    pub fn spawn(&self) -> Result<WatcherHandle> {
        let s = &self.shared;
        let spawn_err = |source| Error::Spawn {
            name: "memwatch",
            source,
        };
        let (waiter, failed) = Waiter::new(&s.wake_files).map_err(spawn_err)?;
        for (path, error) in failed {
            tracing::warn!(path = %path.display(), %error, "memwatch: cannot watch for changes; polling only");
        }
        if waiter.watched() > 0 {
            tracing::info!(files = ?s.wake_files, "memwatch: checking at once when these files change");
        }
        let me = self.clone();
        let thread = thread::Builder::new()
            .name("memwatch".into())
            .spawn(move || me.run_blocking(&waiter))
            .map_err(|source| Error::Spawn {
                name: "memwatch",
                source,
            })?;
        Ok(WatcherHandle { thread })
    }

    fn run_blocking(&self, waiter: &Waiter) -> Stopped {
        use std::time::Instant;
        self.log_start();
        let s = &self.shared;
        let waker = waiter.waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut cancelled = std::pin::pin!(s.token.cancelled());
        let mut tick_at = Instant::now();
        // When a watched file changed: at once, or MIN_POLL_INTERVAL after
        // the previous check, so that a storm of events costs at most one
        // check per 10 ms.
        let mut event_at: Option<Instant> = None;
        let mut last_check: Option<Instant> = None;
        loop {
            // Wait for the tick, an event or the token. Polling the token's
            // future registers the waker, so a cancel ends the wait at once.
            let ticked = loop {
                if cancelled.as_mut().poll(&mut cx).is_ready() {
                    return if self.fired() {
                        Stopped::Fired
                    } else {
                        Stopped::Cancelled
                    };
                }
                let now = Instant::now();
                if now >= tick_at {
                    break true;
                }
                if event_at.is_some_and(|e| now >= e) {
                    break false;
                }
                let until = event_at.map_or(tick_at, |e| e.min(tick_at));
                if waiter.wait(until - now) == Woken::Modified {
                    let due = last_check.map_or(now, |l| (l + MIN_POLL_INTERVAL).max(now));
                    event_at = Some(event_at.map_or(due, |e| e.min(due)));
                }
            };
            if event_at.take().is_some() {
                // Something in the cgroup changed: decide on a full sample,
                // not on the bound.
                s.event_checks.fetch_add(1, Ordering::Relaxed);
                s.force_full.store(true, Ordering::Relaxed);
            }
            // A failed sample was logged and counted; the next tick retries.
            let _ = self.check();
            let now = Instant::now();
            last_check = Some(now);
            if self.fired() {
                return Stopped::Fired;
            }
            if ticked {
                // After a stall, resume the cadence from now rather than
                // bursting through the missed ticks.
                tick_at = (tick_at + s.interval).max(now);
            }
        }
    }

    fn log_start(&self) {
        let s = &self.shared;
        tracing::info!(
            threshold_bytes = s.threshold,
            soft_bytes = s.soft,
            effective_limit_bytes = s.limits.effective(),
            cgroup_limit_bytes = s.limits.cgroup,
            physical_bytes = s.limits.physical,
            poll_interval = ?s.interval,
            full_sample_every_ticks = s.bound_ticks.max(1),
            shutdown_budget = ?s.shutdown_budget,
            signal = %s.signal,
            degraded = s.degraded.as_deref(),
            "memwatch: watching"
        );
    }

    /// Samples at once, then every poll interval, until the watchdog fires
    /// or the token is cancelled. Concurrent runs are allowed and still fire
    /// exactly once.
    ///
    /// Sampling is synchronous and short (microseconds; a purge before
    /// firing takes milliseconds). Prefer [`Watcher::spawn`] in servers: a
    /// task on a starved runtime samples late.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future stops sampling between checks; no state is left
    /// half-updated, because each check runs to completion inside one poll.
    pub async fn run(&self) -> Stopped {
        self.log_start();
        let s = &self.shared;
        let mut ticks = tokio::time::interval(s.interval);
        // After a stall, sample once and resume the cadence from there rather
        // than bursting through the missed ticks.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = s.token.cancelled() => {
                    return if self.fired() { Stopped::Fired } else { Stopped::Cancelled };
                }
                // The first tick completes at once: a process that starts
                // above the threshold is caught without waiting an interval.
                _ = ticks.tick() => {}
            }
            // A failed sample was logged and counted; the next tick retries.
            let _ = self.check();
            if self.fired() {
                return Stopped::Fired;
            }
        }
    }

    /// Takes one sample and applies the decision rule (see the crate docs).
    /// [`Watcher::run`] calls this on every tick; tests and callers with
    /// their own schedule may call it directly, from any thread.
    ///
    /// # Errors
    ///
    /// The source's error if sampling failed; the failure is also logged and
    /// counted in [`Metrics::sample_errors`].
    pub fn check(&self) -> Result<Check> {
        let s = &self.shared;
        let mut source = s.source.lock();
        if let Some(check) = self.check_bound(&mut **source) {
            return Ok(check);
        }
        s.since_full.store(0, Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let mut sample = self.sample(&mut **source)?;
        let mut growth = self.growth_rate(now, sample.used);
        let mut purged = false;
        if self.over(sample.used, growth).is_some()
            && s.purge_before_fire
            && source.can_purge()
            && !self.fired()
        {
            // Dirty pages count in jemalloc's resident figure but cost the
            // kernel nothing to take back; only what survives a purge counts.
            s.purges.fetch_add(1, Ordering::Relaxed);
            purged = true;
            match source.purge() {
                Ok(()) => {
                    sample = self.sample(&mut **source)?;
                    growth = self.growth_rate(now, sample.used);
                }
                Err(error) => {
                    tracing::warn!(%error, "memwatch: purge failed; deciding on the unpurged sample")
                }
            }
        }
        *s.last.lock() = Some(sample);
        // Kept only for those who read it: the growth rate and the bundle.
        if s.shutdown_budget.is_some() || s.diagnostics_dir.is_some() {
            s.history.lock().push(now, sample.used);
        }
        s.growth
            .store(growth.map_or(u64::MAX, f64::to_bits), Ordering::Relaxed);

        let current = self.level();
        let over = self.over(sample.used, growth);
        // `fired` is set under the source lock, so a check that follows a
        // firing one always sees it and never publishes a lower level.
        let level = if self.fired() || over.is_some() {
            Level::Critical
        } else {
            match s.soft {
                Some(soft) if sample.used >= soft => Level::Elevated,
                Some(_) if current == Level::Elevated && sample.used >= s.soft_exit => {
                    Level::Elevated
                }
                _ => Level::Normal,
            }
        };
        let mut fired_now = false;
        if level == Level::Critical {
            if s.fired
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                fired_now = true;
                let all = source.read_all();
                let report = s
                    .diagnostics_dir
                    .as_ref()
                    .and_then(|_| source.allocator_report());
                self.publish(Level::Critical);
                drop(source);
                self.fire(sample, all, report, over.unwrap_or("threshold"), growth);
            }
        } else {
            // Published under the source lock so that concurrent checks
            // publish in the order they sampled.
            let old = self.publish(level);
            drop(source);
            // Only the check that made the change sees it, so one turn to
            // elevated writes one profile. Written outside the lock: a dump
            // takes milliseconds and other checks need not wait for it.
            if old == Level::Normal && level == Level::Elevated {
                self.heap_profile("elevated");
            }
        }
        Ok(Check {
            sample,
            level: self.level(),
            purged,
            fired_now,
            estimated: false,
            growth_bytes_per_sec: growth,
        })
    }

    /// The sustained growth rate ending with `used` at `now`, when a
    /// shutdown budget is configured.
    fn growth_rate(&self, now: tokio::time::Instant, used: u64) -> Option<f64> {
        let s = &self.shared;
        s.shutdown_budget?;
        s.history.lock().sustained_rate(s.growth_window, now, used)
    }

    /// Why `used` growing at `growth` calls for firing: `threshold` when it
    /// is there, `projected` when the growth reaches it within the shutdown
    /// budget; `None` otherwise.
    fn over(&self, used: u64, growth: Option<f64>) -> Option<&'static str> {
        let s = &self.shared;
        if used >= s.threshold {
            return Some("threshold");
        }
        let budget = s.shutdown_budget?.as_secs_f64();
        let projected = used as f64 + growth? * budget;
        (projected >= s.threshold as f64).then_some("projected")
    }

    /// Bytes the configured budget's worth of the last growth rate adds.
    fn projected_growth(&self) -> u64 {
        let s = &self.shared;
        let (Some(budget), bits) = (s.shutdown_budget, s.growth.load(Ordering::Relaxed)) else {
            return 0;
        };
        if bits == u64::MAX {
            return 0;
        }
        (f64::from_bits(bits) * budget.as_secs_f64()) as u64
    }

    /// Answers this tick from the source's cheap upper bound when that is
    /// safe: the level is normal, the last full sample is recent enough, and
    /// the bound is below the lowest level the watcher acts on (the soft
    /// level, or the threshold without one). The caller holds the source lock.
    fn check_bound(&self, source: &mut dyn MemorySource) -> Option<Check> {
        let s = &self.shared;
        if s.force_full.swap(false, Ordering::Relaxed) {
            return None;
        }
        let since = s.since_full.load(Ordering::Relaxed);
        if since.saturating_add(1) >= s.bound_ticks || self.fired() || self.level() != Level::Normal
        {
            return None;
        }
        let last = (*s.last.lock())?;
        // An error here is not counted: the full sample that follows reads
        // the same files and reports it if it persists.
        let bound = source.upper_bound().ok()??;
        // With a shutdown budget, the growth the budget would see counts as
        // if it had happened already.
        let reach = bound.saturating_add(self.projected_growth());
        if reach >= s.soft.unwrap_or(s.threshold) {
            return None;
        }
        s.since_full.store(since + 1, Ordering::Relaxed);
        s.estimates.fetch_add(1, Ordering::Relaxed);
        Some(Check {
            sample: last,
            level: Level::Normal,
            purged: false,
            fired_now: false,
            estimated: true,
            growth_bytes_per_sec: None,
        })
    }

    fn sample(&self, source: &mut dyn MemorySource) -> Result<Sample> {
        let s = &self.shared;
        match source.sample() {
            Ok(sample) => {
                s.samples.fetch_add(1, Ordering::Relaxed);
                Ok(sample)
            }
            Err(error) => {
                let n = s.sample_errors.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the 1st, 2nd, 4th, 8th... failure, so that a broken
                // source is visible without flooding the log at 10 ms.
                if n.is_power_of_two() {
                    tracing::warn!(%error, failures = n, "memwatch: sampling failed");
                }
                Err(error)
            }
        }
    }

    /// Writes a heap profile when they were requested: the path, or why
    /// none was written (both logged); `None` when not requested.
    fn heap_profile(&self, event: &'static str) -> Option<Result<PathBuf, String>> {
        let s = &self.shared;
        let written = s.heap_profiler.as_ref()?.write(event);
        match &written {
            Ok(path) => {
                s.heap_profiles.fetch_add(1, Ordering::Relaxed);
                tracing::info!(event, path = %path.display(), "memwatch: heap profile written");
            }
            Err(reason) => tracing::warn!(
                event,
                reason = reason.as_str(),
                "memwatch: no heap profile written"
            ),
        }
        Some(written)
    }

    /// Publishes `level` and returns the level it replaced.
    fn publish(&self, level: Level) -> Level {
        let old = Level::from_u8(self.shared.level.swap(level as u8, Ordering::AcqRel));
        if old != level {
            self.shared.level_tx.send_replace(level);
            if level != Level::Critical {
                tracing::info!(
                    from = old.as_str(),
                    to = level.as_str(),
                    "memwatch: level changed"
                );
            }
        }
        old
    }

    fn fire(
        &self,
        sample: Sample,
        all: Readings,
        allocator: Option<String>,
        reason: &'static str,
        growth: Option<f64>,
    ) {
        let s = &self.shared;
        let je = all.jemalloc;
        tracing::warn!(
            reason,
            growth_bytes_per_sec = growth,
            shutdown_budget = ?s.shutdown_budget,
            signal = %s.signal,
            used_bytes = sample.used,
            threshold_bytes = s.threshold,
            effective_limit_bytes = s.limits.effective(),
            cgroup_limit_bytes = s.limits.cgroup,
            configured_limit_bytes = s.limits.configured,
            physical_bytes = s.limits.physical,
            jemalloc_allocated_bytes = je.map(|j| j.allocated),
            jemalloc_active_bytes = je.map(|j| j.active),
            jemalloc_resident_bytes = je.map(|j| j.resident),
            jemalloc_mapped_bytes = je.map(|j| j.mapped),
            jemalloc_retained_bytes = je.map(|j| j.retained),
            rss_bytes = all.rss,
            cgroup_working_set_bytes = all.cgroup_working_set,
            purges = s.purges.load(Ordering::Relaxed),
            exit_code = EXIT_CODE_MEMORY_PRESSURE,
            "memwatch: memory pressure shutdown"
        );
        // Before the cancel too: the heap as it is when firing, before the
        // shutdown starts to free it.
        let heap_profile = self.heap_profile("fired");
        if let Some(dir) = &s.diagnostics_dir {
            // Written before the cancel, so that a process that exits as
            // soon as its shutdown is done still leaves the whole bundle.
            let bundle = Bundle {
                signal: s.signal,
                degraded: s.degraded.as_deref(),
                reason,
                growth_bytes_per_sec: growth,
                sample,
                all,
                threshold: s.threshold,
                soft: s.soft,
                limits: s.limits,
                interval_ms: u64::try_from(s.interval.as_millis()).unwrap_or(u64::MAX),
                samples: s.samples.load(Ordering::Relaxed),
                estimates: s.estimates.load(Ordering::Relaxed),
                purges: s.purges.load(Ordering::Relaxed),
                history: &s.history.lock(),
                allocator,
                heap_profile,
            };
            match bundle.write(dir) {
                Ok(path) => tracing::info!(path = %path.display(), "memwatch: diagnostics written"),
                Err(error) => tracing::warn!(
                    %error,
                    dir = %dir.display(),
                    "memwatch: cannot write the diagnostics bundle"
                ),
            }
        }
        s.token.cancel();
        if let Some(grace) = s.exit_deadline {
            let spawned = thread::Builder::new()
                .name("memwatch-deadline".into())
                .spawn(move || {
                    thread::sleep(grace);
                    tracing::error!(
                        grace = ?grace,
                        exit_code = EXIT_CODE_MEMORY_PRESSURE,
                        "memwatch: shutdown did not finish within the deadline; exiting"
                    );
                    // The one place this crate ends the process, by explicit
                    // opt-in: a hung shutdown would otherwise run into the
                    // kernel OOM killer, which is what the watchdog is for.
                    std::process::exit(EXIT_CODE_MEMORY_PRESSURE);
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "memwatch: cannot start the exit-deadline thread");
            }
        }
    }

    /// True once the watchdog has fired. `main` uses it to choose
    /// [`EXIT_CODE_MEMORY_PRESSURE`] even when its own shutdown failed.
    pub fn fired(&self) -> bool {
        self.shared.fired.load(Ordering::Acquire)
    }

    /// The current level.
    pub fn level(&self) -> Level {
        Level::from_u8(self.shared.level.load(Ordering::Acquire))
    }

    /// True at or above the soft level: one atomic load, cheap enough for
    /// admission control on every request.
    pub fn is_under_pressure(&self) -> bool {
        self.shared.level.load(Ordering::Relaxed) >= Level::Elevated as u8
    }

    /// A receiver of level changes (`changed().await`, `borrow()`).
    pub fn subscribe(&self) -> LevelReceiver {
        self.shared.level_tx.subscribe()
    }

    /// The token this watcher cancels.
    pub fn token(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// The poll interval in use (the configured one raised to the floor).
    pub fn poll_interval(&self) -> Duration {
        self.shared.interval
    }

    /// The resolved threshold in bytes.
    pub fn threshold_bytes(&self) -> u64 {
        self.shared.threshold
    }

    /// The signal watched, after any start-up fallback.
    pub fn signal(&self) -> Signal {
        self.shared.signal
    }

    /// Why the requested signal is not the one watched, if it fell back.
    pub fn degraded(&self) -> Option<&str> {
        self.shared.degraded.as_deref()
    }

    /// A snapshot for exporters.
    pub fn metrics(&self) -> Metrics {
        let s = &self.shared;
        let last = *s.last.lock();
        Metrics {
            signal: s.signal,
            degraded: s.degraded.clone(),
            threshold_bytes: s.threshold,
            soft_bytes: s.soft,
            effective_limit: s.limits.effective(),
            poll_interval: s.interval,
            last_sample: last,
            level: self.level(),
            headroom_bytes: last.map(|l| s.threshold.saturating_sub(l.used)),
            growth_bytes_per_sec: match s.growth.load(Ordering::Relaxed) {
                u64::MAX => None,
                bits => Some(f64::from_bits(bits)),
            },
            samples: s.samples.load(Ordering::Relaxed),
            estimates: s.estimates.load(Ordering::Relaxed),
            event_checks: s.event_checks.load(Ordering::Relaxed),
            sample_errors: s.sample_errors.load(Ordering::Relaxed),
            purges: s.purges.load(Ordering::Relaxed),
            heap_profiles: s.heap_profiles.load(Ordering::Relaxed),
            fired: self.fired(),
        }
    }
}
