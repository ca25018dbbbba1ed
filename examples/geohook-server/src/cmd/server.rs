//! Commands about the server process: `SERVER [EXT]`, `INFO [section …]`,
//! `GC`, `AOFSHRINK` and `READONLY yes|no`.
//!
//! SERVER and INFO carry Tile38's keys with Tile38's types (numbers are
//! numbers in JSON); in RESP they add this server's own figures (the log's
//! offset, the shrinks, memwatch, replication), while JSON, which Tile38's
//! client libraries read into fixed records, carries Tile38's keys only.
//! Where Tile38 reports a Go runtime
//! figure, the nearest honest figure of this process stands in: jemalloc's
//! statistics for the heap, the kernel's for threads and CPU time, and 0
//! where Rust has no counterpart (the README lists which is which).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::cmd::args::lower;
use crate::cmd::ctx::{CmdError, Ctx};
use crate::repl::status::{role, server_fields, Role};
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
    // The settings lock orders concurrent READONLYs, so that the file ends
    // with the last one's value.
    let mut settings = shared.settings.write();
    if settings.read_only != v {
        // Kept in the config file at once, as Tile38 does, so that a
        // restart comes back in the same mode.
        crate::settings::store(&shared.opts.dir, "read_only", v.into())
            .map_err(|e| CmdError::Msg(format!("readonly not saved: {e}")))?;
        settings.read_only = v;
    }
    shared.readonly.store(v, Ordering::Relaxed);
    Ok(ctx.ok())
}

/// One statistic's value, typed as Tile38 types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stat {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Stat {
    fn uint(v: u64) -> Stat {
        Stat::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Stat::Int(v) => (*v).into(),
            Stat::Float(v) => (*v).into(),
            Stat::Bool(v) => (*v).into(),
            Stat::Str(v) => v.as_str().into(),
        }
    }

    /// Go's `%v`, which is how Tile38 writes a statistic in RESP.
    fn text(&self) -> String {
        match self {
            Stat::Int(v) => v.to_string(),
            Stat::Float(v) => v.to_string(),
            Stat::Bool(v) => v.to_string(),
            Stat::Str(v) => v.clone(),
        }
    }
}

/// jemalloc's figures, refreshed: allocated, active, resident, mapped,
/// retained and metadata bytes (zeros if jemalloc cannot be read).
#[derive(Debug, Default, Clone, Copy)]
struct Heap {
    allocated: u64,
    active: u64,
    resident: u64,
    mapped: u64,
    retained: u64,
    metadata: u64,
}

fn heap() -> Heap {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return Heap::default();
    }
    let r = |v: Result<usize, tikv_jemalloc_ctl::Error>| v.map_or(0, |v| v as u64);
    Heap {
        allocated: r(stats::allocated::read()),
        active: r(stats::active::read()),
        resident: r(stats::resident::read()),
        mapped: r(stats::mapped::read()),
        retained: r(stats::retained::read()),
        metadata: r(stats::metadata::read()),
    }
}

/// The process's OS threads, from `/proc/self/status` (0 where there is
/// none).
fn threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// System and user CPU seconds of `who` (`RUSAGE_SELF` or
/// `RUSAGE_CHILDREN`).
fn cpu_times(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage writes one plain struct that we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_stime), secs(u.ru_utime))
}

