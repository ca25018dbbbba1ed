//! INTERSECTS between two large geometries goes through segment indexes
//! instead of `geo`'s test of every pair of segments; it must answer exactly
//! as that pairwise test (the oracle here) does, for polygons that are
//! nested, disjoint, crossing or touching at a vertex, polygons with holes,
//! multi-polygons and line strings.

#[path = "common/combs.rs"]
mod combs;
mod common;

use common::*;
use geo::Intersects;
use geohook_db::{Area, Object};
use proptest::prelude::*;

/// Enough vertices on each side that their product is above the size at
/// which the index is used.
const VERTICES: std::ops::Range<usize> = 130..260;

/// A star-shaped ring around `(cx, cy)`: evenly spaced angles, so it never
/// crosses itself, and radii from `radii` (fractions of `r`), so that edges
/// of different rings are often parallel or collinear.
fn star(cx: f64, cy: f64, r: f64, radii: &[f64], turn: f64) -> Vec<(f64, f64)> {
    let n = radii.len();
    let mut ring: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let a = turn + std::f64::consts::TAU * i as f64 / n as f64;
            (cx + r * radii[i] * a.cos(), cy + r * radii[i] * a.sin())
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn ring_json(ring: &[(f64, f64)]) -> String {
    let body: Vec<String> = ring.iter().map(|(x, y)| format!("[{x},{y}]")).collect();
    format!("[{}]", body.join(","))
}

/// One random geometry's parts: its kind and a few rings or walks.
#[derive(Debug, Clone)]
struct Spec {
    kind: u8,
    cx: f64,
    cy: f64,
    r: f64,
    radii: Vec<f64>,
    turn: f64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..4u8,
        -1.0..1.0f64,
        -1.0..1.0f64,
        0.2..1.5f64,
        VERTICES.prop_flat_map(|n| {
            proptest::collection::vec(
                prop_oneof![Just(0.7), Just(0.85), Just(1.0), 0.6..1.0f64],
                n,
            )
        }),
        0.0..1.0f64,
    )
        .prop_map(|(kind, cx, cy, r, radii, turn)| Spec {
            kind,
            cx,
            cy,
            r,
            radii,
            turn,
        })
}

/// The GeoJSON of a spec: a polygon, a polygon with a hole, a multi-polygon
/// of two far-apart stars, or a line string along the star (open). With
/// `touch`, the first vertex is moved onto `touch`, so that the two
/// geometries share a vertex.
fn json(s: &Spec, touch: Option<(f64, f64)>) -> String {
    let mut outer = star(s.cx, s.cy, s.r, &s.radii, s.turn);
    if let Some(t) = touch {
        outer[0] = t;
        let last = outer.len() - 1;
        outer[last] = t;
    }
    match s.kind {
        0 => format!(
            r#"{{"type":"Polygon","coordinates":[{}]}}"#,
            ring_json(&outer)
        ),
        1 => {
            // Radii of the hole stay below the smallest of the outer ring.
            let hole_radii: Vec<f64> = s.radii.iter().map(|r| r * 0.5).collect();
            let mut hole = star(s.cx, s.cy, s.r, &hole_radii, s.turn + 0.01);
            hole.reverse();
            format!(
                r#"{{"type":"Polygon","coordinates":[{},{}]}}"#,
                ring_json(&outer),
                ring_json(&hole)
            )
        }
        2 => {
            let far = star(s.cx + 3.5 * s.r, s.cy, s.r, &s.radii, s.turn);
            format!(
                r#"{{"type":"MultiPolygon","coordinates":[[{}],[{}]]}}"#,
                ring_json(&outer),
                ring_json(&far)
            )
        }
        _ => {
            outer.pop();
            format!(
                r#"{{"type":"LineString","coordinates":{}}}"#,
                ring_json(&outer)
            )
        }
    }
}

/// The pairwise answer: `geo`'s own INTERSECTS between the two documents.
fn oracle(a: &Object, b: &Object) -> bool {
    match (a, b) {
        (Object::Geometry(g), Object::Geometry(h)) => g.geometry().intersects(h.geometry()),
        _ => unreachable!("both are GeoJSON geometries"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn indexed_intersects_answers_as_the_pairwise_test(
        a in spec(), b in spec(), touch in any::<bool>(), pick in any::<prop::sample::Index>(),
    ) {
        let ja = json(&a, None);
        let ga = geo(&ja);
        let shared = touch.then(|| {
            let ring = star(a.cx, a.cy, a.r, &a.radii, a.turn);
            ring[pick.index(ring.len())]
        });
        let gb = geo(&json(&b, shared));
        let want = oracle(&ga, &gb);
        prop_assert_eq!(ga.intersects(&Area::Object(gb.clone())), want, "a intersects b");
        prop_assert_eq!(gb.intersects(&Area::Object(ga.clone())), want, "b intersects a");
    }
}

/// The benchmark's shape: two combs whose teeth interleave without touching
/// (every pair of segments tested before), then the same combs moved until
/// one tooth crosses the other comb, and nested inside each other.
#[test]
fn interleaved_combs() {
    fn comb(t: usize, up: bool, dx: f64) -> String {
        let ring: Vec<(f64, f64)> = combs::comb_ring(t, up)
            .into_iter()
            .map(|(x, y)| (x + dx, y))
            .collect();
        format!(
            r#"{{"type":"Polygon","coordinates":[{}]}}"#,
            ring_json(&ring)
        )
    }
    let up = geo(&comb(500, true, 0.0));
    for (dx, want) in [(0.0, false), (0.5 / 500.0, true), (0.1 / 500.0, false)] {
        let down = geo(&comb(500, false, dx));
        assert_eq!(oracle(&up, &down), want, "oracle at dx {dx}");
        assert_eq!(up.intersects(&Area::Object(down.clone())), want, "dx {dx}");
        assert_eq!(down.intersects(&Area::Object(up.clone())), want, "dx {dx}");
    }
    // A large star inside a larger one, and a ring of a hole around it.
    let radii = vec![1.0; 400];
    let big = geo(&format!(
        r#"{{"type":"Polygon","coordinates":[{}]}}"#,
        ring_json(&star(0.0, 0.0, 1.0, &radii, 0.0))
    ));
    let small = geo(&format!(
        r#"{{"type":"Polygon","coordinates":[{}]}}"#,
        ring_json(&star(0.0, 0.0, 0.3, &radii, 0.0))
    ));
    assert!(big.intersects(&Area::Object(small.clone())));
    assert!(small.intersects(&Area::Object(big.clone())));
    let mut hole = star(0.0, 0.0, 0.5, &radii, 0.0);
    hole.reverse();
    let holed = geo(&format!(
        r#"{{"type":"Polygon","coordinates":[{},{}]}}"#,
        ring_json(&star(0.0, 0.0, 1.0, &radii, 0.0)),
        ring_json(&hole)
    ));
    assert!(!holed.intersects(&Area::Object(small.clone())));
    assert!(!small.intersects(&Area::Object(holed.clone())));
}
