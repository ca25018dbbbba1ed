//! INTERSECTS and WITHIN between two large geometries in
//! `O((n + m) log(n + m))`: whether a segment of one meets a segment of
//! the other, and where positions lie against a geometry's rings.
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
//! segment could hide a contact, and the R-tree then goes on within a
//! budget of pairs (see [`Segments::any_meets`]).
//!
//! # Budgets
//!
//! One answer is not exact, by design, so that no shape costs more than the
//! bound: a geometry that crosses itself counts as apart from the other
//! past a budget of segment pairs, its positions located one by one within
//! another budget. WITHIN of large geometries whose boundaries meet is
//! answered by sweeps too (see [`touching`]): each segment is split at the
//! vertices that lie on it, a sweep looks for a proper crossing,
//! and the pieces' midpoints and shared pieces' sides decide. Only when one
//! of the two geometries crosses or overlaps itself (or the outer one is
//! not areal) is it left to `geo`'s DE-9IM, within a budget of vertex
//! pairs set by the caller (`RELATE_BUDGET` in `object.rs`).

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
    /// The segments of the polygon rings alone, for locating positions.
    rings: OnceLock<Sorted>,
}

impl Clone for Segments {
    fn clone(&self) -> Self {
        Segments {
            tree: self.tree.clone(),
            sorted: OnceLock::new(),
            rings: OnceLock::new(),
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

impl Sorted {
    fn new(lines: Vec<Line<f64>>) -> Self {
        let mut by_start: Vec<Seg> = lines.into_iter().map(Seg::new).collect();
        by_start.sort_by(|a, b| sweep_cmp(a.p, b.p));
        Self::from_sorted(by_start)
    }

    /// From segments already sorted by start position, keeping their
    /// order, so that an index into `by_start` is one into the caller's.
    fn from_sorted(by_start: Vec<Seg>) -> Self {
        let mut by_end: Vec<u32> = (0..by_start.len() as u32).collect();
        by_end.sort_by(|&a, &b| sweep_cmp(by_start[a as usize].q, by_start[b as usize].q));
        Sorted { by_start, by_end }
    }
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
            rings: OnceLock::new(),
        }
    }

    fn sorted(&self) -> &Sorted {
        self.sorted
            .get_or_init(|| Sorted::new(self.tree.iter().map(line).collect()))
    }

    /// The segments of the polygon rings of `g` (the geometry these
    /// segments were built from), in sweep order.
    fn rings(&self, g: &Geometry<f64>) -> &Sorted {
        self.rings.get_or_init(|| {
            let mut lines = Vec::new();
            each_ring(g, &mut |r| lines.extend(r.lines()));
            Sorted::new(lines)
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
            // No sweep can answer for shapes that cross themselves in
            // `O((n + m) log(n + m))` (finding a contact between two sets
            // of segments that each cross themselves is as hard as
            // Hopcroft's problem), so the R-tree goes on within a budget,
            // and past it the boundaries count as apart: the answer then
            // comes from where each piece lies in the other, which is what
            // it is unless the boundaries meet only in places no vertex
            // reveals. Such shapes are invalid polygons (OGC), on which
            // `geo`'s own predicates give no promise either.
            Sweep::SelfCrossing => pairs
                .take(SELF_CROSSING_PAIRS)
                .any(|(a, b)| line(a).intersects(&line(b))),
        }
    }
}

/// Pairs of segments whose boxes meet that the R-tree may test, beyond
/// its budget in proportion to the sizes, when a geometry crosses itself:
/// about 2^20 segment tests, tens of milliseconds.
const SELF_CROSSING_PAIRS: usize = 1 << 20;

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
        // A point is a segment of no length, so that the segment tests see
        // it on the other's segments and points.
        Geometry::Point(p) => f(Line::new(p.0, p.0)),
        Geometry::MultiPoint(m) => m.iter().for_each(|p| f(Line::new(p.0, p.0))),
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

/// Calls `f` with every ring of every polygon of `g`.
fn each_ring(g: &Geometry<f64>, f: &mut impl FnMut(&geo::LineString<f64>)) {
    let mut polygon = |p: &geo::Polygon<f64>| {
        f(p.exterior());
        p.interiors().iter().for_each(&mut *f);
    };
    match g {
        Geometry::Polygon(p) => polygon(p),
        Geometry::MultiPolygon(m) => m.iter().for_each(polygon),
        Geometry::Rect(r) => polygon(&r.to_polygon()),
        Geometry::Triangle(t) => polygon(&t.to_polygon()),
        Geometry::GeometryCollection(c) => c.iter().for_each(|g| each_ring(g, f)),
        _ => {}
    }
}

/// Where a position lies against the polygons of a geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In the interior of one of them.
    Inside,
    /// On a ring.
    Boundary,
    /// Outside all of them (in a hole, or away).
    Outside,
}

/// Where each of `queries` lies against the polygons whose ring segments
/// are `rings`, in `O((r + q) log(r + q))`; `None` when two ring segments
/// cross or overlap, so that the sweep's order (and with it the answer)
/// does not hold.
///
/// The same sweep as [`sweep`], over the rings alone, with one more fact
/// per segment: whether the area just above it is inside. The area just
/// above a segment is the same all along it (segments do not cross), so it
/// is set once, when the segment is inserted: the opposite of the area
/// above the nearest segment below it (crossing a ring goes in or out),
/// outside when there is none. Vertical segments bound nothing above or
/// below, so they are skipped; on a valid ring only the few through one
/// position are on the line at once. A query position is then in the area
/// above the nearest segment below it, on a ring when a segment starts,
/// ends or passes there (one of its neighbours on the line holds it).
/// Inside counts rings crossed, as `geo` does: a multi-polygon whose
/// polygons overlap (invalid) is outside where two overlap.
fn locate(rings: &Sorted, queries: &[Coord<f64>]) -> Option<Vec<Place>> {
    locate_on(rings, queries).map(|(places, _)| places)
}

/// [`locate`], and for each query the segment (its index in
/// `rings.by_start`) that holds it in its relative interior, if one does.
/// On rings that neither cross nor overlap there is at most one: two
/// segments through one position, neither ending there, cross or overlap.
/// The segments need not be rings for this second answer (line strings
/// do as well); the places are then meaningless.
fn locate_on(rings: &Sorted, queries: &[Coord<f64>]) -> Option<(Vec<Place>, Vec<Option<u32>>)> {
    let mut order: Vec<u32> = (0..queries.len() as u32).collect();
    order.sort_by(|&a, &b| sweep_cmp(queries[a as usize], queries[b as usize]));
    let segs = &rings.by_start;
    let ends: Vec<u32> = rings
        .by_end
        .iter()
        .copied()
        .filter(|&i| !segs[i as usize].is_point())
        .collect();
    let active = |index: u32| Active {
        seg: segs[index as usize],
        side: 0,
        index,
    };
    let flat = |a: &Active| a.side == 0 && a.seg.p.x != a.seg.q.x;
    let mut inside_above = vec![false; segs.len()];
    let mut out = vec![Place::Outside; queries.len()];
    let mut holder = vec![None; queries.len()];
    let mut line: BTreeSet<Active> = BTreeSet::new();
    let (mut si, mut ei, mut qi) = (0, 0, 0);
    let mut fresh: Vec<Active> = Vec::new();
    // Whether the area above the nearest flat segment below `a` is inside.
    let below_inside = |line: &BTreeSet<Active>, a: &Active, inside_above: &[bool]| {
        line.range(..*a)
            .rev()
            .find(|b| flat(b))
            .is_some_and(|b| inside_above[b.index as usize])
    };
    while qi < order.len() {
        let query = queries[order[qi] as usize];
        let mut at = query;
        if let Some(s) = segs.get(si).filter(|s| before(s.p, at)) {
            at = s.p;
        }
        if let Some(&e) = ends.get(ei).filter(|&&e| before(segs[e as usize].q, at)) {
            at = segs[e as usize].q;
        }
        let mut touched = false;
        let mut through = None;
        while let Some(&e) = ends.get(ei).filter(|&&e| segs[e as usize].q == at) {
            ei += 1;
            touched = true;
            let e = active(e);
            let (below, above) = neighbours(&line, &e);
            if !line.remove(&e) {
                return None;
            }
            if let (Some(x), Some(y)) = (below, above) {
                if test(&x, &y) == Sweep::SelfCrossing {
                    return None;
                }
            }
        }
        touched = touched || segs.get(si).is_some_and(|s| s.p == at);
        if touched {
            // A vertex here on a segment that passes through: the ring may
            // cross that segment here (in at one vertex, out at the next
            // edge), so the area above it may change here. It goes on as
            // a new segment from here, whose area above is set again.
            let probe = Active {
                seg: Seg { p: at, q: at },
                side: 1,
                index: 0,
            };
            let (below, above) = neighbours(&line, &probe);
            for n in [below, above].into_iter().flatten() {
                if n.seg.p != at && n.seg.q != at && n.seg.line().intersects(&at) {
                    through = Some(n.index);
                    line.remove(&n);
                    let rest = Active {
                        seg: Seg { p: at, q: n.seg.q },
                        ..n
                    };
                    line.insert(rest);
                    fresh.push(rest);
                }
            }
        }
        while segs.get(si).is_some_and(|s| s.p == at) {
            let s = active(si as u32);
            si += 1;
            if !s.seg.is_point() {
                if insert(&mut line, &s).is_err() {
                    return None;
                }
                fresh.push(s);
            }
        }
        // Bottom up, so that each finds the one below it already set.
        fresh.sort();
        for s in fresh.drain(..) {
            if flat(&s) {
                inside_above[s.index as usize] = !below_inside(&line, &s, &inside_above);
            }
        }
        if query != at {
            continue;
        }
        let probe = Active {
            seg: Seg { p: at, q: at },
            side: 1,
            index: 0,
        };
        let (place, through) = if touched {
            (Place::Boundary, through)
        } else {
            // No segment starts or ends here, so one that holds the
            // position holds it in its relative interior.
            let (below, above) = neighbours(&line, &probe);
            let on = |n: &Active| n.seg.line().intersects(&at);
            match [below, above].into_iter().flatten().find(on) {
                Some(n) => (Place::Boundary, Some(n.index)),
                None if below_inside(&line, &probe, &inside_above) => (Place::Inside, None),
                None => (Place::Outside, None),
            }
        };
        while let Some(&q) = order.get(qi).filter(|&&q| queries[q as usize] == at) {
            out[q as usize] = place;
            holder[q as usize] = through;
            qi += 1;
        }
    }
    Some((out, holder))
}

/// One position of every connected piece of `g` (a point, a line string,
/// a polygon).
fn piece_positions(g: &Geometry<f64>) -> Vec<Coord<f64>> {
    let mut out = Vec::new();
    any_piece(g, &mut |c| {
        out.push(c);
        false
    });
    out
}

/// One position of every ring of the polygons of `g`.
fn ring_positions(g: &Geometry<f64>) -> Vec<Coord<f64>> {
    let mut out = Vec::new();
    each_ring(g, &mut |r| out.extend(r.0.first().copied()));
    out
}

/// Positions tested one by one with `geo` (each `O(size)`) when a sweep
/// cannot locate them because a geometry crosses itself: at most this many
/// vertices visited in all, about the cost of a million segment tests.
const ONE_BY_ONE_BUDGET: usize = 1 << 22;

/// Where `queries` lie against `g` (whose segments are `sg`): by the sweep,
/// or, when `g`'s rings cross themselves, one by one within
/// [`ONE_BY_ONE_BUDGET`], positions past it counting as outside.
fn places(g: &Geometry<f64>, sg: &Segments, queries: &[Coord<f64>]) -> Vec<Place> {
    if let Some(places) = locate(sg.rings(g), queries) {
        return places;
    }
    let size = sg.tree.size().max(1);
    let within_budget = (ONE_BY_ONE_BUDGET / size).max(1);
    queries
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < within_budget && g.intersects(c) {
                Place::Inside
            } else {
                Place::Outside
            }
        })
        .collect()
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
///
/// The positions are located all at once by a sweep ([`locate`]), so that
/// a multi-polygon of thousands of pieces costs no more than one polygon.
pub(crate) fn intersects(
    a: &Geometry<f64>,
    sa: &Segments,
    b: &Geometry<f64>,
    sb: &Segments,
) -> bool {
    let hit = |p: &Place| *p != Place::Outside;
    sa.any_meets(sb)
        || places(b, sb, &piece_positions(a)).iter().any(hit)
        || places(a, sa, &piece_positions(b)).iter().any(hit)
}

