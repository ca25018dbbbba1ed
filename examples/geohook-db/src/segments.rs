//! The segments of a geometry in an R-tree, so that INTERSECTS between two
//! large geometries costs about `(n + m) log(n + m)` for the usual shapes
//! instead of `geo`'s `n · m` pairs of segments.
//!
//! Tile38's geometry library does the same: it indexes the segments of a
//! polygon's rings and tests only the pairs whose boxes meet.

use geo::{Coord, Geometry, Intersects, Line};
use rstar::primitives::Line as TreeLine;
use rstar::RTree;

/// The segments of one geometry, built once and kept with it.
#[derive(Debug, Clone)]
pub(crate) struct Segments {
    tree: RTree<TreeLine<[f64; 2]>>,
}

impl Segments {
    /// Every segment of every ring and line string of `g`.
    pub(crate) fn new(g: &Geometry<f64>) -> Self {
        let mut lines = Vec::new();
        each_line(g, &mut |l| {
            lines.push(TreeLine::new([l.start.x, l.start.y], [l.end.x, l.end.y]));
        });
        Segments {
            tree: RTree::bulk_load(lines),
        }
    }

    /// True when a segment of `self` and one of `other` share a point.
    ///
    /// The two trees are walked together and only pairs whose boxes meet are
    /// tested exactly (with `geo`'s robust predicates).
    pub(crate) fn any_meets(&self, other: &Segments) -> bool {
        self.tree
            .intersection_candidates_with_other_tree(&other.tree)
            .any(|(a, b)| line(a).intersects(&line(b)))
    }
}

fn line(l: &TreeLine<[f64; 2]>) -> Line<f64> {
    Line::new(
        Coord {
            x: l.from[0],
            y: l.from[1],
        },
        Coord {
            x: l.to[0],
            y: l.to[1],
        },
    )
}

/// Calls `f` with every segment of `g`: the rings of polygons, the line
/// strings, lines, rectangles and triangles.
fn each_line(g: &Geometry<f64>, f: &mut impl FnMut(Line<f64>)) {
    use geo::LinesIter;
    match g {
        Geometry::Point(_) | Geometry::MultiPoint(_) => {}
        Geometry::Line(l) => f(*l),
        Geometry::LineString(ls) => ls.lines().for_each(f),
        Geometry::MultiLineString(m) => m.lines_iter().for_each(f),
        Geometry::Polygon(p) => p.lines_iter().for_each(f),
        Geometry::MultiPolygon(m) => m.lines_iter().for_each(f),
        Geometry::Rect(r) => r.to_polygon().lines_iter().for_each(f),
        Geometry::Triangle(t) => t.to_polygon().lines_iter().for_each(f),
        Geometry::GeometryCollection(c) => c.iter().for_each(|g| each_line(g, f)),
    }
}

/// Calls `f` with one position of every connected piece of `g` (a point, a
/// line string, a polygon), until it answers true; true when it did.
pub(crate) fn any_piece(g: &Geometry<f64>, f: &mut impl FnMut(Coord<f64>) -> bool) -> bool {
    let first = |ls: &geo::LineString<f64>| ls.0.first().copied();
    match g {
        Geometry::Point(p) => f(p.0),
        Geometry::MultiPoint(m) => m.iter().any(|p| f(p.0)),
        Geometry::Line(l) => f(l.start),
        Geometry::LineString(ls) => first(ls).is_some_and(f),
        Geometry::MultiLineString(m) => m.iter().filter_map(first).any(f),
        Geometry::Polygon(p) => first(p.exterior()).is_some_and(f),
        Geometry::MultiPolygon(m) => m.iter().filter_map(|p| first(p.exterior())).any(f),
        Geometry::Rect(r) => f(r.min()),
        Geometry::Triangle(t) => f(t.v1()),
        Geometry::GeometryCollection(c) => c.iter().any(|g| any_piece(g, f)),
    }
}

/// `a.intersects(b)` through the segment indexes of both.
///
/// When no segment of one meets a segment of the other, neither's boundary
/// crosses or touches the other's, so every connected piece of each lies
/// wholly inside or wholly outside the other: one position of each piece
/// decides, which is the same argument `geo` makes for two polygons.
pub(crate) fn intersects(
    a: &Geometry<f64>,
    sa: &Segments,
    b: &Geometry<f64>,
    sb: &Segments,
) -> bool {
    sa.any_meets(sb)
        || any_piece(a, &mut |c| b.intersects(&c))
        || any_piece(b, &mut |c| a.intersects(&c))
}
