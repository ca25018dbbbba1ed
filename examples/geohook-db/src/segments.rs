//! INTERSECTS between two large geometries in `O((n + m) log(n + m))`:
//! whether a segment of one meets a segment of the other.
//!
//! `geo`'s own test tries every pair of segments (`n · m`). An R-tree of
//! each geometry's segments (what Tile38's geometry library does) tests
//! only pairs whose boxes meet, which is quickest for the usual shapes but
//! no bound: long diagonal teeth of two interleaved combs have boxes that
//! meet by the thousand, and the pairs tested go back to `n · m`. So the
//! R-tree gets a budget of pairs in proportion to the sizes, and past it a
//! Shamos-Hoey sweep answers, which tests only segments that are
//! neighbours on a vertical line and stops at the first meeting.
//!
//! # Why the sweep may stop early
//!
//! The order of the segments on the sweep line is fixed when a segment is
//! inserted, and stays right while no two segments of the same geometry
//! cross or overlap (those of different geometries end the sweep at their
//! first contact). Rings of valid polygons only touch at vertices, which
//! keeps the order. A self-crossing ring (GeoJSON allows it) is detected at
//! its first crossing, which the sweep reaches before any misplaced
//! segment could hide a contact, and the R-tree then finishes, without a
//! budget: the bound holds for geometries that do not cross themselves.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use geo::kernels::{Kernel, RobustKernel};
use geo::{Coord, Geometry, Intersects, Line, Orientation};
use rstar::primitives::Line as TreeLine;
use rstar::RTree;

/// One segment, its endpoints in sweep order (`p` before `q` by x, then y).
#[derive(Debug, Clone, Copy)]
struct Seg {
    p: Coord<f64>,
    q: Coord<f64>,
}

impl Seg {
    fn new(l: Line<f64>) -> Self {
        if before(l.end, l.start) {
            Seg {
                p: l.end,
                q: l.start,
            }
        } else {
            Seg {
                p: l.start,
                q: l.end,
            }
        }
    }

    fn line(&self) -> Line<f64> {
        Line::new(self.p, self.q)
    }

    fn is_point(&self) -> bool {
        self.p == self.q
    }
}

/// Sweep order of positions: by x, then by y.
fn before(a: Coord<f64>, b: Coord<f64>) -> bool {
    (a.x, a.y) < (b.x, b.y)
}

fn sweep_cmp(a: Coord<f64>, b: Coord<f64>) -> Ordering {
    a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y))
}

fn orient(p: Coord<f64>, q: Coord<f64>, r: Coord<f64>) -> Orientation {
    RobustKernel::orient2d(p, q, r)
}

/// The segments of one geometry, built once and kept with it: in an
/// R-tree, and sorted for the sweep when it is first needed.
#[derive(Debug)]
pub(crate) struct Segments {
    tree: RTree<TreeLine<[f64; 2]>>,
    sorted: OnceLock<Sorted>,
}

impl Clone for Segments {
    fn clone(&self) -> Self {
        Segments {
            tree: self.tree.clone(),
            sorted: OnceLock::new(),
        }
    }
}

/// The segments in sweep order.
#[derive(Debug)]
struct Sorted {
    /// Sorted by start position.
    by_start: Vec<Seg>,
    /// Indexes into `by_start`, sorted by end position.
    by_end: Vec<u32>,
}

/// Pairs of segments whose boxes meet that the R-tree may test, per
/// segment of the two geometries, before the test moves to the sweep.
/// The usual shapes need far fewer than this; shapes made to defeat boxes
/// (long diagonal teeth) need about `n · m`.
const PAIRS_PER_SEGMENT: usize = 16;

impl Segments {
    /// Every segment of every ring and line string of `g`.
    pub(crate) fn new(g: &Geometry<f64>) -> Self {
        let mut lines = Vec::new();
        each_line(g, &mut |l| lines.push(l));
        Self::from_lines(lines)
    }

    fn from_lines(lines: Vec<Line<f64>>) -> Self {
        let lines = lines
            .into_iter()
            .map(|l| TreeLine::new([l.start.x, l.start.y], [l.end.x, l.end.y]))
            .collect();
        Segments {
            tree: RTree::bulk_load(lines),
            sorted: OnceLock::new(),
        }
    }

