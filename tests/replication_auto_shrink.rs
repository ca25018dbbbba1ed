//! The leader shrinks its file automatically every few hundred milliseconds
//! under a steady write load, and so do its followers, each on its own file:
//! the followers stay connected throughout (one session, one full sync each,
//! no resync), and at the end every state is the leader's and every file
//! recovers the leader's offset.

#[path = "replication_common.rs"]
mod replication_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{dump, run, start, wait_until};
use rand::Rng;
use replication_common::{assert_same_state, caught_up, file_stream, free_port, metric, stat_u64};

const SHRINK_FLAGS: [&str; 8] = [
    "--metrics-addr",
    "127.0.0.1:0",
    "--aofshrink-check-ms",
    "100",
    "--aofshrink-cooldown-ms",
    "200",
    "--aofshrink-min-size",
    "16kb",
];

#[test]
fn shrinks_under_load_keep_followers_attached() {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let mut largs = vec!["--port", port_s.as_str(), "--appendfsync", "everysec"];
    largs.extend(SHRINK_FLAGS);
    let leader = start(ldir.path(), &largs).unwrap();
    let fdirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut fargs = vec!["--appendfsync", "everysec"];
    fargs.extend(SHRINK_FLAGS);
    let followers: Vec<_> = fdirs
        .iter()
        .map(|d| start(d.path(), &fargs).unwrap())
        .collect();
    for f in &followers {
        let mut c = f.client();
        assert_eq!(run(&mut c, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
        assert!(
            caught_up(&leader, f, Duration::from_secs(20)),
            "{}",
            f.log()
        );
    }

    // A writer overwriting a few hundred ids, so that every shrink has
    // much to drop, with some objects that expire on the leader.
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut wc = leader.client();
    let writer = std::thread::spawn(move || {
        let mut rng = rand::rng();
        let mut n = 0u64;
        while !s.load(Ordering::Relaxed) {
            let i = rng.random_range(0..300u32);
            let lat = rng.random_range(10..80u32);
            let line = if n.is_multiple_of(10) {
                format!("SET fleet x{i} EX 1 POINT {lat} -115")
            } else {
                format!("SET fleet t{i} FIELD n {n} POINT {lat} -115")
            };
            assert_eq!(run(&mut wc, &line), "OK");
            n += 1;
        }
        n
    });
    let shrinks_at_start = stat_u64(&leader, "aof_rewrites");
    let started = Instant::now();
    // Run until the leader has shrunk at least 5 times (or 30 s pass).
    let enough = wait_until(Duration::from_secs(30), || {
        stat_u64(&leader, "aof_rewrites").saturating_sub(shrinks_at_start) >= 5
            && started.elapsed() > Duration::from_secs(2)
    });
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(
        enough,
        "the leader did not shrink 5 times: {}",
        leader.log()
    );
    assert!(writes > 100, "only {writes} writes");

    let mut lc = leader.client();
    // Let every object written with a TTL expire on the leader, so that the
    // states compared below no longer change with the clock.
    assert!(wait_until(Duration::from_secs(10), || {
        run(&mut lc, "SCAN fleet MATCH x* COUNT") == "0"
    }));
    for (f, d) in followers.iter().zip(&fdirs) {
        assert!(
            caught_up(&leader, f, Duration::from_secs(20)),
            "{}",
            f.log()
        );
        assert_same_state(&dump(&mut f.client()), &dump(&mut lc));
        // One session since FOLLOW: the initial full sync, never a resync.
        assert_eq!(stat_u64(f, "repl_full_syncs"), 1, "{}", f.log());
        assert_eq!(stat_u64(f, "repl_partial_syncs"), 0, "{}", f.log());
        assert_eq!(metric(f, "geohook_repl_full_syncs"), 1.0);
        assert_eq!(metric(f, "geohook_repl_partial_resyncs"), 0.0);
        assert_eq!(metric(f, "geohook_repl_leader"), 0.0);
        assert_eq!(metric(f, "geohook_repl_lag_bytes"), 0.0);
        assert!(
            !f.log().contains("replication session ended"),
            "{}",
            f.log()
        );
        // The follower compacted its own file, which still names the offset.
        assert!(stat_u64(f, "aof_rewrites") >= 1, "{}", f.log());
        // The follower's file is written behind its applied offset (the
        // log is flushed on its own schedule, as on the leader), so wait
        // for the bytes to reach it rather than read it once.
        let want = stat_u64(&leader, "repl_offset");
        let mut got = 0;
        let recovered = wait_until(Duration::from_secs(10), || {
            let (fo, fstream) = file_stream(&d.path().join("appendonly.aof"));
            got = fo + fstream.len() as u64;
            got == want
        });
        assert!(
            recovered,
            "the follower's file recovers offset {got}, the leader is at {want}"
        );
        assert_eq!(
            stat_u64(f, "expired_keys"),
            0,
            "a follower expired on its own"
        );
    }
    // The leader's shrunk file still recovers its offset.
    let (lo, lstream) = file_stream(&ldir.path().join("appendonly.aof"));
    assert!(lo > 0, "the leader's header never moved");
    assert_eq!(lo + lstream.len() as u64, stat_u64(&leader, "repl_offset"));
    assert_eq!(stat_u64(&leader, "repl_full_syncs"), 2);
    assert_eq!(stat_u64(&leader, "repl_partial_syncs"), 0);
    assert_eq!(stat_u64(&leader, "connected_followers"), 2);
    assert_eq!(metric(&leader, "geohook_repl_full_syncs"), 2.0);
    assert_eq!(metric(&leader, "geohook_repl_partial_resyncs"), 0.0);
    assert_eq!(metric(&leader, "geohook_repl_connected_followers"), 2.0);
    assert_eq!(metric(&leader, "geohook_repl_leader"), 1.0);
}
