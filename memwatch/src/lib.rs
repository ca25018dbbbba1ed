//! Cancel a [`CancellationToken`]
//! exactly once when the process's memory crosses a threshold, so that a
//! server shuts down in order and exits with [`EXIT_CODE_MEMORY_PRESSURE`]
//! instead of being SIGKILLed by the kernel's OOM killer with torn files and
//! no log. Before that, a soft level is published for admission control.
//! The threshold may be a fraction of the effective limit, which is derived
//! from cgroup v1/v2 limits and physical memory; the signal is jemalloc's own
//! statistics when jemalloc is the global allocator (verified at start),
//! process RSS, or the cgroup working set, or any [`MemorySource`].
//!
//! # Example
//!
//! ```
//! use memwatch::{CancellationToken, Config, Signal, Threshold, Watcher, EXIT_CODE_MEMORY_PRESSURE};
//!
//! # fn main() -> Result<(), memwatch::Error> {
//! let token = CancellationToken::new();
//! // In a server: `let config = Config::from_env()?;`
//! let config = Config {
//!     threshold: Some(Threshold::Fraction(0.9)),
//!     soft: Some(Threshold::Fraction(0.8)),
//!     signal: Signal::Rss,
//!     ..Default::default()
//! };
//! // `None` when the config is disabled: nothing to start.
//! let watcher = Watcher::new(config, token.clone())?;
//! let handle = watcher.as_ref().map(Watcher::spawn).transpose()?;
//!
//! // ... run the server until `token` is cancelled, by a signal handler or
//! // by the watcher; then shut down in order. Here we stop at once.
//! token.cancel();
//! if let Some(h) = handle {
//!     h.join();
//! }
//! let code = if watcher.as_ref().is_some_and(Watcher::fired) {
//!     EXIT_CODE_MEMORY_PRESSURE
//! } else {
//!     0
//! };
//! assert_eq!(code, 0);
//! # Ok(())
//! # }
//! ```
//!
//! The complete `main` pattern, with jemalloc as the global allocator and a
//! real allocation that crosses the threshold, is `examples/shutdown_on_pressure.rs`.
//!
//! # Semantics
//!
//! - **Effective limit** = the smallest of [`Config::limit`], every
//!   `memory.max` and `memory.high` (v2) or `memory.limit_in_bytes` (v1)
//!   from the process's cgroup up to the hierarchy root, and physical memory.
//!   A [`Threshold::Fraction`] is resolved against it once, at construction.
//! - **Sampling**: one sample as soon as a run starts, then one per poll
//!   interval (default 1 s, raised to at least 10 ms; the effective value is
//!   logged). Missed ticks are not replayed.
//! - **Cheap ticks**: a source may offer a cheap upper bound
//!   ([`MemorySource::upper_bound`]). While the level is normal and that
//!   bound is below the soft level (or the threshold), a tick is answered
//!   from it without a full sample, for at most [`Config::max_stats_age`]
//!   (default 100 ms) since the last full sample. [`SystemSource`] bounds
//!   its jemalloc signals by `stats.resident` at the last full sample plus
//!   every rise of RSS since (with a small allowance), so growth that
//!   becomes resident is acted on at the next tick and only the `epoch`
//!   refresh is saved; address space handed out but never written is seen
//!   at the next full sample.
//! - **Trigger**: the watchdog fires when a sample is `>=` the threshold.
//!   For [`Signal::JemallocResident`] (and `Auto` resolved to it), a sample at
//!   or above the threshold first causes `arena.<all>.purge` and a second
//!   sample; it fires only if that second sample is still at or above
//!   (unless [`Config::purge_before_fire`] is `false`). Dirty pages count in
//!   `resident` but the kernel can take them back for free.
//! - **Firing** happens at most once per watcher, even with concurrent
//!   [`Watcher::run`]s or [`Watcher::check`]s (an atomic compare-and-swap):
//!   one structured warning with every signal value and the limits, the level
//!   becomes [`Level::Critical`], the token is cancelled, and all runs end.
//!   [`Watcher::fired`] then tells `main` to exit with
//!   [`EXIT_CODE_MEMORY_PRESSURE`] (2) whatever its shutdown returned.
//! - **Soft level**: at or above [`Config::soft`] the level is
//!   [`Level::Elevated`]; it returns to [`Level::Normal`] only below
//!   `soft - hysteresis × threshold`. Changes go to a `watch` channel
//!   ([`Watcher::subscribe`]) and to an atomic read by
//!   [`Watcher::is_under_pressure`].
//! - **Wake-ups**: the spawned thread also checks at once (a full sample, at
//!   most once per 10 ms) when a file of [`Config::wake_files`] is modified;
//!   by default the `memory.events` of each cgroup v2 directory from the
//!   process's cgroup up to the root, which the kernel modifies when a
//!   cgroup reaches `memory.high` or `memory.max` or runs the OOM killer.
//! - **Projection** (opt-in, [`Config::shutdown_budget`]): the watchdog also
//!   fires when `used + rate × budget >= threshold`, `rate` being the growth
//!   sustained over the last `max(8 × interval, 1 s)` of full samples (the
//!   smaller of the two halves' rates, so one jump projects nothing). The
//!   bound above counts the budget's worth of that growth too. The firing
//!   log and bundle say `reason=projected` and the rate.
//! - **Diagnostics** (opt-in, [`Config::diagnostics_dir`]): on firing, before
//!   the token is cancelled, one JSON bundle with the firing sample, every
//!   signal, the limits, the last 64 full samples and jemalloc's
//!   `malloc_stats_print` report is written and fsynced; the directory keeps
//!   the newest [`DIAGNOSTICS_KEEP`]. A failure to write it is logged and
//!   does not delay the shutdown further.
//! - **Heap profiles** (opt-in, [`Config::heap_profile`], feature
//!   `heap-profile`): jemalloc's own `prof.dump` into the diagnostics
//!   directory when the level turns [`Level::Elevated`] and when the
//!   watchdog fires (before the token is cancelled); the bundle names the
//!   firing's profile, or says why none could be written (profiling not
//!   built, `prof:true` not set at start, jemalloc not the global allocator).
//! - **Cancellation**: cancelling the token from outside ends every run
//!   without firing.
//! - **Disabled**: no threshold or a zero one makes [`Watcher::new`] return
//!   `None`; no thread or task exists.
//! - **Self-check**: a jemalloc signal needs jemalloc statistics compiled in
//!   and jemalloc serving Rust allocations (a 4 MiB probe must move
//!   `thread.allocated`). Otherwise the reason is logged at error level,
//!   kept in [`Watcher::degraded`] and [`Metrics::degraded`], and process RSS
//!   is watched instead. A number that cannot move is never watched.
//! - **Threads**: the library starts a thread only when asked:
//!   [`Watcher::spawn`] (the sampler) and, after firing with
//!   [`Config::exit_deadline`] set, a `memwatch-deadline` thread that calls
//!   `std::process::exit(2)` if the process is still alive when the grace
//!   period ends. That opt-in thread is the only place this crate exits.
//! - The library never installs a global allocator.
//!
//! # Crate features
//!
//! - `jemalloc` (default): jemalloc signals and the purge step, through
//!   `tikv-jemalloc-ctl` and `tikv-jemalloc-sys` with statistics enabled,
//!   and `Jemalloc` re-exported for the application's
//!   `#[global_allocator]` (which memwatch never sets). Without the
//!   feature, jemalloc signals fall back to RSS as above.
//! - `heap-profile`: `jemalloc`, with jemalloc built with profiling so that
//!   [`Config::heap_profile`] can write heap profiles. jemalloc samples
//!   nothing unless the process starts with `prof:true` in its options;
//!   with it, sampling slows allocation (measured in the README).
//!
//! tokio is used with its `macros`, `sync` and `time` features only, and
//! tokio-util with none; [`CancellationToken`] is re-exported.
//!
//! # Stability
//!
//! Before 1.0, a minor release (0.x → 0.x+1) may break the API; a patch
//! release does not. [`Metrics`], [`Check`], [`Signal`] and [`Error`] are
//! `#[non_exhaustive]` and may gain fields or variants in any release: read
//! their fields and match them with a wildcard arm. [`Config`] gains fields
//! in minor releases only; build it with `..Default::default()` and such a
//! release does not break you. [`Sample`], [`Readings`],
//! [`JemallocStats`] and [`Limits`] stay exhaustive so that a custom
//! [`MemorySource`] can build them; they change only in a minor release.
//! The environment variables, the bundle's existing keys, the exit code 2
//! and the file names are kept across patch releases.

