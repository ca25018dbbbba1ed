//! The crash-safe rewrite of an append-only file.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::gate::{SyncGate, DEFAULT_GATE_WAIT};
#[cfg(doc)]
use crate::pacing::DEFAULT_GATED_MIN_STEP;
use crate::pacing::{Pacer, Pacing, PacingStats};
use crate::Error;

/// Default for [`Rewrite::sync_every`]: 1 MiB, a quarter of Redis's
/// `REDIS_AUTOSYNC_BYTES`, so that with [`Pacing`]'s two steps in flight at
/// most 2 MiB of the rewrite is under write-back even when nobody appends.
pub const DEFAULT_SYNC_EVERY: u64 = 1024 * 1024;

const TEMP_MARK: &str = ".compact-";
const TEMP_SUFFIX: &str = ".tmp";

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A rewrite of one append-only file, from [`Rewrite::begin`] to
/// [`Rewrite::commit`].
///
/// The protocol, with "the appender" being whatever writes the live file:
///
/// 1. With the appender quiesced and its buffer flushed, take a snapshot of the
///    state and call [`Rewrite::begin`]; it records the live file's length.
///    The snapshot must describe exactly the records in that prefix. Release
///    the appender.
/// 2. Write the compacted state through the [`Write`] impl. It goes to a
///    temporary file beside the live one, and is written back in steps as it
///    goes so that no fsync, the appender's or the commit's, has a mountain
///    of dirty pages to wait for. By default the steps are paced
///    ([`Pacing::adaptive`]): at most two under write-back at once, starting
///    at 32 KiB ([`Pacing::min_step`]) and doubling up to
///    [`Rewrite::sync_every`], and back to the first step's length, one at
///    a time, while the live file grows and for a second after, so that an
///    appender's sync finds little of the rewrite in front of it.
/// 3. Call [`Rewrite::catch_up`] (appender still running): it copies what was
///    appended meanwhile and fsyncs, so that step 4, which blocks the
///    appender, only copies and fsyncs the last few records. Optional but
///    recommended.
/// 4. Block the appender, flush its buffer, call [`Rewrite::commit`], replace
///    the appender's file with [`Committed::file`], release the appender.
/// 5. Outside the appender's lock, close the appender's old handle and call
///    [`Replaced::release`] on [`Committed::replaced`]: it frees the replaced
///    file's blocks in steps, so that no journal commit of the appender's
///    carries the freeing of the whole file (see [`Replaced`]). Without it,
///    drop the old handle only after releasing the appender (or on another
///    thread): closing the last handle of the replaced file frees its blocks
///    at once, which takes a while for a large file (Redis closes it in a
///    background thread for the same reason).
///
/// Dropping a `Rewrite` without committing removes the temporary file.
///
/// # Crash safety
///
/// The live file is never modified. The temporary file is complete and
/// fsynced before `rename(2)` replaces the live file in one step, and the
/// directory is fsynced afterwards, so after a crash at any point the path
/// holds either the old file or the complete new one. A crash may leave a
/// temporary file behind; [`clean_leftovers`] removes it at the next start.
#[derive(Debug)]
pub struct Rewrite {
    live: PathBuf,
    temp_path: PathBuf,
    /// The live file, for reading what is appended during the rewrite and,
    /// once replaced, for [`Replaced::release`].
    source: File,
    /// Whether `source` is open for writing, which [`Replaced::release`]
    /// needs; it is never written while it is the live file.
    source_writable: bool,
    temp: BufWriter<File>,
    start_len: u64,
    copied_until: u64,
    sealed: bool,
    written: u64,
    unsynced: u64,
    /// `written` at the last fdatasync, so commit can skip a redundant one.
    durable: Option<u64>,
    sync_every: u64,
    /// Cap on the compacted state's write rate in bytes per second; 0 means none.
    max_rate: u64,
    /// When the first byte of the compacted state was written, for the rate cap.
    rate_start: Option<Instant>,
    /// `written` at the last rate check, so the clock is read once per chunk.
    rate_checked: u64,
    /// Boxed so that a `Rewrite` stays small enough to move around in
    /// messages.
    pace: Box<Pace>,
    done: bool,
}

