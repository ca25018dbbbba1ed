//! Leader/follower replication, wired from `geohook-repl`.
//!
//! The replication offset is the file's logical offset (`Aof::offset`):
//! every file starts with a `REPLSTATE <replid> <offset> <base_len>` header
//! (written at creation, by every shrink and by every full sync), so a
//! restarted node knows its position from its own file. A leader sends every
//! appended command to its backlog with exactly the bytes it wrote, under the
//! core lock, so stream order is apply order. A follower writes the leader's
//! commands byte for byte to its own file, and never logs expirations of its
//! own: the expiry task does nothing on a follower, whose reads hide expired
//! objects until the leader's `del` arrives.
//!
//! - [`state`]: the node's replication state (a plain type, below `Shared`);
//! - [`status`]: what SERVER, ROLE, HEALTHZ, the metrics and the follower's
//!   gate read from it;
//! - [`leader`]: the file's header at start, PSYNC, the full-sync snapshot;
//! - [`follower`]: the follower task's state machine (applies the stream);
//! - [`control`]: start, FOLLOW and promotion.

pub(crate) mod control;
pub(crate) mod follower;
pub(crate) mod leader;
pub(crate) mod state;
pub(crate) mod status;
