//! `RENAME key newkey` and `RENAMENX key newkey`, with Tile38's semantics:
//! the key must exist; a key that a hook watches, under either name, is
//! refused with `key has hooks set` (a hook names its collection, and a
//! rename would silently move objects out from under it); RENAME replaces
//! an existing `newkey`, RENAMENX leaves it and changes nothing.
//!
//! Logged as `rename key newkey` or `renamenx key newkey` when something
//! moved, so that the log and the followers replay it exactly.
//!
//! The collection moves whole, with its indexes, fields and deadlines, in
//! time independent of its size. A move is the one write whose replay
//! depends on which key an object was read under, so the database counts
//! it, and a snapshot taken in batches (a shrink, a full sync) starts over
//! when a move happened during its walk (see `crate::shrink`).

use std::time::SystemTime;

use crate::cmd::args::text;
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::spec::Cmd;
use crate::hooks::engine::HookEngine;
use crate::state::{Core, Record, Writer};
use geohook_resp::Reply;

/// `RENAME key newkey` or (`cmd` = [`Cmd::Renamenx`]) `RENAMENX key newkey`.
/// Replay passes no `engine`: the check was made when the command ran.
///
/// # Errors
///
/// A bad argument, a missing key, a key with hooks, the log's failure.
pub(crate) fn rename(
    core: &mut Core,
    engine: Option<&HookEngine>,
    w: &Writer<'_>,
    ctx: &Ctx,
    cmd: Cmd,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let nx = cmd == Cmd::Renamenx;
    let (key, newkey) = (text(&args[1])?, text(&args[2])?);
    if core.db.collection(key).is_none() {
        return Err(geohook_db::Error::KeyNotFound { key: key.into() }.into());
    }
    if let Some(engine) = engine {
        let watched = engine
            .hooks
            .list("*", SystemTime::now())
            .iter()
            .any(|h| h.def.key == key || h.def.key == newkey);
        if watched {
            return Err(CmdError::Msg("key has hooks set".into()));
        }
    }
    let moved = !(nx && core.db.collection(newkey).is_some());
    if moved {
        core.db.rename_key(key, newkey);
    }
    if moved {
        let name: &[u8] = if nx { b"renamenx" } else { b"rename" };
        let logged = [name, key.as_bytes(), newkey.as_bytes()];
        core.commit(w, Record::new(cmd, &logged, key, None))?;
    }
    Ok(match (ctx.json, nx) {
        (true, _) => ctx.ok(),
        (false, false) => Reply::ok(),
        (false, true) => Reply::Int(i64::from(moved)),
    })
}
