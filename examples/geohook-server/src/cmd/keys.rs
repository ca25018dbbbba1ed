//! Reads about whole collections: `KEYS pattern`, `STATS key …` and
//! `BOUNDS key`.

use geohook_db::{Bounds, Database, Point};

use crate::cmd::args::text;
use crate::cmd::ctx::{json_str, CmdError, Ctx};
use crate::cmd::render::fnum;
use geohook_resp::Reply;

/// `KEYS pattern`.
///
/// # Errors
///
/// A bad argument.
pub(crate) fn keys(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let keys = db.keys(crate::cmd::args::pattern(&args[1])?, ctx.now());
    if ctx.json {
        let list: Vec<String> = keys.iter().map(|k| json_str(k)).collect();
        Ok(ctx.ok_json(&format!(",\"keys\":[{}]", list.join(","))))
    } else {
        Ok(Reply::Array(keys.into_iter().map(Reply::bulk).collect()))
    }
}

/// `STATS key …`: per key, its sizes, or a null for a missing key.
///
/// # Errors
///
/// A bad argument.
pub(crate) fn stats(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let mut resp = Vec::new();
    let mut json = Vec::new();
    for k in &args[1..] {
        match db.stats(text(k)?, ctx.now()) {
            Some(st) => {
                resp.push(Reply::Map(vec![
                    (
                        Reply::bulk("in_memory_size"),
                        Reply::Int(st.in_memory_size as i64),
                    ),
                    (
                        Reply::bulk("num_objects"),
                        Reply::Int(st.num_objects as i64),
                    ),
                    (Reply::bulk("num_points"), Reply::Int(st.num_points as i64)),
                    (
                        Reply::bulk("num_strings"),
                        Reply::Int(st.num_strings as i64),
                    ),
                ]));
                json.push(format!(
                    "{{\"in_memory_size\":{},\"num_objects\":{},\"num_points\":{},\"num_strings\":{}}}",
                    st.in_memory_size, st.num_objects, st.num_points, st.num_strings
                ));
            }
            None => {
                resp.push(Reply::Null);
                json.push("null".into());
            }
        }
    }
    Ok(if ctx.json {
        ctx.ok_json(&format!(",\"stats\":[{}]", json.join(",")))
    } else {
        Reply::Array(resp)
    })
}

/// `BOUNDS key`: the rectangle around every object of the collection.
///
/// # Errors
///
/// A bad argument; in JSON mode a missing key (RESP answers a null).
pub(crate) fn bounds(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let key = text(&args[1])?;
    let mut acc: Option<Bounds> = None;
    if let Some(col) = db.collection(key) {
        for (_, item) in col.iter(ctx.now()) {
            if let Some(b) = item.object().bounds() {
                acc = Some(match acc {
                    None => b,
                    Some(a) => Bounds {
                        sw: Point {
                            lat: a.sw.lat.min(b.sw.lat),
                            lon: a.sw.lon.min(b.sw.lon),
                            z: None,
                        },
                        ne: Point {
                            lat: a.ne.lat.max(b.ne.lat),
                            lon: a.ne.lon.max(b.ne.lon),
                            z: None,
                        },
                    },
                });
            }
        }
    }
    match acc {
        None if ctx.json => Err(CmdError::Msg("key not found".into())),
        None => Ok(Reply::Null),
        // Tile38's BOUNDS command replies lon first, unlike GET … BOUNDS.
        Some(b) if !ctx.json => Ok(Reply::Array(vec![
            Reply::Array(vec![Reply::bulk(fnum(b.sw.lon)), Reply::bulk(fnum(b.sw.lat))]),
            Reply::Array(vec![Reply::bulk(fnum(b.ne.lon)), Reply::bulk(fnum(b.ne.lat))]),
        ])),
        Some(b) => Ok(ctx.ok_json(&format!(
            ",\"bounds\":{{\"type\":\"Polygon\",\"coordinates\":[[[{a},{b_}],[{c},{b_}],[{c},{d}],[{a},{d}],[{a},{b_}]]]}}",
            a = fnum(b.sw.lon),
            b_ = fnum(b.sw.lat),
            c = fnum(b.ne.lon),
            d = fnum(b.ne.lat)
        ))),
    }
}
