//! GeoJSON input: valid documents parse to the right kind and keep their text;
//! invalid ones give `Error::InvalidGeoJson` naming the reason.

use geohook_db::{Error, GeoJson, GeoJsonKind};

/// Expected outcome: `Ok(kind, num_points)` or `Err(substring of the reason)`.
fn check(input: &str, expected: Result<(GeoJsonKind, usize), &str>) {
    match (GeoJson::parse(input), expected) {
        (Ok(g), Ok((kind, n))) => {
            assert_eq!(g.kind(), kind, "{input}");
            assert_eq!(g.num_points(), n, "{input}");
            assert_eq!(g.as_str(), input.trim(), "text is kept verbatim");
        }
        (Err(Error::InvalidGeoJson { reason, .. }), Err(want)) => {
            assert!(
                reason.contains(want),
                "{input}: reason {reason:?} lacks {want:?}"
            );
        }
        (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn valid_documents() {
    use GeoJsonKind::*;
    let sq = "[[[0,0],[1,0],[1,1],[0,1],[0,0]]]";
    let hole = "[[[0,0],[4,0],[4,4],[0,4],[0,0]],[[1,1],[2,1],[2,2],[1,2],[1,1]]]";
    let cases: Vec<(String, (GeoJsonKind, usize))> = vec![
        (r#"{"type":"Point","coordinates":[-112.2693,33.5123]}"#.into(), (Point, 1)),
        (r#"{"type":"Point","coordinates":[1,2,3]}"#.into(), (Point, 1)),
        (r#"  {"type":"Point","coordinates":[180,-90]}  "#.into(), (Point, 1)),
        (r#"{"type":"MultiPoint","coordinates":[[1,2],[3,4]]}"#.into(), (MultiPoint, 2)),
        (r#"{"type":"LineString","coordinates":[[1,2],[3,4],[5,6]]}"#.into(), (LineString, 3)),
        (r#"{"type":"MultiLineString","coordinates":[[[1,2],[3,4]],[[5,6],[7,8]]]}"#.into(), (MultiLineString, 4)),
        (format!(r#"{{"type":"Polygon","coordinates":{sq}}}"#), (Polygon, 5)),
        (format!(r#"{{"type":"Polygon","coordinates":{hole}}}"#), (Polygon, 10)),
        (format!(r#"{{"type":"MultiPolygon","coordinates":[{sq},{hole}]}}"#), (MultiPolygon, 15)),
        (
            r#"{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,2]},{"type":"LineString","coordinates":[[1,2],[3,4]]}]}"#.into(),
            (GeometryCollection, 3),
        ),
        (
            r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{"name":"x"}}"#.into(),
            (Feature, 1),
        ),
        (
            format!(
                r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","geometry":{{"type":"Polygon","coordinates":{sq}}},"properties":null}}]}}"#
            ),
            (FeatureCollection, 5),
        ),
    ];
    for (input, want) in cases {
        check(&input, Ok(want));
    }
}

#[test]
fn invalid_documents() {
    let cases: &[(&str, &str)] = &[
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[1,2]", "expected a GeoJSON object"),
        (r#"{"coordinates":[1,2]}"#, "missing member 'type'"),
        (
            r#"{"type":5,"coordinates":[1,2]}"#,
            "'type' must be a string",
        ),
        (
            r#"{"type":"Circle","coordinates":[1,2]}"#,
            "unknown type 'Circle'",
        ),
        (r#"{"type":"Point"}"#, "missing member 'coordinates'"),
        (r#"{"type":"Point","coordinates":[1]}"#, "2 or 3 numbers"),
        (
            r#"{"type":"Point","coordinates":[1,2,3,4]}"#,
            "2 or 3 numbers",
        ),
        (r#"{"type":"Point","coordinates":["1",2]}"#, "finite number"),
        (
            r#"{"type":"Point","coordinates":[null,2]}"#,
            "finite number",
        ),
        (r#"{"type":"Point","coordinates":[181,0]}"#, "out of range"),
        (
            r#"{"type":"Point","coordinates":[0,90.0001]}"#,
            "out of range",
        ),
        (
            r#"{"type":"Point","coordinates":[-180.5,-91]}"#,
            "out of range",
        ),
        (
            r#"{"type":"Point","coordinates":[[1,2],[3,4]]}"#,
            "finite number",
        ),
        (
            r#"{"type":"LineString","coordinates":[[1,2]]}"#,
            "at least 2 positions",
        ),
        (
            r#"{"type":"LineString","coordinates":[1,2]}"#,
            "expected an array",
        ),
        (
            r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}"#,
            "at least 4 positions",
        ),
        (
            r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}"#,
            "end where it starts",
        ),
        (r#"{"type":"Polygon","coordinates":[]}"#, "empty array"),
        (
            r#"{"type":"Polygon","coordinates":[[0,0],[1,0],[1,1],[0,0]]}"#,
            "at least 4 positions",
        ),
        (
            r#"{"type":"Polygon","coordinates":[[0,0,0,0]]}"#,
            "expected an array",
        ),
        (
            r#"{"type":"MultiPoint","coordinates":[]}"#,
            "at least 1 positions",
        ),
        (
            r#"{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,1]]]]}"#,
            "end where it starts",
        ),
        (
            r#"{"type":"GeometryCollection","geometries":[]}"#,
            "empty array",
        ),
        (
            r#"{"type":"GeometryCollection"}"#,
            "missing member 'geometries'",
        ),
        (
            r#"{"type":"GeometryCollection","geometries":[{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]}}]}"#,
            "not features",
        ),
        (
            r#"{"type":"Feature","geometry":null}"#,
            "expected a GeoJSON object",
        ),
        (r#"{"type":"Feature"}"#, "missing member 'geometry'"),
        (
            r#"{"type":"FeatureCollection","features":[{"type":"Point","coordinates":[1,2]}]}"#,
            "holds Features",
        ),
        (
            r#"{"type":"FeatureCollection","features":{}}"#,
            "expected an array",
        ),
    ];
    for (input, want) in cases {
        check(input, Err(want));
    }
}

#[test]
fn error_names_the_path() {
    let err = GeoJson::parse(
        r#"{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]]],[[[0,0],[1,0],[1,1],[0,200],[0,0]]]]}"#,
    )
    .unwrap_err();
    match err {
        Error::InvalidGeoJson { path, .. } => assert_eq!(path, "$.coordinates[1][0][3]"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{}{{"type":"Point","coordinates":[1,2]}}{}"#,
        r#"{"type":"GeometryCollection","geometries":["#.repeat(200),
        "]}".repeat(200)
    );
    assert!(GeoJson::parse(&deep).is_err());
}
