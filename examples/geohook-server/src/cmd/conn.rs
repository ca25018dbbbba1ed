//! Commands about the connection: `PING [msg]`, `ECHO msg`, `QUIT`, `OUTPUT
//! [json|resp]`, `AUTH [user] password`, and `COMMAND` (an empty list, which
//! is what redis-cli needs when it starts).

use crate::cmd::args::lower;
use crate::cmd::ctx::{json_str, CmdError, Ctx, Session};
use crate::state::Shared;
use geohook_resp::Reply;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `PING [message]`.
///
/// # Errors
///
/// More than one argument.
pub(crate) fn ping(ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    match args {
        [_] if ctx.json => Ok(ctx.ok_json(",\"ping\":\"pong\"")),
        [_] => Ok(Reply::Simple("PONG".into())),
        [_, msg] if ctx.json => Ok(ctx.ok_json(&format!(",\"ping\":{}", json_str(&lossy(msg))))),
        [_, msg] => Ok(Reply::Bulk(msg.clone())),
        _ => Err(CmdError::Arity("ping")),
    }
}

/// `ECHO message`.
pub(crate) fn echo(ctx: &Ctx, args: &[Vec<u8>]) -> Reply {
    if ctx.json {
        ctx.ok_json(&format!(",\"message\":{}", json_str(&lossy(&args[1]))))
    } else {
        Reply::Bulk(args[1].clone())
    }
}

/// `QUIT`: the connection closes after this reply.
pub(crate) fn quit(session: &mut Session, ctx: &Ctx) -> Reply {
    session.quit = true;
    ctx.ok()
}

/// `OUTPUT` (the current mode) or `OUTPUT json|resp`.
///
/// # Errors
///
/// An unknown mode, or too many arguments.
pub(crate) fn output(
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    match args {
        [_] if ctx.json => Ok(ctx.ok_json(",\"output\":\"json\"")),
        [_] => Ok(Reply::bulk("resp")),
        [_, mode] => match lower(mode).as_str() {
            "json" => {
                session.json = true;
                Ok(Ctx { json: true, ..*ctx }.ok_json(""))
            }
            "resp" => {
                session.json = false;
                Ok(Reply::ok())
            }
            _ => Err(CmdError::invalid(mode)),
        },
        _ => Err(CmdError::Arity("output")),
    }
}

/// `AUTH password` or `AUTH user password` (Redis 6 clients send the user;
/// only the default user exists).
///
/// # Errors
///
/// No password configured, a wrong password, or too many arguments. A
/// wrong password leaves the session as it was (as in Redis 6 and later): a
/// connection that already authenticated stays authenticated, so a client
/// retrying with a stale password cannot lose a working session.
pub(crate) fn auth(
    shared: &Shared,
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let pass = match args {
        [_, pass] | [_, _, pass] => pass,
        _ => return Err(CmdError::Arity("auth")),
    };
    let want = shared.settings.read().requirepass.clone();
    if want.is_empty() {
        return Err(CmdError::Msg(
            "AUTH <password> called without any password configured".into(),
        ));
    }
    if pass.as_slice() != want.as_bytes() {
        return Err(CmdError::WrongPass);
    }
    session.authed = true;
    Ok(ctx.ok())
}
