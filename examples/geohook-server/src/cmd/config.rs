//! `CONFIG GET pattern`, `CONFIG SET name [value]` and `CONFIG REWRITE`,
//! over the run-time [`Settings`](crate::settings::Settings).

use aof_compactor::bytesize::ByteSize;

use crate::cmd::args::lower;
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::hookconf;
use crate::settings::PROPERTIES;
use crate::state::Shared;
use geohook_resp::Reply;

/// Runs a CONFIG sub-command.
///
/// # Errors
///
/// Arity, an unknown sub-command or property, a bad value, or a failed
/// rewrite.
pub(crate) fn config(shared: &Shared, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    match lower(&args[1]).as_str() {
        "get" => {
            let [_, _, pattern] = args else {
                return Err(CmdError::Arity("config get"));
            };
            get(shared, ctx, &lower_string(pattern))
        }
        "set" => {
            let (name, value) = match args {
                [_, _, name] => (lower_string(name), String::new()),
                [_, _, name, value] => (
                    lower_string(name),
                    String::from_utf8_lossy(value).into_owned(),
                ),
                _ => return Err(CmdError::Arity("config set")),
            };
            if name.starts_with("hook-") {
                hookconf::set(shared, &name, &value)?;
                return Ok(ctx.ok());
            }
            shared.settings.write().set(&name, &value)?;
            if name.starts_with("aofshrink") {
                apply_shrink_settings(shared)?;
            }
            Ok(ctx.ok())
        }
        "rewrite" => {
            if args.len() != 2 {
                return Err(CmdError::Arity("config rewrite"));
            }
            let s = shared.settings.read().clone();
            // The hooks' properties are stored beside the others.
            hookconf::rewrite(shared, &s, &shared.opts.dir)
                .map_err(|e| CmdError::Msg(format!("config rewrite failed: {e}")))?;
            Ok(ctx.ok())
        }
        sub => Err(CmdError::Msg(format!("unknown CONFIG subcommand '{sub}'"))),
    }
}

fn lower_string(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn get(shared: &Shared, ctx: &Ctx, pattern: &str) -> Result<Reply, CmdError> {
    // Redis's glob syntax, matched in time linear in the name.
    let glob = geohook_db::Glob::with_classes(pattern);
    let s = shared.settings.read();
    let mut props: Vec<(&str, String)> = PROPERTIES
        .iter()
        .filter(|p| glob.is_match(p))
        .filter_map(|p| s.get(p).map(|v| (*p, v)))
        .collect();
    props.extend(
        hookconf::PROPERTIES
            .iter()
            .filter(|p| glob.is_match(p))
            .filter_map(|p| hookconf::get(shared, p).map(|v| (*p, v))),
    );
    if ctx.json {
        let map: serde_json::Map<String, serde_json::Value> = props
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        return Ok(ctx.ok_json(&format!(
            ",\"properties\":{}",
            serde_json::Value::Object(map)
        )));
    }
    Ok(Reply::Map(
        props
            .into_iter()
            .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
            .collect(),
    ))
}

/// Hands changed `aofshrink-*` settings to the running compactor.
fn apply_shrink_settings(shared: &Shared) -> Result<(), CmdError> {
    let Some(h) = shared.compactor.get() else {
        return Ok(());
    };
    let s = shared.settings.read().clone();
    h.update(|c| {
        c.min_size = ByteSize(s.aofshrink_min_size);
        c.growth_percent = s.growth_percent();
    })
    .map_err(|e| CmdError::Msg(e.to_string()))
}
