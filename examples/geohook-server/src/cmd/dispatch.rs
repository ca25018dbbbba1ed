//! The dispatcher: one command from a client, from its name to its reply.
//!
//! In order: look the name up in the command table; refuse it before AUTH
//! unless the table allows it; apply the follower's gate; check the table's
//! arity; refuse writes under READONLY; refuse commands that add data
//! under memory pressure (`Shared::admit`); send a heavy run through the
//! bounded pool (BUSY when full) to one of the pool's low-priority threads;
//! run it (a write under the write lock, through the same path replay
//! takes; a read under the read lock);
//! count it under its table name; render an error in the session's mode.

use std::sync::Arc;

use crate::admission::{is_heavy, HeavyPermit};
use crate::cmd::ctx::{CmdError, Ctx, Session};
use crate::cmd::spec::{self, Cmd, Cost, Kind, Spec};
use crate::cmd::{
    chan, client, config, conn, dlq, hooks, read, repl, script, search, server, write,
};
use crate::repl::status::gate;
use crate::state::{Core, Shared};
use geohook_resp::Reply;

/// Runs one command from a client and renders its reply, all on the
/// calling thread except a heavy search, which this thread waits for while
/// a pool thread runs it (see [`execute_async`] for the connection loop's
/// way, which does not wait).
pub(crate) fn execute(shared: &Arc<Shared>, session: &mut Session, args: &[Vec<u8>]) -> Reply {
    let ctx = Ctx::new(session.json);
    client::touch(session, ctx.now_ms);
    let spec = spec::lookup_sent(&args[0]);
    let reply = run(shared, session, &ctx, spec, args);
    let reply = finish(shared, session, &ctx, spec, args, reply);
    shared.metrics.flush(&mut session.tally);
    reply
}

/// Runs one command from a client and renders its reply, as
/// [`execute`] does, except that a heavy search is awaited: the pool
/// thread running it wakes this task when it is done, and meanwhile the
/// runtime worker serves other connections.
///
/// # Cancellation safety
///
/// A heavy search that was started runs to its end (and frees its place
/// in the pool) even when this future is dropped; only its reply is lost.
pub(crate) async fn execute_async(
    shared: &Arc<Shared>,
    session: &mut Session,
    args: &[Vec<u8>],
) -> Reply {
    let ctx = Ctx::new(session.json);
    client::touch(session, ctx.now_ms);
    let spec = spec::lookup_sent(&args[0]);
    let reply = match route(shared, session, &ctx, spec, args) {
        Err(e) => Err(e),
        // A script runs for as long as its time limit allows, so it runs on
        // tokio's blocking pool, never on a runtime worker, and not on the
        // heavy pool either: that pool answers BUSY when full and runs at a
        // lowered priority, while an EVAL holds the write lock and must
        // finish at the server's own priority. The blocking pool's bound
        // (tokio's 512 threads) caps scripts in flight; a script whose
        // client went away still runs to its end (or its limit).
        Ok((spec, Route::Here)) if spec.kind == Kind::Script => {
            let (shared2, ctx2, args2) = (Arc::clone(shared), ctx, args.to_vec());
            tokio::task::spawn_blocking(move || script::eval(&shared2, &ctx2, spec, &args2))
                .await
                .unwrap_or_else(|_| Err(CmdError::Msg("internal error: the script failed".into())))
        }
        Ok((spec, Route::Here)) => dispatch(shared, session, &ctx, spec, args),
        Ok((spec, Route::Heavy(place))) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let job = heavy_job(shared, &ctx, spec, args, place, move |r| {
                let _ = tx.send(r);
            });
            if let Some(job) = job {
                job();
            }
            rx.await.unwrap_or_else(|_| Err(lost()))
        }
    };
    finish(shared, session, &ctx, spec, args, reply)
}

