//! Pub/sub and live fences at the command level: PUBLISH, the replies of a
//! subscribed connection in Tile38's shapes, and the start of a live fence.
//! The connection loops that stream them are in `net/pubsub.rs`;
//! SETCHAN, DELCHAN, PDELCHAN and CHANS share SETHOOK's code (`hooks.rs`).
//!
//! Shapes, per mode:
//! - RESP2: Redis's arrays, `subscribe|unsubscribe|psubscribe|punsubscribe
//!   channel count`, `message channel body`, `pmessage pattern channel body`;
//! - RESP3: the same items as push frames (`>`), as Redis 6 sends them;
//! - JSON (`OUTPUT json`): Tile38's objects, each as a bulk string:
//!   `{"ok":true,"command":"subscribe","channel":…,"num":n,"elapsed":…}`
//!   for a confirmation, and the event itself for a message;
//! - a live fence answers `+OK` (RESP) or `{"ok":true,"live":true}` (JSON)
//!   and then sends each event as a bulk string, as Tile38 does in both
//!   protocols.

use std::sync::Arc;
use std::time::Instant;

use geohook_hooks::{HookDef, Message};
use geohook_resp::{Proto, Reply};

use crate::cmd::ctx::{elapsed, json_str, CmdError, Ctx, Session};
use crate::cmd::hooks::live_fence;
use crate::cmd::spec::{self, Cmd};
use crate::repl::status::gate;
use crate::state::Shared;

/// The error a subscribed RESP2 connection gets for any other command,
/// in Tile38's (and Redis's) words.
pub(crate) const ONLY_PUBSUB: &str =
    "only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT allowed in this context";

/// `PUBLISH channel message`: the number of subscriptions that received it.
///
/// # Errors
///
/// Without the hook engine, which owns the pub/sub.
pub(crate) fn publish(shared: &Shared, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let Some(engine) = shared.hooks.get() else {
        return Err(CmdError::Msg("pub/sub is not enabled".into()));
    };
    let channel = String::from_utf8_lossy(&args[1]);
    let message = String::from_utf8_lossy(&args[2]);
    let n = engine.hooks.pubsub().publish(&channel, &message);
    Ok(if ctx.json {
        ctx.ok_json(&format!(",\"published\":{n}"))
    } else {
        Reply::Int(n as i64)
    })
}

/// What the dispatcher answers for a (P)(UN)SUBSCRIBE that reached it: the
/// connection loop serves them for an authenticated client, so only replay
/// or an embedding without connections gets here.
pub(crate) fn not_on_this_path(cmd: Cmd) -> CmdError {
    CmdError::Msg(format!(
        "{} is served by a client connection",
        format!("{cmd:?}").to_ascii_uppercase()
    ))
}

/// Which of the four subscription commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubCmd {
    Subscribe,
    Psubscribe,
    Unsubscribe,
    Punsubscribe,
}

impl SubCmd {
    /// The subscription command a request names, if any.
    pub(crate) fn of(args: &[Vec<u8>]) -> Option<SubCmd> {
        let name = args.first()?;
        [
            (b"subscribe".as_slice(), SubCmd::Subscribe),
            (b"psubscribe", SubCmd::Psubscribe),
            (b"unsubscribe", SubCmd::Unsubscribe),
            (b"punsubscribe", SubCmd::Punsubscribe),
        ]
        .into_iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map(|(_, c)| c)
    }

    /// The lower-case name, as replies carry it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SubCmd::Subscribe => "subscribe",
            SubCmd::Psubscribe => "psubscribe",
            SubCmd::Unsubscribe => "unsubscribe",
            SubCmd::Punsubscribe => "punsubscribe",
        }
    }

    /// Whether it works on patterns.
    pub(crate) fn pattern(self) -> bool {
        matches!(self, SubCmd::Psubscribe | SubCmd::Punsubscribe)
    }

    /// Whether it removes subscriptions.
    pub(crate) fn removes(self) -> bool {
        matches!(self, SubCmd::Unsubscribe | SubCmd::Punsubscribe)
    }

    /// The table's row, for metrics and the arity check.
    pub(crate) fn spec(self) -> &'static spec::Spec {
        spec::lookup(self.name()).expect("every subscription command has a row")
    }
}

/// Encodes one (un)subscription confirmation: `channel` is `None` for an
/// UNSUBSCRIBE without arguments on a connection subscribed to nothing.
pub(crate) fn confirm(
    session: &Session,
    start: Instant,
    cmd: SubCmd,
    channel: Option<&str>,
    count: usize,
    out: &mut Vec<u8>,
) {
    if session.json {
        let json = format!(
            "{{\"ok\":true,\"command\":\"{}\",\"channel\":{},\"num\":{count},\"elapsed\":\"{}\"}}",
            cmd.name(),
            channel.map_or_else(|| "null".to_owned(), json_str),
            elapsed(start)
        );
        Reply::bulk(json).encode_as(session.proto, out);
        return;
    }
    Reply::Push(vec![
        Reply::bulk(cmd.name()),
        channel.map_or(Reply::Null, Reply::bulk),
        Reply::Int(count as i64),
    ])
    .encode_as(session.proto, out);
}