    fn sorted(&self) -> &Sorted {
        self.sorted.get_or_init(|| {
            let mut by_start: Vec<Seg> = self.tree.iter().map(|l| Seg::new(line(l))).collect();
            by_start.sort_by(|a, b| sweep_cmp(a.p, b.p));
            let mut by_end: Vec<u32> = (0..by_start.len() as u32).collect();
            by_end.sort_by(|&a, &b| sweep_cmp(by_start[a as usize].q, by_start[b as usize].q));
            Sorted { by_start, by_end }
        })
    }

    /// True when a segment of `self` and one of `other` share a point.
    ///
    /// The R-tree answers first, testing only pairs whose boxes meet, which
    /// is quickest for the usual shapes; past a budget in proportion to
    /// the sizes the sweep answers instead, in `O((n + m) log(n + m))`
    /// whatever the shapes. A geometry that crosses itself leaves the
    /// R-tree to finish, without a budget.
    pub(crate) fn any_meets(&self, other: &Segments) -> bool {
        let budget = PAIRS_PER_SEGMENT * (self.tree.size() + other.tree.size());
        let mut pairs = self
            .tree
            .intersection_candidates_with_other_tree(&other.tree);
        let mut tested = 0;
        for (a, b) in pairs.by_ref().take(budget) {
            if line(a).intersects(&line(b)) {
                return true;
            }
            tested += 1;
        }
        if tested < budget {
            // Every pair whose boxes meet was tested.
            return false;
        }
        match sweep(self.sorted(), other.sorted()) {
            Sweep::Meet => true,
            Sweep::Apart => false,
            Sweep::SelfCrossing => pairs.any(|(a, b)| line(a).intersects(&line(b))),
        }
    }
}

/// What the sweep found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// A segment of one geometry meets a segment of the other.
    Meet,
    /// No segment of one meets a segment of the other.
    Apart,
    /// Two segments of one geometry cross or overlap: the sweep's order
    /// no longer holds, so it cannot answer.
    SelfCrossing,
}

/// A segment on the sweep line: which geometry it belongs to and its index
/// there, which together identify it and break ties between collinear ones.
#[derive(Debug, Clone, Copy)]
struct Active {
    seg: Seg,
    side: u8,
    index: u32,
}

impl Active {
    fn id(&self) -> (u8, u32) {
        (self.side, self.index)
    }
}

