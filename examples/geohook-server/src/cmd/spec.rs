//! The command table: every command the server knows, once. The dispatcher
//! (lookup, authentication, arity), the follower's gate, the READONLY gate,
//! the flush before replies, replay at start and the metrics labels all read
//! this table and nothing else, so a command added here is known everywhere
//! at once and a name missing here is unknown everywhere.

use crate::cmd::keyword::Keyword;

/// Every command, one variant each. The dispatcher sends a row to the
/// write, read or admin path by its [`Kind`] and then matches on this; a
/// test runs every row through the dispatcher to show each reaches a
/// handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Cmd {
    // Connection.
    Ping,
    Echo,
    Quit,
    Output,
    Auth,
    Hello,
    Client,
    Command,
    Timeout,
    // Server administration.
    Server,
    Info,
    Gc,
    Aofshrink,
    Readonly,
    Config,
    Healthz,
    Follow,
    Role,
    Psync,
    Replconf,
    // Data writes.
    Set,
    Del,
    Pdel,
    Drop,
    Flushdb,
    Expire,
    Pexpireat,
    Persist,
    Fset,
    Jset,
    Jdel,
    Rename,
    Renamenx,
    // Data reads.
    Get,
    Exists,
    Ttl,
    Fget,
    Fexists,
    Jget,
    Keys,
    Stats,
    Bounds,
    Scan,
    Nearby,
    Within,
    Intersects,
    Search,
    Test,
    // Hooks.
    Sethook,
    Delhook,
    Pdelhook,
    Hooks,
    Hookdlq,
    Redeliver,
    // Channels and pub/sub.
    Setchan,
    Delchan,
    Pdelchan,
    Chans,
    Subscribe,
    Psubscribe,
    Unsubscribe,
    Punsubscribe,
    Publish,
    // Lua scripts.
    Eval,
    Evalsha,
    Evalro,
    Evalrosha,
    Evalna,
    Evalnasha,
    Script,
}

/// What a command does to the data, which decides how it is gated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Reads the data (objects or hooks): served by a follower only once it
    /// has caught up with its leader.
    Read,
    /// Changes the data: applied under the write lock, appended to the log
    /// (and so replicated), flushed before the batch's replies, replayed at
    /// start; refused by a follower and under READONLY.
    Write,
    /// About the connection or the server, never logged.
    Admin,
    /// Runs a Lua script (EVAL and its kin). Never logged itself and not
    /// gated as a whole: each command the script calls goes through the
    /// gates of its own row (a write is refused by a follower and under
    /// READONLY, and logged and replicated as itself).
    Script,
}

/// What a command can cost, which decides whether it may run through the
/// bounded pool of heavy commands (`admission::HeavyPool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    /// Bounded work whatever the data: never queued, never refused as busy.
    Cheap,
    /// A search (SCAN, NEARBY, WITHIN, INTERSECTS), whose cost can grow with
    /// the collection: heavy when its collection is large and its page is
    /// not small (`admission::is_heavy` reads its arguments).
    Search,
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Spec {
    /// The lower-case name, which is also the metrics label.
    pub(crate) name: &'static str,
    pub(crate) cmd: Cmd,
    pub(crate) kind: Kind,
    /// Redis's convention: `n` means exactly `n` arguments counting the
    /// name, `-n` at least `n`. Finer rules (a maximum, pairs) are the
    /// command's own parse.
    pub(crate) arity: i8,
    /// Runs before AUTH.
    pub(crate) before_auth: bool,
    /// Makes the data bigger (a new or larger object, a new hook): refused
    /// with the OOM error while memory is under pressure (the soft level of
    /// memwatch, or `maxmemory`), as Tile38 and Redis refuse them. Writes
    /// that only remove or shorten (DEL, DROP, FLUSHDB, EXPIRE, ...) are
    /// not, because they are how an operator gets out of the pressure.
    pub(crate) adds_data: bool,
    /// What the command can cost.
    pub(crate) cost: Cost,
    /// The name as a number ([`key_of`]), which the lookup searches by.
    key: u128,
}

impl Spec {
    /// Whether `n` arguments (counting the name) fit the table's arity.
    pub(crate) fn arity_ok(&self, n: usize) -> bool {
        let want = usize::from(self.arity.unsigned_abs());
        if self.arity < 0 {
            n >= want
        } else {
            n == want
        }
    }
}

/// A name's bytes as a big-endian number, zero-padded to [`LONGEST_NAME`]
/// bytes. For names without NUL bytes the keys order as the names do, so
/// the table, sorted by name, is sorted by key, and a lookup compares one
/// number per probe. A longer name fails the build (the index is out of
/// bounds in a constant).
const fn key_of(name: &[u8]) -> u128 {
    let mut buf = [0u8; LONGEST_NAME];
    let mut i = 0;
    while i < name.len() {
        buf[i] = name[i];
        i += 1;
    }
    u128::from_be_bytes(buf)
}

