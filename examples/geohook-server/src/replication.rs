//! Leader/follower replication, wired from `geohook-repl`: the role state,
//! the leader's backlog tap on the append-only file, the PSYNC hand-off, the
//! follower task that applies the leader's stream, and `FOLLOW`/`ROLE`.
//!
//! The replication offset is the file's logical offset ([`Aof::offset`]):
//! every file starts with a `REPLSTATE <replid> <offset> <base_len>` header
//! (written at creation, by every shrink and by every full sync), so a
//! restarted node knows its position from its own file. A leader sends every
//! appended command to its backlog with exactly the bytes it wrote, under the
//! core lock, so stream order is apply order. A follower writes the leader's
//! commands byte for byte to its own file, and never logs expirations of its
//! own: the expiry task does nothing on a follower, whose reads hide expired
//! objects until the leader's `del` arrives.
//!
//! [`Aof::offset`]: crate::aof::Aof::offset

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use geohook_repl::{
    encode_header, recover, Backlog, BoxError, Follower, FollowerConfig, FollowerState, Leader,
    LeaderConfig, Limits, ReplId, Replica, Snapshot, SnapshotSource,
};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aof::{Fsync, AOF_NAME};
use crate::state::{now_ms, Shared};

/// Suffix of the file a full sync builds before it replaces the live one.
const FULLSYNC_SUFFIX: &str = "fullsync";

/// Generous caps for reading a node's own file (it was written by us).
fn file_limits() -> Limits {
    Limits {
        max_args: 1 << 20,
        max_bulk: 512 << 20,
        max_line: 64,
    }
}

/// The command names a follower refuses ("not the leader"): the data writes
/// plus the hook and channel writes.
fn is_write(name: &str) -> bool {
    crate::geo::is_write(name)
        || matches!(
            name,
            "sethook" | "delhook" | "pdelhook" | "setchan" | "delchan" | "pdelchan"
        )
}

/// The data reads a follower refuses until it has caught up once.
fn is_read(name: &str) -> bool {
    crate::geo::is_read(name) || matches!(name, "hooks" | "chans")
}

struct Following {
    host: String,
    port: u16,
    cancel: CancellationToken,
    status: watch::Receiver<FollowerState>,
}

/// The replication state of this node.
pub struct Repl {
    tracker: TaskTracker,
    leader_config: LeaderConfig,
    /// The leader side, on a leader.
    leader: Mutex<Option<Arc<Leader>>>,
    /// Cancels the connections of attached followers when this node stops
    /// leading.
    links: Mutex<CancellationToken>,
    /// The replication id this node's next header carries.
    replid: Mutex<ReplId>,
    following: Mutex<Option<Following>>,
    /// A full sync in progress (shared by every follower task this node
    /// runs, so that a FOLLOW during one takes it over).
    sync: Arc<Mutex<Option<SyncFile>>>,
}

impl std::fmt::Debug for Repl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repl")
            .field("replid", &*self.replid.lock())
            .finish_non_exhaustive()
    }
}

/// A node's replication state for SERVER, ROLE and metrics.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// "leader" or "follower".
    pub role: &'static str,
    /// The current replication id.
    pub replid: String,
    /// This node's replication offset.
    pub offset: u64,
    /// On a follower: `host:port` of the leader.
    pub following: Option<String>,
    /// On a follower: connected to the leader.
    pub connected: bool,
    /// On a follower: at the leader's last announced offset.
    pub caught_up: bool,
    /// On a follower: caught up at least once since FOLLOW or start.
    pub caught_up_once: bool,
    /// On a follower: the leader's last announced offset.
    pub leader_offset: u64,
    /// On a follower: bytes behind; on a leader: the largest follower lag.
    pub lag_bytes: u64,
    /// On a follower: how long it has been behind, in milliseconds.
    pub lag_ms: u64,
    /// Full syncs (served on a leader, received on a follower).
    pub full_syncs: u64,
    /// Partial resyncs (served on a leader, received on a follower).
    pub partial_syncs: u64,
    /// On a leader: attached followers.
    pub connected_followers: u64,
}

