//! The replication state of a node, as a plain type that the shared state
//! holds; the code that changes it is in `control.rs` and `follower.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use geohook_repl::{FollowerState, Leader, LeaderConfig, Limits, ReplId, Unapplied};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Generous caps for reading a node's own file (it was written by us).
pub(crate) fn file_limits() -> Limits {
    Limits {
        max_args: 1 << 20,
        max_bulk: 512 << 20,
        max_line: 64,
    }
}

/// The link to the leader this node follows.
pub(crate) struct Following {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Stops the follower task.
    pub(crate) cancel: CancellationToken,
    pub(crate) status: watch::Receiver<FollowerState>,
    /// Whether stream bytes reached the link that are not applied yet.
    pub(crate) unapplied: Unapplied,
}

/// A full sync in progress: the new file being built.
pub(crate) struct SyncFile {
    pub(crate) path: PathBuf,
    pub(crate) file: std::io::BufWriter<std::fs::File>,
    pub(crate) base_len: u64,
}

/// The replication state of this node.
pub(crate) struct Repl {
    /// Where follower tasks are spawned.
    pub(crate) tracker: TaskTracker,
    pub(crate) leader_config: LeaderConfig,
    /// The leader side, on a leader.
    pub(crate) leader: Mutex<Option<Arc<Leader>>>,
    /// Cancels the connections of attached followers when this node stops
    /// leading.
    pub(crate) links: Mutex<CancellationToken>,
    /// The replication id this node's next header carries.
    pub(crate) replid: Mutex<ReplId>,
    pub(crate) following: Mutex<Option<Following>>,
    /// A full sync in progress (shared by every follower task this node
    /// runs, so that a FOLLOW during one takes it over).
    pub(crate) sync: Arc<Mutex<Option<SyncFile>>>,
}

impl std::fmt::Debug for Repl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repl")
            .field("replid", &*self.replid.lock())
            .finish_non_exhaustive()
    }
}
