//! What every command runs with: the connection's [`Session`], the
//! command's [`Ctx`] (output mode, start time, clock), and the typed
//! [`CmdError`], rendered once for RESP and once for JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use geohook_resp::{Proto, Reply};

use crate::aof::AofError;
use crate::metrics::Tally;
use crate::settings::SetError;

/// Per-connection state.
#[derive(Debug)]
pub(crate) struct Session {
    /// The connection's id (CLIENT ID, HELLO), unique in the process.
    pub(crate) id: u64,
    /// The name set by CLIENT SETNAME or HELLO … SETNAME.
    pub(crate) name: Option<String>,
    /// RESP2 unless the client asked for RESP3 with HELLO.
    pub(crate) proto: Proto,
    /// Replies in Tile38's JSON shape (`OUTPUT json`).
    pub(crate) json: bool,
    /// AUTH succeeded, or no password was required when it connected.
    pub(crate) authed: bool,
    /// QUIT was received; close after the reply.
    pub(crate) quit: bool,
    /// A write ran since the last flush of the log: the log must be flushed
    /// before this connection's replies go out.
    pub(crate) unflushed: bool,
    /// The command now running is the last complete one the connection has
    /// read: a write then flushes the log under its own lock, and the
    /// connection need not take the lock again to flush before replying.
    pub(crate) last_in_batch: bool,
    /// A write ran, since the connection last sent replies, on a leader
    /// whose followers' links wait for the stream.
    pub(crate) streamed: bool,
    /// The write that just ran flushed the log (and so every earlier write
    /// of the batch) under its own lock.
    pub(crate) flushed_in_place: bool,
    /// What a follower announced with `REPLCONF` before its `PSYNC`.
    pub(crate) announced: geohook_repl::Announced,
    /// The peer's address (`ip:port`), as MONITOR lines show it.
    pub(crate) addr: String,
    /// The connection's last-command time in CLIENT LIST's registry, shared
    /// with its entry there so that a command records it without the
    /// registry's lock; `None` for a session that is not registered.
    pub(crate) last_ms: Option<Arc<AtomicU64>>,
    /// The counts and latencies of this connection's commands not yet added
    /// to the shared metrics (see [`crate::metrics::Tally`]).
    pub(crate) tally: Tally,
}

impl Session {
    /// A fresh session in RESP mode; `authed` when no password is set.
    pub(crate) fn new(authed: bool) -> Session {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Session {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: None,
            proto: Proto::Resp2,
            json: false,
            authed,
            quit: false,
            unflushed: false,
            last_in_batch: false,
            flushed_in_place: false,
            streamed: false,
            announced: geohook_repl::Announced::default(),
            addr: String::new(),
            last_ms: None,
            tally: Tally::default(),
        }
    }
}

