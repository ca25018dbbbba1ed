//! Geofence hooks in the server: SETHOOK, DELHOOK, PDELHOOK and HOOKS on top
//! of `geohook-hooks`, the change sink that turns committed writes into hook
//! events, the hooks' part of the log (replay at start, the shrink snapshot,
//! EX expiry), the delivery tasks and the hooks' Prometheus metrics.
//!
//! Hook commands go through [`Core::commit`] like data commands, so the log
//! order is the order in which hooks and objects changed. A hook with `EX` is
//! logged with an absolute deadline (`PXAT ms`, as `SET … EX` is), and its
//! expiry is logged as `DELHOOK name`, so a restart neither extends nor
//! resurrects it. Only the leader queues and delivers events and expires
//! hooks; fence state is kept on every node so that a promoted follower
//! detects enter and exit correctly.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use geohook_db::{Area, Bounds, Database, Object, Point};
use geohook_hooks::{
    Change, DeliveryConfig, Endpoint, FenceKind, Filter, HookDef, Hooks, QueueConfig, Scheme,
    SetOutcome,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio_util::task::TaskTracker;

use crate::commands::{arity, invalid, Ctx};
use crate::resp::Reply;
use crate::state::{self, ChangeSink, Core, Shared};

/// Command-line flags for hook delivery.
#[derive(Debug, Clone, clap::Args)]
pub struct HookArgs {
    /// Age after which a pooled endpoint connection is replaced even under
    /// constant traffic, in milliseconds.
    #[arg(long, default_value_t = 30 * 60 * 1000)]
    pub hook_max_connection_lifetime_ms: u64,
    /// How long an event may wait for delivery before it is dropped and
    /// counted, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub hook_message_ttl_ms: u64,
    /// Bound on the event bytes queued across all hooks (bytes, or kb/mb/gb).
    #[arg(long, default_value = "256mb", value_parser = parse_size)]
    pub hook_max_queued_bytes: u64,
    /// Bound on the event bytes queued for one hook (bytes, or kb/mb/gb).
    #[arg(long, default_value = "4mb", value_parser = parse_size)]
    pub hook_max_hook_queued_bytes: u64,
}

impl Default for HookArgs {
    fn default() -> Self {
        Self {
            hook_max_connection_lifetime_ms: 30 * 60 * 1000,
            hook_message_ttl_ms: 30_000,
            hook_max_queued_bytes: 256 << 20,
            hook_max_hook_queued_bytes: 4 << 20,
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::settings::parse_size(s)
        .ok_or_else(|| format!("invalid size {s:?} (bytes, or a kb/mb/gb suffix)"))
}

impl HookArgs {
    /// The queue settings these flags describe.
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            message_ttl: Duration::from_millis(self.hook_message_ttl_ms),
            max_queued_bytes: self.hook_max_queued_bytes,
            max_hook_queued_bytes: self.hook_max_hook_queued_bytes,
            delivery: DeliveryConfig {
                max_connection_lifetime: Duration::from_millis(
                    self.hook_max_connection_lifetime_ms,
                ),
                ..DeliveryConfig::default()
            },
            ..QueueConfig::default()
        }
    }
}

/// The server's hooks: the registry and outbox of `geohook-hooks`, fed by
/// the write path through [`ChangeSink`].
#[derive(Debug)]
pub struct HookEngine {
    hooks: Hooks,
}

impl HookEngine {
    /// Builds an empty engine (leader role).
    ///
    /// # Errors
    ///
    /// The flags give an invalid queue configuration.
    pub fn new(args: &HookArgs) -> anyhow::Result<HookEngine> {
        Ok(HookEngine {
            hooks: Hooks::new(args.queue_config())?,
        })
    }

    /// The hooks themselves.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Appends a `SETHOOK` for every live hook to `out`, with what remains
    /// of its EX as an absolute deadline, for the shrink snapshot.
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        let now = SystemTime::now();
        for info in self.hooks.list("*", now) {
            let pxat = info.ttl.map(|t| unix_ms(now) + (t * 1000.0) as i64);
            let args = logged_sethook(&info.def, pxat);
            crate::resp::encode_command(out, &args);
        }
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `SETHOOK name endpoints [META k v …] [PXAT ms] <search args…>`.
fn logged_sethook(def: &HookDef, pxat: Option<i64>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        b"sethook".to_vec(),
        def.name.as_bytes().to_vec(),
        def.endpoint_list().into_bytes(),
    ];
    for (k, v) in &def.meta {
        out.extend([
            b"meta".to_vec(),
            k.as_bytes().to_vec(),
            v.as_bytes().to_vec(),
        ]);
    }
    if let Some(at) = pxat {
        out.extend([b"pxat".to_vec(), at.to_string().into_bytes()]);
    }
    out.extend(def.args.iter().map(|a| a.as_bytes().to_vec()));
    out
}

impl ChangeSink for HookEngine {
    fn on_change(&self, c: &state::Change<'_>) {
        let Some(name) = c.args.first() else { return };
        let time = SystemTime::now();
        if name.eq_ignore_ascii_case(b"set") {
            let Some(id) = c.id else { return };
            // A SET with a deadline already past leaves nothing live to report.
            let Ok(item) = c.db.get(c.key, id, unix_ms(time)) else {
                return;
            };
            let old = c.before.first().map(|(_, o)| *o);
            self.hooks.on_change(&Change::set(
                c.key,
                id,
                old,
                item.object(),
                Some(item.fields()),
                time,
            ));
        } else if name.eq_ignore_ascii_case(b"del") || name.eq_ignore_ascii_case(b"pdel") {
            // An expiry is logged as a DEL and reported the same way.
            for (id, old) in c.before {
                self.hooks.on_change(&Change::del(c.key, id, old, time));
            }
        } else if name.eq_ignore_ascii_case(b"drop") {
            self.hooks.on_change(&Change::drop(c.key, time));
        } else if name.eq_ignore_ascii_case(b"fset") {
            // Only an FSET that changed a value is committed and reaches here.
            let Some(id) = c.id else { return };
            let Ok(item) = c.db.get(c.key, id, unix_ms(time)) else {
                return;
            };
            self.hooks
                .on_change(&Change::fset(c.key, id, item.object(), item.fields(), time));
        }
    }
}

/// Whether `name` (lower case) is a hook command this module runs.
pub fn is_hook_command(name: &str) -> bool {
    matches!(name, "sethook" | "delhook" | "pdelhook" | "hooks")
}

/// Runs SETHOOK, DELHOOK, PDELHOOK or HOOKS from a client.
///
/// # Errors
///
/// The error text for the client.
pub fn run(shared: &Shared, ctx: &Ctx, name: &str, args: &[Vec<u8>]) -> Result<Reply, String> {
    let Some(engine) = shared.hooks.get() else {
        return Err(format!("{name} is not available: hooks are not enabled"));
    };
    if name == "hooks" {
        if args.len() != 2 {
            return Err(arity(name));
        }
        return Ok(list(engine, ctx, s(&args[1])?));
    }
    if shared.is_readonly() {
        return Err("read only".into());
    }
    let mut core = shared.core.write();
    core.writable()?;
    let sink = shared.changes.as_ref();
    let fsync = shared.opts.fsync;
    match apply(&mut core, engine, ctx.now_ms as i64, args)? {
        Applied::Set { outcome, logged } => {
            core.commit(fsync, sink, &logged, "", None)?;
            Ok(if ctx.json {
                ctx.ok()
            } else {
                Reply::Int(i64::from(outcome != SetOutcome::Unchanged))
            })
        }
        Applied::Deleted(n) => {
            if n > 0 {
                core.commit(fsync, sink, args, "", None)?;
            }
            Ok(ctx.ok_or_int(n as i64))
        }
    }
}

enum Applied {
    Set {
        outcome: SetOutcome,
        logged: Vec<Vec<u8>>,
    },
    Deleted(usize),
}

/// Applies a hook command to the registry; the caller logs it.
fn apply(
    core: &mut Core,
    engine: &HookEngine,
    now_ms: i64,
    args: &[Vec<u8>],
) -> Result<Applied, String> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    match name.as_str() {
        "sethook" => {
            let (def, pxat) = parse_sethook(&core.db, args, now_ms)?;
            let logged = logged_sethook(&def, pxat);
            let now = UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
            let outcome = engine.hooks.set_hook(def, now).map_err(|e| e.to_string())?;
            Ok(Applied::Set { outcome, logged })
        }
        "delhook" => {
            if args.len() != 2 {
                return Err(arity(&name));
            }
            Ok(Applied::Deleted(usize::from(
                engine.hooks.del_hook(s(&args[1])?),
            )))
        }
        "pdelhook" => {
            if args.len() != 2 {
                return Err(arity(&name));
            }
            Ok(Applied::Deleted(
                engine.hooks.pdel_hooks(s(&args[1])?).len(),
            ))
        }
        _ => Err(format!("unknown command '{name}'")),
    }
}

