//! The searches: `SCAN key [options] [output]` and
//! `NEARBY|WITHIN|INTERSECTS key [options] [output] AREA`. Options come first (CURSOR,
//! LIMIT, MATCH, WHERE, ASC/DESC, NOFIELDS, DISTANCE for NEARBY), then the
//! output (COUNT, IDS, OBJECTS, POINTS, BOUNDS, HASHES precision), then the
//! area; SCAN ends after the output.

use std::fmt::Write as _;

use geohook_db::{Area, Database, Hit, Page, Point, SearchOpts, Where};

use crate::cmd::args::{self, lower, Args};
use crate::cmd::ctx::{json_str, CmdError, Ctx};
use crate::cmd::render::{
    bounds_json, bounds_resp, fields_resp, fnum, jnum, no_position, point_json, point_resp,
    precision, Output,
};
use crate::cmd::spec::Cmd;
use geohook_resp::{self as resp, Reply};

/// Tile38's default LIMIT for searches.
const DEFAULT_LIMIT: usize = 100;

/// Where a search looks.
#[derive(Debug)]
enum Scope {
    /// The whole collection, in id order.
    All,
    /// Nearest first from a point, optionally within a radius in meters.
    Nearby(Point, Option<f64>),
    /// Objects fully inside the area.
    Within(Area),
    /// Objects that intersect the area.
    Intersects(Area),
}

/// A parsed search.
#[derive(Debug)]
struct Search<'a> {
    key: &'a str,
    opts: SearchOpts,
    out: Output,
    nofields: bool,
    distance: bool,
    scope: Scope,
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
        let mut limit: Option<usize> = None;
        let mut out = Output::Objects;
        let mut nofields = false;
        let mut distance = false;
        while let Some(word) = a.peek_lower() {
            match word.as_str() {
                "cursor" => {
                    a.next()?;
                    opts.cursor = args::uint(a.next()?)?;
                }
                "limit" => {
                    a.next()?;
                    limit = Some(usize::try_from(args::uint(a.next()?)?).unwrap_or(usize::MAX));
                }
                "match" => {
                    a.next()?;
                    opts.matches.push(args::pattern(a.next()?)?.to_string());
                }
                "where" => {
                    a.next()?;
                    let field = a.text()?.to_string();
                    let min = args::field_value(a.next()?)?;
                    let max = args::field_value(a.next()?)?;
                    opts.wheres.push(Where { field, min, max });
                }
                "asc" | "desc" => {
                    a.next()?;
                    opts.desc = word == "desc";
                }
                "nofields" => {
                    a.next()?;
                    nofields = true;
                }
                "distance" if cmd == Cmd::Nearby => {
                    a.next()?;
                    distance = true;
                }
                "count" => {
                    a.next()?;
                    out = Output::Count;
                }
                "ids" => {
                    a.next()?;
                    out = Output::Ids;
                }
                "objects" => {
                    a.next()?;
                    out = Output::Objects;
                }
                "points" => {
                    a.next()?;
                    out = Output::Points;
                }
                // BOUNDS followed by exactly four numbers is the area.
                "bounds" if cmd == Cmd::Scan || a.left() != 5 => {
                    a.next()?;
                    out = Output::Bounds;
                }
                "hashes" => {
                    a.next()?;
                    out = Output::Hashes(precision(a.next()?)?);
                }
                _ => break,
            }
        }
        opts.limit = match out {
            Output::Count => limit,
            _ => Some(limit.unwrap_or(DEFAULT_LIMIT)),
        };
        let scope = match cmd {
            Cmd::Nearby => {
                let word = a.next()?;
                if lower(word) != "point" {
                    return Err(CmdError::invalid(word));
                }
                let p = a.point()?;
                let meters = if a.done() { None } else { Some(a.finite()?) };
                if meters.is_some_and(|m| m < 0.0) {
                    return Err(CmdError::invalid(&all[a.pos() - 1]));
                }
                Scope::Nearby(p, meters)
            }
            Cmd::Within => Scope::Within(a.area(db, now, false)?),
            Cmd::Intersects => Scope::Intersects(a.area(db, now, false)?),
            _ => Scope::All,
        };
        a.finish()?;
        Ok(Search {
            key,
            opts,
            out,
            nofields,
            distance,
            scope,
        })
    }
}

/// Runs SCAN, NEARBY, WITHIN or INTERSECTS (`cmd`, named `name`); its reply
/// may hold at most `max_reply` bytes of items.
///
/// # Errors
///
/// A bad argument or area, an output the objects cannot give, or a page
/// whose reply would exceed `max_reply` (refused whole rather than cut, so
/// that no client mistakes a short page for the end of the walk).
pub(crate) fn search(
    db: &Database,
    ctx: &Ctx,
    cmd: Cmd,
    name: &'static str,
    args: &[Vec<u8>],
    max_reply: usize,
) -> Result<Reply, CmdError> {
    let s = Search::parse(cmd, name, args, db, ctx.now())?;
    let now = ctx.now();
    let page = match &s.scope {
        Scope::All => db.scan(s.key, &s.opts, now),
        Scope::Nearby(p, meters) => db.nearby(s.key, p, *meters, &s.opts, now),
        Scope::Within(area) => db.within(s.key, area, &s.opts, now),
        Scope::Intersects(area) => db.intersects(s.key, area, &s.opts, now),
    };
    render(ctx, &page, s.out, s.nofields, s.distance, max_reply)
}

/// The error for a page whose reply would exceed `max_reply` bytes.
fn too_large(max_reply: usize) -> CmdError {
    CmdError::Msg(format!(
        "reply too large (over {max_reply} bytes): lower LIMIT and page with CURSOR"
    ))
}

fn render(
    ctx: &Ctx,
    page: &Page<'_>,
    out: Output,
    nofields: bool,
    distance: bool,
    max_reply: usize,
) -> Result<Reply, CmdError> {
    let count = page.hits.len();
    if out == Output::Count {
        return Ok(if ctx.json {
            ctx.ok_json(&format!(",\"count\":{count},\"cursor\":{}", page.cursor))
        } else {
            Reply::Int(count as i64)
        });
    }
    let with_fields =
        !nofields && out != Output::Ids && page.hits.iter().any(|h| !h.item.fields().is_empty());
    if ctx.json {
        // The field names of every hit, sorted; each hit lists its values in
        // that order (Tile38's "fields" array).
        let mut names: Vec<&str> = Vec::new();
        if with_fields {
            for h in &page.hits {
                for (n, _) in h.item.fields().iter() {
                    if let Err(i) = names.binary_search(&n) {
                        names.insert(i, n);
                    }
                }
            }
        }
        let mut items = Vec::with_capacity(count.min(1024));
        let mut bytes = 0usize;
        for h in &page.hits {
            let item = json_item(h, out, &names, distance)?;
            bytes += item.len() + 1;
            if bytes > max_reply {
                return Err(too_large(max_reply));
            }
            items.push(item);
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
            ",\"{list_name}\":[{}],\"count\":{count},\"cursor\":{}",
            items.join(","),
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
        let obj = h.item.object();
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

fn json_item(h: &Hit<'_>, out: Output, names: &[&str], distance: bool) -> Result<String, CmdError> {
    let obj = h.item.object();
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
