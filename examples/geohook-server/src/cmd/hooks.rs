//! Geofence hooks: `SETHOOK name endpoint[,endpoint…] [META k v …] [EX
//! seconds] NEARBY|WITHIN|INTERSECTS key FENCE [DETECT …] [COMMANDS …] AREA`,
//! `DELHOOK name`, `PDELHOOK pattern` and `HOOKS pattern`, and the form every
//! hook takes in a snapshot. Channels are hooks whose endpoint is the
//! server's own pub/sub: `SETCHAN name [META k v …] [EX seconds] SEARCH`,
//! `DELCHAN`, `PDELCHAN` and `CHANS` take the same paths, logged as
//! `setchan name [meta k v …] [pxat ms] SEARCH`; hooks and channels share
//! one name space, as in Tile38. A live fence's search part is parsed here
//! too ([`live_fence`]), so that all three read a fence the same way.
//!
//! SETHOOK is logged as `sethook name endpoints [meta k v …] [pxat ms] SEARCH`
//! (the search arguments as sent): a hook's `EX` becomes an absolute
//! deadline, as `SET … EX` does, and its expiry is logged as `delhook name`
//! (see `tasks.rs`), so a restart neither extends nor resurrects it.
//!
//! Retry options, before the search kind: `TTL seconds` (0 keeps events
//! until delivered), `RETRIES n` (attempts before an event becomes a dead
//! letter, 0 for no limit), `TIMEOUT seconds` (per attempt) and `BACKOFF
//! min max` (seconds). A hook with any of them gets its own policy, the
//! others taken from the server-wide one at SETHOOK time, and is logged with
//! all five (`ttl t retries n timeout t backoff a b`) so a restart, a
//! shrink and a follower get the same policy.
//!
//! `LIFECYCLE yes|no` (SETHOOK and SETCHAN, before the search kind) turns
//! lifecycle exit events on or off for the hook whatever the server-wide
//! `hook-lifecycle`; without it the hook follows that default. It is logged
//! as given (`lifecycle yes|no`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use geohook_db::Database;
use geohook_hooks::{
    Delivery, Endpoint, FenceKind, FenceOptions, FenceOutput, Filter, HookDef, RetryPolicy, Roam,
    SetOutcome,
};

use crate::clock::{from_unix_ms, unix_ms};
use crate::cmd::args::{self, lower, text, Args};
use crate::cmd::ctx::{json_str, CmdError, Ctx};
use crate::cmd::spec::Cmd;
use crate::cmd::{expr, render, search, shapes, sparse};
use crate::hooks::engine::HookEngine;
use crate::state::{Core, Record, Writer};
use geohook_resp::Reply;

/// A parsed SETHOOK: the definition and its absolute deadline.
#[derive(Debug)]
pub(crate) struct SetHook {
    def: HookDef,
    pxat: Option<i64>,
    retry: RetryOpts,
    lifecycle: Option<bool>,
}

/// The retry options SETHOOK was given.
#[derive(Debug, Default, Clone, Copy)]
struct RetryOpts {
    ttl: Option<Duration>,
    retries: Option<u32>,
    timeout: Option<Duration>,
    backoff: Option<(Duration, Duration)>,
}

impl RetryOpts {
    fn any(&self) -> bool {
        self.ttl.is_some()
            || self.retries.is_some()
            || self.timeout.is_some()
            || self.backoff.is_some()
    }

    /// The hook's own policy over `base`, or `None` without options.
    fn resolve(&self, base: RetryPolicy) -> Option<RetryPolicy> {
        if !self.any() {
            return None;
        }
        let (retry_initial, retry_max) =
            self.backoff.unwrap_or((base.retry_initial, base.retry_max));
        Some(RetryPolicy {
            ttl: self.ttl.unwrap_or(base.ttl),
            retry_initial,
            retry_max,
            max_attempts: self.retries.unwrap_or(base.max_attempts),
            timeout: self.timeout.unwrap_or(base.timeout),
        })
    }
}

/// Seconds (fractions allowed, at least 0) as a duration.
fn seconds(v: &[u8]) -> Result<Duration, CmdError> {
    let s = crate::cmd::args::finite(v)?;
    if s < 0.0 {
        return Err(CmdError::invalid(v));
    }
    Duration::try_from_secs_f64(s).map_err(|_| CmdError::invalid(v))
}

