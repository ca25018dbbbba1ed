//! Tile38's search options, SEARCH and TEST, on a leader and on its
//! follower, each in RESP2, RESP3 (HELLO 3) and JSON output, with the reply
//! shapes of Tile38's own tests (`tests/keys_test.go`,
//! `keys_search_test.go`, `testcmd_test.go`): WHEREIN, WHERE expressions
//! and operators, SECTOR, TILE, QUADKEY, BUFFER, the BOUNDS-as-output
//! token order, coordinates outside the lat/lon range (accepted as Tile38
//! does, refused under `--require-valid` / `REQUIREVALID`), SEARCH over
//! string values and TEST between two areas.

#[path = "replication_common.rs"]
mod replication_common;

use std::time::Duration;

use e2e::{render, start, start_env, Server};
use replication_common::{caught_up, free_port};
use serde_json::{json, Value};

/// What a command must answer.
enum Want {
    /// The RESP reply rendered as Tile38's tests print it, and the JSON
    /// reply without `elapsed`.
    Ok(&'static str, Value),
    /// An error whose text contains this, in every output.
    Err(&'static str),
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

fn resp3(server: &Server) -> redis::Connection {
    let c =
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", server.port)).unwrap();
    c.get_connection_with_timeout(Duration::from_secs(10))
        .unwrap()
}

/// Runs every case on `server` over RESP2, RESP3 and JSON; fails with
/// every mismatch listed.
fn check_all(server: &Server, cases: &[(&[&str], Want)]) {
    let mut r2 = server.client();
    let mut r3 = resp3(server);
    let mut js = server.json_client();
    let mut bad = Vec::new();
    for (args, want) in cases {
        let line = args.join(" ");
        for (proto, conn) in [("RESP2", &mut r2), ("RESP3", &mut r3)] {
            let got = render(cmd(args).query::<redis::Value>(conn));
            let ok = match want {
                Want::Ok(resp, _) => &got == resp,
                Want::Err(text) => got.starts_with("ERR") && got.contains(text),
            };
            if !ok {
                bad.push(format!("{proto}: {line}: got {got}"));
            }
        }
        let text: String = cmd(args).query(&mut js).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        assert!(
            v.as_object_mut().unwrap().remove("elapsed").is_some(),
            "{line}: {text}"
        );
        let ok = match want {
            Want::Ok(_, j) => &v == j,
            Want::Err(t) => {
                v["ok"] == json!(false) && v["err"].as_str().is_some_and(|e| e.contains(t))
            }
        };
        if !ok {
            bad.push(format!("JSON: {line}: got {v}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

fn ids(ids: &[&str], cursor: u64) -> Value {
    json!({"ok": true, "ids": ids, "count": ids.len(), "cursor": cursor})
}

fn count(n: u64) -> Value {
    json!({"ok": true, "count": n, "cursor": 0})
}

/// Tile38's shapes for TEST with CLIP and area expressions
/// (`testcmd_test.go`), as macros so that expected replies can be built
/// from them with `concat!`.
macro_rules! poly {
    () => {
        r#"{"type":"Polygon","coordinates":[[[-122.44126439094543,37.732906137107],[-122.43980526924135,37.732906137107],[-122.43980526924135,37.73421283683962],[-122.44126439094543,37.73421283683962],[-122.44126439094543,37.732906137107]]]}"#
    };
}
macro_rules! poly8 {
    () => {
        r#"{"type":"Polygon","coordinates":[[[-122.4408378,37.7341129],[-122.4408378,37.733],[-122.44,37.733],[-122.44,37.7341129],[-122.4408378,37.7341129]],[[-122.44060993194579,37.73345766902749],[-122.44044363498686,37.73345766902749],[-122.44044363498686,37.73355524732416],[-122.44060993194579,37.73355524732416],[-122.44060993194579,37.73345766902749]],[[-122.44060724973677,37.7336888869566],[-122.4402102828026,37.7336888869566],[-122.4402102828026,37.7339752567853],[-122.44060724973677,37.7339752567853],[-122.44060724973677,37.7336888869566]]]}"#
    };
}
macro_rules! poly9 {
    () => {
        r#"{"type":"Polygon","coordinates":[[[-122.44037926197052,37.73313523548048],[-122.44017541408539,37.73313523548048],[-122.44017541408539,37.73336857568778],[-122.44037926197052,37.73336857568778],[-122.44037926197052,37.73313523548048]]]}"#
    };
}
const POLY101: &str = r#"{"type":"Polygon","coordinates":[[[-122.44051605463028,37.73375464605226],[-122.44028002023695,37.73375464605226],[-122.44028002023695,37.733903134117966],[-122.44051605463028,37.733903134117966],[-122.44051605463028,37.73375464605226]]]}"#;
const MULTIPOLY5: &str = r#"{"type":"MultiPolygon","coordinates":[[[[-122.4408378,37.7341129],[-122.4408378,37.733],[-122.44,37.733],[-122.44,37.7341129],[-122.4408378,37.7341129]]],[[[-122.44091033935547,37.731981251280985],[-122.43994474411011,37.731981251280985],[-122.43994474411011,37.73254976045042],[-122.44091033935547,37.73254976045042],[-122.44091033935547,37.731981251280985]]]]}"#;
const MULTIPOLY5_CLIPPED: &str = r#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[-122.4408378,37.73319038868677],[-122.4408378,37.733],[-122.44,37.733],[-122.44,37.73319038868677],[-122.4408378,37.73319038868677]]]},"properties":{}},{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[-122.44091033935547,37.73227823422744],[-122.43994474411011,37.73227823422744],[-122.43994474411011,37.73254976045042],[-122.44091033935547,37.73254976045042],[-122.44091033935547,37.73227823422744]]]},"properties":{}}]}"#;
const LINE3: &str =
    r#"{"type":"LineString","coordinates":[[-122.4408378,37.7341129],[-122.4408378,37.733]]}"#;

const DATA: &[&[&str]] = &[
    &["SET", "tkey", "point1", "POINT", "37.7335", "-122.4412"],
    &["SET", "tkey", "line3", "OBJECT", LINE3],
    &["SET", "tkey", "poly8", "OBJECT", poly8!()],
    // 100 m east of poly9's east edge (-122.44017541408539).
    &["SET", "tkey", "near", "POINT", "37.7332", "-122.4390"],
    &[
        "SET", "fleet", "truck1", "FIELD", "maxSpeed", "120", "FIELD", "teamId", "1", "POINT",
        "33.5", "-112.2",
    ],
    &[
        "SET", "fleet", "truck2", "FIELD", "maxSpeed", "90", "FIELD", "teamId", "2", "POINT",
        "33.51", "-112.21",
    ],
    &[
        "SET", "fleet", "truck3", "FIELD", "maxSpeed", "100", "FIELD", "teamId", "1", "POINT",
        "33.52", "-112.22",
    ],
    // Outside the lat/lon range: Tile38 accepts it without REQUIREVALID.
    &[
        "SET", "fleet", "far", "FIELD", "teamId", "3", "POINT", "95", "200",
    ],
    &["SET", "mykey", "id1", "FIELD", "foo", "1", "STRING", "bar1"],
    &["SET", "mykey", "id2", "FIELD", "foo", "2", "STRING", "bar2"],
    &["SET", "mykey", "id3", "FIELD", "foo", "3", "STRING", "bar3"],
    &["SET", "mykey", "id4", "FIELD", "foo", "4", "STRING", "bar4"],
    &["SET", "mykey", "id5", "FIELD", "foo", "5", "STRING", "bar5"],
    &["SET", "mykey", "id6", "FIELD", "foo", "6", "STRING", "bar6"],
    &["SET", "mykey", "id7", "FIELD", "foo", "7", "STRING", "bar7"],
    &["SET", "mykey", "id8", "FIELD", "foo", "8", "STRING", "bar8"],
    &["SET", "mykey", "id9", "FIELD", "foo", "9", "STRING", "bar9"],
    // SEARCH looks at string objects only.
    &["SET", "mykey", "p1", "POINT", "1", "1"],
    &[
        "SET",
        "zones",
        "z1",
        "OBJECT",
        r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[-112.2,33.5]},"properties":{"speed":50}}"#,
    ],
];

/// `TEST` with CLIP and area expressions, Tile38's cases
/// (`testcmd_test.go`) over its data in `tkey`.
fn test_cases() -> Vec<(&'static [&'static str], Want)> {
    use Want::{Err, Ok};
    let yes = || Ok("1", json!({"ok": true, "result": true}));
    let no = || Ok("0", json!({"ok": true, "result": false}));
    let clipped = |resp: &'static str, obj: &str| {
        Ok(
            resp,
            json!({"ok": true, "result": true, "object": serde_json::from_str::<Value>(obj).unwrap()}),
        )
    };
    vec![
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "CLIP",
                "OBJECT",
                "{}",
            ],
            Err("invalid clip type 'OBJECT'"),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "CLIP",
                "CIRCLE",
                "1",
                "2",
                "3",
            ],
            Err("invalid clip type 'CIRCLE'"),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "CLIP",
                "GET",
                "tkey",
                "point1",
            ],
            Err("invalid clip type 'GET'"),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "WITHIN",
                "CLIP",
                "BOUNDS",
                "10",
                "10",
                "20",
                "20",
            ],
            Err("invalid argument 'CLIP'"),
        ),
        (
            &["TEST", "OBJECT", poly9!(), "INTERSECTS", "CLIP", "SECTOR"],
            Err("invalid clip type 'SECTOR'"),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "CLIP",
                "BOUNDS",
                "37.732906137107",
                "-122.44126439094543",
                "37.73421283683962",
                "-122.43980526924135",
            ],
            clipped(concat!("[1 ", poly9!(), "]"), poly9!()),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly8!(),
                "INTERSECTS",
                "CLIP",
                "BOUNDS",
                "37.733",
                "-122.4408378",
                "37.7341129",
                "-122.44",
            ],
            clipped(concat!("[1 ", poly8!(), "]"), poly8!()),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                MULTIPOLY5,
                "INTERSECTS",
                "CLIP",
                "BOUNDS",
                "37.73227823422744",
                "-122.44120001792908",
                "37.73319038868677",
                "-122.43955314159392",
            ],
            clipped(
                concat!(
                    "[1 ",
                    r#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[-122.4408378,37.73319038868677],[-122.4408378,37.733],[-122.44,37.733],[-122.44,37.73319038868677],[-122.4408378,37.73319038868677]]]},"properties":{}},{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[-122.44091033935547,37.73227823422744],[-122.43994474411011,37.73227823422744],[-122.43994474411011,37.73254976045042],[-122.44091033935547,37.73254976045042],[-122.44091033935547,37.73227823422744]]]},"properties":{}}]}"#,
                    "]"
                ),
                MULTIPOLY5_CLIPPED,
            ),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                POLY101,
                "INTERSECTS",
                "CLIP",
                "BOUNDS",
                "37.73315644825698",
                "-122.44054287672043",
                "37.73349585185455",
                "-122.44008690118788",
            ],
            no(),
        ),
        // Expression errors (testcmd_expressionErrors_test).
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "(",
                "GET",
                "tkey",
                "poly8",
            ],
            Err("wrong number of arguments"),
        ),
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                ")",
            ],
            Err("invalid argument ')'"),
        ),
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "OR",
                "GET",
                "tkey",
                "poly8",
            ],
            Err("invalid argument 'or'"),
        ),
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "AND",
                "GET",
                "tkey",
                "poly8",
            ],
            Err("invalid argument 'and'"),
        ),
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "OR",
                "AND",
                "GET",
                "tkey",
                "line3",
            ],
            Err("invalid argument 'and'"),
        ),
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "OR",
            ],
            Err("wrong number of arguments"),
        ),
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "NOT",
            ],
            Err("wrong number of arguments"),
        ),
        (
            &[
                "TEST",
                "GET",
                "tkey",
                "line3",
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "NOT",
                "AND",
                "GET",
                "tkey",
                "line3",
            ],
            Err("invalid argument 'and'"),
        ),
        (
            &["TEST", "GET", "tkey", "line3", "jello"],
            Err("invalid argument 'jello'"),
        ),
        // Expressions (testcmd_expression_test).
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "NOT",
                "OBJECT",
                poly!(),
            ],
            no(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "NOT",
                "NOT",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "NOT",
                "NOT",
                "NOT",
                "OBJECT",
                poly!(),
            ],
            no(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "OBJECT",
                poly8!(),
                "OR",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "OBJECT",
                poly8!(),
                "AND",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "OR",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "line3",
            ],
            no(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "AND",
                "(",
                "OBJECT",
                poly!(),
                "AND",
                "GET",
                "tkey",
                "line3",
                ")",
            ],
            no(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "AND",
                "(",
                "OBJECT",
                poly!(),
                "OR",
                "GET",
                "tkey",
                "line3",
                ")",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "poly8",
                "AND",
                "(",
                "OBJECT",
                poly!(),
                "AND",
                "NOT",
                "GET",
                "tkey",
                "line3",
                ")",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "NOT",
                "GET",
                "tkey",
                "line3",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "NOT",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "line3",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "line3",
                "OR",
                "OBJECT",
                poly8!(),
                "AND",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "OBJECT",
                poly8!(),
                "AND",
                "OBJECT",
                poly!(),
                "OR",
                "GET",
                "tkey",
                "line3",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "GET",
                "tkey",
                "line3",
                "OR",
                "(",
                "OBJECT",
                poly8!(),
                "AND",
                "OBJECT",
                poly!(),
                ")",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "INTERSECTS",
                "(",
                "GET",
                "tkey",
                "line3",
                "OR",
                "OBJECT",
                poly8!(),
                ")",
                "AND",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "WITHIN",
                "OBJECT",
                poly8!(),
                "OR",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "WITHIN",
                "OBJECT",
                poly8!(),
                "AND",
                "OBJECT",
                poly!(),
            ],
            yes(),
        ),
        (
            &["TEST", "OBJECT", poly9!(), "WITHIN", "GET", "tkey", "line3"],
            no(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "WITHIN",
                "GET",
                "tkey",
                "poly8",
                "AND",
                "(",
                "OBJECT",
                poly!(),
                "AND",
                "GET",
                "tkey",
                "line3",
                ")",
            ],
            no(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "WITHIN",
                "GET",
                "tkey",
                "poly8",
                "AND",
                "(",
                "OBJECT",
                poly!(),
                "OR",
                "GET",
                "tkey",
                "line3",
                ")",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "WITHIN",
                "GET",
                "tkey",
                "poly8",
                "AND",
                "(",
                "OBJECT",
                poly!(),
                "AND",
                "NOT",
                "GET",
                "tkey",
                "line3",
                ")",
            ],
            yes(),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                poly9!(),
                "WITHIN",
                "NOT",
                "GET",
                "tkey",
                "line3",
            ],
            yes(),
        ),
        // BUFFER on an OBJECT area grows it by the distance: poly8 holds
        // poly9; line3 is 40 m west of it, point1 about 75 m and `near`
        // about 100 m away.
        (
            &["INTERSECTS", "tkey", "COUNT", "OBJECT", poly9!()],
            Ok("1", count(1)),
        ),
        (
            &[
                "INTERSECTS",
                "tkey",
                "BUFFER",
                "50",
                "COUNT",
                "OBJECT",
                poly9!(),
            ],
            Ok("2", count(2)),
        ),
        (
            &[
                "INTERSECTS",
                "tkey",
                "BUFFER",
                "200",
                "COUNT",
                "OBJECT",
                poly9!(),
            ],
            Ok("4", count(4)),
        ),
        (
            &[
                "INTERSECTS",
                "tkey",
                "BUFFER",
                "200",
                "COUNT",
                "GET",
                "tkey",
                "line3",
            ],
            Ok("4", count(4)),
        ),
    ]
}