/// The pacing state of one rewrite.
#[derive(Debug)]
struct Pace {
    pacing: Pacing,
    pacer: Pacer,
    /// Steps under write-back, oldest first (adaptive pacing only).
    pending: VecDeque<Step>,
    /// The live file's length after the last step.
    live_len: u64,
    /// The appender's syncs, when it marks them (see [`Rewrite::sync_gate`]).
    gate: Option<SyncGate>,
}

impl Pace {
    fn new(pacing: Pacing, sync_every: u64, live_len: u64, gate: Option<SyncGate>) -> Self {
        Pace {
            pacer: Pacer::new(&pacing, sync_every, gate.is_some()),
            pacing,
            pending: VecDeque::new(),
            live_len,
            gate,
        }
    }
}

/// A range of the temporary file whose write-back has been started.
#[derive(Debug, Clone, Copy)]
struct Step {
    offset: u64,
    len: u64,
}

/// The page size the adaptive steps are aligned to.
const WRITEBACK_ALIGN: u64 = 4096;

/// Bytes written between two checks of the rate cap: small enough that a pause is a few
/// milliseconds at the rates a cap is useful for, large enough that reading the clock costs nothing.
const RATE_CHECK_BYTES: u64 = 256 * 1024;

/// The result of a [`Rewrite::commit`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Committed {
    /// The new live file, opened for appending. Give it to the appender
    /// before releasing it; writes to the old handle after the commit are lost.
    pub file: File,
    /// The size of the new live file.
    pub len: u64,
    /// Bytes of the compacted state.
    pub compacted_len: u64,
    /// Bytes appended to the live file during the rewrite and carried over.
    pub tail_len: u64,
    /// The file the commit replaced, still open, so that its blocks can be
    /// freed in steps with [`Replaced::release`] once the appender is
    /// released.
    pub replaced: Replaced,
}

/// Default for the longest step of [`Replaced::release`]: 1 MiB.
pub const DEFAULT_RELEASE_STEP: u64 = 1024 * 1024;

/// The shortest step of [`Replaced::release_in_steps`]: its first step, and
/// the step it drops to while the live file grows (64 KiB).
pub const RELEASE_MIN_STEP: u64 = 64 * 1024;

/// The file a [`Rewrite::commit`] replaced: no longer reachable by the live
/// path, but still holding its blocks until the last handle on it closes.
///
/// Freeing a large file at once frees all its blocks in one journal
/// transaction, and on a file system mounted with online discard (ext4's
/// `discard`) that becomes one discard request as long as the file, which the
/// device works through in front of the appender's next writes and flushes:
/// in a block-layer trace of the `appender_latency` bench (ext4 with
/// `discard` on a virtio disk), each replaced 32 MB file was one 33.6 MB
/// discard taking 5-7 ms, where an appender's `fdatasync` alone takes about
/// 0.2-0.8 ms. [`Replaced::release`] shrinks the file in steps, each made
/// durable before the next, so that every journal commit frees at most one
/// step; in the same trace the discards were 1-4 MB (the block layer still
/// merges neighbours that queue together) and took 0.5-1 ms. Dropping a
/// `Replaced` without releasing it only closes this handle.
#[derive(Debug)]
pub struct Replaced {
    file: File,
    path: PathBuf,
    writable: bool,
    /// The rewrite's [`SyncGate`], if it had one: each step of the release
    /// waits at it too.
    gate: Option<SyncGate>,
}

impl Replaced {
    /// Frees the replaced file's blocks in steps of at most
    /// [`DEFAULT_RELEASE_STEP`] and closes it; see
    /// [`Replaced::release_in_steps`].
    ///
    /// # Errors
    ///
    /// As [`Replaced::release_in_steps`].
    pub fn release(self) -> Result<u64, Error> {
        self.release_in_steps(DEFAULT_RELEASE_STEP)
    }