impl SetHook {
    /// Parses SETHOOK sent at `now` (ms); a `GET key id` area is read from
    /// `db`.
    ///
    /// # Errors
    ///
    /// Arity, a bad argument, a bad area or filter, a missing FENCE.
    pub(crate) fn parse(db: &Database, all: &[Vec<u8>], now: i64) -> Result<SetHook, CmdError> {
        let channel = lower(&all[0]) == "setchan";
        let mut a = Args::new(all, 1, if channel { "setchan" } else { "sethook" });
        let name = a.text()?.to_owned();
        let endpoints = if channel {
            Vec::new()
        } else {
            let eps = a.next()?;
            Endpoint::parse_list(text(eps)?).map_err(|_| CmdError::invalid(eps))?
        };
        let mut meta = Vec::new();
        let mut pxat: Option<i64> = None;
        let mut retry = RetryOpts::default();
        let mut lifecycle = None;
        let kind = loop {
            let word = a.next()?;
            match lower(word).as_str() {
                "meta" => {
                    let k = a.text()?.to_owned();
                    meta.push((k, a.text()?.to_owned()));
                }
                "ex" => {
                    let v = a.next()?;
                    let secs = crate::cmd::args::finite(v)?;
                    if secs <= 0.0 {
                        return Err(CmdError::invalid(v));
                    }
                    pxat = Some(crate::cmd::args::ex_deadline(v, now)?);
                }
                "pxat" => pxat = Some(crate::cmd::args::int(a.next()?)?),
                "lifecycle" => lifecycle = Some(yes_no(a.next()?)?),
                // A channel has no queue, so the retry options are not its words.
                "ttl" | "timeout" | "backoff" | "retries" if channel => {
                    return Err(CmdError::invalid(word))
                }
                "ttl" => retry.ttl = Some(seconds(a.next()?)?),
                "timeout" => retry.timeout = Some(seconds(a.next()?)?),
                "backoff" => retry.backoff = Some((seconds(a.next()?)?, seconds(a.next()?)?)),
                "retries" => {
                    let v = a.next()?;
                    retry.retries =
                        Some(text(v)?.parse::<u32>().map_err(|_| CmdError::invalid(v))?);
                }
                w => {
                    break w
                        .parse::<FenceKind>()
                        .map_err(|()| CmdError::invalid(word))?
                }
            }
        };
        let fence = parse_fence(&mut a, db, all, now)?;
        let def = HookDef {
            name,
            endpoints,
            delivery: if channel {
                Delivery::Channel
            } else {
                Delivery::Endpoints
            },
            meta,
            ex: pxat.map(|at| at.saturating_sub(now).max(1) as f64 / 1000.0),
            kind,
            key: fence.key,
            filter: fence.filter,
            area: fence.area,
            options: fence.options,
            args: fence.args,
        };
        def.validate().map_err(hook_err)?;
        Ok(SetHook {
            def,
            pxat,
            retry,
            lifecycle,
        })
    }
}

/// `yes` or `no` (also `true`/`false`, `1`/`0`), as LIFECYCLE takes it.
fn yes_no(v: &[u8]) -> Result<bool, CmdError> {
    match lower(v).as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(CmdError::invalid(v)),
    }
}

/// The part of a fence from its key on, as SETHOOK, SETCHAN and a live fence
/// all write it.
struct Fence {
    key: String,
    filter: Filter,
    area: geohook_db::Area,
    options: FenceOptions,
    args: Vec<String>,
}

fn hook_err(e: geohook_hooks::Error) -> CmdError {
    match e {
        geohook_hooks::Error::InvalidHook { reason, .. } => CmdError::Msg(reason),
        e => CmdError::Msg(e.to_string()),
    }
}

