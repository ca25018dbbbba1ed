//! A leader with a password: a follower without `leaderauth` cannot attach
//! and answers "catching up to leader" to reads and HEALTHZ (and "not the
//! leader" to writes); once `CONFIG SET leaderauth` is given and FOLLOW is
//! repeated it catches up and serves reads. `FOLLOW no one` makes it a
//! leader that accepts writes and keeps its data.

#[path = "replication_common.rs"]
mod replication_common;

use std::time::Duration;

use e2e::{run, start, wait_until};
use replication_common::{caught_up_auth, free_port};

#[test]
fn leaderauth_gates_the_link_and_followers_answer_catching_up() {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let leader = start(ldir.path(), &["--port", &port_s, "--requirepass", "pw"]).unwrap();
    let mut lc = redis::Client::open(format!("redis://:pw@127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(run(&mut lc, "SET fleet t1 POINT 33 -115"), "OK");

    let fdir = tempfile::tempdir().unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut fc = follower.client();
    assert_eq!(run(&mut fc, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    // Without the password the link never comes up.
    assert!(wait_until(Duration::from_secs(10), || follower
        .log()
        .contains("replication session ended")));
    assert_eq!(run(&mut fc, "GET fleet t1"), "ERR:catching up to leader");
    assert_eq!(run(&mut fc, "HEALTHZ"), "ERR:catching up to leader");
    assert_eq!(run(&mut fc, "SET fleet t2 POINT 1 1"), "ERR:not the leader");
    assert_eq!(follower.stat(&mut fc, "caught_up"), "false");
    assert_eq!(follower.stat(&mut fc, "role"), "follower");
    assert_eq!(run(&mut fc, "PING"), "PONG");

    assert_eq!(run(&mut fc, "CONFIG SET leaderauth pw"), "OK");
    assert_eq!(run(&mut fc, "CONFIG GET leaderauth"), "[leaderauth pw]");
    assert_eq!(run(&mut fc, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    assert!(caught_up_auth(
        &leader,
        "pw",
        &follower,
        Duration::from_secs(20)
    ));
    assert!(wait_until(Duration::from_secs(10), || run(
        &mut fc, "HEALTHZ"
    ) == "OK"));
    assert_eq!(run(&mut fc, "GET fleet t1 POINT"), "[33 -115]");

    // Promotion: the follower leads, keeps its data and takes writes.
    assert_eq!(run(&mut fc, "FOLLOW no one"), "OK");
    assert_eq!(run(&mut fc, "SET fleet t2 POINT 1 1"), "OK");
    assert_eq!(run(&mut fc, "SCAN fleet COUNT"), "2");
    // Tile38's ROLE shape: `[master offset [followers]]`.
    let role = run(&mut fc, "ROLE");
    assert!(role.starts_with("[master "), "{role}");
    // And the promoted node survives a restart as a leader.
    drop(fc);
    let follower = follower.restart().unwrap();
    let mut fc = follower.client();
    assert_eq!(run(&mut fc, "SCAN fleet COUNT"), "2");
    assert_eq!(run(&mut fc, "SET fleet t3 POINT 1 1"), "OK");
}
