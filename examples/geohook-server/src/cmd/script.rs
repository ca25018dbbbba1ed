//! `EVAL`, `EVALSHA`, `EVALRO`, `EVALROSHA`, `EVALNA`, `EVALNASHA` and
//! `SCRIPT LOAD | EXISTS | FLUSH`, as Tile38 runs them: parse, then run
//! the script with `tile38.call` bound to the lock its mode takes.
//!
//! - `EVAL`/`EVALSHA` hold the write lock for the whole script, so it is
//!   atomic: no other command runs between its calls.
//! - `EVALRO`/`EVALROSHA` hold the read lock; a write answers `read only`.
//! - `EVALNA`/`EVALNASHA` hold nothing; each call takes its own lock, as a
//!   client's command does.
//!
//! Each call goes through the gates of its own row of the command table
//! (the follower's gate, arity, READONLY, memory pressure), then through
//! `write::apply` or `read::held`, the paths a client's command takes:
//! the log, replication, hooks and the metrics see a script's writes as
//! the same commands sent one by one. A write that a script made stays
//! made when the script later fails or is stopped (as in Redis).
//! Connection and server commands (and hook and channel writes, which
//! Tile38 refuses too) answer `command not supported in scripts`.

use std::time::Instant;

use geohook_resp::Reply;

use crate::cmd::args::{lower, text};
use crate::cmd::ctx::{json_str, timed_out, CmdError, Ctx};
use crate::cmd::lua::{self, ScriptError};
use crate::cmd::spec::{self, Cmd, Kind, Spec};
use crate::cmd::{read, write};
use crate::repl::status::gate;
use crate::scripts::sha1_hex;
use crate::state::{Core, Shared};

/// The lock a script's mode takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// EVAL, EVALSHA: the write lock for the whole run.
    Atomic,
    /// EVALRO, EVALROSHA: the read lock for the whole run, no writes.
    ReadOnly,
    /// EVALNA, EVALNASHA: no lock; each call takes its own.
    NoLock,
}

/// The parsed `EVAL* script|sha numkeys key… arg…`.
#[derive(Debug)]
struct Eval<'a> {
    mode: Mode,
    /// The source (EVAL*) or the SHA-1 of a cached one (EVAL*SHA).
    script: &'a [u8],
    by_sha: bool,
    keys: &'a [Vec<u8>],
    argv: &'a [Vec<u8>],
}

impl<'a> Eval<'a> {
    fn parse(spec: &'static Spec, args: &'a [Vec<u8>]) -> Result<Eval<'a>, CmdError> {
        let (mode, by_sha) = match spec.cmd {
            Cmd::Eval => (Mode::Atomic, false),
            Cmd::Evalsha => (Mode::Atomic, true),
            Cmd::Evalro => (Mode::ReadOnly, false),
            Cmd::Evalrosha => (Mode::ReadOnly, true),
            Cmd::Evalna => (Mode::NoLock, false),
            Cmd::Evalnasha => (Mode::NoLock, true),
            other => {
                return Err(CmdError::Msg(format!(
                    "no handler for {other:?} as a script"
                )))
            }
        };
        if args.len() < 3 || args[1].is_empty() {
            return Err(CmdError::Arity(spec.name));
        }
        // Tile38 reads numkeys as an unsigned integer: "-1" is an invalid
        // argument, and more keys than arguments a wrong count.
        let numkeys: u64 = text(&args[2])?
            .parse()
            .map_err(|_| CmdError::invalid(&args[2]))?;
        let rest = &args[3..];
        let n = usize::try_from(numkeys)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or(CmdError::Arity(spec.name))?;
        Ok(Eval {
            mode,
            script: &args[1],
            by_sha,
            keys: &rest[..n],
            argv: &rest[n..],
        })
    }
}