/// Parses `key [options] FENCE [DETECT …] [COMMANDS …] AREA`, the
/// options and FENCE in any order as Tile38 reads them; `a` has just read
/// the NEARBY, WITHIN or INTERSECTS word.
///
/// The options a fence applies to its events: `MATCH pattern` (ids),
/// `WHERE …` and `WHEREIN …` (an object that fails them is outside),
/// `NOFIELDS`, `DISTANCE` (the `distance` member), `BUFFER meters` (the area
/// grown), the output (`OBJECTS`, `IDS`, `POINTS`, `BOUNDS`, `HASHES
/// precision` or `COUNT`: what the events say about the object), `SPARSE
/// n` (checked, and of no effect on events), `CLIPBY rect` after the area
/// (the area cut, as the search cuts it) and, for NEARBY, `NODWELL` and
/// the area `ROAM key pattern meters [SCAN pattern]`.
fn parse_fence(
    a: &mut Args<'_>,
    db: &Database,
    all: &[Vec<u8>],
    now: i64,
) -> Result<Fence, CmdError> {
    let search_start = a.pos() - 1;
    let nearby = lower(&all[search_start]) == "nearby";
    let key = a.text()?.to_owned();
    let (mut fence, mut detect, mut commands) = (false, None, None);
    let mut distance = false;
    let mut nodwell = false;
    let mut buffer: Option<f64> = None;
    let mut sparse_given = false;
    let (mut limit_given, mut cursor_given) = (false, false);
    let mut options = FenceOptions::default();
    let mut filters = Vec::new();
    while let Some(word) = a.peek_lower() {
        match word.as_str() {
            "fence" => fence = true,
            "distance" => distance = true,
            "nofields" => options.nofields = true,
            "nodwell" => nodwell = true,
            "objects" => options.output = FenceOutput::Objects,
            "ids" => options.output = FenceOutput::Ids,
            "points" => options.output = FenceOutput::Points,
            "count" => options.output = FenceOutput::Count,
            "hashes" => {
                a.next()?;
                let p = render::precision(a.next()?)?;
                options.output = FenceOutput::Hashes(u8::try_from(p).unwrap_or(12));
                continue;
            }
            // Tile38's rule, as in the searches: on WITHIN and INTERSECTS a BOUNDS followed by
            // a number is the area, not the output.
            "bounds" => {
                let number_follows = all
                    .get(a.pos() + 1)
                    .is_some_and(|w| args::finite(w).is_ok());
                if !nearby && number_follows {
                    break;
                }
                options.output = FenceOutput::Bounds;
            }
            "detect" => {
                a.next()?;
                detect = Some(a.text()?.to_owned());
                continue;
            }
            "commands" => {
                a.next()?;
                commands = Some(a.text()?.to_owned());
                continue;
            }
            "match" => {
                a.next()?;
                options.matches.push(args::pattern(a.next()?)?.to_owned());
                continue;
            }
            "where" => {
                a.next()?;
                filters.push(expr::parse_where(a, all)?);
                continue;
            }
            "wherein" => {
                a.next()?;
                filters.push(expr::parse_wherein(a, "fence")?);
                continue;
            }
            "buffer" => {
                a.next()?;
                buffer = Some(args::meters(a.next()?)?);
                continue;
            }
            // Tile38 reads a fence with the search's parser, so SPARSE is
            // taken and checked as a search checks it. Fence matching tests
            // each written object alone, with no walk to thin out, so the
            // value changes nothing after that.
            "sparse" => {
                a.next()?;
                if sparse_given {
                    return Err(CmdError::Msg("duplicate argument 'SPARSE'".into()));
                }
                sparse::spread(a.next()?)?;
                sparse_given = true;
                continue;
            }
            // The search's parser takes LIMIT on a fence too, checked; a
            // fence tests one written object at a time, so it limits
            // nothing. CURSOR is read, then refused below, as in Tile38.
            "limit" => {
                a.next()?;
                if limit_given {
                    return Err(CmdError::Msg("duplicate argument 'LIMIT'".into()));
                }
                let n = a.next()?;
                if args::uint(n)? == 0 {
                    return Err(CmdError::invalid(n));
                }
                limit_given = true;
                continue;
            }
            "cursor" => {
                a.next()?;
                if cursor_given {
                    return Err(CmdError::Msg("duplicate argument 'CURSOR'".into()));
                }
                a.next()?;
                cursor_given = true;
                continue;
            }
            _ => break,
        }
        a.next()?;
    }
    // Tile38's conflicts, in its order.
    if sparse_given && limit_given {
        return Err(CmdError::Msg(
            "LIMIT is not allowed when SPARSE is specified".into(),
        ));
    }
    if sparse_given && cursor_given {
        return Err(CmdError::Msg(
            "CURSOR is not allowed when SPARSE is specified".into(),
        ));
    }
    if cursor_given && fence {
        return Err(CmdError::Msg(
            "CURSOR is not allowed when FENCE is specified".into(),
        ));
    }
    if !filters.is_empty() {
        options.test = Some(Arc::new(expr::FenceTest(filters)));
    }
    let area_at = a.pos();
    let by_reference = a.peek_lower().as_deref() == Some("get");
    // A `GET key id` area as it was resolved, before any CLIPBY or BUFFER.
    let mut resolved: Option<geohook_db::Area> = None;
    // Where the area's own words end and any CLIPBY begins.
    let mut area_end = all.len();
    let area = if nearby && a.peek_lower().as_deref() == Some("roam") {
        a.next()?;
        let roam_key = a.text()?.to_owned();
        let pattern = args::pattern(a.next()?)?.to_owned();
        let meters = args::meters(a.next()?)?;
        let scan = if a.peek_lower().as_deref() == Some("scan") {
            a.next()?;
            Some(args::pattern(a.next()?)?.to_owned())
        } else {
            None
        };
        options.roam = Some(Roam {
            key: roam_key,
            pattern,
            meters,
            nodwell,
            scan,
        });
        // Tile38 reads CLIPBY after a roam too, and its clipping leaves an
        // area it does not have alone: the rectangles are checked, and
        // change nothing.
        while a.peek_lower().as_deref() == Some("clipby") {
            a.next()?;
            search::clipby_rect(a, db, now)?;
        }
        // A roam fence has no area of its own; this stands in for it and is
        // never searched.
        geohook_db::Area::Point(geohook_db::Point {
            lat: 0.0,
            lon: 0.0,
            z: None,
        })
    } else {
        // A radius after POINT is NEARBY's only, as in Tile38: on WITHIN
        // and INTERSECTS the point is the area, and a word after it is the
        // next option (`CLIPBY`).
        let mut area = a.area(db, now, nearby)?;
        area_end = a.pos();
        // The log keeps `BUFFER m` in front of the area and any `CLIPBY`
        // after it, so it must name the object as it was, not the cut or
        // buffered shape, or a replay would cut or buffer it again.
        if by_reference {
            resolved = Some(area.clone());
        }
        // `CLIPBY rect`, any number of times: the area cut by each rectangle
        // in turn, before BUFFER grows it, as the search does (a circle is
        // left whole, and a cut that leaves nothing matches nothing).
        while a.peek_lower().as_deref() == Some("clipby") {
            a.next()?;
            let rect = search::clipby_rect(a, db, now)?;
            area = search::clip_area(area, &rect);
            options.clipped = true;
        }
        match buffer {
            Some(m) => shapes::buffer(area, m)?,
            None => area,
        }
    };
    a.finish()?;
    if !fence {
        return Err(CmdError::Msg("missing FENCE argument".into()));
    }
    let filter = Filter::parse(detect.as_deref(), commands.as_deref())
        .map_err(hook_err)?
        .with_distance(distance);
    let args = logged_search_args(all, search_start, (area_at, area_end), resolved.as_ref());
    Ok(Fence {
        key,
        filter,
        area,
        options,
        args,
    })
}