/// The figures SERVER, SERVER EXT and INFO are built from, read once.
struct Figures {
    heap: Heap,
    aof_size: u64,
    offset: u64,
    num_collections: u64,
    num_objects: u64,
    num_points: u64,
    num_strings: u64,
    in_memory_size: u64,
    num_hooks: u64,
    pending_events: u64,
    repl: Vec<(&'static str, String)>,
    follower: Option<(String, u16)>,
    /// The attached followers' addresses, on a leader.
    followers: Vec<String>,
    /// The followers that announced a port (REPLCONF), by their announced
    /// address or else their connection's, as ROLE lists them.
    announced: Vec<(String, u16)>,
    rewriting: bool,
    rewrites: u64,
    last_rewrite: Option<std::time::Duration>,
    maxmemory: u64,
    replica_priority: i64,
}

fn figures(shared: &Shared, ctx: &Ctx) -> Figures {
    let (aof_size, offset, totals) = {
        let core = shared.core.read();
        (
            core.aof.size(),
            core.aof.offset(),
            core.db.totals(ctx.now()),
        )
    };
    let hooks = shared.hooks.get().map(|h| h.hooks.metrics());
    let status = shared.compactor.get().map(|h| h.status());
    let settings = shared.settings.read();
    let follower = (!settings.follow_host.is_empty())
        .then(|| (settings.follow_host.clone(), settings.follow_port));
    let followers = shared
        .repl
        .get()
        .and_then(|r| r.leader.lock().clone())
        .map(|l| l.stats().followers.into_iter().map(|f| f.peer).collect())
        .unwrap_or_default();
    let announced = match role(shared) {
        Role::Master { followers, .. } => followers
            .into_iter()
            .map(|(ip, port, _)| (ip, port))
            .collect(),
        Role::Slave { .. } => Vec::new(),
    };
    Figures {
        heap: heap(),
        aof_size,
        offset,
        num_collections: totals.num_collections as u64,
        num_objects: totals.totals.num_objects as u64,
        num_points: totals.totals.num_points as u64,
        num_strings: totals.totals.num_strings as u64,
        in_memory_size: totals.totals.in_memory_size as u64,
        num_hooks: hooks.as_ref().map_or(0, |m| m.hooks),
        pending_events: hooks.as_ref().map_or(0, |m| m.queued_messages),
        repl: server_fields(shared),
        follower,
        followers,
        announced,
        rewriting: shared.shrinking.load(Ordering::Relaxed),
        rewrites: status.as_ref().map_or(0, |s| s.runs),
        last_rewrite: status.as_ref().and_then(|s| s.last_duration),
        maxmemory: settings.maxmemory,
        replica_priority: settings.replica_priority,
    }
}

fn server_id(shared: &Shared) -> String {
    shared.settings.read().server_id.clone()
}

/// SERVER's statistics: Tile38's basic set (with a follower's `following`,
/// `caught_up` and `caught_up_once`).
fn basic(shared: &Shared, f: &Figures) -> Vec<(&'static str, Stat)> {
    let avg = f.heap.allocated.checked_div(f.num_points).unwrap_or(0);
    let mut m = vec![
        ("id", Stat::Str(server_id(shared))),
        ("http_transport", Stat::Bool(false)),
        ("pid", Stat::Int(i64::from(std::process::id()))),
        ("aof_size", Stat::uint(f.aof_size)),
        ("num_collections", Stat::uint(f.num_collections)),
        ("num_hooks", Stat::uint(f.num_hooks)),
        ("in_memory_size", Stat::uint(f.in_memory_size)),
        ("num_points", Stat::uint(f.num_points)),
        ("num_objects", Stat::uint(f.num_objects)),
        ("num_strings", Stat::uint(f.num_strings)),
        ("mem_alloc", Stat::uint(f.heap.allocated)),
        ("heap_size", Stat::uint(f.heap.allocated)),
        ("heap_released", Stat::uint(f.heap.retained)),
        ("max_heap_size", Stat::uint(f.maxmemory)),
        ("avg_item_size", Stat::uint(avg)),
        ("version", Stat::Str(env!("CARGO_PKG_VERSION").into())),
        (
            "pointer_size",
            Stat::uint(std::mem::size_of::<usize>() as u64),
        ),
        ("read_only", Stat::Bool(shared.is_readonly())),
        ("cpus", Stat::uint(cpus())),
        ("threads", Stat::Float(threads() as f64)),
        ("pending_events", Stat::uint(f.pending_events)),
    ];
    // Tile38 shows where a follower follows and whether it caught up, and
    // nothing of the kind on a leader.
    if f.follower.is_some() {
        for (k, v) in &f.repl {
            let stat = match *k {
                "caught_up" | "caught_up_once" => Stat::Bool(v == "true"),
                "following" => Stat::Str(v.clone()),
                _ => continue,
            };
            m.push((k, stat));
        }
    }
    m
}

/// SERVER's figures of this server's own (the log's offset, the shrinks,
/// memwatch, replication), which Tile38 does not have.
fn own(shared: &Shared, f: &Figures) -> Vec<(&'static str, Stat)> {
    let mut m = vec![
        (
            "uptime",
            Stat::Float(shared.started.elapsed().as_secs_f64()),
        ),
        (
            "uptime_in_seconds",
            Stat::uint(shared.started.elapsed().as_secs()),
        ),
        ("tcp_addr", Stat::Str(shared.opts.listen.clone())),
        ("aof_offset", Stat::uint(f.offset)),
        ("aof_rewrite_in_progress", Stat::Int(i64::from(f.rewriting))),
        ("aof_rewrites", Stat::uint(f.rewrites)),
        (
            "aof_last_rewrite_time_sec",
            Stat::Str(
                f.last_rewrite
                    .map(|d| format!("{:.3}", d.as_secs_f64()))
                    .unwrap_or("-1".into()),
            ),
        ),
        ("appendfsync", Stat::Str(shared.opts.fsync.as_str().into())),
        ("heap_resident", Stat::uint(f.heap.resident)),
        (
            "connected_clients",
            Stat::Int(shared.metrics.connected_clients.get()),
        ),
        (
            "total_commands_processed",
            Stat::uint(shared.metrics.commands_run.load(Ordering::Relaxed)),
        ),
        ("expired_keys", Stat::uint(shared.metrics.expired.get())),
    ];
    let settings = shared.settings.read().clone();
    m.push((
        "aofshrink_min_size",
        Stat::uint(settings.aofshrink_min_size),
    ));
    let last_shrink = *shared.last_shrink.lock();
    m.push((
        "aof_last_shrink_start_offset",
        Stat::Int(last_shrink.map_or(-1, |l| l.0 as i64)),
    ));
    m.push((
        "aof_last_shrink_size",
        Stat::Int(last_shrink.map_or(-1, |l| l.1 as i64)),
    ));
    let mem = shared.memwatch.get().map(|w| w.metrics());
    m.push((
        "memwatch_level",
        Stat::Str(mem.as_ref().map_or("off", |m| m.level.as_str()).into()),
    ));
    m.push((
        "memwatch_headroom_bytes",
        Stat::Int(
            mem.as_ref()
                .and_then(|m| m.headroom_bytes)
                .map_or(-1, |h| i64::try_from(h).unwrap_or(i64::MAX)),
        ),
    ));
    for (k, v) in &f.repl {
        let stat = match *k {
            "following" | "caught_up" | "caught_up_once" => continue,
            "role" | "replid" => Stat::Str(v.clone()),
            _ => v.parse().map_or_else(|_| Stat::Str(v.clone()), Stat::Int),
        };
        m.push((k, stat));
    }
    m
}

/// SERVER EXT: every field Tile38 returns, with this process's nearest
/// figure where Go's runtime has one (see the README's list).
fn ext(shared: &Shared, f: &Figures) -> Vec<(&'static str, Stat)> {
    let h = f.heap;
    let tasks =
        tokio::runtime::Handle::try_current().map_or(0, |r| r.metrics().num_alive_tasks() as u64);
    let threads = threads() as f64;
    let avg = h.allocated.checked_div(f.num_points).unwrap_or(0);
    let u = Stat::uint;
    vec![
        ("go_goroutines", u(tasks)),
        ("go_threads", Stat::Float(threads)),
        ("go_version", Stat::Str(String::new())),
        ("alloc_bytes", u(h.allocated)),
        ("alloc_bytes_total", u(0)),
        ("sys_cpus", u(cpus())),
        ("sys_bytes", u(h.mapped)),
        ("lookups_total", u(0)),
        ("mallocs_total", u(0)),
        ("frees_total", u(0)),
        ("heap_alloc_bytes", u(h.allocated)),
        ("heap_sys_bytes", u(h.mapped)),
        ("heap_idle_bytes", u(h.mapped.saturating_sub(h.active))),
        ("heap_inuse_bytes", u(h.active)),
        ("heap_released_bytes", u(h.retained)),
        ("heap_objects", u(0)),
        ("stack_inuse_bytes", u(0)),
        ("stack_sys_bytes", u(0)),
        ("mspan_inuse_bytes", u(0)),
        ("mspan_sys_bytes", u(0)),
        ("mcache_inuse_bytes", u(0)),
        ("mcache_sys_bytes", u(0)),
        ("buck_hash_sys_bytes", u(0)),
        ("gc_sys_bytes", u(h.metadata)),
        ("other_sys_bytes", u(0)),
        ("next_gc_bytes", u(0)),
        ("last_gc_time_seconds", Stat::Float(0.0)),
        ("gc_cpu_fraction", Stat::Float(0.0)),
        ("tile38_id", Stat::Str(server_id(shared))),
        ("tile38_pid", Stat::Int(i64::from(std::process::id()))),
        (
            "tile38_version",
            Stat::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        ("tile38_max_heap_size", u(f.maxmemory)),
        (
            "tile38_type",
            Stat::Str(
                if f.follower.is_some() {
                    "follower"
                } else {
                    "leader"
                }
                .into(),
            ),
        ),
        ("tile38_read_only", Stat::Bool(shared.is_readonly())),
        (
            "tile38_pointer_size",
            u(std::mem::size_of::<usize>() as u64),
        ),
        (
            "tile38_uptime_in_seconds",
            Stat::Float(shared.started.elapsed().as_secs_f64()),
        ),
        (
            "tile38_connected_clients",
            Stat::Int(shared.metrics.connected_clients.get()),
        ),
        ("tile38_cluster_enabled", Stat::Bool(false)),
        ("tile38_aof_enabled", Stat::Bool(true)),
        ("tile38_aof_rewrite_in_progress", Stat::Bool(f.rewriting)),
        (
            "tile38_aof_last_rewrite_time_sec",
            u(f.last_rewrite.map_or(0, |d| d.as_secs())),
        ),
        ("tile38_aof_current_rewrite_time_sec", u(0)),
        ("tile38_aof_size", u(f.aof_size)),
        ("tile38_http_transport", Stat::Bool(false)),
        (
            "tile38_total_connections_received",
            u(shared.metrics.connections_received.get()),
        ),
        (
            "tile38_total_commands_processed",
            u(shared.metrics.commands_run.load(Ordering::Relaxed)),
        ),
        ("tile38_total_messages_sent", u(0)),
        ("tile38_expired_keys", u(shared.metrics.expired.get())),
        ("tile38_connected_slaves", u(f.followers.len() as u64)),
        ("tile38_num_points", u(f.num_points)),
        ("tile38_num_objects", u(f.num_objects)),
        ("tile38_num_strings", u(f.num_strings)),
        ("tile38_num_collections", u(f.num_collections)),
        ("tile38_num_hooks", u(f.num_hooks)),
        ("tile38_num_hook_groups", u(0)),
        ("tile38_num_object_groups", u(0)),
        ("tile38_avg_point_size", u(avg)),
        ("tile38_in_memory_size", u(f.in_memory_size)),
    ]
}

/// A statistics map, sorted by key as Tile38 sorts it: a flat RESP array
/// (a map in RESP3) of text values, or a JSON object of typed values.
fn stats_reply(ctx: &Ctx, mut m: Vec<(&'static str, Stat)>) -> Reply {
    m.sort_by(|a, b| a.0.cmp(b.0));
    if ctx.json {
        let obj: serde_json::Map<String, serde_json::Value> =
            m.iter().map(|(k, v)| (k.to_string(), v.json())).collect();
        return ctx.ok_json(&format!(",\"stats\":{}", serde_json::Value::Object(obj)));
    }
    Reply::Map(
        m.into_iter()
            .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v.text())))
            .collect(),
    )
}