impl PartialEq for Active {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Active {}

impl PartialOrd for Active {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Active {
    /// Below (`Less`) or above on the sweep line, for two segments that are
    /// on it at once: the position of the later one's start (or, when that
    /// start lies on the earlier one, of its end) against the earlier one's
    /// line, with robust orientation tests. Collinear segments and points
    /// that lie on each other are ordered by identity; they meet, which the
    /// neighbour test reports.
    fn cmp(&self, other: &Self) -> Ordering {
        if self.id() == other.id() {
            return Ordering::Equal;
        }
        let self_first =
            !self.seg.is_point() && (other.seg.is_point() || !before(other.seg.p, self.seg.p));
        // Two points on the line at once are at the same position.
        let side = if self_first {
            side_of(&self.seg, &other.seg).map(Ordering::reverse)
        } else if !other.seg.is_point() {
            side_of(&other.seg, &self.seg)
        } else {
            None
        };
        side.unwrap_or_else(|| self.id().cmp(&other.id()))
    }
}

/// Where `x` lies against the line through `r` (not a point): `Greater`
/// above, `Less` below, `None` on it.
///
/// A point (a ring's repeated vertex, a line string of one position) is
/// ordered as a vertical segment too short to reach anything but the
/// segments through it: above every one of them except vertical ones.
fn side_of(r: &Seg, x: &Seg) -> Option<Ordering> {
    let at = |c| match orient(r.p, r.q, c) {
        Orientation::CounterClockwise => Some(Ordering::Greater),
        Orientation::Clockwise => Some(Ordering::Less),
        Orientation::Collinear => None,
    };
    let side = at(x.p).or_else(|| at(x.q));
    if side.is_none() && x.is_point() && r.p.x != r.q.x {
        return Some(Ordering::Greater);
    }
    side
}

/// The Shamos-Hoey sweep over the segments of `a` and `b`, from the lowest
/// position (by x, then y) to the highest. At each position P the segments
/// ending there are removed (their two neighbours are then tested), the
/// segments starting there inserted (each tested against its neighbours),
/// and a point there (a zero-length segment) is inserted, tested and
/// removed. A segment of each geometry starting or ending at P meet there.
///
/// Let P be the lowest position where a segment of `a` meets one of `b`, or
/// where two of one geometry cross or overlap. Before P the order on the
/// line is right, and the segments through P that were on the line before
/// it are consecutive, every consecutive pair tested (a pair is tested when
/// it becomes consecutive): if they come from both geometries, a pair of
/// them met and the sweep stopped. If two of them cross or overlap, every
/// segment between those two ends at P (two segments through P in their
/// interiors cross or overlap, and were tested when consecutive), so the
/// two become consecutive, and are tested, when the ends are removed. The
/// segments through P after the ends are removed (those passing through and
/// those starting at P) are consecutive too, every consecutive pair tested
/// once the starts and points are in. What remains is a segment of one
/// geometry ending at P and one of the other ending or starting there, which
/// the endpoint test sees. Either way the sweep stops at P, never later.
fn sweep(a: &Sorted, b: &Sorted) -> Sweep {
    walk(a, b).err().unwrap_or(Sweep::Apart)
}

/// The sweep's body: `Err` carries the answer that ended it early.
fn walk(a: &Sorted, b: &Sorted) -> Result<(), Sweep> {
    let active = |side: u8, index: u32| Active {
        seg: [a, b][side as usize].by_start[index as usize],
        side,
        index,
    };
    let starts = merge(
        (0..a.by_start.len() as u32).map(|i| active(0, i)),
        (0..b.by_start.len() as u32).map(|i| active(1, i)),
        |s| s.seg.p,
    );
    // A point never enters the line but for its own test.
    let ends = merge(
        a.by_end.iter().map(|&i| active(0, i)),
        b.by_end.iter().map(|&i| active(1, i)),
        |s| s.seg.q,
    );
    let ends: Vec<Active> = ends.into_iter().filter(|s| !s.seg.is_point()).collect();
    let mut line: BTreeSet<Active> = BTreeSet::new();
    let (mut si, mut ei) = (0, 0);
    let mut points = Vec::new();
    loop {
        let at = match (starts.get(si), ends.get(ei)) {
            (Some(s), Some(e)) if before(s.seg.p, e.seg.q) => s.seg.p,
            (_, Some(e)) => e.seg.q,
            (Some(s), None) => s.seg.p,
            (None, None) => return Ok(()),
        };
        // Which geometries have a segment starting or ending here.
        let mut here = [false; 2];
        while let Some(e) = ends.get(ei).filter(|e| e.seg.q == at) {
            ei += 1;
            here[e.side as usize] = true;
            let (below, above) = neighbours(&line, e);
            if !line.remove(e) {
                // The order was not what the tree holds: only a crossing
                // can cause that, so answer as for one.
                return Err(Sweep::SelfCrossing);
            }
            if let (Some(x), Some(y)) = (below, above) {
                stop_if(test(&x, &y))?;
            }
        }
        while let Some(s) = starts.get(si).filter(|s| s.seg.p == at) {
            si += 1;
            here[s.side as usize] = true;
            if s.seg.is_point() {
                points.push(*s);
            } else {
                insert(&mut line, s)?;
            }
        }
        if here == [true, true] {
            return Err(Sweep::Meet);
        }
        for p in points.drain(..) {
            insert(&mut line, &p)?;
            line.remove(&p);
        }
    }
}

/// The segments just below and just above `s` on the line.
fn neighbours(line: &BTreeSet<Active>, s: &Active) -> (Option<Active>, Option<Active>) {
    use std::ops::Bound::{Excluded, Unbounded};
    (
        line.range(..*s).next_back().copied(),
        line.range((Excluded(*s), Unbounded)).next().copied(),
    )
}

/// Puts `s` on the line and tests it against its neighbours there.
fn insert(line: &mut BTreeSet<Active>, s: &Active) -> Result<(), Sweep> {
    let (below, above) = neighbours(line, s);
    for n in [below, above].into_iter().flatten() {
        stop_if(test(s, &n))?;
    }
    if line.insert(*s) {
        Ok(())
    } else {
        Err(Sweep::SelfCrossing)
    }
}

/// Ends the sweep with what a test found, unless it found nothing.
fn stop_if(found: Sweep) -> Result<(), Sweep> {
    match found {
        Sweep::Apart => Ok(()),
        found => Err(found),
    }
}

/// The two sorted sequences as one, in order of `key`.
fn merge(
    a: impl Iterator<Item = Active>,
    b: impl Iterator<Item = Active>,
    key: impl Fn(&Active) -> Coord<f64>,
) -> Vec<Active> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut out = Vec::with_capacity(a.size_hint().0 + b.size_hint().0);
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                if before(key(y), key(x)) {
                    b.next()
                } else {
                    a.next()
                }
            }
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => return out,
        };
        out.extend(next);
    }
}

