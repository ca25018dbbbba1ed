//! Crossing `aofshrink-min-size` shrinks the file automatically while
//! writes go on; no write is lost, the state is the same before and after,
//! and the file is no larger than a fresh snapshot plus the writes since the
//! shrink began. A SIGKILL at a random point of a shrink loses nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::{dump, run, start, wait_until};
use rand::Rng;

const IDS: u32 = 200;

#[test]
fn shrinks_automatically_under_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--aofshrink-check-ms",
            "100",
            "--aofshrink-cooldown-ms",
            "300",
        ],
    )
    .unwrap();
    let mut c = server.client();
    // Fixed-width values, so that every snapshot of the same ids has the same size.
    let mut model: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    for i in 0..IDS {
        assert_eq!(
            run(
                &mut c,
                &format!("SET fleet id{i:03} FIELD speed 1000 POINT 10 -115")
            ),
            "OK"
        );
        model.insert(i, (10, 1000));
    }
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-min-size 64kb"), "OK");

    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut wc = server.client();
    let writer = std::thread::spawn(move || {
        let mut rng = rand::rng();
        let mut writes = 0u64;
        while !s.load(Ordering::Relaxed) {
            let i = rng.random_range(0..IDS);
            let lat = rng.random_range(10..90u32);
            let speed = rng.random_range(1000..10000u32);
            let r = run(
                &mut wc,
                &format!("SET fleet id{i:03} FIELD speed {speed} POINT {lat} -115"),
            );
            assert_eq!(r, "OK", "a write failed during shrinking");
            model.insert(i, (lat, speed));
            writes += 1;
        }
        (model, writes)
    });
    // Two automatic shrinks, each started by the size check alone.
    let shrinks =
        |c: &mut redis::Connection| server.stat(c, "aof_rewrites").parse::<u64>().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || shrinks(&mut c) >= 2),
        "no automatic shrink within 60 s:\n{}",
        server.log()
    );
    stop.store(true, Ordering::Relaxed);
    let (model, writes) = writer.join().unwrap();
    assert!(
        writes > 100,
        "only {writes} writes went on during the shrinks"
    );

    // Every acknowledged write is in memory.
    for (i, (lat, speed)) in &model {
        assert_eq!(
            run(&mut c, &format!("GET fleet id{i:03} WITHFIELDS POINT")),
            format!("[[{lat} -115] [speed {speed}]]")
        );
    }
    let before = dump(&mut c);
    let size_now: u64 = server.stat(&mut c, "aof_size").parse().unwrap();
    let offset_now: u64 = server.stat(&mut c, "aof_offset").parse().unwrap();
    let shrink_start: u64 = server
        .stat(&mut c, "aof_last_shrink_start_offset")
        .parse()
        .unwrap();
    assert!(
        size_now < offset_now,
        "the file did shrink: {size_now} of {offset_now} bytes written"
    );

    // A fresh snapshot of the same state, with no writes going on.
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-min-size 0"), "OK");
    let n = shrinks(&mut c);
    // A handle on the file being replaced: the shrink frees its blocks in
    // steps before it counts itself done, and this handle sees it shrink.
    let replaced = std::fs::File::open(server.aof()).unwrap();
    assert!(replaced.metadata().unwrap().len() > 0);
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert!(
        wait_until(Duration::from_secs(30), || shrinks(&mut c) > n),
        "manual shrink did not finish"
    );
    assert_eq!(
        replaced.metadata().unwrap().len(),
        0,
        "the replaced file was not released"
    );
    let fresh: u64 = server.stat(&mut c, "aof_size").parse().unwrap();
    assert_eq!(dump(&mut c), before, "a shrink changed the state");
    assert!(
        size_now <= fresh + (offset_now - shrink_start),
        "file {size_now} > fresh snapshot {fresh} + writes since the shrink began {}",
        offset_now - shrink_start
    );
    // The shrunk file replays to the same state.
    drop(c);
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(
        dump(&mut c),
        before,
        "restart from the shrunk file changed the state"
    );
    assert_eq!(std::fs::metadata(server.aof()).unwrap().len(), fresh);
}

#[test]
fn sigkill_during_shrinks_never_loses_or_changes_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    // Enough objects that a shrink takes many batches, each written twice so
    // that the shrink has something to drop.
    for round in 0..2 {
        let mut p = redis::pipe();
        for i in 0..10_000u32 {
            p.cmd("SET")
                .arg("fleet")
                .arg(format!("id{i}"))
                .arg("POINT")
                .arg(10 + (i + round) % 70)
                .arg(-115)
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    let expected = dump(&mut c);
    drop(c);
    let mut server = server;
    let mut rng = rand::rng();
    for cycle in 0..10 {
        let mut c = server.client();
        assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        server.kill9();
        server = start(dir.path(), &[]).unwrap();
        let mut c = server.client();
        assert_eq!(
            dump(&mut c),
            expected,
            "cycle {cycle}: state changed by a shrink killed mid-way"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".compact-"))
            .collect();
        assert!(leftovers.is_empty(), "cycle {cycle}: {leftovers:?}");
    }
}