/// Encodes one message for a subscribed or live connection.
pub(crate) fn message(session: &Session, m: &Message, out: &mut Vec<u8>) {
    match m {
        // Tile38 sends the event alone in JSON mode; the events are JSON
        // already.
        Message::Channel { body, .. } | Message::Pattern { body, .. } if session.json => {
            geohook_resp::encode_bulk(body.as_bytes(), out);
        }
        Message::Channel { channel, body } => Reply::Push(vec![
            Reply::bulk("message"),
            Reply::bulk(channel.to_string()),
            Reply::bulk(body.to_string()),
        ])
        .encode_as(session.proto, out),
        Message::Pattern {
            pattern,
            channel,
            body,
        } => Reply::Push(vec![
            Reply::bulk("pmessage"),
            Reply::bulk(pattern.to_string()),
            Reply::bulk(channel.to_string()),
            Reply::bulk(body.to_string()),
        ])
        .encode_as(session.proto, out),
        Message::Live { body } => geohook_resp::encode_bulk(body.as_bytes(), out),
    }
}

/// PING on a subscribed connection: Tile38's `PONG` pair (RESP2), a plain
/// reply (RESP3), or its JSON object.
pub(crate) fn ping(session: &Session, start: Instant, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let arg = args.get(1).map(|a| String::from_utf8_lossy(a).into_owned());
    if session.json {
        let json = format!(
            "{{\"ok\":true,\"ping\":{},\"elapsed\":\"{}\"}}",
            json_str(arg.as_deref().unwrap_or("pong")),
            elapsed(start)
        );
        Reply::bulk(json).encode(out);
    } else if session.proto == Proto::Resp3 {
        arg.map_or_else(|| Reply::Simple("PONG".into()), Reply::bulk)
            .encode_as(session.proto, out);
    } else {
        Reply::Array(vec![
            Reply::bulk("PONG"),
            Reply::bulk(arg.unwrap_or_default()),
        ])
        .encode(out);
    }
}

/// An error on a subscribed or live connection, in the session's mode.
pub(crate) fn error(session: &Session, e: &CmdError, out: &mut Vec<u8>) {
    Ctx::new(session.json).err(e).encode_as(session.proto, out);
}

/// Checks and parses a live fence request for `session`: the follower's
/// gate (a follower serves live fences once it has caught up, from its
/// own matching), then the fence.
///
/// # Errors
///
/// The gate's refusal, or the fence's parse error.
pub(crate) fn start_live(
    shared: &Arc<Shared>,
    session: &Session,
    args: &[Vec<u8>],
) -> Result<HookDef, CmdError> {
    if shared.hooks.get().is_none() {
        return Err(CmdError::Msg("live fences are not enabled".into()));
    }
    let row = spec::lookup_sent(&args[0])
        .ok_or_else(|| CmdError::Unknown(String::from_utf8_lossy(&args[0]).into_owned()))?;
    gate(shared, row)?;
    let ctx = Ctx::new(session.json);
    let core = shared.core.read();
    live_fence(&core.db, args, ctx.now(), session.id)
}