/// Runs `EVAL*` (any of the six).
///
/// This runs for as long as the script does (up to the time limit), so the
/// caller must not be a runtime worker: the connection loop sends it to
/// tokio's blocking pool (see `dispatch::execute_async`).
///
/// # Errors
///
/// A bad argument, `NOSCRIPT sha not found`, a full script cache, the
/// script's compile or run error (see [`ScriptError`]).
pub(crate) fn eval(
    shared: &Shared,
    ctx: &Ctx,
    spec: &'static Spec,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    // EVAL and EVALSHA take the write lock, so Tile38 refuses them whole on
    // a follower and on a read-only server, before reading any argument,
    // even when the script would only read (EVALRO is the way to run one
    // there).
    if matches!(spec.cmd, Cmd::Eval | Cmd::Evalsha) {
        if !shared.is_leader() {
            return Err(CmdError::NotLeader);
        }
        if shared.is_readonly() {
            return Err(CmdError::ReadOnly);
        }
    }
    let e = Eval::parse(spec, args)?;
    let _running = shared.scripts.enter().map_err(|max| {
        CmdError::Busy(format!(
            "{max} scripts are running, the most allowed at once; retry later"
        ))
    })?;
    let (source, sha) = if e.by_sha {
        let sha = text(e.script)?.to_ascii_lowercase();
        let source = shared
            .scripts
            .get(&sha)
            .ok_or_else(|| CmdError::Msg("NOSCRIPT sha not found".into()))?;
        (source, sha)
    } else {
        let sha = sha1_hex(e.script);
        if shared.scripts.get(&sha).is_none() {
            lua::compile(e.script, &sha).map_err(script_error)?;
            shared
                .scripts
                .insert(&sha, e.script)
                .map_err(|err| CmdError::Msg(err.to_string()))?;
        }
        (std::sync::Arc::from(e.script), sha)
    };
    let script = lua::Script {
        source: &source,
        sha: &sha,
        keys: e.keys,
        argv: e.argv,
        eval_cmd: spec.name,
    };
    let limits = *shared.scripts.limits();
    let returned = match e.mode {
        Mode::Atomic => {
            let mut core = shared.core.write();
            lua::run(&script, &limits, ctx.deadline, &mut |a| {
                call(shared, Held::Write(&mut core), a)
            })
        }
        Mode::ReadOnly => {
            let core = shared.core.read();
            lua::run(&script, &limits, ctx.deadline, &mut |a| {
                call(shared, Held::Read(&core), a)
            })
        }
        Mode::NoLock => lua::run(&script, &limits, ctx.deadline, &mut |a| {
            call(shared, Held::Nothing, a)
        }),
    }
    .map_err(script_error)?;
    if ctx.json {
        let mut out = String::from(",\"result\":");
        returned.to_json(&mut out).map_err(CmdError::Msg)?;
        Ok(ctx.ok_json(&out))
    } else {
        Ok(returned.to_resp())
    }
}

fn script_error(e: ScriptError) -> CmdError {
    match e {
        ScriptError::Timeout => timed_out(),
        other => CmdError::Msg(other.to_string()),
    }
}

/// What a script's run holds of the database lock.
enum Held<'g, 'c> {
    Write(&'g mut parking_lot::RwLockWriteGuard<'c, Core>),
    Read(&'g parking_lot::RwLockReadGuard<'c, Core>),
    Nothing,
}

