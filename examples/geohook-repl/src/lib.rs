//! Leader/follower replication by logical offset for the geohook example
//! server, in the manner of Redis's replication id, offset and backlog: a
//! follower resumes after a disconnect from the byte where it stopped, and a
//! leader that compacts its own file does not move that byte, so neither a
//! manual nor an automatic shrink forces a caught-up follower to start over.
//!
//! The crate knows nothing about the server's data: the leader takes its
//! snapshot through [`SnapshotSource`], the follower applies commands through
//! [`Replica`]. It spawns no task; the caller spawns [`Follower::run`] and the
//! per-connection [`Leader::handle_connection`] futures and owns their
//! [`CancellationToken`](tokio_util::sync::CancellationToken)s.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use geohook_repl::{recover, encode_header, Backlog, Leader, LeaderConfig, Limits, ReplId};
//!
//! // A leader's file: header, then stream bytes. After a restart the
//! // position and the backlog come back from the file alone.
//! let replid = ReplId::random();
//! let mut file = encode_header(&replid, 1000, 0);
//! let leader = Leader::new(LeaderConfig::default(), replid, 1000)?;
//! let mut cmd = Vec::new();
//! geohook_repl::encode_command(&mut cmd, &["SET", "fleet", "truck1", "POINT", "33", "-115"]);
//! file.extend_from_slice(&cmd);
//! let offset = leader.append_encoded(&cmd);
//! file.extend_from_slice(b"*3\r\n$3\r\nDEL"); // a torn tail
//!
//! let found = recover(&file, &Limits::default())?;
//! assert_eq!(found.offset(), offset);
//! assert_eq!(found.replid(), Some(replid));
//! let backlog = Backlog::load(16 << 20, offset, found.stream_bytes(&file));
//! let restarted = Leader::with_backlog(LeaderConfig::default(), replid, backlog)?;
//! assert_eq!(restarted.position(), (replid, offset));
//! # Ok::<(), geohook_repl::Error>(())
//! ```
//!
//! # Semantics
//!
//! - **Stream and offset.** The replication stream is the sequence of write
//!   commands, each a RESP array of bulk strings, in apply order. The offset is
//!   the number of stream bytes since the replication id began. The leader's
//!   [`Leader::append`] returns the offset after the command; the follower
//!   hands the command to [`Replica::apply_batch`] (with the others of the
//!   same read) paired with the same number.
//! - **Persistence without a side file.** Every file a node writes starts with
//!   `REPLSTATE <replid> <offset> <base_len>` ([`encode_header`]), followed by
//!   `base_len` bytes of snapshot commands (from a shrink or a full sync; 0 for
//!   a fresh file), followed by stream bytes only. At start-up ([`recover`])
//!   the offset is the header's offset plus the bytes of complete commands
//!   after the base; a torn last command is not counted. A shrink writes a new
//!   header with the current offset and so never changes it.
//! - **Backlog.** The leader keeps the last [`LeaderConfig::backlog_capacity`]
//!   stream bytes. `PSYNC <replid> <offset>` gets `+CONTINUE <replid>` and the
//!   bytes from `offset` when the id matches and `offset` is in the backlog;
//!   anything else (`PSYNC ? -1` included) gets `+FULLRESYNC <replid> <offset>`,
//!   the snapshot as commands, `+SNAPSHOTEND`, then the stream from that
//!   offset. A follower that falls behind the backlog start is sent an error
//!   line and disconnected, and must full-sync. At most
//!   [`LeaderConfig::max_full_syncs`] snapshots are sent at once; a `PSYNC`
//!   that needs one beyond that gets `-BUSY …` and is closed, and the
//!   follower retries after its back-off.
//! - **Progress.** After each chunk the leader sends `+OFFSET <its offset>`,
//!   and repeats it on an idle stream every heartbeat. The follower is caught
//!   up when its offset reaches the last announced one, and sends
//!   `REPLCONF ACK <offset>` every ack interval; the leader reports per-follower
//!   lag from those acks.
//! - **Restarts and promotions.** [`Leader::recovered`] starts a new id that
//!   continues the file's history: a follower of the old id at an offset up to
//!   the recovered one continues (and takes the new id); one beyond it holds
//!   bytes the leader lost and is full-synced.
//! - **Untrusted bytes.** Everything from the network or a file is framed
//!   under [`Limits`]; bad bytes give [`Error::Protocol`] or [`Error::Corrupt`],
//!   never a panic, and no buffer grows beyond the limits.
//!
//! # Crate features
//!
//! None. The crate depends on tokio (sockets, timers, a watch channel),
//! tokio-util (cancellation), parking_lot, rand (replication ids), thiserror,
//! tracing, and geohook-resp (the RESP framing shared with the server:
//! [`encode_command`] and [`encoded_len`] are its own).

mod backlog;
mod error;
mod follower;
mod header;
mod leader;
mod limits;
mod unapplied;

pub use backlog::Backlog;
pub use error::{BoxError, Error};
pub use follower::{Follower, FollowerConfig, FollowerState};
pub use geohook_resp::{encode_command, encoded_len};
pub use header::{encode_header, recover, Header, Recovered, ReplId, HEADER_COMMAND, HEADER_LEN};
pub use leader::{Announced, FollowerLink, Leader, LeaderConfig, LeaderStats};
pub use limits::Limits;
pub use unapplied::Unapplied;

/// One command: its arguments, the command name first.
pub type Command = Vec<Vec<u8>>;

