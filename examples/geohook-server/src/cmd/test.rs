//! `TEST area1 WITHIN|INTERSECTS [CLIP] area2`: Tile38's test.go, a
//! spatial predicate between two areas given inline (or `GET key id`),
//! answered as 1 or 0 (`"result":true|false` in JSON).
//!
//! Each side is an area expression (Tile38's `areaExpression`): areas
//! joined by `AND` and `OR` (AND binds tighter), negated by `NOT`, grouped
//! by parentheses. A compound right side is decomposed first (AND: every
//! part, OR: any part), then a compound left side against each area; a
//! `NOT` on either side negates the test of what it covers, as Tile38's
//! `testExpression` does.
//!
//! `CLIP` (INTERSECTS only, both sides plain areas, the right one a
//! rectangle: BOUNDS, HASH, TILE, QUADKEY or POINT) also returns the left
//! object clipped to the rectangle, as Tile38's clip package cuts it:
//! Sutherland-Hodgman for polygon rings, Cohen-Sutherland for line
//! segments, and a FeatureCollection of the clipped members for a
//! collection.

use std::rc::Rc;

use geohook_db::{Area, Bounds, Database, Object};
use serde_json::{json, Value as Json};

use crate::cmd::args::{lower, Args};
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::shapes;
use geohook_resp::Reply;

/// The most operators and parentheses one side may hold, so that a peer's
/// expression cannot nest deep enough to exhaust the stack when it is
/// evaluated.
const MAX_TOKENS: usize = 256;

/// One area of an expression, as an object (when it is on the left) and
/// as an area (when it is on the right).
#[derive(Debug)]
struct Leaf {
    object: Object,
    area: Area,
}

/// AND or OR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
}

/// An area expression: an area, or an operator over children; either may
/// be negated.
#[derive(Debug, Clone)]
struct AreaExpr {
    negate: bool,
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(Rc<Leaf>),
    Op(Op, Vec<AreaExpr>),
}

/// The left side of TEST as an object, the way Tile38 turns an area into
/// a geometry (a circle becomes a 64-gon).
fn as_object(area: &Area) -> Result<Object, CmdError> {
    Ok(match area {
        Area::Point(p) => Object::Point(*p),
        Area::Circle { center, meters } => shapes::circle_polygon(*center, *meters)?,
        Area::Bounds(b) => Object::Bounds(Box::new(*b)),
        Area::Hash(h) => Object::Bounds(Box::new(h.bounds())),
        Area::Object(o) => o.clone(),
    })
}

/// The area words an expression may hold.
fn is_area_word(w: &str) -> bool {
    matches!(
        w,
        "point" | "circle" | "object" | "bounds" | "hash" | "quadkey" | "tile" | "get" | "sector"
    )
}

/// Reads an area expression with Tile38's errors: `invalid argument 'and'`
/// for an operator with nothing before it, `invalid argument ')'` for a
/// parenthesis that closes nothing, and the arity error for an expression
/// that ends early.
struct Parser<'p, 'a> {
    a: &'p mut Args<'a>,
    db: &'p Database,
    now: i64,
    clip: bool,
    tokens: usize,
    depth: usize,
}

impl Parser<'_, '_> {
    fn count(&mut self) -> Result<(), CmdError> {
        self.tokens += 1;
        if self.tokens > MAX_TOKENS {
            return Err(CmdError::Msg(format!(
                "area expression too long (over {MAX_TOKENS} operators)"
            )));
        }
        Ok(())
    }

    /// `and_expr (OR and_expr)*`
    fn or(&mut self) -> Result<AreaExpr, CmdError> {
        let first = self.and()?;
        let mut parts = vec![first];
        while self.a.peek_lower().as_deref() == Some("or") {
            self.a.next()?;
            self.count()?;
            parts.push(self.and()?);
        }
        Ok(join(Op::Or, parts))
    }

    /// `unary (AND unary)*`
    fn and(&mut self) -> Result<AreaExpr, CmdError> {
        let first = self.unary()?;
        let mut parts = vec![first];
        while self.a.peek_lower().as_deref() == Some("and") {
            self.a.next()?;
            self.count()?;
            parts.push(self.unary()?);
        }
        Ok(join(Op::And, parts))
    }

