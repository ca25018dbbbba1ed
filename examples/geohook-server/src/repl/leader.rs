//! The leader side: the file's header at creation, a follower's PSYNC, and
//! the full-sync snapshot taken from the database.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use geohook_repl::{encode_header, ReplId, Snapshot, SnapshotSource};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::cmd::set::{snapshot_batch, SnapshotSink};
use crate::state::Shared;

/// Suffix of the file a full sync builds before it replaces the live one.
const FULLSYNC_SUFFIX: &str = "fullsync";

/// Writes a fresh header (new replication id, offset 0) into a missing or
/// empty append-only file, so that every file this server writes starts
/// with one.
///
/// # Errors
///
/// Any I/O error.
pub(crate) fn prepare_file(path: &Path) -> anyhow::Result<()> {
    let empty = match std::fs::metadata(path) {
        Ok(m) => m.len() == 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    if empty {
        crate::fsio::write(path, &encode_header(&ReplId::random(), 0, 0))
            .with_context(|| format!("create {}", path.display()))?;
    }
    // A full sync that was interrupted leaves its half-built file behind.
    let _ = std::fs::remove_file(fullsync_path(path));
    Ok(())
}

pub(crate) fn fullsync_path(live: &Path) -> PathBuf {
    live.with_extension(format!("aof.{FULLSYNC_SUFFIX}"))
}

/// Serves a follower's `PSYNC` on a client connection that authenticated;
/// `pending` holds bytes read after the command.
pub(crate) async fn serve_psync(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    announced: geohook_repl::Announced,
    args: Vec<Vec<u8>>,
    pending: Vec<u8>,
) {
    use tokio::io::AsyncWriteExt as _;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let (leader, links) = match shared.repl.get() {
        Some(r) => (r.leader.lock().clone(), r.links.lock().clone()),
        None => (None, CancellationToken::new()),
    };
    let Some(leader) = leader else {
        let _ = stream.write_all(b"-ERR not the leader\r\n").await;
        return;
    };
    let _ = stream.set_nodelay(true);
    let source = DbSnapshot {
        shared: shared.clone(),
    };
    let cancel = links.child_token();
    let shutdown = shared.shutdown.clone();
    let done = tokio::select! {
        r = leader.serve_psync_announced(
            stream, &peer, announced, &args, pending, &source, &cancel,
        ) => r,
        () = shutdown.cancelled() => Ok(()),
    };
    match done {
        Ok(()) => tracing::info!(%peer, "follower link closed"),
        Err(e) => tracing::warn!(%peer, error = %e, "follower link ended"),
    }
}

/// Full-sync snapshots from the database, built in batches.
///
/// The invariant that makes a batched snapshot exact: the snapshot's offset
/// is read once, under the read lock, before the first batch. Every write
/// is applied to memory and appended to the stream under the write lock, so
/// a write at or before that offset is in memory when the first batch is
/// taken (and so in whichever batch covers its key), and every write after it
/// is in the stream the follower applies after `+SNAPSHOTEND`. A write made
/// between two batches may also show in a later batch; the follower then
/// applies it twice (in the snapshot, then again from the stream, with the
/// writes before it), which converges for the reason a shrink's carried-over
/// tail does (see `crate::shrink`): every logged command sets a final value,
/// and a missing key or id or a blocked NX/XX is ignored on replay. The
/// leader keeps the stream from that offset in its backlog; a sync so slow
/// that the backlog moves past it ends with a backlog overrun and the
/// follower starts over, as a Redis replica does.
///
/// RENAME breaks the argument (an object can jump from a key the walk has
/// not reached to one it has passed; see `crate::shrink`), so each batch
/// reads the database's move count, and a sync whose walk saw a move is
/// abandoned before `+SNAPSHOTEND`: the follower asks again.
struct DbSnapshot {
    shared: Arc<Shared>,
}

/// Items per read-lock hold, as in a shrink.
const BATCH: usize = 1000;

/// Commands of one batch, as [`snapshot_batch`] hands them over.
#[derive(Default)]
struct Queue {
    cmds: VecDeque<Vec<Vec<u8>>>,
    bytes: usize,
}

impl SnapshotSink for Queue {
    fn command(&mut self, args: &[Vec<u8>]) {
        self.bytes += geohook_repl::encoded_len(args);
        self.cmds.push_back(args.to_vec());
    }
    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Where a batched snapshot is in its walk.
enum Phase {
    /// Objects after this (key, id); `None` before the first.
    Objects(Option<(String, String)>),
    Hooks,
    Done,
}

/// The snapshot's commands, one batch at a time: at most one batch (at most
/// [`BATCH`] items or about `BATCH_BYTES` of commands) is held per sync, and
/// the read lock only while a batch is taken.
struct Batches {
    shared: Arc<Shared>,
    phase: Phase,
    queue: Queue,
    /// The database's move count when the offset was read.
    moves: u64,
    /// Set when a batch saw a different move count; the walk then stops.
    moved: Arc<AtomicBool>,
}

impl Batches {
    fn refill(&mut self) {
        self.queue.bytes = 0;
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Objects(after) => {
                let core = self.shared.core.read();
                if core.db.moves() != self.moves {
                    self.moved.store(true, Ordering::Relaxed);
                    return;
                }
                let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
                let next = snapshot_batch(
                    &core.db,
                    after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())),
                    now,
                    BATCH,
                    &mut self.queue,
                );
                self.phase = match next {
                    Some(last) => Phase::Objects(Some(last)),
                    None => Phase::Hooks,
                };
            }
            Phase::Hooks => {
                // Hooks follow the objects, as in a shrink, so that a hook's
                // GET area resolves when the follower applies it. The hook
                // list is small next to the data and is taken whole.
                let _core = self.shared.core.read();
                if let Some(h) = self.shared.hooks.get() {
                    crate::cmd::hooks::snapshot(h, &mut self.queue);
                }
            }
            Phase::Done => {}
        }
    }
}

impl Iterator for Batches {
    type Item = Vec<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(cmd) = self.queue.cmds.pop_front() {
                return Some(cmd);
            }
            if matches!(self.phase, Phase::Done) {
                return None;
            }
            self.refill();
        }
    }
}

impl SnapshotSource for DbSnapshot {
    fn snapshot(&self) -> Snapshot {
        // See the invariant on `DbSnapshot`: the offset is taken before the
        // first batch, under the same lock that orders writes.
        let (offset, moves) = {
            let core = self.shared.core.read();
            (core.aof.offset(), core.db.moves())
        };
        let moved = Arc::new(AtomicBool::new(false));
        let seen = moved.clone();
        Snapshot {
            offset,
            commands: Box::new(Batches {
                shared: self.shared.clone(),
                phase: Phase::Objects(None),
                queue: Queue::default(),
                moves,
                moved,
            }),
            consistent: Some(Box::new(move || !seen.load(Ordering::Relaxed))),
        }
    }
}