fn cases() -> Vec<(&'static [&'static str], Want)> {
    use Want::{Err, Ok};
    vec![
        // WHEREIN (keys_test.go's WHEREIN cases).
        (
            &["SCAN", "fleet", "WHEREIN", "teamId", "1", "1", "IDS"],
            Ok("[0 [truck1 truck3]]", ids(&["truck1", "truck3"], 0)),
        ),
        (
            &["SCAN", "fleet", "WHEREIN", "teamId", "2", "2", "3", "IDS"],
            Ok("[0 [far truck2]]", ids(&["far", "truck2"], 0)),
        ),
        (
            &["SCAN", "fleet", "WHEREIN", "teamId", "5", "1"],
            Err("wrong number of arguments"),
        ),
        // Paging under a filter: the cursor counts the walk, as Tile38's.
        (
            &[
                "SCAN", "fleet", "LIMIT", "1", "WHEREIN", "teamId", "1", "1", "IDS",
            ],
            Ok("[2 [truck1]]", ids(&["truck1"], 2)),
        ),
        (
            &[
                "SCAN", "fleet", "CURSOR", "2", "LIMIT", "1", "WHEREIN", "teamId", "1", "1", "IDS",
            ],
            Ok("[4 [truck3]]", ids(&["truck3"], 4)),
        ),
        // WHERE expressions.
        (
            &["SCAN", "fleet", "WHERE", "maxSpeed == 120", "IDS"],
            Ok("[0 [truck1]]", ids(&["truck1"], 0)),
        ),
        (
            &[
                "SCAN",
                "fleet",
                "WHERE",
                "maxSpeed > 95 && teamId == 1",
                "COUNT",
            ],
            Ok("2", count(2)),
        ),
        (
            &[
                "SCAN",
                "fleet",
                "WHERE",
                "!(teamId == 1) || id == 'truck1'",
                "IDS",
            ],
            Ok(
                "[0 [far truck1 truck2]]",
                ids(&["far", "truck1", "truck2"], 0),
            ),
        ),
        (
            &[
                "SCAN",
                "fleet",
                "WHEREIN",
                "teamId",
                "1",
                "1",
                "WHERE",
                "!optionalId || optionalId == 999",
                "COUNT",
            ],
            Ok("2", count(2)),
        ),
        (
            &["SCAN", "fleet", "WHERE", "maxSpeed ==", "IDS"],
            Err("invalid expression"),
        ),
        // A bare name before a keyword is an expression (truthy).
        (
            &["SCAN", "fleet", "WHERE", "maxSpeed", "IDS"],
            Ok(
                "[0 [truck1 truck2 truck3]]",
                ids(&["truck1", "truck2", "truck3"], 0),
            ),
        ),
        // GeoJSON members, as Tile38's expressions read them.
        (
            &["SCAN", "zones", "WHERE", "properties.speed == 50", "IDS"],
            Ok("[0 [z1]]", ids(&["z1"], 0)),
        ),
        (
            &["SCAN", "zones", "WHERE", "properties.speed == 51", "IDS"],
            Ok("[0 []]", ids(&[], 0)),
        ),
        // WHERE with an operator, and exclusive ranges.
        (
            &["SCAN", "fleet", "WHERE", "maxSpeed", ">", "95", "IDS"],
            Ok("[0 [truck1 truck3]]", ids(&["truck1", "truck3"], 0)),
        ),
        (
            &["SCAN", "fleet", "WHERE", "maxSpeed", "(90", "120", "IDS"],
            Ok("[0 [truck1 truck3]]", ids(&["truck1", "truck3"], 0)),
        ),
        (
            &["SCAN", "fleet", "WHERE", "maxSpeed", "(90", "(120", "IDS"],
            Ok("[0 [truck3]]", ids(&["truck3"], 0)),
        ),
        (
            &["SCAN", "fleet", "WHERE", "maxSpeed", "90", "100", "IDS"],
            Ok("[0 [truck2 truck3]]", ids(&["truck2", "truck3"], 0)),
        ),
        // Filters on spatial searches.
        (
            &[
                "NEARBY", "fleet", "WHEREIN", "teamId", "1", "1", "IDS", "POINT", "33.5", "-112.2",
                "10000",
            ],
            Ok("[0 [truck1 truck3]]", ids(&["truck1", "truck3"], 0)),
        ),
        (
            &[
                "NEARBY",
                "fleet",
                "LIMIT",
                "1",
                "WHERE",
                "teamId == 1",
                "IDS",
                "POINT",
                "33.52",
                "-112.22",
            ],
            Ok("[1 [truck3]]", ids(&["truck3"], 1)),
        ),
        (
            &[
                "WITHIN",
                "fleet",
                "WHERE",
                "maxSpeed < 100",
                "IDS",
                "BOUNDS",
                "33",
                "-113",
                "34",
                "-112",
            ],
            Ok("[0 [truck2]]", ids(&["truck2"], 0)),
        ),
        // BOUNDS is the output after the options; a number after it makes
        // it the area (WITHIN and INTERSECTS), Tile38's rule.
        (
            &[
                "INTERSECTS",
                "fleet",
                "BOUNDS",
                "CIRCLE",
                "33.5",
                "-112.2",
                "100",
            ],
            Ok(
                "[0 [[truck1 [[33.5 -112.2] [33.5 -112.2]] [maxSpeed 120 teamId 1]]]]",
                json!({"ok": true, "fields": ["maxSpeed", "teamId"], "bounds": [{"id": "truck1", "bounds": {"sw": {"lat": 33.5, "lon": -112.2}, "ne": {"lat": 33.5, "lon": -112.2}}, "fields": [120, 1]}], "count": 1, "cursor": 0}),
            ),
        ),
        (
            &[
                "NEARBY", "fleet", "BOUNDS", "POINT", "33.5", "-112.2", "100",
            ],
            Ok(
                "[0 [[truck1 [[33.5 -112.2] [33.5 -112.2]] [maxSpeed 120 teamId 1]]]]",
                json!({"ok": true, "fields": ["maxSpeed", "teamId"], "bounds": [{"id": "truck1", "bounds": {"sw": {"lat": 33.5, "lon": -112.2}, "ne": {"lat": 33.5, "lon": -112.2}}, "fields": [120, 1]}], "count": 1, "cursor": 0}),
            ),
        ),
        (
            &[
                "WITHIN", "fleet", "NOFIELDS", "BOUNDS", "33.49", "-112.205", "33.505", "-112.19",
            ],
            Ok(
                r#"[0 [[truck1 {"type":"Point","coordinates":[-112.2,33.5]}]]]"#,
                json!({"ok": true, "objects": [{"id": "truck1", "object": {"type": "Point", "coordinates": [-112.2, 33.5]}}], "count": 1, "cursor": 0}),
            ),
        ),
        (
            &[
                "INTERSECTS",
                "fleet",
                "IDS",
                "BOUNDS",
                "33.49",
                "-112.205",
                "33.505",
                "-112.19",
            ],
            Ok("[0 [truck1]]", ids(&["truck1"], 0)),
        ),
        // SECTOR: the north-west slice from between the trucks holds
        // truck3, the north-east one truck2.
        (
            &[
                "WITHIN", "fleet", "IDS", "SECTOR", "33.505", "-112.215", "3000", "270", "360",
            ],
            Ok("[0 [truck3]]", ids(&["truck3"], 0)),
        ),
        (
            &[
                "INTERSECTS",
                "fleet",
                "IDS",
                "SECTOR",
                "33.505",
                "-112.215",
                "3000",
                "0",
                "90",
            ],
            Ok("[0 [truck2]]", ids(&["truck2"], 0)),
        ),
        (
            &[
                "WITHIN", "fleet", "IDS", "SECTOR", "33.505", "-112.215", "3000", "90", "90",
            ],
            Err("equal bearings"),
        ),
        // TILE and QUADKEY (Bing's tile system): zoom 10 holds the three
        // trucks, zoom 14 truck1 alone.
        (
            &["WITHIN", "fleet", "COUNT", "TILE", "192", "410", "10"],
            Ok("3", count(3)),
        ),
        (
            &["INTERSECTS", "fleet", "IDS", "TILE", "3085", "6572", "14"],
            Ok("[0 [truck1]]", ids(&["truck1"], 0)),
        ),
        (
            &["WITHIN", "fleet", "COUNT", "QUADKEY", "0231022020"],
            Ok("3", count(3)),
        ),
        (
            &["INTERSECTS", "fleet", "IDS", "QUADKEY", "02310220203301"],
            Ok("[0 [truck1]]", ids(&["truck1"], 0)),
        ),
        (
            &["WITHIN", "fleet", "COUNT", "QUADKEY", "0239"],
            Err("invalid argument"),
        ),
        (
            &["WITHIN", "fleet", "COUNT", "TILE", "1024", "410", "10"],
            Err("invalid argument"),
        ),
        // HASH areas.
        (
            &["WITHIN", "fleet", "COUNT", "HASH", "9tbn"],
            Ok("3", count(3)),
        ),
        // BUFFER grows the area by meters.
        (
            &[
                "WITHIN", "fleet", "BUFFER", "1000", "IDS", "POINT", "33.51", "-112.21",
            ],
            Ok("[0 [truck2]]", ids(&["truck2"], 0)),
        ),
        (
            &[
                "WITHIN", "fleet", "BUFFER", "2000", "COUNT", "POINT", "33.51", "-112.21",
            ],
            Ok("3", count(3)),
        ),
        (
            &[
                "INTERSECTS",
                "fleet",
                "COUNT",
                "BOUNDS",
                "33.515",
                "-112.225",
                "33.53",
                "-112.215",
            ],
            Ok("1", count(1)),
        ),
        (
            &[
                "INTERSECTS",
                "fleet",
                "BUFFER",
                "1000",
                "COUNT",
                "BOUNDS",
                "33.515",
                "-112.225",
                "33.53",
                "-112.215",
            ],
            Ok("2", count(2)),
        ),
        (
            &[
                "WITHIN", "fleet", "BUFFER", "500", "COUNT", "CIRCLE", "33.51", "-112.21", "1000",
            ],
            Ok("3", count(3)),
        ),
        (
            &[
                "NEARBY", "fleet", "BUFFER", "500", "COUNT", "POINT", "33.51", "-112.21", "500",
            ],
            Ok("1", count(1)),
        ),
        (
            &[
                "NEARBY", "fleet", "BUFFER", "1000", "COUNT", "POINT", "33.51", "-112.21", "500",
            ],
            Ok("3", count(3)),
        ),
        (
            &[
                "WITHIN",
                "fleet",
                "BUFFER",
                "10",
                "COUNT",
                "OBJECT",
                r#"{"type":"Point","coordinates":[-112.2,33.5]}"#,
            ],
            Ok("1", count(1)),
        ),
        (
            &[
                "WITHIN", "fleet", "BUFFER", "-1", "COUNT", "POINT", "33.51", "-112.21",
            ],
            Err("invalid argument"),
        ),
        (
            &[
                "NEARBY", "fleet", "DESC", "IDS", "POINT", "33.51", "-112.21",
            ],
            Err("DESC is not allowed for NEARBY"),
        ),
        // Out of the lat/lon range: stored, indexed and found.
        (
            &["NEARBY", "fleet", "IDS", "POINT", "95", "200", "1"],
            Ok("[0 [far]]", ids(&["far"], 0)),
        ),
        (
            &["NEARBY", "fleet", "IDS", "POINT", "33.5", "-112.2"],
            Ok(
                "[0 [truck1 truck2 truck3 far]]",
                ids(&["truck1", "truck2", "truck3", "far"], 0),
            ),
        ),
        (
            &[
                "WITHIN", "fleet", "IDS", "BOUNDS", "90", "180", "100", "210",
            ],
            Ok("[0 [far]]", ids(&["far"], 0)),
        ),
        (
            &["INTERSECTS", "fleet", "IDS", "CIRCLE", "95", "200", "10"],
            Ok("[0 [far]]", ids(&["far"], 0)),
        ),
        (
            &["WITHIN", "fleet", "IDS", "CIRCLE", "95", "200", "10"],
            Ok("[0 [far]]", ids(&["far"], 0)),
        ),
        (
            &[
                "NEARBY",
                "fleet",
                "WHERE",
                "teamId == 3",
                "IDS",
                "POINT",
                "95",
                "200",
                "10",
            ],
            Ok("[0 [far]]", ids(&["far"], 0)),
        ),
        (
            &["GET", "fleet", "far", "POINT"],
            Ok(
                "[95 200]",
                json!({"ok": true, "point": {"lat": 95, "lon": 200}}),
            ),
        ),
        // SEARCH over string values (keys_search_test.go).
        (
            &["SEARCH", "mykey", "LIMIT", "3", "IDS"],
            Ok("[3 [id1 id2 id3]]", ids(&["id1", "id2", "id3"], 3)),
        ),
        (
            &["SEARCH", "mykey", "CURSOR", "3", "LIMIT", "3", "IDS"],
            Ok("[6 [id4 id5 id6]]", ids(&["id4", "id5", "id6"], 6)),
        ),
        (
            &["SEARCH", "mykey", "WHERE", "foo", "3", "5", "IDS"],
            Ok("[0 [id3 id4 id5]]", ids(&["id3", "id4", "id5"], 0)),
        ),
        (
            &[
                "SEARCH", "mykey", "LIMIT", "1", "WHERE", "foo", "3", "5", "IDS",
            ],
            Ok("[3 [id3]]", ids(&["id3"], 3)),
        ),
        (
            &[
                "SEARCH", "mykey", "CURSOR", "3", "LIMIT", "1", "WHERE", "foo", "8", "9", "IDS",
            ],
            Ok("[8 [id8]]", ids(&["id8"], 8)),
        ),
        (
            &[
                "SEARCH", "mykey", "CURSOR", "6", "LIMIT", "1", "WHERE", "foo", "8", "9", "IDS",
            ],
            Ok("[8 [id8]]", ids(&["id8"], 8)),
        ),
        (
            &["SEARCH", "mykey", "LIMIT", "3", "DESC", "IDS"],
            Ok("[3 [id9 id8 id7]]", ids(&["id9", "id8", "id7"], 3)),
        ),
        (
            &["SEARCH", "mykey", "MATCH", "bar5*", "IDS"],
            Ok("[0 [id5]]", ids(&["id5"], 0)),
        ),
        (
            &["SEARCH", "mykey", "MATCH", "bar*", "COUNT"],
            Ok("9", count(9)),
        ),
        (
            &["SEARCH", "mykey", "WHEREIN", "foo", "2", "2", "7", "IDS"],
            Ok("[0 [id2 id7]]", ids(&["id2", "id7"], 0)),
        ),
        (
            &["SEARCH", "mykey", "WHERE", "foo > 7", "IDS"],
            Ok("[0 [id8 id9]]", ids(&["id8", "id9"], 0)),
        ),
        (
            &["SEARCH", "mykey", "LIMIT", "1", "NOFIELDS"],
            Ok(
                "[1 [[id1 bar1]]]",
                json!({"ok": true, "objects": [{"id": "id1", "object": "bar1"}], "count": 1, "cursor": 1}),
            ),
        ),
        (
            &["SEARCH", "mykey", "POINTS"],
            Err("SEARCH returns string objects"),
        ),
        (
            &["SEARCH", "mykey", "IDS", "POINT", "1", "1"],
            Err("invalid argument"),
        ),
        // TEST (testcmd_test.go).
        (
            &[
                "TEST", "POINT", "33.5", "-112.2", "WITHIN", "BOUNDS", "33", "-113", "34", "-112",
            ],
            Ok("1", json!({"ok": true, "result": true})),
        ),
        (
            &[
                "TEST",
                "POINT",
                "33.5",
                "-112.2",
                "INTERSECTS",
                "CIRCLE",
                "33.5",
                "-112.21",
                "500",
            ],
            Ok("0", json!({"ok": true, "result": false})),
        ),
        (
            &[
                "TEST",
                "POINT",
                "33.5",
                "-112.2",
                "INTERSECTS",
                "CIRCLE",
                "33.5",
                "-112.21",
                "1000",
            ],
            Ok("1", json!({"ok": true, "result": true})),
        ),
        (
            &[
                "TEST", "GET", "fleet", "truck1", "WITHIN", "TILE", "3085", "6572", "14",
            ],
            Ok("1", json!({"ok": true, "result": true})),
        ),
        (
            &[
                "TEST",
                "GET",
                "fleet",
                "truck2",
                "WITHIN",
                "QUADKEY",
                "02310220203301",
            ],
            Ok("0", json!({"ok": true, "result": false})),
        ),
        (
            &[
                "TEST", "CIRCLE", "33.5", "-112.2", "100", "WITHIN", "BOUNDS", "33", "-113", "34",
                "-112",
            ],
            Ok("1", json!({"ok": true, "result": true})),
        ),
        (
            &[
                "TEST",
                "BOUNDS",
                "33",
                "-113",
                "34",
                "-112",
                "INTERSECTS",
                "SECTOR",
                "33.505",
                "-112.215",
                "3000",
                "0",
                "90",
            ],
            Ok("1", json!({"ok": true, "result": true})),
        ),
        (
            &[
                "TEST",
                "OBJECT",
                r#"{"type":"Point","coordinates":[-112.2,33.5]}"#,
                "WITHIN",
                "HASH",
                "9tbn",
            ],
            Ok("1", json!({"ok": true, "result": true})),
        ),
        (
            &[
                "TEST", "POINT", "33.5", "-112.2", "WITHIN", "CLIP", "BOUNDS", "33", "-113", "34",
                "-112",
            ],
            Err("invalid argument 'CLIP'"),
        ),
        (
            &[
                "TEST", "POINT", "33.5", "-112.2", "NEAR", "BOUNDS", "33", "-113", "34", "-112",
            ],
            Err("invalid argument 'NEAR'"),
        ),
        (
            &[
                "TEST", "GET", "fleet", "nobody", "WITHIN", "BOUNDS", "33", "-113", "34", "-112",
            ],
            Err("not found"),
        ),
    ]
}

