//! The searches: `SCAN key [options] [output]`, `SEARCH key [options]
//! [output]` (string objects by value) and `NEARBY|WITHIN|INTERSECTS key
//! [options] [output] AREA`, read in Tile38's order (token.go): first any
//! number of options (BUFFER, CURSOR, LIMIT, MATCH, WHERE, WHEREIN,
//! NOFIELDS, DISTANCE, ASC/DESC, SPARSE, and TIMEOUT, which is this
//! server's own), then at most one output (COUNT, IDS,
//! OBJECTS, POINTS, BOUNDS, HASHES precision), then the area. That order
//! is what tells `BOUNDS` the output from `BOUNDS` the area: after the
//! options the first BOUNDS is the output, unless (WITHIN and INTERSECTS
//! only, as Tile38) a number follows it, in which case it was the area.

use std::fmt::Write as _;
use std::time::Duration;

use geohook_db::{
    Area, AreaTest, Bounds, Collection, Database, Glob, Hit, Item, Object, Page, Point, SearchOpts,
};

use crate::cmd::args::{self, Args};
use crate::cmd::ctx::{json_str, CmdError, Ctx};
use crate::cmd::expr::{self, Expr, Filter};
use crate::cmd::render::{
    bounds_json, bounds_resp, fields_resp, fnum, jnum, no_position, point_json, point_resp,
    precision, Output,
};
use crate::cmd::shapes;
use crate::cmd::sliced;
use crate::cmd::sparse;
use crate::cmd::spec::Cmd;
use crate::cmd::test::clip_json;
use geohook_resp::{self as resp, Reply};
use parking_lot::RwLock;

/// Tile38's default LIMIT for searches.
const DEFAULT_LIMIT: usize = 100;

/// Where a search looks.
#[derive(Debug)]
pub(super) enum Scope {
    /// The whole collection, in id order.
    All,
    /// The collection's string objects, in value order (SEARCH).
    Values,
    /// Nearest first from a point, optionally within a radius in meters.
    Nearby(Point, Option<f64>),
    /// Objects fully inside the area.
    Within(Area),
    /// Objects that intersect the area.
    Intersects(Area),
}

/// A parsed search.
#[derive(Debug)]
pub(super) struct Search<'a> {
    pub(super) key: &'a str,
    /// What geohook-db applies during its walk: cursor, limit, MATCH,
    /// inclusive WHERE ranges, order.
    pub(super) opts: SearchOpts,
    /// The filters geohook-db cannot apply (see `expr`), checked here.
    filters: Vec<Filter>,
    pub(super) out: Output,
    nofields: bool,
    distance: bool,
    pub(super) scope: Scope,
    /// `CLIP` on INTERSECTS: each object is returned cut to this rectangle
    /// (the area's bounds).
    clip: Option<Bounds>,
    /// `SPARSE spread`: at most one object per cell of the area (see
    /// [`sparse`]).
    spread: Option<u8>,
    /// `TIMEOUT seconds` given as an option: the search's own deadline,
    /// counted from the command's start like the `TIMEOUT` prefix's.
    timeout: Option<Duration>,
}

/// The command's name in Tile38's "X is not allowed for CMD" errors.
fn upper(cmd: Cmd) -> &'static str {
    match cmd {
        Cmd::Scan => "SCAN",
        Cmd::Search => "SEARCH",
        Cmd::Nearby => "NEARBY",
        Cmd::Within => "WITHIN",
        _ => "INTERSECTS",
    }
}

impl<'a> Search<'a> {
    /// Parses a search; a `GET key id` area is read from `db` at `now`.
    fn parse(
        cmd: Cmd,
        name: &'static str,
        all: &'a [Vec<u8>],
        db: &Database,
        now: i64,
    ) -> Result<Search<'a>, CmdError> {
        let mut a = Args::new(all, 1, name);
        let key = a.text()?;
        let mut opts = SearchOpts::default();
        let mut filters = Vec::new();
        let mut limit: Option<usize> = None;
        let mut nofields = false;
        let mut distance = false;
        let mut buffer: Option<f64> = None;
        let mut order: Option<bool> = None;
        let mut clip = false;
        let mut cursor_given = false;
        let mut spread: Option<&[u8]> = None;
        let mut timeout: Option<Duration> = None;
        // The options, in any order and number; then at most one output.
        // Options after the output are accepted too (a superset of
        // Tile38, which wants them before it): they are never ambiguous.
        let mut out = Output::Objects;
        for round in 0..2 {
            while let Some(word) = a.peek_keyword() {
                match word.as_bytes() {
                    b"buffer" => {
                        a.next()?;
                        buffer = Some(args::meters(a.next()?)?);
                    }
                    b"cursor" => {
                        a.next()?;
                        opts.cursor = args::uint(a.next()?)?;
                        cursor_given = true;
                    }
                    b"sparse" => {
                        a.next()?;
                        if spread.is_some() {
                            return Err(CmdError::Msg("duplicate argument 'SPARSE'".into()));
                        }
                        // Read after the output, where Tile38 reads it.
                        spread = Some(a.next()?);
                    }
                    b"timeout" => {
                        a.next()?;
                        if timeout.is_some() {
                            return Err(CmdError::Msg("duplicate argument 'TIMEOUT'".into()));
                        }
                        timeout = Some(option_timeout(a.next()?)?);
                    }
                    b"limit" => {
                        a.next()?;
                        limit = Some(usize::try_from(args::uint(a.next()?)?).unwrap_or(usize::MAX));
                    }
                    b"match" => {
                        a.next()?;
                        opts.matches.push(args::pattern(a.next()?)?.to_string());
                    }
                    b"where" => {
                        a.next()?;
                        if expr::is_expression(&all[a.pos()..]) {
                            filters.push(Filter::Expr(Expr::parse(a.text()?)?));
                        } else {
                            let field = a.text()?;
                            let (lo, hi) = (a.text()?, a.text()?);
                            filters.push(Filter::where_field(field, lo, hi));
                        }
                    }
                    b"wherein" => {
                        a.next()?;
                        let field = a.text()?.to_string();
                        let count_arg = a.next()?;
                        let count = args::uint(count_arg)?;
                        // The count is checked against what is there before
                        // anything is reserved for it.
                        if count > a.left() as u64 {
                            return Err(CmdError::Arity(name));
                        }
                        let values = (0..count)
                            .map(|_| args::field_value(a.next()?))
                            .collect::<Result<Vec<_>, _>>()?;
                        filters.push(Filter::In { field, values });
                    }
                    b"nofields" => {
                        a.next()?;
                        nofields = true;
                    }
                    b"distance" => {
                        a.next()?;
                        distance = true;
                    }
                    b"clip" => {
                        a.next()?;
                        if clip {
                            return Err(CmdError::Msg("duplicate argument 'CLIP'".into()));
                        }
                        clip = true;
                    }
                    b"asc" | b"desc" => {
                        a.next()?;
                        let desc = word.as_bytes() == b"desc";
                        if order.is_some() {
                            let w = if desc { "DESC" } else { "ASC" };
                            return Err(CmdError::Msg(format!("duplicate argument '{w}'")));
                        }
                        order = Some(desc);
                    }
                    _ => break,
                }
            }
            if round == 1 {
                break;
            }
            if let Some(word) = a.peek_keyword() {
                let mut taken = true;
                match word.as_bytes() {
                    b"count" => out = Output::Count,
                    b"ids" => out = Output::Ids,
                    b"objects" => out = Output::Objects,
                    b"points" => out = Output::Points,
                    b"bounds" => out = Output::Bounds,
                    b"hashes" => {
                        a.next()?;
                        out = Output::Hashes(precision(a.next()?)?);
                        taken = false;
                    }
                    _ if matches!(cmd, Cmd::Scan | Cmd::Search) => {
                        return Err(CmdError::invalid(a.next()?))
                    }
                    _ => taken = false,
                }
                if taken {
                    a.next()?;
                }
            }
        }
        // Tile38's order of refusals: SPARSE on SCAN or SEARCH, then ASC or
        // DESC on the others, then LIMIT or CURSOR with SPARSE.
        if spread.is_some() && matches!(cmd, Cmd::Scan | Cmd::Search) {
            return Err(CmdError::Msg(format!(
                "SPARSE is not allowed for {}",
                upper(cmd)
            )));
        }
        if let Some(desc) = order {
            if !matches!(cmd, Cmd::Scan | Cmd::Search) {
                let w = if desc { "DESC" } else { "ASC" };
                return Err(CmdError::Msg(format!(
                    "{w} is not allowed for {}",
                    upper(cmd)
                )));
            }
            opts.desc = desc;
        }
        if spread.is_some() && limit.is_some() {
            return Err(CmdError::Msg(
                "LIMIT is not allowed when SPARSE is specified".into(),
            ));
        }
        if spread.is_some() && cursor_given {
            return Err(CmdError::Msg(
                "CURSOR is not allowed when SPARSE is specified".into(),
            ));
        }
        let spread = spread.map(sparse::spread).transpose()?;
        if cmd == Cmd::Search && !matches!(out, Output::Count | Output::Ids | Output::Objects) {
            return Err(CmdError::Msg(
                "SEARCH returns string objects: use COUNT, IDS or OBJECTS".into(),
            ));
        }
        // Inclusive ranges go to the database walk; the other filters stay
        // here.
        let mut kept = Vec::new();
        for f in filters {
            match f.as_db_where() {
                Some(w) => opts.wheres.push(w),
                None => kept.push(f),
            }
        }
        // SPARSE lifts the limit: the cells bound the page.
        opts.limit = match out {
            _ if spread.is_some() => None,
            Output::Count => limit,
            _ => Some(limit.unwrap_or(DEFAULT_LIMIT)),
        };
        let grow = |area: Area| match buffer {
            Some(m) => shapes::buffer(area, m),
            None => Ok(area),
        };
        let scope = match cmd {
            Cmd::Nearby => {
                let word = a.next()?;
                if !word.eq_ignore_ascii_case(b"point") {
                    return Err(CmdError::invalid(word));
                }
                let p = a.point()?;
                let meters = if a.done() { None } else { Some(a.finite()?) };
                if meters.is_some_and(|m| m < 0.0) {
                    return Err(CmdError::invalid(&all[a.pos() - 1]));
                }
                // Tile38 reads CLIPBY after a radius too, and its clipping
                // leaves a circle whole: the rectangles are checked, and
                // change nothing.
                while a.peek_is("clipby") {
                    a.next()?;
                    clipby_rect(&mut a, db, now)?;
                }
                // A buffer widens the radius (Tile38 buffers the circle).
                Scope::Nearby(p, meters.map(|m| m + buffer.unwrap_or(0.0)))
            }
            Cmd::Within | Cmd::Intersects => {
                // `BOUNDS` then a number: the output was not given, and
                // BOUNDS is the area (Tile38's rule).
                // CLIP cuts by a rectangle, so it refuses the areas that are
                // not one, with Tile38's words.
                if let Some(w) = a.peek_keyword().filter(|w| {
                    clip && matches!(w.as_bytes(), b"circle" | b"object" | b"sector" | b"get")
                }) {
                    let w = String::from_utf8_lossy(w.as_bytes());
                    return Err(CmdError::invalid(
                        format!("cannot clip with {w}").as_bytes(),
                    ));
                }
                let mut area =
                    if out == Output::Bounds && a.peek().is_some_and(|w| args::finite(w).is_ok()) {
                        out = Output::Objects;
                        if spread.is_none() {
                            opts.limit = Some(limit.unwrap_or(DEFAULT_LIMIT));
                        }
                        Area::Bounds(a.bounds()?)
                    } else {
                        a.area(db, now, false)?
                    };
                // `CLIPBY rect`, any number of times: the area cut by each
                // rectangle in turn, before BUFFER grows it (Tile38's order).
                while a.peek_is("clipby") {
                    a.next()?;
                    let rect = clipby_rect(&mut a, db, now)?;
                    area = clip_area(area, &rect);
                }
                let area = grow(area)?;
                if cmd == Cmd::Within {
                    Scope::Within(area)
                } else {
                    Scope::Intersects(area)
                }
            }
            Cmd::Search => Scope::Values,
            _ => Scope::All,
        };
        a.finish()?;
        // Tile38 clips INTERSECTS only: what WITHIN returns is inside the
        // area already, and the other searches take the word and ignore it.
        let clip = match &scope {
            Scope::Intersects(area) if clip => area.bounds(),
            _ => None,
        };
        Ok(Search {
            key,
            opts,
            filters: kept,
            out,
            nofields,
            distance: distance && cmd == Cmd::Nearby,
            scope,
            clip,
            spread,
            timeout,
        })
    }

    /// The context the search runs in: `ctx` with the earlier of its own
    /// deadline (a `TIMEOUT` prefix) and this search's `TIMEOUT` option.
    fn ctx(&self, ctx: &Ctx) -> Ctx {
        let own = self.timeout.and_then(|t| ctx.start.checked_add(t));
        Ctx {
            deadline: match (ctx.deadline, own) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            ..*ctx
        }
    }
}