const fn spec(name: &'static str, cmd: Cmd, kind: Kind, arity: i8) -> Spec {
    Spec {
        name,
        key: key_of(name.as_bytes()),
        cmd,
        kind,
        arity,
        before_auth: false,
        adds_data: false,
        cost: Cost::Cheap,
    }
}

/// A search: a read whose cost can grow with the collection.
const fn search(name: &'static str, cmd: Cmd, arity: i8) -> Spec {
    Spec {
        cost: Cost::Search,
        ..spec(name, cmd, Kind::Read, arity)
    }
}

/// A write that adds data (see [`Spec::adds_data`]).
const fn adds(name: &'static str, cmd: Cmd, arity: i8) -> Spec {
    Spec {
        adds_data: true,
        ..spec(name, cmd, Kind::Write, arity)
    }
}

const fn open(name: &'static str, cmd: Cmd, arity: i8) -> Spec {
    Spec {
        before_auth: true,
        ..spec(name, cmd, Kind::Admin, arity)
    }
}

use Kind::{Admin, Read, Script, Write};

/// The table, sorted by name for binary search (a test checks the order).
pub(crate) static TABLE: &[Spec] = &[
    spec("aofshrink", Cmd::Aofshrink, Admin, 1),
    open("auth", Cmd::Auth, -2),
    spec("bounds", Cmd::Bounds, Read, 2),
    spec("chans", Cmd::Chans, Read, 2),
    spec("client", Cmd::Client, Admin, -2),
    // redis-cli asks for command docs when it starts.
    spec("command", Cmd::Command, Admin, -1),
    spec("config", Cmd::Config, Admin, -2),
    spec("del", Cmd::Del, Write, -3),
    spec("delchan", Cmd::Delchan, Write, 2),
    spec("delhook", Cmd::Delhook, Write, 2),
    spec("drop", Cmd::Drop, Write, 2),
    spec("echo", Cmd::Echo, Admin, -1),
    spec("eval", Cmd::Eval, Script, -3),
    spec("evalna", Cmd::Evalna, Script, -3),
    spec("evalnasha", Cmd::Evalnasha, Script, -3),
    spec("evalro", Cmd::Evalro, Script, -3),
    spec("evalrosha", Cmd::Evalrosha, Script, -3),
    spec("evalsha", Cmd::Evalsha, Script, -3),
    spec("exists", Cmd::Exists, Read, 3),
    spec("expire", Cmd::Expire, Write, 4),
    spec("fexists", Cmd::Fexists, Read, 4),
    spec("fget", Cmd::Fget, Read, 4),
    spec("flushdb", Cmd::Flushdb, Write, 1),
    spec("follow", Cmd::Follow, Admin, 3),
    adds("fset", Cmd::Fset, -5),
    spec("gc", Cmd::Gc, Admin, 1),
    spec("get", Cmd::Get, Read, -3),
    open("healthz", Cmd::Healthz, 1),
    // HELLO authenticates by itself (its AUTH option), so it runs before AUTH.
    open("hello", Cmd::Hello, -1),
    spec("hookdlq", Cmd::Hookdlq, Admin, 2),
    spec("hooks", Cmd::Hooks, Read, 2),
    spec("info", Cmd::Info, Admin, -1),
    search("intersects", Cmd::Intersects, -2),
    spec("jdel", Cmd::Jdel, Write, 4),
    spec("jget", Cmd::Jget, Read, -3),
    adds("jset", Cmd::Jset, -5),
    spec("keys", Cmd::Keys, Read, 2),
    search("nearby", Cmd::Nearby, -2),
    open("output", Cmd::Output, -1),
    spec("pdel", Cmd::Pdel, Write, 3),
    spec("pdelchan", Cmd::Pdelchan, Write, 2),
    spec("pdelhook", Cmd::Pdelhook, Write, 2),
    spec("persist", Cmd::Persist, Write, 3),
    spec("pexpireat", Cmd::Pexpireat, Write, 4),
    open("ping", Cmd::Ping, -1),
    // The four (un)subscribe commands turn the connection into a subscriber;
    // the connection loop serves them (after AUTH), as it serves PSYNC.
    spec("psubscribe", Cmd::Psubscribe, Admin, -2),
    // A follower's PSYNC turns the connection into a replication link; the
    // connection loop serves it (after AUTH) instead of the dispatcher.
    spec("psync", Cmd::Psync, Admin, -1),
    spec("publish", Cmd::Publish, Admin, 3),
    spec("punsubscribe", Cmd::Punsubscribe, Admin, -1),
    open("quit", Cmd::Quit, -1),
    spec("readonly", Cmd::Readonly, Admin, 2),
    spec("redeliver", Cmd::Redeliver, Admin, 2),
    spec("rename", Cmd::Rename, Write, 3),
    spec("renamenx", Cmd::Renamenx, Write, 3),
    // A follower announces its port and address before PSYNC, as Tile38's
    // followers do; ROLE shows them.
    spec("replconf", Cmd::Replconf, Admin, -3),
    spec("role", Cmd::Role, Admin, 1),
    search("scan", Cmd::Scan, -2),
    spec("script", Cmd::Script, Admin, -2),
    search("search", Cmd::Search, -2),
    spec("server", Cmd::Server, Admin, -1),
    adds("set", Cmd::Set, -4),
    adds("setchan", Cmd::Setchan, -5),
    adds("sethook", Cmd::Sethook, -6),
    spec("stats", Cmd::Stats, Read, -2),
    spec("subscribe", Cmd::Subscribe, Admin, -2),
    // TEST reads the data only for a `GET key id` side.
    spec("test", Cmd::Test, Read, -4),
    // TIMEOUT runs the command it wraps under a deadline; the dispatcher
    // unwraps it before the table is read again for that command.
    spec("timeout", Cmd::Timeout, Admin, -3),
    spec("ttl", Cmd::Ttl, Read, 3),
    spec("unsubscribe", Cmd::Unsubscribe, Admin, -1),
    search("within", Cmd::Within, -2),
];

