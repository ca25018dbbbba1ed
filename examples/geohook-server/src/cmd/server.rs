//! Commands about the server process: `SERVER`, `INFO [section]`, `GC`,
//! `AOFSHRINK` and `READONLY yes|no`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::cmd::args::lower;
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::spec::Cmd;
use crate::repl::status::server_fields;
use crate::settings::parse_yes_no;
use crate::state::Shared;
use geohook_resp::Reply;

/// `GC`: asks jemalloc to return the unused dirty pages of every arena to
/// the system now, instead of on its own decay schedule.
pub(crate) fn gc(ctx: &Ctx) -> Reply {
    crate::metrics::purge_jemalloc();
    ctx.ok()
}

/// `AOFSHRINK`: like Tile38, replies at once and shrinks in the background;
/// a request while one runs is coalesced by the compactor.
///
/// # Errors
///
/// The compactor is not running.
pub(crate) fn aofshrink(shared: &Shared, ctx: &Ctx) -> Result<Reply, CmdError> {
    let Some(h) = shared.compactor.get().cloned() else {
        return Err(CmdError::Msg("aof shrink is not available".into()));
    };
    tokio::spawn(async move {
        if let Err(e) = h.compact_now().await {
            tracing::warn!(error = %e, "AOFSHRINK request failed");
        }
    });
    Ok(ctx.ok())
}

/// `READONLY yes|no`.
///
/// # Errors
///
/// Neither yes nor no.
pub(crate) fn readonly(shared: &Shared, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let v = parse_yes_no(&lower(&args[1])).ok_or_else(|| CmdError::invalid(&args[1]))?;
    shared.readonly.store(v, Ordering::Relaxed);
    Ok(ctx.ok())
}