/// The rectangle after `CLIPBY`: `BOUNDS`, `HASH`, `TILE` or `QUADKEY`, as
/// Tile38 takes them.
///
/// # Errors
///
/// `invalid argument 'cannot clipby <type>'` for any other area type (in
/// lower case, as Tile38 writes it), an argument count error when the type
/// is missing, and the area's own errors.
pub(crate) fn clipby_rect(a: &mut Args<'_>, db: &Database, now: i64) -> Result<Bounds, CmdError> {
    let Some(kind) = a.peek_lower() else {
        return Err(a.next().unwrap_err());
    };
    if !matches!(kind.as_str(), "bounds" | "hash" | "tile" | "quadkey") {
        return Err(CmdError::Invalid(format!("cannot clipby {kind}")));
    }
    a.area(db, now, false)?
        .bounds()
        .ok_or_else(|| CmdError::Invalid(format!("cannot clipby {kind}")))
}

/// `area` cut to `rect` by TEST's clipping, as an object area. A circle is
/// left whole, as Tile38 leaves it; an area the cut leaves empty matches
/// nothing.
pub(crate) fn clip_area(area: Area, rect: &Bounds) -> Area {
    let obj = match area {
        Area::Circle { .. } => return area,
        Area::Point(p) => Object::Point(p),
        Area::Bounds(b) => Object::Bounds(Box::new(b)),
        Area::Hash(h) => Object::Bounds(Box::new(h.bounds())),
        Area::Object(o) => o,
    };
    // A string object, as an area, matches nothing.
    Area::Object(
        Object::from_geojson_any_range(&clip_json(&obj, rect))
            .unwrap_or_else(|_| Object::String(String::new().into())),
    )
}

/// The seconds of a `TIMEOUT` search option, read as the `TIMEOUT`
/// prefix reads its own: a number, zero or more.
///
/// # Errors
///
/// `invalid argument` for anything else.
fn option_timeout(arg: &[u8]) -> Result<Duration, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| CmdError::invalid(arg))
}

/// Runs SCAN, SEARCH, NEARBY, WITHIN or INTERSECTS (`cmd`, named `name`),
/// reading the database under `lock` (seen through `view`); its reply may
/// hold at most `max_reply` bytes of items.
///
/// A search of a large collection in id order (SCAN), in value order
/// (SEARCH), in distance order (NEARBY) or over an area (WITHIN,
/// INTERSECTS) is walked in bounded slices with the lock let go
/// between them, so that writers are never held up by more than one slice
/// (see [`sliced`] for what such a walk sees of writes made meanwhile) and
/// the context's deadline (`TIMEOUT`) stops it as it walks; every other
/// search runs under one read lock and is checked against the deadline
/// when it ends.
///
/// # Errors
///
/// A bad argument or area, an output the objects cannot give, a page
/// whose reply would exceed `max_reply` (refused whole rather than cut, so
/// that no client mistakes a short page for the end of the walk),
/// `timeout` past the deadline, or a walk a RENAME made unsure of its key.
pub(crate) fn search_in<T>(
    lock: &RwLock<T>,
    view: impl Fn(&T) -> &Database,
    ctx: &Ctx,
    cmd: Cmd,
    name: &'static str,
    args: &[Vec<u8>],
    max_reply: usize,
) -> Result<Reply, CmdError> {
    // Declared before the guard, so dropped after it: the lock is only held
    // at the normal policy, even by a heavy thread at SCHED_IDLE.
    let boost = crate::boost::Boost::hold();
    let guard = lock.read();
    let db = view(&guard);
    let s = Search::parse(cmd, name, args, db, ctx.now())?;
    let ctx = &s.ctx(ctx);
    if let Some(spread) = s.spread {
        let reply = run_sparse(db, ctx, &s, spread, max_reply);
        drop(guard);
        drop(boost);
        ctx.check_deadline()?;
        return reply;
    }
    if short_page(&s) || !walks_in_slices(db, &s, ctx.now()) {
        let reply = run_parsed(db, ctx, &s, max_reply);
        drop(guard);
        drop(boost);
        ctx.check_deadline()?;
        return reply;
    }
    if let Some(reply) = run_short_area(lock, db, ctx, &s, max_reply) {
        drop(guard);
        drop(boost);
        ctx.check_deadline()?;
        return reply;
    }
    drop(guard);
    // The walk takes the boost again with each slice's lock.
    drop(boost);
    let reply = run_sliced(lock, view, &s, ctx, max_reply)?;
    ctx.check_deadline()?;
    Ok(reply)
}

