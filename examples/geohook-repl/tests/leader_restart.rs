//! A leader restarted from its file under a second replication id: a
//! follower that has no byte the leader lost continues partially and takes
//! the new id; a follower that holds bytes the leader's file lost (an unsynced
//! tail) gets a full sync instead of a silently diverging stream.

mod common;

use std::sync::Arc;

use common::{follower_config, listen, start_follower, wait_offset, wait_status, Kv};
use geohook_repl::LeaderConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_leader_continues_or_full_syncs_as_safety_requires() {
    for lost_commands in [0usize, 3] {
        let (kv, leader) = Kv::new_leader(LeaderConfig::default());
        let listener = listen(leader.clone(), kv.clone(), 0).await;
        let f_kv = Arc::new(Kv::default());
        let mut f = start_follower(f_kv.clone(), follower_config(listener.port));
        let mut ends = Vec::new();
        for i in 0..50 {
            ends.push(kv.write(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
        }
        wait_offset(&mut f, leader.offset()).await;
        let old_id = leader.position().0;

        // The leader dies; its file lost its last `lost_commands` commands
        // (appendfsync everysec), which the follower had already applied.
        let port = listener.port;
        listener.shutdown().await;
        drop(leader);
        let mut file = kv.file();
        let keep = ends[ends.len() - 1 - lost_commands];
        let header_len = geohook_repl::recover(&file, &Default::default())
            .unwrap()
            .header_len;
        file.truncate((header_len + keep) as usize);
        let kv2 = Kv::from_file(file);
        let leader2 = kv2.recover_leader(LeaderConfig::default());
        assert_eq!(leader2.offset(), keep);
        assert_ne!(leader2.position().0, old_id);
        let listener2 = listen(leader2.clone(), kv2.clone(), port).await;

        kv2.write(&[b"SET", b"after", b"restart"]);
        let s = wait_status(&mut f.status, "the second session", |s| {
            s.sessions == 2 && s.caught_up
        })
        .await;
        let s = if s.offset == leader2.offset() {
            s
        } else {
            wait_offset(&mut f, leader2.offset()).await
        };
        assert_eq!(s.replid, Some(leader2.position().0), "lost {lost_commands}");
        if lost_commands == 0 {
            assert_eq!((s.full_syncs, s.partial_syncs), (1, 1), "{s:?}");
        } else {
            assert_eq!((s.full_syncs, s.partial_syncs), (2, 0), "{s:?}");
        }
        assert_eq!(f_kv.map(), kv2.map(), "lost {lost_commands}");
        f.stop().await;
        listener2.shutdown().await;
    }
}
