//! The leader side: the backlog, and the handler for follower connections.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use geohook_resp::FrameLimits;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{Backlog, Error, ReplId, SnapshotSource};

/// Leader configuration.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Backlog capacity in bytes: how far behind a follower may fall and still
    /// resume with a partial resync.
    ///
    /// Default: 16 MiB.
    pub backlog_capacity: usize,
    /// How often an idle stream carries `+OFFSET <n>`, so that followers can
    /// tell "caught up" from "leader gone".
    ///
    /// Default: 1 s.
    pub heartbeat_interval: Duration,
    /// Largest chunk of backlog bytes sent in one write.
    ///
    /// Default: 256 KiB.
    pub max_batch: usize,
    /// A follower that does not take a write within this time is dropped.
    ///
    /// Default: 30 s.
    pub write_timeout: Duration,
    /// Time a connection handled by [`Leader::handle_connection`] has to reach
    /// `PSYNC`.
    ///
    /// Default: 10 s.
    pub handshake_timeout: Duration,
    /// Password [`Leader::handle_connection`] requires with `AUTH` before
    /// `PSYNC` (the server's `requirepass`, which followers send as their
    /// `leaderauth`). Servers that check `AUTH` themselves call
    /// [`Leader::serve_psync`] instead.
    ///
    /// Default: none.
    pub password: Option<String>,
    /// Most full syncs whose snapshot is being sent at once. A `PSYNC` that
    /// needs a full sync while this many are in progress is answered
    /// `-BUSY` and closed; the follower retries after its back-off. Each
    /// sync holds one batch of its source's snapshot and up to
    /// [`LeaderConfig::max_batch`] (plus one command) of encoded bytes, so
    /// this bounds the memory full syncs take together.
    ///
    /// Default: 2.
    pub max_full_syncs: usize,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            backlog_capacity: 16 << 20,
            heartbeat_interval: Duration::from_secs(1),
            max_batch: 256 << 10,
            write_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            password: None,
            max_full_syncs: 2,
        }
    }
}

impl LeaderConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.backlog_capacity == 0 {
            return bad("backlog_capacity", "must be at least 1 byte");
        }
        if self.max_batch == 0 {
            return bad("max_batch", "must be at least 1 byte");
        }
        if self.max_full_syncs == 0 {
            return bad("max_full_syncs", "must be at least 1");
        }
        for (field, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("write_timeout", self.write_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ] {
            if d.is_zero() {
                return bad(field, "must be positive");
            }
        }
        Ok(())
    }
}

/// One attached follower, as [`Leader::stats`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerLink {
    /// The follower's address as given to the handler.
    pub peer: String,
    /// The offset the follower last acknowledged with `REPLCONF ACK`.
    pub ack_offset: u64,
    /// The leader's offset minus `ack_offset`.
    pub lag_bytes: u64,
    /// Time since the last acknowledgement (or since the connection began).
    pub since_ack: Duration,
    /// False while a full sync's snapshot is being sent.
    pub streaming: bool,
    /// What the follower announced before `PSYNC`.
    pub announced: Announced,
}

/// What a follower says of itself before `PSYNC` with Redis's and Tile38's
/// `REPLCONF listening-port <port>` and `REPLCONF ip-address <ip>`: where
/// clients reach it, which its connection's own address does not tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announced {
    /// The port it serves clients on. Default: none announced.
    pub port: Option<u16>,
    /// The address it serves clients on. Default: none announced (the
    /// connection's address stands for it).
    pub ip: Option<String>,
}

