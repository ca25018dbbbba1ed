//! A leader that rewrites its file (shrink) keeps its offset, and its
//! followers stay connected without a full sync; a leader restarted from its
//! shrunk file recovers the same offset and followers continue partially.

mod common;

use std::sync::Arc;

use common::{follower_config, listen, start_follower, wait_offset, wait_status, Kv};
use geohook_repl::{recover, LeaderConfig, Limits};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrink_moves_no_offset_and_forces_no_full_sync() {
    let config = LeaderConfig::default();
    let (kv, leader) = Kv::new_leader(config.clone());
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let f_kv = Arc::new(Kv::default());
    let mut f = start_follower(f_kv.clone(), follower_config(listener.port));

    for round in 0..10 {
        // Overwrite the same keys, so that a shrink makes the file smaller.
        for i in 0..100 {
            kv.write(&[
                b"SET",
                format!("k{i}").as_bytes(),
                format!("{round}").as_bytes(),
            ]);
        }
        let before = (leader.offset(), kv.file().len());
        kv.shrink();
        let file = kv.file();
        if round > 0 {
            assert!(
                file.len() < before.1,
                "round {round}: the shrink did not shrink"
            );
        }
        let found = recover(&file, &Limits::default()).unwrap();
        assert_eq!(
            found.offset(),
            before.0,
            "round {round}: the shrink moved the offset"
        );
        assert_eq!(leader.offset(), before.0);
        wait_offset(&mut f, leader.offset()).await;
    }
    let s = f.status.borrow().clone();
    assert_eq!(
        (s.sessions, s.full_syncs, s.partial_syncs),
        (1, 1, 0),
        "{s:?}"
    );
    assert_eq!(f_kv.map(), kv.map());

    // Restart the leader from its shrunk file (plus writes after the shrink
    // and a torn tail), on the same port.
    for i in 0..10 {
        kv.write(&[b"DEL", format!("k{i}").as_bytes()]);
    }
    let end = leader.offset();
    wait_offset(&mut f, end).await;
    let port = listener.port;
    listener.shutdown().await;
    drop(leader);
    let mut file = kv.file();
    file.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$2\r\nzz");
    let kv2 = Kv::from_file(file);
    let leader2 = kv2.restart_leader(config);
    assert_eq!(leader2.offset(), end);
    let listener2 = listen(leader2.clone(), kv2.clone(), port).await;
    wait_status(&mut f.status, "the second session", |s| {
        s.sessions == 2 && s.connected
    })
    .await;
    kv2.write(&[b"SET", b"new", b"leader"]);
    let s = wait_offset(&mut f, leader2.offset()).await;
    assert_eq!((s.full_syncs, s.partial_syncs), (1, 1), "{s:?}");
    assert_eq!(leader2.stats().full_syncs, 0);
    assert_eq!(f_kv.map(), kv2.map());

    f.stop().await;
    listener2.shutdown().await;
}