/// Applies one command read back from the log: hook commands go to the
/// hooks (when there are any), everything else to [`crate::geo::replay`].
///
/// # Errors
///
/// As [`crate::geo::replay`], and a hook command that does not parse.
pub fn replay(core: &mut Core, hooks: Option<&HookEngine>, args: &[Vec<u8>]) -> Result<(), String> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if !is_hook_command(&name) || name == "hooks" {
        return crate::geo::replay(core, args);
    }
    let Some(engine) = hooks else {
        // A log written with hooks, read by a process without them: the
        // data is still complete, so the hook commands are skipped.
        return Ok(());
    };
    let now_ms = state::now_ms() as i64;
    if name == "sethook" {
        // A hook whose deadline passed while the server was down is not
        // recreated; its DELHOOK may not have been logged yet.
        let (def, pxat) = parse_sethook(&core.db, args, now_ms)?;
        if pxat.is_some_and(|at| at <= now_ms) {
            engine.hooks.del_hook(&def.name);
            return Ok(());
        }
    }
    apply(core, engine, now_ms, args).map(|_| ())
}

fn s(a: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(a).map_err(|_| invalid(a))
}

fn finite(a: &[u8]) -> Result<f64, String> {
    s(a)?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| invalid(a))
}

/// Parses SETHOOK into a definition and its absolute deadline (from `EX
/// seconds` or the logged `PXAT ms`).
fn parse_sethook(
    db: &Database,
    args: &[Vec<u8>],
    now_ms: i64,
) -> Result<(HookDef, Option<i64>), String> {
    if args.len() < 6 {
        return Err(arity("sethook"));
    }
    let name = s(&args[1])?.to_owned();
    let endpoints = Endpoint::parse_list(s(&args[2])?).map_err(|_| invalid(&args[2]))?;
    let mut i = 3;
    let mut meta = Vec::new();
    let mut pxat: Option<i64> = None;
    let next = |i: &mut usize| -> Result<&[u8], String> {
        let a = args.get(*i).ok_or_else(|| arity("sethook"))?;
        *i += 1;
        Ok(a.as_slice())
    };
    let kind = loop {
        let word = next(&mut i)?;
        match String::from_utf8_lossy(word).to_ascii_lowercase().as_str() {
            "meta" => {
                let k = s(next(&mut i)?)?.to_owned();
                let v = s(next(&mut i)?)?.to_owned();
                meta.push((k, v));
            }
            "ex" => {
                let secs = finite(next(&mut i)?)?;
                if secs <= 0.0 {
                    return Err(invalid(&args[i - 1]));
                }
                pxat = Some(now_ms + (secs * 1000.0) as i64);
            }
            "pxat" => {
                let v = next(&mut i)?;
                pxat = Some(s(v)?.parse::<i64>().map_err(|_| invalid(v))?);
            }
            w => break w.parse::<FenceKind>().map_err(|()| invalid(word))?,
        }
    };
    let search_start = i - 1;
    let key = s(next(&mut i)?)?.to_owned();
    let (mut fence, mut detect, mut commands) = (false, None, None);
    let area = loop {
        let word = next(&mut i)?;
        match String::from_utf8_lossy(word).to_ascii_lowercase().as_str() {
            "fence" => fence = true,
            "detect" => detect = Some(s(next(&mut i)?)?.to_owned()),
            "commands" => commands = Some(s(next(&mut i)?)?.to_owned()),
            "point" => {
                let p = Point::new(finite(next(&mut i)?)?, finite(next(&mut i)?)?)
                    .map_err(|e| e.to_string())?;
                let meters = match args.get(i) {
                    Some(m) => {
                        i += 1;
                        Some(finite(m)?)
                    }
                    None => None,
                };
                break Area::point(p, meters).map_err(|e| e.to_string())?;
            }
            "circle" => {
                let p = Point::new(finite(next(&mut i)?)?, finite(next(&mut i)?)?)
                    .map_err(|e| e.to_string())?;
                break Area::circle(p, finite(next(&mut i)?)?).map_err(|e| e.to_string())?;
            }
            "bounds" => {
                let mut v = [0.0; 4];
                for x in &mut v {
                    *x = finite(next(&mut i)?)?;
                }
                break Area::Bounds(
                    Bounds::new(v[0], v[1], v[2], v[3]).map_err(|e| e.to_string())?,
                );
            }
            "object" => {
                let text = s(next(&mut i)?).map_err(|_| "invalid data".to_string())?;
                break Area::Object(Object::from_geojson(text).map_err(|e| e.to_string())?);
            }
            "hash" => break Area::hash(s(next(&mut i)?)?).map_err(|e| e.to_string())?,
            "get" => {
                let (k, id) = (s(next(&mut i)?)?, s(next(&mut i)?)?);
                let item = db.get(k, id, now_ms).map_err(|e| e.to_string())?;
                break Area::Object(item.object().clone());
            }
            _ => return Err(invalid(word)),
        }
    };
    if i != args.len() {
        return Err(invalid(&args[i]));
    }
    if !fence {
        return Err("missing FENCE argument".into());
    }
    let filter = Filter::parse(detect.as_deref(), commands.as_deref()).map_err(|e| match e {
        geohook_hooks::Error::InvalidHook { reason, .. } => reason,
        e => e.to_string(),
    })?;
    let ex = pxat.map(|at| (at - now_ms).max(1) as f64 / 1000.0);
    let def = HookDef {
        name,
        endpoints,
        meta,
        ex,
        kind,
        key,
        filter,
        area,
        args: args[search_start..]
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    };
    def.validate().map_err(|e| match e {
        geohook_hooks::Error::InvalidHook { reason, .. } => reason,
        e => e.to_string(),
    })?;
    Ok((def, pxat))
}