/// Why a command failed. The text of each is what Tile38 (or Redis, for the
/// protocol-level ones) says; replay at start tells the expected failures
/// from real ones by variant, not by text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CmdError {
    /// The argument count is wrong for the command (or sub-command) named.
    #[error("wrong number of arguments for '{0}' command")]
    Arity(&'static str),
    /// An argument is not what the command takes there.
    #[error("invalid argument '{0}'")]
    Invalid(String),
    /// The name is not in the command table.
    #[error("unknown command '{0}'")]
    Unknown(String),
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("WRONGPASS invalid password")]
    WrongPass,
    /// READONLY yes.
    #[error("read only")]
    ReadOnly,
    /// A write sent to a follower.
    #[error("not the leader")]
    NotLeader,
    /// A read sent to a follower that has not caught up once.
    #[error("catching up to leader")]
    CatchingUp,
    /// The database refused (missing key or id, bad coordinates, ...).
    #[error(transparent)]
    Db(#[from] geohook_db::Error),
    /// The log failed; writes are disabled.
    #[error(transparent)]
    Aof(#[from] AofError),
    /// CONFIG SET refused a value.
    #[error(transparent)]
    Config(#[from] SetError),
    /// A command that adds data, refused under memory pressure (memwatch's
    /// soft level or `maxmemory`), in Tile38's (and Redis's) words.
    #[error("OOM command not allowed when used memory > 'maxmemory'")]
    Oom,
    /// A heavy command refused because the pool of heavy commands is full;
    /// the text carries the retry hint.
    #[error("BUSY {0}")]
    Busy(String),
    /// Any other refusal, in words.
    #[error("{0}")]
    Msg(String),
}

impl CmdError {
    /// `invalid argument '<arg>'`.
    pub(crate) fn invalid(arg: &[u8]) -> CmdError {
        CmdError::Invalid(String::from_utf8_lossy(arg).into_owned())
    }

    /// A failure that replaying a shrink's carried-over tail over its
    /// snapshot can meet without anything being wrong: the key or id is
    /// already gone, or an NX found it already there.
    pub(crate) fn is_expected_on_replay(&self) -> bool {
        matches!(
            self,
            CmdError::Db(
                geohook_db::Error::KeyNotFound { .. }
                    | geohook_db::Error::IdNotFound { .. }
                    | geohook_db::Error::IdExists { .. }
            )
        )
    }
}

/// Tile38's error for a command past its `TIMEOUT`.
pub(crate) fn timed_out() -> CmdError {
    CmdError::Msg("timeout".into())
}

/// The context a command runs in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    /// Reply in JSON.
    pub(crate) json: bool,
    /// When the command started, for `elapsed`.
    pub(crate) start: Instant,
    /// The database clock.
    pub(crate) now_ms: u64,
    /// When a `TIMEOUT` runs out: a long search stops there.
    pub(crate) deadline: Option<Instant>,
}

impl Ctx {
    /// A context for a command that starts now.
    pub(crate) fn new(json: bool) -> Ctx {
        Ctx {
            json,
            start: Instant::now(),
            now_ms: crate::clock::now_ms(),
            deadline: None,
        }
    }

    /// Tile38's `timeout` error once the deadline has passed.
    ///
    /// # Errors
    ///
    /// `timeout`.
    pub(crate) fn check_deadline(&self) -> Result<(), CmdError> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(timed_out()),
            _ => Ok(()),
        }
    }

    /// The database clock as the database takes it.
    pub(crate) fn now(&self) -> i64 {
        i64::try_from(self.now_ms).unwrap_or(i64::MAX)
    }

    /// A JSON success reply; `body` is empty or starts with a comma.
    pub(crate) fn ok_json(&self, body: &str) -> Reply {
        Reply::Bulk(
            format!(
                "{{\"ok\":true{body},\"elapsed\":\"{}\"}}",
                elapsed(self.start)
            )
            .into_bytes(),
        )
    }

    /// `+OK` or `{"ok":true}`.
    pub(crate) fn ok(&self) -> Reply {
        if self.json {
            self.ok_json("")
        } else {
            Reply::ok()
        }
    }

    /// `{"ok":true}` in JSON mode, else the integer reply Redis clients expect
    /// from a write that counts what it changed.
    pub(crate) fn ok_or_int(&self, n: i64) -> Reply {
        if self.json {
            self.ok()
        } else {
            Reply::Int(n)
        }
    }

    /// Renders an error in the session's mode.
    pub(crate) fn err(&self, e: &CmdError) -> Reply {
        if self.json {
            Reply::Bulk(
                format!(
                    "{{\"ok\":false,\"err\":{},\"elapsed\":\"{}\"}}",
                    json_str(&e.to_string()),
                    elapsed(self.start)
                )
                .into_bytes(),
            )
        } else {
            Reply::Error(e.to_string())
        }
    }
}

/// A JSON string literal.
pub(crate) fn json_str(v: &str) -> String {
    serde_json::Value::from(v).to_string()
}

/// Go's duration formatting, as Tile38 prints `elapsed`.
pub(crate) fn elapsed(start: Instant) -> String {
    let ns = start.elapsed().as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns}ns")
    } else if ns < 1_000_000.0 {
        format!("{}µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{}ms", ns / 1_000_000.0)
    } else {
        format!("{}s", ns / 1_000_000_000.0)
    }
}
