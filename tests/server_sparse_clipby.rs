//! `SPARSE spread` on NEARBY, WITHIN and INTERSECTS against the real
//! binary, in RESP2 and JSON output: one object per cell of the area's
//! rectangle cut into `4^spread` cells (north-west, north-east, south-west,
//! south-east), no limit and cursor 0, and Tile38's refusals (SPARSE on
//! SCAN, with LIMIT or CURSOR, out of 1..=16, NEARBY without a radius);
//! and `CLIPBY rect` on WITHIN and INTERSECTS: the search area cut by
//! rectangles, with Tile38's cases and refusals.

use e2e::{run, run_json, start, Grid};
use serde_json::json;

/// The rectangle of Tile38's collection test for SPARSE.
const RECT: &str = "BOUNDS 42.4586739 -71.598930 42.607937 -71.37302";

/// Mirrors Tile38's `TestCollectionSparse` (internal/collection): ten
/// thousand points filling a rectangle give exactly 4, 16 and 64 objects
/// for spreads 1, 2 and 3, on WITHIN and INTERSECTS alike.
#[test]
fn a_filled_rectangle_gives_one_object_per_cell() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let grid = Grid {
        rows: 100,
        // A 100 × 100 grid from edge to edge of the rectangle, so that
        // every cell down to spread 4 holds points.
        origin: (42.459, -71.5985),
        step: (0.001494, 0.002277),
    };
    grid.load(&mut c, "fleet", 10_000, |i| format!("p{i}"));
    let mut j = server.json_client();
    for (spread, n) in [(1, 4), (2, 16), (3, 64)] {
        for cmd in ["WITHIN", "INTERSECTS"] {
            let count = format!("{cmd} fleet SPARSE {spread} COUNT {RECT}");
            assert_eq!(run(&mut c, &count), n.to_string(), "{count}");
            assert_eq!(
                run_json(&mut j, &count),
                json!({"ok":true,"count":n,"cursor":0}),
                "{count}"
            );
            // IDS: every cell's object once, past the default LIMIT of 100
            // for spread 4 (256 cells), cursor 0.
            let ids = format!("{cmd} fleet SPARSE {spread} IDS {RECT}");
            let v = run_json(&mut j, &ids);
            assert_eq!(v["count"], json!(n), "{ids}");
            assert_eq!(v["cursor"], json!(0), "{ids}");
            let mut got: Vec<&str> = v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap())
                .collect();
            got.sort_unstable();
            got.dedup();
            assert_eq!(got.len(), n, "{ids}");
        }
    }
    let v = run_json(&mut j, &format!("WITHIN fleet SPARSE 4 IDS {RECT}"));
    assert_eq!(v["count"], json!(256));
    assert_eq!(v["ids"].as_array().unwrap().len(), 256);
    // The largest spread Tile38 allows runs and keeps every point that
    // lies alone in its cell: all of them here.
    assert_eq!(
        run(&mut c, &format!("WITHIN fleet SPARSE 16 COUNT {RECT}")),
        "10000"
    );
}

#[test]
fn cells_are_visited_north_west_north_east_south_west_south_east() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    for (id, lat, lon) in [
        ("se", 0.5, 1.5),
        ("sw", 0.5, 0.5),
        ("ne", 1.5, 1.5),
        ("nw", 1.5, 0.5),
    ] {
        assert_eq!(run(&mut c, &format!("SET k {id} POINT {lat} {lon}")), "OK");
    }
    // Outside the area: never kept.
    assert_eq!(run(&mut c, "SET k far POINT 5 5"), "OK");
    let area = "BOUNDS 0 0 2 2";
    assert_eq!(
        run(&mut c, &format!("WITHIN k SPARSE 1 IDS {area}")),
        "[0 [nw ne sw se]]"
    );
    assert_eq!(
        run(&mut c, &format!("INTERSECTS k SPARSE 1 IDS {area}")),
        "[0 [nw ne sw se]]"
    );
    assert_eq!(
        run(&mut c, &format!("WITHIN k SPARSE 1 POINTS {area}")),
        "[0 [[nw [1.5 0.5]] [ne [1.5 1.5]] [sw [0.5 0.5]] [se [0.5 1.5]]]]"
    );
    // A MATCH drops the object its cell kept; the cell gives nothing.
    assert_eq!(
        run(&mut c, &format!("WITHIN k SPARSE 1 MATCH s* IDS {area}")),
        "[0 [sw se]]"
    );
    // NEARBY is an INTERSECTS of its circle, in cell order.
    assert_eq!(
        run(&mut c, "NEARBY k SPARSE 1 IDS POINT 1 1 200000"),
        "[0 [nw ne sw se]]"
    );
    let mut j = server.json_client();
    assert_eq!(
        run_json(&mut j, &format!("WITHIN k SPARSE 1 IDS {area}")),
        json!({"ok":true,"ids":["nw","ne","sw","se"],"count":4,"cursor":0})
    );
}

