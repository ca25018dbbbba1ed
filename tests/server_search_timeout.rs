//! `TIMEOUT seconds command` cuts a long search short: the walk stops at
//! the deadline and answers Tile38's `timeout` error, where it used to run
//! to its end and only then compare its time with the limit. The proof
//! without a clock: a search whose page is too large for `--max-reply`
//! finds that out only at its end, so it answered "reply too large" under
//! any TIMEOUT; now it answers `timeout`. A generous TIMEOUT changes
//! nothing. The TIMEOUT search option (`SCAN key TIMEOUT s …`, this
//! server's own) stops a search exactly where the prefix does.

use e2e::{run, run_json, start, Grid, Server};
use serde_json::json;

const OBJECTS: usize = 20_000;

/// A server holding a grid of [`OBJECTS`] points in `fleet`, with a reply
/// cap small enough that a page of every id is refused, and a client.
fn loaded() -> (tempfile::TempDir, Server, redis::Connection) {
    let dir = tempfile::tempdir().unwrap();
    // The searches here are heavy; at the pool's default SCHED_IDLE they
    // barely run on a loaded machine, and what is shown is the walk.
    let server = start(
        dir.path(),
        &["--max-reply", "4096", "--heavy-priority", "normal"],
    )
    .unwrap();
    let mut c = server.client();
    let grid = Grid {
        rows: 100,
        origin: (33.0, -115.0),
        step: (0.001, 0.001),
    };
    grid.load(&mut c, "fleet", OBJECTS, |i| format!("p{i}"));
    (dir, server, c)
}

#[test]
fn a_tiny_timeout_stops_a_long_search_with_tiles38_error() {
    let (_dir, server, mut c) = loaded();
    let area = "BOUNDS 32 -116 35 -114";
    let n = OBJECTS.to_string();
    // A generous limit: the searches' own answers.
    assert_eq!(run(&mut c, "TIMEOUT 600 SCAN fleet COUNT"), n);
    assert_eq!(
        run(&mut c, &format!("TIMEOUT 600 WITHIN fleet COUNT {area}")),
        n
    );
    assert_eq!(
        run(
            &mut c,
            &format!("TIMEOUT 600 INTERSECTS fleet COUNT {area}")
        ),
        n
    );
    let too_large = "ERR:reply too large (over 4096 bytes): lower LIMIT and page with CURSOR";
    assert_eq!(
        run(&mut c, "TIMEOUT 600 SCAN fleet LIMIT 100000 IDS"),
        too_large
    );
    // A limit that has passed before the walk starts.
    for search in [
        "SCAN fleet COUNT".to_string(),
        "SCAN fleet DESC LIMIT 100000 IDS".to_string(),
        "SCAN fleet MATCH p1* LIMIT 100000 IDS".to_string(),
        format!("WITHIN fleet LIMIT 100000 IDS {area}"),
        format!("INTERSECTS fleet WHERE speed 0 0 COUNT {area}"),
        "NEARBY fleet COUNT POINT 33 -115".to_string(),
        "NEARBY fleet LIMIT 100000 DISTANCE IDS POINT 33 -115".to_string(),
        "NEARBY fleet MATCH p1* LIMIT 100000 IDS POINT 33 -115 1000000".to_string(),
        "SEARCH fleet DESC LIMIT 100000 IDS".to_string(),
    ] {
        assert_eq!(
            run(&mut c, &format!("TIMEOUT 0.000001 {search}")),
            "ERR:timeout",
            "{search}"
        );
    }
    // Tile38's JSON shape of the error.
    let mut j = server.client();
    run(&mut j, "OUTPUT json");
    assert_eq!(
        run_json(
            &mut j,
            &format!("TIMEOUT 0.000001 WITHIN fleet COUNT {area}")
        ),
        json!({"ok":false,"err":"timeout"})
    );
}

/// The TIMEOUT search option runs the prefix's deadline (Tile38's
/// tests/timeout_test.go `timeout_spatial_test` and `timeout_search_test`
/// are the prefix's cases: a tiny limit answers `timeout`, a large one the
/// count). The proof that the walk stops at the deadline rather than
/// at its end: with `--max-reply 4096` a page too large is only found at
/// the end, so such a search answers `timeout` under a tiny limit.
#[test]
fn the_timeout_option_stops_a_search_as_the_prefix_does() {
    let (_dir, server, mut c) = loaded();
    let area = "BOUNDS 32 -116 35 -114";
    let n = OBJECTS.to_string();
    for search in [
        "SCAN fleet TIMEOUT 600 COUNT".to_string(),
        format!("WITHIN fleet TIMEOUT 600 COUNT {area}"),
        format!("INTERSECTS fleet COUNT TIMEOUT 600 {area}"),
        "NEARBY fleet TIMEOUT 600 COUNT POINT 33 -115".to_string(),
    ] {
        assert_eq!(run(&mut c, &search), n, "{search}");
    }
    let too_large = "ERR:reply too large (over 4096 bytes): lower LIMIT and page with CURSOR";
    assert_eq!(
        run(&mut c, "SCAN fleet TIMEOUT 600 LIMIT 100000 IDS"),
        too_large
    );
    for search in [
        "SCAN fleet TIMEOUT 0.000001 COUNT".to_string(),
        "SCAN fleet TIMEOUT 0.000001 DESC LIMIT 100000 IDS".to_string(),
        "SCAN fleet MATCH p1* TIMEOUT 0.000001 LIMIT 100000 IDS".to_string(),
        format!("WITHIN fleet TIMEOUT 0.000001 LIMIT 100000 IDS {area}"),
        format!("INTERSECTS fleet WHERE speed 0 0 TIMEOUT 0.000001 COUNT {area}"),
        format!("WITHIN fleet SPARSE 8 TIMEOUT 0.000001 IDS {area}"),
        "NEARBY fleet TIMEOUT 0.000001 COUNT POINT 33 -115".to_string(),
        "SEARCH fleet TIMEOUT 0.000001 COUNT".to_string(),
        // The earlier deadline wins when both forms are given.
        "TIMEOUT 600 SCAN fleet TIMEOUT 0.000001 COUNT".to_string(),
        "TIMEOUT 0.000001 SCAN fleet TIMEOUT 600 COUNT".to_string(),
    ] {
        assert_eq!(run(&mut c, &search), "ERR:timeout", "{search}");
    }
    let mut j = server.json_client();
    assert_eq!(
        run_json(
            &mut j,
            &format!("WITHIN fleet TIMEOUT 0.000001 COUNT {area}")
        ),
        json!({"ok":false,"err":"timeout"})
    );
    assert_eq!(
        run_json(&mut j, "SCAN fleet TIMEOUT 600 COUNT"),
        json!({"ok":true,"count":OBJECTS,"cursor":0})
    );
    for (line, err) in [
        ("SCAN fleet TIMEOUT x COUNT", "invalid argument 'x'"),
        ("SCAN fleet TIMEOUT -1 COUNT", "invalid argument '-1'"),
        (
            "SCAN fleet TIMEOUT 1 TIMEOUT 1 COUNT",
            "duplicate argument 'TIMEOUT'",
        ),
        // Tile38 has no session form: TIMEOUT alone lacks its command.
        (
            "TIMEOUT 5",
            "wrong number of arguments for 'timeout' command",
        ),
    ] {
        assert_eq!(run(&mut c, line), format!("ERR:{err}"), "{line}");
        assert_eq!(
            run_json(&mut j, line),
            json!({"ok":false,"err":err}),
            "{line}"
        );
    }
}