/// Parses a live fence, `NEARBY|WITHIN|INTERSECTS key FENCE [DETECT …]
/// [COMMANDS …] AREA`, for connection `conn`.
///
/// # Errors
///
/// As SETHOOK's search part: a bad argument, area or filter, no FENCE.
pub(crate) fn live_fence(
    db: &Database,
    all: &[Vec<u8>],
    now: i64,
    conn: u64,
) -> Result<HookDef, CmdError> {
    let mut a = Args::new(all, 0, "fence");
    let word = a.next()?;
    let kind = text(word)?
        .parse::<FenceKind>()
        .map_err(|()| CmdError::invalid(word))?;
    let fence = parse_fence(&mut a, db, all, now)?;
    let def = HookDef {
        name: String::new(),
        endpoints: Vec::new(),
        delivery: Delivery::Live(conn),
        meta: Vec::new(),
        ex: None,
        kind,
        key: fence.key,
        filter: fence.filter,
        area: fence.area,
        options: fence.options,
        args: fence.args,
    };
    def.validate().map_err(hook_err)?;
    Ok(def)
}

/// Whether a search command asks for a live fence (a FENCE word among its
/// arguments), which turns its connection into an event stream.
pub(crate) fn is_live_fence(args: &[Vec<u8>]) -> bool {
    let search = args.first().is_some_and(|w| {
        [b"nearby".as_slice(), b"within", b"intersects"]
            .iter()
            .any(|s| w.eq_ignore_ascii_case(s))
    });
    search && args[1..].iter().any(|a| a.eq_ignore_ascii_case(b"fence"))
}

impl SetHook {
    /// True when the deadline has passed at `now`: replay does not recreate
    /// such a hook (its DELHOOK may not have been logged before a crash).
    pub(crate) fn expired(&self, now: i64) -> bool {
        self.pxat.is_some_and(|at| at <= now)
    }

