//! Shared helpers: a fake key-value state machine that keeps an in-memory
//! "file" laid out exactly as a server's AOF would be, and a leader listener
//! on loopback.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use geohook_repl::{
    decode_command, encode_command, encode_header, recover, Backlog, BoxError, FollowerState,
    Leader, LeaderConfig, Limits, ReplId, Replica, Snapshot, SnapshotSource,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long any test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct Inner {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The node's file: header, base, stream bytes.
    file: Vec<u8>,
    /// A full sync's base while it arrives.
    pending_base: Vec<u8>,
    replid: Option<ReplId>,
    offset: u64,
    resets: u64,
}

/// A key-value store with `SET k v` and `DEL k`, usable as leader state
/// ([`SnapshotSource`]) and follower state ([`Replica`]).
#[derive(Debug, Default)]
pub struct Kv {
    inner: Mutex<Inner>,
    leader: Mutex<Option<Arc<Leader>>>,
}

fn apply_to_map(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, args: &[Vec<u8>]) -> Result<(), BoxError> {
    match args {
        [cmd, k, v] if cmd.eq_ignore_ascii_case(b"SET") => {
            map.insert(k.clone(), v.clone());
        }
        [cmd, k] if cmd.eq_ignore_ascii_case(b"DEL") => {
            map.remove(k);
        }
        _ => return Err(format!("unknown command {:?}", String::from_utf8_lossy(&args[0])).into()),
    }
    Ok(())
}

impl Kv {
    /// A fresh leader-side store with a new history at offset 0.
    pub fn new_leader(config: LeaderConfig) -> (Arc<Kv>, Arc<Leader>) {
        let replid = ReplId::random();
        Kv::fresh(replid, Leader::new(config, replid, 0).unwrap())
    }

    /// As [`Kv::new_leader`], with a leader that keeps no backlog until its
    /// first follower ([`Leader::defer_backlog`]).
    pub fn new_unfollowed_leader(config: LeaderConfig) -> (Arc<Kv>, Arc<Leader>) {
        let replid = ReplId::random();
        let leader = Leader::new(config, replid, 0).unwrap();
        leader.defer_backlog();
        Kv::fresh(replid, leader)
    }

    fn fresh(replid: ReplId, leader: Leader) -> (Arc<Kv>, Arc<Leader>) {
        let leader = Arc::new(leader);
        let kv = Arc::new(Kv::default());
        {
            let mut inner = kv.inner.lock();
            inner.file = encode_header(&replid, 0, 0);
            inner.replid = Some(replid);
        }
        *kv.leader.lock() = Some(leader.clone());
        (kv, leader)
    }

    /// A store rebuilt from a node's file, as a restarted server does.
    pub fn from_file(file: Vec<u8>) -> Arc<Kv> {
        let found = recover(&file, &Limits::default()).unwrap();
        let mut map = BTreeMap::new();
        let mut pos = found.header_len as usize;
        while pos < found.complete_len as usize {
            let (args, n) = decode_command(&file[pos..], &Limits::default())
                .unwrap()
                .unwrap();
            apply_to_map(&mut map, &args).unwrap();
            pos += n;
        }
        let mut file = file;
        file.truncate(found.complete_len as usize);
        Arc::new(Kv {
            inner: Mutex::new(Inner {
                map,
                file,
                replid: found.replid(),
                offset: found.offset(),
                ..Inner::default()
            }),
            leader: Mutex::new(None),
        })
    }

    /// Turns a store rebuilt with [`Kv::from_file`] into a leader whose
    /// backlog holds the stream bytes of its file.
    pub fn restart_leader(self: &Arc<Kv>, config: LeaderConfig) -> Arc<Leader> {
        let inner = self.inner.lock();
        let found = recover(&inner.file, &Limits::default()).unwrap();
        let replid = found.replid().unwrap();
        let backlog = Backlog::load(
            config.backlog_capacity,
            found.offset(),
            found.stream_bytes(&inner.file),
        );
        let leader = Arc::new(Leader::with_backlog(config, replid, backlog).unwrap());
        *self.leader.lock() = Some(leader.clone());
        leader
    }

    /// A leader write: apply, append to the file, append to the stream, all
    /// under one lock so that the three orders agree.
    pub fn write(&self, args: &[&[u8]]) -> u64 {
        let owned: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        let leader = self.leader.lock().clone().expect("not a leader");
        let mut inner = self.inner.lock();
        apply_to_map(&mut inner.map, &owned).unwrap();
        let mut bytes = Vec::new();
        encode_command(&mut bytes, args);
        inner.file.extend_from_slice(&bytes);
        let offset = leader.append_encoded(&bytes);
        inner.offset = offset;
        offset
    }

    /// Rewrites the file as header + base (one SET per key), as a shrink does.
    pub fn shrink(&self) {
        let leader = self.leader.lock().clone().expect("not a leader");
        let mut inner = self.inner.lock();
        let (replid, offset) = leader.position();
        let mut base = Vec::new();
        for (k, v) in &inner.map {
            encode_command(&mut base, &[b"SET".as_slice(), k, v]);
        }
        let mut file = encode_header(&replid, offset, base.len() as u64);
        file.extend_from_slice(&base);
        inner.file = file;
    }

    pub fn map(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.inner.lock().map.clone()
    }

    pub fn file(&self) -> Vec<u8> {
        self.inner.lock().file.clone()
    }