    /// `NOT unary | ( or_expr ) | area`
    fn unary(&mut self) -> Result<AreaExpr, CmdError> {
        let Some(word) = self.a.peek_lower() else {
            return Err(CmdError::Arity("test"));
        };
        match word.as_str() {
            "not" => {
                self.a.next()?;
                self.count()?;
                let mut e = self.unary()?;
                e.negate = !e.negate;
                Ok(e)
            }
            "(" => {
                self.a.next()?;
                self.count()?;
                self.depth += 1;
                let e = self.or()?;
                self.depth -= 1;
                match self.a.peek_lower().as_deref() {
                    Some(")") => {
                        self.a.next()?;
                        Ok(e)
                    }
                    _ => Err(CmdError::Arity("test")),
                }
            }
            w if is_area_word(w) => {
                if self.clip && matches!(w, "sector" | "circle" | "object" | "get") {
                    let typ = self.a.next()?;
                    return Err(CmdError::Msg(format!(
                        "invalid clip type '{}'",
                        String::from_utf8_lossy(typ)
                    )));
                }
                let area = self.a.area(self.db, self.now, false)?;
                let object = as_object(&area)?;
                Ok(AreaExpr {
                    negate: false,
                    node: Node::Leaf(Rc::new(Leaf { object, area })),
                })
            }
            // Tile38 names a misplaced operator in lower case.
            w @ ("and" | "or") => Err(CmdError::invalid(w.as_bytes())),
            _ => {
                let w = self.a.next()?;
                Err(CmdError::invalid(w))
            }
        }
    }
}

/// One part as is, or the operator over several.
fn join(op: Op, mut parts: Vec<AreaExpr>) -> AreaExpr {
    if parts.len() == 1 {
        return parts.pop().expect("one part");
    }
    AreaExpr {
        negate: false,
        node: Node::Op(op, parts),
    }
}

/// Reads one side; `clip` refuses the areas CLIP cannot cut by.
fn parse_side(a: &mut Args<'_>, db: &Database, now: i64, clip: bool) -> Result<AreaExpr, CmdError> {
    let mut p = Parser {
        a,
        db,
        now,
        clip,
        tokens: 0,
        depth: 0,
    };
    let e = p.or()?;
    match p.a.peek_lower().as_deref() {
        // A closing parenthesis with nothing open, where the side ends.
        Some(")") => Err(CmdError::invalid(p.a.next()?)),
        // A NOT after a complete side negates nothing: Tile38 then wants
        // an area (the arity error at the end) and refuses an operator.
        Some("not") => {
            p.a.next()?;
            match p.a.peek_lower().as_deref() {
                None => Err(CmdError::Arity("test")),
                Some(w @ ("and" | "or")) => Err(CmdError::invalid(w.as_bytes())),
                Some(_) => Err(CmdError::invalid(b"not")),
            }
        }
        _ => Ok(e),
    }
}

/// The predicate between a left object and a right area.
type Pred = fn(&Object, &Area) -> bool;

impl AreaExpr {
    fn maybe_negate(&self, v: bool) -> bool {
        v != self.negate
    }

    /// `self` (the left side) against one right-hand area, its own
    /// negation aside.
    fn raw_test_area(&self, right: &Leaf, pred: Pred) -> bool {
        match &self.node {
            Node::Leaf(l) => pred(&l.object, &right.area),
            Node::Op(Op::And, children) => children.iter().all(|c| c.test_area(right, pred)),
            Node::Op(Op::Or, children) => children.iter().any(|c| c.test_area(right, pred)),
        }
    }

    fn test_area(&self, right: &Leaf, pred: Pred) -> bool {
        self.maybe_negate(self.raw_test_area(right, pred))
    }

    /// `self` against the right-hand expression, its own negation aside.
    fn raw_test(&self, other: &AreaExpr, pred: Pred) -> bool {
        if other.negate {
            // Tile38 moves the right side's negation to the left side.
            let opposite = AreaExpr {
                negate: !self.negate,
                node: self.node.clone(),
            };
            let plain = AreaExpr {
                negate: false,
                node: other.node.clone(),
            };
            return opposite.test(&plain, pred);
        }
        match &other.node {
            Node::Leaf(l) => self.raw_test_area(l, pred),
            Node::Op(Op::And, children) => children.iter().all(|c| self.raw_test(c, pred)),
            Node::Op(Op::Or, children) => children.iter().any(|c| self.raw_test(c, pred)),
        }
    }

