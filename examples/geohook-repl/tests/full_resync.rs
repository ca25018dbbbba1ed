//! A follower beyond the backlog gets `+FULLRESYNC`, whether it was away
//! while the backlog wrapped or fell behind while attached; both are counted.

mod common;

use std::sync::Arc;

use common::{eventually, follower_config, listen, start_follower, wait_offset, wait_status, Kv};
use geohook_repl::{LeaderConfig, ReplId};

fn small_backlog() -> LeaderConfig {
    LeaderConfig {
        backlog_capacity: 1024,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_beyond_the_backlog_full_syncs() {
    let (kv, leader) = Kv::new_leader(small_backlog());
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let f_kv = Arc::new(Kv::default());
    kv.write(&[b"SET", b"gone", b"soon"]);
    let mut f = start_follower(f_kv.clone(), follower_config(listener.port));
    wait_offset(&mut f, leader.offset()).await;
    f.stop().await;

    // 10 KiB of writes wrap the 1 KiB backlog past the follower's offset.
    for i in 0..200 {
        kv.write(&[
            b"SET",
            format!("k{i}").as_bytes(),
            b"0123456789012345678901234567890123456789",
        ]);
    }
    kv.write(&[b"DEL", b"gone"]);
    let stats = leader.stats();
    assert!(stats.backlog_start > f_kv.position().unwrap().1);

    let mut f = start_follower(f_kv.clone(), follower_config(listener.port));
    let s = wait_offset(&mut f, leader.offset()).await;
    assert_eq!((s.full_syncs, s.partial_syncs), (1, 0), "{s:?}");
    assert_eq!(f_kv.resets(), 2);
    assert_eq!(f_kv.map(), kv.map());
    assert!(!f_kv.map().contains_key(b"gone".as_slice()));
    assert_eq!(leader.stats().full_syncs, 2);
    f.stop().await;

    // A follower with an id from another history also full-syncs.
    let stranger = Arc::new(Kv::default());
    let follower = geohook_repl::Follower::new(
        follower_config(listener.port),
        stranger.clone(),
        Some((ReplId::random(), leader.offset())),
    )
    .unwrap();
    let mut status = follower.status();
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(follower.run(cancel.clone()));
    let end = leader.offset();
    wait_status(&mut status, "full sync", |s| {
        s.full_syncs == 1 && s.offset == end && s.caught_up
    })
    .await;
    assert_eq!(stranger.map(), kv.map());
    cancel.cancel();
    task.await.unwrap();
    listener.shutdown().await;
}

/// On a current-thread runtime the writes below run without yielding, so the
/// attached follower's handler cannot send anything until the backlog has
/// wrapped past it: the overrun is certain, not a race.
#[tokio::test(flavor = "current_thread")]
async fn follower_that_lags_beyond_the_backlog_is_dropped_and_full_syncs() {
    let (kv, leader) = Kv::new_leader(small_backlog());
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let f_kv = Arc::new(Kv::default());
    let mut f = start_follower(f_kv.clone(), follower_config(listener.port));
    kv.write(&[b"SET", b"a", b"1"]);
    wait_offset(&mut f, leader.offset()).await;
    eventually("the follower streaming at the leader", || {
        let stats = leader.stats();
        async move { stats.followers.len() == 1 && stats.followers[0].streaming }
    })
    .await;

    for i in 0..100 {
        kv.write(&[
            b"SET",
            format!("k{i}").as_bytes(),
            b"0123456789012345678901234567890123456789",
        ]);
    }
    let end = leader.offset();
    let s = wait_status(&mut f.status, "a second full sync", |s| {
        s.full_syncs == 2 && s.offset == end && s.caught_up
    })
    .await;
    assert!(s.sessions >= 2, "{s:?}");
    let stats = leader.stats();
    assert_eq!(stats.backlog_overruns, 1);
    assert_eq!(stats.full_syncs, 2);
    assert_eq!(f_kv.map(), kv.map());
    f.stop().await;
    listener.shutdown().await;
}
