//! The one error type of this crate.

use std::io;

/// An error returned by a state machine callback ([`crate::Replica`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while replicating or recovering a position.
///
/// Environment failures ([`Error::Io`], [`Error::Timeout`]) are kept apart from
/// bad bytes: [`Error::Corrupt`] is about a local file, [`Error::Protocol`]
/// about bytes a peer sent over the network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "connect to 127.0.0.1:9851".
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A deadline passed (connect, leader silence, handshake, slow follower).
    #[error("timed out: {context}")]
    Timeout {
        /// What was being waited for.
        context: String,
    },
    /// The bytes of a local file are not a valid replication log.
    #[error("corrupt replication log at byte {position}: {reason}")]
    Corrupt {
        /// Byte position in the file where the bad data starts.
        position: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A peer sent bytes that break the replication protocol.
    #[error("protocol error from {peer}: {reason}")]
    Protocol {
        /// The peer's address, or "leader"/"follower" when unknown.
        peer: String,
        /// What is wrong with the bytes.
        reason: String,
    },
    /// The leader replied with an error (wrong password, unknown command, ...).
    #[error("leader replied with an error: {message}")]
    Leader {
        /// The error text, without the leading `-`.
        message: String,
    },
    /// The state machine refused to apply a replicated command.
    #[error("state machine failed at offset {offset}: {source}")]
    Apply {
        /// The replication offset the command would have reached.
        offset: u64,
        /// The state machine's error.
        #[source]
        source: BoxError,
    },
    /// A follower fell behind the start of the backlog and was disconnected;
    /// it must full-sync when it reconnects.
    #[error(
        "follower at offset {offset} fell behind the backlog, which starts at {backlog_start}"
    )]
    BacklogOverrun {
        /// The follower's position.
        offset: u64,
        /// The oldest offset the backlog still holds.
        backlog_start: u64,
    },
    /// A follower asked for a full sync while the leader's bound on
    /// concurrent full syncs was reached; it was told `-BUSY` and must retry.
    #[error("full sync for {peer} refused: too many in progress")]
    Busy {
        /// The follower's address.
        peer: String,
    },
    /// A full sync's snapshot changed under its walk in a way that replaying
    /// the stream would not repair (the source said so); the connection was
    /// ended before `+SNAPSHOTEND` and the follower must ask again.
    #[error("full sync for {peer} abandoned: the snapshot changed while it was built")]
    SnapshotAbandoned {
        /// The follower's address.
        peer: String,
    },
    /// The leader's replication id was reset while a follower was attached.
    #[error("the replication id changed while streaming")]
    ReplIdChanged,
    /// A configuration value is out of range.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The field name.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn protocol(peer: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Protocol {
            peer: peer.into(),
            reason: reason.into(),
        }
    }
}