/// Counts a command (in the session's tally, which the connection adds to
/// the shared metrics before its replies go out), shows it to the monitors,
/// and renders its reply or error.
fn finish(
    shared: &Shared,
    session: &mut Session,
    ctx: &Ctx,
    spec: Option<&'static Spec>,
    args: &[Vec<u8>],
    reply: Result<Reply, CmdError>,
) -> Reply {
    // As Tile38, a command refused for its name or its argument count is
    // not shown (nor one refused before AUTH).
    if let Some(s) = spec {
        if !matches!(reply, Err(CmdError::Arity(_) | CmdError::NoAuth)) {
            shared.monitors.feed(s.name, &session.addr, args);
        }
    }
    if spec.is_some_and(|s| matches!(s.kind, Kind::Write | Kind::Script)) {
        session.unflushed = !std::mem::take(&mut session.flushed_in_place);
    }
    // A script's writes ran on the blocking pool, under a lock of their
    // own; a write records this under the lock it holds (see `dispatch`).
    if spec.is_some_and(|s| s.kind == Kind::Script) {
        session.streamed |= shared.core.read().aof.streaming();
    }
    shared
        .metrics
        .tally(&mut session.tally, spec, ctx.start.elapsed().as_secs_f64());
    match reply {
        Ok(r) => r,
        Err(e) => ctx.err(&e),
    }
}

/// Where a command that passed the gates runs.
enum Route {
    /// Here, on the calling thread.
    Here,
    /// It is a heavy search: on a pool thread with this place (`None` when
    /// the pool is off: then here, like any other).
    Heavy(Option<InUse>),
}

/// Runs every gate, then the command, on the calling thread (waiting for a
/// pool thread when the command is heavy).
fn run(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &Ctx,
    spec: Option<&'static Spec>,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    match route(shared, session, ctx, spec, args)? {
        (spec, Route::Here) => dispatch(shared, session, ctx, spec, args),
        (spec, Route::Heavy(place)) => {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let send = move |r| {
                let _ = tx.send(r);
            };
            let reply = match heavy_job(shared, ctx, spec, args, place, send) {
                Some(job) => {
                    job();
                    rx.recv()
                }
                // Waiting blocks this thread, so a runtime worker first
                // hands its other connections to another worker.
                None => block_here(|| rx.recv()),
            };
            reply.map_err(|_| lost())?
        }
    }
}

/// The gates, in the order of the module's first paragraph, up to the
/// heavy pool: the command's row and where it runs, or its refusal.
fn route(
    shared: &Arc<Shared>,
    session: &Session,
    ctx: &Ctx,
    spec: Option<&'static Spec>,
    args: &[Vec<u8>],
) -> Result<(&'static Spec, Route), CmdError> {
    if !session.authed && !spec.is_some_and(|s| s.before_auth) {
        return Err(CmdError::NoAuth);
    }
    let Some(spec) = spec else {
        return Err(CmdError::Unknown(
            String::from_utf8_lossy(&args[0]).into_owned(),
        ));
    };
    gate(shared, spec)?;
    if !spec.arity_ok(args.len()) {
        return Err(CmdError::Arity(spec.name));
    }
    // Only reads are sent to the pool: they need nothing of the session.
    let heavy = spec.cost != Cost::Cheap
        && spec.kind == Kind::Read
        && is_heavy(spec, args, |key| {
            shared
                .core
                .read()
                .db
                .collection(key)
                .map_or(0, |c| c.len(ctx.now()))
        });
    if !heavy {
        return Ok((spec, Route::Here));
    }
    let permit = shared.heavy.try_acquire().map_err(|busy| {
        shared.metrics.heavy_rejected(spec);
        CmdError::Busy(busy.to_string())
    })?;
    Ok((
        spec,
        Route::Heavy(permit.map(|p| InUse::new(&shared.metrics, p))),
    ))
}

/// The reply of a heavy search whose job ended without one (it panicked).
fn lost() -> CmdError {
    CmdError::Msg("internal error: the search failed".into())
}

/// A heavy search as a job that hands its result to `send`. With a place,
/// the job goes to a pool thread and `None` is returned; without one (the
/// pool is off) or when the pool cannot take it, the job is returned for
/// the caller to run where it is (wrapped so that a runtime worker lends
/// its connections to another worker meanwhile).
fn heavy_job(
    shared: &Arc<Shared>,
    ctx: &Ctx,
    spec: &'static Spec,
    args: &[Vec<u8>],
    place: Option<InUse>,
    send: impl FnOnce(Result<Reply, CmdError>) + Send + 'static,
) -> Option<Box<dyn FnOnce() + Send>> {
    let shared2 = Arc::clone(shared);
    let (ctx, args) = (*ctx, args.to_vec());
    let pooled = place.is_some();
    let job = Box::new(move || {
        let reply = read(&shared2, &ctx, spec, &args);
        // The place is free before the reply is seen, so that the client's
        // next heavy command never finds its own place still taken.
        drop(place);
        send(reply);
    });
    if !pooled {
        return Some(Box::new(move || block_here(job)));
    }
    match shared.heavy.spawn(job) {
        Ok(()) => None,
        Err(job) => Some(Box::new(move || block_here(job))),
    }
}