#[test]
fn search_options_search_and_test_answer_as_tile38_on_leader_and_follower() {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let leader = start(ldir.path(), &["--port", &port_s]).unwrap();
    let mut lc = leader.client();
    for args in DATA {
        assert_eq!(render(cmd(args).query(&mut lc)), "OK", "{args:?}");
    }
    let fdir = tempfile::tempdir().unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut fc = follower.client();
    assert_eq!(
        render(cmd(&["FOLLOW", "127.0.0.1", &port_s]).query(&mut fc)),
        "OK"
    );
    assert!(
        caught_up(&leader, &follower, Duration::from_secs(30)),
        "{}",
        follower.log()
    );
    let mut cases = cases();
    cases.extend(test_cases());
    check_all(&leader, &cases);
    check_all(&follower, &cases);

    // The out-of-range point survives a restart (the file replays under
    // the same rule) and is still indexed.
    let leader = leader.restart().unwrap();
    let mut lc = leader.client();
    assert_eq!(
        render(cmd(&["NEARBY", "fleet", "IDS", "POINT", "95", "200", "1"]).query(&mut lc)),
        "[0 [far]]"
    );
}

#[test]
fn require_valid_refuses_coordinates_out_of_range() {
    for (flags, envs) in [
        (&["--require-valid"][..], &[][..]),
        (&[][..], &[("REQUIREVALID", "1")][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = start_env(dir.path(), flags, envs).unwrap();
        let mut c = server.client();
        let run = |c: &mut redis::Connection, args: &[&str]| render(cmd(args).query(c));
        assert!(run(&mut c, &["SET", "fleet", "far", "POINT", "95", "200"]).starts_with("ERR"));
        assert!(run(
            &mut c,
            &["WITHIN", "fleet", "IDS", "BOUNDS", "90", "180", "100", "210"]
        )
        .starts_with("ERR"));
        assert_eq!(
            run(&mut c, &["SET", "fleet", "ok", "POINT", "33", "-112"]),
            "OK"
        );
        assert_eq!(
            run(
                &mut c,
                &["NEARBY", "fleet", "IDS", "POINT", "33", "-112", "1"]
            ),
            "[0 [ok]]"
        );
    }
}

/// `CLIP` in INTERSECTS returns each object cut to the area's rectangle,
/// as TEST's CLIP cuts it (Tile38's clip package); WITHIN takes the word
/// and returns objects whole (they are inside already); CLIP refuses an
/// area that is not a rectangle, with Tile38's words.
#[test]
fn clip_cuts_intersects_results_to_the_rectangle() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.json_client();
    let square = r#"{"type":"Polygon","coordinates":[[[-112,33],[-111.8,33],[-111.8,33.2],[-112,33.2],[-112,33]]]}"#;
    let q = |c: &mut redis::Connection, args: &[&str]| -> Value {
        let text: String = cmd(args).query(c).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove("elapsed");
        v
    };
    assert_eq!(q(&mut c, &["SET", "k", "sq", "OBJECT", square])["ok"], true);
    assert_eq!(
        q(&mut c, &["SET", "k", "pt", "POINT", "33.15", "-111.85"])["ok"],
        true
    );
    let rect = ["BOUNDS", "33.1", "-111.9", "33.3", "-111.7"];
    let mut args = vec!["INTERSECTS", "k", "CLIP"];
    args.extend(rect);
    let got = q(&mut c, &args);
    let objects = got["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 2, "{got}");
    let object = |id: &str| {
        objects
            .iter()
            .find(|o| o["id"] == id)
            .map(|o| o["object"].clone())
            .unwrap_or_else(|| panic!("{id} in {got}"))
    };
    // TEST's CLIP is the oracle for the cut.
    let mut test = vec!["TEST", "GET", "k", "sq", "INTERSECTS", "CLIP"];
    test.extend(rect);
    let want = q(&mut c, &test)["object"].clone();
    assert_eq!(object("sq"), want);
    assert_ne!(object("sq"), serde_json::from_str::<Value>(square).unwrap());
    for p in object("sq")["coordinates"][0].as_array().unwrap() {
        let (lon, lat) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        assert!(
            (-111.9..=-111.7).contains(&lon) && (33.1..=33.3).contains(&lat),
            "{p}"
        );
    }
    assert_eq!(
        object("pt"),
        json!({"type": "Point", "coordinates": [-111.85, 33.15]})
    );
    // In RESP the object text is the clipped one too.
    let mut r = server.client();
    let resp = render(cmd(&args).query::<redis::Value>(&mut r));
    let cut = want["coordinates"].to_string();
    assert!(resp.contains(&cut), "{resp} lacks {cut}");
    // POINTS of a clipped object is the centre of what is left.
    let mut pts = vec!["INTERSECTS", "k", "CLIP", "MATCH", "sq", "POINTS"];
    pts.extend(rect);
    let p = &q(&mut c, &pts)["points"][0]["point"];
    assert!(p["lat"].as_f64().unwrap() > 33.1, "{p}");
    // WITHIN keeps objects whole.
    let mut within = vec!["WITHIN", "k", "CLIP"];
    within.extend(rect);
    let got = q(&mut c, &within);
    assert_eq!(got["objects"].as_array().unwrap().len(), 1, "{got}");
    for bad in [
        vec!["INTERSECTS", "k", "CLIP", "CIRCLE", "33", "-112", "1000"],
        vec!["INTERSECTS", "k", "CLIP", "GET", "k", "sq"],
        vec!["INTERSECTS", "k", "CLIP", "OBJECT", square],
    ] {
        let e = q(&mut c, &bad);
        assert_eq!(e["ok"], false, "{bad:?}");
        let msg = e["err"].as_str().unwrap();
        assert!(msg.contains("cannot clip with"), "{bad:?}: {msg}");
    }
    let e = q(
        &mut c,
        &[
            "INTERSECTS",
            "k",
            "CLIP",
            "CLIP",
            "BOUNDS",
            "1",
            "2",
            "3",
            "4",
        ],
    );
    assert!(e["err"].as_str().unwrap().contains("duplicate"), "{e}");
}
