//! ROLE on a leader and its follower in Tile38's shape (RESP2, RESP3 and
//! JSON), and the follower's announcement (`REPLCONF listening-port`, and
//! `replica_announce_port` over it).

#[path = "replication_common.rs"]
mod replication_common;

use std::time::Duration;

use e2e::{render, run, run_json, start, wait_until, Server};
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