/// Runs `SERVER` or `INFO [section]`.
///
/// # Errors
///
/// Wrong arity.
pub(crate) fn server_info(
    shared: &Shared,
    ctx: &Ctx,
    cmd: Cmd,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    if args.len() > 2 {
        return Err(CmdError::Arity(if cmd == Cmd::Server {
            "server"
        } else {
            "info"
        }));
    }
    let (aof_size, offset, totals) = {
        let core = shared.core.read();
        (
            core.aof.size(),
            core.aof.offset(),
            core.db.totals(ctx.now()),
        )
    };
    let (allocated, resident) = crate::metrics::jemalloc_stats().unwrap_or((0, 0));
    let status = shared.compactor.get().map(|h| h.status());
    let in_progress = shared.shrinking.load(Ordering::Relaxed);
    let settings = shared.settings.read().clone();
    let mem = shared.memwatch.get().map(|w| w.metrics());
    let last_shrink = *shared.last_shrink.lock();
    let stats: Vec<(&str, String)> = vec![
        ("id", format!("{:016x}", std::process::id())),
        ("pid", std::process::id().to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        (
            "uptime_in_seconds",
            shared.started.elapsed().as_secs().to_string(),
        ),
        ("tcp_addr", shared.opts.listen.clone()),
        ("read_only", shared.is_readonly().to_string()),
        ("aof_size", aof_size.to_string()),
        ("aof_offset", offset.to_string()),
        ("aof_rewrite_in_progress", (in_progress as u8).to_string()),
        (
            "aof_rewrites",
            status.as_ref().map(|s| s.runs).unwrap_or(0).to_string(),
        ),
        (
            "aof_last_rewrite_time_sec",
            status
                .as_ref()
                .and_then(|s| s.last_duration)
                .map(|d| format!("{:.3}", d.as_secs_f64()))
                .unwrap_or("-1".into()),
        ),
        (
            "aofshrink_min_size",
            settings.aofshrink_min_size.to_string(),
        ),
        (
            "aof_last_shrink_start_offset",
            last_shrink.map(|l| l.0 as i64).unwrap_or(-1).to_string(),
        ),
        (
            "aof_last_shrink_size",
            last_shrink.map(|l| l.1 as i64).unwrap_or(-1).to_string(),
        ),
        ("appendfsync", shared.opts.fsync.as_str().to_string()),
        ("num_collections", totals.num_collections.to_string()),
        ("num_objects", totals.totals.num_objects.to_string()),
        ("num_points", totals.totals.num_points.to_string()),
        ("num_strings", totals.totals.num_strings.to_string()),
        ("in_memory_size", totals.totals.in_memory_size.to_string()),
        ("heap_size", allocated.to_string()),
        ("heap_resident", resident.to_string()),
        (
            "connected_clients",
            shared.metrics.connected_clients.get().to_string(),
        ),
        (
            "total_commands_processed",
            shared.commands_run.load(Ordering::Relaxed).to_string(),
        ),
        ("expired_keys", shared.metrics.expired.get().to_string()),
        (
            "memwatch_level",
            mem.as_ref()
                .map(|m| m.level.as_str())
                .unwrap_or("off")
                .to_string(),
        ),
        (
            "memwatch_headroom_bytes",
            mem.as_ref()
                .and_then(|m| m.headroom_bytes)
                .map(|h| h.to_string())
                .unwrap_or("-1".into()),
        ),
    ];
    let mut stats = stats;
    stats.extend(server_fields(shared));
    if cmd == Cmd::Server {
        if ctx.json {
            let body: Vec<String> = stats
                .iter()
                .map(|(k, v)| {
                    // Everything but these few is a number or a boolean.
                    let val = if matches!(
                        *k,
                        "id" | "version"
                            | "tcp_addr"
                            | "appendfsync"
                            | "memwatch_level"
                            | "role"
                            | "following"
                            | "replid"
                    ) {
                        serde_json::Value::from(v.as_str()).to_string()
                    } else {
                        v.clone()
                    };
                    format!("\"{k}\":{val}")
                })
                .collect();
            return Ok(ctx.ok_json(&format!(",\"stats\":{{{}}}", body.join(","))));
        }
        return Ok(Reply::Map(
            stats
                .into_iter()
                .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
                .collect(),
        ));
    }
    // INFO: Redis's text layout, so that Redis tools can read it.
    let section = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
    let get = |k: &str| {
        stats
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let sections: [(&str, Vec<(&str, String)>); 5] = [
        (
            "server",
            vec![
                ("tile38_version", get("version")),
                ("process_id", get("pid")),
                ("uptime_in_seconds", get("uptime_in_seconds")),
                ("tcp_addr", get("tcp_addr")),
            ],
        ),
        (
            "clients",
            vec![("connected_clients", get("connected_clients"))],
        ),
        (
            "memory",
            vec![
                ("used_memory", get("heap_size")),
                ("used_memory_rss", get("heap_resident")),
                ("memwatch_level", get("memwatch_level")),
                ("memwatch_headroom_bytes", get("memwatch_headroom_bytes")),
            ],
        ),
        (
            "persistence",
            vec![
                ("aof_enabled", "1".into()),
                ("aof_rewrite_in_progress", get("aof_rewrite_in_progress")),
                ("aof_rewrites", get("aof_rewrites")),
                (
                    "aof_last_rewrite_time_sec",
                    get("aof_last_rewrite_time_sec"),
                ),
                ("aof_current_size", get("aof_size")),
                ("aof_offset", get("aof_offset")),
                ("aofshrink_min_size", get("aofshrink_min_size")),
            ],
        ),
        (
            "stats",
            vec![
                ("total_commands_processed", get("total_commands_processed")),
                ("expired_keys", get("expired_keys")),
                ("num_collections", get("num_collections")),
                ("num_objects", get("num_objects")),
            ],
        ),
    ];
    let wanted = |n: &str| {
        section
            .as_deref()
            .is_none_or(|s| s == "all" || s == "default" || s == n)
    };
    if ctx.json {
        let mut parts = Vec::new();
        for (n, kv) in &sections {
            if wanted(n) {
                for (k, v) in kv {
                    parts.push(format!(
                        "{}:{}",
                        serde_json::Value::from(*k),
                        serde_json::Value::from(v.as_str())
                    ));
                }
            }
        }
        return Ok(ctx.ok_json(&format!(",\"info\":{{{}}}", parts.join(","))));
    }
    let mut text = String::new();
    for (n, kv) in &sections {
        if wanted(n) {
            let mut title = n.to_string();
            title[..1].make_ascii_uppercase();
            let _ = write!(text, "# {title}\r\n");
            for (k, v) in kv {
                let _ = write!(text, "{k}:{v}\r\n");
            }
            text.push_str("\r\n");
        }
    }
    Ok(Reply::bulk(text))
}
