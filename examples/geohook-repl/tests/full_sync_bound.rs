//! The bound on concurrent full syncs: while `max_full_syncs` snapshots are
//! being sent, another `PSYNC` that needs one is answered `-BUSY` and closed
//! (the follower retries), and the slot is free again once a sync ends.

mod common;

use std::sync::Arc;

use common::{eventually, Kv, DEADLINE};
use geohook_repl::{Error, Leader, LeaderConfig};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// Sends `PSYNC ? -1` on a pipe of `room` bytes and serves it.
async fn psync(
    leader: Arc<Leader>,
    kv: Arc<Kv>,
    room: usize,
    cancel: CancellationToken,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let (ours, theirs) = tokio::io::duplex(room);
    let args = vec![b"PSYNC".to_vec(), b"?".to_vec(), b"-1".to_vec()];
    let task = tokio::spawn(async move {
        leader
            .serve_psync(theirs, "test", &args, Vec::new(), &*kv, &cancel)
            .await
    });
    (ours, task)
}

#[tokio::test]
async fn over_the_bound_a_full_sync_is_refused_busy_until_a_slot_frees() {
    let (kv, leader) = Kv::new_leader(LeaderConfig {
        max_full_syncs: 1,
        ..LeaderConfig::default()
    });
    for i in 0..50 {
        kv.write(&[b"SET", format!("k{i}").as_bytes(), b"some value"]);
    }
    // The first sync's follower does not read: its snapshot cannot be sent
    // through a 64-byte pipe, so it holds the only slot.
    let first_cancel = CancellationToken::new();
    let (_stuck, first) = psync(leader.clone(), kv.clone(), 64, first_cancel.clone()).await;
    eventually("the first full sync starts", || {
        let n = leader.stats().full_syncs;
        async move { n == 1 }
    })
    .await;

    let (mut second_io, second) = psync(
        leader.clone(),
        kv.clone(),
        1 << 16,
        CancellationToken::new(),
    )
    .await;
    let result = tokio::time::timeout(DEADLINE, second)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(result, Err(Error::Busy { .. })), "{result:?}");
    let mut reply = Vec::new();
    tokio::time::timeout(DEADLINE, second_io.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("-BUSY "), "{reply}");
    assert!(
        reply.ends_with("\r\n") && reply.lines().count() == 1,
        "{reply:?}"
    );
    let stats = leader.stats();
    assert_eq!((stats.full_syncs, stats.busy_refusals), (1, 1));

    // The stuck sync ends; the next follower gets its full sync.
    first_cancel.cancel();
    tokio::time::timeout(DEADLINE, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (mut third_io, third) = psync(
        leader.clone(),
        kv.clone(),
        1 << 20,
        CancellationToken::new(),
    )
    .await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("+SNAPSHOTEND\r\n") {
        let n = tokio::time::timeout(DEADLINE, third_io.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the snapshot ended");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"+FULLRESYNC "));
    // The follower going away ends its connection, however it is seen.
    drop(third_io);
    let _ = tokio::time::timeout(DEADLINE, third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leader.stats().full_syncs, 2);
}

#[test]
fn zero_full_syncs_is_rejected() {
    let err = LeaderConfig {
        max_full_syncs: 0,
        ..LeaderConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("max_full_syncs"), "{err}");
}