/// Runs a `SPARSE` search under the caller's read lock: the cells of the
/// area's bounding rectangle (see [`sparse`]), each object a cell keeps
/// put to the filters, in cell order, with no limit and cursor 0. A NEARBY
/// is an INTERSECTS of its circle, as in Tile38, and needs a radius.
fn run_sparse(
    db: &Database,
    ctx: &Ctx,
    s: &Search<'_>,
    spread: u8,
    max_reply: usize,
) -> Result<Reply, CmdError> {
    let now = ctx.now();
    let Some(c) = db.collection(s.key) else {
        return render(ctx, &Page::default(), s, max_reply);
    };
    let circle;
    let (area, within, from) = match &s.scope {
        Scope::Nearby(p, Some(meters)) => {
            circle = Area::Circle {
                center: *p,
                meters: *meters,
            };
            (&circle, false, Some(*p))
        }
        Scope::Nearby(_, None) => {
            return Err(CmdError::Msg(
                "cannot use SPARSE without a point distance".into(),
            ))
        }
        Scope::Within(area) => (area, true, None),
        Scope::Intersects(area) => (area, false, None),
        Scope::All | Scope::Values => {
            return Err(CmdError::Msg("SPARSE is not allowed here".into()))
        }
    };
    let Some(rect) = area.bounds() else {
        return render(ctx, &Page::default(), s, max_reply);
    };
    let test = |item: &Item| {
        if within {
            item.object().within(area)
        } else {
            item.object().intersects(area)
        }
    };
    let globs: Vec<Glob> = s.opts.matches.iter().map(|p| Glob::new(p)).collect();
    let mut hits = Vec::new();
    let mut count = 0;
    sparse::walk(
        c,
        &rect,
        spread,
        now,
        ctx.deadline,
        &test,
        &mut |id, item| {
            let h = Hit {
                id,
                item,
                distance: from
                    .filter(|_| s.distance)
                    .and_then(|p| item.object().distance_to(&p)),
            };
            if !passes(&h, s, &globs, false, false) {
                return Ok(sliced::Flow::Go);
            }
            count += 1;
            if s.out != Output::Count {
                // Every hit adds at least four bytes to any reply (`"x",`), so
                // a page past this many is refused before it is all held.
                if hits.len() >= max_reply / 4 {
                    return Err(too_large(max_reply));
                }
                hits.push(h);
            }
            Ok(sliced::Flow::Go)
        },
    )?;
    if s.out == Output::Count {
        return Ok(count_reply(ctx, count, 0));
    }
    render(ctx, &Page { hits, cursor: 0 }, s, max_reply)
}

/// Whether a search is walked in slices: a SCAN, SEARCH, NEARBY, WITHIN or
/// INTERSECTS (server-side filters or not) of a collection larger than one
/// slice. The choice depends on the collection's size, not on the page
/// asked for, so that the pages of one walk are numbered alike (a cursor
/// counts the candidates of the walk that gave it). A NEARBY around a
/// centre outside the lat/lon range is not: its resumed walks could not
/// leave out what lies behind their front (see
/// [`geohook_db::Collection::nearest_after`]), and each slice would walk
/// again everything before it.
fn walks_in_slices(db: &Database, s: &Search<'_>, now: i64) -> bool {
    let sliceable = match &s.scope {
        Scope::All | Scope::Within(_) | Scope::Intersects(_) => true,
        Scope::Nearby(p, _) => in_range(p),
        Scope::Values => true,
    };
    sliceable
        && db
            .collection(s.key)
            .is_some_and(|c| c.len(now) > sliced::slice())
}

/// A NEARBY or SCAN page that the first `cursor + limit` live candidates
/// fill: no MATCH, WHERE, WHEREIN or expression can pass over candidates,
/// so the walk visits at most that many live ones (and the expired ones the
/// expiry task has not removed yet), no more than one slice, and runs under
/// the caller's lock as one slice would, without the sliced walk's cost of
/// copying its hits out (see the NEARBY figure in the README).
fn short_page(s: &Search<'_>) -> bool {
    matches!(s.scope, Scope::Nearby(..) | Scope::All) && unfiltered_within_a_slice(s)
}

/// No MATCH, WHERE, WHEREIN or expression, and a LIMIT that with the
/// cursor stays within one slice: [`short_page`]'s and [`short_area`]'s
/// common condition.
fn unfiltered_within_a_slice(s: &Search<'_>) -> bool {
    s.filters.is_empty()
        && s.opts.matches.is_empty()
        && s.opts.wheres.is_empty()
        && s.opts.limit.is_some_and(|limit| {
            usize::try_from(s.opts.cursor)
                .ok()
                .and_then(|c| c.checked_add(limit))
                .is_some_and(|n| n <= sliced::slice())
        })
}

/// A WITHIN or INTERSECTS page that the sliced walk would take from its
/// first slice, walked under the caller's lock (`db` read from `lock`)
/// without the slices' copies: the page's hits and cursor are the sliced
/// walk's, because the candidates come in the same order (the first range
/// is the whole area when [`sliced::first_width`] says so, and this is
/// asked only then) and the page is done within one slice.
///
/// `None` when the search is not such a page (a filter, a page past one
/// slice, more objects expected in the area than a slice, a circle around
/// a centre out of range), or when the walk reads a slice of candidates
/// without finishing the page, or a writer waits once it has read
/// [`sliced::WRITER_FLOOR`]: the caller then walks in slices from the
/// start, having spent at most one slice here, and a writer waits for
/// about as long as behind a sliced walk's first slice.
fn short_area<'a, T>(
    lock: &RwLock<T>,
    db: &'a Database,
    s: &Search<'_>,
    now: i64,
) -> Option<Page<'a>> {
    let (area, within) = match &s.scope {
        Scope::Within(a) => (a, true),
        Scope::Intersects(a) => (a, false),
        _ => return None,
    };
    if !unfiltered_within_a_slice(s) || off_range(&s.scope).is_some() {
        return None;
    }
    let slice = sliced::slice();
    let limit = s.opts.limit?;
    if limit == 0 {
        return Some(Page::default());
    }
    let c = db.collection(s.key)?;
    let b = area.bounds()?;
    if sliced::first_width(c, &b, now, slice) != f64::INFINITY {
        return None;
    }
    let test = area.test();
    let mut hits = Vec::with_capacity(limit.min(64));
    let cands = c.area_part(area, f64::NEG_INFINITY..f64::INFINITY, now);
    for (pos, (id, item)) in (0u64..).zip(cands) {
        let n = usize::try_from(pos).unwrap_or(usize::MAX);
        if n >= slice || sliced::yields(lock, n) {
            return None;
        }
        if pos < s.opts.cursor {
            continue;
        }
        let inside = if within {
            test.within(item.object())
        } else {
            test.intersects(item.object())
        };
        if inside {
            hits.push(hit(id, item));
            if hits.len() == limit {
                return Some(Page {
                    hits,
                    cursor: pos + 1,
                });
            }
        }
    }
    Some(Page { hits, cursor: 0 })
}

/// [`short_area`]'s page rendered, or `None` as it says.
fn run_short_area<T>(
    lock: &RwLock<T>,
    db: &Database,
    ctx: &Ctx,
    s: &Search<'_>,
    max_reply: usize,
) -> Option<Result<Reply, CmdError>> {
    let page = short_area(lock, db, s, ctx.now())?;
    Some(render(ctx, &page, s, max_reply))
}

/// The least a hit adds to a reply besides its id (RESP's `$n\r\n…\r\n`
/// and an array's share), for [`Found`]'s bound.
const HIT_FRAMING: usize = 16;

/// What a sliced walk keeps of a search: the count, and for a page a copy
/// of each hit (the walk lets the lock go, so it cannot keep references).
struct Found<'f, 'a> {
    s: &'f Search<'a>,
    /// The area's exact test, on top of the walk's candidates: WITHIN's
    /// when true, else INTERSECTS'.
    area: Option<(AreaTest<'f>, bool)>,
    post: &'f Post<'f>,
    globs: Vec<Glob>,
    /// MATCH applies to a string object's value (SEARCH).
    match_value: bool,
    /// The candidates numbered so far (the cursor's unit).
    pos: u64,
    count: usize,
    /// Each hit's id, item and distance (NEARBY's).
    hits: Vec<(Box<str>, Item, Option<f64>)>,
    /// A lower bound of the reply the copies make, held to at most twice
    /// the reply cap.
    held: usize,
    max_held: usize,
    cursor: u64,
}

impl Found<'_, '_> {
    /// The copies as a page to render.
    fn page(&self) -> Page<'_> {
        Page {
            hits: self
                .hits
                .iter()
                .map(|(id, item, distance)| Hit {
                    id,
                    item,
                    distance: *distance,
                })
                .collect(),
            cursor: self.cursor,
        }
    }
}

impl sliced::Visitor for Found<'_, '_> {
    type Mark = (u64, usize, usize);

