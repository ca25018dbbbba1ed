//! ROLE on a leader and its follower in Tile38's shape (RESP2, RESP3 and
//! JSON), the follower's announcement (`REPLCONF listening-port`, and
//! `replica_announce_port` over it), and the TIMEOUT search option, which
//! stops a search exactly where the TIMEOUT prefix does.

#[path = "replication_common.rs"]
mod replication_common;

use std::time::Duration;

use e2e::{render, run, run_json, start, wait_until, Grid, Server};
use replication_common::{caught_up, free_port, stat_u64};
use serde_json::json;

fn resp3(server: &Server) -> redis::Connection {
    let c =
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", server.port)).unwrap();
    c.get_connection_with_timeout(Duration::from_secs(10))
        .unwrap()
}

/// Tile38's ROLE (internal/server/stats.go `cmdROLE`; Tile38's own tests
/// have no ROLE case, so the shapes are its code's): a leader answers
/// `[master offset [[ip port offset] …]]` with the follower's port and
/// offset as strings, a follower `[slave host port state offset]`.
#[test]
fn role_answers_tile38s_shape_on_a_leader_and_its_follower() {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let leader = start(ldir.path(), &["--port", &port.to_string()]).unwrap();
    let mut lc = leader.client();
    // Alone, a leader has no followers.
    let offset = stat_u64(&leader, "repl_offset");
    assert_eq!(run(&mut lc, "ROLE"), format!("[master {offset} []]"));
    assert_eq!(run(&mut lc, "SET fleet t1 POINT 33 -115"), "OK");

    let fdir = tempfile::tempdir().unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut fc = follower.client();
    assert_eq!(run(&mut fc, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    assert!(caught_up(&leader, &follower, Duration::from_secs(30)));
    let offset = stat_u64(&leader, "repl_offset");

    // The leader lists the follower by its announced port once it has
    // acknowledged the leader's offset (acknowledgements come every
    // second).
    let want = format!("[master {offset} [[127.0.0.1 {} {offset}]]]", follower.port);
    assert!(
        wait_until(Duration::from_secs(20), || run(&mut lc, "ROLE") == want),
        "{} != {want}",
        run(&mut lc, "ROLE")
    );
    assert_eq!(render(redis::cmd("ROLE").query(&mut resp3(&leader))), want);
    let mut lj = leader.json_client();
    assert_eq!(
        run_json(&mut lj, "ROLE"),
        json!({"ok":true,"role":{"role":"master","offset":offset,"slaves":[
            {"ip":"127.0.0.1","port":follower.port.to_string(),"offset":offset.to_string()}
        ]}})
    );

    // The follower names its leader, its link state and its offset.
    let want = format!("[slave 127.0.0.1 {port} connected {offset}]");
    assert!(
        wait_until(Duration::from_secs(20), || run(&mut fc, "ROLE") == want),
        "{} != {want}",
        run(&mut fc, "ROLE")
    );
    assert_eq!(
        render(redis::cmd("ROLE").query(&mut resp3(&follower))),
        want
    );
    let mut fj = follower.json_client();
    assert_eq!(
        run_json(&mut fj, "ROLE"),
        json!({"ok":true,"role":{"role":"slave","host":"127.0.0.1","port":port,
            "state":"connected","offset":offset}})
    );

    // Tile38's replica_announce_port replaces the port announced.
    assert_eq!(run(&mut fc, "CONFIG SET replica_announce_port 7777"), "OK");
    assert_eq!(run(&mut fc, "FOLLOW no one"), "OK");
    assert_eq!(run(&mut fc, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    assert!(caught_up(&leader, &follower, Duration::from_secs(30)));
    let want = format!("[master {offset} [[127.0.0.1 7777 {offset}]]]");
    assert!(
        wait_until(Duration::from_secs(20), || run(&mut lc, "ROLE") == want),
        "{} != {want}",
        run(&mut lc, "ROLE")
    );

    // After promotion the former follower is a leader with no followers.
    assert_eq!(run(&mut fc, "FOLLOW no one"), "OK");
    let role = run(&mut fc, "ROLE");
    assert!(
        role.starts_with("[master ") && role.ends_with(" []]"),
        "{role}"
    );
    // A bad announcement is refused with Tile38's words.
    assert_eq!(
        run(&mut lc, "REPLCONF listening-port x"),
        "ERR:invalid argument 'x'"
    );
}

const OBJECTS: usize = 20_000;

/// The TIMEOUT search option runs the prefix's deadline (Tile38's
/// tests/timeout_test.go `timeout_spatial_test` and `timeout_search_test`
/// are the prefix's cases: a tiny limit answers `timeout`, a large one the
/// count). The proof that the walk stops at the deadline rather than
/// at its end: with `--max-reply 4096` a page too large is only found at
/// the end, so such a search answers `timeout` under a tiny limit.
#[test]
fn the_timeout_option_stops_a_search_as_the_prefix_does() {
    let dir = tempfile::tempdir().unwrap();
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
