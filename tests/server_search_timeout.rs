//! `TIMEOUT seconds command` cuts a long search short: the walk stops at
//! the deadline and answers Tile38's `timeout` error, where it used to run
//! to its end and only then compare its time with the limit. The proof
//! without a clock: a search whose page is too large for `--max-reply`
//! finds that out only at its end, so it answered "reply too large" under
//! any TIMEOUT; now it answers `timeout`. A generous TIMEOUT changes
//! nothing.

use e2e::{run, run_json, start, Grid};
use serde_json::json;

const OBJECTS: usize = 20_000;

#[test]
fn a_tiny_timeout_stops_a_long_search_with_tiles38_error() {
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
