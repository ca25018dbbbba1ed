//! A follower that disconnects and reconnects while its offset is still in
//! the leader's backlog resumes with `+CONTINUE`: no reset, no full sync.

mod common;

use std::sync::Arc;

use common::{follower_config, listen, start_follower, wait_offset, Kv};
use geohook_repl::LeaderConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_within_the_backlog_continues() {
    let (kv, leader) = Kv::new_leader(LeaderConfig::default());
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let f_kv = Arc::new(Kv::default());
    for i in 0..100 {
        kv.write(&[b"SET", format!("k{i}").as_bytes(), b"1"]);
    }

    let mut f = start_follower(f_kv.clone(), follower_config(listener.port));
    let first = wait_offset(&mut f, leader.offset()).await;
    assert_eq!((first.full_syncs, first.partial_syncs), (1, 0));
    assert_eq!(f_kv.resets(), 1);

    for round in 0..5 {
        // FOLLOW no one, the leader keeps writing, then FOLLOW again from the
        // position the follower's own file holds.
        f.stop().await;
        for i in 0..50 {
            kv.write(&[
                b"SET",
                format!("k{i}").as_bytes(),
                format!("r{round}").as_bytes(),
            ]);
        }
        kv.write(&[b"DEL", format!("k{}", 60 + round).as_bytes()]);
        let (replid, offset) = f_kv.position().unwrap();
        assert_eq!(replid, leader.position().0);
        assert!(offset < leader.offset());
        f = start_follower(f_kv.clone(), follower_config(listener.port));
        let s = wait_offset(&mut f, leader.offset()).await;
        assert_eq!(
            (s.full_syncs, s.partial_syncs),
            (0, 1),
            "round {round}: {s:?}"
        );
        assert_eq!(f_kv.map(), kv.map());
    }
    assert_eq!(
        f_kv.resets(),
        1,
        "a partial resync must not reset the state"
    );
    let stats = leader.stats();
    assert_eq!((stats.full_syncs, stats.partial_syncs), (1, 5));

    // A follower restarted from its file alone (as after SIGKILL) also continues.
    f.stop().await;
    kv.write(&[b"SET", b"after", b"restart"]);
    let restarted = Kv::from_file(f_kv.file());
    assert_eq!(restarted.position(), f_kv.position());
    let mut f = start_follower(restarted.clone(), follower_config(listener.port));
    let s = wait_offset(&mut f, leader.offset()).await;
    assert_eq!((s.full_syncs, s.partial_syncs), (0, 1));
    assert_eq!(restarted.map(), kv.map());
    assert_eq!(restarted.resets(), 0);

    f.stop().await;
    listener.shutdown().await;
}
