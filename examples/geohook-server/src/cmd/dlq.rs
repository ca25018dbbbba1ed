//! Dead letters: `HOOKDLQ name` lists the events of a hook that outlived
//! their time-to-live or used up their attempts, oldest first, and
//! `REDELIVER name` queues them again, ahead of the hook's queued events
//! and in event-id order, each with a fresh time-to-live.
//!
//! Neither is logged: dead letters live in the hook journal, not in the
//! append-only file, and only the leader holds them.

use geohook_resp::Reply;

use crate::cmd::args::text;
use crate::cmd::ctx::{json_str, CmdError, Ctx};
use crate::hooks::engine::HookEngine;

fn unknown(name: &str) -> CmdError {
    CmdError::Msg(format!("hook not found: {name}"))
}

/// `HOOKDLQ name`: each dead letter as `[event_id, reason, time_ms, event]`
/// in RESP, or `{"event_id","reason","time_ms","event"}` in JSON.
///
/// # Errors
///
/// An unknown hook, or a name that is not UTF-8.
pub(crate) fn list(engine: &HookEngine, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let name = text(&args[1])?;
    let dead = engine
        .hooks
        .outbox()
        .dead_letters(name)
        .ok_or_else(|| unknown(name))?;
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(if ctx.json {
        let mut body = format!(",\"hook\":{},\"dead_letters\":[", json_str(name));
        for (n, d) in dead.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                "{{\"event_id\":{},\"reason\":\"{}\",\"time_ms\":{},\"event\":",
                d.id,
                d.reason.as_str(),
                d.at_ms
            ));
            // The event is JSON the server built itself.
            body.push_str(&String::from_utf8_lossy(&d.payload.body));
            body.push('}');
        }
        body.push(']');
        ctx.ok_json(&body)
    } else {
        Reply::Array(
            dead.iter()
                .map(|d| {
                    Reply::Array(vec![
                        Reply::Int(int(d.id)),
                        Reply::bulk(d.reason.as_str()),
                        Reply::Int(int(d.at_ms)),
                        Reply::Bulk(d.payload.body.to_vec()),
                    ])
                })
                .collect(),
        )
    })
}

/// `REDELIVER name`: how many dead letters were queued again.
///
/// # Errors
///
/// An unknown hook, or this node follows a leader.
pub(crate) fn redeliver(
    engine: &HookEngine,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let name = text(&args[1])?;
    match engine.hooks.outbox().redeliver(name) {
        Ok(Some(n)) if ctx.json => Ok(ctx.ok_json(&format!(",\"redelivered\":{n}"))),
        Ok(Some(n)) => Ok(Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))),
        Ok(None) => Err(unknown(name)),
        Err(_) => Err(CmdError::NotLeader),
    }
}
