//! Replay: applying logged commands to memory with logging off, at start
//! (the whole file) and on a follower (each command of its leader's stream).
//! Every command goes through the same write path as a client's
//! ([`crate::cmd::write::apply`]), and the failures a replay may meet are
//! told apart by their type, not their text.

use std::path::Path;
use std::time::Instant;

use crate::cmd::args::lower;
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::hooks::SetHook;
use crate::cmd::spec::{self, Cmd, Kind};
use crate::cmd::write;
use crate::hooks::engine::HookEngine;
use crate::state::{Core, Writer};
use geohook_resp::{self as resp, Limits};

/// Applies one command read back from the log. The caller sets
/// `core.loading`, so nothing is logged.
///
/// Hook commands go to `hooks`; without an engine (a log written with hooks,
/// read by a process without them) they are skipped, since the data is
/// still complete. A SETHOOK whose deadline has passed is not recreated.
///
/// # Errors
///
/// A name that is not a write, a wrong argument count, or a failure other
/// than a missing key or id or a blocked NX (expected when a shrink's
/// carried-over tail is replayed over its snapshot).
pub(crate) fn apply(
    core: &mut Core,
    hooks: Option<&HookEngine>,
    args: &[Vec<u8>],
) -> Result<(), CmdError> {
    apply_with(core, hooks, args, &Writer::replay())
}

/// [`apply`] through `w`: a follower passes [`Writer::replicated`] so that
/// its change sink hears its leader's writes.
///
/// # Errors
///
/// As [`apply`].
pub(crate) fn apply_with(
    core: &mut Core,
    hooks: Option<&HookEngine>,
    args: &[Vec<u8>],
    w: &Writer<'_>,
) -> Result<(), CmdError> {
    let Some(spec) = spec::lookup(&lower(&args[0])).filter(|s| s.kind == Kind::Write) else {
        return Err(CmdError::Unknown(
            String::from_utf8_lossy(&args[0]).into_owned(),
        ));
    };
    if !spec.arity_ok(args.len()) {
        return Err(CmdError::Arity(spec.name));
    }
    let ctx = Ctx::new(false);
    let w = *w;
    match spec.cmd {
        Cmd::Sethook
        | Cmd::Delhook
        | Cmd::Pdelhook
        | Cmd::Setchan
        | Cmd::Delchan
        | Cmd::Pdelchan => {
            let Some(engine) = hooks else {
                return Ok(());
            };
            if matches!(spec.cmd, Cmd::Sethook | Cmd::Setchan) {
                let hook = match SetHook::parse(&core.db, args, ctx.now()) {
                    Ok(hook) => hook,
                    // A file written before hooks stored their `GET key id`
                    // area resolved: the object is gone, so the hook's fence
                    // cannot be rebuilt. Dropping that one hook (loudly)
                    // beats refusing to start on the whole file.
                    Err(e) if e.is_expected_on_replay() => {
                        tracing::warn!(
                            hook = %String::from_utf8_lossy(&args[1]),
                            error = %e,
                            "dropping a hook whose GET area no longer exists"
                        );
                        let name = String::from_utf8_lossy(&args[1]);
                        if spec.cmd == Cmd::Setchan {
                            engine.hooks.del_chan(&name);
                        } else {
                            engine.hooks.del_hook(&name);
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                if hook.expired(ctx.now()) {
                    hook.forget(engine);
                    return Ok(());
                }
                return hook.apply(core, engine, &w, &ctx).map(drop);
            }
            write::apply(core, Some(engine), &w, &ctx, spec.cmd, args).map(drop)
        }
        cmd => match write::apply(core, None, &w, &ctx, cmd, args) {
            Err(e) if !e.is_expected_on_replay() => Err(e),
            _ => Ok(()),
        },
    }
}

/// Replays the file's `bytes` into `core` with logging off, handing hook
/// commands to `hooks`. Start-up reads the file once and hands the same
/// bytes to the replication start too.
///
/// # Errors
///
/// A record that is not a valid command, or a command that fails for a
/// reason other than those [`CmdError::is_expected_on_replay`] names,
/// naming the file (`path`) and offset.
pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    core: &mut Core,
    hooks: Option<&HookEngine>,
) -> anyhow::Result<u64> {
    // The file was written by this server, so its commands fit the network
    // caps; use generous ones anyway so an old file with larger records loads.
    let limits = Limits {
        max_args: 1 << 20,
        max_bulk: 512 << 20,
        max_request: 1 << 30,
    };
    let mut start = 0;
    let mut count = 0u64;
    let started = Instant::now();
    core.loading = true;
    // Points are indexed once, in bulk, after the whole file is read: the
    // replay itself runs no spatial search.
    core.db.defer_point_index();
    loop {
        // Zero runs left by a crash on some file systems are skipped, as
        // Tile38 does.
        while start < bytes.len() && bytes[start] == 0 {
            start += 1;
        }
        match resp::parse(&bytes[start..], &limits) {
            Ok(Some((args, used))) => {
                let at = start;
                start += used;
                if args.is_empty()
                    || args[0].eq_ignore_ascii_case(geohook_repl::HEADER_COMMAND.as_bytes())
                {
                    // The replication header is read by the replication start.
                    continue;
                }
                if let Err(e) = apply(core, hooks, &args) {
                    anyhow::bail!(
                        "{}: command at offset {at} failed while loading: {e}",
                        path.display()
                    );
                }
                count += 1;
            }
            Ok(None) => break,
            Err(e) => anyhow::bail!("{}: damaged record at offset {start}: {e}", path.display()),
        }
    }
    core.db.build_point_index();
    core.loading = false;
    if start < bytes.len() {
        // wal-repair runs first and cuts a torn tail, so leftovers here mean
        // the file changed under us or the two parsers disagree.
        anyhow::bail!(
            "{}: {} bytes of incomplete command at offset {start} after repair",
            path.display(),
            bytes.len() - start
        );
    }
    tracing::info!(
        commands = count,
        bytes = start,
        secs = started.elapsed().as_secs_f64(),
        "AOF loaded"
    );
    Ok(count)
}