    fn visit(
        &mut self,
        id: &str,
        item: &Item,
        distance: Option<f64>,
    ) -> Result<sliced::Flow, CmdError> {
        // A SEARCH counted in id order meets every object.
        if self.match_value && !matches!(item.object(), geohook_db::Object::String(_)) {
            return Ok(sliced::Flow::Go);
        }
        let pos = self.pos;
        self.pos += 1;
        if pos < self.s.opts.cursor {
            return Ok(sliced::Flow::Go);
        }
        let inside = match &self.area {
            Some((t, true)) => t.within(item.object()),
            Some((t, false)) => t.intersects(item.object()),
            None => true,
        };
        let h = Hit { id, item, distance };
        if !inside || !passes(&h, self.s, &self.globs, self.match_value, false) {
            return Ok(sliced::Flow::Go);
        }
        match (self.post)(&h) {
            Step::Keep => {}
            Step::Skip => return Ok(sliced::Flow::Go),
            Step::Stop => return Ok(sliced::Flow::Done),
        }
        self.count += 1;
        if self.s.out != Output::Count {
            // A lower bound of what the hit adds to the reply (an id and
            // its framing at least), not the copy's own size: the cap is the
            // reply's, so an IDS page that fits is not refused for the
            // copies it needs, while the copies stay within a constant
            // multiple (the copy's size over this bound) of the cap.
            self.held += HIT_FRAMING
                + id.len()
                + match item.object() {
                    geohook_db::Object::String(v) => v.len(),
                    _ => 0,
                }
                + item.fields().len() * 64;
            if self.held > self.max_held {
                return Err(too_large(self.max_held / 2));
            }
            self.hits.push((id.into(), item.clone(), distance));
        }
        if self.s.opts.limit == Some(self.count) {
            self.cursor = pos + 1;
            return Ok(sliced::Flow::Done);
        }
        Ok(sliced::Flow::Go)
    }

    fn mark(&self) -> Self::Mark {
        (self.pos, self.count, self.held)
    }

    fn rollback(&mut self, (pos, count, held): Self::Mark) {
        if self.s.out != Output::Count {
            self.hits.truncate(self.hits.len() - (self.count - count));
        }
        (self.pos, self.count, self.held) = (pos, count, held);
    }
}

/// Walks a search in slices under `lock` ([`walks_in_slices`] said so)
/// and renders its reply with the lock let go.
fn run_sliced<T>(
    lock: &RwLock<T>,
    view: impl Fn(&T) -> &Database,
    s: &Search<'_>,
    ctx: &Ctx,
    max_reply: usize,
) -> Result<Reply, CmdError> {
    let ranged = off_range(&s.scope);
    let keep = |_: &Hit<'_>| Step::Keep;
    let (scope, post): (&Scope, &Post<'_>) = match &ranged {
        Some((scope, post)) => (scope, &**post),
        None => (&s.scope, &keep),
    };
    let (order, area) = match scope {
        Scope::Within(a) => (sliced::Order::Area(a), Some((a.test(), true))),
        Scope::Intersects(a) => (sliced::Order::Area(a), Some((a.test(), false))),
        Scope::Nearby(p, meters) => (sliced::Order::Nearby(p, *meters), None),
        // A count of every match needs no order: the id walk counts it
        // in one pass.
        Scope::Values if s.out == Output::Count && s.opts.cursor == 0 && s.opts.limit.is_none() => {
            (sliced::Order::Ids { desc: false }, None)
        }
        Scope::Values => (sliced::Order::Values { desc: s.opts.desc }, None),
        _ => (sliced::Order::Ids { desc: s.opts.desc }, None),
    };
    let mut found = Found {
        s,
        area,
        post,
        globs: s.opts.matches.iter().map(|p| Glob::new(p)).collect(),
        match_value: matches!(s.scope, Scope::Values),
        pos: 0,
        count: 0,
        // A small LIMIT is filled without regrowing (as geohook-db's own
        // walks do); a large one grows as hits come.
        hits: Vec::with_capacity(match s.out {
            Output::Count => 0,
            _ => s.opts.limit.unwrap_or(0).min(64),
        }),
        held: 0,
        max_held: max_reply.saturating_mul(2),
        cursor: 0,
    };
    if s.opts.limit != Some(0) {
        sliced::walk(
            lock,
            view,
            s.key,
            order,
            ctx.now(),
            ctx.deadline,
            &mut found,
        )?;
    }
    if s.out == Output::Count {
        return Ok(count_reply(ctx, found.count, found.cursor));
    }
    render(ctx, &found.page(), s, max_reply)
}

/// Runs a parsed search under the caller's read lock.
fn run_parsed(
    db: &Database,
    ctx: &Ctx,
    s: &Search<'_>,
    max_reply: usize,
) -> Result<Reply, CmdError> {
    let now = ctx.now();
    if let Some((scope, post)) = off_range(&s.scope) {
        let page = filtered(db, s, &scope, now, &post);
        return render(ctx, &page, s, max_reply);
    }
    let page = match (&s.scope, s.filters.is_empty()) {
        (Scope::Values, _) => match db.collection(s.key) {
            Some(c) => walk_values(c, s, now),
            None => Page::default(),
        },
        (Scope::All, false) => match db.collection(s.key) {
            Some(c) => walk_ids(c, s, now),
            None => Page::default(),
        },
        (Scope::All, true) => db.scan(s.key, &s.opts, now),
        (Scope::Nearby(p, meters), true) => db.nearby(s.key, p, *meters, &s.opts, now),
        (Scope::Within(area), true) => db.within(s.key, area, &s.opts, now),
        (Scope::Intersects(area), true) => db.intersects(s.key, area, &s.opts, now),
        (scope, false) => filtered(db, s, scope, now, &|_| Step::Keep),
    };
    render(ctx, &page, s, max_reply)
}

/// What a walk does with a candidate after the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Keep,
    Skip,
    /// The walk is past everything that can match (NEARBY's radius).
    Stop,
}

/// A test applied to each hit after the filters.
pub(super) type Post<'p> = dyn Fn(&Hit<'_>) -> Step + 'p;

fn in_range(p: &Point) -> bool {
    (-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lon)
}

/// A circle around a centre outside the lat/lon range (accepted as in
/// Tile38): geohook-db bounds a circle's candidates by a lat/lon window
/// clamped to the range, which would miss objects stored out of range
/// too. Such a search walks without the window instead and applies the
/// exact test here: NEARBY without its radius, cut where the distance
/// passes it (the walk is in distance order); WITHIN and INTERSECTS over
/// every spatial object, tested against the circle.
pub(super) fn off_range(scope: &Scope) -> Option<(Scope, Box<Post<'_>>)> {
    let everything = || {
        Area::Bounds(geohook_db::Bounds {
            sw: Point {
                lat: f64::MIN,
                lon: f64::MIN,
                z: None,
            },
            ne: Point {
                lat: f64::MAX,
                lon: f64::MAX,
                z: None,
            },
        })
    };
    match scope {
        Scope::Nearby(p, Some(r)) if !in_range(p) => {
            let r = *r;
            Some((
                Scope::Nearby(*p, None),
                Box::new(move |h: &Hit<'_>| {
                    if h.distance.is_some_and(|d| d > r) {
                        Step::Stop
                    } else {
                        Step::Keep
                    }
                }),
            ))
        }
        Scope::Within(area @ Area::Circle { center, .. }) if !in_range(center) => Some((
            Scope::Within(everything()),
            Box::new(move |h: &Hit<'_>| {
                if h.item.object().within(area) {
                    Step::Keep
                } else {
                    Step::Skip
                }
            }),
        )),
        Scope::Intersects(area @ Area::Circle { center, .. }) if !in_range(center) => Some((
            Scope::Intersects(everything()),
            Box::new(move |h: &Hit<'_>| {
                if h.item.object().intersects(area) {
                    Step::Keep
                } else {
                    Step::Skip
                }
            }),
        )),
        _ => None,
    }
}

/// Applies the cursor, MATCH (on the id, or on the value for SEARCH), the
/// WHERE ranges, the server-side filters, `post` and LIMIT to a walk whose
/// candidates are numbered from 0, as geohook-db does: a full page's
/// cursor is the position after its last hit, a short page's is 0. The
/// flag is true when the walk ended before its candidates did (the page
/// filled, or `post` stopped it).
fn take<'a>(
    cands: impl Iterator<Item = Hit<'a>>,
    s: &Search<'_>,
    match_value: bool,
    db_applied: bool,
    post: &Post<'_>,
) -> (Page<'a>, bool) {
    let limit = s.opts.limit;
    if limit == Some(0) {
        return (Page::default(), true);
    }
    let globs: Vec<Glob> = if db_applied {
        Vec::new()
    } else {
        s.opts.matches.iter().map(|p| Glob::new(p)).collect()
    };
    let mut hits = Vec::new();
    for (pos, h) in (0u64..).zip(cands) {
        if pos < s.opts.cursor {
            continue;
        }
        if !passes(&h, s, &globs, match_value, db_applied) {
            continue;
        }
        match post(&h) {
            Step::Keep => {}
            Step::Skip => continue,
            Step::Stop => return (Page { hits, cursor: 0 }, true),
        }
        hits.push(h);
        if limit == Some(hits.len()) {
            let page = Page {
                hits,
                cursor: pos + 1,
            };
            return (page, true);
        }
    }
    (Page { hits, cursor: 0 }, false)
}