fn json_str(v: &str) -> String {
    serde_json::Value::String(v.to_owned()).to_string()
}

/// HOOKS pattern, in Tile38's shapes.
fn list(engine: &HookEngine, ctx: &Ctx, pattern: &str) -> Reply {
    let hooks = engine.hooks.list(pattern, SystemTime::now());
    if ctx.json {
        let mut body = String::from(",\"hooks\":[");
        for (n, h) in hooks.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            let d = &h.def;
            let ttl = h.ttl.map_or(-1, |t| t.ceil() as i64);
            let _ = write!(
                body,
                "{{\"name\":{},\"key\":{},\"ttl\":{ttl},\"endpoints\":[",
                json_str(&d.name),
                json_str(&d.key)
            );
            let eps: Vec<String> = d.endpoints.iter().map(|e| json_str(e.url())).collect();
            body.push_str(&eps.join(","));
            body.push_str("],\"command\":[");
            let cmd: Vec<String> = d.args.iter().map(|a| json_str(a)).collect();
            body.push_str(&cmd.join(","));
            body.push_str("],\"meta\":{");
            let meta: Vec<String> = d
                .meta
                .iter()
                .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
                .collect();
            body.push_str(&meta.join(","));
            body.push_str("}}");
        }
        body.push(']');
        ctx.ok_json(&body)
    } else {
        Reply::Array(
            hooks
                .iter()
                .map(|h| {
                    let d = &h.def;
                    Reply::Array(vec![
                        Reply::bulk(d.name.clone()),
                        Reply::bulk(d.key.clone()),
                        Reply::Array(d.endpoints.iter().map(|e| Reply::bulk(e.url())).collect()),
                        Reply::Array(d.args.iter().map(|a| Reply::bulk(a.clone())).collect()),
                        Reply::Array(
                            d.meta
                                .iter()
                                .flat_map(|(k, v)| [Reply::bulk(k.clone()), Reply::bulk(v.clone())])
                                .collect(),
                        ),
                    ])
                })
                .collect(),
        )
    }
}

