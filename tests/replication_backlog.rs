//! A follower that is down while the leader writes resumes with a partial
//! resync when what it missed is still in the leader's backlog
//! (`--repl-backlog-size`), and gets a full sync, counted by both sides,
//! when it fell behind the backlog; either way it ends with the leader's state.

#[path = "replication_common.rs"]
mod replication_common;

use std::time::Duration;

use e2e::{dump, run, start, Server};
use replication_common::{assert_same_state, caught_up, free_port, stat_u64};

fn write(c: &mut redis::Connection, from: u32, n: u32) {
    for i in from..from + n {
        assert_eq!(
            run(c, &format!("SET fleet t{i} FIELD n {i} POINT 33 -115")),
            "OK"
        );
    }
}

fn restart_follower(f: Server) -> Server {
    let dir = f.dir.clone();
    f.kill9();
    start(&dir, &[]).unwrap()
}

#[test]
fn within_the_backlog_partial_beyond_it_full() {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let leader = start(
        ldir.path(),
        &["--port", &port_s, "--repl-backlog-size", "32kb"],
    )
    .unwrap();
    let mut lc = leader.client();
    let fdir = tempfile::tempdir().unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut fc = follower.client();
    assert_eq!(run(&mut fc, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    assert_eq!(run(&mut fc, "CONFIG REWRITE"), "OK");
    drop(fc);
    write(&mut lc, 0, 100);
    assert!(caught_up(&leader, &follower, Duration::from_secs(20)));

    // About 6 KB missed: still in the 32 KB backlog.
    let follower = {
        let dir = follower.dir.clone();
        follower.kill9();
        write(&mut lc, 100, 100);
        start(&dir, &[]).unwrap()
    };
    assert!(caught_up(&leader, &follower, Duration::from_secs(20)));
    assert_eq!(stat_u64(&follower, "repl_partial_syncs"), 1);
    assert_eq!(stat_u64(&follower, "repl_full_syncs"), 0);
    assert_eq!(stat_u64(&leader, "repl_full_syncs"), 1);

    // About 120 KB missed: beyond the backlog, so a full sync.
    let follower = {
        let dir = follower.dir.clone();
        follower.kill9();
        write(&mut lc, 200, 2000);
        start(&dir, &[]).unwrap()
    };
    assert!(caught_up(&leader, &follower, Duration::from_secs(20)));
    assert_eq!(stat_u64(&follower, "repl_full_syncs"), 1);
    assert_eq!(stat_u64(&leader, "repl_full_syncs"), 2);
    assert_same_state(&dump(&mut follower.client()), &dump(&mut lc));
    // The restarted follower resumes from the file the full sync left.
    let follower = restart_follower(follower);
    write(&mut lc, 2200, 10);
    assert!(caught_up(&leader, &follower, Duration::from_secs(20)));
    assert_eq!(stat_u64(&follower, "repl_full_syncs"), 0);
    assert_eq!(stat_u64(&follower, "repl_partial_syncs"), 1);
    assert_same_state(&dump(&mut follower.client()), &dump(&mut lc));
}
