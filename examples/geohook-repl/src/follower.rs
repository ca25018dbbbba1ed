//! The follower side: a task that keeps a replica in step with a leader.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geohook_resp::{Frame, FrameLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::limits::Limits;
use crate::unapplied::Unapplied;
use crate::{BatchError, Command, Error, ReplId, Replica};

/// Follower configuration.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The leader's host name or address.
    ///
    /// Default: "127.0.0.1".
    pub host: String,
    /// The leader's port.
    ///
    /// Default: 9851.
    pub port: u16,
    /// Password sent with `AUTH` before `PSYNC` (the server's `leaderauth`).
    ///
    /// Default: none.
    pub auth: Option<String>,
    /// The port this node serves clients on, announced to the leader with
    /// `REPLCONF listening-port` before `PSYNC` (the leader shows it in
    /// ROLE), as Tile38 and Redis followers do.
    ///
    /// Default: none (nothing is announced).
    pub announce_port: Option<u16>,
    /// The address announced with `REPLCONF ip-address` (Tile38's
    /// `replica_announce_ip`).
    ///
    /// Default: none (the leader sees the connection's address).
    pub announce_ip: Option<String>,
    /// Deadline for the TCP connect and for each handshake reply.
    ///
    /// Default: 2 s.
    pub connect_timeout: Duration,
    /// A leader silent for this long is presumed gone and the follower
    /// reconnects; it must exceed the leader's heartbeat interval.
    ///
    /// Default: 10 s.
    pub leader_timeout: Duration,
    /// How often the follower sends `REPLCONF ACK <offset>`.
    ///
    /// Default: 1 s.
    pub ack_interval: Duration,
    /// First delay before reconnecting after an error; it doubles per failed
    /// attempt up to `reconnect_max` and resets after a session that streamed.
    ///
    /// Default: 100 ms.
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts.
    ///
    /// Default: 5 s.
    pub reconnect_max: Duration,
    /// Caps on what the leader may send.
    ///
    /// Default: [`Limits::default`].
    pub limits: Limits,
    /// Most stream commands handed to [`Replica::apply_batch`] at once. A
    /// server holds its write lock for a batch, so this bounds how long a
    /// read on the follower can wait behind one.
    ///
    /// Default: 1024.
    pub max_batch: usize,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        FollowerConfig {
            host: "127.0.0.1".to_owned(),
            port: 9851,
            auth: None,
            announce_port: None,
            announce_ip: None,
            connect_timeout: Duration::from_secs(2),
            leader_timeout: Duration::from_secs(10),
            ack_interval: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            limits: Limits::default(),
            max_batch: 1024,
        }
    }
}

impl FollowerConfig {
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
        if self.host.is_empty() {
            return bad("host", "must not be empty");
        }
        if self.port == 0 {
            return bad("port", "must not be 0");
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("leader_timeout", self.leader_timeout),
            ("ack_interval", self.ack_interval),
            ("reconnect_min", self.reconnect_min),
        ] {
            if d.is_zero() {
                return bad(field, "must be positive");
            }
        }
        if self.max_batch == 0 {
            return bad("max_batch", "must be at least 1");
        }
        if self.reconnect_max < self.reconnect_min {
            return bad("reconnect_max", "must not be less than reconnect_min");
        }
        self.limits.validate()
    }
}

/// What a follower publishes about itself (see [`Follower::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FollowerState {
    /// A session with the leader is established (past the handshake).
    pub connected: bool,
    /// The follower's offset equals the leader's offset as last announced.
    pub caught_up: bool,
    /// `caught_up` has been true at least once since the task started; a
    /// server answers "catching up to leader" until then.
    pub caught_up_once: bool,
    /// The replication id the follower's state belongs to; `None` before the
    /// first full sync completes (or while one is in progress).
    pub replid: Option<ReplId>,
    /// The offset of the last command applied.
    pub offset: u64,
    /// The leader's offset as last announced (`+OFFSET`, `+FULLRESYNC`).
    pub leader_offset: u64,
    /// When the follower last stopped being caught up; `None` while caught up.
    pub behind_since: Option<Instant>,
    /// Full syncs completed.
    pub full_syncs: u64,
    /// Partial resyncs (`+CONTINUE`) accepted.
    pub partial_syncs: u64,
    /// Sessions established.
    pub sessions: u64,
    /// The error that ended the last session, if any.
    pub last_error: Option<String>,
}

