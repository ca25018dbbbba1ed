//! A leader and two followers over loopback: writes, expirations, field
//! updates, PDEL and DROP on the leader reach both followers, whose state
//! then equals the leader's; followers refuse writes; and each follower's file
//! holds exactly the leader's stream bytes from the offset it joined at, so
//! it wrote no expiration deletion of its own.

#[path = "replication_common.rs"]
mod replication_common;

use std::time::Duration;

use e2e::{dump, run, start, wait_until};
use replication_common::{assert_same_state, caught_up, file_stream, free_port, stat_u64};

#[test]
fn two_followers_reach_the_leaders_state_and_log_its_bytes() {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let leader = start(ldir.path(), &["--port", &port_s, "--appendfsync", "always"]).unwrap();
    let mut lc = leader.client();
    // Some state before the followers join: they get it by a full sync.
    for i in 0..50 {
        assert_eq!(
            run(
                &mut lc,
                &format!("SET fleet t{i} FIELD speed {i} POINT 33 -115")
            ),
            "OK"
        );
    }
    // A hook made before they join reaches them with the full sync.
    assert_eq!(
        run(
            &mut lc,
            "SETHOOK h0 http://127.0.0.1:9/x NEARBY fleet FENCE POINT 32 -115 1000"
        ),
        "1"
    );
    let fdirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let followers: Vec<_> = fdirs
        .iter()
        .map(|d| start(d.path(), &["--appendfsync", "always"]).unwrap())
        .collect();
    for f in &followers {
        let mut c = f.client();
        assert_eq!(run(&mut c, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    }
    for f in &followers {
        assert!(
            caught_up(&leader, f, Duration::from_secs(20)),
            "{}",
            f.log()
        );
    }

    // Live writes of every kind, with objects that expire on the leader.
    for i in 0..50 {
        assert_eq!(
            run(&mut lc, &format!("SET fleet e{i} EX 1 POINT 34 -116")),
            "OK"
        );
        assert_eq!(
            run(&mut lc, &format!("FSET fleet t{i} speed {}", i * 2 + 1)),
            "1"
        );
        assert_eq!(run(&mut lc, &format!("SET other o{i} STRING v{i}")), "OK");
    }
    // Hooks are state too: they reach the followers through the stream.
    for (name, lat) in [("h1", 33), ("h2", 34), ("gone", 35)] {
        assert_eq!(
            run(
                &mut lc,
                &format!(
                    "SETHOOK {name} http://127.0.0.1:9/x NEARBY fleet FENCE POINT {lat} -115 1000"
                )
            ),
            "1"
        );
    }
    assert_eq!(run(&mut lc, "DELHOOK gone"), "1");
    assert_eq!(run(&mut lc, "SET fleet p1 POINT 1 1"), "OK");
    assert_eq!(run(&mut lc, "SET fleet p2 POINT 1 1"), "OK");
    assert_eq!(run(&mut lc, "PDEL fleet p*"), "2");
    assert_eq!(run(&mut lc, "DROP other"), "1");
    assert_eq!(run(&mut lc, "DEL fleet t0"), "1");
    assert_eq!(run(&mut lc, "EXPIRE fleet t1 600"), "1");
    // The leader removes the 50 expired objects and logs a `del` for each.
    assert!(wait_until(Duration::from_secs(10), || {
        stat_u64(&leader, "expired_keys") >= 50
    }));
    for (f, d) in followers.iter().zip(&fdirs) {
        assert!(
            caught_up(&leader, f, Duration::from_secs(20)),
            "{}",
            f.log()
        );
        let mut c = f.client();
        assert_same_state(&dump(&mut c), &dump(&mut lc));
        assert_eq!(run(&mut c, "SCAN fleet COUNT"), "49");
        let hooks = run(&mut c, "HOOKS *");
        assert_eq!(hooks, run(&mut lc, "HOOKS *"));
        assert!(
            hooks.contains("h0")
                && hooks.contains("h1")
                && hooks.contains("h2")
                && !hooks.contains("gone"),
            "{hooks}"
        );
        assert_eq!(run(&mut c, "SET fleet x POINT 1 1"), "ERR:not the leader");
        assert_eq!(run(&mut c, "DROP fleet"), "ERR:not the leader");
        assert_eq!(run(&mut c, "HEALTHZ"), "OK");
        assert_eq!(
            stat_u64(f, "expired_keys"),
            0,
            "a follower expired on its own"
        );
        // The follower's stream bytes are the leader's from where it joined.
        let (lo, lstream) = file_stream(&ldir.path().join("appendonly.aof"));
        let (fo, fstream) = file_stream(&d.path().join("appendonly.aof"));
        assert!(fo >= lo, "follower starts at {fo}, leader at {lo}");
        assert_eq!(
            fstream,
            lstream[(fo - lo) as usize..],
            "the follower's file is not the leader's stream"
        );
        let dels = fstream.windows(8).filter(|w| w == b"$3\r\ndel\r").count();
        assert!(dels >= 50, "the leader's expiry deletions reached the file");
    }
    // One full sync per follower, counted by the leader.
    assert_eq!(stat_u64(&leader, "repl_full_syncs"), 2);
    assert_eq!(stat_u64(&leader, "connected_followers"), 2);
}