    /// Shrinks the replaced file to nothing in steps of at most `step` bytes
    /// (at least 4 KiB), with an `fdatasync` after each step so that each
    /// step's blocks are freed in a journal commit of their own, then closes
    /// it. Returns the bytes freed this way.
    ///
    /// The steps are paced as the rewrite's write-back is ([`Pacing`]'s
    /// rule): the first is [`RELEASE_MIN_STEP`] (or `step`, if shorter);
    /// after each, the live file's length is read, and a step after which it
    /// grew drops the next to the minimum, held there for [`Pacing::hold`]'s
    /// default after the last growth; otherwise each step doubles, up to
    /// `step`. While the steps are held short, the release rests after each
    /// one as the write-back does ([`Pacing::rest`]'s default: four times
    /// the step's truncate and sync, none when the rewrite shared a
    /// [`SyncGate`]). With online discard, each step is a discard in front of the
    /// appender's next sync: in the `appender_latency` bench, 1 MiB steps
    /// gave the appender a p99 4.2-4.6 times its p99 alone, 64 KiB steps
    /// 1.5-1.7 (with a [`SyncGate`]); with nobody appending the steps
    /// reach full length after four and it never rests.
    ///
    /// Call it after releasing the appender, on the thread that ran the
    /// rewrite: it takes one `fdatasync` per step. The file is shrunk only
    /// if no name points to it any more (a hard link elsewhere keeps it
    /// intact) and the live file could be opened for writing at
    /// [`Rewrite::begin`]; otherwise this only closes the handle, and the
    /// blocks are freed when the appender's last handle on the old file
    /// closes, as without this call. Other handles on the old file (the
    /// appender's, a reader's) see it shrink. When the rewrite shared the
    /// appender's [`SyncGate`] ([`Rewrite::sync_gate`]), each step waits at
    /// it first, as the write-back steps do.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a step cannot be truncated or synced; the rest of the
    /// file is then freed when its last handle closes.
    pub fn release_in_steps(self, step: u64) -> Result<u64, Error> {
        self.release_observed(step, |_| {})
    }

    /// [`Replaced::release_in_steps`], calling `on_step` with each step's
    /// length once it is durable, before the live file's length is read.
    fn release_observed(self, step: u64, mut on_step: impl FnMut(u64)) -> Result<u64, Error> {
        use std::os::unix::fs::MetadataExt;
        let meta = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        if !self.writable || meta.nlink() != 0 {
            return Ok(0);
        }
        let step = step.max(4096);
        let mut pacer = Pacer::new(
            &Pacing::adaptive().min_step(RELEASE_MIN_STEP.min(step)),
            step,
            self.gate.is_some(),
        );
        // The file now at the live path, which the appender writes: its
        // growth is the pacer's signal. Without it (gone, unreadable) every
        // step counts as one without growth.
        let live = File::open(&self.path).ok();
        let live_len = || {
            live.as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.len())
        };
        let mut seen = live_len();
        let mut len = meta.len();
        let mut freed = 0;
        while len > 0 {
            // Truncating to a multiple of the step keeps the steps aligned
            // with the file's blocks after the first one (every step length
            // is the minimum times a power of two).
            let this = pacer.step_len();
            let next = (len - 1) / this * this;
            if let Some(gate) = &self.gate {
                gate.wait_idle(DEFAULT_GATE_WAIT);
            }
            let started = Instant::now();
            self.file
                .set_len(next)
                .map_err(|e| Error::io("truncate", &self.path, e))?;
            self.file
                .sync_data()
                .map_err(|e| Error::io("fsync", &self.path, e))?;
            let took = started.elapsed();
            freed += len - next;
            on_step(len - next);
            let now_len = live_len();
            pacer.step_done(len - next, now_len != seen, Instant::now());
            seen = now_len;
            len = next;
            if len > 0 {
                let rest = pacer.rest_after(took);
                if !rest.is_zero() {
                    std::thread::sleep(rest);
                }
            }
        }
        Ok(freed)
    }
}