/// `SERVER [EXT]`.
///
/// # Errors
///
/// An argument other than `EXT`.
pub(crate) fn server(shared: &Shared, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let mut extended = false;
    for a in &args[1..] {
        if lower(a) != "ext" {
            return Err(CmdError::invalid(a));
        }
        extended = true;
    }
    let f = figures(shared, ctx);
    if extended {
        return Ok(stats_reply(ctx, ext(shared, &f)));
    }
    let mut m = basic(shared, &f);
    // Tile38's clients read the JSON output into records of Tile38's keys
    // (tile38-ts compares the whole object), so JSON gets exactly those; the
    // RESP listing, which operators and this server's tools read, adds the
    // server's own figures.
    if !ctx.json {
        m.extend(own(shared, &f));
    }
    Ok(stats_reply(ctx, m))
}

/// INFO's sections in Tile38's order.
const SECTIONS: [&str; 9] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
];

/// The text of one INFO section: Tile38's lines, then, when `own`, this
/// server's own.
fn section(shared: &Shared, f: &Figures, name: &str, own: bool) -> String {
    let mut w = String::new();
    let version = env!("CARGO_PKG_VERSION");
    let uptime = shared.started.elapsed().as_secs();
    let clients = shared.metrics.connected_clients.get();
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(w, "{k}:{v}\r\n");
    };
    match name {
        "server" => {
            line("tile38_version", &version);
            line("redis_version", &version);
            line("uptime_in_seconds", &uptime);
        }
        "clients" => line("connected_clients", &clients),
        "memory" => line("used_memory", &f.heap.allocated),
        "persistence" => {
            line("aof_enabled", &1);
            line("aof_rewrite_in_progress", &u8::from(f.rewriting));
            line(
                "aof_last_rewrite_time_sec",
                &f.last_rewrite.map_or(0, |d| d.as_secs()),
            );
            line("aof_current_rewrite_time_sec", &0);
        }
        "stats" => {
            line(
                "total_connections_received",
                &shared.metrics.connections_received.get(),
            );
            line(
                "total_commands_processed",
                &shared.metrics.commands_run.load(Ordering::Relaxed),
            );
            line("total_messages_sent", &0);
            line("expired_keys", &shared.metrics.expired.get());
        }
        "replication" => {
            match &f.follower {
                Some((host, port)) => {
                    line("role", &"slave");
                    line("master_host", host);
                    line("master_port", port);
                    line("slave_repl_offset", &f.offset);
                    if f.replica_priority >= 0 {
                        line("slave_priority", &f.replica_priority);
                    }
                }
                None => {
                    line("role", &"master");
                    // Tile38 lists the followers that announced their port,
                    // and counts every link.
                    for (i, (ip, port)) in f.announced.iter().enumerate() {
                        line(
                            &format!("slave{i}"),
                            &format!("ip={ip},port={port},state=online"),
                        );
                    }
                }
            }
            line("connected_slaves", &f.followers.len());
        }
        "cpu" => {
            // Tile38 writes whole seconds (its microseconds are divided away
            // before the sum) with two decimals, and its clients read these
            // values as integers (pyle38's model refuses 0.02), so the
            // fraction is dropped here too.
            let (sys, user) = cpu_times(libc::RUSAGE_SELF);
            let (csys, cuser) = cpu_times(libc::RUSAGE_CHILDREN);
            line("used_cpu_sys", &format!("{:.2}", sys.trunc()));
            line("used_cpu_user", &format!("{:.2}", user.trunc()));
            line("used_cpu_sys_children", &format!("{:.2}", csys.trunc()));
            line("used_cpu_user_children", &format!("{:.2}", cuser.trunc()));
        }
        "cluster" => line("cluster_enabled", &0),
        _ => {}
    }
    if !own {
        return w;
    }
    match name {
        "server" => {
            line("process_id", &std::process::id());
            line("tcp_addr", &shared.opts.listen);
        }
        "memory" => {
            line("used_memory_rss", &f.heap.resident);
            let mem = shared.memwatch.get().map(|w| w.metrics());
            line(
                "memwatch_level",
                &mem.as_ref().map_or("off", |m| m.level.as_str()),
            );
            line(
                "memwatch_headroom_bytes",
                &mem.as_ref()
                    .and_then(|m| m.headroom_bytes)
                    .map_or(-1, |h| i64::try_from(h).unwrap_or(i64::MAX)),
            );
        }
        "persistence" => {
            line("aof_rewrites", &f.rewrites);
            line("aof_current_size", &f.aof_size);
            line("aof_offset", &f.offset);
            line(
                "aofshrink_min_size",
                &shared.settings.read().aofshrink_min_size,
            );
        }
        "stats" => {
            line("num_collections", &f.num_collections);
            line("num_objects", &f.num_objects);
        }
        _ => {}
    }
    w
}