/// One `tile38.call` from a script: the command's reply, or its error's
/// text for the script. Counted in the metrics as the command it is.
fn call(shared: &Shared, held: Held<'_, '_>, args: &[Vec<u8>]) -> Result<Reply, String> {
    let start = Instant::now();
    let spec = spec::lookup_sent(&args[0]);
    let reply = match spec {
        None => Err(CmdError::Unknown(
            String::from_utf8_lossy(&args[0]).into_owned(),
        )),
        Some(spec) => call_row(shared, held, spec, args),
    };
    if let Some(spec) = spec {
        shared
            .metrics
            .command(Some(spec), start.elapsed().as_secs_f64());
        shared
            .metrics
            .commands_run
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    reply.map_err(|e| e.to_string())
}

fn call_row(
    shared: &Shared,
    held: Held<'_, '_>,
    spec: &'static Spec,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let supported = match spec.kind {
        Kind::Read => true,
        Kind::Write => !matches!(
            spec.cmd,
            Cmd::Sethook
                | Cmd::Delhook
                | Cmd::Pdelhook
                | Cmd::Setchan
                | Cmd::Delchan
                | Cmd::Pdelchan
        ),
        Kind::Admin | Kind::Script => false,
    };
    if !supported {
        return Err(CmdError::Msg("command not supported in scripts".into()));
    }
    // A script's calls reply in RESP whatever the session's output, as in
    // Tile38: the script sees values, and its own reply is rendered once.
    let ctx = Ctx::new(false);
    let engine = shared.hooks.get().map(|h| &**h);
    let max_reply = shared.opts.output.max_reply;
    if spec.kind == Kind::Write && matches!(held, Held::Read(_)) {
        return Err(CmdError::ReadOnly);
    }
    gate(shared, spec)?;
    if !spec.arity_ok(args.len()) {
        return Err(CmdError::Arity(spec.name));
    }
    if spec.kind == Kind::Write {
        if shared.is_readonly() {
            return Err(CmdError::ReadOnly);
        }
        if shared.admit(spec).is_err() {
            return Err(CmdError::Oom);
        }
        let apply = |core: &mut Core| {
            core.writable()?;
            write::apply(core, engine, &shared.client_writer(), &ctx, spec.cmd, args)
        };
        return match held {
            Held::Write(core) => apply(core),
            Held::Nothing => apply(&mut shared.core.write()),
            Held::Read(_) => Err(CmdError::ReadOnly),
        };
    }
    match held {
        Held::Write(core) => {
            read::held(&core.db, engine, &ctx, spec.cmd, spec.name, args, max_reply)
        }
        Held::Read(core) => {
            read::held(&core.db, engine, &ctx, spec.cmd, spec.name, args, max_reply)
        }
        Held::Nothing => {
            if matches!(
                spec.cmd,
                Cmd::Scan | Cmd::Search | Cmd::Nearby | Cmd::Within | Cmd::Intersects
            ) {
                // As a client's search: the lock is let go between slices.
                return crate::cmd::search::search_in(
                    &shared.core,
                    |core: &Core| &core.db,
                    &ctx,
                    spec.cmd,
                    spec.name,
                    args,
                    max_reply,
                );
            }
            let core = shared.core.read();
            read::held(&core.db, engine, &ctx, spec.cmd, spec.name, args, max_reply)
        }
    }
}