/// Spawns the delivery task and the hooks' housekeeping (role, EX expiry)
/// under `tracker`; both stop when the server's shutdown token fires. Also
/// registers the hooks' metrics.
pub fn start(shared: &Arc<Shared>, tracker: &TaskTracker) {
    let Some(engine) = shared.hooks.get().cloned() else {
        return;
    };
    shared
        .metrics
        .add_collector(Box::new(HookCollector(engine.clone())));
    let cancel = shared.shutdown.clone();
    let e = engine.clone();
    tracker.spawn(async move { e.hooks.run(cancel).await });
    tracker.spawn(housekeeping(shared.clone(), engine));
}

/// Every 100 ms: follows the node's role, and on the leader removes hooks
/// whose EX passed, logging a DELHOOK for each under the write lock so that
/// the log order matches the registry's.
async fn housekeeping(shared: Arc<Shared>, engine: Arc<HookEngine>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        let leader = shared.is_leader();
        if engine.hooks.is_leader() != leader {
            engine.hooks.set_role(leader);
        }
        if !leader {
            continue;
        }
        let mut core = shared.core.write();
        if core.writable().is_err() {
            continue;
        }
        for name in engine.hooks.expire_due(SystemTime::now()) {
            let args = [b"delhook".to_vec(), name.into_bytes()];
            if let Err(e) = core.commit(shared.opts.fsync, shared.changes.as_ref(), &args, "", None)
            {
                tracing::error!(error = %e, "could not log a hook expiry");
                break;
            }
        }
    }
}

