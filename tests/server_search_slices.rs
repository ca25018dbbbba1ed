//! A long search lets writers in between the slices of its walk.
//!
//! A writer adds, round after round, one object at the start of the walk's
//! order and then one further on (ids before and after every other id for
//! SCAN; points west and east of every other point for WITHIN; for NEARBY a
//! point on the centre and one beyond most of the collection). A walk under
//! one lock sees a snapshot, which can never hold more end rounds than
//! start rounds; a single sliced walk does, because rounds complete while
//! it runs. Objects present and unchanged for the whole walk are returned
//! exactly once all the same.
//!
//! DROP, RENAME and FLUSHDB sent while such walks run never crash the
//! server or give anything but a count, a page of distinct ids of the
//! collection, or the error asking to retry after a rename.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{render, run, start, Grid, Server};

/// Points of the collection: above one slice and above the heavy line.
const OBJECTS: usize = 30_000;
const AREA: &str = "BOUNDS 33 -115 34 -114";

fn base_id(i: usize) -> String {
    format!("p{i:05}")
}

/// [`OBJECTS`] points spread inside [`AREA`], away from its west and east
/// edges.
fn load(server: &Server, key: &str) {
    let grid = Grid {
        rows: 100,
        origin: (33.1, -114.9),
        step: (0.008, 0.0026),
    };
    grid.load(&mut server.client(), key, OBJECTS, base_id);
}

/// The ids of a `[cursor, [id …]]` reply.
fn ids(v: redis::Value) -> Vec<String> {
    let redis::Value::Array(parts) = v else {
        panic!("not a page: {v:?}")
    };
    let Some(redis::Value::Array(items)) = parts.get(1) else {
        panic!("no ids: {parts:?}")
    };
    items
        .iter()
        .map(|i| match i {
            redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("not an id: {other:?}"),
        })
        .collect()
}

/// The highest round among ids starting with `prefix`.
fn last_round(ids: &[String], prefix: &str) -> Option<u64> {
    ids.iter()
        .filter_map(|id| id.strip_prefix(prefix)?.parse().ok())
        .max()
}

