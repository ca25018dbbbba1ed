//! Reads of one object: `GET key id [WITHFIELDS] [OBJECT | POINT | BOUNDS |
//! HASH precision]`, `EXISTS key id` and `TTL key id`.

use geohook_db::Database;

use crate::cmd::args::{lower, text, Args};
use crate::cmd::ctx::{json_str, CmdError, Ctx};
use crate::cmd::render::{
    bounds_json, bounds_resp, fields_json_map, fields_resp, no_position, point_json, point_resp,
    precision, Output,
};
use geohook_resp::Reply;

/// A parsed GET.
#[derive(Debug)]
struct Get<'a> {
    key: &'a str,
    id: &'a str,
    withfields: bool,
    out: Output,
}

impl<'a> Get<'a> {
    fn parse(all: &'a [Vec<u8>]) -> Result<Get<'a>, CmdError> {
        let mut a = Args::new(all, 1, "get");
        let (key, id) = (a.text()?, a.text()?);
        let mut withfields = false;
        let mut out = Output::Objects;
        while !a.done() {
            let word = a.next()?;
            match lower(word).as_str() {
                "withfields" => withfields = true,
                "object" => out = Output::Objects,
                "point" => out = Output::Points,
                "bounds" => out = Output::Bounds,
                "hash" => out = Output::Hashes(precision(a.next()?)?),
                _ => return Err(CmdError::invalid(word)),
            }
            // The output kind ends the command, except OBJECT (the default).
            if out != Output::Objects {
                a.finish()?;
            }
        }
        Ok(Get {
            key,
            id,
            withfields,
            out,
        })
    }
}

/// `GET`.
///
/// # Errors
///
/// A bad argument; in JSON mode the missing key or id (RESP answers a
/// null); an output the object cannot give.
pub(crate) fn get(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let g = Get::parse(args)?;
    let item = match db.get(g.key, g.id, ctx.now()) {
        Ok(i) => i,
        Err(_) if !ctx.json => return Ok(Reply::Null),
        Err(e) => return Err(e.into()),
    };
    let obj = item.object();
    if ctx.json {
        let body = match g.out {
            Output::Points => format!(
                ",\"point\":{}",
                point_json(&obj.center().ok_or_else(no_position)?)
            ),
            Output::Bounds => format!(
                ",\"bounds\":{}",
                bounds_json(&obj.bounds().ok_or_else(no_position)?)
            ),
            Output::Hashes(p) => format!(",\"hash\":{}", json_str(&obj.geohash(p)?)),
            _ => format!(",\"object\":{}", obj.to_json()),
        };
        let fields = if g.withfields && !item.fields().is_empty() {
            format!(",\"fields\":{}", fields_json_map(item))
        } else {
            String::new()
        };
        return Ok(ctx.ok_json(&format!("{body}{fields}")));
    }
    let value = match g.out {
        Output::Points => point_resp(&obj.center().ok_or_else(no_position)?),
        Output::Bounds => bounds_resp(&obj.bounds().ok_or_else(no_position)?),
        Output::Hashes(p) => Reply::bulk(obj.geohash(p)?),
        _ => Reply::bulk(obj.to_resp_text().into_owned()),
    };
    match (g.withfields, fields_resp(item)) {
        (true, Some(f)) => Ok(Reply::Array(vec![value, f])),
        _ => Ok(value),
    }
}

/// `EXISTS key id`.
///
/// # Errors
///
/// A bad argument.
pub(crate) fn exists(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let e = db.exists(text(&args[1])?, text(&args[2])?, ctx.now());
    Ok(if ctx.json {
        ctx.ok_json(&format!(",\"exists\":{e}"))
    } else {
        Reply::Int(i64::from(e))
    })
}

/// Whole seconds left before a deadline `left_ms` after `now_ms`, counted
/// from the current time to the microsecond. Tile38 counts from a
/// nanosecond clock and truncates, so a TTL read right after `SET … EX 5`
/// is 4, never 5 (its clients' tests check `ttl < 5`); the deadline is kept
/// to the millisecond here, and the time left is measured finer so that
/// the truncation falls the same way.
fn seconds_left(now_ms: i64, left_ms: i64) -> i64 {
    let deadline_us = i128::from(now_ms + left_ms) * 1000;
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_micros()).unwrap_or(i128::MAX))
        .max(i128::from(now_ms) * 1000);
    i64::try_from((deadline_us - now_us).max(0) / 1_000_000).unwrap_or(i64::MAX)
}

/// `TTL key id`: seconds left, -1 without a deadline, -2 (RESP) for a
/// missing object.
///
/// # Errors
///
/// A bad argument; in JSON mode the missing key or id.
pub(crate) fn ttl(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    match db.ttl(text(&args[1])?, text(&args[2])?, ctx.now()) {
        Ok(t) => {
            let secs = t.map_or(-1, |ms| seconds_left(ctx.now(), ms));
            Ok(if ctx.json {
                ctx.ok_json(&format!(",\"ttl\":{secs}"))
            } else {
                Reply::Int(secs)
            })
        }
        Err(_) if !ctx.json => Ok(Reply::Int(-2)),
        Err(e) => Err(e.into()),
    }
}
