//! Commands about the connection: `PING [msg]`, `ECHO [msg]`, `QUIT`,
//! `TIMEOUT seconds cmd …` (its parse; the dispatcher runs it), `OUTPUT
//! [json|resp]`, `AUTH [user] password`, `HELLO` (RESP3) and
//! `COMMAND` (an empty list, which is what redis-cli needs when it starts).

use std::time::Duration;

use geohook_resp::Proto;

use crate::cmd::args::{lower, Args};
use crate::cmd::ctx::{json_str, CmdError, Ctx, Session};
use crate::state::Shared;
use geohook_resp::Reply;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `PING [message]` and `ECHO [message]`, answered as Tile38 answers both:
/// the message, or `PONG` without one, under the command's own name in
/// JSON (`{"ok":true,"ping":"pong"}`, `{"ok":true,"echo":"hi"}`). Words
/// after the message are ignored, as Tile38 ignores them.
pub(crate) fn ping(ctx: &Ctx, name: &str, args: &[Vec<u8>]) -> Reply {
    match (args.get(1), ctx.json) {
        (None, true) => ctx.ok_json(&format!(",\"{name}\":\"pong\"")),
        (None, false) => Reply::Simple("PONG".into()),
        (Some(msg), true) => ctx.ok_json(&format!(",\"{name}\":{}", json_str(&lossy(msg)))),
        (Some(msg), false) => Reply::Bulk(msg.clone()),
    }
}

/// `QUIT`: the connection closes after this reply, which is `+OK` in RESP
/// and nothing at all in JSON, as in Tile38. The empty encoded reply adds
/// no bytes to the connection's output.
pub(crate) fn quit(session: &mut Session, ctx: &Ctx) -> Reply {
    session.quit = true;
    if ctx.json {
        Reply::Encoded(Vec::new())
    } else {
        Reply::ok()
    }
}

/// Reads `TIMEOUT seconds command …`: the time limit and the wrapped
/// command.
///
/// # Errors
///
/// Tile38's: an argument count error when no command follows, `invalid
/// argument` for a limit that is not a non-negative number.
pub(crate) fn timeout(args: &[Vec<u8>]) -> Result<(Duration, &[Vec<u8>]), CmdError> {
    let [_, secs, inner @ ..] = args else {
        return Err(CmdError::Arity("timeout"));
    };
    if inner.is_empty() {
        return Err(CmdError::Arity("timeout"));
    }
    let limit = std::str::from_utf8(secs)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| CmdError::invalid(secs))?;
    Ok((limit, inner))
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
///
/// # Errors
///
/// Tile38's message for any other byte.
pub(crate) fn client_name(a: &[u8]) -> Result<String, CmdError> {
    if a.iter().all(|b| b.is_ascii_graphic()) {
        Ok(lossy(a))
    } else {
        Err(CmdError::Msg(
            "Client names cannot contain spaces, newlines or special characters.".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn timeout_reads_a_limit_and_the_wrapped_command() {
        let a = args("TIMEOUT 0.5 SCAN fleet");
        let (limit, inner) = timeout(&a).unwrap();
        assert_eq!(limit, Duration::from_millis(500));
        assert_eq!(inner, &a[2..]);
        assert_eq!(
            timeout(&args("TIMEOUT 0 GET k id")).unwrap().0,
            Duration::ZERO
        );
        for (line, err) in [
            (
                "TIMEOUT 1",
                "wrong number of arguments for 'timeout' command",
            ),
            ("TIMEOUT x GET k id", "invalid argument 'x'"),
            ("TIMEOUT -1 GET k id", "invalid argument '-1'"),
            ("TIMEOUT NaN GET k id", "invalid argument 'NaN'"),
            ("TIMEOUT inf GET k id", "invalid argument 'inf'"),
        ] {
            assert_eq!(timeout(&args(line)).unwrap_err().to_string(), err, "{line}");
        }
    }

    #[test]
    fn ping_and_echo_answer_as_tile38() {
        let resp = Ctx::new(false);
        assert_eq!(
            ping(&resp, "ping", &args("PING")),
            Reply::Simple("PONG".into())
        );
        assert_eq!(
            ping(&resp, "echo", &args("ECHO hi there")),
            Reply::bulk("hi")
        );
        let Reply::Bulk(json) = ping(&Ctx::new(true), "echo", &args("ECHO")) else {
            panic!("JSON is a bulk reply")
        };
        let json = String::from_utf8(json).unwrap();
        assert!(
            json.starts_with(r#"{"ok":true,"echo":"pong","elapsed":"#),
            "{json}"
        );
    }
}