/// A place in the heavy pool, shown in the in-use gauge while held.
struct InUse {
    metrics: Arc<crate::metrics::Metrics>,
    _permit: HeavyPermit,
}

impl InUse {
    fn new(metrics: &Arc<crate::metrics::Metrics>, permit: HeavyPermit) -> InUse {
        metrics.heavy_in_use.inc();
        InUse {
            metrics: Arc::clone(metrics),
            _permit: permit,
        }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.metrics.heavy_in_use.dec();
    }
}

/// Runs something that blocks (a search with the pool off, or waiting for
/// a pool thread) so that the connections sharing its runtime worker are
/// not held up: on a multi-threaded runtime the worker's other tasks move
/// to another thread for the duration (`block_in_place`). Anywhere else
/// (the unit tests) it simply runs.
fn block_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs a command that passed the gates, by kind.
fn dispatch(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &Ctx,
    spec: &'static Spec,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    match spec.kind {
        Kind::Write => {
            if shared.is_readonly() {
                return Err(CmdError::ReadOnly);
            }
            if shared.admit(spec).is_err() {
                return Err(CmdError::Oom);
            }
            let mut core = shared.core.write();
            core.writable()?;
            session.streamed |= core.aof.streaming();
            let engine = shared.hooks.get().map(|h| &**h);
            let reply = write::apply(
                &mut core,
                engine,
                &shared.client_writer(),
                ctx,
                spec.cmd,
                args,
            );
            // A failed flush is left to the connection's own, which fails
            // the same way (the error is latched) and replaces the replies.
            if session.last_in_batch && shared.flush_aof_locked(&mut core).is_ok() {
                session.flushed_in_place = true;
            }
            reply
        }
        Kind::Read => read(shared, ctx, spec, args),
        Kind::Admin => admin(shared, session, ctx, spec.cmd, args),
        // Here, off the runtime: the worker lends its connections to
        // another one meanwhile (the connection loop does not come this
        // way: see `execute_async`).
        Kind::Script => block_here(|| script::eval(shared, ctx, spec, args)),
    }
}

fn read(
    shared: &Shared,
    ctx: &Ctx,
    spec: &'static Spec,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    if matches!(spec.cmd, Cmd::Hooks | Cmd::Chans) {
        let Some(engine) = shared.hooks.get() else {
            return Err(CmdError::Msg("hooks are not enabled".into()));
        };
        return hooks::list(engine, ctx, args);
    }
    if matches!(
        spec.cmd,
        Cmd::Scan | Cmd::Search | Cmd::Nearby | Cmd::Within | Cmd::Intersects
    ) {
        // A search takes the lock itself: a long one lets it go between
        // slices of its walk.
        return search::search_in(
            &shared.core,
            |core: &Core| &core.db,
            ctx,
            spec.cmd,
            spec.name,
            args,
            shared.opts.output.max_reply,
        );
    }
    let core = shared.core.read();
    read::on_db(&core.db, ctx, spec.cmd, args)
}

fn admin(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &Ctx,
    cmd: Cmd,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    // INFO and SERVER count the commands before them in the same batch.
    if matches!(cmd, Cmd::Info | Cmd::Server) {
        shared.metrics.flush(&mut session.tally);
    }
    match cmd {
        Cmd::Ping => Ok(conn::ping(ctx, "ping", args)),
        Cmd::Echo => Ok(conn::ping(ctx, "echo", args)),
        Cmd::Quit => Ok(conn::quit(session, ctx)),
        Cmd::Timeout => timeout(shared, session, ctx, args),
        Cmd::Output => conn::output(session, ctx, args),
        Cmd::Auth => conn::auth(shared, session, ctx, args),
        Cmd::Hello => conn::hello(shared, session, ctx, args),
        Cmd::Client => client::client(session, ctx, args),
        Cmd::Command => Ok(Reply::Array(Vec::new())),
        Cmd::Server => server::server(shared, ctx, args),
        Cmd::Info => server::info(shared, ctx, args),
        Cmd::Gc => Ok(server::gc(ctx)),
        Cmd::Aofshrink => server::aofshrink(shared, ctx),
        Cmd::Readonly => server::readonly(shared, ctx, args),
        Cmd::Config => config::config(shared, ctx, args),
        Cmd::Healthz => repl::health(shared, ctx),
        Cmd::Follow => repl::follow(shared, ctx, args),
        Cmd::Role => Ok(repl::role(shared, ctx)),
        Cmd::Replconf => repl::replconf(session, ctx, args),
        Cmd::Hookdlq | Cmd::Redeliver => {
            let Some(engine) = shared.hooks.get() else {
                return Err(CmdError::Msg("hooks are not enabled".into()));
            };
            if cmd == Cmd::Hookdlq {
                dlq::list(engine, ctx, args)
            } else {
                dlq::redeliver(engine, ctx, args)
            }
        }
        // The connection loop serves PSYNC itself once the client is
        // authenticated, so it only gets here before AUTH, which the check
        // above already refused.
        Cmd::Psync => Err(CmdError::NoAuth),
        Cmd::Publish => chan::publish(shared, ctx, args),
        Cmd::Script => script::script(shared, ctx, args),
        Cmd::Subscribe | Cmd::Psubscribe | Cmd::Unsubscribe | Cmd::Punsubscribe => {
            Err(chan::not_on_this_path(cmd))
        }
        other => Err(CmdError::Msg(format!(
            "no handler for {other:?} as an admin command"
        ))),
    }
}