/// `outer.covers(inner)` (WITHIN) for large geometries, in
/// `O((n + m) log(n + m))`: exact on valid geometries, `None` (the caller
/// then asks `geo`'s DE-9IM) only when the boundaries meet and one of the
/// geometries crosses or overlaps itself, `outer` is not areal, or a
/// rounded midpoint falls on a boundary (see [`touching`]).
///
/// When no segment of one meets a segment of the other, every connected
/// piece of `inner` lies wholly inside or wholly outside `outer`, and every
/// ring of `outer` wholly inside or outside `inner`. `inner` is covered
/// when each of its pieces is inside, and no ring of `outer` is inside
/// `inner` (a hole of `outer`, or another of its polygons, would leave part
/// of `inner` uncovered). When they meet, [`touching`] answers.
pub(crate) fn covers(
    outer: &Geometry<f64>,
    so: &Segments,
    inner: &Geometry<f64>,
    si: &Segments,
) -> Option<bool> {
    if so.any_meets(si) {
        return touching(outer, inner);
    }
    Some(
        places(outer, so, &piece_positions(inner))
            .iter()
            .all(|p| *p == Place::Inside)
            && places(inner, si, &ring_positions(outer))
                .iter()
                .all(|p| *p != Place::Inside),
    )
}

/// No polygon: the segment belongs to a line string or a line.
const NO_POLYGON: u32 = u32::MAX;

