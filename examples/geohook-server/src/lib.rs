//! The geo-hook example server: a Tile38-compatible geofencing server over
//! RESP whose append-only file is checked and repaired at start by
//! `wal-repair`, compacted by `aof-compactor`, and whose process is watched
//! by `memwatch`. The binary `geohook-server` is the product; this library
//! holds its parts so that they can be tested on their own, and so that the
//! next pieces (hooks, replication) plug into one write path.
//!
//! # Semantics
//!
//! - **Write path.** Every change goes through `Core::commit` while
//!   the write lock is held: the command is applied to memory, appended to
//!   `appendonly.aof` (RESP, the Tile38 name) with `write(2)` before the reply
//!   is encoded, fsynced before the reply under `--appendfsync always`, once
//!   a second under `everysec`, never under `no`; the logical write offset
//!   (monotonic across shrinks: the replication offset) is bumped
//!   and the change sink (where hooks plug in) is told. Relative
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
//!   by offset, then one fsynced rename swaps the file (`shrink.rs`).
//! - **Replication.** Every file starts with a `REPLSTATE` header naming the
//!   replication id and offset, so the offset survives restarts and shrinks.
//!   A leader feeds every appended command to its backlog; `FOLLOW host port`
//!   makes a follower that writes the leader's bytes to its own file, never
//!   logs expirations of its own, and refuses writes (`repl/`).
//! - **Stop.** SIGTERM/SIGINT (exit 0) and a memwatch firing (exit 2) both
//!   stop accepting, let connections finish the batch they read, then fsync
//!   the file.
//! - **Memory.** With a memory limit and no configuration, memwatch drains
//!   and exits 2 at 90 % of it, and from 80 % (its soft level) the commands
//!   the table marks as adding data get Tile38's OOM error, as they do over
//!   the `maxmemory` property; everything else keeps working. Heavy searches
//!   run through a bounded pool that answers BUSY when full (`admission`,
//!   `watchdog`).
//! - **Peers.** Requests are capped in argument count, bulk size and total
//!   size (`geohook_resp::Limits`); malformed framing gets an error and a close.
//!   Without a password, clients from other hosts are refused when the
//!   server listens on a non-loopback address (protected mode); connections
//!   per client address are capped. The replies a connection holds are
//!   bounded by its output budget (`--client-output-soft`, back-pressure,
//!   then a close after `--client-output-timeout-ms`); a begun request must
//!   complete within `--request-timeout-ms`.
//!
//! # Crate features
//!
//! None.

//! # Layers
//!
//! A file imports only from layers below it (ARCHITECTURE.md draws them):
//!
//! 1. `backoff`, `clock`, `fsio`, `output`, `resp`, `settings`,
//!    `cmd/spec` (the command table), `admission` (memory admission over the
//!    table), `metrics`, `aof`, `cli`, `change`;
//! 2. `hooks/` (the engine the write path feeds), `repl/state`; then `state`
//!    (the shared state and the one write path);
//! 3. `cmd/` (context, arguments, one file per command family, the write
//!    path for clients and replay alike), `repl/status`;
//! 4. `replay`, `shrink`, `repl/` (leader, follower, control), then
//!    `cmd/repl` and `cmd/dispatch`;
//! 5. `net/` (listener, connection), `tasks`, `watchdog`, `repair`,
//!    `import` (a Tile38 data directory, through the replay); then `app`,
//!    and `main.rs` on top.

mod admission;
mod aof;
pub mod app;
mod backoff;
mod boost;
mod change;
pub mod cli;
mod clock;
mod cmd;
mod fsio;
mod hooks;
mod import;
mod import_queue;
mod metrics;
mod monitor;
mod net;
mod output;
mod repair;
mod repl;
mod replay;
mod scripts;
mod settings;
mod shrink;
mod state;
mod tasks;
mod watchdog;
