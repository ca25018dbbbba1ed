//! INTERSECTS between a stored polygon and a query polygon of 1,000 and
//! 10,000 vertices, three ways side by side: `geo`'s test of every pair of
//! segments, the R-tree of segments that replaced it (every pair whose
//! boxes meet), and what the server does now (`Object::intersects`): the
//! R-tree within a budget of pairs, then the sweep.
//!
//! Three shapes: `combs`, two combs whose straight teeth interleave without
//! touching; `teeth`, the same combs sheared so every tooth is a long
//! diagonal whose box overlaps most others (the R-tree's worst case); and
//! `stars`, two random star-shaped polygons that overlap without their
//! boundaries meeting, one inside the other.
//!
//! Run with `cargo bench -p geohook-db --bench polygons`. Each iteration
//! parses the query polygon, as the server does for every command (its
//! sorted segments or its R-tree are built per query); the stored polygon
//! is parsed once, so its own are built once.

use divan::Bencher;
use geo::{Coord, Geometry, Intersects, Line, LinesIter};
use geohook_db::{Area, Object};
use rand::{Rng, SeedableRng};
use rstar::primitives::Line as TreeLine;
use rstar::RTree;

fn main() {
    divan::main();
}

const SIZES: &[usize] = &[1_000, 10_000];

#[path = "../tests/common/combs.rs"]
mod combs;

/// The shapes, each a pair of GeoJSON polygons of about `n` vertices
/// whose boundaries never meet.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Combs,
    Teeth,
    Stars,
}

impl Shape {
    fn pair(self, n: usize) -> (String, String) {
        match self {
            Shape::Combs => (
                combs::comb_geojson(n / 4, true, 0.0),
                combs::comb_geojson(n / 4, false, 0.0),
            ),
            Shape::Teeth => (
                combs::teeth_geojson(n / 4, true, 0.0, 1.0),
                combs::teeth_geojson(n / 4, false, 0.0, 1.0),
            ),
            Shape::Stars => (star(n, 1.0, 1.3, 1), star(n, 0.5, 0.95, 2)),
        }
    }
}

/// A star-shaped polygon of `n` vertices with radii (in tenths of a degree)
/// drawn from `lo..hi`: it never crosses itself.
fn star(n: usize, lo: f64, hi: f64, seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut coords: Vec<String> = (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * i as f64 / n as f64;
            let r = rng.random_range(lo..hi) * 0.1;
            format!("[{},{}]", -112.0 + r * a.cos(), 33.0 + r * a.sin())
        })
        .collect();
    coords.push(coords[0].clone());
    format!(
        r#"{{"type":"Polygon","coordinates":[[{}]]}}"#,
        coords.join(",")
    )
}

fn geometry(o: &Object) -> &Geometry<f64> {
    let Object::Geometry(g) = o else {
        unreachable!("a polygon")
    };
    g.geometry()
}

/// The R-tree test as it was: both geometries' segments in `rstar` trees,
/// walked together, every pair whose boxes meet tested exactly.
struct Tree(RTree<TreeLine<[f64; 2]>>);

impl Tree {
    fn new(g: &Geometry<f64>) -> Self {
        let Geometry::Polygon(p) = g else {
            unreachable!("a polygon")
        };
        let lines = p
            .lines_iter()
            .map(|l| TreeLine::new([l.start.x, l.start.y], [l.end.x, l.end.y]))
            .collect();
        Tree(RTree::bulk_load(lines))
    }

    fn meets(&self, other: &Tree) -> bool {
        let line = |l: &TreeLine<[f64; 2]>| {
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
        };
        self.0
            .intersection_candidates_with_other_tree(&other.0)
            .any(|(a, b)| line(a).intersects(&line(b)))
    }
}

fn pairwise(bencher: Bencher<'_, '_>, shape: Shape, n: usize) {
    let (stored, query) = shape.pair(n);
    let stored = Object::from_geojson(&stored).unwrap();
    bencher.bench_local(|| {
        let q = Object::from_geojson(&query).unwrap();
        geometry(&stored).intersects(geometry(&q))
    });
}

fn rtree(bencher: Bencher<'_, '_>, shape: Shape, n: usize) {
    let (stored, query) = shape.pair(n);
    let stored = Object::from_geojson(&stored).unwrap();
    let tree = Tree::new(geometry(&stored));
    bencher.bench_local(|| {
        let q = Object::from_geojson(&query).unwrap();
        // The boundaries never meet, so the answer comes from one position
        // of each inside the other, as in `Object::intersects`.
        let meets = tree.meets(&Tree::new(geometry(&q)));
        assert!(!meets);
    });
}

fn bounded(bencher: Bencher<'_, '_>, shape: Shape, n: usize) {
    let (stored, query) = shape.pair(n);
    let stored = Object::from_geojson(&stored).unwrap();
    bencher.bench_local(|| {
        let area = Area::Object(Object::from_geojson(&query).unwrap());
        stored.intersects(&area)
    });
}