/// Go's `strconv` readings Tile38's INFO applies to each JSON value: an
/// integer, else a float, else a boolean, else the text.
pub(crate) fn typed(v: &str) -> serde_json::Value {
    if let Ok(i) = v.parse::<i64>() {
        return i.into();
    }
    if let Some(f) = v
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && !v.contains(char::is_alphabetic))
    {
        // Go's JSON encoder writes a float with no fraction as an integer
        // (`1.00` reads back as `1`), and clients type such fields so.
        if f.fract() == 0.0 && f.abs() < 1e15 {
            return (f as i64).into();
        }
        return f.into();
    }
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => true.into(),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => false.into(),
        _ => v.into(),
    }
}

/// `INFO [section …]`: Redis's text layout (so that Redis tools read it),
/// or in JSON one object of every `key:value` line with typed values.
///
/// # Errors
///
/// None beyond the dispatcher's; an unknown section is left out, as in
/// Tile38.
pub(crate) fn info(shared: &Shared, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let mut wanted = [args.len() == 1; SECTIONS.len()];
    for a in &args[1..] {
        let name = lower(a);
        for (i, s) in SECTIONS.iter().enumerate() {
            if matches!(name.as_str(), "all" | "default") || name == *s {
                wanted[i] = true;
            }
        }
    }
    let f = figures(shared, ctx);
    let mut text = String::new();
    let names = SECTIONS.iter().zip(wanted).filter(|(_, w)| *w);
    for (i, (name, _)) in names.enumerate() {
        if i > 0 {
            text.push_str("\r\n");
        }
        let title = match *name {
            "cpu" => "CPU".to_string(),
            n => n[..1].to_ascii_uppercase() + &n[1..],
        };
        let _ = write!(text, "# {title}\r\n");
        // As SERVER: JSON carries Tile38's lines only, since its clients
        // compare the whole object; the text adds this server's own.
        text.push_str(&section(shared, &f, name, !ctx.json));
    }
    if ctx.json {
        let obj: serde_json::Map<String, serde_json::Value> = text
            .split("\r\n")
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), typed(v)))
            .collect();
        return Ok(ctx.ok_json(&format!(",\"info\":{}", serde_json::Value::Object(obj))));
    }
    Ok(Reply::bulk(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_values_are_typed_as_tile38_types_them() {
        assert_eq!(typed("12"), serde_json::json!(12));
        assert_eq!(typed("0.25"), serde_json::json!(0.25));
        assert_eq!(
            typed("1.00"),
            serde_json::json!(1),
            "Go writes a whole float as 1"
        );
        assert_eq!(typed("true"), serde_json::json!(true));
        assert_eq!(typed("master"), serde_json::json!("master"));
        assert_eq!(typed("inf"), serde_json::json!("inf"));
        assert_eq!(
            typed("ip=127.0.0.1,port=1,state=online"),
            serde_json::json!("ip=127.0.0.1,port=1,state=online")
        );
    }

    #[test]
    fn stats_text_is_gos_default_format() {
        assert_eq!(Stat::Float(2.0).text(), "2");
        assert_eq!(Stat::Float(0.5).text(), "0.5");
        assert_eq!(Stat::Bool(true).text(), "true");
        assert_eq!(Stat::uint(u64::MAX).text(), i64::MAX.to_string());
    }
}
