//! Commands about the connection: `PING [msg]`, `ECHO msg`, `QUIT`, `OUTPUT
//! [json|resp]`, `AUTH [user] password`, `HELLO` (RESP3), `CLIENT`, and
//! `COMMAND` (an empty list, which is what redis-cli needs when it starts).

use geohook_resp::Proto;

use crate::cmd::args::{lower, Args};
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

/// `HELLO [2|3 [AUTH user password] [SETNAME name]]`: picks the protocol for
/// the rest of the connection (RESP2 stays the default), authenticates and
/// names it in one step, and answers with the server's description, encoded
/// in the protocol just chosen.
///
/// # Errors
///
/// An unsupported version (`NOPROTO`), a wrong password, a bad name, or an
/// unauthenticated connection without AUTH.
pub(crate) fn hello(
    shared: &Shared,
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let mut a = Args::new(args, 1, "hello");
    let mut proto = session.proto;
    if !a.done() {
        proto = match a.next()? {
            b"2" => Proto::Resp2,
            b"3" => Proto::Resp3,
            _ => return Err(CmdError::Msg("NOPROTO unsupported protocol version".into())),
        };
    }
    let (mut authed, mut name) = (session.authed, None);
    while !a.done() {
        let word = a.next()?;
        match lower(word).as_str() {
            "auth" => {
                let _user = a.next()?;
                let pass = a.next()?;
                let want = shared.settings.read().requirepass.clone();
                // Without a password every client is in, as Redis's default
                // user with `nopass` lets any password through.
                if !want.is_empty() && pass != want.as_bytes() {
                    return Err(CmdError::WrongPass);
                }
                authed = true;
            }
            "setname" => name = Some(client_name(a.next()?)?),
            _ => return Err(CmdError::invalid(word)),
        }
    }
    if !authed {
        return Err(CmdError::Msg(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        ));
    }
    session.authed = true;
    session.proto = proto;
    if name.is_some() {
        session.name = name;
    }
    let role = if shared.is_leader() {
        "master"
    } else {
        "replica"
    };
    let version = env!("CARGO_PKG_VERSION");
    let proto_n = if proto == Proto::Resp3 { 3 } else { 2 };
    if ctx.json {
        return Ok(ctx.ok_json(&format!(
            ",\"server\":\"geohook-server\",\"version\":{},\"proto\":{proto_n},\"id\":{},\
             \"mode\":\"standalone\",\"role\":\"{role}\"",
            json_str(version),
            session.id
        )));
    }
    Ok(Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("geohook-server")),
        (Reply::bulk("version"), Reply::bulk(version)),
        (Reply::bulk("proto"), Reply::Int(proto_n)),
        (Reply::bulk("id"), Reply::Int(session.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk(role)),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ]))
}

/// A connection name as Redis allows them: printable, without spaces.
fn client_name(a: &[u8]) -> Result<String, CmdError> {
    if a.iter().all(|b| b.is_ascii_graphic()) {
        Ok(lossy(a))
    } else {
        Err(CmdError::Msg(
            "Client names cannot contain spaces, newlines or special characters.".into(),
        ))
    }
}

/// `CLIENT ID | GETNAME | SETNAME name | SETINFO attr value` (what client
/// libraries send when they connect).
///
/// # Errors
///
/// Arity, a bad name, or another sub-command.
pub(crate) fn client(
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    match (lower(&args[1]).as_str(), args.len()) {
        ("id", 2) => Ok(if ctx.json {
            ctx.ok_json(&format!(",\"id\":{}", session.id))
        } else {
            Reply::Int(session.id as i64)
        }),
        ("getname", 2) => Ok(match (&session.name, ctx.json) {
            (Some(n), true) => ctx.ok_json(&format!(",\"name\":{}", json_str(n))),
            (None, true) => ctx.ok_json(",\"name\":\"\""),
            (Some(n), false) => Reply::bulk(n.clone()),
            (None, false) => Reply::Null,
        }),
        ("setname", 3) => {
            let name = client_name(&args[2])?;
            session.name = (!name.is_empty()).then_some(name);
            Ok(ctx.ok())
        }
        // Libraries report their name and version; nothing here reads them.
        ("setinfo", 4) => Ok(ctx.ok()),
        ("id" | "getname" | "setname" | "setinfo", _) => Err(CmdError::Arity("client")),
        (sub, _) => Err(CmdError::Msg(format!(
            "unknown subcommand '{sub}'. Try CLIENT HELP."
        ))),
    }
}
