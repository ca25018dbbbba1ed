//! The leader side: the file's header at creation, a follower's PSYNC, and
//! the full-sync snapshot taken from the database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use geohook_repl::{encode_header, ReplId, Snapshot, SnapshotSource};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::cmd::set::snapshot_batch;
use crate::repl::state::file_limits;
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
        r = leader.serve_psync(stream, &peer, &args, pending, &source, &cancel) => r,
        () = shutdown.cancelled() => Ok(()),
    };
    match done {
        Ok(()) => tracing::info!(%peer, "follower link closed"),
        Err(e) => tracing::warn!(%peer, error = %e, "follower link ended"),
    }
}

/// Full-sync snapshots from the database.
struct DbSnapshot {
    shared: Arc<Shared>,
}

impl SnapshotSource for DbSnapshot {
    fn snapshot(&self) -> Snapshot {
        let mut buf = Vec::new();
        let offset = {
            let core = self.shared.core.read();
            let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
            snapshot_batch(&core.db, None, now, usize::MAX, &mut buf);
            // Hooks follow the objects, as in a shrink, so that a hook's
            // GET area resolves when the follower applies it.
            if let Some(h) = self.shared.hooks.get() {
                crate::cmd::hooks::snapshot(h, &mut buf);
            }
            core.aof.offset()
        };
        let mut at = 0usize;
        let limits = file_limits();
        let commands =
            std::iter::from_fn(
                move || match geohook_repl::decode_command(&buf[at..], &limits) {
                    Ok(Some((cmd, used))) => {
                        at += used;
                        Some(cmd)
                    }
                    _ => None,
                },
            );
        Snapshot {
            offset,
            commands: Box::new(commands),
        }
    }
}