/// `SCRIPT LOAD script | EXISTS sha… | FLUSH`.
///
/// # Errors
///
/// A wrong count or sub-command, a script that does not compile, a full
/// cache.
pub(crate) fn script(shared: &Shared, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("load", 3) => {
            let source = &args[2];
            if source.is_empty() {
                return Err(CmdError::Arity("script load"));
            }
            let sha = sha1_hex(source);
            lua::compile(source, &sha).map_err(script_error)?;
            shared
                .scripts
                .insert(&sha, source)
                .map_err(|e| CmdError::Msg(e.to_string()))?;
            Ok(if ctx.json {
                ctx.ok_json(&format!(",\"result\":{}", json_str(&sha)))
            } else {
                Reply::bulk(sha)
            })
        }
        ("exists", n) if n >= 3 => {
            let found: Vec<bool> = args[2..]
                .iter()
                .map(|sha| std::str::from_utf8(sha).is_ok_and(|s| shared.scripts.get(s).is_some()))
                .collect();
            Ok(if ctx.json {
                let list: Vec<&str> = found.iter().map(|&f| if f { "1" } else { "0" }).collect();
                ctx.ok_json(&format!(",\"result\":[{}]", list.join(",")))
            } else {
                Reply::Array(
                    found
                        .into_iter()
                        .map(|f| Reply::Int(i64::from(f)))
                        .collect(),
                )
            })
        }
        // Redis's ASYNC and SYNC are taken; the cache is emptied at once
        // either way.
        ("flush", 2) => {
            shared.scripts.flush();
            Ok(ctx.ok())
        }
        ("flush", 3) if matches!(lower(&args[2]).as_str(), "async" | "sync") => {
            shared.scripts.flush();
            Ok(ctx.ok())
        }
        ("load" | "exists" | "flush", _) => Err(CmdError::Arity("script")),
        _ => Err(CmdError::Unknown(format!(
            "script {}",
            String::from_utf8_lossy(&args[1])
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::shared_on;

    fn args(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn run(shared: &Shared, json: bool, parts: &[&str]) -> Result<Reply, CmdError> {
        let a = args(parts);
        let spec = spec::lookup_sent(&a[0]).unwrap();
        let ctx = Ctx::new(json);
        if spec.cmd == Cmd::Script {
            script(shared, &ctx, &a)
        } else {
            eval(shared, &ctx, spec, &a)
        }
    }

    #[test]
    fn eval_writes_through_the_write_path_and_evalro_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_on(&dir.path().join("a.aof"));
        let set = "return tile38.call('set', KEYS[1], ARGV[1], 'point', 33, -115)";
        assert_eq!(
            run(&shared, false, &["EVAL", set, "1", "k", "a"]).unwrap(),
            Reply::ok()
        );
        assert_eq!(
            run(&shared, false, &["EVALRO", set, "1", "k", "b"])
                .unwrap_err()
                .to_string(),
            "ERR read only"
        );
        let pset = set.replace("call", "pcall");
        assert_eq!(
            run(&shared, false, &["EVALRO", &pset, "1", "k", "b"]).unwrap(),
            Reply::Error("read only".into())
        );
        assert_eq!(
            run(&shared, false, &["EVALNA", set, "1", "k", "c"]).unwrap(),
            Reply::ok()
        );
        let get = "return tile38.call('get', KEYS[1], ARGV[1], 'point')";
        for cmd in ["EVAL", "EVALRO", "EVALNA"] {
            assert_eq!(
                run(&shared, false, &[cmd, get, "1", "k", "c"]).unwrap(),
                Reply::Array(vec![Reply::bulk("33"), Reply::bulk("-115")]),
                "{cmd}"
            );
        }
        // The two writes reached the log as the SETs they are.
        shared.flush_aof().unwrap();
        let log = String::from_utf8(std::fs::read(dir.path().join("a.aof")).unwrap()).unwrap();
        assert_eq!(log.matches("$3\r\nset\r\n").count(), 2, "{log:?}");
        assert!(!log.contains("eval"), "{log:?}");
        // Searches run on the lock the script holds.
        let scan = "return tile38.call('scan', KEYS[1], 'ids')";
        assert_eq!(
            run(&shared, false, &["EVAL", scan, "1", "k"]).unwrap(),
            Reply::Array(vec![
                Reply::Int(0),
                Reply::Array(vec![Reply::bulk("a"), Reply::bulk("c")])
            ])
        );
    }

    #[test]
    fn script_load_exists_flush_and_evalsha() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_on(&dir.path().join("a.aof"));
        let sha = "2dd1b44209ecb49617af05caf0491390a03c1cc4";
        assert_eq!(
            run(&shared, false, &["SCRIPT", "LOAD", "return 2 + 2"]).unwrap(),
            Reply::bulk(sha)
        );
        assert_eq!(
            run(&shared, false, &["SCRIPT", "EXISTS", sha, "no_script"]).unwrap(),
            Reply::Array(vec![Reply::Int(1), Reply::Int(0)])
        );
        assert_eq!(
            run(&shared, false, &["EVALSHA", sha, "0"]).unwrap(),
            Reply::Int(4)
        );
        let Reply::Bulk(j) = run(&shared, true, &["EVALROSHA", sha, "0"]).unwrap() else {
            panic!()
        };
        assert!(String::from_utf8(j)
            .unwrap()
            .starts_with(r#"{"ok":true,"result":4,"elapsed":"#));
        assert_eq!(
            run(&shared, false, &["SCRIPT", "FLUSH"]).unwrap(),
            Reply::ok()
        );
        assert_eq!(
            run(&shared, false, &["EVALSHA", sha, "0"])
                .unwrap_err()
                .to_string(),
            "NOSCRIPT sha not found"
        );
        assert!(run(&shared, false, &["SCRIPT", "LOAD", "return +"]).is_err());
        assert!(matches!(
            run(&shared, false, &["SCRIPT", "NOPE"]),
            Err(CmdError::Unknown(_))
        ));
    }

    #[test]
    fn numkeys_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_on(&dir.path().join("a.aof"));
        let err = |parts: &[&str]| run(&shared, false, parts).unwrap_err().to_string();
        assert_eq!(err(&["EVAL", "return 1", "-1"]), "invalid argument '-1'");
        assert_eq!(err(&["EVAL", "return 1", "x"]), "invalid argument 'x'");
        assert_eq!(
            err(&["EVAL", "return 1", "2", "k"]),
            "wrong number of arguments for 'eval' command"
        );
        assert_eq!(
            err(&["EVAL", "return 1", "18446744073709551615"]),
            "wrong number of arguments for 'eval' command"
        );
        assert_eq!(
            err(&["EVAL", "return tile38.call('ping')", "0"]),
            "ERR command not supported in scripts"
        );
        assert_eq!(
            err(&["EVAL", "return tile38.call('eval', 'return 1', 0)", "0"]),
            "ERR command not supported in scripts"
        );
    }
}
