//! Replication commands: `FOLLOW host port | no one`, `ROLE` and `HEALTHZ`.

use std::sync::Arc;

use crate::cmd::ctx::{CmdError, Ctx};
use crate::repl::control::follow_command;
use crate::repl::status::{healthz, server_fields};
use crate::state::Shared;
use geohook_resp::Reply;

/// `FOLLOW host port` or `FOLLOW no one`.
///
/// # Errors
///
/// A bad port, or replication not started.
pub(crate) fn follow(shared: &Arc<Shared>, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    follow_command(shared, args)?;
    Ok(ctx.ok())
}

/// `HEALTHZ`: fails on a follower that is behind its leader.
///
/// # Errors
///
/// `catching up to leader`.
pub(crate) fn health(shared: &Shared, ctx: &Ctx) -> Result<Reply, CmdError> {
    healthz(shared)?;
    Ok(ctx.ok())
}

/// `ROLE`: the node's replication state as field/value pairs (a JSON object
/// under `role` in JSON mode).
pub(crate) fn role(shared: &Shared, ctx: &Ctx) -> Reply {
    let fields = server_fields(shared);
    if ctx.json {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        return ctx.ok_json(&format!(",\"role\":{}", serde_json::Value::Object(map)));
    }
    Reply::Array(
        fields
            .into_iter()
            .flat_map(|(k, v)| [Reply::bulk(k), Reply::bulk(v)])
            .collect(),
    )
}