    fn test(&self, other: &AreaExpr, pred: Pred) -> bool {
        self.maybe_negate(self.raw_test(other, pred))
    }

    /// The area, when the expression is one area without NOT.
    fn single(&self) -> Option<&Leaf> {
        match &self.node {
            Node::Leaf(l) if !self.negate => Some(l),
            _ => None,
        }
    }
}

/// Runs TEST.
///
/// # Errors
///
/// Arity, a bad area or expression, a missing `GET` object, an unknown
/// predicate, CLIP after WITHIN (`invalid argument`), or CLIP by an area
/// that is not a rectangle (`invalid clip type`).
pub(crate) fn test(db: &Database, ctx: &Ctx, all: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let now = ctx.now();
    let mut a = Args::new(all, 1, "test");
    let left = parse_side(&mut a, db, now, false)?;
    let word = a.next()?;
    let within = match lower(word).as_str() {
        "within" => true,
        "intersects" => false,
        _ => return Err(CmdError::invalid(word)),
    };
    let clip = a.peek_lower().as_deref() == Some("clip");
    if clip {
        let w = a.next()?;
        if within {
            return Err(CmdError::invalid(w));
        }
    }
    let right = parse_side(&mut a, db, now, clip)?;
    a.finish()?;
    let result = if within {
        left.test(&right, |o, a| o.within(a))
    } else {
        left.test(&right, |o, a| o.intersects(a))
    };
    let clipped = match (clip, left.single(), right.single()) {
        (true, Some(l), Some(r)) => {
            if result {
                let rect = r.area.bounds().ok_or_else(|| CmdError::invalid(b"clip"))?;
                Some(clip_json(&l.object, &rect))
            } else {
                None
            }
        }
        (true, _, _) => return Err(CmdError::invalid(b"clip")),
        _ => None,
    };
    Ok(if ctx.json {
        let mut body = format!(",\"result\":{result}");
        if let Some(c) = &clipped {
            body.push_str(",\"object\":");
            body.push_str(c);
        }
        ctx.ok_json(&body)
    } else if let Some(c) = clipped {
        Reply::Array(vec![Reply::Int(1), Reply::bulk(c)])
    } else {
        Reply::Int(i64::from(result))
    })
}

/// A position as GeoJSON's `[lon, lat]`.
type Xy = [f64; 2];

/// The object clipped to `rect`, as GeoJSON text.
pub(crate) fn clip_json(obj: &Object, rect: &Bounds) -> String {
    let r = Rect {
        min: [rect.sw.lon, rect.sw.lat],
        max: [rect.ne.lon, rect.ne.lat],
    };
    let v: Json = serde_json::from_str(&obj.to_json()).unwrap_or(Json::Null);
    let mut out = String::new();
    write_geo(&clip_value(&v, &r), &mut out);
    out
}

/// Writes GeoJSON with its members in GeoJSON's customary order (`type`
/// first), as Tile38 writes them, and numbers in their shortest form.
fn write_geo(v: &Json, out: &mut String) {
    const FIRST: [&str; 6] = [
        "type",
        "geometry",
        "coordinates",
        "geometries",
        "features",
        "properties",
    ];
    match v {
        Json::Object(m) => {
            out.push('{');
            let keys = FIRST
                .iter()
                .filter(|k| m.contains_key(**k))
                .copied()
                .chain(m.keys().map(String::as_str).filter(|k| !FIRST.contains(k)));
            for (i, k) in keys.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::from(k).to_string());
                out.push(':');
                write_geo(&m[k], out);
            }
            out.push('}');
        }
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_geo(x, out);
            }
            out.push(']');
        }
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&f.to_string()),
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    min: Xy,
    max: Xy,
}

fn xy(v: &Json) -> Option<Xy> {
    Some([v.get(0)?.as_f64()?, v.get(1)?.as_f64()?])
}