/// The state machine a follower keeps in step (the server's database).
///
/// The follower calls these from its task, one at a time, in stream order,
/// on the runtime's thread: they should not block for long (a file write, or
/// an fsync under `appendfsync always`, is fine; waiting on the network is
/// not).
/// An `Err` ends the session; the follower reconnects and resumes from the
/// last command that succeeded, so a command that fails for a reason of the
/// data (a key that is not there) should be reported as `Ok` and logged.
pub trait Replica: Send + Sync {
    /// Applies one command of the stream; `offset` is the replication offset
    /// just after it. The server writes the command to its own file (so that
    /// the file's stream bytes stay identical to the leader's) and to memory.
    ///
    /// # Errors
    ///
    /// Any failure that should stop the session (a failed file write).
    fn apply(&self, args: Vec<Vec<u8>>, offset: u64) -> Result<(), BoxError>;

    /// Applies consecutive commands of the stream in order: `cmds[i].1` is
    /// the offset just after `cmds[i].0`. The follower hands over every whole
    /// command that one read from the socket brought (up to
    /// [`FollowerConfig::max_batch`]), so a server can apply them under one
    /// lock and write them to its file in one append, as the leader does with
    /// a client's pipeline; one lock and one write per command is what made a
    /// follower fall behind a leader under load. The default calls
    /// [`Replica::apply`] for each.
    ///
    /// # Errors
    ///
    /// The first failure, with the number of commands applied before it: the
    /// follower's position is the offset after the last of those.
    fn apply_batch(&self, cmds: Vec<(Command, u64)>) -> Result<(), BatchError> {
        for (applied, (args, offset)) in cmds.into_iter().enumerate() {
            self.apply(args, offset)
                .map_err(|source| BatchError { applied, source })?;
        }
        Ok(())
    }

    /// A full sync begins: discard the state. The snapshot that follows
    /// describes the leader's state at `offset` under `replid`.
    ///
    /// # Errors
    ///
    /// Any failure that should stop the session.
    fn reset(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError>;

    /// Applies one command of a full sync's snapshot. The server writes it to
    /// the base section of a new file (see [`encode_header`]).
    ///
    /// # Errors
    ///
    /// Any failure that should stop the session.
    fn apply_snapshot(&self, args: Vec<Vec<u8>>) -> Result<(), BoxError>;

    /// The snapshot is complete: the state is the leader's at `offset`. The
    /// server makes the new file (header with the snapshot's length as
    /// `base_len`, then the base) durable and takes it in place of the old one.
    /// Until this returns, the follower asks for a full sync when it
    /// reconnects.
    ///
    /// # Errors
    ///
    /// Any failure that should stop the session.
    fn finish_snapshot(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        let _ = (replid, offset);
        Ok(())
    }

    /// The leader continued the follower's history under a new replication
    /// id from `offset` on (see [`Leader::recovered`]). The server records the
    /// new id when it next writes a header (its next shrink); until then a
    /// restart resumes with the old id, which the leader still accepts up to
    /// the offset where the histories meet, or answers with a full sync.
    ///
    /// # Errors
    ///
    /// Any failure that should stop the session.
    fn replid_changed(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        let _ = (replid, offset);
        Ok(())
    }
}

/// A failure inside [`Replica::apply_batch`].
#[derive(Debug)]
pub struct BatchError {
    /// Commands of the batch applied before the failure.
    pub applied: usize,
    /// Why the next one failed.
    pub source: BoxError,
}

/// A consistent copy of the leader's state for a full sync.
pub struct Snapshot {
    /// The replication offset the state corresponds to: read with
    /// [`Leader::offset`] under the same lock as the state, so that no write
    /// is counted in one and missing from the other.
    pub offset: u64,
    /// Commands that rebuild the state on an empty replica.
    pub commands: Box<dyn Iterator<Item = Vec<Vec<u8>>> + Send>,
    /// Asked once the commands are exhausted, before `+SNAPSHOTEND`:
    /// `false` when the source saw, while it built the commands, a change
    /// that replaying the stream after `offset` would not repair. The leader
    /// then ends the connection without `+SNAPSHOTEND`, so the follower
    /// drops what it received and asks again. `None` for a source whose
    /// snapshot is always consistent (one copy taken under its lock).
    pub consistent: Option<Box<dyn Fn() -> bool + Send>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Where a leader takes full-sync snapshots from (the server's database).
pub trait SnapshotSource: Send + Sync {
    /// The current state and the offset it corresponds to. Called on the
    /// runtime's thread when a follower needs a full sync; the iterator is
    /// drained while the snapshot is written to the socket, so it must not
    /// hold a lock between items. It may own a copy taken under the state's
    /// lock, or build the commands in batches, each under a short lock, if
    /// the offset is read before the first batch and replaying the stream
    /// after it over a state that already shows some of its writes converges
    /// (the server's database does it that way).
    fn snapshot(&self) -> Snapshot;
}

/// Parses the command at the start of `buf` (as a node replays the stream
/// bytes of its file): its arguments and its length in bytes, or `None` if
/// `buf` holds only part of a command.
///
/// # Errors
///
/// [`Error::Corrupt`] with the position, relative to `buf`, of the first byte
/// that cannot belong to a valid command under `limits`.
pub fn decode_command(buf: &[u8], limits: &Limits) -> Result<Option<(Command, usize)>, Error> {
    geohook_resp::parse_command(buf, &limits.frame()).map_err(|m| Error::Corrupt {
        position: m.at as u64,
        reason: m.reason.to_owned(),
    })
}