/// MATCH (`globs`, on the id or with `match_value` on a string object's
/// value), unless `db_applied` the WHERE ranges, and the server-side
/// filters: true when the hit passes them all.
pub(super) fn passes(
    h: &Hit<'_>,
    s: &Search<'_>,
    globs: &[Glob],
    match_value: bool,
    db_applied: bool,
) -> bool {
    if !globs.is_empty() {
        let subject: &str = if match_value {
            match h.item.object() {
                geohook_db::Object::String(v) => v,
                _ => h.id,
            }
        } else {
            h.id
        };
        if !globs.iter().any(|g| g.is_match(subject)) {
            return false;
        }
    }
    if !db_applied && !s.opts.wheres.iter().all(|w| w.accepts(h.item.fields())) {
        return false;
    }
    s.filters.iter().all(|f| f.accepts(h.id, h.item))
}

fn hit<'a>(id: &'a str, item: &'a Item) -> Hit<'a> {
    Hit {
        id,
        item,
        distance: None,
    }
}

/// SCAN with filters geohook-db cannot apply: the live items in id order.
fn walk_ids<'a>(c: &'a Collection, s: &Search<'_>, now: i64) -> Page<'a> {
    let it = c.iter(now).map(|(id, item)| hit(id, item));
    if s.opts.desc {
        take(it.rev(), s, false, false, &|_| Step::Keep).0
    } else {
        take(it, s, false, false, &|_| Step::Keep).0
    }
}

/// SEARCH: the live string objects in order of value, then id (Tile38's
/// value index), MATCH applying to the value.
fn walk_values<'a>(c: &'a Collection, s: &Search<'_>, now: i64) -> Page<'a> {
    let mut strings: Vec<(&str, &str, &Item)> = c
        .iter(now)
        .filter_map(|(id, item)| match item.object() {
            geohook_db::Object::String(v) => Some((&**v, id, item)),
            _ => None,
        })
        .collect();
    strings.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    if s.opts.desc {
        strings.reverse();
    }
    take(
        strings.into_iter().map(|(_, id, item)| hit(id, item)),
        s,
        true,
        false,
        &|_| Step::Keep,
    )
    .0
}

/// A NEARBY, WITHIN or INTERSECTS with filters geohook-db cannot apply.
/// The database walks with its own filters from the start, and the
/// cursor here counts the database's hits; the database is asked for a
/// growing prefix until the page fills or the walk ends, so a small LIMIT
/// stays cheap when the filters pass often.
fn filtered<'a>(
    db: &'a Database,
    s: &Search<'_>,
    scope: &Scope,
    now: i64,
    post: &Post<'_>,
) -> Page<'a> {
    let want = s.opts.limit.map(|l| l as u64);
    let mut prefix = want.map(|l| s.opts.cursor.saturating_add(l.saturating_mul(2)).max(64));
    loop {
        let opts = SearchOpts {
            cursor: 0,
            limit: prefix.map(|p| usize::try_from(p).unwrap_or(usize::MAX)),
            ..s.opts.clone()
        };
        let page = match scope {
            Scope::Nearby(p, meters) => db.nearby(s.key, p, *meters, &opts, now),
            Scope::Within(area) => db.within(s.key, area, &opts, now),
            Scope::Intersects(area) => db.intersects(s.key, area, &opts, now),
            Scope::All | Scope::Values => db.scan(s.key, &opts, now),
        };
        let exhausted = page.cursor == 0;
        let (result, done) = take(page.hits.into_iter(), s, false, true, post);
        if done || exhausted {
            return result;
        }
        prefix = prefix.map(|p| p.saturating_mul(4));
    }
}

/// The error for a page whose reply would exceed `max_reply` bytes.
pub(super) fn too_large(max_reply: usize) -> CmdError {
    CmdError::Msg(format!(
        "reply too large (over {max_reply} bytes): lower LIMIT and page with CURSOR"
    ))
}

fn render(ctx: &Ctx, page: &Page<'_>, s: &Search<'_>, max_reply: usize) -> Result<Reply, CmdError> {
    let (out, nofields, distance) = (s.out, s.nofields, s.distance);
    let clip = s.clip.as_ref();
    let count = page.hits.len();
    if out == Output::Count {
        return Ok(count_reply(ctx, count, page.cursor));
    }
    let with_fields =
        !nofields && out != Output::Ids && page.hits.iter().any(|h| !h.item.fields().is_empty());
    if ctx.json {
        // The field names of every hit, sorted; each hit lists its values in
        // that order (Tile38's "fields" array), so the reply holds at least
        // two bytes (`0,`) per name per hit: a page whose hits each carry a
        // field of their own grows with the square of its size. That lower
        // bound is checked before anything is built.
        let mut names: Vec<&str> = Vec::new();
        if with_fields {
            let set: std::collections::BTreeSet<&str> = page
                .hits
                .iter()
                .flat_map(|h| h.item.fields().iter().map(|(n, _)| n))
                .collect();
            names.extend(set);
        }
        if names.len().saturating_mul(count).saturating_mul(2) > max_reply {
            return Err(too_large(max_reply));
        }
        // Items are written straight into one list, checked against the cap
        // as it grows, rather than kept apart and joined (a second copy).
        let mut items = String::new();
        for h in &page.hits {
            let item = json_item(h, out, &names, distance, clip)?;
            if items.len() + item.len() + 1 > max_reply {
                return Err(too_large(max_reply));
            }
            if !items.is_empty() {
                items.push(',');
            }
            items.push_str(&item);
        }
        let list_name = match out {
            Output::Ids => "ids",
            Output::Points => "points",
            Output::Bounds => "bounds",
            Output::Hashes(_) => "hashes",
            _ => "objects",
        };
        let mut body = String::new();
        if !names.is_empty() {
            let n: Vec<String> = names.iter().map(|n| json_str(n)).collect();
            let _ = write!(body, ",\"fields\":[{}]", n.join(","));
        }
        let _ = write!(
            body,
            ",\"{list_name}\":[{items}],\"count\":{count},\"cursor\":{}",
            page.cursor
        );
        return Ok(ctx.ok_json(&body));
    }
    // `[cursor, [item, …]]`, written straight into one buffer: a search
    // reply is the hot path, and a tree of replies costs an allocation per
    // hit.
    let mut buf = Vec::with_capacity((24 + count * 24).min(max_reply).min(1 << 20));
    resp::encode_array_header(2, &mut buf);
    Reply::Int(page.cursor as i64).encode(&mut buf);
    resp::encode_array_header(count, &mut buf);
    for h in &page.hits {
        let clipped = clip.map(|r| clipped(h.item.object(), r));
        let obj = clipped.as_ref().unwrap_or(h.item.object());
        if buf.len() > max_reply {
            return Err(too_large(max_reply));
        }
        if out == Output::Ids && !distance {
            resp::encode_bulk(h.id.as_bytes(), &mut buf);
            continue;
        }
        let value = match out {
            Output::Ids => None,
            Output::Points => Some(point_resp(&obj.center().ok_or_else(no_position)?)),
            Output::Bounds => Some(bounds_resp(&obj.bounds().ok_or_else(no_position)?)),
            Output::Hashes(p) => Some(Reply::bulk(obj.geohash(p)?)),
            _ => Some(Reply::bulk(obj.to_resp_text().into_owned())),
        };
        let dist = if distance {
            h.distance.map(|d| Reply::bulk(fnum(d)))
        } else {
            None
        };
        let item = match (value, dist) {
            (None, None) => Reply::bulk(h.id),
            (None, Some(d)) => Reply::Array(vec![Reply::bulk(h.id), d]),
            (Some(v), d) => {
                let mut row = vec![Reply::bulk(h.id), v];
                if with_fields {
                    if let Some(f) = fields_resp(h.item) {
                        row.push(f);
                    }
                }
                if let Some(d) = d {
                    row.push(d);
                }
                Reply::Array(row)
            }
        };
        item.encode(&mut buf);
    }
    if buf.len() > max_reply {
        return Err(too_large(max_reply));
    }
    Ok(Reply::Encoded(buf))
}

/// The reply of a COUNT search.
fn count_reply(ctx: &Ctx, count: usize, cursor: u64) -> Reply {
    if ctx.json {
        ctx.ok_json(&format!(",\"count\":{count},\"cursor\":{cursor}"))
    } else {
        Reply::Int(count as i64)
    }
}

/// The object cut to `rect`, as CLIP returns it; an object the cut leaves
/// unreadable as GeoJSON is returned whole.
fn clipped(obj: &Object, rect: &Bounds) -> Object {
    Object::from_geojson_any_range(&clip_json(obj, rect)).unwrap_or_else(|_| obj.clone())
}

