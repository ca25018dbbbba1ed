//! Geometry from a client may be self-intersecting, collapsed to a line or a
//! point, or repeat vertices; GeoJSON allows all of it. Every predicate and
//! distance must still answer without panicking.

mod common;

use common::*;
use geohook_db::{Area, Object};
use proptest::prelude::*;

fn small() -> impl Strategy<Value = f64> {
    // Few distinct values, so that repeated and collinear vertices are common.
    (0..4u8).prop_map(|v| f64::from(v) * 0.5)
}

fn ring() -> impl Strategy<Value = String> {
    proptest::collection::vec((small(), small()), 3..7).prop_map(|mut pts| {
        pts.push(pts[0]);
        let body: Vec<String> = pts.iter().map(|(x, y)| format!("[{x},{y}]")).collect();
        format!("[{}]", body.join(","))
    })
}

fn shape() -> impl Strategy<Value = String> {
    prop_oneof![
        ring().prop_map(|r| format!(r#"{{"type":"Polygon","coordinates":[{r}]}}"#)),
        (ring(), ring()).prop_map(|(a, b)| format!(r#"{{"type":"Polygon","coordinates":[{a},{b}]}}"#)),
        (ring(), ring()).prop_map(|(a, b)| format!(r#"{{"type":"MultiPolygon","coordinates":[[{a}],[{b}]]}}"#)),
        ring().prop_map(|r| format!(r#"{{"type":"LineString","coordinates":{r}}}"#)),
        (ring(), small(), small()).prop_map(|(r, x, y)| format!(
            r#"{{"type":"GeometryCollection","geometries":[{{"type":"Polygon","coordinates":[{r}]}},{{"type":"Point","coordinates":[{x},{y}]}}]}}"#
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn predicates_never_panic(a in shape(), b in shape(), lat in small(), lon in small(), r in 0..100_000u32) {
        let (a, b) = (geo(&a), geo(&b));
        let areas = [
            Area::Object(b.clone()),
            Area::Bounds(bounds(lat, lon, lat + 0.5, lon + 0.5)),
            Area::circle(pt(lat, lon), f64::from(r)).unwrap(),
            Area::point(pt(lat, lon), None).unwrap(),
        ];
        for obj in [&a, &b, &point(lat, lon), &rect(lat, lon, lat + 1.0, lon + 1.0)] {
            for area in &areas {
                let w = obj.within(area);
                let i = obj.intersects(area);
                prop_assert!(!w || i || matches!(obj, Object::String(_)), "within without intersects: {:?} {:?}", obj, area);
            }
            let _ = obj.distance_to(&pt(lat, lon));
        }
    }
}