/// Encodes a snapshot of the hooks' counters on each scrape.
#[derive(Debug)]
struct HookCollector(Arc<HookEngine>);

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn labelled(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (l, v) in values {
        let set = [(label, *l)];
        ConstCounter::new(*v).encode(m.encode_family(&set)?)?;
    }
    Ok(())
}

impl Collector for HookCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let m = self.0.hooks.metrics();
        let e = &mut enc;
        gauge(e, "geohook_hooks", "Hooks defined", m.hooks)?;
        gauge(
            e,
            "geohook_hook_fence_groups",
            "Objects inside a hook's fence (live fence groups)",
            m.fence_groups,
        )?;
        gauge(
            e,
            "geohook_hook_queued_messages",
            "Events waiting for delivery",
            m.queued_messages,
        )?;
        gauge(
            e,
            "geohook_hook_queued_bytes",
            "Bytes of events waiting for delivery",
            m.queued_bytes,
        )?;
        counter(
            e,
            "geohook_hook_events",
            "Events produced by writes",
            m.events,
        )?;
        counter(
            e,
            "geohook_hook_enqueued",
            "Events accepted into a hook queue",
            m.enqueued,
        )?;
        labelled(
            e,
            "geohook_hook_dropped",
            "Events dropped before delivery, by reason",
            "reason",
            &[
                ("expired", m.dropped_expired),
                ("overflow", m.dropped_overflow),
                ("removed", m.dropped_removed),
            ],
        )?;
        counter(
            e,
            "geohook_hook_connections_opened",
            "Endpoint connections and HTTP clients opened",
            m.connections_opened,
        )?;
        counter(
            e,
            "geohook_hook_connection_recycles",
            "Endpoint connections replaced at their maximum lifetime",
            m.connection_recycles,
        )?;
        counter(
            e,
            "geohook_hook_idle_closes",
            "Endpoint connections closed after idling",
            m.idle_closes,
        )?;
        let per = |f: fn(&geohook_hooks::SchemeMetrics) -> u64| -> Vec<(&'static str, u64)> {
            Scheme::ALL
                .iter()
                .map(|s| (s.as_str(), f(m.scheme(*s))))
                .collect()
        };
        labelled(
            e,
            "geohook_hook_deliveries",
            "Events accepted by an endpoint, by scheme",
            "scheme",
            &per(|s| s.deliveries),
        )?;
        labelled(
            e,
            "geohook_hook_failures",
            "Failed send attempts, by scheme",
            "scheme",
            &per(|s| s.failures),
        )?;
        labelled(
            e,
            "geohook_hook_retries",
            "Events scheduled for another attempt, by scheme",
            "scheme",
            &per(|s| s.retries),
        )?;
        Ok(())
    }
}