/// A segment of a geometry, with what [`touching`] needs to know of it.
#[derive(Debug, Clone, Copy)]
struct Edge {
    seg: Seg,
    /// The polygon whose ring it is, or [`NO_POLYGON`].
    polygon: u32,
    /// Whether the polygon's interior is on the left of `seg.p -> seg.q`
    /// (above, unless vertical).
    left: bool,
}

/// The segments of a geometry in sweep order (by start, then end), its
/// isolated points, and whether it has any line.
#[derive(Debug, Default)]
struct Edges {
    edges: Vec<Edge>,
    points: Vec<Coord<f64>>,
    lines: bool,
}

impl Edges {
    /// `None` when a ring has no winding order (fewer than three distinct
    /// positions), so that no side of it is the interior.
    fn new(g: &Geometry<f64>) -> Option<Self> {
        let mut out = Edges::default();
        let mut polygons = 0u32;
        let mut ok = true;
        out.walk(g, &mut polygons, &mut ok);
        if !ok {
            return None;
        }
        out.edges
            .sort_by(|a, b| sweep_cmp(a.seg.p, b.seg.p).then_with(|| sweep_cmp(a.seg.q, b.seg.q)));
        Some(out)
    }

    fn walk(&mut self, g: &Geometry<f64>, polygons: &mut u32, ok: &mut bool) {
        let line = |out: &mut Self, l: Line<f64>| {
            out.lines = true;
            if l.start == l.end {
                out.points.push(l.start);
            } else {
                out.edges.push(Edge {
                    seg: Seg::new(l),
                    polygon: NO_POLYGON,
                    left: false,
                });
            }
        };
        match g {
            Geometry::Point(p) => self.points.push(p.0),
            Geometry::MultiPoint(m) => self.points.extend(m.iter().map(|p| p.0)),
            Geometry::Line(l) => line(self, *l),
            Geometry::LineString(ls) => ls.lines().for_each(|l| line(self, l)),
            Geometry::MultiLineString(m) => m
                .iter()
                .flat_map(|ls| ls.lines())
                .for_each(|l| line(self, l)),
            Geometry::Polygon(p) => self.polygon(p, polygons, ok),
            Geometry::MultiPolygon(m) => m.iter().for_each(|p| self.polygon(p, polygons, ok)),
            Geometry::Rect(r) => self.polygon(&r.to_polygon(), polygons, ok),
            Geometry::Triangle(t) => self.polygon(&t.to_polygon(), polygons, ok),
            Geometry::GeometryCollection(c) => c.iter().for_each(|g| self.walk(g, polygons, ok)),
        }
    }

    fn polygon(&mut self, p: &geo::Polygon<f64>, polygons: &mut u32, ok: &mut bool) {
        use geo::winding_order::{Winding, WindingOrder};
        let id = *polygons;
        *polygons += 1;
        for (i, ring) in std::iter::once(p.exterior())
            .chain(p.interiors())
            .enumerate()
        {
            if ring.lines().all(|l| l.start == l.end) {
                // An empty ring, or one position: no side, no segment.
                self.points.extend(ring.0.first());
                continue;
            }
            let Some(winding) = ring.winding_order() else {
                *ok = false;
                return;
            };
            // The interior is on the left of a shell wound
            // counter-clockwise and of a hole wound clockwise.
            let left_along = (i == 0) == (winding == WindingOrder::CounterClockwise);
            for l in ring.lines().filter(|l| l.start != l.end) {
                let seg = Seg::new(l);
                self.edges.push(Edge {
                    seg,
                    polygon: id,
                    left: left_along == (seg.p == l.start),
                });
            }
        }
    }

    /// The segments (of polygons only, with `rings`) for the sweeps,
    /// indexed as `self.edges`.
    fn sorted(&self, rings: bool) -> Sorted {
        Sorted::from_sorted(
            self.edges
                .iter()
                .filter(|e| !rings || e.polygon != NO_POLYGON)
                .map(|e| e.seg)
                .collect(),
        )
    }

    /// Every endpoint and point, sorted, each once.
    fn vertices(&self) -> Vec<Coord<f64>> {
        let mut out: Vec<Coord<f64>> = self.edges.iter().flat_map(|e| [e.seg.p, e.seg.q]).collect();
        out.extend(&self.points);
        out.sort_by(|a, b| sweep_cmp(*a, *b));
        out.dedup();
        out
    }
}

/// A piece of an edge between the points where the other geometry's
/// vertices split it, with the edge of each geometry it lies on (two when
/// the geometries share it).
#[derive(Debug, Clone, Copy)]
struct Piece {
    seg: Seg,
    inner: Option<u32>,
    outer: Option<u32>,
}