impl Announced {
    /// Takes one `REPLCONF` command's arguments (after the name): a
    /// `listening-port` or an `ip-address`; any other option is left alone,
    /// as Redis leaves the ones it does not know.
    ///
    /// # Errors
    ///
    /// The text of the error to answer: a missing value, or a port that is
    /// not a number from 1 to 65535.
    pub fn take(&mut self, args: &[Vec<u8>]) -> Result<(), String> {
        let [option, value, ..] = args else {
            return Err("wrong number of arguments for 'replconf' command".into());
        };
        let value_text = String::from_utf8_lossy(value);
        if option.eq_ignore_ascii_case(b"listening-port") {
            let port = value_text
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid argument '{value_text}'"))?;
            self.port = Some(port);
        } else if option.eq_ignore_ascii_case(b"ip-address") {
            // An address is a host name or a literal; anything longer than
            // a DNS name is refused rather than kept.
            if value.is_empty() || value.len() > 255 {
                return Err(format!("invalid argument '{value_text}'"));
            }
            self.ip = Some(value_text.into_owned());
        }
        Ok(())
    }
}

/// Counters and positions of a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStats {
    /// The current replication id.
    pub replid: ReplId,
    /// The current replication offset (end of the stream).
    pub offset: u64,
    /// The oldest offset a partial resync can start from.
    pub backlog_start: u64,
    /// Bytes held in the backlog.
    pub backlog_len: u64,
    /// The configured backlog capacity.
    pub backlog_capacity: u64,
    /// Full syncs started (`+FULLRESYNC` sent) since this leader was created.
    pub full_syncs: u64,
    /// Partial resyncs started (`+CONTINUE` sent).
    pub partial_syncs: u64,
    /// Followers disconnected because they fell behind the backlog.
    pub backlog_overruns: u64,
    /// Full syncs refused because [`LeaderConfig::max_full_syncs`] were in
    /// progress.
    pub busy_refusals: u64,
    /// The followers attached right now, in connection order.
    pub followers: Vec<FollowerLink>,
}

struct Inner {
    replid: ReplId,
    /// A previous history this one continues, valid up to the offset given.
    replid2: Option<(ReplId, u64)>,
    /// Bumped by [`Leader::reset`], so that streams of the old history stop.
    epoch: u64,
    backlog: Backlog,
    /// False while no follower can resume from the backlog (see
    /// [`Leader::defer_backlog`]): appends then only move the offset.
    retain: bool,
}

struct LinkState {
    peer: String,
    announced: Announced,
    ack_offset: u64,
    ack_at: Instant,
    streaming: bool,
}

/// The leader's replication state: replication id, backlog, attached
/// followers and counters. Share it in an `Arc`; every method takes `&self`.
pub struct Leader {
    config: LeaderConfig,
    inner: Mutex<Inner>,
    /// Carries the end offset; followers' handlers wait on it for new bytes.
    tx: watch::Sender<u64>,
    full_syncs: AtomicU64,
    partial_syncs: AtomicU64,
    overruns: AtomicU64,
    links: Mutex<BTreeMap<u64, LinkState>>,
    next_link: AtomicU64,
    /// One permit per full sync allowed to send its snapshot now.
    full_sync_slots: Semaphore,
    busy_refusals: AtomicU64,
    /// Streaming links parked until new bytes come (see
    /// [`Leader::handed_over`]).
    idle_links: AtomicUsize,
    /// The highest offset up to which a link has taken the stream from the
    /// backlog to send it.
    taken: AtomicU64,
    /// Woken when a link takes bytes or stops being idle.
    handed: Notify,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Leader")
            .field("replid", &inner.replid)
            .field("offset", &inner.backlog.end())
            .finish_non_exhaustive()
    }
}

/// Limits for what a follower may send to the leader: only short commands
/// (`REPLCONF ACK <n>`, `PING`) are expected.
const FOLLOWER_LIMITS: FrameLimits = FrameLimits {
    max_args: 8,
    max_bulk: 256,
    max_line: 256,
};

/// Limits for the commands of the pre-`PSYNC` handshake.
const HANDSHAKE_LIMITS: FrameLimits = FrameLimits {
    max_args: 8,
    max_bulk: 1024,
    max_line: 1024,
};

impl Leader {
    /// A leader whose stream continues at `offset` under `replid`, with an
    /// empty backlog.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `config` does not validate.
    pub fn new(config: LeaderConfig, replid: ReplId, offset: u64) -> Result<Leader, Error> {
        let backlog = Backlog::new(config.backlog_capacity.max(1), offset);
        Leader::with_backlog(config, replid, backlog)
    }