fn points(v: &Json) -> Vec<Xy> {
    v.as_array()
        .map(|a| a.iter().filter_map(xy).collect())
        .unwrap_or_default()
}

fn coords(ps: &[Xy]) -> Json {
    Json::Array(ps.iter().map(|p| json!([p[0], p[1]])).collect())
}

/// One GeoJSON value clipped, as Tile38's `clip.Clip` does for each kind.
fn clip_value(v: &Json, r: &Rect) -> Json {
    let kind = v.get("type").and_then(Json::as_str).unwrap_or("");
    let c = &v["coordinates"];
    match kind {
        "Point" => match xy(c) {
            Some(p) if code(r, p) == 0 => v.clone(),
            _ => json!({"type": "MultiPoint", "coordinates": []}),
        },
        "LineString" => {
            let lines = clip_line(&points(c), r);
            if lines.len() == 1 {
                json!({"type": "LineString", "coordinates": coords(&lines[0])})
            } else {
                json!({"type": "MultiLineString",
                    "coordinates": lines.iter().map(|l| coords(l)).collect::<Vec<_>>()})
            }
        }
        "Polygon" => {
            let rings: Vec<Vec<Xy>> = c
                .as_array()
                .map(|a| a.iter().map(points).collect())
                .unwrap_or_default();
            let clipped: Vec<Vec<Xy>> = rings
                .iter()
                .map(|ring| clip_ring(ring, r))
                .filter(|ring| !ring.is_empty())
                .collect();
            if clipped.is_empty() {
                json!({"type": "MultiPolygon", "coordinates": []})
            } else {
                json!({"type": "Polygon",
                    "coordinates": clipped.iter().map(|ring| coords(ring)).collect::<Vec<_>>()})
            }
        }
        "Feature" => {
            let mut f = v.clone();
            f["geometry"] = clip_value(&v["geometry"], r);
            f
        }
        // A collection becomes a FeatureCollection of its clipped, non-empty
        // members, each as a Feature.
        "MultiPoint" | "MultiLineString" | "MultiPolygon" | "GeometryCollection"
        | "FeatureCollection" => {
            let children: Vec<Json> = match kind {
                "GeometryCollection" => v["geometries"].as_array().cloned().unwrap_or_default(),
                "FeatureCollection" => v["features"].as_array().cloned().unwrap_or_default(),
                _ => {
                    let single = kind.trim_start_matches("Multi");
                    c.as_array()
                        .map(|a| {
                            a.iter()
                                .map(|c| json!({"type": single, "coordinates": c}))
                                .collect()
                        })
                        .unwrap_or_default()
                }
            };
            let features: Vec<Json> = children
                .iter()
                .map(|child| clip_value(child, r))
                .filter(|g| !is_empty(g))
                .map(|g| {
                    if g["type"] == "Feature" {
                        g
                    } else {
                        json!({"type": "Feature", "geometry": g, "properties": {}})
                    }
                })
                .collect();
            json!({"type": "FeatureCollection", "features": features})
        }
        _ => v.clone(),
    }
}

fn is_empty(g: &Json) -> bool {
    match g.get("type").and_then(Json::as_str) {
        Some("Feature") => is_empty(&g["geometry"]),
        Some("FeatureCollection") => g["features"].as_array().is_none_or(Vec::is_empty),
        Some("GeometryCollection") => g["geometries"].as_array().is_none_or(Vec::is_empty),
        _ => g["coordinates"].as_array().is_none_or(Vec::is_empty),
    }
}

/// Where a position lies relative to the rectangle: left 1, right 2,
/// bottom 4, top 8.
fn code(r: &Rect, p: Xy) -> u8 {
    let mut c = 0;
    if p[0] < r.min[0] {
        c |= 1;
    } else if p[0] > r.max[0] {
        c |= 2;
    }
    if p[1] < r.min[1] {
        c |= 4;
    } else if p[1] > r.max[1] {
        c |= 8;
    }
    c
}