// The signals come from /proc and cgroup files and the spawned thread waits
// on an eventfd and inotify: there is nothing to fall back to elsewhere.
#[cfg(not(target_os = "linux"))]
compile_error!("memwatch supports Linux only (it reads /proc and cgroup files)");

mod cgroup;
mod config;
mod diagnostics;
mod error;
mod growth;
mod profile;
mod source;
mod wake;
mod watcher;

// The README's code is compiled as doc tests, so the snippet a user copies
// is one that builds. It sets jemalloc as the global allocator, hence the
// feature.
#[cfg(all(doctest, feature = "jemalloc"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use cgroup::{physical_memory, Cgroup, CgroupRoots, CgroupVersion, Limits};
pub use config::{
    env, Config, Signal, Threshold, DEFAULT_MAX_STATS_AGE, DEFAULT_POLL_INTERVAL, MIN_POLL_INTERVAL,
};
pub use diagnostics::{DIAGNOSTICS_KEEP, MAX_ALLOCATOR_REPORT};
pub use error::{Error, Result};
#[cfg(feature = "jemalloc")]
pub use source::jemalloc::JemallocReader;
pub use source::{
    CgroupReader, JemallocStats, MemorySource, Readings, RssReader, Sample, SystemSource,
};
/// jemalloc as a Rust allocator, for the application's
/// `#[global_allocator]` (feature `jemalloc`). memwatch never sets it.
#[cfg(feature = "jemalloc")]
pub use tikv_jemallocator::Jemalloc;
/// The token the watcher cancels, re-exported so that callers need no
/// direct `tokio-util` dependency (and cannot pick a mismatched version).
pub use tokio_util::sync::CancellationToken;
pub use watcher::{
    Check, Level, LevelReceiver, Metrics, Stopped, Watcher, WatcherHandle,
    EXIT_CODE_MEMORY_PRESSURE,
};
