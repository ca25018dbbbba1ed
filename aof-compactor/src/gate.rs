//! A signal from the appender to the rewrite: "I am syncing now".
//!
//! An appender's `fdatasync` on ext4 is a chain of dependent requests (its
//! data page, the journal commit block, a device cache flush), each sent
//! only when the one before completes. The adaptive pacer keeps one short
//! step of the rewrite under write-back at a time, but it starts the next
//! step as soon as the last one is written, so a step lands between every
//! pair of the appender's requests: three steps in front of one sync, which
//! on a quiet disk is about a millisecond at the appender's 99th percentile
//! whatever the step length.
//!
//! With a [`SyncGate`] shared between the two, the appender marks each sync
//! while it runs, and the rewrite waits for the mark to clear before it
//! starts its next step (and before each step of the replaced file's
//! release). While the steps are held short (one under write-back at a
//! time), a sync then usually finds only the one step that was already under
//! write-back when it began. Not always: a sync that begins between the
//! check and the start of the step finds that step too, the check gives up
//! after [`DEFAULT_GATE_WAIT`], and when nobody has appended for the pacer's
//! hold, two longer steps may be under write-back when a sync comes.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The longest a rewrite waits at the gate for one step. A rewrite waits at
/// most this long before each step, however long or often the appender
/// syncs, so that it always finishes; at the gated 32 KiB step that is a
/// floor of about 1.6 MB/s against an appender whose syncs never stop.
pub const DEFAULT_GATE_WAIT: Duration = Duration::from_millis(20);

/// Shared by an appender and the [`Rewrite`](crate::Rewrite)s of its file:
/// the appender marks its syncs through it, and a rewrite given it with
/// [`Rewrite::sync_gate`](crate::Rewrite::sync_gate) waits for the mark to
/// clear (up to [`DEFAULT_GATE_WAIT`]) before it starts a write-back step or
/// a release step. [`SyncGate::waits`] counts the waits, for a metric.
///
/// Clones share one gate. Marking costs a lock and an unlock of an
/// uncontended mutex on each side of the sync, far below the sync itself.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::io::Write;
/// use aof_compactor::SyncGate;
///
/// let gate = SyncGate::new();
/// let mut log = tempfile::tempfile()?;
/// log.write_all(b"set a 1\n")?;
/// gate.sync_data(&log)?; // marked while it runs
/// assert!(!gate.is_syncing());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SyncGate {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Syncs under way (several appenders may share a gate).
    syncing: Mutex<usize>,
    /// Signalled when `syncing` falls to zero.
    idle: Condvar,
    /// Waits that found a sync marked, and their total in nanoseconds.
    waits: AtomicU64,
    waited_ns: AtomicU64,
    /// Waiters between taking the lock and waiting on `idle`, so that a
    /// test can clear a mark only once a waiter is asleep.
    #[cfg(test)]
    asleep: std::sync::atomic::AtomicUsize,
}

/// Marks a sync as running until it is dropped; from [`SyncGate::enter`].
#[derive(Debug)]
#[must_use = "the sync is marked only while the guard lives"]
pub struct SyncGuard {
    gate: SyncGate,
}

impl SyncGate {
    /// A gate with no sync marked.
    pub fn new() -> Self {
        SyncGate::default()
    }

    /// Marks a sync as running until the returned guard is dropped. Use it
    /// around a sync that is not a plain [`File`] method (a sync on another
    /// thread, a group commit).
    pub fn enter(&self) -> SyncGuard {
        *self.inner.syncing.lock() += 1;
        SyncGuard { gate: self.clone() }
    }

    /// `file.sync_data()`, marked while it runs.
    ///
    /// # Errors
    ///
    /// Whatever `File::sync_data` returns.
    pub fn sync_data(&self, file: &File) -> io::Result<()> {
        let _mark = self.enter();
        file.sync_data()
    }

    /// `file.sync_all()`, marked while it runs.
    ///
    /// # Errors
    ///
    /// Whatever `File::sync_all` returns.
    pub fn sync_all(&self, file: &File) -> io::Result<()> {
        let _mark = self.enter();
        file.sync_all()
    }

    /// Whether a sync is marked now.
    pub fn is_syncing(&self) -> bool {
        *self.inner.syncing.lock() > 0
    }

    /// How many times a rewrite or a release step found a sync marked and
    /// waited, over the life of the gate (all clones).
    pub fn waits(&self) -> u64 {
        self.inner.waits.load(Ordering::Relaxed)
    }

    /// The time those waits took, in all.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.inner.waited_ns.load(Ordering::Relaxed))
    }

    /// Waits until no sync is marked, for at most `max`. Returns how long it
    /// waited, or `None` when no sync was marked when it was called.
    pub(crate) fn wait_idle(&self, max: Duration) -> Option<Duration> {
        let mut syncing = self.inner.syncing.lock();
        if *syncing == 0 {
            return None;
        }
        let start = Instant::now();
        let deadline = start + max;
        #[cfg(test)]
        self.inner.asleep.fetch_add(1, Ordering::SeqCst);
        while *syncing > 0 {
            if self
                .inner
                .idle
                .wait_until(&mut syncing, deadline)
                .timed_out()
            {
                break;
            }
        }
        drop(syncing);
        let waited = start.elapsed();
        self.inner.waits.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.inner.waited_ns.fetch_add(ns, Ordering::Relaxed);
        Some(waited)
    }
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        let mut syncing = self.gate.inner.syncing.lock();
        *syncing -= 1;
        if *syncing == 0 {
            self.gate.inner.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_gate_does_not_wait() {
        let gate = SyncGate::new();
        assert_eq!(gate.wait_idle(Duration::from_secs(10)), None);
        assert!(!gate.is_syncing());
        assert_eq!(gate.waits(), 0);
    }

    #[test]
    fn the_mark_lasts_as_long_as_every_guard() {
        let gate = SyncGate::new();
        let a = gate.enter();
        let b = gate.clone().enter();
        assert!(gate.is_syncing());
        drop(a);
        assert!(gate.is_syncing());
        drop(b);
        assert!(!gate.is_syncing());
    }

    #[test]
    fn a_waiter_wakes_when_the_sync_ends() {
        let gate = SyncGate::new();
        let mark = gate.enter();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.wait_idle(Duration::from_secs(600)))
        };
        // The waiter counts itself asleep under the lock and releases the
        // lock only by waiting, so once it is counted, the guard's drop
        // (which takes the lock) comes after it is waiting.
        while gate.inner.asleep.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        drop(mark);
        // Woken by the guard, not by the ten-minute limit.
        let waited = waiter.join().unwrap().expect("the waiter found the mark");
        assert!(waited < Duration::from_secs(60), "{waited:?}");
        assert!(!gate.is_syncing());
        assert_eq!(gate.waits(), 1);
    }

    #[test]
    fn a_sync_that_never_ends_holds_a_waiter_only_up_to_its_limit() {
        let gate = SyncGate::new();
        let _stuck = gate.enter();
        let waited = gate.wait_idle(Duration::from_millis(5)).unwrap();
        assert!(waited >= Duration::from_millis(5));
        assert!(gate.is_syncing());
        assert_eq!(gate.waits(), 1);
        assert!(gate.waited() >= Duration::from_millis(5));
    }
}
