//! How objects are written in replies, shared by GET and the searches:
//! the output kinds and their RESP and JSON shapes (Tile38's).

use geohook_db::{Bounds, Item, Point};

use crate::cmd::args::text;
use crate::cmd::ctx::{json_str, CmdError};
use geohook_resp::Reply;

/// What a search or GET returns per item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Output {
    Count,
    Ids,
    Objects,
    Points,
    Bounds,
    Hashes(usize),
}

/// A geohash precision, 1 to 12.
///
/// # Errors
///
/// `invalid argument` for anything else.
pub(crate) fn precision(a: &[u8]) -> Result<usize, CmdError> {
    match text(a)?.parse::<usize>() {
        Ok(p) if (1..=12).contains(&p) => Ok(p),
        _ => Err(CmdError::invalid(a)),
    }
}

/// Go's %v-like formatting of a float: no trailing `.0`.
pub(crate) fn fnum(v: f64) -> String {
    format!("{v}")
}

/// A number in JSON (`null` where JSON has none).
pub(crate) fn jnum(v: f64) -> String {
    if v.is_finite() {
        fnum(v)
    } else {
        "null".into()
    }
}

pub(crate) fn no_position() -> CmdError {
    CmdError::Msg("object has no position".into())
}

pub(crate) fn point_resp(p: &Point) -> Reply {
    let mut v = vec![Reply::bulk(fnum(p.lat)), Reply::bulk(fnum(p.lon))];
    if let Some(z) = p.z {
        v.push(Reply::bulk(fnum(z)));
    }
    Reply::Array(v)
}

pub(crate) fn point_json(p: &Point) -> String {
    let mut out = String::new();
    p.write_latlon_json(&mut out);
    out
}

pub(crate) fn bounds_resp(b: &Bounds) -> Reply {
    Reply::Array(vec![
        Reply::Array(vec![
            Reply::bulk(fnum(b.sw.lat)),
            Reply::bulk(fnum(b.sw.lon)),
        ]),
        Reply::Array(vec![
            Reply::bulk(fnum(b.ne.lat)),
            Reply::bulk(fnum(b.ne.lon)),
        ]),
    ])
}

pub(crate) fn bounds_json(b: &Bounds) -> String {
    let mut out = String::new();
    b.write_latlon_json(&mut out);
    out
}

/// An item's fields as a flat `[name, value, …]` array, or `None` when it
/// has none.
pub(crate) fn fields_resp(item: &Item) -> Option<Reply> {
    let f = item.fields();
    if f.is_empty() {
        return None;
    }
    Some(Reply::Array(
        f.iter()
            .flat_map(|(n, v)| [Reply::bulk(n), Reply::bulk(v.text().into_owned())])
            .collect(),
    ))
}

/// An item's fields as a JSON object.
pub(crate) fn fields_json_map(item: &Item) -> String {
    let parts: Vec<String> = item
        .fields()
        .iter()
        .map(|(n, v)| format!("{}:{}", json_str(n), v.to_json()))
        .collect();
    format!("{{{}}}", parts.join(","))
}
