//! AOFSHRINK, automatic and by hand: `aof-compactor` decides when (size
//! threshold, growth percentage, cooldown, back-off) and provides the
//! crash-safe rewrite; this module supplies the snapshot.
//!
//! The rewrite follows buntdb rather than Tile38. The live file's size is
//! recorded ([`Rewrite::begin_at`]); the live items are written in batches
//! of [`BATCH`], each under a short read lock, so writers proceed between
//! batches; the bytes the live file gained meanwhile are copied after the
//! snapshot ([`Rewrite::catch_up`] without a lock, then
//! [`Rewrite::commit`] under the write lock), and the result replaces the
//! live file with one fsynced rename. No write is held in memory, and a crash
//! at any point leaves either the old file or the new one.
//!
//! Replaying the carried-over tail over a snapshot that may already contain
//! some of its effects converges to the right state, because every logged
//! command sets a final value (SET, FSET, DEL, PDEL, DROP, FLUSHDB,
//! PEXPIREAT, PERSIST), and the replay ignores a missing key or id or a
//! blocked NX/XX; this is the argument Tile38 relies on for its shrink log.
//!
//! RENAME is the exception: it moves a whole collection, so an object can
//! jump from a key the walk has not reached to one it has passed and be in
//! neither part of the snapshot, and replaying `rename` over a state that
//! already shows later writes would drop them. So the walk reads the
//! database's move count with each batch, and when a move happened during
//! it, the rewrite is thrown away and starts again (at most
//! [`ATTEMPTS`] times; RENAME is rare next to the writes a shrink carries).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aof_compactor::{bytesize::ByteSize, CompactionOutcome, Compactor, Rewrite, SizeSource};
use tokio_util::task::TaskTracker;

use crate::aof::{AofError, AOF_NAME};
use crate::clock::now_ms;
use crate::cmd::set::snapshot_batch;
use crate::repl::status::shrink_header;
use crate::settings::Settings;
use crate::state::Shared;

/// Items written per read-lock hold.
const BATCH: usize = 1000;

/// Rewrites started before a shrink gives up because every one of them saw
/// a RENAME during its walk.
const ATTEMPTS: u32 = 3;

/// Why a shrink did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShrinkError {
    /// Another shrink (or a follower's full sync) owns the file.
    #[error("shrink already in progress")]
    Busy,
    /// The log failed before or during the shrink; writes are disabled.
    #[error(transparent)]
    Aof(#[from] AofError),
    /// A step of the rewrite failed; the live file is unchanged unless the
    /// log says otherwise.
    #[error("{0}")]
    Io(String),
    /// A RENAME ran during the walk of every attempt; the live file is
    /// unchanged and the next shrink tries again.
    #[error("a RENAME ran during each of {ATTEMPTS} attempts; the shrink was abandoned")]
    Moved,
}

/// What one shrink did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Report {
    /// File size when the shrink started.
    pub(crate) before: u64,
    /// Snapshot bytes written.
    pub(crate) snapshot: u64,
    /// Bytes of writes made during the shrink, carried over.
    pub(crate) tail: u64,
    /// File size after.
    pub(crate) after: u64,
}

struct Busy<'a>(&'a Shared);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.shrinking.store(false, Ordering::SeqCst);
    }
}

/// Rewrites the file. Blocking: run it on a blocking thread.
///
/// # Errors
///
/// Another shrink is running, writes are disabled, or an I/O step failed.
/// Before the rename the live file is untouched; if reopening after the
/// rename fails, writes are disabled (the error is latched in the log).
pub(crate) fn shrink(shared: &Shared) -> Result<Report, ShrinkError> {
    if shared.shrinking.swap(true, Ordering::SeqCst) {
        return Err(ShrinkError::Busy);
    }
    let _busy = Busy(shared);
    let started = Instant::now();
    let mut result = rewrite(shared);
    for _ in 1..ATTEMPTS {
        if !matches!(result, Err(ShrinkError::Moved)) {
            break;
        }
        tracing::info!("a RENAME ran during the shrink's walk; starting the shrink again");
        result = rewrite(shared);
    }
    match &result {
        Ok(r) => {
            let secs = started.elapsed().as_secs_f64();
            shared.metrics.shrinks.inc();
            shared.metrics.shrink_seconds.observe(secs);
            tracing::info!(
                before = r.before,
                after = r.after,
                snapshot = r.snapshot,
                tail = r.tail,
                secs,
                "aof shrink finished"
            );
        }
        Err(e) => {
            shared.metrics.shrink_failures.inc();
            tracing::error!(error = %e, "aof shrink failed; the live file is unchanged");
        }
    }
    result
}