/// `TIMEOUT seconds command …`, as Tile38 runs it: a write is refused
/// (`timeout not supported for 'set'`), anything else runs through every
/// gate as if sent alone, with a deadline `seconds` after it started: a
/// search walked in slices stops as soon as the deadline passes (checked
/// between slices and every few hundred objects), and any command that
/// ends past it answers `timeout` instead of its reply.
fn timeout(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let (limit, inner) = conn::timeout(args)?;
    let spec = spec::lookup_sent(&inner[0]);
    match spec {
        Some(s) if s.kind == Kind::Write => {
            return Err(CmdError::Msg(format!(
                "timeout not supported for '{}'",
                s.name
            )))
        }
        Some(s) if s.cmd == Cmd::Timeout => return Err(CmdError::invalid(&inner[0])),
        _ => {}
    }
    let ctx = Ctx {
        deadline: ctx.start.checked_add(limit),
        ..*ctx
    };
    let reply = run(shared, session, &ctx, spec, inner)?;
    ctx.check_deadline()?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::shared_on;

    #[test]
    fn every_row_of_the_table_reaches_a_handler() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(shared_on(&dir.path().join("a.aof")));
        for s in spec::TABLE {
            if s.cmd == Cmd::Psync {
                continue;
            }
            let n = usize::from(s.arity.unsigned_abs()).max(1);
            let mut args = vec![s.name.as_bytes().to_vec()];
            args.resize(n, b"x".to_vec());
            let mut session = Session::new(true);
            let ctx = Ctx::new(false);
            if let Err(CmdError::Msg(m)) = run(&shared, &mut session, &ctx, Some(s), &args) {
                assert!(!m.starts_with("no handler"), "{}: {m}", s.name);
            }
        }
    }

    #[test]
    fn unknown_names_and_bad_arity_get_redis_errors() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(shared_on(&dir.path().join("a.aof")));
        let mut session = Session::new(true);
        let mut reply = |line: &str| {
            let args: Vec<Vec<u8>> = line.split(' ').map(|a| a.as_bytes().to_vec()).collect();
            let mut out = Vec::new();
            execute(&shared, &mut session, &args).encode(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(reply("NOPE x"), "-ERR unknown command 'NOPE'\r\n");
        assert_eq!(
            reply("TTL k"),
            "-ERR wrong number of arguments for 'ttl' command\r\n"
        );
        assert_eq!(reply("PING"), "+PONG\r\n");
    }
}

/// The data commands end to end through the dispatcher, against a state
/// whose log is a real file.
#[cfg(test)]
mod data_tests {
    use super::*;
    use crate::aof::Aof;
    use crate::state::{shared_on, Core};
    use geohook_resp::Limits;
    use std::sync::atomic::Ordering;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    fn exec(shared: &Arc<Shared>, line: &str) -> Reply {
        execute(shared, &mut Session::new(true), &args(line))
    }

    /// A state with its log in a fresh directory, after the SETs of `lines`.
    fn seeded(lines: &[&str]) -> (tempfile::TempDir, Arc<Shared>) {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(shared_on(&dir.path().join("a.aof")));
        for line in lines {
            assert_eq!(exec(&shared, line), Reply::ok(), "{line}");
        }
        (dir, shared)
    }