    /// Removes the hook or channel of this name, if any: replay does so for
    /// one whose deadline passed while the server was down.
    pub(crate) fn forget(&self, engine: &HookEngine) {
        if self.def.is_channel() {
            engine.hooks.del_chan(&self.def.name);
        } else {
            engine.hooks.del_hook(&self.def.name);
        }
        let lifecycle = self
            .lifecycle
            .unwrap_or_else(|| engine.hooks.lifecycle_default());
        if lifecycle && !self.def.is_channel() {
            // Its expiry may have journaled lifecycle exits before the
            // restart: a retired queue under its name delivers them.
            let outbox = engine.hooks.outbox();
            outbox.set_hook(&self.def.name, self.def.endpoints.clone());
            outbox.retire_hook(&self.def.name);
        }
    }

    /// Sets the hook and commits its logged form.
    ///
    /// # Errors
    ///
    /// The registry refused the hook, or the log failed.
    pub(crate) fn apply(
        self,
        core: &mut Core,
        engine: &HookEngine,
        w: &Writer<'_>,
        ctx: &Ctx,
    ) -> Result<Reply, CmdError> {
        let outbox = engine.hooks.outbox();
        let channel = self.def.is_channel();
        let policy = if channel {
            None
        } else {
            self.retry.resolve(outbox.default_policy())
        };
        if let Some(p) = &policy {
            p.validate().map_err(|e| CmdError::Msg(e.to_string()))?;
        }
        let logged = logged_sethook(&self.def, self.pxat, policy.as_ref(), self.lifecycle);
        let name = self.def.name.clone();
        let before = outbox.hook_override(&name);
        let lifecycle_before = engine.hooks.hook_lifecycle(&name);
        let outcome = engine
            .hooks
            .set_hook(self.def, from_unix_ms(ctx.now()))
            .map_err(|e| CmdError::Msg(e.to_string()))?;
        if !channel {
            outbox
                .set_hook_policy(&name, policy)
                .map_err(|e| CmdError::Msg(e.to_string()))?;
        }
        engine.hooks.set_hook_lifecycle(&name, self.lifecycle);
        let refs: Vec<&[u8]> = logged.iter().map(Vec::as_slice).collect();
        let cmd = if channel { Cmd::Setchan } else { Cmd::Sethook };
        core.commit(w, Record::new(cmd, &refs, "", None))?;
        let changed = outcome != SetOutcome::Unchanged
            || before != policy
            || lifecycle_before != self.lifecycle;
        Ok(ctx.ok_or_int(i64::from(changed)))
    }
}

/// The search arguments a hook is logged (and listed) with. An area given
/// as `GET key id` (the words `all[area.0..area.1]`) is stored resolved, as
/// `OBJECT <geojson>` of the object it named then, with whatever followed
/// it (CLIPBY) kept as sent: the hook's fence is that shape from then on,
/// and the logged form must not depend on an object that may expire or be
/// deleted before the file is replayed. The object is the one before any
/// cut or buffer, which the replay applies again, once.
fn logged_search_args(
    all: &[Vec<u8>],
    start: usize,
    (area_at, area_end): (usize, usize),
    resolved: Option<&geohook_db::Area>,
) -> Vec<String> {
    let lossy = |a: &Vec<u8>| String::from_utf8_lossy(a).into_owned();
    match resolved {
        Some(geohook_db::Area::Object(obj)) => all[start..area_at]
            .iter()
            .map(lossy)
            .chain(["OBJECT".to_owned(), obj.to_json()])
            .chain(all[area_end..].iter().map(lossy))
            .collect(),
        _ => all[start..].iter().map(lossy).collect(),
    }
}

/// `sethook name endpoints [meta k v …] [pxat ms] [ttl t retries n timeout t
/// backoff a b] [lifecycle yes|no]` followed by the search arguments;
/// `setchan name [meta k v …] [pxat ms] [lifecycle yes|no]` and the search
/// arguments for a channel.
fn logged_sethook(
    def: &HookDef,
    pxat: Option<i64>,
    policy: Option<&RetryPolicy>,
    lifecycle: Option<bool>,
) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = if def.is_channel() {
        vec![b"setchan".to_vec(), def.name.as_bytes().to_vec()]
    } else {
        vec![
            b"sethook".to_vec(),
            def.name.as_bytes().to_vec(),
            def.endpoint_list().into_bytes(),
        ]
    };
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
    if let Some(p) = policy {
        let secs = |d: Duration| d.as_secs_f64().to_string().into_bytes();
        out.extend([
            b"ttl".to_vec(),
            secs(p.ttl),
            b"retries".to_vec(),
            p.max_attempts.to_string().into_bytes(),
            b"timeout".to_vec(),
            secs(p.timeout),
            b"backoff".to_vec(),
            secs(p.retry_initial),
            secs(p.retry_max),
        ]);
    }
    if let Some(on) = lifecycle {
        out.extend([
            b"lifecycle".to_vec(),
            if on { b"yes".to_vec() } else { b"no".to_vec() },
        ]);
    }
    out.extend(def.args.iter().map(|a| a.as_bytes().to_vec()));
    out
}