/// `geo`'s pairwise test: 10,000 vertices take seconds, so only 1,000.
#[divan::bench(args = [Shape::Combs, Shape::Teeth, Shape::Stars], sample_count = 5, sample_size = 1)]
fn pairwise_1000(bencher: Bencher<'_, '_>, shape: Shape) {
    pairwise(bencher, shape, 1_000);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn combs_rtree(bencher: Bencher<'_, '_>, n: usize) {
    rtree(bencher, Shape::Combs, n);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn combs_bounded(bencher: Bencher<'_, '_>, n: usize) {
    bounded(bencher, Shape::Combs, n);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn teeth_rtree(bencher: Bencher<'_, '_>, n: usize) {
    rtree(bencher, Shape::Teeth, n);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn teeth_bounded(bencher: Bencher<'_, '_>, n: usize) {
    bounded(bencher, Shape::Teeth, n);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn stars_rtree(bencher: Bencher<'_, '_>, n: usize) {
    rtree(bencher, Shape::Stars, n);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn stars_bounded(bencher: Bencher<'_, '_>, n: usize) {
    bounded(bencher, Shape::Stars, n);
}

/// Parsing the query alone, the part of every figure above that is not
/// the test.
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn parse_query(bencher: Bencher<'_, '_>, n: usize) {
    let (_, query) = Shape::Teeth.pair(n);
    bencher.bench_local(|| Object::from_geojson(&query).unwrap());
}

/// WITHIN of the teeth: the two combs' boxes do not nest, so this is
/// answered from the boxes (it was `geo`'s DE-9IM: 6 s at 10,000).
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn within_teeth(bencher: Bencher<'_, '_>, n: usize) {
    let (stored, query) = Shape::Teeth.pair(n);
    let stored = Object::from_geojson(&stored).unwrap();
    bencher.bench_local(|| {
        let area = Area::Object(Object::from_geojson(&query).unwrap());
        stored.within(&area)
    });
}

/// A small triangle in the base of a comb of diagonal teeth, and the comb:
/// the boxes nest, so WITHIN needs the shapes. The query is the comb.
fn base_and_teeth(n: usize) -> (Object, String) {
    let (teeth, _) = Shape::Teeth.pair(n);
    // The base runs from y 0 to 0.1 of the comb before the shear; at
    // x 0.5 it is sheared by at most 0.1 of its height.
    let x = |u: f64| -112.0 + u / 2.2 * 0.1;
    let triangle = format!(
        r#"{{"type":"Polygon","coordinates":[[[{},33.002],[{},33.002],[{},33.008],[{},33.002]]]}}"#,
        x(0.4),
        x(0.6),
        x(0.5),
        x(0.4)
    );
    (Object::from_geojson(&triangle).unwrap(), teeth)
}

/// WITHIN of a triangle in the base of the teeth, as the server answers it
/// now (the sweep above the size where `geo` is cheap).
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn within_teeth_base(bencher: Bencher<'_, '_>, n: usize) {
    let (stored, query) = base_and_teeth(n);
    bencher.bench_local(|| {
        let area = Area::Object(Object::from_geojson(&query).unwrap());
        assert!(stored.within(&area));
    });
}

/// The same through `geo`'s DE-9IM, which the server ran before at every
/// size: it nodes the comb against itself through boxes of segments, and
/// the teeth's boxes overlap by the thousand.
#[divan::bench(args = SIZES, sample_count = 1, sample_size = 1)]
fn within_teeth_base_geo(bencher: Bencher<'_, '_>, n: usize) {
    use geo::Covers;
    let (stored, query) = base_and_teeth(n);
    bencher.bench_local(|| {
        let q = Object::from_geojson(&query).unwrap();
        assert!(geometry(&q).covers(geometry(&stored)));
    });
}

/// A comb of `n / 4` leaning teeth (every tooth's box meets every other's)
/// and the same comb with its teeth cut half way: the boundaries touch all
/// along (the cut teeth's tops on the full teeth's edges, the sides and
/// base shared), and the cut comb is within the full one. The query is the
/// full comb.
fn touching_teeth(n: usize) -> (Object, String) {
    let t = i32::try_from(n / 4).expect("a small comb");
    let cut = combs::leaning_comb_geojson(t, 2 * t);
    (
        Object::from_geojson(&cut).unwrap(),
        combs::leaning_comb_geojson(t, 4 * t),
    )
}

/// WITHIN of the cut comb in the full one, as the server answers it now:
/// above 2,048 vertices in the two, the sweeps, which split the touching
/// boundaries at each other's vertices (it ran `geo`'s DE-9IM before).
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn within_touching_teeth(bencher: Bencher<'_, '_>, n: usize) {
    let (stored, query) = touching_teeth(n);
    bencher.bench_local(|| {
        let area = Area::Object(Object::from_geojson(&query).unwrap());
        assert!(stored.within(&area));
    });
}

/// The same through `geo`'s DE-9IM, which the server ran for touching
/// boundaries at every size before.
#[divan::bench(args = SIZES, sample_count = 1, sample_size = 1)]
fn within_touching_teeth_geo(bencher: Bencher<'_, '_>, n: usize) {
    use geo::Covers;
    let (stored, query) = touching_teeth(n);
    bencher.bench_local(|| {
        let q = Object::from_geojson(&query).unwrap();
        assert!(geometry(&q).covers(geometry(&stored)));
    });
}