    pub fn position(&self) -> Option<(ReplId, u64)> {
        let inner = self.inner.lock();
        inner.replid.map(|id| (id, inner.offset))
    }

    pub fn resets(&self) -> u64 {
        self.inner.lock().resets
    }
}

impl Replica for Kv {
    fn apply(&self, args: Vec<Vec<u8>>, offset: u64) -> Result<(), BoxError> {
        let mut inner = self.inner.lock();
        apply_to_map(&mut inner.map, &args)?;
        encode_command(&mut inner.file, &args);
        inner.offset = offset;
        Ok(())
    }

    fn reset(&self, _replid: &ReplId, _offset: u64) -> Result<(), BoxError> {
        let mut inner = self.inner.lock();
        inner.map.clear();
        inner.pending_base.clear();
        inner.replid = None;
        inner.resets += 1;
        Ok(())
    }

    fn apply_snapshot(&self, args: Vec<Vec<u8>>) -> Result<(), BoxError> {
        let mut inner = self.inner.lock();
        apply_to_map(&mut inner.map, &args)?;
        encode_command(&mut inner.pending_base, &args);
        Ok(())
    }

    fn finish_snapshot(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        let mut inner = self.inner.lock();
        let base = std::mem::take(&mut inner.pending_base);
        let mut file = encode_header(replid, offset, base.len() as u64);
        file.extend_from_slice(&base);
        inner.file = file;
        inner.replid = Some(*replid);
        inner.offset = offset;
        Ok(())
    }
}

impl SnapshotSource for Kv {
    fn snapshot(&self) -> Snapshot {
        let leader = self.leader.lock().clone().expect("not a leader");
        let inner = self.inner.lock();
        let commands: Vec<Vec<Vec<u8>>> = inner
            .map
            .iter()
            .map(|(k, v)| vec![b"SET".to_vec(), k.clone(), v.clone()])
            .collect();
        Snapshot {
            offset: leader.offset(),
            commands: Box::new(commands.into_iter()),
            consistent: None,
        }
    }
}

/// A leader's replication listener on loopback.
pub struct Listener {
    pub port: u16,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

impl Listener {
    /// Stops accepting, ends every connection and waits for the handlers.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(DEADLINE, self.tracker.wait())
            .await
            .unwrap();
    }
}

/// Serves replication connections for `leader` on `port` (0 for any).
pub async fn listen(leader: Arc<Leader>, kv: Arc<Kv>, port: u16) -> Listener {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (c, t) = (cancel.clone(), tracker.clone());
    tracker.spawn(async move {
        loop {
            let (sock, addr) = tokio::select! {
                _ = c.cancelled() => return,
                r = listener.accept() => r.unwrap(),
            };
            sock.set_nodelay(true).unwrap();
            let (leader, kv, c) = (leader.clone(), kv.clone(), c.clone());
            t.spawn(async move {
                let _ = leader
                    .handle_connection(sock, &addr.to_string(), &*kv, &c)
                    .await;
            });
        }
    });
    Listener {
        port,
        cancel,
        tracker,
    }
}

/// Waits until the follower's state satisfies `pred`, or panics at the deadline.
pub async fn wait_status(
    rx: &mut watch::Receiver<FollowerState>,
    what: &str,
    pred: impl FnMut(&FollowerState) -> bool,
) -> FollowerState {
    let found = match tokio::time::timeout(DEADLINE, rx.wait_for(pred)).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "timed out waiting for {what}; last state {:?}",
            *rx.borrow()
        )
    })
}

/// Polls `cond` every few milliseconds until it holds, or panics at the deadline.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A running follower task.
pub struct RunningFollower {
    pub status: watch::Receiver<FollowerState>,
    pub cancel: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
}

impl RunningFollower {
    /// `FOLLOW no one`: cancels the task and waits for it.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Fast timings so that reconnects and acks happen within a test's time.
pub fn follower_config(port: u16) -> geohook_repl::FollowerConfig {
    geohook_repl::FollowerConfig {
        port,
        ack_interval: Duration::from_millis(20),
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(100),
        ..Default::default()
    }
}

/// Starts a follower of the leader on `port` for `kv`, resuming from the
/// position in `kv`'s own file.
pub fn start_follower(kv: Arc<Kv>, config: geohook_repl::FollowerConfig) -> RunningFollower {
    let position = kv.position();
    let follower = geohook_repl::Follower::new(config, kv, position).unwrap();
    let status = follower.status();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(follower.run(cancel.clone()));
    RunningFollower {
        status,
        cancel,
        handle,
    }
}

/// Waits until the follower has applied everything up to `offset`.
pub async fn wait_offset(f: &mut RunningFollower, offset: u64) -> FollowerState {
    wait_status(&mut f.status, &format!("offset {offset}"), |s| {
        s.replid.is_some() && s.offset == offset && s.caught_up
    })
    .await
}

impl Kv {
    /// Restarts a leader from this store's file under a new history that
    /// continues the file's one ([`Leader::recovered`]).
    pub fn recover_leader(self: &Arc<Kv>, config: LeaderConfig) -> Arc<Leader> {
        let inner = self.inner.lock();
        let found = recover(&inner.file, &Limits::default()).unwrap();
        let backlog = Backlog::load(
            config.backlog_capacity,
            found.offset(),
            found.stream_bytes(&inner.file),
        );
        let leader = Arc::new(Leader::recovered(config, found.replid().unwrap(), backlog).unwrap());
        *self.leader.lock() = Some(leader.clone());
        leader
    }
}