/// The first reply of a live fence: `+OK`, or `{"ok":true,"live":true}` as
/// a bulk string in JSON mode.
pub(crate) fn live_ok(session: &Session, out: &mut Vec<u8>) {
    if session.json {
        geohook_resp::encode_bulk(br#"{"ok":true,"live":true}"#, out);
    } else {
        Reply::ok().encode_as(session.proto, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(f: impl FnOnce(&Session, &mut Vec<u8>), proto: Proto, json: bool) -> String {
        let mut s = Session::new(true);
        s.proto = proto;
        s.json = json;
        let mut out = Vec::new();
        f(&s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn confirmations_and_messages_take_each_mode_s_shape() {
        let start = Instant::now();
        let sub = |s: &Session, o: &mut Vec<u8>| {
            confirm(s, start, SubCmd::Subscribe, Some("fleet"), 1, o);
        };
        assert_eq!(
            wire(sub, Proto::Resp2, false),
            "*3\r\n$9\r\nsubscribe\r\n$5\r\nfleet\r\n:1\r\n"
        );
        assert_eq!(
            wire(sub, Proto::Resp3, false),
            ">3\r\n$9\r\nsubscribe\r\n$5\r\nfleet\r\n:1\r\n"
        );
        let json = wire(sub, Proto::Resp2, true);
        assert!(
            json.contains(
                r#"{"ok":true,"command":"subscribe","channel":"fleet","num":1,"elapsed":""#
            ),
            "{json}"
        );
        let none = |s: &Session, o: &mut Vec<u8>| {
            confirm(s, start, SubCmd::Unsubscribe, None, 0, o);
        };
        assert_eq!(
            wire(none, Proto::Resp2, false),
            "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
        let m = Message::Pattern {
            pattern: "f*".into(),
            channel: "fleet".into(),
            body: "{}".into(),
        };
        assert_eq!(
            wire(|s, o| message(s, &m, o), Proto::Resp3, false),
            ">4\r\n$8\r\npmessage\r\n$2\r\nf*\r\n$5\r\nfleet\r\n$2\r\n{}\r\n"
        );
        assert_eq!(
            wire(|s, o| message(s, &m, o), Proto::Resp2, true),
            "$2\r\n{}\r\n"
        );
        let live = Message::Live { body: "{}".into() };
        assert_eq!(
            wire(|s, o| message(s, &live, o), Proto::Resp3, false),
            "$2\r\n{}\r\n"
        );
        assert_eq!(wire(live_ok, Proto::Resp2, false), "+OK\r\n");
        assert_eq!(
            wire(live_ok, Proto::Resp2, true),
            "$23\r\n{\"ok\":true,\"live\":true}\r\n"
        );
    }

    #[test]
    fn live_fences_parse_like_hooks_with_tile38s_fence_options() {
        let db = geohook_db::Database::new();
        let args = |line: &str| -> Vec<Vec<u8>> {
            line.split(' ').map(|w| w.as_bytes().to_vec()).collect()
        };
        let def = live_fence(
            &db,
            &args("nearby fleet FENCE DETECT enter,exit POINT 33 -112 500"),
            0,
            9,
        )
        .unwrap();
        assert_eq!(def.delivery, geohook_hooks::Delivery::Live(9));
        assert!(!def.filter.distance());
        let near = "NEARBY fleet FENCE DISTANCE DETECT enter POINT 33 -112 500";
        assert!(live_fence(&db, &args(near), 0, 9)
            .unwrap()
            .filter
            .distance());
        assert!(def.name.is_empty() && def.key == "fleet");
        assert!(crate::cmd::hooks::is_live_fence(&args(
            "WITHIN k fence BOUNDS 1 2 3 4"
        )));
        assert!(!crate::cmd::hooks::is_live_fence(&args(
            "WITHIN k BOUNDS 1 2 3 4"
        )));
        // Tile38's fence options parse into the definition.
        let within = "WITHIN fleet FENCE DISTANCE BOUNDS 33 -112 34 -111";
        assert!(live_fence(&db, &args(within), 0, 9)
            .unwrap()
            .filter
            .distance());
        let filtered = "NEARBY fleet MATCH t* FENCE WHERE speed 0 10 NOFIELDS POINT 33 -112 500";
        let d = live_fence(&db, &args(filtered), 0, 9).unwrap();
        assert_eq!(d.options.matches, ["t*"]);
        assert!(d.options.test.is_some() && d.options.nofields);
        let roam = live_fence(
            &db,
            &args("NEARBY fleet FENCE NODWELL ROAM people p* 100"),
            0,
            9,
        )
        .unwrap()
        .options
        .roam
        .expect("a roam fence");
        assert_eq!((roam.key.as_str(), roam.pattern.as_str()), ("people", "p*"));
        assert!(roam.meters == 100.0 && roam.nodwell);
        // Tile38's fence outputs and ROAM … SCAN are taken.
        for line in [
            "NEARBY fleet FENCE ROAM fleet * 100 SCAN *",
            "NEARBY fleet FENCE IDS POINT 33 -112 500",
        ] {
            assert!(live_fence(&db, &args(line), 0, 9).is_ok(), "{line}");
        }
        for line in [
            "NEARBY fleet FENCE ROAM fleet * 100 SCAN",
            "WITHIN fleet FENCE ROAM fleet * 100",
            "NEARBY fleet FENCE ROAM fleet * -1",
            "NEARBY fleet FENCE WHEREIN speed 3 1 POINT",
            "NEARBY fleet POINT 33 -112 500",
        ] {
            assert!(live_fence(&db, &args(line), 0, 9).is_err(), "{line}");
        }
    }

    #[test]
    fn subscription_commands_are_recognised_in_any_case() {
        let args = |w: &str| vec![w.as_bytes().to_vec(), b"x".to_vec()];
        assert_eq!(SubCmd::of(&args("PSUBSCRIBE")), Some(SubCmd::Psubscribe));
        assert_eq!(SubCmd::of(&args("unsubscribe")), Some(SubCmd::Unsubscribe));
        assert_eq!(SubCmd::of(&args("publish")), None);
        assert!(SubCmd::Punsubscribe.pattern() && SubCmd::Punsubscribe.removes());
        assert_eq!(SubCmd::Subscribe.spec().cmd, Cmd::Subscribe);
    }
}
