//! The geo-hook example server: a Tile38-compatible geofencing server over
//! RESP whose append-only file is checked and repaired at start by
//! `wal-repair`, compacted by `aof-compactor`, and whose process is watched
//! by `memwatch`. The binary `geohook-server` is the product; this library
//! holds its parts so that they can be tested on their own, and so that the
//! next pieces (hooks, replication) plug into one write path.
//!
//! # Example
//!
//! The protocol layer on its own: a bounded parser that never trusts a
//! length from the peer, and Tile38's error shape.
//!
//! ```
//! use geohook_server::resp::{parse, Limits, ProtoError, Reply};
//!
//! let limits = Limits::default();
//! let (args, used) = parse(b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n", &limits).unwrap().unwrap();
//! assert_eq!((args.len(), used), (2, 22));
//! // Inline commands work as in Redis.
//! let (args, _) = parse(b"SET fleet truck1 POINT 33 -115\r\n", &limits).unwrap().unwrap();
//! assert_eq!(args[0], b"SET");
//! // A count beyond the cap is refused before anything is allocated.
//! assert_eq!(parse(b"*99999999999\r\n", &limits), Err(ProtoError::InvalidMultibulkLength));
//!
//! let mut out = Vec::new();
//! Reply::Error("key not found".into()).encode(&mut out);
//! assert_eq!(out, b"-ERR key not found\r\n");
//! ```
//!
//! # Semantics
//!
//! - **Write path.** Every change goes through [`state::Core::commit`] while
//!   the write lock is held: the command is applied to memory, appended to
//!   `appendonly.aof` (RESP, the Tile38 name) with `write(2)` before the reply
//!   is encoded, fsynced before the reply under `--appendfsync always`, once
//!   a second under `everysec`, never under `no`; the logical write offset
//!   (monotonic across shrinks: the replication offset) is bumped
//!   and the [`state::ChangeSink`] (where hooks plug in) is told. Relative
//!   TTLs are logged as absolute deadlines (`EX s` as `PXAT ms`, `EXPIRE` as
//!   `PEXPIREAT`), so a restart never extends a TTL. A failed write or fsync
//!   is latched: every later write gets `aof write failed, writes disabled`.
//! - **Start.** `wal-repair` scans the file: a torn tail is cut once (the cut
//!   bytes go to a `.torn` sidecar, one warning is logged); damage with valid
//!   commands after it refuses to start, naming file and offset, unless
//!   `--accept-data-loss` moves everything from that offset to a `.lost` file.
//!   Then the file is replayed through the same dispatcher with logging off.
//! - **Shrink.** `aof-compactor` checks the size every
//!   `--aofshrink-check-ms` and shrinks when it exceeds `aofshrink-min-size`
//!   (and, if set, grew `aofshrink-percentage` over the last shrink), with a
//!   cooldown; AOFSHRINK asks for one now. The snapshot is written in batches
//!   under short read locks and the bytes appended meanwhile are carried over
//!   by offset, then one fsynced rename swaps the file ([`shrink`]).
//! - **Replication.** Every file starts with a `REPLSTATE` header naming the
//!   replication id and offset, so the offset survives restarts and shrinks.
//!   A leader feeds every appended command to its backlog; `FOLLOW host port`
//!   makes a follower that writes the leader's bytes to its own file, never
//!   logs expirations of its own, and refuses writes ([`replication`]).
//! - **Stop.** SIGTERM/SIGINT (exit 0) and a memwatch firing (exit 2) both
//!   stop accepting, let connections finish the batch they read, then fsync
//!   the file.
//! - **Peers.** Requests are capped in argument count, bulk size and total
//!   size ([`resp::Limits`]); malformed framing gets an error and a close.
//!   Without a password, clients from other hosts are refused when the
//!   server listens on a non-loopback address (protected mode); connections
//!   per client address are capped.
//!
//! # Crate features
//!
//! None.

pub mod aof;
pub mod app;
pub mod commands;
pub mod geo;
pub mod glob;
pub mod hooks;
pub mod info;
pub mod metrics;
pub mod repair;
pub mod replication;
pub mod resp;
pub mod server;
pub mod settings;
pub mod shrink;
pub mod state;
pub mod watch;