#[test]
fn a_long_search_sees_writes_made_during_its_walk_and_every_unchanged_object_once() {
    let dir = tempfile::tempdir().unwrap();
    // The searches here are heavy; at the pool's default SCHED_IDLE they
    // barely run on a loaded machine, and what is shown is the walk.
    let server = start(dir.path(), &["--heavy-priority", "normal"]).unwrap();
    load(&server, "fleet");
    let searching = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // The writer: while a search is in flight, round k adds `0w<k>` (first
    // in id order, westmost) and then `~e<k>` (last, eastmost).
    let writer = {
        let mut c = server.client();
        let (searching, stop) = (searching.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if !searching.load(Ordering::Acquire) {
                    std::thread::yield_now();
                    continue;
                }
                let w = format!("SET fleet 0w{k:07} POINT 33.5 -114.99");
                let e = format!("SET fleet ~e{k:07} POINT 33.5 -114.01");
                assert_eq!(run(&mut c, &w), "OK");
                assert_eq!(run(&mut c, &e), "OK");
                k += 1;
            }
        })
    };
    let base: HashSet<String> = (0..OBJECTS).map(base_id).collect();
    let mut reader = server.client();
    for search in [
        "SCAN fleet LIMIT 10000000 IDS".to_string(),
        format!("WITHIN fleet LIMIT 10000000 IDS {AREA}"),
        // Centred on the `0w` points: they come first, at distance 0, and
        // the `~e` ones after most of the collection.
        "NEARBY fleet LIMIT 10000000 IDS POINT 33.5 -114.99".to_string(),
    ] {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut tries = 0;
        loop {
            tries += 1;
            searching.store(true, Ordering::Release);
            let got = ids(e2e::cmd_of(&search).query(&mut reader).unwrap());
            searching.store(false, Ordering::Release);
            let distinct: HashSet<&String> = got.iter().collect();
            assert_eq!(distinct.len(), got.len(), "{search}: an id twice");
            let missing = base.iter().filter(|id| !distinct.contains(id)).count();
            assert_eq!(missing, 0, "{search}: unchanged objects missing");
            let (w, e) = (last_round(&got, "0w"), last_round(&got, "~e"));
            // A snapshot holds every `0w` written before its `~e`.
            if e.is_some_and(|e| w.is_none_or(|w| e > w)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{search}: no write landed inside one walk in {tries} tries (last: {w:?} {e:?})"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    searching.store(true, Ordering::Release);
    writer.join().unwrap();
}

/// A SEARCH walks string objects by value in passes over the id order: the
/// writer's `0w<k>` (value `a`, first in both orders) and `~e<k>` (value
/// `z`, last in both) show writes landing inside one walk as above.
#[test]
fn a_long_search_by_value_sees_writes_made_during_its_walk() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--heavy-priority", "normal"]).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..OBJECTS {
        pipe.cmd("SET")
            .arg("names")
            .arg(base_id(i))
            .arg("STRING")
            .arg(format!("m{}", i % 977))
            .ignore();
    }
    pipe.query::<()>(&mut server.client()).unwrap();
    let searching = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut c = server.client();
        let (searching, stop) = (searching.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if !searching.load(Ordering::Acquire) {
                    std::thread::yield_now();
                    continue;
                }
                assert_eq!(run(&mut c, &format!("SET names 0w{k:07} STRING a")), "OK");
                assert_eq!(run(&mut c, &format!("SET names ~e{k:07} STRING z")), "OK");
                k += 1;
            }
        })
    };
    let base: HashSet<String> = (0..OBJECTS).map(base_id).collect();
    let mut reader = server.client();
    for search in [
        "SEARCH names LIMIT 10000000 IDS",
        "SEARCH names DESC LIMIT 10000000 IDS",
    ] {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut tries = 0;
        loop {
            tries += 1;
            searching.store(true, Ordering::Release);
            let got = ids(e2e::cmd_of(search).query(&mut reader).unwrap());
            searching.store(false, Ordering::Release);
            let distinct: HashSet<&String> = got.iter().collect();
            assert_eq!(distinct.len(), got.len(), "{search}: an id twice");
            let missing = base.iter().filter(|id| !distinct.contains(id)).count();
            assert_eq!(missing, 0, "{search}: unchanged objects missing");
            let (w, e) = (last_round(&got, "0w"), last_round(&got, "~e"));
            // The id order reads every `0w` before every `~e`, and a
            // snapshot holds every `0w` written before its `~e`.
            if e.is_some_and(|e| w.is_none_or(|w| e > w)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{search}: no write landed inside one walk in {tries} tries (last: {w:?} {e:?})"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    searching.store(true, Ordering::Release);
    writer.join().unwrap();
}

#[test]
fn drop_rename_and_flushdb_during_walks_give_only_whole_answers() {
    let dir = tempfile::tempdir().unwrap();
    // The searches here are heavy; at the pool's default SCHED_IDLE they
    // barely run on a loaded machine, and what is shown is the walk.
    let server = start(dir.path(), &["--heavy-priority", "normal"]).unwrap();
    let base: HashSet<String> = (0..OBJECTS).map(base_id).collect();
    let retry = "ERR:a key was renamed during the search: retry it";
    for op in ["DROP fleet", "RENAME fleet fleet2", "FLUSHDB"] {
        for _ in 0..3 {
            load(&server, "fleet");
            let (tx, rx) = std::sync::mpsc::channel();
            let searcher = {
                let mut c = server.client();
                std::thread::spawn(move || {
                    let mut replies = Vec::new();
                    for search in [
                        "SCAN fleet COUNT".to_string(),
                        format!("WITHIN fleet COUNT {AREA}"),
                        "SCAN fleet DESC LIMIT 10000000 IDS".to_string(),
                        format!("INTERSECTS fleet LIMIT 10000000 IDS {AREA}"),
                        "NEARBY fleet LIMIT 10000000 IDS POINT 33.5 -114.5".to_string(),
                        "NEARBY fleet COUNT POINT 33.5 -114.5 30000".to_string(),
                    ] {
                        let _ = tx.send(());
                        let r = e2e::cmd_of(&search).query::<redis::Value>(&mut c);
                        replies.push((search, r));
                    }
                    replies
                })
            };
            // The change goes in once the first search is under way.
            rx.recv().unwrap();
            let mut c = server.client();
            let r = run(&mut c, op);
            assert!(r == "OK" || r == "1", "{op}: {r}");
            for (search, r) in searcher.join().unwrap() {
                match r {
                    Ok(redis::Value::Int(n)) => {
                        assert!((0..=OBJECTS as i64).contains(&n), "{search}: {n}")
                    }
                    Ok(v @ redis::Value::Array(_)) => {
                        let got = ids(v);
                        let distinct: HashSet<&String> = got.iter().collect();
                        assert_eq!(distinct.len(), got.len(), "{search}: an id twice");
                        assert!(got.iter().all(|id| base.contains(id)), "{search}");
                    }
                    other => assert_eq!(render(other), retry, "{search}"),
                }
            }
            assert_eq!(run(&mut c, "PING"), "PONG");
            if op.starts_with("RENAME") {
                assert_eq!(run(&mut c, "SCAN fleet2 COUNT"), OBJECTS.to_string());
                assert_eq!(run(&mut c, "DROP fleet2"), "1");
            }
        }
    }
}
