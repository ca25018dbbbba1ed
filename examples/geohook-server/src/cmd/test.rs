//! `TEST area1 WITHIN|INTERSECTS area2`: Tile38's test.go, a spatial
//! predicate between two areas given inline (or `GET key id`), answered
//! as 1 or 0 (`"result":true|false` in JSON). Each side is one area;
//! Tile38's AND/OR/NOT area expressions and CLIP are refused with a clear
//! error.

use geohook_db::{Area, Database, Object};

use crate::cmd::args::{lower, Args};
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::shapes;
use geohook_resp::Reply;

/// The left side of TEST as an object, the way Tile38 turns an area into
/// a geometry (a circle becomes a 64-gon).
fn as_object(area: Area) -> Result<Object, CmdError> {
    Ok(match area {
        Area::Point(p) => Object::Point(p),
        Area::Circle { center, meters } => shapes::circle_polygon(center, meters)?,
        Area::Bounds(b) => Object::Bounds(Box::new(b)),
        Area::Hash(h) => Object::Bounds(Box::new(h.bounds())),
        Area::Object(o) => o,
    })
}

/// Refuses Tile38's area expressions, which this server does not parse.
fn no_expression(a: &Args<'_>) -> Result<(), CmdError> {
    match a.peek_lower().as_deref() {
        Some(w @ ("not" | "and" | "or" | "(" | ")")) => Err(CmdError::Msg(format!(
            "area expressions ({}) are not supported by TEST here",
            w.to_uppercase()
        ))),
        _ => Ok(()),
    }
}

/// Runs TEST.
///
/// # Errors
///
/// Arity, a bad area, a missing `GET` object, an unknown predicate, or
/// CLIP (not supported; `invalid argument` after WITHIN, as Tile38).
pub(crate) fn test(db: &Database, ctx: &Ctx, all: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let now = ctx.now();
    let mut a = Args::new(all, 1, "test");
    no_expression(&a)?;
    let left = as_object(a.area(db, now, false)?)?;
    let word = a.next()?;
    let within = match lower(word).as_str() {
        "within" => true,
        "intersects" => false,
        _ => return Err(CmdError::invalid(word)),
    };
    if a.peek_lower().as_deref() == Some("clip") {
        if within {
            return Err(CmdError::invalid(a.next()?));
        }
        return Err(CmdError::Msg(
            "CLIP is not supported by TEST here: ask without CLIP".into(),
        ));
    }
    no_expression(&a)?;
    let right = a.area(db, now, false)?;
    a.finish()?;
    let result = if within {
        left.within(&right)
    } else {
        left.intersects(&right)
    };
    Ok(if ctx.json {
        ctx.ok_json(&format!(",\"result\":{result}"))
    } else {
        Reply::Int(i64::from(result))
    })
}