fn json_item(
    h: &Hit<'_>,
    out: Output,
    names: &[&str],
    distance: bool,
    clip: Option<&Bounds>,
) -> Result<String, CmdError> {
    let clipped = clip.map(|r| clipped(h.item.object(), r));
    let obj = clipped.as_ref().unwrap_or(h.item.object());
    let id = json_str(h.id);
    let dist = match (distance, h.distance) {
        (true, Some(d)) => format!(",\"distance\":{}", jnum(d)),
        _ => String::new(),
    };
    let fields = if names.is_empty() {
        String::new()
    } else {
        let v: Vec<String> = names
            .iter()
            .map(|n| h.item.fields().value(n).to_json())
            .collect();
        format!(",\"fields\":[{}]", v.join(","))
    };
    Ok(match out {
        Output::Ids if dist.is_empty() => id,
        Output::Ids => format!("{{\"id\":{id}{dist}}}"),
        Output::Points => {
            format!(
                "{{\"id\":{id},\"point\":{}{fields}{dist}}}",
                point_json(&obj.center().ok_or_else(no_position)?)
            )
        }
        Output::Bounds => {
            format!(
                "{{\"id\":{id},\"bounds\":{}{fields}{dist}}}",
                bounds_json(&obj.bounds().ok_or_else(no_position)?)
            )
        }
        Output::Hashes(p) => {
            format!(
                "{{\"id\":{id},\"hash\":{}{fields}{dist}}}",
                json_str(&obj.geohash(p)?)
            )
        }
        _ => format!("{{\"id\":{id},\"object\":{}{fields}{dist}}}", obj.to_json()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geohook_resp::Reply;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    fn cmd_of(line: &str) -> (Cmd, &'static str) {
        match line.split(' ').next().unwrap() {
            "SCAN" => (Cmd::Scan, "scan"),
            "SEARCH" => (Cmd::Search, "search"),
            "NEARBY" => (Cmd::Nearby, "nearby"),
            "WITHIN" => (Cmd::Within, "within"),
            _ => (Cmd::Intersects, "intersects"),
        }
    }

    /// What these tests read of a parse: spread, timeout, limit.
    type Parsed = (Option<u8>, Option<Duration>, Option<usize>);

    /// The parse's [`Parsed`] or its error.
    fn parse(line: &str) -> Result<Parsed, String> {
        let db = Database::new();
        let a = args(line);
        let (cmd, name) = cmd_of(line);
        Search::parse(cmd, name, &a, &db, 0)
            .map(|s| (s.spread, s.timeout, s.opts.limit))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn only_pages_the_first_candidates_fill_skip_the_slices() {
        let db = Database::new();
        let short = |line: &str| {
            let a = args(line);
            let (cmd, name) = cmd_of(line);
            short_page(&Search::parse(cmd, name, &a, &db, 0).unwrap())
        };
        assert!(short("NEARBY k LIMIT 10 POINT 1 1"));
        assert!(short("NEARBY k LIMIT 1000 CURSOR 24 IDS POINT 1 1 500"));
        assert!(short("SCAN k LIMIT 50 IDS"));
        assert!(
            !short("NEARBY k LIMIT 1000 CURSOR 25 POINT 1 1"),
            "past a slice"
        );
        assert!(!short("NEARBY k LIMIT 10000 POINT 1 1"));
        assert!(
            !short("NEARBY k MATCH a* LIMIT 10 POINT 1 1"),
            "MATCH skips"
        );
        assert!(!short("NEARBY k WHERE speed 0 10 LIMIT 10 POINT 1 1"));
        assert!(!short("NEARBY k WHEREIN speed 1 5 LIMIT 10 POINT 1 1"));
        assert!(
            !short("WITHIN k LIMIT 10 BOUNDS 0 0 1 1"),
            "the area test skips"
        );
    }

    #[test]
    fn sparse_is_read_and_refused_as_tile38_does() {
        for (line, spread) in [
            ("NEARBY k SPARSE 1 POINT 1 2 100", 1),
            ("NEARBY k SPARSE 2 DISTANCE IDS POINT 1 2 100", 2),
            ("WITHIN k SPARSE 16 BOUNDS 0 0 1 1", 16),
            ("WITHIN k SPARSE 3 COUNT BOUNDS 0 0 1 1", 3),
            ("INTERSECTS k MATCH a* SPARSE 4 IDS CIRCLE 1 2 30", 4),
            // BOUNDS then a number is the area, and SPARSE still holds.
            ("WITHIN k SPARSE 2 BOUNDS 0 0 1 1", 2),
        ] {
            assert_eq!(parse(line).unwrap(), (Some(spread), None, None), "{line}");
        }
        for (line, err) in [
            ("SCAN k SPARSE 1", "SPARSE is not allowed for SCAN"),
            ("SEARCH k SPARSE 1", "SPARSE is not allowed for SEARCH"),
            (
                "WITHIN k SPARSE 1 LIMIT 5 BOUNDS 0 0 1 1",
                "LIMIT is not allowed when SPARSE is specified",
            ),
            (
                "NEARBY k CURSOR 0 SPARSE 1 POINT 1 2 3",
                "CURSOR is not allowed when SPARSE is specified",
            ),
            (
                "WITHIN k SPARSE 1 SPARSE 2 BOUNDS 0 0 1 1",
                "duplicate argument 'SPARSE'",
            ),
            ("WITHIN k SPARSE 0 BOUNDS 0 0 1 1", "invalid argument '0'"),
            ("WITHIN k SPARSE 17 BOUNDS 0 0 1 1", "invalid argument '17'"),
            (
                "WITHIN k SPARSE 300 BOUNDS 0 0 1 1",
                "invalid argument '300'",
            ),
            ("WITHIN k SPARSE -1 BOUNDS 0 0 1 1", "invalid argument '-1'"),
            ("WITHIN k SPARSE x BOUNDS 0 0 1 1", "invalid argument 'x'"),
            (
                "NEARBY k SPARSE",
                "wrong number of arguments for 'nearby' command",
            ),
        ] {
            assert_eq!(parse(line).unwrap_err(), err, "{line}");
        }
    }

    #[test]
    fn the_timeout_option_is_read_as_the_prefix_reads_its_seconds() {
        for (line, limit) in [
            ("SCAN k TIMEOUT 0.5", Duration::from_millis(500)),
            ("SCAN k TIMEOUT 0 IDS", Duration::ZERO),
            ("SEARCH k MATCH a* TIMEOUT 2 COUNT", Duration::from_secs(2)),
            ("NEARBY k TIMEOUT 1 POINT 1 2", Duration::from_secs(1)),
            ("WITHIN k TIMEOUT 1 BOUNDS 0 0 1 1", Duration::from_secs(1)),
            (
                "INTERSECTS k IDS TIMEOUT 1 BOUNDS 0 0 1 1",
                Duration::from_secs(1),
            ),
        ] {
            assert_eq!(parse(line).unwrap().1, Some(limit), "{line}");
        }
        for (line, err) in [
            (
                "SCAN k TIMEOUT",
                "wrong number of arguments for 'scan' command",
            ),
            ("SCAN k TIMEOUT x", "invalid argument 'x'"),
            ("SCAN k TIMEOUT -1", "invalid argument '-1'"),
            ("SCAN k TIMEOUT NaN", "invalid argument 'NaN'"),
            ("SCAN k TIMEOUT inf", "invalid argument 'inf'"),
            ("SCAN k TIMEOUT 1 TIMEOUT 2", "duplicate argument 'TIMEOUT'"),
        ] {
            assert_eq!(parse(line).unwrap_err(), err, "{line}");
        }
    }

    /// The area a WITHIN parses to, as its bounds (min lat, min lon, max
    /// lat, max lon), or the parse's error.
    fn area_bounds(line: &str) -> Result<Option<(f64, f64, f64, f64)>, String> {
        let db = Database::new();
        let a = args(line);
        let (cmd, name) = cmd_of(line);
        let s = Search::parse(cmd, name, &a, &db, 0).map_err(|e| e.to_string())?;
        let (Scope::Within(area) | Scope::Intersects(area)) = &s.scope else {
            panic!("{line}: not an area search")
        };
        Ok(area
            .bounds()
            .map(|b| (b.sw.lat, b.sw.lon, b.ne.lat, b.ne.lon)))
    }

    #[test]
    fn clipby_cuts_the_area_by_each_rectangle_in_turn() {
        assert_eq!(
            area_bounds("WITHIN k IDS BOUNDS 0 0 2 2 CLIPBY BOUNDS 1 1 3 3").unwrap(),
            Some((1.0, 1.0, 2.0, 2.0))
        );
        assert_eq!(
            area_bounds(
                "INTERSECTS k BOUNDS 0 0 2 2 CLIPBY BOUNDS 1 1 3 3 CLIPBY BOUNDS 0 0 1.5 1.5"
            )
            .unwrap(),
            Some((1.0, 1.0, 1.5, 1.5))
        );
        // A polygon area is cut along the rectangle.
        let tri = r#"{"type":"Polygon","coordinates":[[[0,0],[4,0],[0,4],[0,0]]]}"#;
        assert_eq!(
            area_bounds(&format!("WITHIN k OBJECT {tri} CLIPBY BOUNDS 0 0 1 1")).unwrap(),
            Some((0.0, 0.0, 1.0, 1.0))
        );
        // A rectangle apart from the area leaves nothing to match.
        assert_eq!(
            area_bounds("WITHIN k BOUNDS 0 0 1 1 CLIPBY BOUNDS 5 5 6 6").unwrap(),
            None
        );
        // A circle is left whole, as in Tile38.
        let circle = area_bounds("WITHIN k CIRCLE 0 0 1000 CLIPBY BOUNDS 0 0 1 1").unwrap();
        assert!(circle.is_some_and(|b| b.0 < 0.0), "{circle:?}");
        // NEARBY takes CLIPBY after a radius and keeps its circle.
        let db = Database::new();
        let a = args("NEARBY k POINT 1 2 100 CLIPBY BOUNDS 0 0 1 1 CLIPBY HASH 9q");
        let s = Search::parse(Cmd::Nearby, "nearby", &a, &db, 0).unwrap();
        assert!(matches!(s.scope, Scope::Nearby(_, Some(m)) if m == 100.0));
        for (line, err) in [
            (
                "NEARBY k POINT 1 2 100 CLIPBY CIRCLE 0 0 1",
                "invalid argument 'cannot clipby circle'",
            ),
            (
                "NEARBY k POINT 1 2 CLIPBY BOUNDS 0 0 1 1",
                "invalid argument 'CLIPBY'",
            ),
        ] {
            let a = args(line);
            let e = Search::parse(Cmd::Nearby, "nearby", &a, &db, 0).unwrap_err();
            assert_eq!(e.to_string(), err, "{line}");
        }
        // BUFFER grows the area after the cut.
        let grown = area_bounds("WITHIN k BUFFER 1000 BOUNDS 0 0 2 2 CLIPBY BOUNDS 1 1 3 3")
            .unwrap()
            .unwrap();
        assert!(grown.0 < 1.0 && grown.2 > 2.0, "{grown:?}");
        for (line, err) in [
            (
                "WITHIN k BOUNDS 0 0 1 1 CLIPBY CIRCLE 0 0 10",
                "invalid argument 'cannot clipby circle'",
            ),
            (
                "WITHIN k BOUNDS 0 0 1 1 CLIPBY get k id",
                "invalid argument 'cannot clipby get'",
            ),
            (
                "WITHIN k BOUNDS 0 0 1 1 CLIPBY MVT 0 0 0",
                "invalid argument 'cannot clipby mvt'",
            ),
            (
                "WITHIN k BOUNDS 0 0 1 1 CLIPBY",
                "wrong number of arguments for 'within' command",
            ),
            (
                "WITHIN k BOUNDS 0 0 1 1 CLIPBY BOUNDS 0 0",
                "wrong number of arguments for 'within' command",
            ),
            (
                "WITHIN k BOUNDS 0 0 1 1 CLIPBY TILE 0 0 x",
                "invalid argument 'x'",
            ),
        ] {
            assert_eq!(area_bounds(line).unwrap_err(), err, "{line}");
        }
    }

    #[test]
    fn the_earlier_deadline_of_the_prefix_and_the_option_wins() {
        let db = Database::new();
        let a = args("SCAN k TIMEOUT 10");
        let s = Search::parse(Cmd::Scan, "scan", &a, &db, 0).unwrap();
        let ctx = Ctx::new(false);
        assert_eq!(
            s.ctx(&ctx).deadline,
            ctx.start.checked_add(Duration::from_secs(10))
        );
        let prefix = Ctx {
            deadline: ctx.start.checked_add(Duration::from_secs(1)),
            ..ctx
        };
        assert_eq!(s.ctx(&prefix).deadline, prefix.deadline);
        let a = args("SCAN k");
        let s = Search::parse(Cmd::Scan, "scan", &a, &db, 0).unwrap();
        assert_eq!(s.ctx(&prefix).deadline, prefix.deadline);
        assert_eq!(s.ctx(&ctx).deadline, None);
    }

    /// A collection of points around (33, -115) from `seed`: spread over
    /// degrees, clustered within metres, piled on one spot and mirrored
    /// about the centre's meridian (equal distances), some with fields, a
    /// few boxes and strings.
    /// Stores `o` as `id` in key `k`, with a `speed` field when `speed` is
    /// above 0.
    fn put(db: &mut Database, id: String, o: Object, speed: f64) {
        let fields: &[(&str, f64)] = if speed > 0.0 {
            &[("speed", speed)]
        } else {
            &[]
        };
        db.set(
            "k",
            &id,
            o,
            fields,
            None,
            geohook_db::SetCondition::Always,
            0,
        )
        .unwrap();
    }

    fn nearby_db(seed: u64) -> Database {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |m: f64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as f64
        };
        let mut db = Database::new();
        let pt = |lat: f64, lon: f64| Object::Point(Point::new(lat, lon).unwrap());
        for i in 0..600 {
            let o = pt(30.0 + next(600.0) / 100.0, -118.0 + next(600.0) / 100.0);
            put(&mut db, format!("s{i}"), o, next(60.0));
        }
        for i in 0..300 {
            let o = pt(33.0 + next(1000.0) * 1e-6, -115.0 + next(1000.0) * 1e-6);
            put(&mut db, format!("c{i}"), o, next(60.0));
        }
        for i in 0..100 {
            put(
                &mut db,
                format!("pile{i}"),
                pt(33.0005, -115.0005),
                next(60.0),
            );
        }
        for i in 0..100 {
            let (lat, d) = (33.0 + next(100.0) * 1e-4, next(100.0) * 1e-4);
            put(&mut db, format!("w{i}"), pt(lat, -115.0 - d), 0.0);
            put(&mut db, format!("e{i}"), pt(lat, -115.0 + d), 0.0);
        }
        for i in 0..30 {
            let (lat, lon) = (32.0 + next(200.0) / 100.0, -116.0 + next(200.0) / 100.0);
            let b = Bounds::new(lat, lon, lat + 0.01, lon + 0.02).unwrap();
            put(&mut db, format!("b{i}"), Object::Bounds(Box::new(b)), 0.0);
        }
        for i in 0..10 {
            put(&mut db, format!("t{i}"), Object::String("text".into()), 0.0);
        }
        db
    }

    /// A reply as text to compare, JSON without its elapsed time.
    fn text(r: Result<Reply, CmdError>) -> String {
        match r {
            Ok(Reply::Bulk(b)) => {
                let t = String::from_utf8(b).unwrap();
                t[..t.find(",\"elapsed\"").unwrap()].to_owned()
            }
            Ok(other) => {
                let mut buf = Vec::new();
                other.encode(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            }
            Err(e) => format!("error: {e}"),
        }
    }

    /// The pages of `line` from cursor 0, each asked from the last one's
    /// cursor, walked whole under one lock and walked in slices; the
    /// replies are in JSON, without their cursors when `cursors` is false.
    fn pages_both_ways(lock: &RwLock<Database>, line: &str, cursors: bool) -> [Vec<String>; 2] {
        let pages = |sliced: bool| {
            let mut out = Vec::new();
            let mut cursor = 0;
            loop {
                let a = args(&line.replace("CURSOR 0", &format!("CURSOR {cursor}")));
                let (cmd, name) = cmd_of(line);
                let ctx = Ctx::new(true);
                let db = lock.read();
                let s = Search::parse(cmd, name, &a, &db, ctx.now()).unwrap();
                let reply = if sliced {
                    assert!(walks_in_slices(&db, &s, ctx.now()), "{line}");
                    drop(db);
                    run_sliced(lock, |d| d, &s, &ctx, 1 << 30)
                } else {
                    run_parsed(&db, &ctx, &s, 1 << 30)
                };
                let t = text(reply);
                let v: serde_json::Value = serde_json::from_str(&format!("{t}}}")).unwrap();
                cursor = v["cursor"].as_u64().unwrap();
                let kept = if cursors {
                    t
                } else {
                    t[..t.find(",\"cursor\"").unwrap()].to_owned()
                };
                out.push(kept);
                if cursor == 0 {
                    return out;
                }
                assert!(out.len() < 10_000, "{line}: no end");
            }
        };
        [pages(false), pages(true)]
    }

    #[test]
    fn a_sliced_nearby_answers_as_one_walk_does() {
        for seed in 1..=4u64 {
            for slice in [7, 64, 1024] {
                sliced::set_slice(slice);
                let lock = RwLock::new(nearby_db(seed));
                let c = "POINT 33 -115";
                // Every output in RESP and in JSON, whole pages.
                for out in [
                    "COUNT",
                    "IDS",
                    "OBJECTS",
                    "POINTS",
                    "BOUNDS",
                    "HASHES 7",
                    "DISTANCE IDS",
                    "DISTANCE POINTS",
                    "NOFIELDS OBJECTS",
                ] {
                    for (filters, area) in [
                        ("", c),
                        ("", "POINT 33 -115 5000"),
                        ("LIMIT 250", c),
                        // The pile alone, at distance 0.
                        ("LIMIT 100000", "POINT 33.0005 -115.0005 0"),
                        ("MATCH c* LIMIT 100000", "POINT 33 -115 200000"),
                        ("WHERE speed 10 30 LIMIT 300", c),
                        ("WHEREIN speed 3 5 7 9 LIMIT 100000", c),
                        ("CURSOR 517 LIMIT 40", c),
                    ] {
                        let line = format!("NEARBY k {filters} {out} {area}");
                        let line = line.replace("  ", " ");
                        for json in [false, true] {
                            let (cmd, name) = cmd_of(&line);
                            let a = args(&line);
                            let ctx = Ctx::new(json);
                            let (whole, s) = {
                                let db = lock.read();
                                let s = Search::parse(cmd, name, &a, &db, ctx.now()).unwrap();
                                assert!(walks_in_slices(&db, &s, ctx.now()), "{line}");
                                (text(run_parsed(&db, &ctx, &s, 1 << 30)), s)
                            };
                            let sliced = text(run_sliced(&lock, |d| d, &s, &ctx, 1 << 30));
                            assert_eq!(sliced, whole, "{line} (json {json}, slice {slice})");
                        }
                    }
                }
                // Paging with the returned cursors: the same pages, and the
                // same cursors where geohook-db applies every filter.
                for (line, cursors) in [
                    (
                        "NEARBY k CURSOR 0 LIMIT 97 DISTANCE IDS POINT 33 -115",
                        true,
                    ),
                    (
                        "NEARBY k CURSOR 0 LIMIT 33 POINTS POINT 33 -115 30000",
                        true,
                    ),
                    (
                        "NEARBY k CURSOR 0 MATCH c* LIMIT 50 IDS POINT 33 -115",
                        true,
                    ),
                    (
                        "NEARBY k CURSOR 0 WHEREIN speed 2 4 8 LIMIT 7 IDS POINT 33 -115",
                        false,
                    ),
                ] {
                    let [whole, sliced] = pages_both_ways(&lock, line, cursors);
                    assert!(whole.len() > 2, "{line}: {} pages", whole.len());
                    assert_eq!(sliced, whole, "{line} (slice {slice})");
                }
            }
        }
        sliced::set_slice(sliced::SLICE);
    }

    /// A collection of string objects from `seed`: values from a small
    /// alphabet (many equal), some with fields, among points; with `big`,
    /// sixty values of 300 KB too, more than one pass keeps (`sliced::PASS_BYTES`).
    fn values_db(seed: u64, big: bool) -> Database {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut db = Database::new();
        for i in 0..1200 {
            let len = next(4) as usize;
            let v: String = (0..len).map(|_| (b'a' + next(3) as u8) as char).collect();
            put(
                &mut db,
                format!("v{}", next(100_000)),
                Object::String(v.into()),
                next(50) as f64,
            );
            if i % 5 == 0 {
                let p = Point::new(next(80) as f64, next(80) as f64).unwrap();
                put(&mut db, format!("p{i}"), Object::Point(p), 0.0);
            }
        }
        if big {
            for i in 0..60 {
                let v = format!("{}{}", (b'a' + next(3) as u8) as char, "x".repeat(300_000));
                put(&mut db, format!("big{i}"), Object::String(v.into()), 0.0);
            }
        }
        db
    }

    #[test]
    fn a_sliced_search_answers_as_one_walk_does() {
        for (seed, big, slice) in [(1, false, 4), (2, false, 1024), (3, true, 1024)] {
            {
                sliced::set_slice(slice);
                let lock = RwLock::new(values_db(seed, big));
                for order in ["", "ASC", "DESC"] {
                    for out in ["COUNT", "IDS", "OBJECTS", "NOFIELDS OBJECTS"] {
                        // The large values make the passes short; their
                        // objects, rendered, would only make the test slow.
                        if big && out.contains("OBJECTS") {
                            continue;
                        }
                        for filters in [
                            "",
                            "LIMIT 100000",
                            "LIMIT 7",
                            "CURSOR 333 LIMIT 50",
                            "MATCH b* LIMIT 100000",
                            "MATCH ?a LIMIT 100000",
                            "WHERE speed 10 20 LIMIT 100000",
                            "WHEREIN speed 3 1 2 3 LIMIT 100000",
                        ] {
                            let line = format!("SEARCH k {order} {filters} {out}");
                            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
                            for json in [false, true] {
                                let (cmd, name) = cmd_of(&line);
                                let a = args(&line);
                                let ctx = Ctx::new(json);
                                let (whole, s) = {
                                    let db = lock.read();
                                    let s = Search::parse(cmd, name, &a, &db, ctx.now()).unwrap();
                                    assert!(walks_in_slices(&db, &s, ctx.now()), "{line}");
                                    (text(run_parsed(&db, &ctx, &s, 1 << 30)), s)
                                };
                                let sliced = text(run_sliced(&lock, |d| d, &s, &ctx, 1 << 30));
                                assert_eq!(sliced, whole, "{line} (json {json}, slice {slice})");
                            }
                        }
                    }
                }
                for line in [
                    "SEARCH k CURSOR 0 LIMIT 97 IDS",
                    "SEARCH k DESC CURSOR 0 LIMIT 41 OBJECTS",
                    "SEARCH k CURSOR 0 MATCH c* LIMIT 50 IDS",
                    "SEARCH k DESC CURSOR 0 WHEREIN speed 2 4 8 LIMIT 7 IDS",
                ] {
                    let [whole, sliced] = pages_both_ways(&lock, line, true);
                    assert!(whole.len() > 2, "{line}: {} pages", whole.len());
                    assert_eq!(sliced, whole, "{line} (slice {slice})");
                }
            }
        }
        sliced::set_slice(sliced::SLICE);
    }

    #[test]
    fn a_short_area_page_is_the_sliced_walks_page_or_none() {
        let tri = r#"{"type":"Polygon","coordinates":[[[-115.2,32.9],[-114.9,32.9],[-115,33.2],[-115.2,32.9]]]}"#;
        let areas = [
            "CIRCLE 33 -115 1000".to_owned(),
            "CIRCLE 33.0005 -115.0005 50".to_owned(),
            "CIRCLE 33 -115 30000".to_owned(),
            "BOUNDS 32.99 -115.01 33.01 -114.99".to_owned(),
            "BOUNDS 30 -118 36 -112".to_owned(),
            format!("OBJECT {tri}"),
        ];
        let (mut short, mut not) = (0, 0);
        for seed in 1..=3u64 {
            for slice in [7, 64, 1024] {
                sliced::set_slice(slice);
                let lock = RwLock::new(nearby_db(seed));
                for cmd in ["WITHIN", "INTERSECTS"] {
                    for area in &areas {
                        for page in [
                            "LIMIT 1",
                            "LIMIT 10",
                            "CURSOR 3 LIMIT 4",
                            "LIMIT 100",
                            "LIMIT 0",
                        ] {
                            for out in ["IDS", "OBJECTS", "COUNT"] {
                                let line = format!("{cmd} k {page} {out} {area}");
                                let (c, name) = cmd_of(&line);
                                let a = args(&line);
                                let ctx = Ctx::new(true);
                                let db = lock.read();
                                let s = Search::parse(c, name, &a, &db, ctx.now()).unwrap();
                                assert!(walks_in_slices(&db, &s, ctx.now()), "{line}");
                                let got = run_short_area(&lock, &db, &ctx, &s, 1 << 30);
                                drop(db);
                                let Some(got) = got else {
                                    not += 1;
                                    continue;
                                };
                                short += 1;
                                let want = text(run_sliced(&lock, |d| d, &s, &ctx, 1 << 30));
                                assert_eq!(text(got), want, "{line} (slice {slice})");
                            }
                        }
                    }
                }
            }
        }
        sliced::set_slice(sliced::SLICE);
        // Both ways are taken: the pages a slice fills, and the crowded
        // areas and long pages that go to the slices.
        assert!(short > 100 && not > 100, "short {short}, sliced {not}");
    }

    #[test]
    fn a_short_area_page_gives_way_to_a_waiting_writer() {
        let lock = RwLock::new(nearby_db(1));
        let line = "WITHIN k LIMIT 100 IDS BOUNDS 32.99 -115.01 33.01 -114.99";
        let (c, name) = cmd_of(line);
        let a = args(line);
        let ctx = Ctx::new(false);
        std::thread::scope(|scope| {
            let db = lock.read();
            let s = Search::parse(c, name, &a, &db, ctx.now()).unwrap();
            let page = short_area(&lock, &db, &s, ctx.now()).expect("one slice");
            assert_eq!(page.hits.len(), 100);
            let writer = scope.spawn(|| drop(lock.write()));
            while !sliced::writer_waits(&lock) {
                std::thread::yield_now();
            }
            assert!(short_area(&lock, &db, &s, ctx.now()).is_none());
            drop(db);
            writer.join().unwrap();
        });
    }
}