impl FollowerState {
    /// Bytes the follower is behind the leader's last announced offset.
    pub fn lag_bytes(&self) -> u64 {
        self.leader_offset.saturating_sub(self.offset)
    }

    /// How long the follower has not been caught up; zero while it is.
    pub fn lag(&self) -> Duration {
        self.behind_since.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// Keeps a [`Replica`] in step with a leader: connect, `AUTH`, `PSYNC`, apply
/// the stream, reconnect with back-off. Build it with [`Follower::new`] and
/// spawn [`Follower::run`]; `FOLLOW no one` is cancelling its token.
pub struct Follower<R: ?Sized> {
    config: FollowerConfig,
    replica: Arc<R>,
    position: Option<(ReplId, u64)>,
    status: watch::Sender<FollowerState>,
    unapplied: Unapplied,
}

impl<R: ?Sized> std::fmt::Debug for Follower<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field(
                "leader",
                &format_args!("{}:{}", self.config.host, self.config.port),
            )
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// A session ended; `streamed` says whether it got past the handshake.
struct Ended {
    result: Result<(), Error>,
    streamed: bool,
}

impl<R: Replica + ?Sized> Follower<R> {
    /// A follower whose replica is at `position` (recovered from its own
    /// file with [`crate::recover`]), or `None` for a replica with no history,
    /// which asks for a full sync.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `config` does not validate.
    pub fn new(
        config: FollowerConfig,
        replica: Arc<R>,
        position: Option<(ReplId, u64)>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let (status, _) = watch::channel(FollowerState {
            replid: position.map(|p| p.0),
            offset: position.map_or(0, |p| p.1),
            behind_since: Some(Instant::now()),
            ..FollowerState::default()
        });
        Ok(Follower {
            config,
            replica,
            position,
            status,
            unapplied: Unapplied::default(),
        })
    }

    /// A receiver of the follower's state, updated after every batch of
    /// applied commands and on every connect and disconnect.
    pub fn status(&self) -> watch::Receiver<FollowerState> {
        self.status.subscribe()
    }

    /// Tells whether stream bytes reached this follower that it has not
    /// applied yet (see [`Unapplied`]): a server can let them be applied
    /// before it answers a read.
    pub fn unapplied(&self) -> Unapplied {
        self.unapplied.clone()
    }

    /// Runs until `cancel` is cancelled, reconnecting with back-off after any
    /// error (each is logged and kept in [`FollowerState::last_error`]).
    ///
    /// # Cancellation safety
    ///
    /// Cancel through the token: the current command finishes applying and the
    /// future returns. Dropping the future instead may drop it between a
    /// [`Replica::apply`] and the status update, which is harmless: the
    /// replica's own position is what a restart resumes from.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut delay = self.config.reconnect_min;
        loop {
            let ended = self.session(&cancel).await;
            self.status.send_modify(|s| {
                s.connected = false;
                if s.caught_up {
                    s.caught_up = false;
                    s.behind_since = Some(Instant::now());
                }
                if let Err(e) = &ended.result {
                    s.last_error = Some(e.to_string());
                }
            });
            if cancel.is_cancelled() {
                return;
            }
            if let Err(e) = &ended.result {
                tracing::warn!(leader = %self.leader(), error = %e, "replication session ended");
            }
            if ended.streamed {
                delay = self.config.reconnect_min;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.config.reconnect_max);
        }
    }

    fn leader(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    async fn session(&mut self, cancel: &CancellationToken) -> Ended {
        let mut streamed = false;
        let result = self.session_inner(cancel, &mut streamed).await;
        Ended { result, streamed }
    }

    async fn session_inner(
        &mut self,
        cancel: &CancellationToken,
        streamed: &mut bool,
    ) -> Result<(), Error> {
        let addr = self.leader();
        let connect = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(&addr));
        let stream = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = connect => r
                .map_err(|_| Error::Timeout { context: format!("connect to {addr}") })?
                .map_err(|e| Error::io(format!("connect to {addr}"), e))?,
        };
        // Commands are small and latency matters more than packet count.
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io("set TCP_NODELAY", e))?;
        let (mut rd, mut wr) = stream.into_split();
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);

        if let Some(pw) = self.config.auth.clone() {
            let mut cmd = Vec::new();
            geohook_resp::encode_command(&mut cmd, &[b"AUTH".as_slice(), pw.as_bytes()]);
            self.write(&mut wr, &cmd, &addr).await?;
            match self.handshake_reply(&mut rd, &mut buf, cancel).await? {
                Some(Frame::Status(..)) => {}
                Some(Frame::Error(message, _)) => return Err(Error::Leader { message }),
                Some(Frame::Command(..)) => {
                    return Err(Error::protocol(&addr, "expected a reply to AUTH"))
                }
                None => return Ok(()),
            }
        }
        let port = self.config.announce_port.map(|p| p.to_string());
        let announce = [
            port.as_deref().map(|p| (b"listening-port".as_slice(), p)),
            self.config
                .announce_ip
                .as_deref()
                .map(|ip| (b"ip-address".as_slice(), ip)),
        ];
        for (option, value) in announce.into_iter().flatten() {
            let mut cmd = Vec::new();
            geohook_resp::encode_command(
                &mut cmd,
                &[b"REPLCONF".as_slice(), option, value.as_bytes()],
            );
            self.write(&mut wr, &cmd, &addr).await?;
            match self.handshake_reply(&mut rd, &mut buf, cancel).await? {
                Some(Frame::Status(..)) => {}
                // Not critical, as for Redis's replicas: a leader that does
                // not know the option is followed all the same, it only
                // cannot show this node's port.
                Some(Frame::Error(message, _)) => {
                    tracing::info!(leader = %addr, %message, "leader refused REPLCONF");
                }
                Some(Frame::Command(..)) => {
                    return Err(Error::protocol(&addr, "expected a reply to REPLCONF"))
                }
                None => return Ok(()),
            }
        }
        let (id, off) = match &self.position {
            Some((id, off)) => (id.to_string(), off.to_string()),
            None => ("?".to_owned(), "-1".to_owned()),
        };
        let mut cmd = Vec::new();
        geohook_resp::encode_command(
            &mut cmd,
            &[b"PSYNC".as_slice(), id.as_bytes(), off.as_bytes()],
        );
        self.write(&mut wr, &cmd, &addr).await?;
        let line = match self.handshake_reply(&mut rd, &mut buf, cancel).await? {
            Some(Frame::Status(line, _)) => line,
            Some(Frame::Error(message, _)) => return Err(Error::Leader { message }),
            Some(Frame::Command(..)) => {
                return Err(Error::protocol(&addr, "expected a reply to PSYNC"))
            }
            None => return Ok(()),
        };
        let words: Vec<&str> = line.split(' ').collect();
        // While a snapshot is arriving, this holds the position it leads to.
        let mut snapshot: Option<(ReplId, u64)> = None;
        match words.as_slice() {
            ["CONTINUE", id] => {
                let id = ReplId::parse(id.as_bytes())
                    .ok_or_else(|| Error::protocol(&addr, "bad replication id"))?;
                let Some((mine, offset)) = self.position else {
                    return Err(Error::protocol(
                        &addr,
                        "CONTINUE without a position to continue from",
                    ));
                };
                if mine != id {
                    // The leader started a new history that continues ours
                    // (it restarted or was promoted): same offsets, new id.
                    self.replica
                        .replid_changed(&id, offset)
                        .map_err(|source| Error::Apply { offset, source })?;
                    self.position = Some((id, offset));
                    self.status.send_modify(|s| s.replid = Some(id));
                }
                self.status.send_modify(|s| s.partial_syncs += 1);
            }
            ["FULLRESYNC", id, off] => {
                let id = ReplId::parse(id.as_bytes())
                    .ok_or_else(|| Error::protocol(&addr, "bad replication id"))?;
                let off: u64 = off
                    .parse()
                    .map_err(|_| Error::protocol(&addr, "bad FULLRESYNC offset"))?;
                // From here the replica's old position is void, whatever happens
                // to this session: a retry must ask for a full sync again.
                self.position = None;
                self.replica
                    .reset(&id, off)
                    .map_err(|source| Error::Apply {
                        offset: off,
                        source,
                    })?;
                snapshot = Some((id, off));
                self.status.send_modify(|s| {
                    s.replid = None;
                    s.offset = off;
                    s.leader_offset = off;
                });
            }
            _ => {
                return Err(Error::protocol(
                    &addr,
                    format!("unexpected PSYNC reply {line:?}"),
                ))
            }
        }
        *streamed = true;
        // Dropped before the socket (declared after it).
        let _streaming = self.unapplied.streaming(rd.as_ref().as_raw_fd());
        self.status.send_modify(|s| {
            s.connected = true;
            s.sessions += 1;
            s.last_error = None;
        });
        tracing::info!(leader = %addr, reply = %line, "replication session established");

        let mut ack = tokio::time::interval(self.config.ack_interval);
        ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The deadline moves only when bytes arrive; a timer made afresh in
        // each select would be reset by every ack tick and never fire.
        let mut silent_deadline = tokio::time::Instant::now() + self.config.leader_timeout;
        let mut leader_offset = self.status.borrow().leader_offset;
        // Stream commands parsed but not yet applied, and the offset after
        // each (kept apart so that a failed batch still tells where it failed).
        let mut batch: Vec<(Command, u64)> = Vec::new();
        let mut ends: Vec<u64> = Vec::new();
        loop {
            let mut used = 0;
            let mut applied = false;
            let mut announced = false;
            let outcome = loop {
                let frame =
                    match geohook_resp::parse_frame(&buf[used..], &self.config.limits.frame()) {
                        Ok(Some(f)) => f,
                        Ok(None) => break Ok(()),
                        Err(m) => break Err(Error::protocol(&addr, m.to_string())),
                    };
                match frame {
                    Frame::Command(args, n) => {
                        used += n;
                        if snapshot.is_some() {
                            if let Err(source) = self.replica.apply_snapshot(args) {
                                break Err(Error::Apply { offset: 0, source });
                            }
                            continue;
                        }
                        let Some((_, offset)) = self.position else {
                            break Err(Error::protocol(
                                &addr,
                                "stream command before the snapshot ended",
                            ));
                        };
                        let base = ends.last().copied().unwrap_or(offset);
                        let Some(next) = base.checked_add(n as u64) else {
                            break Err(Error::protocol(
                                &addr,
                                "the stream runs past the largest offset",
                            ));
                        };
                        batch.push((args, next));
                        ends.push(next);
                        if batch.len() >= self.config.max_batch {
                            match self.apply_batch(&mut batch, &mut ends) {
                                Ok(any) => applied |= any,
                                Err(e) => break Err(e),
                            }
                        }
                    }
                    Frame::Status(line, n) => {
                        used += n;
                        // Status lines are ordered after the commands before
                        // them: an OFFSET announcement is checked against the
                        // position those commands reach. It needs them
                        // parsed, not applied: the commands of one read are
                        // applied together (one lock, one file write) however
                        // many announcements the leader put between them.
                        if let Some(n) = line
                            .strip_prefix("OFFSET ")
                            .and_then(|n| n.parse::<u64>().ok())
                        {
                            let mine = ends
                                .last()
                                .copied()
                                .or(self.position.map(|p| p.1))
                                .unwrap_or(0);
                            if snapshot.is_some() || n < mine {
                                break Err(Error::protocol(
                                    &addr,
                                    format!("leader announced offset {n} out of order"),
                                ));
                            }
                            leader_offset = n;
                            announced = true;
                            continue;
                        }
                        match self.apply_batch(&mut batch, &mut ends) {
                            Ok(any) => applied |= any,
                            Err(e) => break Err(e),
                        }
                        if line == "SNAPSHOTEND" {
                            let Some((id, off)) = snapshot.take() else {
                                break Err(Error::protocol(
                                    &addr,
                                    "SNAPSHOTEND outside a snapshot",
                                ));
                            };
                            if let Err(source) = self.replica.finish_snapshot(&id, off) {
                                break Err(Error::Apply {
                                    offset: off,
                                    source,
                                });
                            }
                            self.position = Some((id, off));
                            self.status.send_modify(|s| {
                                s.full_syncs += 1;
                                s.replid = Some(id);
                            });
                            applied = true;
                        } else {
                            break Err(Error::protocol(
                                &addr,
                                format!("unexpected status line {line:?}"),
                            ));
                        }
                    }
                    Frame::Error(message, _) => break Err(Error::Leader { message }),
                }
            };
            // The commands parsed before the end of what was read (or before
            // a bad frame, which they precede in the stream) are applied in
            // one batch; a failure among them comes first in stream order.
            let outcome = match self.apply_batch(&mut batch, &mut ends) {
                Ok(any) => {
                    applied |= any;
                    outcome
                }
                Err(e) => {
                    applied = true;
                    Err(e)
                }
            };
            buf.drain(..used);
            // Listening from here on: between here and the read below
            // nothing else is awaited, so bytes arriving meanwhile wake this
            // task, and a request waiting in `Unapplied::settled` for them
            // keeps waiting when the end of this apply wakes it.
            self.unapplied.set_listening(true);
            // What was read is applied (or failed), before the status says
            // so.
            self.unapplied.set_applying(false);
            if applied || announced {
                let offset = self.position.map_or(0, |p| p.1);
                self.status.send_modify(|s| {
                    s.offset = offset;
                    s.leader_offset = leader_offset.max(offset);
                    // Never caught up on a chunk that ended in a decode or
                    // apply error: the leader's stream is not what it
                    // announced, whatever the offsets say.
                    let caught =
                        outcome.is_ok() && self.position.is_some() && offset >= leader_offset;
                    if caught {
                        s.caught_up = true;
                        s.caught_up_once = true;
                        s.behind_since = None;
                    } else if s.caught_up || s.behind_since.is_none() {
                        s.caught_up = false;
                        s.behind_since = Some(Instant::now());
                    }
                });
            }
            outcome?;

            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = tokio::time::timeout_at(silent_deadline, rd.read_buf(&mut buf)) => match r {
                    Err(_) => return Err(Error::Timeout { context: format!("data from leader {addr}") }),
                    Ok(Err(e)) => return Err(Error::io(format!("read from {addr}"), e)),
                    Ok(Ok(0)) => return Err(Error::io(
                        format!("read from {addr}"),
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "leader closed the connection"),
                    )),
                    Ok(Ok(_)) => {
                        // Applying first: a request that looks between the
                        // two then still waits.
                        self.unapplied.set_applying(true);
                        self.unapplied.set_listening(false);
                        silent_deadline = tokio::time::Instant::now() + self.config.leader_timeout;
                    }
                },
                _ = ack.tick() => {
                    self.unapplied.set_listening(false);
                    if let Some((_, offset)) = self.position {
                        let mut cmd = Vec::new();
                        let off = offset.to_string();
                        geohook_resp::encode_command(&mut cmd, &[b"REPLCONF".as_slice(), b"ACK", off.as_bytes()]);
                        self.write(&mut wr, &cmd, &addr).await?;
                    }
                }
            }
        }
    }

    /// Applies the parsed stream commands and moves the position past those
    /// that were applied; true if there were any.
    fn apply_batch(
        &mut self,
        batch: &mut Vec<(Command, u64)>,
        ends: &mut Vec<u64>,
    ) -> Result<bool, Error> {
        if batch.is_empty() {
            return Ok(false);
        }
        let result = self.replica.apply_batch(std::mem::take(batch));
        let (applied, failure) = match result {
            Ok(()) => (ends.len(), None),
            Err(BatchError { applied, source }) => (applied.min(ends.len()), Some(source)),
        };
        if let (Some((_, offset)), Some(&end)) =
            (self.position.as_mut(), ends.get(applied.wrapping_sub(1)))
        {
            *offset = end;
        }
        let failed_at = ends.get(applied).copied();
        ends.clear();
        match failure {
            None => Ok(true),
            Some(source) => Err(Error::Apply {
                offset: failed_at.unwrap_or_default(),
                source,
            }),
        }
    }

    /// Reads one reply during the handshake; `None` if cancelled.
    async fn handshake_reply(
        &self,
        rd: &mut OwnedReadHalf,
        buf: &mut Vec<u8>,
        cancel: &CancellationToken,
    ) -> Result<Option<Frame>, Error> {
        let addr = self.leader();
        let deadline = tokio::time::Instant::now() + self.config.connect_timeout;
        loop {
            let limits = FrameLimits {
                max_line: self.config.limits.max_line,
                ..FrameLimits::default()
            };
            match geohook_resp::parse_frame(buf, &limits) {
                Ok(Some(f)) => {
                    buf.drain(..f.wire_len());
                    return Ok(Some(f));
                }
                Ok(None) => {}
                Err(m) => return Err(Error::protocol(&addr, m.to_string())),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                r = tokio::time::timeout_at(deadline, rd.read_buf(buf)) => match r {
                    Err(_) => return Err(Error::Timeout { context: format!("handshake reply from {addr}") }),
                    Ok(Err(e)) => return Err(Error::io(format!("read from {addr}"), e)),
                    Ok(Ok(0)) => return Err(Error::io(
                        format!("read from {addr}"),
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "leader closed the connection"),
                    )),
                    Ok(Ok(_)) => {}
                },
            }
        }
    }

    async fn write(&self, wr: &mut OwnedWriteHalf, bytes: &[u8], addr: &str) -> Result<(), Error> {
        match tokio::time::timeout(self.config.leader_timeout, wr.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::io(format!("write to {addr}"), e)),
            Err(_) => Err(Error::Timeout {
                context: format!("write to leader {addr}"),
            }),
        }
    }
}
