//! Applying one write command, whoever sent it: a client (through the
//! dispatcher, under the write lock) or the log itself (replay at start, a
//! follower applying its leader's stream). Both take this one path, so what
//! is replayed is exactly what was applied.

use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::hooks::SetHook;
use crate::cmd::set::Set;
use crate::cmd::spec::Cmd;
use crate::cmd::{del, expire, fields, hooks, json, rename};
use crate::hooks::engine::HookEngine;
use crate::state::{Core, Writer};
use geohook_resp::Reply;

/// Applies the write `cmd` (a row of kind `Write`) and commits its logged
/// form through `w`. Hook commands need `engine`.
///
/// # Errors
///
/// The command's error; `hooks are not enabled` for a hook command without
/// an engine.
pub(crate) fn apply(
    core: &mut Core,
    engine: Option<&HookEngine>,
    w: &Writer<'_>,
    ctx: &Ctx,
    cmd: Cmd,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    // RENAME reads the hooks when there are any, DROP and FLUSHDB stage
    // their lifecycle exits, FLUSHDB clears them; the others need them.
    let hooks_if_any = engine;
    let engine = || engine.ok_or_else(|| CmdError::Msg("hooks are not enabled".into()));
    match cmd {
        Cmd::Set => Set::parse(args, ctx.now())?.apply(core, w, ctx),
        Cmd::Del => del::del(core, w, ctx, args),
        Cmd::Pdel => del::pdel(core, w, ctx, args),
        Cmd::Drop => {
            if let Some(e) = hooks_if_any {
                e.before_drop(&core.db, Some(crate::cmd::args::text(&args[1])?));
            }
            del::drop_key(core, w, ctx, args)
        }
        Cmd::Flushdb => {
            if let Some(e) = hooks_if_any {
                e.before_drop(&core.db, None);
            }
            del::flushdb(core, hooks_if_any, w, ctx)
        }
        Cmd::Expire | Cmd::Pexpireat => expire::expire(core, w, ctx, cmd, args),
        Cmd::Persist => expire::persist(core, w, ctx, args),
        Cmd::Fset => fields::fset(core, w, ctx, args),
        Cmd::Jset => json::jset(core, w, ctx, args),
        Cmd::Jdel => json::jdel(core, w, ctx, args),
        Cmd::Rename | Cmd::Renamenx => rename::rename(core, hooks_if_any, w, ctx, cmd, args),
        Cmd::Sethook | Cmd::Setchan => {
            let engine = engine()?;
            SetHook::parse(&core.db, args, ctx.now())?.apply(core, engine, w, ctx)
        }
        Cmd::Delhook | Cmd::Pdelhook | Cmd::Delchan | Cmd::Pdelchan => {
            hooks::del(core, engine()?, w, ctx, cmd, args)
        }
        _ => Err(CmdError::Msg(format!("no handler for {cmd:?} as a write"))),
    }
}