impl Rewrite {
    /// Starts a rewrite of `live`, recording its current length as the point
    /// after which appended bytes are carried over.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the live file cannot be opened or the temporary file
    /// cannot be created.
    pub fn begin(live: impl Into<PathBuf>) -> Result<Self, Error> {
        let live = live.into();
        let (source, len, writable) = open_live(&live)?;
        Self::start(live, source, len, writable)
    }

    /// Like [`Rewrite::begin`], with the length the appender knows it has
    /// written (useful when the appender's own bookkeeping is the reference).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the live file is shorter than `len`, otherwise as
    /// [`Rewrite::begin`].
    pub fn begin_at(live: impl Into<PathBuf>, len: u64) -> Result<Self, Error> {
        let live = live.into();
        let (source, actual, writable) = open_live(&live)?;
        if actual < len {
            return Err(Error::Corrupt {
                path: live,
                reason: format!("file is {actual} bytes, shorter than the {len} recorded"),
            });
        }
        Self::start(live, source, len, writable)
    }

    fn start(live: PathBuf, source: File, len: u64, writable: bool) -> Result<Self, Error> {
        let temp_path = temp_path_for(&live)?;
        let temp = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|e| Error::io("create", &temp_path, e))?;
        Ok(Rewrite {
            live,
            temp_path,
            source,
            source_writable: writable,
            temp: BufWriter::with_capacity(256 * 1024, temp),
            start_len: len,
            copied_until: len,
            sealed: false,
            written: 0,
            unsynced: 0,
            durable: None,
            sync_every: DEFAULT_SYNC_EVERY,
            max_rate: 0,
            rate_start: None,
            rate_checked: 0,
            pace: Box::new(Pace::new(Pacing::default(), DEFAULT_SYNC_EVERY, len, None)),
            done: false,
        })
    }

    /// Sets the write-back step: how many bytes may be written to the
    /// temporary file before its write-back is started
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; `fdatasync`
    /// elsewhere). With adaptive [`Pacing`] it is the longest step, taken
    /// while nobody appends. 0 turns write-back steps, and with them pacing,
    /// off: everything is left to the final fsync. Call it before writing.
    ///
    /// Default: [`DEFAULT_SYNC_EVERY`] (1 MiB). Spreading the write-back keeps
    /// the final fsync short (redis #700, #1019).
    pub fn sync_every(mut self, bytes: u64) -> Self {
        self.sync_every = bytes;
        let gate = self.pace.gate.take();
        self.pace = Box::new(Pace::new(
            self.pace.pacing.clone(),
            bytes,
            self.start_len,
            gate,
        ));
        self
    }

    /// Sets how the compacted state's write-back is paced; see [`Pacing`].
    /// Call it before writing.
    ///
    /// Default: [`Pacing::adaptive`]: at most two steps under write-back at
    /// once, doubling from 32 KiB up to [`Rewrite::sync_every`] bytes while
    /// the live file does not grow; while it does, and for a second after,
    /// steps of 32 KiB, one at a time. [`Pacing::off`] writes as fast as the
    /// page cache takes it.
    pub fn pacing(mut self, pacing: Pacing) -> Self {
        let gate = self.pace.gate.take();
        self.pace = Box::new(Pace::new(pacing, self.sync_every, self.start_len, gate));
        self
    }

    /// Shares the appender's [`SyncGate`]: with adaptive [`Pacing`], before
    /// each write-back step starts, the rewrite waits while the appender
    /// marks a sync, up to [`DEFAULT_GATE_WAIT`] (20 ms) per step, and so
    /// does each step of [`Replaced::release`] (whatever the pacing). The
    /// shortest step is then [`DEFAULT_GATED_MIN_STEP`] (32 KiB, the same as
    /// without a gate) unless [`Pacing::min_step`] says otherwise. The gate is checked only before a
    /// step starts: a sync that begins just after the check, or while
    /// steps already run, still finds them (see [`SyncGate`]).
    /// Without it the pacer sees the appender only by the live file's
    /// growth, and a step can start between any two of the requests that
    /// make up one `fdatasync`. Call it before writing.
    ///
    /// Default: none.
    pub fn sync_gate(mut self, gate: SyncGate) -> Self {
        if self.written > 0 {
            // Too late to change the steps: steps under write-back and the
            // pacer's state stay as they are; later steps wait at the gate.
            self.pace.gate = Some(gate);
            return self;
        }
        let pacing = self.pace.pacing.clone();
        self.pace = Box::new(Pace::new(
            pacing,
            self.sync_every,
            self.start_len,
            Some(gate),
        ));
        self
    }

    /// What the pacer did so far: steps, steps that yielded to an appender,
    /// the shortest step.
    pub fn pacing_stats(&self) -> PacingStats {
        self.pace.pacer.stats()
    }

    /// Caps the rate at which the compacted state is written, in bytes per
    /// second; 0 turns the cap off. Writes through the [`Write`] impl sleep
    /// whenever they get ahead of the cap (checked every 256 KiB, so the
    /// thread blocks for a few milliseconds at a time); [`Rewrite::catch_up`]
    /// and [`Rewrite::commit`] are never slowed.
    ///
    /// The adaptive [`Pacing`] (on by default) already keeps the write-back
    /// queue short and yields while an appender writes; the cap is a fixed
    /// ceiling on top of it, for a known I/O budget (RocksDB's
    /// `rate_limiter` is the same idea for compactions).
    ///
    /// Default: 0 (no cap).
    pub fn max_rate(mut self, bytes_per_sec: u64) -> Self {
        self.max_rate = bytes_per_sec;
        self
    }

    /// The live file's length when the rewrite began.
    pub fn start_len(&self) -> u64 {
        self.start_len
    }

    /// The live file's path.
    pub fn live_path(&self) -> &Path {
        &self.live
    }

    /// The temporary file's path.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Bytes written to the temporary file so far, compacted state and
    /// carried-over tail together.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Copies the bytes appended to the live file since the last copy (or
    /// since [`Rewrite::begin`]) to the temporary file and fsyncs it, without
    /// needing the appender to stop. It seals the compacted state: later
    /// writes through the [`Write`] impl fail. Returns the number of bytes
    /// copied.
    ///
    /// A record the appender is half-way through may be copied in part; that
    /// is fine, since the next copy continues at exactly the next byte.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the live file became shorter than what was
    /// already copied; [`Error::Io`] on a failed read or write.
    pub fn catch_up(&mut self) -> Result<u64, Error> {
        self.sealed = true;
        self.temp
            .flush()
            .map_err(|e| Error::io("write", &self.temp_path, e))?;
        let len = self.live_len()?;
        let want = len - self.copied_until;
        if want > 0 {
            self.copy_tail(want)?;
        }
        // Making everything so far durable here, outside the appender's lock,
        // leaves only the last few appended bytes for the fsync in commit.
        self.temp
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.temp_path, e))?;
        self.pace.pending.clear();
        self.unsynced = 0;
        self.durable = Some(self.written);
        Ok(want)
    }

    /// The live file's current length, refusing one shorter than what was
    /// already copied: bytes the new file would carry are gone from the old.
    fn live_len(&self) -> Result<u64, Error> {
        let len = self
            .source
            .metadata()
            .map_err(|e| Error::io("stat", &self.live, e))?
            .len();
        if len < self.copied_until {
            return Err(Error::Corrupt {
                path: self.live.clone(),
                reason: format!(
                    "file shrank to {len} bytes during the rewrite; {} were already copied",
                    self.copied_until
                ),
            });
        }
        Ok(len)
    }

    fn copy_tail(&mut self, want: u64) -> Result<(), Error> {
        self.source
            .seek(SeekFrom::Start(self.copied_until))
            .map_err(|e| Error::io("seek", &self.live, e))?;
        // The copy goes straight between the two files so that Linux can use
        // copy_file_range(2) and skip user space.
        let copied = io::copy(&mut (&self.source).take(want), self.temp.get_mut())
            .map_err(|e| Error::io("copy", &self.temp_path, e))?;
        if copied != want {
            return Err(Error::Corrupt {
                path: self.live.clone(),
                reason: format!(
                    "expected {want} bytes after offset {}, read {copied}",
                    self.copied_until
                ),
            });
        }
        self.copied_until += copied;
        self.written += copied;
        Ok(())
    }

    /// Finishes the rewrite: copies the remaining appended bytes, fsyncs the
    /// temporary file, renames it over the live file, fsyncs the directory,
    /// and opens the new live file for appending.
    ///
    /// Call it while the appender is blocked with its buffer flushed, and
    /// switch the appender to [`Committed::file`] before unblocking it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::Corrupt`]. If the error happens before the
    /// rename, the live file is untouched and the temporary file is removed.
    /// If it happens after (the directory fsync or the reopen), the new
    /// content is already in place.
    pub fn commit(mut self) -> Result<Committed, Error> {
        self.sealed = true;
        self.temp
            .flush()
            .map_err(|e| Error::io("write", &self.temp_path, e))?;
        let len = self.live_len()?;
        if len > self.copied_until {
            self.copy_tail(len - self.copied_until)?;
        }
        let tail_len = self.copied_until - self.start_len;
        let compacted_len = self.written - tail_len;
        // copy_tail writes past the buffer, which the flush above emptied, so
        // everything is in the file. fdatasync covers the data and the file
        // size; the directory entry is made durable by the directory fsync
        // after the rename.
        if self.durable != Some(self.written) {
            self.temp
                .get_ref()
                .sync_data()
                .map_err(|e| Error::io("fsync", &self.temp_path, e))?;
        }
        fs::rename(&self.temp_path, &self.live).map_err(|e| Error::io("rename", &self.live, e))?;
        self.done = true;
        sync_dir(&self.live)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&self.live)
            .map_err(|e| Error::io("open", &self.live, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &self.live, e))?
            .len();
        // A second descriptor on the replaced file, since a Rewrite, which
        // has a Drop impl, cannot give its own away.
        let replaced = Replaced {
            file: self
                .source
                .try_clone()
                .map_err(|e| Error::io("dup", &self.live, e))?,
            path: self.live.clone(),
            writable: self.source_writable,
            gate: self.pace.gate.clone(),
        };
        Ok(Committed {
            file,
            len,
            compacted_len,
            tail_len,
            replaced,
        })
    }

    /// [`Rewrite::commit`] on tokio's blocking pool, for callers on an async
    /// task (the same thing `tokio::fs` does). The task awaiting it is the one
    /// that must hold the appender blocked.
    ///
    /// # Errors
    ///
    /// As [`Rewrite::commit`].
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime.
    ///
    /// # Cancellation safety
    ///
    /// Not cancellation safe: if the future is dropped the commit still
    /// completes on the blocking pool, but the new file handle is lost; the
    /// appender must then reopen the live path.
    pub async fn commit_async(self) -> Result<Committed, Error> {
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || self.commit())
            .await
            .map_err(|e| Error::io("commit", live, io::Error::other(e)))?
    }

    /// Abandons the rewrite and removes the temporary file. Dropping does the
    /// same but ignores errors.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the temporary file cannot be removed.
    pub fn abort(mut self) -> Result<(), Error> {
        self.done = true;
        fs::remove_file(&self.temp_path).map_err(|e| Error::io("remove", &self.temp_path, e))
    }
}

