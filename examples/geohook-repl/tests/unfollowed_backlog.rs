//! A leader of a new history keeps no backlog bytes until its first
//! follower sends PSYNC, and from then on serves partial resyncs as any
//! leader does.

mod common;

use std::sync::Arc;

use common::{follower_config, listen, start_follower, wait_offset, Kv};
use geohook_repl::LeaderConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_fills_from_the_first_follower_on() {
    let (kv, leader) = Kv::new_unfollowed_leader(LeaderConfig::default());
    for i in 0..200 {
        kv.write(&[b"SET", format!("k{i}").as_bytes(), b"1"]);
    }
    let before = leader.stats();
    assert!(before.offset > 0);
    assert_eq!(
        (before.backlog_len, before.backlog_start),
        (0, before.offset),
        "no follower yet: the offset moves, no byte is kept"
    );

    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let f_kv = Arc::new(Kv::default());
    let mut f = start_follower(f_kv.clone(), follower_config(listener.port));
    let first = wait_offset(&mut f, leader.offset()).await;
    assert_eq!((first.full_syncs, first.partial_syncs), (1, 0));
    assert_eq!(f_kv.map(), kv.map());

    // Now the follower leaves, the leader writes, and the follower comes
    // back from its own position: the bytes in between were kept.
    f.stop().await;
    for i in 0..50 {
        kv.write(&[b"SET", format!("k{i}").as_bytes(), b"2"]);
    }
    let after = leader.stats();
    assert!(after.backlog_len > 0);
    assert_eq!(after.backlog_start, before.offset);
    f = start_follower(f_kv.clone(), follower_config(listener.port));
    let s = wait_offset(&mut f, leader.offset()).await;
    assert_eq!((s.full_syncs, s.partial_syncs), (0, 1), "{s:?}");
    assert_eq!(f_kv.map(), kv.map());
    assert_eq!(f_kv.resets(), 1);
    f.stop().await;
    listener.shutdown().await;
}
