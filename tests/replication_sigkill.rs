//! Real faults under `appendfsync always`: while a client writes to the
//! leader, each follower and the leader itself are SIGKILLed and restarted
//! in turn (followers find their leader again from the config file that
//! `CONFIG REWRITE` saved). Every acknowledged write is on the leader and on
//! both followers at the end, their states are equal, the followers resume
//! with partial resyncs only (no full sync after a restart), and each
//! follower's file holds the leader's stream bytes from where it joined.

#[path = "replication_common.rs"]
mod replication_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{dump, run, start, wait_until, Server};
use replication_common::{
    assert_same_state, assert_streams_agree, caught_up, file_stream, free_port, stat_u64,
};

const ROUNDS: usize = 6;

fn ids(server: &Server) -> BTreeSet<String> {
    let mut c = server.client();
    let v: redis::Value = redis::cmd("SCAN")
        .arg("fleet")
        .arg("IDS")
        .arg("LIMIT")
        .arg(10_000_000)
        .query(&mut c)
        .expect("SCAN");
    let redis::Value::Array(parts) = v else {
        panic!("SCAN reply {v:?}")
    };
    let redis::Value::Array(items) = &parts[1] else {
        panic!("SCAN ids {parts:?}")
    };
    items
        .iter()
        .map(|i| match i {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("id {other:?}"),
        })
        .collect()
}

/// Waits until `acked` has grown by `n` from now.
fn progress(acked: &Mutex<Vec<u64>>, n: usize) {
    let from = acked.lock().unwrap().len();
    assert!(
        wait_until(Duration::from_secs(30), || acked.lock().unwrap().len()
            >= from + n),
        "writes made no progress"
    );
}

fn start_follower(dir: &Path) -> Server {
    start(dir, &["--appendfsync", "always"]).unwrap()
}

#[test]
fn followers_and_leader_survive_sigkill_without_losing_acknowledged_writes() {
    sigkill_rounds(false);
}

/// The same with a leader that shrinks its file every few hundred
/// milliseconds, so that some SIGKILLs land during or right after a shrink.
/// A restarted leader's backlog holds only the stream since its last shrink,
/// so a follower that was behind that point is full-synced; nothing is lost
/// and the states and streams still agree.
#[test]
fn sigkill_during_leader_shrinks_loses_nothing() {
    sigkill_rounds(true);
}

fn sigkill_rounds(shrinks: bool) {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let mut largs = vec!["--port", port_s.as_str(), "--appendfsync", "always"];
    if shrinks {
        largs.extend([
            "--aofshrink-min-size",
            "16kb",
            "--aofshrink-check-ms",
            "100",
            "--aofshrink-cooldown-ms",
            "200",
        ]);
    }
    let mut leader = start(ldir.path(), &largs).unwrap();
    let fdirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut followers: Vec<Server> = fdirs.iter().map(|d| start_follower(d.path())).collect();
    for f in &followers {
        let mut c = f.client();
        assert_eq!(run(&mut c, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
        assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    }

    // The writer reconnects whenever the leader is down and records only
    // the writes it got an OK for.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let url = format!("redis://127.0.0.1:{port}/");
            let mut n = 0u64;
            let mut conn: Option<redis::Connection> = None;
            while !stop.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => {
                        let c = redis::Client::open(url.as_str())
                            .unwrap()
                            .get_connection_with_timeout(Duration::from_millis(500));
                        match c {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                        }
                    }
                };
                let r = run(c, &format!("SET fleet w{n} FIELD n {n} POINT 33 -115"));
                if r == "OK" {
                    acked.lock().unwrap().push(n);
                } else {
                    conn = None;
                }
                n += 1;
            }
        })
    };

    for round in 0..ROUNDS {
        let which = round % 2;
        progress(&acked, 100);
        let f = followers.remove(which);
        f.kill9();
        followers.insert(which, start_follower(fdirs[which].path()));
        progress(&acked, 100);
        leader.kill9();
        leader = start(ldir.path(), &largs).unwrap();
    }
    progress(&acked, 100);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    let acked: BTreeSet<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|n| format!("w{n}"))
        .collect();
    let on_leader = ids(&leader);
    eprintln!(
        "{} acknowledged writes, {} objects on the leader",
        acked.len(),
        on_leader.len()
    );
    let lost: Vec<_> = acked.difference(&on_leader).take(5).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let mut lc = leader.client();
    for (f, d) in followers.iter().zip(&fdirs) {
        assert!(
            caught_up(&leader, f, Duration::from_secs(30)),
            "{}",
            f.log()
        );
        assert_same_state(&dump(&mut f.client()), &dump(&mut lc));
        if !shrinks {
            // Since its last restart it resumed from its own file every time.
            assert_eq!(stat_u64(f, "repl_full_syncs"), 0, "{}", f.log());
            assert!(stat_u64(f, "repl_partial_syncs") >= 1, "{}", f.log());
        }
        eprintln!(
            "follower: {} partial resyncs and {} full syncs since its last restart, offset {}",
            stat_u64(f, "repl_partial_syncs"),
            stat_u64(f, "repl_full_syncs"),
            stat_u64(f, "repl_offset")
        );
        assert_streams_agree(
            &ldir.path().join("appendonly.aof"),
            &d.path().join("appendonly.aof"),
        );
        let (fo, fstream) = file_stream(&d.path().join("appendonly.aof"));
        assert_eq!(fo + fstream.len() as u64, stat_u64(&leader, "repl_offset"));
    }
    let (lo, lstream) = file_stream(&ldir.path().join("appendonly.aof"));
    assert_eq!(lo + lstream.len() as u64, stat_u64(&leader, "repl_offset"));
    if shrinks {
        // The leader's file was shrunk: its header moved past offset 0.
        assert!(lo > 0, "the leader never shrank");
    } else {
        assert_eq!(stat_u64(&leader, "repl_full_syncs"), 0, "{}", leader.log());
    }
}
