//! Size-triggered background compaction for append-only files, and a rewrite
//! helper that survives a crash at any moment.
//!
//! An append-only file grows with every write until something rewrites it as
//! the current state. This crate decides *when*: a [`Compactor`] checks the
//! file's size on an interval and calls your async compaction callback when
//! the size passes a threshold (optionally also a growth percentage over the
//! size after the last compaction, Redis's rule), with a cooldown after
//! success, exponential back-off after failures, an optional free-disk check,
//! pause/resume, a coalescing "compact now", and a status snapshot shaped like
//! Redis's INFO persistence. Every setting can be changed at run time through
//! the [`Handle`]. It also helps with *how*: [`Rewrite`] writes the compacted
//! state beside the live file, carries over the bytes appended meanwhile and
//! swaps the result in with one fsynced rename.
//!
//! The library spawns nothing: you run or spawn the future of
//! [`Compactor::run`] and own its cancellation token.
//!
//! # Example
//!
//! ```
//! use std::io::Write;
//! use aof_compactor::{
//!     bytesize::ByteSize, CompactionOutcome, Compactor, Config, Rewrite, SizeSource,
//! };
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = dir.path().join("appendonly.aof");
//! std::fs::write(&log, "set a 1\nset a 2\nset a 3\n")?;
//! aof_compactor::clean_leftovers(&log)?; // at start, before any rewrite
//!
//! let config = Config { min_size: ByteSize::mb(256), ..Default::default() };
//! let path = log.clone();
//! let (compactor, handle) = Compactor::new(config, SizeSource::Path(log.clone()), move |_ctx| {
//!     let path = path.clone();
//!     async move {
//!         // A real server would snapshot its state while its appender is
//!         // paused; here the state is known.
//!         let mut rewrite = Rewrite::begin(&path)?;
//!         rewrite.write_all(b"set a 3\n")?;
//!         let committed = rewrite.commit()?; // with the appender blocked
//!         Ok::<_, aof_compactor::BoxError>(CompactionOutcome::new(committed.len))
//!     }
//! })?;
//! let shutdown = CancellationToken::new();
//! let task = tokio::spawn(compactor.run(shutdown.clone()));
//!
//! let report = handle.compact_now().await?;
//! assert_eq!(report.result.map(|o| o.new_size), Ok(8));
//! assert_eq!(std::fs::read_to_string(&log)?, "set a 3\n");
//! assert_eq!(handle.status().runs, 1);
//!
//! shutdown.cancel();
//! task.await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! **Trigger.** Every `check_interval` (first check one interval after
//! [`Compactor::run`] starts; after a run, one interval after it ends) the
//! size is read from the [`SizeSource`]. An automatic run starts when all of
//! these hold:
//!
//! * the compactor is not paused and `min_size > 0`;
//! * `size > min_size` (strictly; a file exactly at the threshold is left alone);
//! * if `growth_percent = Some(p)`: `size * 100 / max(base, 1) - 100 >= p`,
//!   where `base` is the `new_size` reported by the last successful run (zero
//!   at start unless [`Compactor::with_base_size`] sets it);
//! * no cooldown: at least `cooldown` has passed since the last success ended;
//! * no back-off: with `n` consecutive failures and `n > backoff_after_failures`,
//!   at least `min(backoff_initial * 2^(n - backoff_after_failures - 1), backoff_max)`
//!   has passed since the last failure ended.
//!
//! A size that cannot be read skips the check and is shown in
//! [`Status::size_error`]; it is not a failed run.
//!
//! **Runs.** At most one run is in flight. [`Handle::compact_now`] starts one
//! regardless of threshold, pause, cooldown and back-off (resetting the
//! consecutive-failure count first), or joins the run already in flight. If
//! `min_free_percent = Some(p)` and the disk has less than `size * p / 100`
//! bytes free, the run fails with [`RunFailure::NoSpace`] without calling the
//! callback. A callback error or panic is a failure; a cancelled run that
//! returns an error is reported as [`RunFailure::Cancelled`] and does not
//! count towards back-off. A success sets the base to the reported `new_size`.
//!
//! **Reconfiguration.** [`Handle::set_config`] validates, then replaces the
//! whole configuration; the next check is rescheduled to one new interval
//! after the previous check, and a run in flight continues unaffected.
//!
//! **Shutdown.** When the token passed to [`Compactor::run`] is cancelled, no
//! new run starts; a run in flight is awaited ([`InFlight::Wait`], default)
//! or has its token cancelled and is then awaited ([`InFlight::Cancel`]).
//!
//! **Rewrite.** See [`Rewrite`]: the live file is never modified in place;
//! the new file is complete and fsynced before one `rename(2)` replaces the
//! old one, then the directory is fsynced. A crash leaves either file whole.
//!
//! **Pacing.** By default ([`Pacing::adaptive`]) the compacted state is
//! written back in steps that end on page boundaries, of at most
//! [`Rewrite::sync_every`] bytes (1 MiB), with at most [`Pacing::in_flight`]
//! steps (2) under write-back: the writer waits for the oldest before
//! starting another. The first step is [`Pacing::min_step`] (32 KiB), and
//! each step after which the live file has not grown doubles the next. If it
//! grew, the next step is `min_step` and only one step is under write-back
//! at a time, which holds until the file has not grown for [`Pacing::hold`]
//! (1 s); after that the steps double again (never above `sync_every`).
//! [`Pacing::off`] starts write-back and never waits. [`Rewrite::max_rate`]
//! is a fixed cap on top of either.
//!
//! **The appender's gate.** An appender that marks its fsyncs on a
//! [`SyncGate`] (`gate.sync_data(&file)`) and gives the gate to its rewrites
//! ([`Rewrite::sync_gate`]) gets more: with adaptive pacing a step does not
//! start while a sync is marked (it waits for the sync, at most
//! [`DEFAULT_GATE_WAIT`], 20 ms), the release of the replaced file waits the
//! same way before each of its steps. Without the gate the pacer knows of
//! the appender only by the live file's growth, and a step can start between
//! any two of the requests one `fdatasync` is made of. The gate is checked
//! only when a step starts; a sync that begins after that still finds it.
//!
//! **Releasing the replaced file.** [`Committed::replaced`] is the file the
//! commit replaced; [`Replaced::release`], called once the appender is
//! released, shrinks it in steps with an `fdatasync` each, so that its
//! blocks are not freed in one journal commit (one discard as long as the
//! file, on a file system mounted with `discard`). The steps are paced by
//! the same rule as the write-back: from [`RELEASE_MIN_STEP`] (64 KiB),
//! doubling up to 1 MiB while the live file does not grow, back to 64 KiB
//! while it does. It shrinks only a file no name points to any more. With a
//! [`SyncGate`], each step first waits at the gate.
//!
//! # Crate features
//!
//! None. The crate asks tokio for `sync`, `time`, `macros` and `rt` (the last
//! for [`Rewrite::commit_async`]), tokio-util for its always-on
//! `CancellationToken`, and needs Unix (`statvfs`, directory fsync); it is
//! built and tested on Linux only.
//!
//! # Stability
//!
//! The crate is 0.x: a minor release may break the API, a patch release does
//! not. The result and status types ([`CompactionOutcome`],
//! [`CompactionContext`], [`RunReport`], [`Status`], [`Committed`],
//! [`Error`], [`RunFailure`], [`Trigger`], [`InFlight`]) are
//! `#[non_exhaustive]` so that they can grow in a patch release; build a
//! [`CompactionOutcome`] with [`CompactionOutcome::new`]. [`Config`] keeps
//! public fields for `Config { .., ..Default::default() }`: always write the
//! `..Default::default()`. The trigger rule above is part of the API.

mod compactor;
mod config;
mod error;
mod gate;
mod pacing;
mod rewrite;
mod source;

pub use bytesize;

pub use crate::compactor::{
    BoxError, CompactionContext, CompactionOutcome, Compactor, Handle, InFlight, RunFailure,
    RunReport, Status, Trigger,
};
pub use crate::config::Config;
pub use crate::error::Error;
pub use crate::gate::{SyncGate, SyncGuard, DEFAULT_GATE_WAIT};
pub use crate::pacing::{
    Pacing, PacingStats, DEFAULT_GATED_MIN_STEP, DEFAULT_GATED_REST, DEFAULT_HOLD,
    DEFAULT_IN_FLIGHT, DEFAULT_MIN_STEP, DEFAULT_REST,
};
pub use crate::rewrite::{
    clean_leftovers, Committed, Replaced, Rewrite, DEFAULT_RELEASE_STEP, DEFAULT_SYNC_EVERY,
    RELEASE_MIN_STEP,
};
pub use crate::source::{DiskSpace, SizeSource, Statvfs};

/// The README's code blocks, compiled and run as doc tests so that the
/// snippet a user copies is one that builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