/// Mirrors Tile38's `keys_NEARBY_SPARSE_test` (tests/keys_search_test.go,
/// issue 618): NEARBY … SPARSE 1 DISTANCE over a 25 m circle answers four
/// objects, each with its distance, in JSON.
#[test]
fn nearby_sparse_with_distance_answers_one_object_per_quarter() {
    // The sixty points of that test: id, `story` field, latitude,
    // longitude.
    const POINTS: &[(u32, u32, f64, f64)] = &[
        (379, 214, 38.343763352486, -0.48118065817742),
        (380, 216, 38.343210451684, -0.48164476701469),
        (381, 217, 38.343548609904, -0.4815616494057),
        (382, 219, 38.342949723291, -0.48180543529947),
        (383, 222, 38.343527453662, -0.48118542576204),
        (384, 223, 38.342894310235, -0.48121117150688),
        (385, 224, 38.343665011791, -0.48128042649575),
        (386, 226, 38.34300663218, -0.48136455958069),
        (387, 227, 38.343561105586, -0.48133979329476),
        (388, 228, 38.343021516797, -0.48111203609768),
        (389, 229, 38.34377906915, -0.48100754592639),
        (390, 230, 38.343028862949, -0.48107204744577),
        (391, 231, 38.342956973955, -0.48123798785545),
        (392, 233, 38.343342938888, -0.48181034196501),
        (393, 234, 38.343323273543, -0.48119160635951),
        (394, 235, 38.343475947604, -0.48128444286906),
        (395, 236, 38.343553742872, -0.48161695699988),
        (396, 237, 38.343657786414, -0.48109919689955),
        (397, 238, 38.342934456291, -0.48126912781599),
        (398, 239, 38.343254792078, -0.48115765613124),
        (399, 240, 38.342851143141, -0.48151031587298),
        (400, 244, 38.343298791244, -0.48121409612892),
        (401, 246, 38.343436945653, -0.48141198331599),
        (402, 248, 38.343033046491, -0.48183781756703),
        (403, 249, 38.343115572723, -0.48114768365296),
        (404, 250, 38.343318663597, -0.48120263102647),
        (405, 251, 38.343434654108, -0.4814578363497),
        (406, 252, 38.343810655958, -0.48181221112942),
        (407, 253, 38.342910776509, -0.48124848403503),
        (408, 176, 38.343429050328, -0.48134829622424),
        (409, 177, 38.343375167926, -0.4813182716687),
        (410, 178, 38.343686937911, -0.48184949541056),
        (411, 179, 38.343095509246, -0.48121296750565),
        (412, 243, 38.343052434763, -0.48133792363582),
        (413, 174, 38.343556877562, -0.4814408412531),
        (414, 182, 38.34352896108, -0.48127167080998),
        (415, 183, 38.343458562741, -0.48113117383504),
        (416, 187, 38.343372242633, -0.48198426529928),
        (417, 200, 38.343365745635, -0.48145747589433),
        (418, 206, 38.343019183653, -0.48177065402226),
        (419, 180, 38.343492978961, -0.48146214309728),
        (420, 181, 38.343614147661, -0.48178183237141),
        (421, 172, 38.34365219519, -0.48163252690471),
        (422, 193, 38.343284579937, -0.48191851957019),
        (423, 194, 38.342957462369, -0.48169612941468),
        (424, 195, 38.343050765851, -0.48189678247055),
        (425, 196, 38.343767590125, -0.48171070193171),
        (426, 197, 38.343547519997, -0.4813692941909),
        (427, 198, 38.342914769086, -0.48155727196514),
        (428, 211, 38.342873132946, -0.48120151934304),
        (429, 212, 38.343776804477, -0.48175041955478),
        (430, 218, 38.343321288826, -0.48138129717684),
        (431, 241, 38.34353344767, -0.4814278700903),
        (432, 247, 38.34366410657, -0.48163485684748),
        (433, 203, 38.343237196083, -0.48114844901293),
        (434, 204, 38.342949966718, -0.48104381934163),
        (435, 205, 38.343334803169, -0.48143352609798),
        (436, 215, 38.343231760033, -0.48177962151034),
        (437, 220, 38.34381041238, -0.48184807353803),
        (438, 232, 38.3437321952, -0.4810338033529),
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    for (id, story, lat, lon) in POINTS {
        let set = format!("SET location {id} FIELD story {story} POINT {lat} {lon}");
        assert_eq!(run(&mut c, &set), "OK");
    }
    let mut j = server.json_client();
    let near = "NEARBY location SPARSE 1 DISTANCE POINT 38.342940855731506 -0.48126081948077476 25";
    let v = run_json(&mut j, near);
    assert_eq!(v["ok"], json!(true));
    let objects = v["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 4, "{v}");
    for o in objects {
        let d = o["distance"].as_f64().unwrap_or_else(|| panic!("{o}"));
        assert!((0.0..=25.0).contains(&d), "{o}");
    }
    assert_eq!(v["count"], json!(4));
    assert_eq!(v["cursor"], json!(0));
    // RESP: each row is id, object, fields, distance.
    let resp = run(&mut c, near);
    assert!(resp.starts_with("[0 [["), "{resp}");
}

#[test]
fn sparse_is_refused_where_tile38_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET k a POINT 1 1"), "OK");
    let mut j = server.json_client();
    for (line, err) in [
        ("SCAN k SPARSE 1", "SPARSE is not allowed for SCAN"),
        ("SEARCH k SPARSE 1", "SPARSE is not allowed for SEARCH"),
        (
            "WITHIN k SPARSE 1 LIMIT 10 BOUNDS 0 0 2 2",
            "LIMIT is not allowed when SPARSE is specified",
        ),
        (
            "INTERSECTS k CURSOR 1 SPARSE 1 BOUNDS 0 0 2 2",
            "CURSOR is not allowed when SPARSE is specified",
        ),
        ("WITHIN k SPARSE 0 BOUNDS 0 0 2 2", "invalid argument '0'"),
        ("WITHIN k SPARSE 17 BOUNDS 0 0 2 2", "invalid argument '17'"),
        (
            "WITHIN k SPARSE 1 SPARSE 1 BOUNDS 0 0 2 2",
            "duplicate argument 'SPARSE'",
        ),
        (
            "NEARBY k SPARSE 1 POINT 1 1",
            "cannot use SPARSE without a point distance",
        ),
    ] {
        assert_eq!(run(&mut c, line), format!("ERR:{err}"), "{line}");
        assert_eq!(
            run_json(&mut j, line),
            json!({"ok":false,"err":err}),
            "{line}"
        );
    }
    // As in Tile38, a missing key answers an empty page before the radius
    // is looked at.
    assert_eq!(run(&mut c, "NEARBY nokey SPARSE 1 POINT 1 1"), "[0 []]");
}

/// The polygon of Tile38's `keys_WITHIN_CLIPBY_test` and
/// `keys_INTERSECTS_CLIPBY_test` (tests/keys_search_test.go).
const JAGGED: &str = r#"{"type":"Polygon","coordinates":[[[-122.47781753540039,37.74655746554895],[-122.48777389526366,37.7355619376922],[-122.4707794189453,37.73271097867418],[-122.46528625488281,37.735969208590504],[-122.45189666748047,37.73922729512254],[-122.4565315246582,37.75008654795525],[-122.46683120727538,37.75307256315459],[-122.47781753540039,37.74655746554895]]]}"#;

/// Mirrors Tile38's `keys_WITHIN_CLIPBY_test` and
/// `keys_INTERSECTS_CLIPBY_test`: the jagged polygon cut by one rectangle,
/// by another, and by both in turn.
#[test]
fn clipby_cuts_the_search_area_as_tile38_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    for (id, foo, lat, lon) in [
        ("point1", 1, 37.73963454585715, -122.4810791015625),
        ("point2", 2, 37.75130811419222, -122.47438430786133),
        ("point3", 1, 37.74816932695052, -122.47713088989258),
        ("point4", 2, 37.74503040657439, -122.47571468353271),
    ] {
        let set = format!("SET mykey {id} FIELD foo {foo} POINT {lat} {lon}");
        assert_eq!(run(&mut c, &set), "OK");
    }
    let set = redis::cmd("SET")
        .arg("other")
        .arg("jagged")
        .arg("OBJECT")
        .arg(JAGGED)
        .query::<redis::Value>(&mut c);
    assert_eq!(e2e::render(set), "OK");
    let a = "BOUNDS 37.737734023260884 -122.47816085815431 37.74886496155229 -122.45464324951172";
    let b = "BOUNDS 37.74411415606583 -122.48034954071045 37.7536833241461 -122.47163772583008";
    let mut j = server.json_client();
    for cmd in ["WITHIN", "INTERSECTS"] {
        for (tail, ids) in [
            ("GET other jagged".to_string(), vec!["point1", "point4"]),
            (a.to_string(), vec!["point3", "point4"]),
            (format!("GET other jagged CLIPBY {a}"), vec!["point4"]),
            (b.to_string(), vec!["point2", "point3", "point4"]),
            (format!("GET other jagged CLIPBY {b}"), vec!["point4"]),
            (
                format!("GET other jagged CLIPBY {b} CLIPBY {a}"),
                vec!["point4"],
            ),
        ] {
            let line = format!("{cmd} mykey IDS {tail}");
            // Tile38's replies list these in its R-tree's order; the ids
            // are compared as a set here.
            let got = run(&mut c, &line);
            let inner = got
                .strip_prefix("[0 [")
                .and_then(|s| s.strip_suffix("]]"))
                .unwrap_or_else(|| panic!("{line}: {got}"));
            let mut got: Vec<&str> = inner.split(' ').filter(|s| !s.is_empty()).collect();
            got.sort_unstable();
            assert_eq!(got, ids, "{line}");
            let v = run_json(&mut j, &line);
            assert_eq!(v["count"], json!(ids.len()), "{line}: {v}");
            assert_eq!(v["cursor"], json!(0), "{line}: {v}");
        }
        // A HASH, TILE or QUADKEY rectangle may follow CLIPBY too; a
        // rectangle apart from the area leaves nothing to find.
        for (clip, want) in [
            ("HASH 9q8y", "2"),
            ("TILE 0 0 0", "2"),
            ("QUADKEY 0", "2"),
            ("TILE 1 0 1", "0"),
            ("QUADKEY 1", "0"),
        ] {
            let line = format!("{cmd} mykey COUNT GET other jagged CLIPBY {clip}");
            assert_eq!(run(&mut c, &line), want, "{line}");
        }
        // Only rectangles may follow CLIPBY, in Tile38's words.
        for (clip, kind) in [
            ("CIRCLE 37.74 -122.47 100", "circle"),
            ("POINT 37.74 -122.47", "point"),
            ("GET other jagged", "get"),
            ("OBJECT {}", "object"),
            ("SECTOR 37.74 -122.47 100 0 90", "sector"),
        ] {
            let line = format!("{cmd} mykey IDS GET other jagged CLIPBY {clip}");
            let err = format!("invalid argument 'cannot clipby {kind}'");
            assert_eq!(run(&mut c, &line), format!("ERR:{err}"), "{line}");
            assert_eq!(
                run_json(&mut j, &line),
                json!({"ok":false,"err":err}),
                "{line}"
            );
        }
        let line = format!("{cmd} mykey IDS GET other jagged CLIPBY");
        assert!(
            run(&mut c, &line).contains("wrong number of arguments"),
            "{line}"
        );
    }
    // NEARBY reads CLIPBY after its radius, as Tile38 does, and its
    // circle stays whole.
    let near = "NEARBY mykey COUNT POINT 37.745 -122.475 2000";
    assert_eq!(run(&mut c, near), "4");
    assert_eq!(run(&mut c, &format!("{near} CLIPBY {a}")), "4");
    assert_eq!(
        run(&mut c, &format!("{near} CLIPBY CIRCLE 1 1 1")),
        "ERR:invalid argument 'cannot clipby circle'"
    );
}