/// Appends a SETHOOK for every live hook (and a SETCHAN for every channel)
/// to `out`, with what remains of its EX as an absolute deadline, for a
/// snapshot (after the objects, so that a GET area resolves when it is
/// replayed).
pub(crate) fn snapshot<S: crate::cmd::set::SnapshotSink + ?Sized>(
    engine: &HookEngine,
    out: &mut S,
) {
    let now = SystemTime::now();
    let hooks = engine.hooks.list("*", now);
    for info in hooks.into_iter().chain(engine.hooks.list_chans("*", now)) {
        // Saturating: a huge EX is "never", and must stay so, not wrap
        // into the past (or panic) when the snapshot is written.
        let pxat = info
            .ttl
            .map(|t| unix_ms(now).saturating_add((t * 1000.0) as i64));
        let policy = engine.hooks.outbox().hook_override(&info.def.name);
        let lifecycle = engine.hooks.hook_lifecycle(&info.def.name);
        out.command(&logged_sethook(&info.def, pxat, policy.as_ref(), lifecycle));
    }
}

/// `DELHOOK name`, `PDELHOOK pattern`, `DELCHAN name` or `PDELCHAN
/// pattern`: removes hooks (or channels) and commits the command when any
/// was removed.
///
/// # Errors
///
/// A bad argument, or the log's failure.
pub(crate) fn del(
    core: &mut Core,
    engine: &HookEngine,
    w: &Writer<'_>,
    ctx: &Ctx,
    cmd: Cmd,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let pattern = text(&args[1])?;
    let h = &engine.hooks;
    let (n, logged) = match cmd {
        Cmd::Pdelhook => (h.pdel_hooks(pattern).len(), b"pdelhook".as_slice()),
        Cmd::Pdelchan => (h.pdel_chans(pattern).len(), b"pdelchan".as_slice()),
        Cmd::Delchan => (usize::from(h.del_chan(pattern)), b"delchan".as_slice()),
        _ => (usize::from(h.del_hook(pattern)), b"delhook".as_slice()),
    };
    if n > 0 {
        core.commit(w, Record::new(cmd, &[logged, pattern.as_bytes()], "", None))?;
    }
    Ok(ctx.ok_or_int(n as i64))
}

/// `HOOKS pattern` or `CHANS pattern`, in Tile38's shapes: a channel's JSON
/// has no endpoints, and its RESP form shows `local://name`.
///
/// # Errors
///
/// A bad argument.
pub(crate) fn list(engine: &HookEngine, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let chans = lower(&args[0]) == "chans";
    let hooks = if chans {
        engine.hooks.list_chans(text(&args[1])?, SystemTime::now())
    } else {
        engine.hooks.list(text(&args[1])?, SystemTime::now())
    };
    let endpoints = |d: &HookDef| -> Vec<String> {
        if chans {
            vec![format!("local://{}", d.name)]
        } else {
            d.endpoints.iter().map(|e| e.url().to_owned()).collect()
        }
    };
    Ok(if ctx.json {
        let mut body = String::from(if chans {
            ",\"chans\":["
        } else {
            ",\"hooks\":["
        });
        for (n, h) in hooks.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            let d = &h.def;
            let ttl = h.ttl.map_or(-1, |t| t.ceil() as i64);
            let _ = write!(
                body,
                "{{\"name\":{},\"key\":{},\"ttl\":{ttl}",
                json_str(&d.name),
                json_str(&d.key)
            );
            if !chans {
                let eps: Vec<String> = d.endpoints.iter().map(|e| json_str(e.url())).collect();
                let _ = write!(body, ",\"endpoints\":[{}]", eps.join(","));
            }
            body.push_str(",\"command\":[");
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
                        Reply::Array(endpoints(d).into_iter().map(Reply::bulk).collect()),
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
    })
}