/// The pieces of `edges`, each split at the positions `at` names for it
/// (its index, a position in its relative interior).
fn split(edges: &[Edge], mut at: Vec<(u32, Coord<f64>)>, inner: bool, out: &mut Vec<Piece>) {
    at.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| sweep_cmp(a.1, b.1)));
    at.dedup();
    let mut next = at.iter().peekable();
    for (i, e) in edges.iter().enumerate() {
        let mut from = e.seg.p;
        let cuts = std::iter::from_fn(|| next.next_if(|(j, _)| *j as usize == i).map(|c| c.1));
        for to in cuts.chain(std::iter::once(e.seg.q)) {
            let i = Some(i as u32);
            out.push(Piece {
                seg: Seg { p: from, q: to },
                inner: if inner { i } else { None },
                outer: if inner { None } else { i },
            });
            from = to;
        }
    }
}

/// A position half way along `s`, rounded: never farther from the
/// segment than a rounding of each coordinate, and never overflowing.
fn midpoint(s: &Seg) -> Coord<f64> {
    Coord {
        x: s.p.x / 2.0 + s.q.x / 2.0,
        y: s.p.y / 2.0 + s.q.y / 2.0,
    }
}

/// `outer.covers(inner)` when the boundaries meet, for an areal `outer`,
/// in `O((n + m) log(n + m))` by sweeps alone:
///
/// 1. Each geometry alone must not cross or overlap itself (a sweep each);
///    otherwise `None`.
/// 2. Every contact between a segment of one and a segment of the other is
///    then a proper crossing (interiors meeting at one point) or lies at an
///    endpoint of one of them (a touch, or an end of a collinear overlap).
///    So each segment is split at the vertices (of either geometry) in its
///    relative interior, which one sweep per side finds ([`locate_on`]);
///    the pieces are segments between existing positions, no coordinate is
///    computed. Now any two pieces of different geometries are identical
///    (merged into one piece of both), share an endpoint, cross properly,
///    or are apart.
/// 3. A sweep over all pieces finds a proper crossing if there is one
///    (pieces of one geometry do not cross, step 1): `inner` then has
///    points on both sides of a ring of `outer` (false).
/// 4. Otherwise the relative interior of a piece of one geometry alone
///    meets no boundary of the other, so it lies wholly inside or outside
///    the other, which its midpoint tells (one sweep per side): a piece of
///    `inner` outside `outer` is uncovered, and a piece of `outer` inside
///    `inner` leaves the outside of `outer` inside `inner` (false). A piece
///    of `outer` shared with a line of `inner` counts as one of `outer`
///    alone against the rings of `inner`. A
///    rounded midpoint that lands on the other's boundary (the piece
///    passes within a rounding of it) answers `None`.
/// 5. Then no boundary of `outer` passes through the interior of a
///    polygon of `inner`, which is connected, so that interior is wholly
///    inside or outside `outer`. Along a piece the two share, that is
///    decided by the sides: the interiors of both polygons lie on the same
///    side of it exactly when the polygon of `inner` is inside (false
///    otherwise). A polygon of `inner` with a piece of its own is inside by
///    step 4; so `inner` is covered.
///
/// Every vertex of `inner` is located against `outer` in step 2 as well,
/// which covers its points and ends the test early when one is outside.
fn touching(outer: &Geometry<f64>, inner: &Geometry<f64>) -> Option<bool> {
    let (eo, ei) = (Edges::new(outer)?, Edges::new(inner)?);
    if eo.lines || !eo.points.is_empty() {
        return None;
    }
    let (so, si) = (eo.sorted(false), ei.sorted(false));
    let none = Sorted::from_sorted(Vec::new());
    if sweep(&so, &none) != Sweep::Apart || sweep(&si, &none) != Sweep::Apart {
        return None;
    }
    // Step 2: the vertices of both on the segments of each. A vertex of one
    // geometry in the relative interior of its own segment (a hole that
    // touches its shell there) splits that segment too, so that where a
    // ring of the other passes through it, the pieces meet end to end.
    let vi = ei.vertices();
    let mut all: Vec<(Coord<f64>, bool)> = vi.iter().map(|&c| (c, true)).collect();
    all.extend(eo.vertices().into_iter().map(|c| (c, false)));
    all.sort_by(|a, b| sweep_cmp(a.0, b.0).then(b.1.cmp(&a.1)));
    all.dedup_by(|a, b| a.0 == b.0);
    let all_at: Vec<Coord<f64>> = all.iter().map(|a| a.0).collect();
    let (places, holders) = locate_on(&so, &all_at)?;
    if all
        .iter()
        .zip(&places)
        .any(|(a, p)| a.1 && *p == Place::Outside)
    {
        return Some(false);
    }
    let cuts = |holders: Vec<Option<u32>>| -> Vec<(u32, Coord<f64>)> {
        holders
            .iter()
            .zip(&all_at)
            .filter_map(|(h, c)| h.map(|h| (h, *c)))
            .collect()
    };
    let cuts_outer = cuts(holders);
    let cuts_inner = cuts(locate_on(&si, &all_at)?.1);
    let mut pieces = Vec::new();
    split(&eo.edges, cuts_outer, false, &mut pieces);
    split(&ei.edges, cuts_inner, true, &mut pieces);
    // Identical pieces of the two, next to each other once sorted, become
    // one. Adding zero makes -0 and 0 one key, as they are one position.
    let key = |s: &Seg| [s.p.x + 0.0, s.p.y + 0.0, s.q.x + 0.0, s.q.y + 0.0];
    pieces.sort_by(|a, b| {
        let (a, b) = (key(&a.seg), key(&b.seg));
        a.iter()
            .zip(&b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match merged.last_mut() {
            Some(m) if key(&m.seg) == key(&p.seg) => {
                if (m.inner.is_some() && p.inner.is_some())
                    || (m.outer.is_some() && p.outer.is_some())
                {
                    // One geometry overlaps itself, which step 1 excludes.
                    return None;
                }
                m.inner = m.inner.or(p.inner);
                m.outer = m.outer.or(p.outer);
            }
            _ => merged.push(p),
        }
    }
    // Step 3.
    let all = Sorted::from_sorted(merged.iter().map(|p| p.seg).collect());
    if sweep(&all, &none) != Sweep::Apart {
        return Some(false);
    }
    // Step 4.
    // A piece of `outer` that a line of `inner` shares is off the rings of
    // `inner` as much as one of `outer` alone, and may run through the
    // interior of one of its polygons (a collection of both).
    let on_ring = |i: Option<u32>| i.is_some_and(|i| ei.edges[i as usize].polygon != NO_POLYGON);
    let alone = |inner: bool| -> Vec<Coord<f64>> {
        merged
            .iter()
            .filter(|p| {
                if inner {
                    p.outer.is_none()
                } else {
                    !on_ring(p.inner)
                }
            })
            .map(|p| midpoint(&p.seg))
            .collect()
    };
    let places = locate(&so, &alone(true))?;
    if places.contains(&Place::Outside) {
        return Some(false);
    }
    if places.contains(&Place::Boundary) {
        return None;
    }
    if ei.edges.iter().any(|e| e.polygon != NO_POLYGON) {
        let places = locate(&ei.sorted(true), &alone(false))?;
        if places.contains(&Place::Inside) {
            return Some(false);
        }
        if places.contains(&Place::Boundary) {
            return None;
        }
    }
    // Step 5.
    let opposite = merged.iter().any(|p| match (p.inner, p.outer) {
        (Some(i), Some(o)) => {
            let (i, o) = (&ei.edges[i as usize], &eo.edges[o as usize]);
            i.polygon != NO_POLYGON && i.left != o.left
        }
        _ => false,
    });
    Some(!opposite)
}

/// `g.covers(r)` for a rectangle with an area, in `O(n log n)` whatever
/// the shape of `g`: no ring segment of `g` may pass through the rectangle's
/// interior (the outside of `g` is on one side of every segment of a valid
/// polygon), and then the interior lies in one area, inside or not, which
/// its centre tells.
pub(crate) fn covers_rect(g: &Geometry<f64>, sg: &Segments, r: &geo::Rect<f64>) -> bool {
    let (min, max) = (r.min(), r.max());
    let strictly_inside = |c: Coord<f64>| c.x > min.x && c.x < max.x && c.y > min.y && c.y < max.y;
    let mut crossed = false;
    each_ring(g, &mut |ring| {
        crossed = crossed
            || ring
                .lines()
                .any(|l| clipped_midpoint(l, r).is_some_and(strictly_inside));
    });
    !crossed && places(g, sg, &[r.center()])[0] == Place::Inside
}

/// The midpoint of the part of `l` inside the closed rectangle `r`, if
/// any (Liang-Barsky clipping). The part is a chord of a convex shape, so
/// its midpoint is strictly inside exactly when some point of it is.
fn clipped_midpoint(l: Line<f64>, r: &geo::Rect<f64>) -> Option<Coord<f64>> {
    let (d, min, max) = (l.delta(), r.min(), r.max());
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-d.x, l.start.x - min.x),
        (d.x, max.x - l.start.x),
        (-d.y, l.start.y - min.y),
        (d.y, max.y - l.start.y),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    (t0 <= t1).then(|| {
        let t = (t0 + t1) / 2.0;
        Coord {
            x: l.start.x + t * d.x,
            y: l.start.y + t * d.y,
        }
    })
}

/// The benchmark's interleaved combs, shared with the crate's tests.
#[cfg(test)]
#[path = "../tests/common/combs.rs"]
mod combs;

#[cfg(test)]
mod tests {
    use super::combs;
    use geo::Covers;

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

    fn polygon(rings: &[Vec<(f64, f64)>]) -> Geometry<f64> {
        let ls = |r: &Vec<(f64, f64)>| geo::LineString::from(r.clone());
        Geometry::Polygon(geo::Polygon::new(
            ls(&rings[0]),
            rings[1..].iter().map(ls).collect(),
        ))
    }

    /// `geo`'s answer for a position: inside, on a ring, or outside.
    fn geo_place(g: &Geometry<f64>, c: Coord<f64>) -> Place {
        let mut on = false;
        each_ring(g, &mut |r| on = on || r.lines().any(|l| l.intersects(&c)));
        if on {
            Place::Boundary
        } else if g.intersects(&c) {
            Place::Inside
        } else {
            Place::Outside
        }
    }

    /// Positions on and around a small grid: vertices, edge midpoints,
    /// and points between.
    fn grid_positions(size: i32) -> Vec<Coord<f64>> {
        let mut out = Vec::new();
        for i in -1..=2 * size {
            for j in -1..=2 * size {
                out.push(Coord {
                    x: f64::from(i) / 2.0,
                    y: f64::from(j) / 2.0,
                });
            }
        }
        out
    }

    /// A star ring with `radii` around `(cx, cy)`, optionally reversed.
    fn star_ring(radii: &[f64], cx: f64, cy: f64, scale: f64) -> Vec<(f64, f64)> {
        let n = radii.len();
        let mut ring: Vec<(f64, f64)> = radii
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let a = std::f64::consts::TAU * i as f64 / n as f64;
                (cx + scale * r * a.cos(), cy + scale * r * a.sin())
            })
            .collect();
        ring.push(ring[0]);
        ring
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// The sweep locates every position as `geo` does, on valid
        /// polygons whose vertices and edges coincide with the positions
        /// (grids), whenever it answers at all (it gives up only on rings
        /// that cross).
        #[test]
        fn locate_answers_as_geo_on_a_grid(outer in grid_ring(10, 4), hole in grid_ring(6, 4), with_hole in any::<bool>()) {
            let mut rings = vec![outer];
            if with_hole {
                rings.push(hole);
            }
            let g = polygon(&rings);
            // On invalid polygons (a hole outside its shell) `geo` answers
            // by the shell first, the sweep by the rings crossed.
            if !geo::Validation::is_valid(&g) {
                return Ok(());
            }
            let sg = Segments::new(&g);
            let queries = grid_positions(4);
            match locate(sg.rings(&g), &queries) {
                Some(places) => {
                    for (c, p) in queries.iter().zip(places) {
                        prop_assert_eq!(p, geo_place(&g, *c), "at {:?}", c);
                    }
                }
                None => prop_assert!(brute_self_crossing(&segments(
                    &rings.iter().flat_map(|r| ring(r)).collect::<Vec<_>>()
                ))),
            }
        }

        /// Stars with a hole and a second polygon: the sweep always
        /// answers, and as `geo` does.
        #[test]
        fn locate_answers_as_geo_on_stars(
            radii in proptest::collection::vec(prop_oneof![Just(1.0), 0.6..1.0f64], 3..40),
            qs in proptest::collection::vec((-2.0..4.0f64, -2.0..2.0f64), 1..60),
        ) {
            let outer = star_ring(&radii, 0.0, 0.0, 1.0);
            let mut hole = star_ring(&radii, 0.0, 0.0, 0.5);
            hole.reverse();
            let second = star_ring(&radii, 2.5, 0.0, 1.0);
            let g = Geometry::MultiPolygon(geo::MultiPolygon(vec![
                match polygon(&[outer.clone(), hole.clone()]) {
                    Geometry::Polygon(p) => p,
                    _ => unreachable!(),
                },
                match polygon(std::slice::from_ref(&second)) {
                    Geometry::Polygon(p) => p,
                    _ => unreachable!(),
                },
            ]));
            let sg = Segments::new(&g);
            // The vertices themselves, and random positions.
            let mut queries: Vec<Coord<f64>> = outer.iter().chain(&hole).map(|&(x, y)| Coord { x, y }).collect();
            queries.extend(qs.iter().map(|&(x, y)| Coord { x, y }));
            let places = locate(sg.rings(&g), &queries);
            prop_assert!(places.is_some());
            for (c, p) in queries.iter().zip(places.unwrap()) {
                prop_assert_eq!(p, geo_place(&g, *c), "at {:?}", c);
            }
        }

        /// WITHIN through the sweeps: exactly `geo`'s answer, whether the
        /// two boundaries meet or not.
        #[test]
        fn covers_answers_as_geo_on_stars(
            a in proptest::collection::vec(prop_oneof![Just(1.0), 0.7..1.0f64], 3..30),
            b in proptest::collection::vec(prop_oneof![Just(1.0), 0.7..1.0f64], 3..30),
            (cx, cy, scale) in (-1.5..1.5f64, -1.5..1.5f64, 0.05..1.2f64),
            holed in any::<bool>(),
        ) {
            let mut rings = vec![star_ring(&a, 0.0, 0.0, 1.0)];
            if holed {
                let mut hole = star_ring(&a, 0.0, 0.0, 0.3);
                hole.reverse();
                rings.push(hole);
            }
            let outer = polygon(&rings);
            let inner = polygon(&[star_ring(&b, cx, cy, scale)]);
            let (so, si) = (Segments::new(&outer), Segments::new(&inner));
            prop_assert_eq!(covers(&outer, &so, &inner, &si), Some(outer.covers(&inner)));
            // And the other way round.
            prop_assert_eq!(covers(&inner, &si, &outer, &so), Some(inner.covers(&outer)));
        }

        /// A rectangle with an area is covered exactly when `geo` says so.
        #[test]
        fn covers_rect_answers_as_geo(
            radii in proptest::collection::vec(prop_oneof![Just(1.0), 0.5..1.0f64], 3..30),
            (x, y, w, h) in (-1.2..1.2f64, -1.2..1.2f64, 0.01..1.0f64, 0.01..1.0f64),
            holed in any::<bool>(),
        ) {
            let mut rings = vec![star_ring(&radii, 0.0, 0.0, 1.0)];
            if holed {
                let mut hole = star_ring(&radii, 0.0, 0.0, 0.3);
                hole.reverse();
                rings.push(hole);
            }
            let g = polygon(&rings);
            let r = geo::Rect::new(Coord { x, y }, Coord { x: x + w, y: y + h });
            prop_assert_eq!(covers_rect(&g, &Segments::new(&g), &r), g.covers(&r));
        }
    }

    /// A triangle in the base of a comb of 2,000 teeth is within it; one
    /// across a tooth is not; the other comb of the pair is not either.
    #[test]
    fn covers_of_combs() {
        let t = 500;
        let up = polygon(&[combs::comb_ring(t, true)]);
        let down = polygon(&[combs::comb_ring(t, false)]);
        let inside = polygon(&[vec![(0.2, 0.02), (0.4, 0.02), (0.3, 0.08), (0.2, 0.02)]]);
        let across = polygon(&[vec![(0.2, 0.02), (0.4, 0.02), (0.3, 0.5), (0.2, 0.02)]]);
        let (su, sd) = (Segments::new(&up), Segments::new(&down));
        // What WITHIN answers: the sweep, or the exact test where the
        // boundaries meet.
        let within = |outer: &Geometry<f64>, so: &Segments, inner: &Geometry<f64>| {
            covers(outer, so, inner, &Segments::new(inner)).unwrap_or_else(|| outer.covers(inner))
        };
        assert!(within(&up, &su, &inside));
        assert!(!within(&up, &su, &across));
        assert_eq!(
            covers(&up, &su, &down, &sd),
            Some(false),
            "apart: the sweep answers"
        );
        assert!(!within(&down, &sd, &inside));
        assert!(covers_rect(
            &up,
            &su,
            &geo::Rect::new(Coord { x: 0.1, y: 0.01 }, Coord { x: 0.9, y: 0.09 })
        ));
        assert!(!covers_rect(
            &up,
            &su,
            &geo::Rect::new(Coord { x: 0.1, y: 0.01 }, Coord { x: 0.9, y: 0.3 })
        ));
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

    /// The ring of a grid rectangle through its corners and through each
    /// other grid position on its sides that `keep` keeps (bit `i` for
    /// the `i`-th), counter-clockwise unless `cw`.
    fn grid_rect((x0, y0, w, h): (i32, i32, i32, i32), keep: u64, cw: bool) -> Vec<(f64, f64)> {
        let (x1, y1) = (x0 + w, y0 + h);
        let mut all = Vec::new();
        all.extend((x0..x1).map(|x| (x, y0)));
        all.extend((y0..y1).map(|y| (x1, y)));
        all.extend((x0 + 1..=x1).rev().map(|x| (x, y1)));
        all.extend((y0 + 1..=y1).rev().map(|y| (x0, y)));
        let corner = |&(x, y): &(i32, i32)| (x == x0 || x == x1) && (y == y0 || y == y1);
        let mut ring: Vec<(f64, f64)> = all
            .iter()
            .enumerate()
            .filter(|(i, c)| corner(c) || keep >> (i % 64) & 1 == 1)
            .map(|(_, &(x, y))| (f64::from(x), f64::from(y)))
            .collect();
        if cw {
            ring.reverse();
        }
        ring.push(ring[0]);
        ring
    }

    /// One polygon (its rings) on a small grid: a rectangle with or
    /// without a rectangular hole, a triangle, or any ring through grid
    /// positions. Many are invalid (a hole outside its shell, a ring that
    /// crosses itself); the test skips those, as `geo` promises nothing
    /// for them.
    fn grid_polygon() -> impl Strategy<Value = Vec<Vec<(f64, f64)>>> {
        let rect = (0..4, 0..4, 1..5, 1..5);
        prop_oneof![
            (rect.clone(), any::<u64>(), any::<bool>())
                .prop_map(|(r, k, cw)| vec![grid_rect(r, k, cw)]),
            (
                rect.clone(),
                any::<u64>(),
                (0..6, 0..6, 1..3, 1..3),
                any::<u64>()
            )
                .prop_map(|(r, k, h, kh)| { vec![grid_rect(r, k, false), grid_rect(h, kh, true)] }),
            // A triangle hole, which may touch the shell at a vertex.
            (
                rect.clone(),
                any::<u64>(),
                proptest::collection::vec((0..9, 0..9), 3)
            )
                .prop_map(|(r, k, v)| {
                    let mut hole: Vec<(f64, f64)> = v
                        .into_iter()
                        .map(|(x, y)| (f64::from(x) / 2.0, f64::from(y) / 2.0))
                        .collect();
                    hole.push(hole[0]);
                    vec![grid_rect(r, k, false), hole]
                }),
            proptest::collection::vec((0..6, 0..6), 3).prop_map(|v| {
                let mut ring: Vec<(f64, f64)> = v
                    .into_iter()
                    .map(|(x, y)| (f64::from(x), f64::from(y)))
                    .collect();
                ring.push(ring[0]);
                vec![ring]
            }),
            grid_ring(7, 5).prop_map(|r| vec![r]),
        ]
    }

    fn multi(polygons: &[Vec<Vec<(f64, f64)>>]) -> Geometry<f64> {
        if polygons.len() == 1 {
            return polygon(&polygons[0]);
        }
        Geometry::MultiPolygon(geo::MultiPolygon(
            polygons
                .iter()
                .map(|p| match polygon(p) {
                    Geometry::Polygon(p) => p,
                    _ => unreachable!(),
                })
                .collect(),
        ))
    }

    /// An inner geometry made from `outer`'s polygons: the same, its holes
    /// filled, its rings with a vertex added half way along every edge,
    /// or any polygon, two of them, a line string or points of the grid.
    fn grid_inner(outer: Vec<Vec<Vec<(f64, f64)>>>) -> impl Strategy<Value = Geometry<f64>> {
        let same = multi(&outer);
        let holes: Vec<Vec<Vec<(f64, f64)>>> = outer
            .iter()
            .flat_map(|p| p[1..].iter().map(|h| vec![h.clone()]))
            .collect();
        let filled = if holes.is_empty() {
            same.clone()
        } else {
            multi(&holes)
        };
        let halved: Vec<Vec<Vec<(f64, f64)>>> = outer
            .iter()
            .map(|p| {
                p.iter()
                    .map(|r| {
                        let mut out = vec![r[0]];
                        for w in r.windows(2) {
                            out.push(((w[0].0 + w[1].0) / 2.0, (w[0].1 + w[1].1) / 2.0));
                            out.push(w[1]);
                        }
                        out
                    })
                    .collect()
            })
            .collect();
        // Its shells filled, with its holes' rings as line strings.
        let mut parts: Vec<Geometry<f64>> = outer.iter().map(|p| polygon(&p[..1])).collect();
        parts.extend(outer.iter().flat_map(|p| {
            p[1..]
                .iter()
                .map(|h| Geometry::LineString(h.clone().into()))
        }));
        let lined = Geometry::GeometryCollection(geo::GeometryCollection(parts));
        let point = |(x, y): (i32, i32)| Coord {
            x: f64::from(x) / 2.0,
            y: f64::from(y) / 2.0,
        };
        prop_oneof![
            Just(same),
            Just(filled),
            Just(multi(&halved)),
            Just(lined),
            grid_polygon().prop_map(|p| polygon(&p)),
            (grid_polygon(), grid_polygon()).prop_map(|(a, b)| multi(&[a, b])),
            proptest::collection::vec((0..12, 0..12), 2..5)
                .prop_map(move |v| { Geometry::LineString(v.into_iter().map(point).collect()) }),
            (
                grid_polygon(),
                proptest::collection::vec((0..12, 0..12), 2..4)
            )
                .prop_map(move |(p, v)| {
                    Geometry::GeometryCollection(geo::GeometryCollection(vec![
                        polygon(&p),
                        Geometry::LineString(v.into_iter().map(point).collect()),
                    ]))
                }),
            proptest::collection::vec((0..12, 0..12), 1..5).prop_map(move |v| {
                Geometry::MultiPoint(v.into_iter().map(|c| geo::Point(point(c))).collect())
            }),
        ]
    }

    fn grid_pair() -> impl Strategy<Value = (Geometry<f64>, Geometry<f64>)> {
        prop_oneof![
            grid_polygon().prop_map(|p| vec![p]),
            (grid_polygon(), grid_polygon()).prop_map(|(a, b)| vec![a, b]),
        ]
        .prop_flat_map(|outer| (Just(multi(&outer)), grid_inner(outer)))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// WITHIN where the boundaries touch (shared edges and vertices,
        /// vertices on edges, holes touching shells, identical shapes, a
        /// hole filled exactly): the sweeps answer as `geo`'s DE-9IM on
        /// every valid pair of grid shapes, each way round.
        #[test]
        fn touching_answers_as_geo_on_a_grid((outer, inner) in grid_pair()) {
            use geo::Validation;
            // `geo` counts a ring of no area (three positions on a line)
            // as valid; it has no interior side, and no answer here.
            let flat = |g: &Geometry<f64>| {
                use geo::winding_order::Winding;
                let mut flat = false;
                each_ring(g, &mut |r| flat = flat || r.winding_order().is_none());
                flat
            };
            if !outer.is_valid() || !inner.is_valid() || flat(&outer) || flat(&inner) {
                return Ok(());
            }
            let check = |outer: &Geometry<f64>, inner: &Geometry<f64>| -> Result<(), TestCaseError> {
                let want = outer.covers(inner);
                match touching(outer, inner) {
                    Some(got) => prop_assert_eq!(got, want, "touching"),
                    // A valid line string may cross itself.
                    None => prop_assert!(
                        matches!(inner, Geometry::LineString(_)) && !matches!(outer, Geometry::LineString(_)),
                        "no answer"
                    ),
                }
                let (so, si) = (Segments::new(outer), Segments::new(inner));
                if let Some(got) = covers(outer, &so, inner, &si) {
                    prop_assert_eq!(got, want, "covers");
                }
                Ok(())
            };
            // WITHIN tests a collection member by member (`object.rs`,
            // `covers_members`): a collection is covered when each of its
            // members is.
            if let Geometry::GeometryCollection(members) = &inner {
                for m in members {
                    check(&outer, m)?;
                }
                return Ok(());
            }
            check(&outer, &inner)?;
            if !matches!(inner, Geometry::LineString(_) | Geometry::MultiPoint(_) | Geometry::GeometryCollection(_)) {
                check(&inner, &outer)?;
            }
        }
    }

    /// The leaning combs, touching: teeth cut half way (vertices on the
    /// other's edges, overlapping edges), the same comb, its base alone
    /// (every tooth's foot on its top edge), and teeth one taller (out at
    /// the top). Small enough for `geo` to check each answer.
    fn touching_combs(t: i32) -> Vec<(&'static str, Geometry<f64>, Geometry<f64>, bool)> {
        let h = 4 * t;
        let comb = polygon(&[combs::leaning_comb(t, h)]);
        let base = polygon(&[vec![
            (0.0, 0.0),
            (f64::from(4 * t), 0.0),
            (f64::from(4 * t + 1), 1.0),
            (1.0, 1.0),
            (0.0, 0.0),
        ]]);
        vec![
            (
                "cut teeth",
                comb.clone(),
                polygon(&[combs::leaning_comb(t, h / 2)]),
                true,
            ),
            ("same comb", comb.clone(), comb.clone(), true),
            ("base", comb.clone(), base.clone(), true),
            (
                "taller teeth",
                comb.clone(),
                polygon(&[combs::leaning_comb(t, h + 1)]),
                false,
            ),
            ("comb in its base", base, comb, false),
        ]
    }

    #[test]
    fn touching_combs_answer_as_geo() {
        for (name, outer, inner, want) in touching_combs(20) {
            assert_eq!(outer.covers(&inner), want, "geo: {name}");
            assert_eq!(touching(&outer, &inner), Some(want), "{name}");
        }
    }

    /// The same at 10,000 vertices a comb, where `geo`'s DE-9IM takes
    /// seconds: the sweeps answer, without it.
    #[test]
    fn large_touching_combs_are_answered_without_the_fallback() {
        for (name, outer, inner, want) in touching_combs(2_500) {
            let (so, si) = (Segments::new(&outer), Segments::new(&inner));
            assert!(so.any_meets(&si), "{name}: the boundaries touch");
            assert_eq!(covers(&outer, &so, &inner, &si), Some(want), "{name}");
        }
    }

    /// A hole that touches its shell at a vertex lying on the shell's
    /// edge, with the other geometry's rings through that vertex.
    #[test]
    fn holes_touching_their_shell() {
        let shell = vec![(0.0, 0.0), (6.0, 0.0), (6.0, 6.0), (0.0, 6.0), (0.0, 0.0)];
        let hole = vec![(0.0, 2.0), (2.0, 3.0), (2.0, 1.0), (0.0, 2.0)];
        let holed = polygon(&[shell.clone(), hole.clone()]);
        let full = polygon(std::slice::from_ref(&shell));
        let filler = polygon(&[vec![(0.0, 2.0), (2.0, 1.0), (2.0, 3.0), (0.0, 2.0)]]);
        let wedge = polygon(&[vec![(0.0, 0.0), (2.0, 1.0), (0.0, 2.0), (0.0, 0.0)]]);
        let across = polygon(&[vec![(0.0, 1.0), (1.0, 2.0), (0.0, 3.0), (0.0, 1.0)]]);
        let cases = [
            ("holed in full", &full, &holed, true),
            ("full in holed", &holed, &full, false),
            ("hole filled", &holed, &filler, false),
            ("wedge beside the hole", &holed, &wedge, true),
            ("across the touching vertex", &holed, &across, false),
            ("holed in itself", &holed, &holed, true),
        ];
        for (name, outer, inner, want) in cases {
            assert_eq!(outer.covers(inner), want, "geo: {name}");
            assert_eq!(touching(outer, inner), Some(want), "{name}");
        }
    }

    /// A collection of a polygon and a line string inside it, against the
    /// polygon with a hole whose ring is that line string: the line covers
    /// the hole's ring, but the hole lies in the polygon's interior.
    #[test]
    fn a_line_of_the_inner_collection_along_a_hole() {
        let shell = vec![(0.0, 0.0), (6.0, 0.0), (6.0, 6.0), (0.0, 6.0), (0.0, 0.0)];
        let hole = vec![(1.0, 1.0), (2.0, 3.0), (3.0, 1.0), (1.0, 1.0)];
        let outer = polygon(&[shell.clone(), hole.clone()]);
        let line = Geometry::LineString(geo::LineString::from(hole.clone()));
        let both = Geometry::GeometryCollection(geo::GeometryCollection(vec![
            polygon(std::slice::from_ref(&shell)),
            line.clone(),
        ]));
        assert!(!outer.covers(&both), "geo");
        assert_eq!(touching(&outer, &both), Some(false));
        assert!(outer.covers(&line), "geo");
        assert_eq!(touching(&outer, &line), Some(true));
    }
}