    /// A leader that continues the history `replid` with `backlog`, typically
    /// loaded with [`Backlog::load`] from the stream bytes of its own file
    /// after a restart, so that followers can resume with a partial resync.
    ///
    /// Keeping the replication id is safe only if no follower can have
    /// received a byte the file lost, that is, if every byte was durable in
    /// the file before it was appended here (`appendfsync always`). Otherwise
    /// use [`Leader::recovered`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `config` does not validate or the backlog's
    /// capacity differs from `config.backlog_capacity`.
    pub fn with_backlog(
        config: LeaderConfig,
        replid: ReplId,
        backlog: Backlog,
    ) -> Result<Leader, Error> {
        config.validate()?;
        if backlog.capacity() != config.backlog_capacity {
            return Err(Error::Config {
                field: "backlog_capacity",
                reason: format!(
                    "the backlog was built with {} bytes, the config says {}",
                    backlog.capacity(),
                    config.backlog_capacity
                ),
            });
        }
        let (tx, _) = watch::channel(backlog.end());
        Ok(Leader {
            inner: Mutex::new(Inner {
                replid,
                replid2: None,
                epoch: 0,
                backlog,
                retain: true,
            }),
            tx,
            full_syncs: AtomicU64::new(0),
            partial_syncs: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            links: Mutex::new(BTreeMap::new()),
            next_link: AtomicU64::new(0),
            full_sync_slots: Semaphore::new(config.max_full_syncs),
            busy_refusals: AtomicU64::new(0),
            idle_links: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            handed: Notify::new(),
            config,
        })
    }

    /// A leader that starts a new history after its file's history `old`
    /// (a restart, or a follower promoted by `FOLLOW no one`), in the manner
    /// of Redis's second replication id: a follower of `old` at an offset up to
    /// `backlog.end()` continues with a partial resync and switches to the new
    /// id; a follower of `old` beyond that point holds bytes this leader does
    /// not have (its file lost an unsynced tail) and gets a full sync instead
    /// of a stream that would silently diverge.
    ///
    /// # Errors
    ///
    /// As [`Leader::with_backlog`].
    pub fn recovered(config: LeaderConfig, old: ReplId, backlog: Backlog) -> Result<Leader, Error> {
        let end = backlog.end();
        let leader = Leader::with_backlog(config, ReplId::random(), backlog)?;
        leader.inner.lock().replid2 = Some((old, end));
        Ok(leader)
    }

    /// The configuration.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// The current replication id and offset, read together.
    pub fn position(&self) -> (ReplId, u64) {
        let inner = self.inner.lock();
        (inner.replid, inner.backlog.end())
    }

    /// The current replication offset.
    pub fn offset(&self) -> u64 {
        self.inner.lock().backlog.end()
    }

    /// Appends one write command to the stream and returns the new offset.
    ///
    /// Call it under the same lock that orders writes to the state and to the
    /// file, with exactly the bytes written to the file (see
    /// [`Leader::append_encoded`]), so that stream order equals apply order.
    pub fn append<A: AsRef<[u8]>>(&self, args: &[A]) -> u64 {
        let mut buf = Vec::with_capacity(geohook_resp::encoded_len(args));
        geohook_resp::encode_command(&mut buf, args);
        self.append_encoded(&buf)
    }

    /// Appends already encoded commands (whole RESP arrays of bulk strings,
    /// as [`crate::encode_command`] writes them) and returns the new offset.
    /// Attached followers are woken.
    pub fn append_encoded(&self, bytes: &[u8]) -> u64 {
        let end = {
            let mut inner = self.inner.lock();
            if inner.retain {
                inner.backlog.append(bytes)
            } else {
                let end = inner.backlog.end() + bytes.len() as u64;
                inner.backlog.reset(end);
                end
            }
        };
        self.tx.send_replace(end);
        end
    }

