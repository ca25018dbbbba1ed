//! RENAME while a snapshot is walked in batches (an AOFSHRINK, a follower's
//! full sync). A batched walk is exact because replaying the writes made
//! during it sets final values; RENAME does not: its objects can move from a
//! key the walk has not reached (`z`) to one it has passed (`a`) and be in
//! neither part of the snapshot, and replaying `rename z a` afterwards finds
//! nothing to move. Found by a leader + follower test that lost every renamed
//! object on the follower. The walk now starts over when a RENAME ran during
//! it: the shrink rewrites again, the full sync ends without `+SNAPSHOTEND`
//! and the follower asks again.

#[path = "replication_common.rs"]
mod replication_common;

use std::io::{Read, Write};
use std::time::Duration;

use e2e::{dump, fill_padded, read_until, resp, run, start, wait_until, Server};

/// 20,000 objects of ~600 bytes in `m` (about 12 MB of snapshot, far more
/// than socket buffers hold) and ten in `z`; nothing in `a`, which sorts
/// before both, so the walk has passed its place from the first batch on.
fn fill(server: &Server) {
    let mut c = server.client();
    fill_padded(&mut c, "m", 20_000, 600);
    for i in 0..10 {
        assert_eq!(
            run(&mut c, &format!("SET z r{i} FIELD speed {i} POINT 1 {i}")),
            "OK"
        );
    }
}

fn count(c: &mut redis::Connection, key: &str) -> String {
    run(c, &format!("SCAN {key} COUNT"))
}

#[test]
fn a_rename_during_a_shrink_loses_nothing_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    fill(&server);
    let mut c = server.client();
    // About six seconds of rewrite, so that the RENAME lands inside the walk.
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-max-rate 2mb"), "OK");
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    let walking = wait_until(Duration::from_secs(60), || {
        std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().ends_with(".tmp")
                && e.metadata().map_or(0, |m| m.len()) > 256 << 10
        })
    });
    assert!(walking, "the shrink never started:\n{}", server.log());
    assert_eq!(run(&mut c, "RENAME z a"), "OK");

    assert!(
        server.wait_log("aof shrink finished", Duration::from_secs(120)),
        "{}",
        server.log()
    );
    let before = dump(&mut c);
    let log = server.log();
    let server = {
        server.kill9();
        start(dir.path(), &[]).unwrap()
    };
    let mut c = server.client();
    assert_eq!(count(&mut c, "a"), "10", "{}", server.log());
    assert_eq!(count(&mut c, "z"), "0");
    assert_eq!(count(&mut c, "m"), "20000");
    assert_eq!(run(&mut c, "FGET a r7 speed"), "7");
    assert_eq!(dump(&mut c), before);
    assert!(
        log.contains("starting the shrink again"),
        "the shrink that saw the RENAME was not the one kept:\n{log}"
    );
}

#[test]
fn a_rename_during_a_full_sync_ends_it_and_the_follower_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let port = replication_common::free_port();
    let leader = start(dir.path(), &["--port", &port.to_string()]).unwrap();
    fill(&leader);
    let mut c = leader.client();

    // A follower that reads slowly: the leader's walk waits on the socket.
    let mut slow = leader.raw();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    slow.write_all(&resp(&[b"PSYNC", b"?", b"-1"])).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < 256 << 10 {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        got.starts_with(b"+FULLRESYNC "),
        "{:?}",
        &got[..got.len().min(80)]
    );
    assert!(got.len() >= 256 << 10, "the snapshot stopped early");
    assert_eq!(run(&mut c, "RENAME z a"), "OK");
    // The rest of the walk sees the move: the snapshot is not ended, the
    // connection is.
    got.extend(read_until(&mut slow, b"+SNAPSHOTEND\r\n"));
    assert!(
        !got.windows(14).any(|w| w == b"+SNAPSHOTEND\r\n"),
        "a snapshot that missed the renamed objects was ended:\n{}",
        leader.log()
    );
    assert!(
        leader.wait_log("snapshot changed", Duration::from_secs(10)),
        "{}",
        leader.log()
    );

    // A real follower syncing now gets every object under its new name.
    let fdir = tempfile::tempdir().unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut f = follower.client();
    assert_eq!(run(&mut f, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    assert!(
        replication_common::caught_up(&leader, &follower, Duration::from_secs(120)),
        "{}",
        follower.log()
    );
    assert!(replication_common::answers_reads(
        &mut f,
        Duration::from_secs(30)
    ));
    assert_eq!(count(&mut f, "a"), "10", "{}", follower.log());
    assert_eq!(count(&mut f, "z"), "0");
    assert_eq!(dump(&mut f), dump(&mut c));
}