/// The row of a lower-case command name.
pub(crate) fn lookup(name: &str) -> Option<&'static Spec> {
    lookup_sent(name.as_bytes())
}

/// The row of a command name as a client sent it, in any case (the table's
/// names are lower-case ASCII), lowered on the stack without allocating.
pub(crate) fn lookup_sent(name: &[u8]) -> Option<&'static Spec> {
    // A name longer than every row's lowers to nothing, which is no row's.
    let lowered = Keyword::of(name);
    if lowered.as_bytes().len() != name.len() {
        return None;
    }
    let i = TABLE
        .binary_search_by_key(&lowered.as_u128(), |s| s.key)
        .ok()?;
    // A name sent with NUL bytes at its end has the key of the row without
    // them; the length tells them apart.
    Some(&TABLE[i]).filter(|s| s.name.len() == name.len())
}

/// The length of [`Spec::key`]'s number in bytes, and so the longest
/// command name the table can hold: a [`Keyword`]'s.
const LONGEST_NAME: usize = Keyword::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_every_command_has_exactly_one_row() {
        assert!(TABLE.windows(2).all(|w| w[0].name < w[1].name));
        assert!(TABLE.windows(2).all(|w| w[0].key < w[1].key));
        assert!(TABLE.iter().all(|s| !s.name.contains('\0')));
        for s in TABLE {
            assert_eq!(lookup(s.name).map(|r| r.cmd), Some(s.cmd));
            assert_eq!(s.name, s.name.to_ascii_lowercase());
        }
        let mut cmds: Vec<Cmd> = TABLE.iter().map(|s| s.cmd).collect();
        cmds.dedup();
        assert_eq!(cmds.len(), TABLE.len());
        assert!(lookup("setchan").is_some() && lookup("jset").is_some());
        assert!(lookup("eval").is_some() && lookup("evalsha").is_some());
        assert!(lookup("evaluate").is_none());
        for s in TABLE {
            let upper = s.name.to_ascii_uppercase();
            assert_eq!(lookup_sent(upper.as_bytes()).map(|r| r.cmd), Some(s.cmd));
            assert_eq!(lookup_sent(s.name.as_bytes()).map(|r| r.cmd), Some(s.cmd));
        }
        assert!(TABLE.iter().all(|s| s.name.len() <= LONGEST_NAME));
        for name in [
            "",
            "evaluate",
            "SETT",
            "s\u{e9}t",
            "ge\0t",
            "get\0",
            "get\0\0\0\0\0\0\0\0\0\0\0\0\0",
            "setchanxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert!(lookup_sent(name.as_bytes()).is_none(), "{name}");
        }
        assert!(lookup_sent(&[0xff, b's']).is_none());
    }

    #[test]
    fn arity_follows_redis_convention() {
        let set = lookup("set").unwrap();
        assert!(!set.arity_ok(3) && set.arity_ok(4) && set.arity_ok(9));
        let ttl = lookup("ttl").unwrap();
        assert!(!ttl.arity_ok(2) && ttl.arity_ok(3) && !ttl.arity_ok(4));
    }

    #[test]
    fn only_writes_that_grow_the_data_are_marked_as_adding_data() {
        let adding: Vec<&str> = TABLE
            .iter()
            .filter(|s| s.adds_data)
            .map(|s| s.name)
            .collect();
        assert_eq!(adding, ["fset", "jset", "set", "setchan", "sethook"]);
        assert!(TABLE
            .iter()
            .filter(|s| s.adds_data)
            .all(|s| s.kind == Kind::Write));
    }
}