    /// True while a follower's link is open, from its `PSYNC` (a full sync
    /// included) until its connection ends.
    ///
    /// A link that has sent nothing for a while sends new bytes as soon as
    /// it is woken, on the thread that woke it once that thread's task
    /// yields or awaits [`Leader::handed_over`]. A client connection that
    /// wrote can therefore await that, when this is true, before it writes
    /// its replies: the follower then gets the write before the client gets
    /// the acknowledgement, the order in which Redis writes to its replicas
    /// and clients.
    pub fn streaming(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Resolves once a follower's link has taken the stream up to the
    /// current end from the backlog to send it, or at once if no link is
    /// idle (none attached, or each is busy sending and takes the new bytes
    /// when its send is done).
    ///
    /// A client connection that wrote awaits this before it writes its
    /// replies, so that a follower gets the write before the client gets the
    /// acknowledgement, the order in which Redis writes to its replicas and
    /// clients. An idle link was woken by the append on the thread that
    /// appended; awaiting this lets it run there next, take the bytes and
    /// write them to its socket before the connection resumes. (Yielding to
    /// the runtime instead would do the same, but a yield in a
    /// multi-threaded runtime puts the task back in the queue and may wake a
    /// second worker to take it, a thread wake-up and hand-over per batch.)
    pub async fn handed_over(&self) {
        let end = *self.tx.borrow();
        loop {
            let notified = self.handed.notified();
            tokio::pin!(notified);
            // Registered before the check, so that a link taking the bytes
            // between the check and the await still wakes this.
            notified.as_mut().enable();
            if self.taken.load(Ordering::Acquire) >= end
                || self.idle_links.load(Ordering::Acquire) == 0
            {
                return;
            }
            notified.await;
        }
    }

    /// Keeps no backlog bytes from now until the first follower sends
    /// `PSYNC` (the offset still moves with every append), and forgets any
    /// held. Meant for a history that no follower can know yet, such as the
    /// one a node starts on a new file: until a follower attaches, nobody
    /// can hold an offset inside it, so the bytes would serve nobody, and a
    /// leader without followers need not hold
    /// [`LeaderConfig::backlog_capacity`] of stream in memory (Redis
    /// likewise allocates its backlog when the first replica attaches). From
    /// the first `PSYNC` on, the backlog fills as usual.
    pub fn defer_backlog(&self) {
        let mut inner = self.inner.lock();
        inner.retain = false;
        let end = inner.backlog.end();
        inner.backlog.reset(end);
    }

    /// Starts a new history: a new replication id at `offset`, an empty
    /// backlog. Attached followers are disconnected and will full-sync.
    pub fn reset(&self, replid: ReplId, offset: u64) {
        {
            let mut inner = self.inner.lock();
            inner.replid = replid;
            inner.replid2 = None;
            inner.epoch += 1;
            inner.backlog.reset(offset);
        }
        // A new history may start below the old one's end.
        self.taken.store(offset, Ordering::Release);
        self.tx.send_replace(offset);
    }

    /// Counters, positions and attached followers.
    pub fn stats(&self) -> LeaderStats {
        let (replid, offset, backlog_start, backlog_len) = {
            let inner = self.inner.lock();
            (
                inner.replid,
                inner.backlog.end(),
                inner.backlog.start(),
                inner.backlog.len() as u64,
            )
        };
        let followers = self
            .links
            .lock()
            .values()
            .map(|l| FollowerLink {
                peer: l.peer.clone(),
                ack_offset: l.ack_offset,
                lag_bytes: offset.saturating_sub(l.ack_offset),
                since_ack: l.ack_at.elapsed(),
                streaming: l.streaming,
                announced: l.announced.clone(),
            })
            .collect();
        LeaderStats {
            replid,
            offset,
            backlog_start,
            backlog_len,
            backlog_capacity: self.config.backlog_capacity as u64,
            full_syncs: self.full_syncs.load(Ordering::Relaxed),
            partial_syncs: self.partial_syncs.load(Ordering::Relaxed),
            backlog_overruns: self.overruns.load(Ordering::Relaxed),
            busy_refusals: self.busy_refusals.load(Ordering::Relaxed),
            followers,
        }
    }

    /// Serves a whole replication connection: answers `AUTH` (against
    /// [`LeaderConfig::password`]), `PING` and `REPLCONF` until `PSYNC`, then
    /// continues as [`Leader::serve_psync`].
    ///
    /// # Errors
    ///
    /// As [`Leader::serve_psync`]; also [`Error::Timeout`] if `PSYNC` does not
    /// arrive within [`LeaderConfig::handshake_timeout`], and
    /// [`Error::Protocol`] for an unknown command or malformed bytes.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future drops the connection; cancelling `cancel` ends it
    /// cleanly with `Ok(())`.
    pub async fn handle_connection<IO, S>(
        &self,
        mut io: IO,
        peer: &str,
        source: &S,
        cancel: &CancellationToken,
    ) -> Result<(), Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        S: SnapshotSource + ?Sized,
    {
        let deadline = tokio::time::Instant::now() + self.config.handshake_timeout;
        let mut buf = Vec::new();
        let mut authed = self.config.password.is_none();
        let mut announced = Announced::default();
        loop {
            let (args, used) = loop {
                match geohook_resp::parse_command(&buf, &HANDSHAKE_LIMITS) {
                    Ok(Some(found)) => break found,
                    Ok(None) => {}
                    Err(m) => return Err(Error::protocol(peer, m.to_string())),
                }
                let read = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    r = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)) => r,
                };
                match read {
                    Err(_) => {
                        return Err(Error::Timeout {
                            context: format!("PSYNC from {peer}"),
                        })
                    }
                    Ok(Err(e)) => return Err(Error::io(format!("read from {peer}"), e)),
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(_)) => {}
                }
            };
            buf.drain(..used);
            let name = args[0].to_ascii_uppercase();
            let reply: &[u8] = match name.as_slice() {
                b"AUTH" => match (&self.config.password, args.get(1)) {
                    (Some(pw), Some(given))
                        if args.len() == 2 && pw.as_bytes() == given.as_slice() =>
                    {
                        authed = true;
                        b"+OK\r\n"
                    }
                    _ => b"-ERR invalid password\r\n",
                },
                b"PING" => b"+PONG\r\n",
                b"REPLCONF" if authed => match announced.take(&args[1..]) {
                    Ok(()) => b"+OK\r\n",
                    Err(_) => b"-ERR invalid argument\r\n",
                },
                b"PSYNC" if authed => {
                    return self
                        .serve_psync_announced(io, peer, announced, &args, buf, source, cancel)
                        .await;
                }
                b"REPLCONF" | b"PSYNC" => b"-ERR authentication required\r\n",
                _ => {
                    let _ = io.write_all(b"-ERR unknown command\r\n").await;
                    return Err(Error::protocol(
                        peer,
                        format!("unexpected command {:?}", String::from_utf8_lossy(&name)),
                    ));
                }
            };
            io.write_all(reply)
                .await
                .map_err(|e| Error::io(format!("write to {peer}"), e))?;
        }
    }

    /// Serves a follower that sent `PSYNC <replid> <offset>` (`args`, command
    /// name included). `pending` holds bytes already read from the connection
    /// after the `PSYNC` command.
    ///
    /// Replies `+CONTINUE <replid>` and streams from the backlog when the
    /// follower's replication id is the current one and its offset is still in
    /// the backlog; otherwise replies `+FULLRESYNC <replid> <offset>`, sends the
    /// snapshot from `source` as commands followed by `+SNAPSHOTEND`, and
    /// streams from the snapshot's offset. While streaming, every chunk is
    /// followed by `+OFFSET <leader offset>`, and an idle stream repeats it
    /// every heartbeat interval. `REPLCONF ACK <offset>` from the follower
    /// updates [`Leader::stats`].
    ///
    /// # Errors
    ///
    /// [`Error::BacklogOverrun`] when the follower falls behind the backlog
    /// (it is told with an error line first), [`Error::ReplIdChanged`] after
    /// [`Leader::reset`], [`Error::Protocol`] for bad bytes from the follower,
    /// [`Error::Io`] and [`Error::Timeout`] for a broken or stuck connection.
    /// A follower closing the connection, or `cancel`, ends it with `Ok(())`.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future drops the connection; nothing else is left behind.
    pub async fn serve_psync<IO, S>(
        &self,
        io: IO,
        peer: &str,
        args: &[Vec<u8>],
        pending: Vec<u8>,
        source: &S,
        cancel: &CancellationToken,
    ) -> Result<(), Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        S: SnapshotSource + ?Sized,
    {
        self.serve_psync_announced(
            io,
            peer,
            Announced::default(),
            args,
            pending,
            source,
            cancel,
        )
        .await
    }

    /// [`Leader::serve_psync`] for a follower that announced itself
    /// (`REPLCONF listening-port`, `ip-address`) before `PSYNC`; the
    /// announcement is shown in [`FollowerLink::announced`].
    ///
    /// # Errors
    ///
    /// As [`Leader::serve_psync`].
    ///
    /// # Cancellation safety
    ///
    /// As [`Leader::serve_psync`].
    #[allow(clippy::too_many_arguments)]
    pub async fn serve_psync_announced<IO, S>(
        &self,
        io: IO,
        peer: &str,
        announced: Announced,
        args: &[Vec<u8>],
        pending: Vec<u8>,
        source: &S,
        cancel: &CancellationToken,
    ) -> Result<(), Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        S: SnapshotSource + ?Sized,
    {
        let (mut reader, mut writer) = tokio::io::split(io);
        if args.len() != 3 {
            let _ = writer
                .write_all(b"-ERR wrong number of arguments for 'psync'\r\n")
                .await;
            return Err(Error::protocol(peer, "PSYNC takes 2 arguments"));
        }
        let want_id = ReplId::parse(&args[1]);
        let want_offset = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let mut rx = self.tx.subscribe();
        let link = self.next_link.fetch_add(1, Ordering::Relaxed);
        let _guard = LinkGuard { leader: self, link };
        self.links.lock().insert(
            link,
            LinkState {
                peer: peer.to_owned(),
                announced,
                ack_offset: want_offset.unwrap_or(0),
                ack_at: Instant::now(),
                streaming: false,
            },
        );

        let (replid, epoch, continue_at) = {
            let mut inner = self.inner.lock();
            // From the first follower on, the stream is kept for its
            // partial resyncs (and those of any that come after it).
            inner.retain = true;
            let ok = match (want_id, want_offset) {
                (Some(id), Some(off)) => {
                    let same_history = id == inner.replid
                        || inner
                            .replid2
                            .is_some_and(|(old, max)| id == old && off <= max);
                    same_history && inner.backlog.contains(off)
                }
                _ => false,
            };
            (
                inner.replid,
                inner.epoch,
                ok.then(|| want_offset.unwrap_or(0)),
            )
        };
        let mut cursor = match continue_at {
            Some(offset) => {
                self.partial_syncs.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, offset, "follower resumes with a partial resync");
                let line = format!("+CONTINUE {replid}\r\n");
                if !self
                    .send(&mut writer, line.as_bytes(), peer, cancel)
                    .await?
                {
                    return Ok(());
                }
                offset
            }
            None => {
                // Over the bound the follower is refused rather than queued:
                // a waiting PSYNC would still hold a connection and a task
                // per 12-byte request, which is the thing being bounded, and
                // a follower already retries with back-off after an error
                // reply, as a Redis replica does after `-LOADING`.
                let Ok(_permit) = self.full_sync_slots.try_acquire() else {
                    self.busy_refusals.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, "full sync refused: too many in progress");
                    let line = format!(
                        "-BUSY {} full syncs in progress; retry later\r\n",
                        self.config.max_full_syncs
                    );
                    let _ = self.send(&mut writer, line.as_bytes(), peer, cancel).await;
                    return Err(Error::Busy {
                        peer: peer.to_owned(),
                    });
                };
                self.full_syncs.fetch_add(1, Ordering::Relaxed);
                let snapshot = source.snapshot();
                tracing::info!(%peer, offset = snapshot.offset, "follower needs a full sync");
                let line = format!("+FULLRESYNC {replid} {}\r\n", snapshot.offset);
                let mut buf = line.into_bytes();
                for cmd in snapshot.commands {
                    geohook_resp::encode_command(&mut buf, &cmd);
                    if buf.len() >= self.config.max_batch {
                        if !self.send(&mut writer, &buf, peer, cancel).await? {
                            return Ok(());
                        }
                        buf.clear();
                    }
                }
                if snapshot.consistent.as_ref().is_some_and(|ok| !ok()) {
                    tracing::warn!(%peer, "full sync abandoned: the snapshot changed under its walk");
                    return Err(Error::SnapshotAbandoned {
                        peer: peer.to_owned(),
                    });
                }
                buf.extend_from_slice(b"+SNAPSHOTEND\r\n");
                if !self.send(&mut writer, &buf, peer, cancel).await? {
                    return Ok(());
                }
                snapshot.offset
            }
        };
        if let Some(l) = self.links.lock().get_mut(&link) {
            l.streaming = true;
        }

        let mut inbuf = pending;
        let mut chunk = Vec::with_capacity(self.config.max_batch.min(1 << 20) + 32);
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When stream bytes last went out (`None`: not yet on this link).
        let mut last_sent: Option<Instant> = None;
        loop {
            self.take_acks(&mut inbuf, link, peer)?;
            // Mark the watch as seen before reading the backlog: an append
            // after the read then always wakes the select below.
            rx.borrow_and_update();
            chunk.clear();
            let read = {
                let inner = self.inner.lock();
                if inner.epoch != epoch {
                    Err(Error::ReplIdChanged)
                } else {
                    match inner
                        .backlog
                        .read_from(cursor, self.config.max_batch, &mut chunk)
                    {
                        Ok(n) => Ok((n, inner.backlog.end())),
                        Err(backlog_start) => Err(Error::BacklogOverrun {
                            offset: cursor,
                            backlog_start,
                        }),
                    }
                }
            };
            let (n, end) = match read {
                Ok(v) => {
                    // Taken, and written below before this task yields: a
                    // connection waiting in `handed_over` for these bytes
                    // resumes after the write.
                    if self.taken.fetch_max(cursor + v.0 as u64, Ordering::AcqRel)
                        < cursor + v.0 as u64
                    {
                        self.handed.notify_waiters();
                    }
                    v
                }
                Err(e) => {
                    if matches!(e, Error::BacklogOverrun { .. }) {
                        self.overruns.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, "follower fell behind the backlog; disconnecting");
                    }
                    let line = format!("-ERR {e}\r\n");
                    let _ = self.send(&mut writer, line.as_bytes(), peer, cancel).await;
                    return Err(e);
                }
            };
            if n > 0 {
                cursor += n as u64;
                // A chunk cut at max_batch may end inside a command; the
                // announcement goes after the last whole command, and the
                // bytes of the cut command follow it.
                let boundary = if cursor == end {
                    chunk.len()
                } else {
                    last_boundary(&chunk)
                };
                if boundary > 0 {
                    let line = format!("+OFFSET {end}\r\n");
                    chunk.splice(boundary..boundary, line.bytes());
                }
                if !self.send(&mut writer, &chunk, peer, cancel).await? {
                    return Ok(());
                }
                last_sent = Some(Instant::now());
                // A stream that never goes idle must still take the
                // follower's acks, or the lag it reports would go stale.
                tokio::select! {
                    biased;
                    r = reader.read_buf(&mut inbuf) => match r {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return Err(Error::io(format!("read from {peer}"), e)),
                    },
                    _ = std::future::ready(()) => {}
                }
                continue;
            }
            // Everything up to the end is taken (`taken` is at least
            // `cursor`), so a connection that waits for this link is woken
            // by the link's next read.
            let idle = IdleLink::new(self);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    // In a burst (bytes went out moments ago) the writers
                    // appending now finish first, so that a busy stream
                    // goes out in chunks, not in one write system call per
                    // command. An idle stream sends at once (see
                    // `Leader::streaming`). The link counts as idle until
                    // it reads, so that a connection in `handed_over`
                    // still waits for it through the yield.
                    if last_sent.is_some_and(|t| t.elapsed() < BURST_GAP) {
                        tokio::task::yield_now().await;
                    }
                    drop(idle);
                }
                r = reader.read_buf(&mut inbuf) => match r {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(Error::io(format!("read from {peer}"), e)),
                },
                _ = heartbeat.tick() => {
                    let line = format!("+OFFSET {cursor}\r\n");
                    if !self.send(&mut writer, line.as_bytes(), peer, cancel).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Consumes complete `REPLCONF ACK` / `PING` commands from `inbuf`.
    fn take_acks(&self, inbuf: &mut Vec<u8>, link: u64, peer: &str) -> Result<(), Error> {
        let mut used = 0;
        while let Some((args, n)) = geohook_resp::parse_command(&inbuf[used..], &FOLLOWER_LIMITS)
            .map_err(|m| Error::protocol(peer, m.to_string()))?
        {
            used += n;
            let name = args[0].to_ascii_uppercase();
            match name.as_slice() {
                b"REPLCONF" if args.len() == 3 && args[1].eq_ignore_ascii_case(b"ACK") => {
                    let offset = std::str::from_utf8(&args[2])
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| Error::protocol(peer, "REPLCONF ACK needs an offset"))?;
                    if let Some(l) = self.links.lock().get_mut(&link) {
                        l.ack_offset = offset;
                        l.ack_at = Instant::now();
                    }
                }
                b"REPLCONF" | b"PING" => {}
                _ => {
                    return Err(Error::protocol(
                        peer,
                        format!(
                            "unexpected command {:?} on a replication stream",
                            String::from_utf8_lossy(&name)
                        ),
                    ))
                }
            }
        }
        inbuf.drain(..used);
        Ok(())
    }

    /// Writes `bytes`; `Ok(false)` if cancelled first.
    async fn send<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        bytes: &[u8],
        peer: &str,
        cancel: &CancellationToken,
    ) -> Result<bool, Error> {
        tokio::select! {
            _ = cancel.cancelled() => Ok(false),
            r = tokio::time::timeout(self.config.write_timeout, w.write_all(bytes)) => match r {
                Ok(Ok(())) => Ok(true),
                Ok(Err(e)) => Err(Error::io(format!("write to {peer}"), e)),
                Err(_) => Err(Error::Timeout { context: format!("write to follower {peer}") }),
            },
        }
    }
}