/// Writes a fresh header (new replication id, offset 0) into a missing or
/// empty append-only file, so that every file this server writes starts
/// with one.
///
/// # Errors
///
/// Any I/O error.
pub fn prepare_file(path: &Path) -> anyhow::Result<()> {
    let empty = match std::fs::metadata(path) {
        Ok(m) => m.len() == 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    if empty {
        let mut f =
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
        f.write_all(&encode_header(&ReplId::random(), 0, 0))?;
        f.sync_all()?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    // A full sync that was interrupted leaves its half-built file behind.
    let _ = std::fs::remove_file(fullsync_path(path));
    Ok(())
}

fn fullsync_path(live: &Path) -> PathBuf {
    live.with_extension(format!("aof.{FULLSYNC_SUFFIX}"))
}

/// Reads the position from the live file's `bytes` (read once at start and
/// replayed by [`crate::app::load_with`] too), sets the log's offset, and
/// takes the role the settings name: a follower of
/// `follow_host:follow_port`, or a leader that serves PSYNC with a backlog
/// loaded from its own file.
///
/// # Errors
///
/// The file's header is damaged.
pub fn start(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    backlog: usize,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let live = shared.opts.dir.join(AOF_NAME);
    let found = recover(bytes, &file_limits())
        .with_context(|| format!("replication header of {}", live.display()))?;
    let offset = found.offset();
    let had_header = found.replid().is_some();
    let replid = found.replid().unwrap_or_else(ReplId::random);
    let leader_config = LeaderConfig {
        backlog_capacity: backlog,
        ..LeaderConfig::default()
    };
    let backlog = Backlog::load(
        leader_config.backlog_capacity,
        offset,
        found.stream_bytes(bytes),
    );
    shared.core.write().aof.set_offset(offset);
    let repl = Arc::new(Repl {
        tracker: tracker.clone(),
        leader_config,
        leader: Mutex::new(None),
        links: Mutex::new(CancellationToken::new()),
        replid: Mutex::new(replid),
        following: Mutex::new(None),
        sync: Arc::default(),
    });
    let _ = shared.repl.set(repl.clone());
    let (host, port) = {
        let s = shared.settings.read();
        (s.follow_host.clone(), s.follow_port)
    };
    tracing::info!(replid = %replid.as_str(), offset, "replication position recovered");
    if host.is_empty() {
        // Under `always` every byte a follower can have received was durable
        // here first, so the history continues under the same id; otherwise
        // an unsynced tail may be lost and a new id makes any follower that
        // saw it full-sync instead of diverging.
        let leader = if shared.opts.fsync == Fsync::Always && had_header {
            Leader::with_backlog(repl.leader_config.clone(), replid, backlog)?
        } else {
            Leader::recovered(repl.leader_config.clone(), replid, backlog)?
        };
        let leader = Arc::new(leader);
        *repl.replid.lock() = leader.position().0;
        shared.core.write().aof.set_tap(Some(leader.clone()));
        *repl.leader.lock() = Some(leader);
        shared.leader.store(true, Ordering::Release);
    } else {
        let position = had_header.then_some((replid, offset));
        follow(shared, &repl, host, port, position)?;
    }
    Ok(())
}

fn repl(shared: &Shared) -> Result<&Arc<Repl>, String> {
    shared
        .repl
        .get()
        .ok_or_else(|| "replication is not started".to_string())
}

/// Starts following `host:port` from `position`.
fn follow(
    shared: &Arc<Shared>,
    repl: &Arc<Repl>,
    host: String,
    port: u16,
    position: Option<(ReplId, u64)>,
) -> anyhow::Result<()> {
    let auth = {
        let a = shared.settings.read().leaderauth.clone();
        (!a.is_empty()).then_some(a)
    };
    let cancel = shared.shutdown.child_token();
    let replica = Arc::new(ServerReplica {
        shared: shared.clone(),
        cancel: cancel.clone(),
        sync: repl.sync.clone(),
    });
    let config = FollowerConfig {
        host: host.clone(),
        port,
        auth,
        ..Default::default()
    };
    let follower = Follower::new(config, replica, position)?;
    let status = follower.status();
    {
        // Stop leading first: no more backlog appends, attached followers
        // are dropped, and writes are refused from here on.
        let mut core = shared.core.write();
        shared.leader.store(false, Ordering::Release);
        core.aof.set_tap(None);
        *repl.leader.lock() = None;
        repl.links.lock().cancel();
    }
    if let Some(old) = repl.following.lock().replace(Following {
        host: host.clone(),
        port,
        cancel: cancel.clone(),
        status,
    }) {
        old.cancel.cancel();
    }
    tracing::info!(%host, port, "following");
    repl.tracker.spawn(follower.run(cancel));
    Ok(())
}

/// Stops following and becomes a leader that continues this node's
/// history under a new replication id.
fn promote(shared: &Arc<Shared>, repl: &Arc<Repl>) -> Result<(), String> {
    let Some(old) = repl.following.lock().take() else {
        return Ok(());
    };
    old.cancel.cancel();
    let mut core = shared.core.write();
    if let Some(s) = repl.sync.lock().take() {
        // Promoted in the middle of a full sync: memory holds part of the
        // leader's snapshot while the file still holds the old state. Reload
        // nothing silently; say so, and free the shrink flag the sync held.
        let _ = std::fs::remove_file(&s.path);
        shared.shrinking.store(false, Ordering::SeqCst);
        tracing::error!(
            "promoted during a full sync: memory holds a partial snapshot; restart to reload the file"
        );
    }
    let offset = core.aof.offset();
    let replid = *repl.replid.lock();
    let leader = Leader::recovered(
        repl.leader_config.clone(),
        replid,
        Backlog::new(repl.leader_config.backlog_capacity, offset),
    )
    .map_err(|e| e.to_string())?;
    let leader = Arc::new(leader);
    *repl.replid.lock() = leader.position().0;
    core.aof.set_tap(Some(leader.clone()));
    *repl.leader.lock() = Some(leader);
    *repl.links.lock() = CancellationToken::new();
    shared.leader.store(true, Ordering::Release);
    tracing::info!(offset, "no longer following: leading");
    Ok(())
}

/// Refuses a command a follower must not run now: writes ("not the
/// leader"), and data reads until it has caught up with its leader once
/// ("catching up to leader").
///
/// # Errors
///
/// The message for the client.
pub fn gate(shared: &Shared, name: &str) -> Result<(), String> {
    if shared.is_leader() {
        return Ok(());
    }
    if is_write(name) {
        return Err("not the leader".into());
    }
    if is_read(name) && !caught_up(shared, true) {
        return Err("catching up to leader".into());
    }
    Ok(())
}

/// HEALTHZ on a follower: fails while it is behind its leader.
///
/// # Errors
///
/// "catching up to leader".
pub fn healthz(shared: &Shared) -> Result<(), String> {
    if shared.is_leader() || caught_up(shared, false) {
        Ok(())
    } else {
        Err("catching up to leader".into())
    }
}

fn caught_up(shared: &Shared, once: bool) -> bool {
    let Some(repl) = shared.repl.get() else {
        return true;
    };
    let f = repl.following.lock();
    match f.as_ref() {
        Some(f) => {
            let s = f.status.borrow();
            if once {
                s.caught_up_once
            } else {
                s.caught_up
            }
        }
        None => true,
    }
}

/// The node's replication state.
pub fn status(shared: &Shared) -> Status {
    let offset = shared.core.read().aof.offset();
    let Some(repl) = shared.repl.get() else {
        return Status {
            role: "leader",
            offset,
            ..Status::default()
        };
    };
    let replid = repl.replid.lock().as_str().to_owned();
    if let Some(f) = repl.following.lock().as_ref() {
        let s = f.status.borrow();
        return Status {
            role: "follower",
            replid: s.replid.map(|r| r.as_str().to_owned()).unwrap_or(replid),
            offset,
            following: Some(format!("{}:{}", f.host, f.port)),
            connected: s.connected,
            caught_up: s.caught_up,
            caught_up_once: s.caught_up_once,
            leader_offset: s.leader_offset,
            lag_bytes: s.lag_bytes(),
            lag_ms: s.lag().as_millis() as u64,
            full_syncs: s.full_syncs,
            partial_syncs: s.partial_syncs,
            connected_followers: 0,
        };
    }
    let leader = repl.leader.lock().clone();
    let stats = leader.map(|l| l.stats());
    Status {
        role: "leader",
        replid,
        offset,
        leader_offset: offset,
        lag_bytes: stats
            .as_ref()
            .and_then(|s| s.followers.iter().map(|f| f.lag_bytes).max())
            .unwrap_or(0),
        full_syncs: stats.as_ref().map_or(0, |s| s.full_syncs),
        partial_syncs: stats.as_ref().map_or(0, |s| s.partial_syncs),
        connected_followers: stats.as_ref().map_or(0, |s| {
            s.followers.iter().filter(|f| f.streaming).count() as u64
        }),
        ..Status::default()
    }
}

/// The fields SERVER adds for replication, as (name, value) pairs.
pub fn server_fields(shared: &Shared) -> Vec<(&'static str, String)> {
    let s = status(shared);
    vec![
        ("role", s.role.to_string()),
        ("following", s.following.clone().unwrap_or_default()),
        ("caught_up", s.caught_up.to_string()),
        ("caught_up_once", s.caught_up_once.to_string()),
        ("replid", s.replid.clone()),
        ("repl_offset", s.offset.to_string()),
        ("leader_offset", s.leader_offset.to_string()),
        ("repl_lag_bytes", s.lag_bytes.to_string()),
        ("repl_lag_ms", s.lag_ms.to_string()),
        ("repl_full_syncs", s.full_syncs.to_string()),
        ("repl_partial_syncs", s.partial_syncs.to_string()),
        ("connected_followers", s.connected_followers.to_string()),
    ]
}

/// `FOLLOW host port` or `FOLLOW no one`.
///
/// # Errors
///
/// Arity, a bad port, or replication not started.
pub fn follow_command(shared: &Arc<Shared>, args: &[Vec<u8>]) -> Result<(), String> {
    if args.len() != 3 {
        return Err(crate::commands::arity("follow"));
    }
    let host = String::from_utf8_lossy(&args[1]).into_owned();
    let port_s = String::from_utf8_lossy(&args[2]).into_owned();
    let repl = repl(shared)?.clone();
    if host.eq_ignore_ascii_case("no") && port_s.eq_ignore_ascii_case("one") {
        promote(shared, &repl)?;
        let mut s = shared.settings.write();
        s.follow_host.clear();
        s.follow_port = 0;
        return Ok(());
    }
    let port: u16 = port_s
        .parse()
        .map_err(|_| crate::commands::invalid(&args[2]))?;
    if port == 0 {
        return Err(crate::commands::invalid(&args[2]));
    }
    // Stop the old link first: its task checks the token under the core
    // lock before applying, so no command lands after the position is read.
    if let Some(old) = repl.following.lock().take() {
        old.cancel.cancel();
    }
    let position = {
        let core = shared.core.read();
        Some((*repl.replid.lock(), core.aof.offset()))
    };
    follow(shared, &repl, host.clone(), port, position).map_err(|e| e.to_string())?;
    let mut s = shared.settings.write();
    s.follow_host = host;
    s.follow_port = port;
    Ok(())
}

/// The REPLSTATE header a shrink starts its new file with: this node's
/// replication id and `offset` (the logical offset where the shrink's
/// carried-over tail begins), with `base_len` the snapshot's length.
pub fn shrink_header(shared: &Shared, offset: u64, base_len: u64) -> Option<Vec<u8>> {
    let repl = shared.repl.get()?;
    let replid = *repl.replid.lock();
    Some(encode_header(&replid, offset, base_len))
}

/// Serves a follower's `PSYNC` on a client connection that authenticated;
/// `pending` holds bytes read after the command.
pub async fn serve_psync(
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
            crate::geo::snapshot_batch(&core.db, None, now_ms(), usize::MAX, &mut buf);
            // Hooks follow the objects, as in a shrink, so that a hook's
            // GET area resolves when the follower applies it.
            if let Some(h) = self.shared.hooks.get() {
                h.snapshot(&mut buf);
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

/// A full sync in progress: the new file being built.
struct SyncFile {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    base_len: u64,
}

/// The server's database as the follower task's state machine.
struct ServerReplica {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    sync: Arc<Mutex<Option<SyncFile>>>,
}

impl ServerReplica {
    fn live(&self) -> Result<(), BoxError> {
        if self.cancel.is_cancelled() {
            return Err("no longer following".into());
        }
        Ok(())
    }
}

/// Takes the shrink flag, waiting for a running shrink to finish.
fn acquire_shrink_flag(shared: &Shared) -> Result<(), BoxError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while shared.shrinking.swap(true, Ordering::SeqCst) {
        if std::time::Instant::now() > deadline {
            return Err("a shrink did not finish within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Applies one command from the leader to memory (data and hooks) without
/// logging it; the caller writes the leader's bytes to the file.
fn replay(shared: &Shared, core: &mut crate::state::Core, args: &[Vec<u8>]) {
    core.loading = true;
    let r = crate::hooks::replay(core, shared.hooks.get().map(|h| &**h), args);
    core.loading = false;
    if let Err(e) = r {
        tracing::warn!(
            cmd = %String::from_utf8_lossy(&args[0]),
            error = %e,
            "replicated command not applied"
        );
    }
}

impl Replica for ServerReplica {
    fn apply(&self, args: Vec<Vec<u8>>, offset: u64) -> Result<(), BoxError> {
        let mut core = self.shared.core.write();
        // Checked under the lock FOLLOW NO ONE takes, so no command lands
        // after a promotion.
        self.live()?;
        core.writable()?;
        replay(&self.shared, &mut core, &args);
        core.aof.append(&args)?;
        if self.shared.opts.fsync == Fsync::Always {
            core.aof.sync()?;
        }
        if core.aof.offset() != offset {
            tracing::warn!(
                ours = core.aof.offset(),
                leader = offset,
                "replicated command re-encoded to a different length"
            );
            core.aof.set_offset(offset);
        }
        Ok(())
    }

    fn reset(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        self.live()?;
        let live = self.shared.opts.dir.join(AOF_NAME);
        let path = fullsync_path(&live);
        let mut file = std::io::BufWriter::with_capacity(
            256 * 1024,
            std::fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?,
        );
        file.write_all(&encode_header(replid, offset, 0))?;
        let mut sync = self.sync.lock();
        if sync.is_none() {
            // No shrink may run while the database holds a partial snapshot:
            // its file would claim the old position with part of the data.
            // The flag is released when the new file is in place.
            acquire_shrink_flag(&self.shared)?;
        }
        *sync = Some(SyncFile {
            path,
            file,
            base_len: 0,
        });
        drop(sync);
        let mut core = self.shared.core.write();
        core.db = geohook_db::Database::new();
        replay(
            &self.shared,
            &mut core,
            &[b"pdelhook".to_vec(), b"*".to_vec()],
        );
        tracing::info!(replid = %replid.as_str(), offset, "full sync started");
        Ok(())
    }

    fn apply_snapshot(&self, args: Vec<Vec<u8>>) -> Result<(), BoxError> {
        self.live()?;
        let mut buf = Vec::new();
        crate::resp::encode_command(&mut buf, &args);
        {
            let mut sync = self.sync.lock();
            let s = sync
                .as_mut()
                .ok_or("snapshot command outside a full sync")?;
            s.file.write_all(&buf)?;
            s.base_len += buf.len() as u64;
        }
        let mut core = self.shared.core.write();
        replay(&self.shared, &mut core, &args);
        Ok(())
    }

    fn finish_snapshot(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        self.live()?;
        let s = self
            .sync
            .lock()
            .take()
            .ok_or("full sync finished without a start")?;
        let file = s.file.into_inner().map_err(|e| e.into_error())?;
        file.write_all_at(&encode_header(replid, offset, s.base_len), 0)?;
        file.sync_all()?;
        drop(file);
        let result = (|| -> Result<(), BoxError> {
            let live = self.shared.opts.dir.join(AOF_NAME);
            let mut core = self.shared.core.write();
            self.live()?;
            std::fs::rename(&s.path, &live)?;
            if let Some(dir) = live.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            let f = std::fs::OpenOptions::new().append(true).open(&live)?;
            let size = f.metadata()?.len();
            core.aof.replace(f, size);
            core.aof.set_offset(offset);
            *self
                .shared
                .repl
                .get()
                .ok_or("replication is not started")?
                .replid
                .lock() = *replid;
            Ok(())
        })();
        self.shared.shrinking.store(false, Ordering::SeqCst);
        result?;
        tracing::info!(replid = %replid.as_str(), offset, base = s.base_len, "full sync finished");
        Ok(())
    }

    fn replid_changed(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        if let Some(r) = self.shared.repl.get() {
            *r.replid.lock() = *replid;
        }
        tracing::info!(replid = %replid.as_str(), offset, "leader continued under a new id");
        Ok(())
    }
}

/// `ROLE`: the node's replication state as field/value pairs (a JSON
/// object under `role` in JSON mode).
///
/// # Errors
///
/// Arity.
pub fn role(
    shared: &Shared,
    ctx: &crate::commands::Ctx,
    args: &[Vec<u8>],
) -> Result<crate::resp::Reply, String> {
    use crate::resp::Reply;
    if args.len() != 1 {
        return Err(crate::commands::arity("role"));
    }
    let fields = server_fields(shared);
    if ctx.json {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        return Ok(ctx.ok_json(&format!(",\"role\":{}", serde_json::Value::Object(map))));
    }
    Ok(Reply::Array(
        fields
            .into_iter()
            .flat_map(|(k, v)| [Reply::bulk(k), Reply::bulk(v)])
            .collect(),
    ))
}

/// Prometheus gauges for replication, mirrored from [`status`] before each
/// scrape (the counters live in `geohook-repl`, so they are exported as
/// gauges that only grow within one process).
#[derive(Debug, Default)]
pub struct ReplGauges {
    /// 1 on a leader, 0 on a follower.
    pub leader: prometheus_client::metrics::gauge::Gauge,
    /// This node's replication offset.
    pub offset: prometheus_client::metrics::gauge::Gauge,
    /// Bytes behind the leader (a follower), or of the furthest follower
    /// (a leader).
    pub lag_bytes: prometheus_client::metrics::gauge::Gauge,
    /// How long a follower has been behind, in seconds.
    pub lag_seconds: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Full syncs served (leader) or received (follower).
    pub full_syncs: prometheus_client::metrics::gauge::Gauge,
    /// Partial resyncs served (leader) or received (follower).
    pub partial_syncs: prometheus_client::metrics::gauge::Gauge,
    /// Followers streaming from this leader.
    pub connected_followers: prometheus_client::metrics::gauge::Gauge,
}

impl ReplGauges {
    /// Adds the gauges to the registry.
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "geohook_repl_leader",
            "1 when this node leads, 0 when it follows",
            self.leader.clone(),
        );
        r.register(
            "geohook_repl_offset_bytes",
            "Replication offset",
            self.offset.clone(),
        );
        r.register(
            "geohook_repl_lag_bytes",
            "Bytes a follower is behind its leader (on a leader: the furthest follower)",
            self.lag_bytes.clone(),
        );
        r.register(
            "geohook_repl_lag_seconds",
            "How long a follower has been behind its leader",
            self.lag_seconds.clone(),
        );
        r.register(
            "geohook_repl_full_syncs",
            "Full syncs served (leader) or received (follower) since start",
            self.full_syncs.clone(),
        );
        r.register(
            "geohook_repl_partial_resyncs",
            "Partial resyncs served (leader) or received (follower) since start",
            self.partial_syncs.clone(),
        );
        r.register(
            "geohook_repl_connected_followers",
            "Followers streaming from this leader",
            self.connected_followers.clone(),
        );
    }
}

/// Copies [`status`] into the gauges, before a scrape.
pub fn refresh_gauges(shared: &Shared) {
    use crate::metrics::set_gauge;
    let s = status(shared);
    let g = &shared.metrics.repl;
    set_gauge(&g.leader, u64::from(s.role == "leader"));
    set_gauge(&g.offset, s.offset);
    set_gauge(&g.lag_bytes, s.lag_bytes);
    g.lag_seconds.set(s.lag_ms as f64 / 1000.0);
    set_gauge(&g.full_syncs, s.full_syncs);
    set_gauge(&g.partial_syncs, s.partial_syncs);
    set_gauge(&g.connected_followers, s.connected_followers);
}
