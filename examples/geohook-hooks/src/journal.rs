//! The hook journal: an append-only log of queued and finished events, so that queued events survive a
//! crash.
//!
//! The file is a `wal-repair` frames log (`WALRPR` header, then records of a length, a CRC and a payload).
//! Each payload is one of:
//!
//! - `E` id ms hook key body: an event was queued (`ms` is the wall-clock time in Unix milliseconds, so a
//!   restart does not extend its time-to-live);
//! - `D` id: the event left its queue (delivered, expired, its hook was deleted, or the node stopped
//!   leading);
//! - `L` id reason ms: the event became a dead letter at `ms` (reason 1: its time-to-live passed,
//!   2: it used up its attempts); it stays in the journal until it is redelivered and delivered;
//! - `R` id ms: a dead letter was queued again (REDELIVER) at `ms`, which restarts its time-to-live;
//! - `N` id: every event id below `id` is taken (written first by a compaction, so ids stay unique after
//!   the records that held them are gone).
//!
//! Integers are little-endian (`u64` ids and times, `u32` lengths). The events pending after a crash are
//! the `E` records without a matching `D`; they are replayed in id order, which is queue order per hook.
//!
//! Records are buffered in memory and written by [`Journal::flush`], one `write(2)` per flush, so that one
//! write (and under `appendfsync always` one fsync) serves every event of a batch of client writes:
//! group commit. A compaction ([`Journal::compact`]) rewrites the file as its pending events only, with
//! `aof-compactor`'s [`Rewrite`](aof_compactor::Rewrite), so the file stays near the size of what is
//! pending rather than of what was ever sent.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use aof_compactor::SyncGate;
use bytes::Bytes;
use parking_lot::Mutex;
use wal_repair::frames::{self, Frames};

use crate::deliver::Payload;
use crate::error::{Error, Result};

/// Why an event became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadReason {
    /// Its time-to-live passed before an endpoint accepted it.
    Expired,
    /// It failed on every endpoint as many times as the hook allows.
    Retries,
}

impl DeadReason {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [DeadReason; 2] = [DeadReason::Expired, DeadReason::Retries];

    /// The name used in replies and metric labels: `expired` or `retries`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Expired => "expired",
            DeadReason::Retries => "retries",
        }
    }

    fn code(self) -> u8 {
        match self {
            DeadReason::Expired => 1,
            DeadReason::Retries => 2,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(DeadReason::Expired),
            2 => Some(DeadReason::Retries),
            _ => None,
        }
    }
}

/// An event read back from the journal at open: queued and not finished before the process stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The event id (the `event_id` member of its JSON).
    pub id: u64,
    /// When it was queued, in Unix milliseconds.
    pub queued_ms: u64,
    /// The hook it belongs to.
    pub hook: Arc<str>,
    /// The message as it was queued.
    pub payload: Payload,
    /// For a dead letter, why and when (Unix milliseconds) it became one.
    pub dead: Option<(DeadReason, u64)>,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub struct Opened {
    /// The journal, ready for appending.
    pub journal: Journal,
    /// The events still pending, in id order.
    pub pending: Vec<Replayed>,
    /// Every id below this one is taken.
    pub next_id: u64,
    /// Bytes cut off a torn tail by the repair at open (0 when the file ended cleanly).
    pub repaired_bytes: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    queued_ms: u64,
    hook: Arc<str>,
    payload: Payload,
    dead: Option<(DeadReason, u64)>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    /// Encoded frames not yet written.
    buf: Vec<u8>,
    /// Bytes written to `file`, header included.
    written: u64,
    /// How much of `written` an fsync of this process is known to have made
    /// durable; a flush with nothing beyond it has nothing to fsync.
    synced: u64,
    /// Bumped when a compaction replaces `file`, so that an fsync of the old file does not count for
    /// the new one's offsets.
    generation: u64,
    pending: HashMap<u64, Entry>,
    /// One above the highest id ever recorded.
    next_id: u64,
}

/// The hook journal of one server. See the module documentation for the format.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// `written` plus the buffered bytes, readable without the lock (for the compactor's size check).
    len: AtomicU64,
    /// The fsyncs made, for [`Journal::syncs`].
    syncs: AtomicU64,
    /// Every fsync is marked on it, and a compaction's write-back waits at it (see
    /// [`Journal::with_sync_gate`]).
    gate: SyncGate,
}

