//! The removals: `DEL key id [ERRON404]`, `PDEL key pattern`, `DROP key`,
//! `FLUSHDB`, and the background expiry, which removes and logs like a DEL
//! (as Tile38's does).
//!
//! Logged as `del key id` (ERRON404 only changes the reply), `pdel key
//! pattern`, `drop key` and `flushdb`.

use geohook_db::Object;

use crate::aof::Fsync;
use crate::cmd::args::{lower, text};
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::spec::Cmd;
use crate::hooks::engine::HookEngine;
use crate::state::{Core, Record, When, Writer};
use geohook_resp::Reply;

/// Most objects one expiry pass removes, so that one pass holds the write
/// lock for a bounded time.
const EXPIRE_BATCH: usize = 10_000;

/// `DEL key id [ERRON404]`.
///
/// # Errors
///
/// A bad argument; with ERRON404, the missing key or id; the log's failure.
pub(crate) fn del(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let erron404 = match args.get(3) {
        Some(a) if lower(a) == "erron404" && args.len() == 4 => true,
        Some(_) if args.len() > 4 => return Err(CmdError::Arity("del")),
        Some(a) => return Err(CmdError::invalid(a)),
        None => false,
    };
    let (key, id) = (text(&args[1])?, text(&args[2])?);
    if erron404 {
        core.db.get(key, id, ctx.now())?;
    }
    // A logged `del` (replay, or a follower applying its leader's stream)
    // removes the object even when its deadline has passed: it is how the
    // leader's expiry reaches the file and its followers, and by the time it
    // arrives the object is often already past due. Removed here, it is
    // also heard by a follower's channels and live fences, which tell their
    // subscribers of the expiry as the leader's do.
    let now = if core.loading { i64::MIN } else { ctx.now() };
    let Some(old) = core.db.del(key, id, now) else {
        return Ok(ctx.ok_or_int(0));
    };
    commit_del(core, w, key, id, old.object())?;
    Ok(ctx.ok_or_int(1))
}

fn commit_del(
    core: &mut Core,
    w: &Writer<'_>,
    key: &str,
    id: &str,
    old: &Object,
) -> Result<(), CmdError> {
    let logged = [b"del".as_slice(), key.as_bytes(), id.as_bytes()];
    core.commit(
        w,
        Record {
            before: &[(id, old)],
            ..Record::new(Cmd::Del, &logged, key, Some(id))
        },
    )?;
    Ok(())
}

/// `PDEL key pattern`.
///
/// # Errors
///
/// A bad argument, or the log's failure.
pub(crate) fn pdel(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let (key, pattern) = (text(&args[1])?, crate::cmd::args::pattern(&args[2])?);
    let removed = core.db.pdel(key, pattern, ctx.now());
    if !removed.is_empty() {
        let before: Vec<(&str, &Object)> =
            removed.iter().map(|(i, it)| (&**i, it.object())).collect();
        let logged = [b"pdel".as_slice(), key.as_bytes(), pattern.as_bytes()];
        core.commit(
            w,
            Record {
                before: &before,
                ..Record::new(Cmd::Pdel, &logged, key, None)
            },
        )?;
    }
    Ok(ctx.ok_or_int(removed.len() as i64))
}

/// `DROP key`.
///
/// # Errors
///
/// A bad argument, or the log's failure.
pub(crate) fn drop_key(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let key = text(&args[1])?;
    let dropped = core.db.drop_key(key).is_some();
    if dropped {
        let logged = [b"drop".as_slice(), key.as_bytes()];
        core.commit(w, Record::new(Cmd::Drop, &logged, key, None))?;
    }
    Ok(ctx.ok_or_int(i64::from(dropped)))
}

/// `FLUSHDB`: every collection, and, as in Tile38, every channel and hook
/// (`engine`, when hooks are enabled). The one logged `flushdb` does the
/// same on replay and on a follower, which hand it the engine too.
///
/// # Errors
///
/// The log's failure.
pub(crate) fn flushdb(
    core: &mut Core,
    engine: Option<&HookEngine>,
    w: &Writer<'_>,
    ctx: &Ctx,
) -> Result<Reply, CmdError> {
    core.db.flushdb();
    if let Some(engine) = engine {
        engine.hooks.pdel_chans("*");
        engine.hooks.pdel_hooks("*");
    }
    core.commit(w, Record::new(Cmd::Flushdb, &[b"flushdb"], "", None))?;
    Ok(ctx.ok())
}

/// Removes up to [`EXPIRE_BATCH`] objects whose deadline passed at `now`
/// and logs a `del` for each; returns how many were removed.
///
/// The batch is logged as one: every `del` is appended to the log's pending
/// buffer, then one `write(2)` (and, when `w` writes at once under
/// `always`, one fsync) ends the batch, so that thousands of objects
/// expiring together cost one fsync under the write lock, not one each.
pub(crate) fn expire_due(core: &mut Core, w: &Writer<'_>, now: i64) -> u64 {
    if core.writable().is_err() {
        return 0;
    }
    let expired = core.db.expire_due(now, EXPIRE_BATCH);
    let n = expired.len() as u64;
    let deferred = Writer {
        when: When::Deferred,
        sink: w.sink,
    };
    for (key, id, item) in expired {
        if let Err(e) = commit_del(core, &deferred, &key, &id, item.object()) {
            tracing::error!(error = %e, "could not log an expiry");
            break;
        }
    }
    let ended = match w.when {
        When::Now(Fsync::Always) => core.aof.sync(),
        When::Now(_) => core.aof.flush(),
        // The caller flushes, as a client's connection does.
        When::Deferred => Ok(()),
    };
    if let Err(e) = ended {
        tracing::error!(error = %e, "could not write a batch of expiries");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use geohook_db::{Point, SetCondition};

    /// Write system calls made by this thread so far (Linux's per-thread
    /// I/O accounting), so that other tests running meanwhile do not count.
    fn writes_by_this_thread() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("syscw: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_batch_of_expiries_is_logged_with_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appendonly.aof");
        let shared = crate::state::shared_on(&path);
        let mut core = shared.core.write();
        let none: &[(&str, f64)] = &[];
        for i in 0..1000 {
            let p = Object::Point(Point::new(1.0, 2.0).unwrap());
            core.db
                .set(
                    "fleet",
                    &format!("t{i}"),
                    p,
                    none,
                    Some(10),
                    SetCondition::Always,
                    0,
                )
                .unwrap();
        }
        let before = writes_by_this_thread();
        // Under `always`: the expiry task's writer writes and fsyncs at once.
        assert_eq!(expire_due(&mut core, &shared.task_writer(), 10), 1000);
        let writes = writes_by_this_thread() - before;
        assert_eq!(writes, 1, "one write(2) for the whole batch");
        drop(core);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("$3\r\ndel\r\n").count(), 1000);
        assert!(text.contains("$4\r\nt999\r\n"));
    }
}
