//! WITHIN and INTERSECTS for every object kind against every area kind, with
//! answers worked out by hand on a 10°×10° square at the equator
//! (lat 0..10, lon 0..10) that has a hole at lat/lon 4..6.

mod common;

use common::*;
use geohook_db::{Area, Object, Point};

const SQUARE_WITH_HOLE: &str = r#"{"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[6,4],[6,6],[4,6],[4,4]]]}"#;

/// Expected (within, intersects) against each area, in the order of `areas()`:
/// bounds, polygon with hole, circle (5,5) 200 km, geohash "s0", point (5,5).
type Row = [(bool, bool); 5];

fn areas() -> [(&'static str, Area); 5] {
    [
        ("bounds", Area::Bounds(bounds(0.0, 0.0, 10.0, 10.0))),
        ("polygon", Area::Object(geo(SQUARE_WITH_HOLE))),
        ("circle", Area::circle(pt(5.0, 5.0), 200_000.0).unwrap()),
        ("hash", Area::hash("s0").unwrap()),
        ("point", Area::point(pt(5.0, 5.0), None).unwrap()),
    ]
}

fn check(name: &str, obj: Object, expected: Row) {
    for ((area_name, area), (within, intersects)) in areas().iter().zip(expected) {
        assert_eq!(obj.within(area), within, "{name} within {area_name}");
        assert_eq!(
            obj.intersects(area),
            intersects,
            "{name} intersects {area_name}"
        );
        if within && obj.is_spatial() {
            assert!(
                obj.intersects(area),
                "{name}: within implies intersects ({area_name})"
            );
        }
    }
}

const Y: (bool, bool) = (true, true);
const N: (bool, bool) = (false, false);
const X: (bool, bool) = (false, true);

#[test]
fn geohash_cell_is_what_the_table_assumes() {
    // 's' is lat 0..45 lon 0..45; '0' then halves lat, lon, lat, lon, lat.
    let Area::Hash(cell) = Area::hash("s0").unwrap() else {
        unreachable!()
    };
    assert_eq!(cell.bounds(), bounds(0.0, 0.0, 5.625, 11.25));
}

#[test]
fn every_object_kind_against_every_area_kind() {
    let cases: Vec<(&str, Object, Row)> = vec![
        ("point inside", point(2.0, 2.0), [Y, Y, N, Y, N]),
        ("point in hole", point(5.0, 5.0), [Y, N, Y, Y, Y]),
        ("point outside", point(20.0, 20.0), [N, N, N, N, N]),
        ("point on edge", point(0.0, 5.0), [Y, Y, N, Y, N]),
        ("point near centre", point(5.0, 5.5), [Y, N, Y, Y, N]),
        (
            "geojson point in hole",
            geo(r#"{"type":"Point","coordinates":[5,5]}"#),
            [Y, N, Y, Y, Y],
        ),
        ("small bounds", rect(1.0, 1.0, 2.0, 2.0), [Y, Y, N, Y, N]),
        (
            "bounds across the edge",
            rect(8.0, 8.0, 12.0, 12.0),
            [X, X, N, N, N],
        ),
        (
            "bounds around the hole",
            rect(3.0, 3.0, 7.0, 7.0),
            [Y, X, X, X, X],
        ),
        (
            "line through the centre",
            geo(r#"{"type":"LineString","coordinates":[[-5,5],[15,5]]}"#),
            [X, X, X, X, X],
        ),
        (
            "triangle inside",
            geo(r#"{"type":"Polygon","coordinates":[[[1,1],[3,1],[1,3],[1,1]]]}"#),
            [Y, Y, N, Y, N],
        ),
        (
            "feature around everything",
            geo(
                r#"{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[-20,-20],[20,-20],[20,20],[-20,20],[-20,-20]]]},"properties":{}}"#,
            ),
            [X, X, X, X, X],
        ),
        (
            "multipoint inside and in hole",
            geo(r#"{"type":"MultiPoint","coordinates":[[2,2],[5,5]]}"#),
            [Y, X, X, Y, X],
        ),
        (
            "collection of two far parts",
            geo(
                r#"{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[2,2]},{"type":"Point","coordinates":[30,30]}]}"#,
            ),
            [X, X, N, X, N],
        ),
        ("string", Object::String("hello".into()), [N, N, N, N, N]),
    ];
    for (name, obj, row) in cases {
        check(name, obj, row);
    }
}

#[test]
fn circle_edge_is_exact_to_the_meter() {
    // One degree of longitude at the equator on a 6,371 km sphere is 111,194.93 m.
    let p = point(0.0, 1.0);
    let inside = Area::circle(pt(0.0, 0.0), 111_195.0).unwrap();
    let outside = Area::circle(pt(0.0, 0.0), 111_194.0).unwrap();
    assert!(p.within(&inside) && p.intersects(&inside));
    assert!(!p.within(&outside) && !p.intersects(&outside));
    let d = p.distance_to(&pt(0.0, 0.0)).unwrap();
    assert!((d - 111_194.93).abs() < 0.01, "{d}");
}

#[test]
fn distance_to_shapes() {
    let origin = pt(0.0, 0.0);
    let cases: Vec<(&str, Object, f64)> = vec![
        ("point", point(0.0, 1.0), 111_194.93),
        ("bounds containing", rect(-1.0, -1.0, 1.0, 1.0), 0.0),
        (
            "bounds to the north",
            rect(2.0, -1.0, 3.0, 1.0),
            2.0 * 111_194.93,
        ),
        (
            "bounds to the east",
            rect(-1.0, 2.0, 1.0, 3.0),
            2.0 * 111_194.93,
        ),
        (
            "polygon to the east",
            geo(r#"{"type":"Polygon","coordinates":[[[2,-1],[3,-1],[3,1],[2,1],[2,-1]]]}"#),
            2.0 * 111_194.93,
        ),
        (
            "line crossing",
            geo(r#"{"type":"LineString","coordinates":[[0,-1],[0,1]]}"#),
            0.0,
        ),
    ];
    for (name, obj, want) in cases {
        let got = obj.distance_to(&origin).unwrap();
        assert!((got - want).abs() < 1.0, "{name}: {got} != {want}");
    }
    assert_eq!(Object::String("x".into()).distance_to(&origin), None);
}

#[test]
fn geohash_and_center() {
    let p = Point::new(33.5123, -112.2693).unwrap();
    assert_eq!(p.geohash(5).unwrap(), "9tbnt");
    let back = Point::from_geohash("9tbnthxzr").unwrap();
    assert!((back.lat - 33.5123).abs() < 1e-4 && (back.lon + 112.2693).abs() < 1e-4);
    assert!(p.geohash(0).is_err() && p.geohash(13).is_err());
    assert!(Point::from_geohash("").is_err());
    assert!(Point::from_geohash("abc!").is_err());
    assert!(
        Point::from_geohash("a").is_err(),
        "'a' is not in the geohash alphabet"
    );
    assert!(
        Point::from_geohash("0123456789bcd").is_err(),
        "13 characters"
    );
    assert!(Area::hash("").is_err());
    assert!(Area::hash("é").is_err());
    let b = rect(0.0, 0.0, 10.0, 20.0);
    assert_eq!(b.center(), Some(pt(5.0, 10.0)));
}

#[test]
fn json_rendering() {
    assert_eq!(
        point(33.5, -112.25).to_json(),
        r#"{"type":"Point","coordinates":[-112.25,33.5]}"#
    );
    let z = Object::Point(Point::with_z(1.0, 2.0, 3.5).unwrap());
    assert_eq!(z.to_json(), r#"{"type":"Point","coordinates":[2,1,3.5]}"#);
    assert_eq!(
        rect(1.0, 2.0, 3.0, 4.0).to_json(),
        r#"{"type":"Polygon","coordinates":[[[2,1],[4,1],[4,3],[2,3],[2,1]]]}"#
    );
    // A document comes back without the whitespace between its tokens, as
    // Tile38 writes stored objects; spaces inside strings are kept.
    let text = r#"{"type":"Point", "coordinates":[1, 2]}"#;
    assert_eq!(
        geo(text).to_json(),
        r#"{"type":"Point","coordinates":[1,2]}"#
    );
    let text = "{\"type\": \"Feature\",\n \"geometry\": {\"type\":\"Point\",\"coordinates\":[1,2]}, \"properties\": {\"n\": \"a \\\" b\"}}";
    assert_eq!(
        geo(text).to_json(),
        r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{"n":"a \" b"}}"#
    );
    assert_eq!(Object::String("a\"b".into()).to_json(), r#""a\"b""#);
    assert_eq!(Object::String("a\"b".into()).to_resp_text(), "a\"b");
}

#[test]
fn bad_coordinates_are_rejected() {
    for (lat, lon) in [
        (91.0, 0.0),
        (-90.5, 0.0),
        (0.0, 180.1),
        (0.0, -181.0),
        (f64::NAN, 0.0),
        (0.0, f64::INFINITY),
    ] {
        assert!(Point::new(lat, lon).is_err(), "{lat} {lon}");
    }
    assert!(
        geohook_db::Bounds::new(10.0, 0.0, 5.0, 1.0).is_err(),
        "min lat above max lat"
    );
    assert!(Area::circle(pt(0.0, 0.0), -1.0).is_err());
    assert!(Area::circle(pt(0.0, 0.0), f64::NAN).is_err());
}

/// A polygon of many vertices that shares its bottom edge with a large
/// query area is within it (edges included, as in Tile38): above the size
/// where WITHIN stops running the DE-9IM first, boundaries that touch must
/// still get the exact answer, not a refusal.
#[test]
fn large_shapes_that_share_an_edge_are_within() {
    // A ring whose top edge is a zigzag of `n` teeth between x = 0 and 10,
    // with a straight bottom edge at y = 0.
    let ring = |n: usize, top: f64| {
        let mut c: Vec<String> = (0..=n)
            .map(|i| {
                let x = 10.0 * i as f64 / n as f64;
                let y = if i % 2 == 0 { top } else { top - 0.5 };
                format!("[{x},{y}]")
            })
            .collect();
        c.push("[10,0]".into());
        c.push("[0,0]".into());
        c.push(c[0].clone());
        format!(r#"{{"type":"Polygon","coordinates":[[{}]]}}"#, c.join(","))
    };
    let area = Area::Object(geo(&ring(1_500, 8.0)));
    let inside = geo(&ring(1_200, 4.0));
    assert!(inside.num_points() + 1_500 > 2_048, "past the DE-9IM size");
    assert!(
        inside.within(&area),
        "shares the bottom edge, inside otherwise"
    );
    let taller = geo(&ring(1_200, 9.0));
    assert!(!taller.within(&area), "its teeth cross the area's top");
}

#[path = "common/combs.rs"]
mod combs;

/// Two combs of 2,500 leaning teeth whose boundaries touch all along (the
/// shorter one's tooth tops on the taller one's tooth edges, sides and
/// base shared): WITHIN answers through the sweeps above 2,048 vertices,
/// both ways round.
#[test]
fn large_combs_that_touch_all_along() {
    let t = 2_500;
    let full = geo(&combs::leaning_comb_geojson(t, 4 * t));
    let cut = geo(&combs::leaning_comb_geojson(t, 2 * t));
    assert!(cut.num_points() > 2_048);
    assert!(cut.within(&Area::Object(full.clone())), "cut teeth in full");
    assert!(!full.within(&Area::Object(cut)), "full teeth out of cut");
    assert!(full.within(&Area::Object(full.clone())), "itself");
}

/// A large area whose ring crosses itself (a small loop on its top edge),
/// and a large polygon sharing part of its bottom edge: the sweeps leave
/// that pair to the DE-9IM, and past its budget of vertex pairs WITHIN
/// answers "not within" at once instead of running it (seconds for shapes
/// made against it, under the database lock). Below the budget the DE-9IM
/// still answers, and finds it within.
#[test]
fn a_self_crossing_area_past_the_relate_budget_is_not_within() {
    let ring = |n: usize, side: f64, rest: &[(f64, f64)]| {
        let mut c: Vec<String> = (0..n)
            .map(|i| format!("[{},0]", side * i as f64 / n as f64))
            .collect();
        c.extend(rest.iter().map(|(x, y)| format!("[{x},{y}]")));
        format!(r#"{{"type":"Polygon","coordinates":[[{}]]}}"#, c.join(","))
    };
    // The area: a 50 x 50 square with `n` vertices along its bottom edge
    // and a loop on its top edge whose two segments cross.
    let area = |n: usize| {
        let top = [
            (50.0, 0.0),
            (50.0, 50.0),
            (30.0, 50.0),
            (20.0, 50.5),
            (30.0, 50.5),
            (20.0, 50.0),
            (0.0, 50.0),
            (0.0, 0.0),
        ];
        geo(&ring(n, 50.0, &top))
    };
    // The object: a 5 x 5 square in the corner, `n` vertices along the
    // shared bottom edge.
    let object = |n: usize| {
        let rest = [(5.0, 0.0), (5.0, 5.0), (0.0, 5.0), (0.0, 0.0)];
        geo(&ring(n, 5.0, &rest))
    };
    // 1,200 x 1,300 vertices: past the sweeps' size, within the budget.
    assert!(object(1_200).within(&Area::Object(area(1_300))), "DE-9IM");
    // 1,600 x 3,000: past the budget of 4,000,000 pairs.
    assert!(!object(1_600).within(&Area::Object(area(3_000))), "budget");
}

/// A collection is within an area when each of its members is: a polygon
/// inside a square with a line along the square's own edge, and a line
/// inside the collection's own polygon, are within it; a line that leaves
/// the square is not.
#[test]
fn a_collection_is_within_when_each_member_is() {
    let square = r#"{"type":"Polygon","coordinates":[[[0,0],[3,0],[3,3],[0,3],[0,0]]]}"#;
    let area = Area::Object(geo(square));
    let collection = |polygon: &str, line: &str| {
        geo(&format!(
            r#"{{"type":"GeometryCollection","geometries":[{{"type":"Polygon","coordinates":[{polygon}]}},{{"type":"LineString","coordinates":{line}}}]}}"#
        ))
    };
    let low = "[[1,0],[2,0],[2,1],[1,1],[1,0]]";
    assert!(
        collection(low, "[[0,1],[0,0]]").within(&area),
        "line on the edge"
    );
    let tall = "[[0,0],[1,0],[1,3],[0,3],[0,0]]";
    assert!(
        collection(tall, "[[0,0],[0.5,0.5]]").within(&area),
        "line in its polygon"
    );
    assert!(!collection(low, "[[2,2],[4,2]]").within(&area), "line out");
}