/// Where the segment from `a` to `b` crosses the rectangle edge named by
/// `edge`.
fn intersect(r: &Rect, edge: u8, a: Xy, b: Xy) -> Xy {
    if edge & 8 != 0 {
        [
            a[0] + (b[0] - a[0]) * (r.max[1] - a[1]) / (b[1] - a[1]),
            r.max[1],
        ]
    } else if edge & 4 != 0 {
        [
            a[0] + (b[0] - a[0]) * (r.min[1] - a[1]) / (b[1] - a[1]),
            r.min[1],
        ]
    } else if edge & 2 != 0 {
        [
            r.max[0],
            a[1] + (b[1] - a[1]) * (r.max[0] - a[0]) / (b[0] - a[0]),
        ]
    } else {
        [
            r.min[0],
            a[1] + (b[1] - a[1]) * (r.min[0] - a[0]) / (b[0] - a[0]),
        ]
    }
}

/// Cohen-Sutherland: the part of a segment inside the rectangle, if any.
fn clip_segment(mut a: Xy, mut b: Xy, r: &Rect) -> Option<(Xy, Xy)> {
    // Each step moves one end onto an edge line, so four steps per end
    // settle it; the bound keeps a degenerate input from looping.
    for _ in 0..8 {
        let (ca, cb) = (code(r, a), code(r, b));
        if ca | cb == 0 {
            return Some((a, b));
        }
        if ca & cb != 0 {
            return None;
        }
        if ca != 0 {
            a = intersect(r, ca, a, b);
        } else {
            b = intersect(r, cb, a, b);
        }
    }
    None
}

/// The pieces of a line inside the rectangle, joined where they meet.
fn clip_line(line: &[Xy], r: &Rect) -> Vec<Vec<Xy>> {
    let mut out = Vec::new();
    let mut cur: Vec<Xy> = Vec::new();
    for w in line.windows(2) {
        let Some((a, b)) = clip_segment(w[0], w[1], r) else {
            continue;
        };
        if cur.last().is_some_and(|l| *l != a) {
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.push(a);
        }
        cur.push(b);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Sutherland-Hodgman: a closed ring cut to the rectangle, one edge at a
/// time; empty when nothing remains.
fn clip_ring(ring: &[Xy], r: &Rect) -> Vec<Xy> {
    if ring.len() < 4 {
        return Vec::new();
    }
    let mut ring = ring.to_vec();
    for edge in [1u8, 2, 4, 8] {
        let mut res: Vec<Xy> = Vec::with_capacity(ring.len() + 4);
        let mut prev = ring[ring.len() - 2];
        let mut prev_in = code(r, prev) & edge == 0;
        for &p in &ring {
            let inside = code(r, p) & edge == 0;
            match (prev_in, inside) {
                (true, true) => res.push(p),
                (true, false) => res.push(intersect(r, edge, prev, p)),
                (false, true) => {
                    res.push(intersect(r, edge, prev, p));
                    res.push(p);
                }
                (false, false) => {}
            }
            prev = p;
            prev_in = inside;
        }
        if res.first().is_some_and(|f| Some(f) != res.last()) {
            res.push(res[0]);
        }
        ring = res;
        if ring.is_empty() {
            break;
        }
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_inside_the_rectangle_is_kept_and_one_across_it_is_cut() {
        let r = Rect {
            min: [0.0, 0.0],
            max: [10.0, 10.0],
        };
        let inside = vec![[1.0, 1.0], [2.0, 1.0], [2.0, 2.0], [1.0, 1.0]];
        assert_eq!(clip_ring(&inside, &r), inside);
        let across = vec![[5.0, 5.0], [15.0, 5.0], [15.0, 8.0], [5.0, 8.0], [5.0, 5.0]];
        let cut = clip_ring(&across, &r);
        assert!(cut.iter().all(|p| p[0] <= 10.0), "{cut:?}");
        assert!(cut.contains(&[10.0, 5.0]) && cut.contains(&[10.0, 8.0]));
        let outside = vec![[20.0, 20.0], [21.0, 20.0], [21.0, 21.0], [20.0, 20.0]];
        assert!(clip_ring(&outside, &r).is_empty());
        let lines = clip_line(&[[-5.0, 5.0], [5.0, 5.0], [5.0, 15.0]], &r);
        assert_eq!(lines, vec![vec![[0.0, 5.0], [5.0, 5.0], [5.0, 10.0]]]);
    }
}