const ENQUEUE: u8 = b'E';
const DONE: u8 = b'D';
const NEXT: u8 = b'N';
const DEAD: u8 = b'L';
const REQUEUE: u8 = b'R';

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::JournalIo {
        path: path.to_path_buf(),
        source,
    }
}

fn repair_err(path: &Path, e: wal_repair::Error) -> Error {
    if e.is_data_error() {
        Error::JournalCorrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    } else {
        Error::JournalIo {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

fn encode_enqueue(id: u64, e: &Entry, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.push(ENQUEUE);
    scratch.extend_from_slice(&id.to_le_bytes());
    scratch.extend_from_slice(&e.queued_ms.to_le_bytes());
    for part in [e.hook.as_bytes(), &e.payload.key[..]] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        scratch.extend_from_slice(&len.to_le_bytes());
        scratch.extend_from_slice(part);
    }
    scratch.extend_from_slice(&e.payload.body);
    frames::encode(scratch, out);
}

fn encode_id(tag: u8, id: u64, out: &mut Vec<u8>) {
    let mut payload = [0u8; 9];
    payload[0] = tag;
    payload[1..].copy_from_slice(&id.to_le_bytes());
    frames::encode(&payload, out);
}

fn encode_dead(id: u64, reason: DeadReason, ms: u64, out: &mut Vec<u8>) {
    let mut payload = [0u8; 18];
    payload[0] = DEAD;
    payload[1..9].copy_from_slice(&id.to_le_bytes());
    payload[9] = reason.code();
    payload[10..].copy_from_slice(&ms.to_le_bytes());
    frames::encode(&payload, out);
}

fn encode_requeue(id: u64, ms: u64, out: &mut Vec<u8>) {
    let mut payload = [0u8; 17];
    payload[0] = REQUEUE;
    payload[1..9].copy_from_slice(&id.to_le_bytes());
    payload[9..].copy_from_slice(&ms.to_le_bytes());
    frames::encode(&payload, out);
}

enum Record {
    Enqueue(u64, Entry),
    Done(u64),
    Next(u64),
    Dead(u64, DeadReason, u64),
    Requeue(u64, u64),
}

fn decode(p: &[u8]) -> Option<Record> {
    let (&tag, rest) = p.split_first()?;
    let u64_at = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    match tag {
        DONE if rest.len() == 8 => Some(Record::Done(u64_at(rest, 0)?)),
        NEXT if rest.len() == 8 => Some(Record::Next(u64_at(rest, 0)?)),
        DEAD if rest.len() == 17 => Some(Record::Dead(
            u64_at(rest, 0)?,
            DeadReason::from_code(rest[8])?,
            u64_at(rest, 9)?,
        )),
        REQUEUE if rest.len() == 16 => Some(Record::Requeue(u64_at(rest, 0)?, u64_at(rest, 8)?)),
        ENQUEUE => {
            let id = u64_at(rest, 0)?;
            let queued_ms = u64_at(rest, 8)?;
            let mut at = 16;
            let mut part = || -> Option<&[u8]> {
                let len = u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?) as usize;
                let s = rest.get(at + 4..at + 4 + len)?;
                at += 4 + len;
                Some(s)
            };
            let hook = std::str::from_utf8(part()?).ok()?;
            let hook: Arc<str> = Arc::from(hook);
            let key = Bytes::copy_from_slice(part()?);
            let body = Bytes::copy_from_slice(rest.get(at..)?);
            Some(Record::Enqueue(
                id,
                Entry {
                    queued_ms,
                    hook,
                    payload: Payload { key, body },
                    dead: None,
                },
            ))
        }
        _ => None,
    }
}

impl Journal {
    /// Opens the journal at `path`, creating it if missing: repairs a torn tail with `wal-repair`
    /// (the cut bytes are kept in a sidecar file beside it), reads every record and returns the events
    /// still pending.
    ///
    /// # Errors
    /// [`Error::JournalCorrupt`] when the file is damaged anywhere but in its tail, or a record with a
    /// valid checksum does not decode; [`Error::JournalIo`] when the file system fails.
    pub fn open(path: impl Into<PathBuf>) -> Result<Opened> {
        let path = path.into();
        let config = wal_repair::Config::default();
        let repaired_bytes = if path.exists() {
            match wal_repair::repair(&path, &Frames, &config).map_err(|e| repair_err(&path, e))? {
                wal_repair::Outcome::Clean(_) => 0,
                wal_repair::Outcome::Repaired(r) => r.discarded,
            }
        } else {
            0
        };
        // Creates the file with its header (synced with its directory) or checks that it ends cleanly.
        drop(frames::Writer::open(&path).map_err(|e| repair_err(&path, e))?);
        let mut pending: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut next_id = 0u64;
        let reader = frames::Reader::open(&path).map_err(|e| repair_err(&path, e))?;
        for record in reader {
            let record = record.map_err(|e| repair_err(&path, e))?;
            match decode(&record) {
                Some(Record::Enqueue(id, e)) => {
                    next_id = next_id.max(id.saturating_add(1));
                    pending.insert(id, e);
                }
                Some(Record::Done(id)) => {
                    pending.remove(&id);
                }
                Some(Record::Next(id)) => next_id = next_id.max(id),
                Some(Record::Dead(id, reason, ms)) => {
                    if let Some(e) = pending.get_mut(&id) {
                        e.dead = Some((reason, ms));
                    }
                }
                Some(Record::Requeue(id, ms)) => {
                    if let Some(e) = pending.get_mut(&id) {
                        e.dead = None;
                        e.queued_ms = ms;
                    }
                }
                None => {
                    return Err(Error::JournalCorrupt {
                        path,
                        reason: "a record with a valid checksum does not decode".into(),
                    })
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let written = file.metadata().map_err(io_err(&path))?.len();
        let replayed = pending
            .iter()
            .map(|(id, e)| Replayed {
                id: *id,
                queued_ms: e.queued_ms,
                hook: Arc::clone(&e.hook),
                payload: e.payload.clone(),
                dead: e.dead,
            })
            .collect();
        let journal = Journal {
            inner: Mutex::new(Inner {
                file,
                buf: Vec::new(),
                written,
                // What an earlier process wrote may still be only in the
                // page cache: the first fsync covers it.
                synced: 0,
                generation: 0,
                pending: pending.into_iter().collect(),
                next_id,
            }),
            len: AtomicU64::new(written),
            syncs: AtomicU64::new(0),
            gate: SyncGate::new(),
            path,
        };
        Ok(Opened {
            journal,
            pending: replayed,
            next_id,
            repaired_bytes,
        })
    }

    /// Marks this journal's fsyncs on `gate`, and makes its compactions wait at it before each
    /// write-back step (`aof_compactor::Rewrite::sync_gate`). A server that shares one gate between
    /// every log on a disk keeps each log's rewrites from landing between the requests of any
    /// log's fsync. Default: a gate of the journal's own.
    #[must_use]
    pub fn with_sync_gate(mut self, gate: SyncGate) -> Journal {
        self.gate = gate;
        self
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's size in bytes: what is written plus what is buffered.
    pub fn len(&self) -> u64 {
        self.len.load(Relaxed)
    }

    /// True when nothing but the header was ever written or buffered.
    pub fn is_empty(&self) -> bool {
        self.len() <= frames::HEADER_LEN as u64
    }

    /// Events queued and not yet finished.
    pub fn pending(&self) -> usize {
        self.inner.lock().pending.len()
    }

    /// Records that event `id` was queued for `hook` at `queued_ms`. Buffered until the next
    /// [`flush`](Self::flush).
    pub fn enqueue(&self, id: u64, hook: &Arc<str>, queued_ms: u64, payload: &Payload) {
        let entry = Entry {
            queued_ms,
            hook: Arc::clone(hook),
            payload: payload.clone(),
            dead: None,
        };
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let before = inner.buf.len();
        let mut scratch = Vec::with_capacity(32 + payload.body.len() + payload.key.len());
        encode_enqueue(id, &entry, &mut inner.buf, &mut scratch);
        self.len
            .fetch_add((inner.buf.len() - before) as u64, Relaxed);
        inner.next_id = inner.next_id.max(id.saturating_add(1));
        inner.pending.insert(id, entry);
    }

    /// Records that event `id` left its queue. Buffered until the next [`flush`](Self::flush); a
    /// `done` lost in a crash only makes the event be delivered once more.
    pub fn done(&self, id: u64) {
        let mut inner = self.inner.lock();
        if inner.pending.remove(&id).is_none() {
            return;
        }
        let before = inner.buf.len();
        encode_id(DONE, id, &mut inner.buf);
        self.len
            .fetch_add((inner.buf.len() - before) as u64, Relaxed);
    }

    /// Records that event `id` became a dead letter at `ms`. It stays pending (and survives a restart
    /// as a dead letter) until [`done`](Self::done).
    pub fn dead(&self, id: u64, reason: DeadReason, ms: u64) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let Some(e) = inner.pending.get_mut(&id) else {
            return;
        };
        e.dead = Some((reason, ms));
        let before = inner.buf.len();
        encode_dead(id, reason, ms, &mut inner.buf);
        self.len
            .fetch_add((inner.buf.len() - before) as u64, Relaxed);
    }

    /// Records that dead letter `id` was queued again at `ms`.
    pub fn requeue(&self, id: u64, ms: u64) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let Some(e) = inner.pending.get_mut(&id) else {
            return;
        };
        e.dead = None;
        e.queued_ms = ms;
        let before = inner.buf.len();
        encode_requeue(id, ms, &mut inner.buf);
        self.len
            .fetch_add((inner.buf.len() - before) as u64, Relaxed);
    }

    /// Writes the buffered records with one `write(2)`, then fsyncs when `sync` is true and
    /// something written is not yet known to be durable: a flush after every command under
    /// `appendfsync always` costs no fsync when the command queued no event.
    ///
    /// # Errors
    /// [`Error::JournalIo`] when the write or the fsync fails; the records stay buffered.
    pub fn flush(&self, sync: bool) -> Result<()> {
        let mut inner = self.inner.lock();
        Self::write_buf(&self.path, &mut inner)?;
        if sync && inner.written > inner.synced {
            self.gate
                .sync_data(&inner.file)
                .map_err(io_err(&self.path))?;
            inner.synced = inner.written;
            self.syncs.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Writes the buffered records, then fsyncs without holding the lock, so that events queued
    /// meanwhile are not held up by the disk (the once-a-second fsync). Nothing new since the last
    /// fsync: no fsync.
    ///
    /// # Errors
    /// [`Error::JournalIo`] when the write or the fsync fails.
    pub fn sync(&self) -> Result<()> {
        let (file, upto) = {
            let mut inner = self.inner.lock();
            Self::write_buf(&self.path, &mut inner)?;
            if inner.written <= inner.synced {
                return Ok(());
            }
            let file = inner.file.try_clone().map_err(io_err(&self.path))?;
            (file, (inner.generation, inner.written))
        };
        self.gate.sync_data(&file).map_err(io_err(&self.path))?;
        self.syncs.fetch_add(1, Relaxed);
        let mut inner = self.inner.lock();
        // A compaction that swapped the file meanwhile fsynced the new one itself; `upto` counts
        // the old one's bytes and says nothing of the new one's.
        if inner.generation == upto.0 {
            inner.synced = inner.synced.max(upto.1);
        }
        Ok(())
    }

    /// The fsyncs this journal has made since it was opened.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Relaxed)
    }

    fn write_buf(path: &Path, inner: &mut Inner) -> Result<()> {
        if inner.buf.is_empty() {
            return Ok(());
        }
        inner.file.write_all(&inner.buf).map_err(io_err(path))?;
        inner.written += inner.buf.len() as u64;
        inner.buf.clear();
        if inner.buf.capacity() > 1 << 20 {
            // A burst must not pin its peak buffer for ever.
            inner.buf = Vec::new();
        }
        Ok(())
    }

    /// Rewrites the journal as its pending events only, with `aof-compactor`'s crash-safe
    /// [`Rewrite`](aof_compactor::Rewrite): the pending set is taken together with the rewrite's start
    /// point, records appended meanwhile are carried over, and the new file replaces the old one with
    /// one fsynced rename. Returns the new size. Blocking: call it from a blocking thread.
    ///
    /// # Errors
    /// [`Error::JournalIo`] when the rewrite fails; the live journal is then unchanged.
    pub fn compact(&self) -> Result<u64> {
        let rewrite_err = |e: aof_compactor::Error| Error::JournalIo {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        };
        let (mut rewrite, mut snapshot, next_id) = {
            let mut inner = self.inner.lock();
            Self::write_buf(&self.path, &mut inner)?;
            let rewrite = aof_compactor::Rewrite::begin_at(&self.path, inner.written)
                .map_err(rewrite_err)?
                .sync_gate(self.gate.clone());
            let snapshot: Vec<(u64, Entry)> = inner
                .pending
                .iter()
                .map(|(id, e)| (*id, e.clone()))
                .collect();
            (rewrite, snapshot, inner.next_id)
        };
        snapshot.sort_unstable_by_key(|(id, _)| *id);
        let mut out = Vec::with_capacity(64 * 1024);
        let mut scratch = Vec::new();
        out.extend_from_slice(frames::MAGIC);
        encode_id(NEXT, next_id, &mut out);
        for (id, e) in &snapshot {
            encode_enqueue(*id, e, &mut out, &mut scratch);
            if let Some((reason, ms)) = e.dead {
                encode_dead(*id, reason, ms, &mut out);
            }
            if out.len() >= 64 * 1024 {
                rewrite.write_all(&out).map_err(io_err(&self.path))?;
                out.clear();
            }
        }
        rewrite.write_all(&out).map_err(io_err(&self.path))?;
        drop(snapshot);
        rewrite.catch_up().map_err(rewrite_err)?;
        let mut inner = self.inner.lock();
        Self::write_buf(&self.path, &mut inner)?;
        let committed = rewrite.commit().map_err(rewrite_err)?;
        let replaced = committed.replaced;
        let old = std::mem::replace(&mut inner.file, committed.file);
        inner.written = committed.len;
        // The commit fsynced the new file before it replaced the old one.
        inner.synced = committed.len;
        inner.generation += 1;
        self.len
            .store(committed.len + inner.buf.len() as u64, Relaxed);
        drop(inner);
        // Freeing the replaced file's blocks can take a while, so it is done outside the lock, and a
        // step at a time, so that it does not queue in front of the appenders' next fsyncs as one
        // discard as long as the file. `replaced` keeps the blocks until then.
        drop(old);
        if let Err(e) = replaced.release() {
            tracing::warn!(error = %e, "freeing the replaced hook journal in steps failed; it is freed when closed");
        }
        Ok(committed.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Payload {
        Payload {
            key: format!("fleet-{i}").into_bytes().into(),
            body: format!("{{\"n\":{i}}}").into_bytes().into(),
        }
    }

    fn ids(p: &[Replayed]) -> Vec<u64> {
        p.iter().map(|r| r.id).collect()
    }

    #[test]
    fn replay_is_enqueued_minus_done_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.journal");
        let opened = Journal::open(&path).unwrap();
        assert!(opened.pending.is_empty());
        let j = opened.journal;
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        for i in 10..20 {
            j.enqueue(i, if i % 2 == 0 { &a } else { &b }, 1000 + i, &payload(i));
        }
        for i in [10, 11, 15, 99] {
            j.done(i);
        }
        // Not flushed: nothing is on disk yet.
        let unflushed = Journal::open(&path).unwrap();
        assert!(unflushed.pending.is_empty());
        drop(unflushed);
        j.flush(true).unwrap();
        drop(j);
        let opened = Journal::open(&path).unwrap();
        assert_eq!(ids(&opened.pending), [12, 13, 14, 16, 17, 18, 19]);
        assert_eq!(opened.next_id, 20);
        let r = &opened.pending[1];
        assert_eq!((&*r.hook, r.queued_ms), ("b", 1013));
        assert_eq!(r.payload, payload(13));
        assert_eq!(opened.journal.pending(), 7);
    }

    #[test]
    fn an_fsync_happens_only_when_something_new_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.journal");
        let j = Journal::open(&path).unwrap().journal;
        let hook: Arc<str> = Arc::from("h");
        // The header an earlier process may have left in the page cache is fsynced once.
        j.flush(true).unwrap();
        assert_eq!(j.syncs(), 1);
        // Commands that queued no event: a flush under `always` and the once-a-second sync
        // have nothing to make durable.
        for _ in 0..5 {
            j.flush(true).unwrap();
            j.sync().unwrap();
        }
        assert_eq!(j.syncs(), 1);
        j.enqueue(1, &hook, 100, &payload(1));
        j.flush(false).unwrap();
        assert_eq!(j.syncs(), 1, "flush(false) never fsyncs");
        j.sync().unwrap();
        assert_eq!(j.syncs(), 2, "written but not fsynced: sync fsyncs");
        j.flush(true).unwrap();
        assert_eq!(j.syncs(), 2);
        j.done(1);
        j.flush(true).unwrap();
        assert_eq!(j.syncs(), 3);
        // A compaction's commit fsyncs the new file; the offsets start again from its length,
        // and the next record written to it is fsynced.
        j.enqueue(2, &hook, 100, &payload(2));
        j.compact().unwrap();
        j.flush(true).unwrap();
        assert_eq!(j.syncs(), 3, "the compaction made everything durable");
        j.done(2);
        j.flush(true).unwrap();
        assert_eq!(j.syncs(), 4);
    }

    #[test]
    fn dead_letters_and_requeues_survive_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.journal");
        let j = Journal::open(&path).unwrap().journal;
        let hook: Arc<str> = Arc::from("h");
        for i in 0..4 {
            j.enqueue(i, &hook, 100, &payload(i));
        }
        j.dead(0, DeadReason::Expired, 200);
        j.dead(1, DeadReason::Retries, 300);
        j.dead(2, DeadReason::Expired, 400);
        j.requeue(2, 500);
        j.done(3);
        j.flush(false).unwrap();
        drop(j);
        let state = |opened: &Opened| {
            opened
                .pending
                .iter()
                .map(|r| (r.id, r.queued_ms, r.dead))
                .collect::<Vec<_>>()
        };
        let want = vec![
            (0, 100, Some((DeadReason::Expired, 200))),
            (1, 100, Some((DeadReason::Retries, 300))),
            (2, 500, None),
        ];
        let opened = Journal::open(&path).unwrap();
        assert_eq!(state(&opened), want);
        opened.journal.compact().unwrap();
        drop(opened);
        let opened = Journal::open(&path).unwrap();
        assert_eq!(state(&opened), want, "compaction keeps dead letters");
    }

    #[test]
    fn a_torn_tail_is_cut_and_whole_records_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.journal");
        let j = Journal::open(&path).unwrap().journal;
        let hook: Arc<str> = Arc::from("h");
        let mut ends = vec![j.len()];
        for i in 0..5 {
            j.enqueue(i, &hook, 0, &payload(i));
            j.flush(false).unwrap();
            ends.push(j.len());
        }
        drop(j);
        let full = std::fs::read(&path).unwrap();
        // Cut the file at every offset: what comes back is exactly the records wholly before the cut.
        for cut in frames::HEADER_LEN..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            for leftover in std::fs::read_dir(dir.path()).unwrap() {
                let p = leftover.unwrap().path();
                if p != path {
                    std::fs::remove_file(p).unwrap();
                }
            }
            let opened = Journal::open(&path).unwrap();
            let whole = ends.iter().filter(|e| **e <= cut as u64).count() - 1;
            assert_eq!(
                ids(&opened.pending),
                (0..whole as u64).collect::<Vec<_>>(),
                "cut at {cut}"
            );
            assert_eq!(
                opened.repaired_bytes,
                cut as u64 - ends[whole],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn damage_before_the_tail_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.journal");
        let j = Journal::open(&path).unwrap().journal;
        let hook: Arc<str> = Arc::from("h");
        for i in 0..3 {
            j.enqueue(i, &hook, 0, &payload(i));
        }
        j.flush(false).unwrap();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[frames::HEADER_LEN + 12] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(Error::JournalCorrupt { .. })
        ));
    }

    #[test]
    fn compaction_keeps_pending_events_ids_and_later_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.journal");
        let j = Journal::open(&path).unwrap().journal;
        let hook: Arc<str> = Arc::from("h");
        for i in 0..1000 {
            j.enqueue(i, &hook, i, &payload(i));
            if i < 990 {
                j.done(i);
            }
        }
        j.flush(false).unwrap();
        let before = j.len();
        // A reader's handle on the old file sees it emptied, a step at a time, before compact returns.
        let old = std::fs::File::open(&path).unwrap();
        let after = j.compact().unwrap();
        assert!(after * 20 < before, "{after} vs {before}");
        assert_eq!(
            old.metadata().unwrap().len(),
            0,
            "the replaced journal was not released"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), after);
        // The live journal keeps working after the swap.
        j.done(990);
        j.enqueue(1000, &hook, 1000, &payload(1000));
        j.flush(true).unwrap();
        // A compaction with nothing pending keeps the id floor.
        drop(j);
        let opened = Journal::open(&path).unwrap();
        assert_eq!(ids(&opened.pending), (991..=1000).collect::<Vec<_>>());
        assert_eq!(opened.pending[0].payload, payload(991));
        let j = opened.journal;
        for i in 991..=1000 {
            j.done(i);
        }
        j.compact().unwrap();
        drop(j);
        let opened = Journal::open(&path).unwrap();
        assert!(opened.pending.is_empty());
        assert_eq!(opened.next_id, 1001, "ids are never reused");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left behind"
        );
    }
}
