//! `PSYNC ? -1` is twelve bytes and costs the leader a snapshot, so the
//! leader serves at most `--max-full-syncs` at once: one more is answered
//! `-BUSY` (the follower retries with back-off), counted in SERVER and in
//! the metrics, and the slot is free again once the stuck sync goes away.

#[path = "replication_common.rs"]
mod replication_common;

use std::io::Write;
use std::time::Duration;

use e2e::{fill_padded, read_until, resp, run, start, wait_until};
use replication_common::{metric, stat_u64};

#[test]
fn one_full_sync_over_the_bound_is_busy_until_the_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let leader = start(
        dir.path(),
        &["--max-full-syncs", "1", "--metrics-addr", "127.0.0.1:0"],
    )
    .unwrap();
    // About 12 MB of snapshot: far more than the socket buffers hold, so a
    // follower that does not read keeps its sync (and the slot) open.
    let mut c = leader.client();
    fill_padded(&mut c, "fleet", 60_000, 200);

    let psync = resp(&[b"PSYNC", b"?", b"-1"]);
    let mut stuck = leader.raw();
    stuck.write_all(&psync).unwrap();
    let head = read_until(&mut stuck, b"\r\n");
    assert!(head.starts_with(b"+FULLRESYNC "), "{head:?}");
    // `stuck` reads nothing more from here on.

    let mut second = leader.raw();
    second.write_all(&psync).unwrap();
    let reply = read_until(&mut second, b"\r\n");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("-BUSY "), "{reply}");
    assert_eq!(stat_u64(&leader, "repl_full_sync_busy"), 1);
    assert_eq!(metric(&leader, "geohook_repl_full_sync_busy"), 1.0);
    // Clients are served while the snapshot is stuck: it is built in
    // batches, not under one lock held for the whole sync.
    assert_eq!(run(&mut c, "SET fleet late POINT 1 2"), "OK");

    // The stuck follower goes away; a new one gets its full sync.
    drop(stuck);
    let mut served = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let mut s = leader.raw();
            s.write_all(&psync).unwrap();
            served = read_until(&mut s, b"+SNAPSHOTEND\r\n");
            served.starts_with(b"+FULLRESYNC ")
        }),
        "no full sync after the slot freed: {:?}",
        String::from_utf8_lossy(&served[..served.len().min(200)])
    );
    assert!(String::from_utf8_lossy(&served).contains("late"));
}