/// The neighbour test: segments of different geometries that meet end the
/// sweep with an answer; segments of one geometry that cross or overlap
/// end it without one. Two segments of one geometry that touch where one
/// of them starts or ends (the vertices of a ring) keep their order, so
/// the sweep goes on.
fn test(x: &Active, y: &Active) -> Sweep {
    let meet = x.seg.line().intersects(&y.seg.line());
    if !meet {
        return Sweep::Apart;
    }
    if x.side != y.side {
        return Sweep::Meet;
    }
    if x.seg.is_point() || y.seg.is_point() {
        return Sweep::Apart;
    }
    let on = |r: &Seg, c| orient(r.p, r.q, c) == Orientation::Collinear;
    let (s, t) = (&x.seg, &y.seg);
    let collinear = on(s, t.p) && on(s, t.q);
    let touch = if collinear {
        // On one line, they share a single point only end to end.
        s.q == t.p || t.q == s.p
    } else {
        // Not parallel, they share one point; when an endpoint lies on
        // the other's line, that endpoint is the point.
        on(s, t.p) || on(s, t.q) || on(t, s.p) || on(t, s.q)
    };
    if touch {
        Sweep::Apart
    } else {
        Sweep::SelfCrossing
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

/// The benchmark's interleaved combs, shared with the crate's tests.
#[cfg(test)]
#[path = "../tests/common/combs.rs"]
mod combs;

#[cfg(test)]
mod tests {
    use super::combs;

    /// A segment as two (x, y) positions.
    type Pair = ((f64, f64), (f64, f64));
    use super::*;
    use proptest::prelude::*;

    fn segments(lines: &[Pair]) -> Segments {
        Segments::from_lines(lines.iter().map(|&(a, b)| Line::from([a, b])).collect())
    }

    fn ring(points: &[(f64, f64)]) -> Vec<Pair> {
        points.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// The oracle: every pair of segments, one from each side.
    fn brute_meets(a: &Segments, b: &Segments) -> bool {
        let (a, b) = (&a.sorted().by_start, &b.sorted().by_start);
        a.iter()
            .any(|s| b.iter().any(|t| s.line().intersects(&t.line())))
    }

    /// Whether two segments of one side cross or overlap, by the sweep's
    /// own neighbour test applied to every pair.
    fn brute_self_crossing(s: &Segments) -> bool {
        let s = s.sorted();
        let all: Vec<Active> = (0..s.by_start.len() as u32)
            .map(|index| Active {
                seg: s.by_start[index as usize],
                side: 0,
                index,
            })
            .collect();
        all.iter().enumerate().any(|(i, x)| {
            all[i + 1..]
                .iter()
                .any(|y| test(x, y) == Sweep::SelfCrossing)
        })
    }

    /// The sweep answers as the oracle, and gives up only when a side
    /// really crosses itself; then `any_meets` still answers as the oracle.
    fn check(a: &Segments, b: &Segments) -> Result<(), TestCaseError> {
        let want = brute_meets(a, b);
        for (x, y) in [(a, b), (b, a)] {
            match sweep(x.sorted(), y.sorted()) {
                Sweep::Meet => prop_assert!(want, "sweep met, oracle did not"),
                Sweep::Apart => prop_assert!(!want, "sweep missed a meeting"),
                Sweep::SelfCrossing => prop_assert!(
                    brute_self_crossing(x) || brute_self_crossing(y),
                    "sweep gave up on simple input"
                ),
            }
            prop_assert_eq!(x.any_meets(y), want);
        }
        Ok(())
    }

    /// A closed ring through `n` points on a small grid, so that vertices
    /// coincide, edges are collinear, vertical, touching and crossing.
    fn grid_ring(n: usize, size: i32) -> impl Strategy<Value = Vec<(f64, f64)>> {
        proptest::collection::vec((0..size, 0..size), 2..n).prop_map(|mut v| {
            v.push(v[0]);
            v.into_iter().map(|(x, y)| (x as f64, y as f64)).collect()
        })
    }

    /// A star-shaped ring (never crossing itself) with vertices on a fine
    /// grid, so that many of its edges are vertical, horizontal or collinear
    /// with the other side's.
    fn star(n: usize) -> impl Strategy<Value = Vec<(f64, f64)>> {
        (
            proptest::collection::vec(prop_oneof![Just(1.0), Just(0.5), 0.3..1.0f64], 3..n),
            -0.5..0.5f64,
            -0.5..0.5f64,
        )
            .prop_map(|(radii, cx, cy)| {
                let n = radii.len();
                let mut ring: Vec<(f64, f64)> = radii
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let a = std::f64::consts::TAU * i as f64 / n as f64;
                        (cx + r * a.cos(), cy + r * a.sin())
                    })
                    .collect();
                ring.push(ring[0]);
                ring
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn sweep_answers_as_every_pair_on_a_grid(a in grid_ring(12, 5), b in grid_ring(12, 5)) {
            check(&segments(&ring(&a)), &segments(&ring(&b)))?;
        }

        #[test]
        fn sweep_answers_as_every_pair_on_loose_segments(
            a in proptest::collection::vec(((0..4, 0..4), (0..4, 0..4)), 1..8),
            b in proptest::collection::vec(((0..4, 0..4), (0..4, 0..4)), 1..8),
        ) {
            let f = |v: Vec<((i32, i32), (i32, i32))>| -> Vec<Pair> {
                v.into_iter()
                    .map(|((a, b), (c, d))| ((a as f64, b as f64), (c as f64, d as f64)))
                    .collect()
            };
            check(&segments(&f(a)), &segments(&f(b)))?;
        }

        #[test]
        fn sweep_answers_as_every_pair_on_stars(a in star(40), b in star(40)) {
            let (sa, sb) = (segments(&ring(&a)), segments(&ring(&b)));
            check(&sa, &sb)?;
            prop_assert_ne!(sweep(sa.sorted(), sb.sorted()), Sweep::SelfCrossing);
        }
    }

    /// Interleaved combs, apart, touching along a tooth's edge, touching at
    /// a corner, and crossing: each answered by the sweep itself.
    #[test]
    fn combs_are_answered_without_the_fallback() {
        let t = 50;
        let w = 0.25 / t as f64;
        let up = combs::comb_ring(t, true);
        let shifted = |dx: f64, dy: f64| -> Vec<(f64, f64)> {
            combs::comb_ring(t, false)
                .into_iter()
                .map(|(x, y)| (x + dx, y + dy))
                .collect()
        };
        let a = segments(&ring(&up));
        // Teeth of the down comb start 0.5/t right of the up comb's: moving
        // it left by 0.5/t - w lays a tooth's left edge on one's right edge.
        let cases = [
            (0.0, 0.0, false),
            (-(0.5 / t as f64 - w), 0.0, true),
            (0.1 / t as f64, 0.0, false),
            (0.5 / t as f64, 0.0, true),
            // Lifted so that the down comb's tooth tips rest on the up
            // comb's base line at y 0.1 (tips at 0.2 before).
            (0.0, -0.1, true),
            (0.0, -0.1 + 1e-9, false),
        ];
        for (dx, dy, want) in cases {
            let b = segments(&ring(&shifted(dx, dy)));
            assert_eq!(brute_meets(&a, &b), want, "oracle at {dx} {dy}");
            assert_eq!(
                sweep(a.sorted(), b.sorted()),
                if want { Sweep::Meet } else { Sweep::Apart },
                "{dx} {dy}"
            );
            assert_eq!(
                sweep(b.sorted(), a.sorted()),
                if want { Sweep::Meet } else { Sweep::Apart },
                "{dx} {dy}"
            );
        }
    }

    /// A ring that crosses itself makes the sweep give up, and the answer
    /// still comes (from the R-tree).
    #[test]
    fn a_self_crossing_ring_falls_back() {
        let bow = segments(&ring(&[
            (0.0, 0.0),
            (2.0, 2.0),
            (2.0, 0.0),
            (0.0, 2.0),
            (0.0, 0.0),
        ]));
        let inside = segments(&ring(&[(0.9, 0.2), (1.1, 0.2), (1.0, 0.5), (0.9, 0.2)]));
        let across = segments(&ring(&[(1.0, -1.0), (1.0, 3.0)]));
        assert_eq!(sweep(bow.sorted(), inside.sorted()), Sweep::SelfCrossing);
        assert!(!bow.any_meets(&inside));
        assert!(bow.any_meets(&across));
    }
}