fn rewrite(shared: &Shared) -> Result<Report, ShrinkError> {
    let live = shared.opts.dir.join(AOF_NAME);
    let (start, start_offset, moves, gate) = {
        // The rewrite copies the live file's bytes from `start` on, so the
        // file must hold every committed command: write what is pending.
        let mut core = shared.core.write();
        core.writable()?;
        core.aof.flush()?;
        (
            core.aof.size(),
            core.aof.offset(),
            core.db.moves(),
            core.aof.sync_gate(),
        )
    };
    let max_rate = shared.settings.read().aofshrink_max_rate;
    let mut rw = Rewrite::begin_at(&live, start)
        .map_err(|e| ShrinkError::Io(e.to_string()))?
        .max_rate(max_rate)
        .sync_gate(gate);
    // The new file starts with the replication header at the offset where
    // the carried-over tail begins; its base length is known only after the
    // snapshot, so a placeholder of the same fixed length is patched below.
    let header = shrink_header(shared, start_offset, 0);
    if let Some(h) = &header {
        rw.write_all(h)
            .map_err(|e| ShrinkError::Io(format!("write {}: {e}", rw.temp_path().display())))?;
    }
    let mut buf = Vec::with_capacity(1 << 20);
    let mut after: Option<(String, String)> = None;
    let mut snapshot = 0u64;
    loop {
        let next = {
            let core = shared.core.read();
            if core.db.moves() != moves {
                // Dropping `rw` removes the temporary file.
                return Err(ShrinkError::Moved);
            }
            snapshot_batch(
                &core.db,
                after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())),
                i64::try_from(now_ms()).unwrap_or(i64::MAX),
                BATCH,
                &mut buf,
            )
        };
        rw.write_all(&buf)
            .map_err(|e| ShrinkError::Io(format!("write {}: {e}", rw.temp_path().display())))?;
        snapshot += buf.len() as u64;
        buf.clear();
        match next {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    // Hooks follow the objects, so that a GET area can be resolved on replay.
    if let Some(h) = shared.hooks.get() {
        crate::cmd::hooks::snapshot(h, &mut buf);
        rw.write_all(&buf)
            .map_err(|e| ShrinkError::Io(format!("write {}: {e}", rw.temp_path().display())))?;
        snapshot += buf.len() as u64;
        buf.clear();
    }
    // Copy most of the tail without blocking writers, so that the part
    // done under the write lock is short.
    rw.catch_up().map_err(|e| ShrinkError::Io(e.to_string()))?;
    if header.is_some() {
        if let Some(h) = shrink_header(shared, start_offset, snapshot) {
            use std::os::unix::fs::FileExt as _;
            let patch = std::fs::OpenOptions::new()
                .write(true)
                .open(rw.temp_path())
                .and_then(|f| f.write_all_at(&h, 0).and_then(|()| f.sync_data()))
                .map_err(|e| {
                    ShrinkError::Io(format!("write header {}: {e}", rw.temp_path().display()))
                });
            patch?;
        }
    }
    let mut core = shared.core.write();
    core.writable()?;
    core.aof.flush()?;
    let before = core.aof.size();
    let committed = match rw.commit() {
        Ok(c) => c,
        Err(e) => {
            // The rename happened if the file on disk is no longer the one we
            // append to; then only the new file may be written.
            let msg = e.to_string();
            if let Err(re) = core.aof.reopen_if_replaced() {
                core.aof
                    .poison(format!("after a failed shrink commit ({msg}): {re}"));
            }
            return Err(ShrinkError::Io(msg));
        }
    };
    let aof_compactor::Committed {
        file,
        len: after_len,
        tail_len,
        replaced,
        ..
    } = committed;
    core.aof.replace(file, after_len);
    *shared.last_shrink.lock() = Some((start_offset, after_len));
    drop(core);
    // `replaced` holds the old file open, so its blocks were not freed when
    // the log let go of it under the lock; they are freed here, outside it,
    // a step at a time, so that a large file's freeing does not queue in
    // front of the next appends' fsyncs as one long discard.
    if let Err(e) = replaced.release() {
        tracing::warn!(error = %e, "freeing the replaced append-only file in steps failed; it is freed when closed");
    }
    Ok(Report {
        before,
        snapshot,
        tail: tail_len,
        after: after_len,
    })
}

fn compactor_config(s: &Settings, check: Duration, cooldown: Duration) -> aof_compactor::Config {
    aof_compactor::Config {
        min_size: ByteSize(s.aofshrink_min_size),
        growth_percent: s.growth_percent(),
        check_interval: check,
        cooldown,
        ..Default::default()
    }
}

/// Removes leftovers of interrupted rewrites and starts the compactor task.
///
/// # Errors
///
/// Leftovers cannot be removed, or the configuration is invalid.
pub(crate) fn start(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    check: Duration,
    cooldown: Duration,
) -> anyhow::Result<()> {
    let live = shared.opts.dir.join(AOF_NAME);
    aof_compactor::clean_leftovers(&live)?;
    let cfg = compactor_config(&shared.settings.read(), check, cooldown);
    let s = shared.clone();
    let (compactor, handle) = Compactor::new(cfg, SizeSource::Path(live), move |_ctx| {
        let s = s.clone();
        async move {
            let r = tokio::task::spawn_blocking(move || shrink(&s))
                .await
                .map_err(|e| format!("shrink task: {e}"))?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(CompactionOutcome::new(r.after))
        }
    })?;
    let _ = shared.compactor.set(handle);
    tracker.spawn(compactor.run(shared.shutdown.clone()));
    Ok(())
}
