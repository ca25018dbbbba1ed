//! Running any read on a database whose lock the caller already holds: a
//! client's read (the dispatcher, under the read lock it takes) and a
//! script's read (under the lock the script holds for its whole run) take
//! this one path, so that both answer alike.

use geohook_resp::Reply;
use parking_lot::RwLock;

use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::spec::Cmd;
use crate::cmd::{fields, get, hooks, json, keys, search, test};
use crate::hooks::engine::HookEngine;
use geohook_db::Database;

/// Runs the read `cmd` (a row of kind `Read`) on `db`. HOOKS and CHANS need
/// `engine`. A search walks `db` in the slices its size calls for, on a
/// lock of its own around the borrowed database, so that it numbers its
/// cursors exactly as a client's search does and never takes the server's
/// lock a second time.
///
/// # Errors
///
/// The command's error; `hooks are not enabled` for HOOKS or CHANS without
/// an engine.
pub(crate) fn held(
    db: &Database,
    engine: Option<&HookEngine>,
    ctx: &Ctx,
    cmd: Cmd,
    name: &'static str,
    args: &[Vec<u8>],
    max_reply: usize,
) -> Result<Reply, CmdError> {
    match cmd {
        Cmd::Hooks | Cmd::Chans => {
            let engine = engine.ok_or_else(|| CmdError::Msg("hooks are not enabled".into()))?;
            hooks::list(engine, ctx, args)
        }
        Cmd::Scan | Cmd::Search | Cmd::Nearby | Cmd::Within | Cmd::Intersects => {
            // Nothing else ever sees this lock: letting it go between
            // slices changes nothing, and taking it never waits.
            let own = RwLock::new(db);
            search::search_in(&own, |d: &&Database| *d, ctx, cmd, name, args, max_reply)
        }
        _ => on_db(db, ctx, cmd, args),
    }
}

/// The reads that need nothing but the database.
///
/// # Errors
///
/// The command's error.
pub(crate) fn on_db(
    db: &Database,
    ctx: &Ctx,
    cmd: Cmd,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    match cmd {
        Cmd::Get => get::get(db, ctx, args),
        Cmd::Exists => get::exists(db, ctx, args),
        Cmd::Ttl => get::ttl(db, ctx, args),
        Cmd::Fget => fields::fget(db, ctx, args),
        Cmd::Fexists => fields::fexists(db, ctx, args),
        Cmd::Jget => json::jget(db, ctx, args),
        Cmd::Keys => keys::keys(db, ctx, args),
        Cmd::Stats => keys::stats(db, ctx, args),
        Cmd::Bounds => keys::bounds(db, ctx, args),
        Cmd::Test => test::test(db, ctx, args),
        other => Err(CmdError::Msg(format!("no handler for {other:?} as a read"))),
    }
}