    #[tokio::test]
    async fn a_batchs_commands_are_counted_once_its_replies_go_out_and_before_an_info() {
        let (_dir, shared) = seeded(&[]);
        let run = || shared.metrics.commands_run.load(Ordering::Relaxed);
        let mut session = Session::new(true);
        for _ in 0..3 {
            execute_async(&shared, &mut session, &args("SCAN fleet")).await;
        }
        // In the connection's tally until the batch's replies go out ...
        assert_eq!(run(), 0);
        // ... or until a command that reports counts runs.
        let info = execute_async(&shared, &mut session, &args("INFO stats")).await;
        let Reply::Bulk(text) = info else {
            panic!("expected INFO's text, got {info:?}")
        };
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("total_commands_processed:3\r\n"), "{text}");
        // INFO itself is the tally's now.
        assert_eq!(run(), 3);
        shared.metrics.flush(&mut session.tally);
        assert_eq!(run(), 4);
        // The synchronous path counts each command as it ends.
        exec(&shared, "SCAN fleet");
        assert_eq!(run(), 5);
    }

    #[test]
    fn a_failed_write_is_reported_and_stops_all_later_writes() {
        // Every write to /dev/full fails with ENOSPC, like a full disk.
        let shared = Arc::new(shared_on(std::path::Path::new("/dev/full")));
        // A client's write is committed to the pending buffer; the flush the
        // connection makes before replying is where the disk says no.
        assert_eq!(exec(&shared, "SET fleet a POINT 1 1"), Reply::ok());
        let err = shared.flush_aof().unwrap_err().to_string();
        assert!(
            err.starts_with("aof write failed, writes disabled: write /dev/full:"),
            "{err}"
        );
        // The next write is refused before it touches memory.
        let Reply::Error(err) = exec(&shared, "SET fleet b POINT 1 1") else {
            panic!("expected an error")
        };
        assert!(
            err.starts_with("aof write failed, writes disabled"),
            "{err}"
        );
        let n = shared
            .core
            .read()
            .db
            .totals(Ctx::new(false).now())
            .totals
            .num_objects;
        assert_eq!(n, 1, "only the write whose append failed reached memory");
        // Reads still work.
        assert_eq!(exec(&shared, "EXISTS fleet b"), Reply::Int(0));
    }

    #[test]
    fn over_maxmemory_only_commands_that_add_data_get_the_oom_error() {
        let (_dir, shared) = seeded(&["SET fleet a POINT 1 1", "SET fleet b POINT 2 2"]);
        shared.settings.write().maxmemory = 1000;
        assert!(shared.maxmemory.observe(2000, 1000));
        let oom = Reply::Error("OOM command not allowed when used memory > 'maxmemory'".into());
        for line in [
            "SET fleet c POINT 1 1",
            "FSET fleet a speed 5",
            "JSET fleet a speed 5",
            "SETHOOK h http://127.0.0.1:1/ NEARBY fleet FENCE POINT 1 1 10",
        ] {
            assert_eq!(exec(&shared, line), oom, "{line}");
        }
        assert_eq!(exec(&shared, "PING"), Reply::Simple("PONG".into()));
        assert_eq!(exec(&shared, "EXISTS fleet a"), Reply::Int(1));
        assert_eq!(exec(&shared, "DEL fleet a"), Reply::Int(1));
        assert_eq!(exec(&shared, "CONFIG SET maxmemory 0"), Reply::ok());
        assert_eq!(exec(&shared, "DROP fleet"), Reply::Int(1));
        assert_eq!(exec(&shared, "FLUSHDB"), Reply::ok());
        // The memory task's next reading clears the state.
        assert!(!shared.maxmemory.observe(2000, 0));
        assert_eq!(exec(&shared, "SET fleet c POINT 1 1"), Reply::ok());
        let page = shared.metrics.encode();
        assert!(
            page.contains("geohook_refused_commands_total{reason=\"maxmemory\",cmd=\"set\"} 1"),
            "{page}"
        );
    }

    #[test]
    fn the_last_write_of_a_batch_reaches_the_file_under_its_own_lock() {
        let (dir, shared) = seeded(&[]);
        let path = dir.path().join("a.aof");
        let mut session = Session::new(true);
        // Not the last of its batch: pending until the connection flushes.
        execute(&shared, &mut session, &args("SET fleet a POINT 1 1"));
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        assert!(session.unflushed);
        // The last: written with its own commit, the earlier one first, and
        // nothing is left for the connection to flush.
        session.last_in_batch = true;
        execute(&shared, &mut session, &args("SET fleet b POINT 2 2"));
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let (a, b) = (text.find("\r\na\r\n"), text.find("\r\nb\r\n"));
        assert!(a.is_some() && a < b, "{text:?}");
        assert!(!session.unflushed);
        // A read ends the batch without touching the flag.
        execute(&shared, &mut session, &args("GET fleet a"));
        assert!(!session.unflushed);
    }

    #[test]
    fn logged_ttls_are_absolute() {
        let (dir, shared) = seeded(&[]);
        let path = dir.path().join("a.aof");
        let before = Ctx::new(false).now_ms;
        exec(&shared, "SET fleet a EX 10 POINT 1 1");
        exec(&shared, "EXPIRE fleet a 20");
        let after = Ctx::new(false).now_ms;
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"",
            "pending until the flush"
        );
        shared.flush_aof().unwrap();
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        // The deadlines logged are the clock at the command plus the TTL.
        let deadline = |after_word: &str| -> u64 {
            let i = text.find(after_word).unwrap() + after_word.len();
            let rest = &text[i..];
            let line = rest.split("\r\n").nth(1).unwrap();
            line.parse().unwrap()
        };
        let at10 = deadline("$4\r\npxat\r\n");
        assert!(
            (before + 10_000..=after + 10_000).contains(&at10),
            "{text:?}"
        );
        let at20 = deadline("$9\r\npexpireat\r\n$5\r\nfleet\r\n$1\r\na\r\n");
        assert!(
            (before + 20_000..=after + 20_000).contains(&at20),
            "{text:?}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("\r\nex\r\n"),
            "{text:?}"
        );
    }

    #[test]
    fn search_replies_are_encoded_in_place_as_resp() {
        let (_dir, shared) = seeded(&[
            "SET k a POINT 33 -115",
            "SET k b FIELD speed 5 POINT 33.001 -115",
            "SET k c POINT 33.002 -115",
        ]);
        let wire = |line: &str| {
            let mut out = Vec::new();
            exec(&shared, line).encode(&mut out);
            String::from_utf8(out).unwrap()
        };
        // A full page: the cursor points past its last hit.
        assert_eq!(
            wire("NEARBY k LIMIT 2 IDS POINT 33 -115 1000"),
            "*2\r\n:2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            wire("NEARBY k IDS POINT 33 -115 120"),
            "*2\r\n:0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            wire("NEARBY k LIMIT 1 DISTANCE IDS POINT 33.001 -115"),
            "*2\r\n:1\r\n*1\r\n*2\r\n$1\r\nb\r\n$1\r\n0\r\n"
        );
        assert_eq!(
            wire("NEARBY k POINTS POINT 33.001 -115 10"),
            "*2\r\n:0\r\n*1\r\n*3\r\n$1\r\nb\r\n*2\r\n$6\r\n33.001\r\n$4\r\n-115\r\n\
             *2\r\n$5\r\nspeed\r\n$1\r\n5\r\n"
        );
        assert_eq!(wire("NEARBY k IDS POINT 0 0 10"), "*2\r\n:0\r\n*0\r\n");
    }

    #[test]
    fn snapshot_batches_recreate_the_state() {
        let (dir, shared) = seeded(&[
            "SET k p FIELD speed 3 POINT 33 -115 7",
            "SET k b BOUNDS 1 2 3 4",
            "SET k s EX 100 STRING hello",
            "SET k2 o OBJECT {\"type\":\"LineString\",\"coordinates\":[[1,2],[3,4]]}",
        ]);
        let now = Ctx::new(false).now();
        let core = shared.core.read();
        let mut out = Vec::new();
        let mut after: Option<(String, String)> = None;
        // Batches of one exercise the resume-after logic.
        while let Some(l) = crate::cmd::set::snapshot_batch(
            &core.db,
            after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())),
            now,
            1,
            &mut out,
        ) {
            after = Some(l);
        }
        let mut copy = Core {
            db: geohook_db::Database::new(),
            aof: Aof::open(&dir.path().join("b.aof")).unwrap(),
            loading: true,
        };
        let mut rest = &out[..];
        while let Some((cmd, used)) = geohook_resp::parse(rest, &Limits::default()).unwrap() {
            crate::replay::apply(&mut copy, None, &cmd).unwrap();
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        assert_eq!(copy.db.canonical_dump(now), core.db.canonical_dump(now));
    }
}