/// A link that sent stream bytes less than this long ago is in a burst and
/// lets the writers of the moment append before it sends again. About the
/// time one pipelined batch of a busy client takes; a stream written to
/// less often than this sends each write at once.
const BURST_GAP: Duration = Duration::from_micros(50);

/// The end of the last whole command in `chunk`, which starts on a command
/// boundary; 0 if it holds none. The bytes are the leader's own (appended
/// through [`Leader::append`]), so no limit applies.
fn last_boundary(chunk: &[u8]) -> usize {
    let mut pos = 0;
    while let Ok(Some(len)) = geohook_resp::scan_command(&chunk[pos..], &FrameLimits::UNBOUNDED) {
        pos += len;
    }
    pos
}

/// Counts a link as idle in [`Leader::idle_links`] while it lives; dropped
/// when the link wakes (or its task ends), which wakes connections waiting
/// in [`Leader::handed_over`] so that they look again.
struct IdleLink<'a> {
    leader: &'a Leader,
}

impl<'a> IdleLink<'a> {
    fn new(leader: &'a Leader) -> IdleLink<'a> {
        leader.idle_links.fetch_add(1, Ordering::AcqRel);
        IdleLink { leader }
    }
}

impl Drop for IdleLink<'_> {
    fn drop(&mut self) {
        self.leader.idle_links.fetch_sub(1, Ordering::AcqRel);
        self.leader.handed.notify_waiters();
    }
}

/// Removes a follower from the registry however its handler ends.
struct LinkGuard<'a> {
    leader: &'a Leader,
    link: u64,
}

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        self.leader.links.lock().remove(&self.link);
    }
}