impl Write for Rewrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.sealed {
            return Err(io::Error::other(
                "rewrite sealed: the compacted state cannot grow after catch_up",
            ));
        }
        let n = self.temp.write(buf)?;
        self.written += n as u64;
        self.unsynced += n as u64;
        if self.max_rate > 0 {
            self.throttle();
        }
        let step = if self.pace.pacing.adaptive {
            self.pace.pacer.step_len()
        } else {
            self.sync_every
        };
        if self.sync_every > 0 && self.unsynced >= step {
            self.end_step()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

impl Rewrite {
    /// Ends a write-back step: the bytes written since the last one go to
    /// the disk. With adaptive pacing the pacer learns whether the live file
    /// grew, which sets the next step's length, and older steps are awaited
    /// so that at most `in_flight` are under write-back with this one, or
    /// only this one while the pacer holds the steps short.
    fn end_step(&mut self) -> io::Result<()> {
        self.temp.flush()?;
        let offset = self.written - self.unsynced;
        if !self.pace.pacing.adaptive {
            let len = self.unsynced;
            self.unsynced = 0;
            return start_writeback(self.temp.get_ref(), offset, len);
        }
        // An adaptive step ends at a page boundary and leaves the partial
        // page to the next step. A step that ended inside a page would send
        // that page to the disk, the next step's bytes would dirty it again,
        // and waiting for the step would write it once more, synchronously:
        // a second request per step, each one in front of the appender's.
        let end = self.written / WRITEBACK_ALIGN * WRITEBACK_ALIGN;
        if end <= offset {
            return Ok(());
        }
        let len = end - offset;
        self.unsynced = self.written - end;
        let file = self.temp.get_ref();
        let pace = &mut *self.pace;
        // One fstat: whether an appender wrote during this step.
        let live_len = self.source.metadata()?.len();
        let grown = live_len > pace.live_len;
        pace.live_len = live_len;
        pace.pacer.step_done(len, grown, Instant::now());
        let waiting = Instant::now();
        let mut waited = false;
        while pace.pending.len() >= pace.pacer.in_flight() {
            let Some(step) = pace.pending.pop_front() else {
                break;
            };
            wait_writeback(file, step.offset, step.len)?;
            waited = true;
        }
        if waited {
            let rest = pace.pacer.rest_after(waiting.elapsed());
            if !rest.is_zero() {
                std::thread::sleep(rest);
            }
        }
        // Nothing of ours is under write-back now while the steps are held
        // short: a sync that started meanwhile runs alone to its end.
        if let Some(gate) = &pace.gate {
            if let Some(waited) = gate.wait_idle(DEFAULT_GATE_WAIT) {
                pace.pacer.waited_at_gate(waited);
            }
        }
        start_writeback(file, offset, len)?;
        pace.pending.push_back(Step { offset, len });
        Ok(())
    }

    /// Sleeps until the bytes written so far are within the rate cap.
    fn throttle(&mut self) {
        let start = *self.rate_start.get_or_insert_with(Instant::now);
        if self.written - self.rate_checked < RATE_CHECK_BYTES {
            return;
        }
        self.rate_checked = self.written;
        let due = Duration::from_secs_f64(self.written as f64 / self.max_rate as f64);
        if let Some(ahead) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

impl Drop for Rewrite {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: whatever remains is removed by clean_leftovers at
            // the next start.
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Starts writing back `len` bytes at `offset` without waiting for them, so
/// that dirty pages do not pile up for one long fsync (RocksDB's
/// `bytes_per_sync` does the same). Elsewhere than Linux it falls back to a
/// waiting `fdatasync`.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return file.sync_data();
    };
    // SAFETY: the descriptor is open for the duration of the call, and
    // sync_file_range only reads its integer arguments.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    file.sync_data()
}

/// Waits until `len` bytes at `offset` are written back, starting the
/// write-back of any page in the range that is still dirty.
#[cfg(target_os = "linux")]
fn wait_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return file.sync_data();
    };
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: as in start_writeback.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere `start_writeback` already waited.
#[cfg(not(target_os = "linux"))]
fn wait_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Opens the live file for reading and returns it with its current length
/// and whether it is also open for writing. Writing is asked for only so that
/// [`Replaced::release`] can shrink the file once it is no longer live; a
/// file that cannot be opened for writing is read through a read-only handle.
fn open_live(live: &Path) -> Result<(File, u64, bool), Error> {
    let (source, writable) = match OpenOptions::new().read(true).write(true).open(live) {
        Ok(f) => (f, true),
        Err(_) => (
            File::open(live).map_err(|e| Error::io("open", live, e))?,
            false,
        ),
    };
    let len = source
        .metadata()
        .map_err(|e| Error::io("stat", live, e))?
        .len();
    Ok((source, len, writable))
}

fn file_name(live: &Path) -> Result<OsString, Error> {
    live.file_name().map(|n| n.to_owned()).ok_or_else(|| {
        Error::io(
            "name",
            live,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })
}

/// The directory holding `live`: "." for a bare file name.
pub(crate) fn parent_dir(live: &Path) -> &Path {
    match live.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path_for(live: &Path) -> Result<PathBuf, Error> {
    let mut name = file_name(live)?;
    name.push(format!(
        "{TEMP_MARK}{}-{}{TEMP_SUFFIX}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    Ok(parent_dir(live).join(name))
}

fn sync_dir(live: &Path) -> Result<(), Error> {
    let dir = parent_dir(live);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync", dir, e))
}

/// Removes temporary files left by rewrites of `live` that never committed
/// (the process crashed or was killed). Call it at start, before any rewrite
/// of `live` begins. Returns the removed paths.
///
/// Only files named `<live name>.compact-*.tmp` in the live file's directory
/// are touched; the live file itself never is.
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be read or a file cannot be removed.
pub fn clean_leftovers(live: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut prefix = file_name(live)?;
    prefix.push(TEMP_MARK);
    let prefix = prefix.as_encoded_bytes().to_vec();
    let dir = parent_dir(live);
    let mut removed = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read dir", dir, e))?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(&prefix) && bytes.ends_with(TEMP_SUFFIX.as_bytes()) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(live)?;
        tracing::info!(count = removed.len(), live = %live.display(), "removed leftover rewrite files");
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    /// Commits a rewrite of a live file of `old_len` bytes and releases the
    /// replaced file in steps of at most `step`, appending a byte to the
    /// live file after the steps `grow` picks (by index); returns the steps'
    /// lengths.
    fn steps(old_len: u64, step: u64, grow: impl Fn(usize) -> bool) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.aof");
        fs::write(&live, vec![b'o'; old_len as usize]).unwrap();
        let mut rw = Rewrite::begin(&live).unwrap();
        rw.write_all(b"new\n").unwrap();
        let committed = rw.commit().unwrap();
        let mut appender = committed.file;
        let mut seen = Vec::new();
        let freed = committed
            .replaced
            .release_observed(step, |len| {
                if grow(seen.len()) {
                    appender.write_all(b"x").unwrap();
                }
                seen.push(len);
            })
            .unwrap();
        assert_eq!(freed, old_len);
        assert_eq!(seen.iter().sum::<u64>(), old_len);
        seen
    }

    #[test]
    fn with_nobody_appending_the_release_steps_double_to_full_length() {
        let s = steps(8 << 20, 1 << 20, |_| false);
        // The first step is the minimum; each later length is at most
        // double the one before, the steps reach 1 MiB after four and
        // stay there.
        assert_eq!(s[0], RELEASE_MIN_STEP);
        assert!(s.windows(2).all(|w| w[1] <= 2 * w[0]), "{s:?}");
        assert!(s.iter().all(|&l| l <= 1 << 20));
        assert!(s[5..].iter().all(|&l| l == 1 << 20), "{s:?}");
        assert!(s.len() <= 8 + 5, "{s:?}");
    }

    #[test]
    fn while_the_live_file_grows_every_release_step_is_the_minimum() {
        let s = steps(2 << 20, 1 << 20, |_| true);
        assert_eq!(s, vec![RELEASE_MIN_STEP; 32]);
    }

    #[test]
    fn growth_drops_the_release_step_back_to_the_minimum_and_holds_it() {
        // Quiet for six steps (full length by then), one append, then quiet:
        // the hold (a second) keeps the steps short for the rest of this
        // release.
        let s = steps(16 << 20, 1 << 20, |i| i == 5);
        assert_eq!(s[5], 1 << 20);
        assert!(s[6..].iter().all(|&l| l == RELEASE_MIN_STEP), "{s:?}");
    }

    #[test]
    fn a_release_step_below_the_minimum_is_every_step() {
        // 100 KiB: the first step takes the 4 KiB past the last multiple of
        // 8 KiB, so that every later step ends on one.
        let s = steps(100 * KIB, 8 * KIB, |_| false);
        assert_eq!(s[0], 4 * KIB);
        assert!(s[1..].iter().all(|&l| l == 8 * KIB), "{s:?}");
    }
}
