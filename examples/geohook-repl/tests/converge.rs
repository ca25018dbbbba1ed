//! A leader and two followers converge to the same state, whether the
//! writes came before they connected (full sync) or after (live stream).

mod common;

use std::sync::Arc;

use common::{follower_config, listen, start_follower, wait_offset, wait_status, Kv};
use geohook_repl::{FollowerConfig, LeaderConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_and_two_followers_converge() {
    let config = LeaderConfig {
        password: Some("s3cret".into()),
        ..Default::default()
    };
    let (kv, leader) = Kv::new_leader(config);
    for i in 0..200 {
        kv.write(&[
            b"SET",
            format!("k{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ]);
    }
    kv.write(&[b"DEL", b"k7"]);
    let listener = listen(leader.clone(), kv.clone(), 0).await;

    let auth = |port| FollowerConfig {
        auth: Some("s3cret".into()),
        ..follower_config(port)
    };
    let f1_kv = Arc::new(Kv::default());
    let f2_kv = Arc::new(Kv::default());
    let mut f1 = start_follower(f1_kv.clone(), auth(listener.port));
    let mut f2 = start_follower(f2_kv.clone(), auth(listener.port));
    wait_offset(&mut f1, leader.offset()).await;
    wait_offset(&mut f2, leader.offset()).await;

    // Live writes, including overwrites and deletions, while both stream.
    for i in 0..2000 {
        let key = format!("k{}", i % 300);
        if i % 5 == 0 {
            kv.write(&[b"DEL", key.as_bytes()]);
        } else {
            kv.write(&[b"SET", key.as_bytes(), format!("w{i}").as_bytes()]);
        }
    }
    let end = leader.offset();
    let s1 = wait_offset(&mut f1, end).await;
    let s2 = wait_offset(&mut f2, end).await;
    assert_eq!(f1_kv.map(), kv.map());
    assert_eq!(f2_kv.map(), kv.map());
    for s in [&s1, &s2] {
        assert_eq!(
            (s.full_syncs, s.partial_syncs, s.sessions),
            (1, 0, 1),
            "{s:?}"
        );
        assert_eq!(s.replid, Some(leader.position().0));
        assert_eq!(s.lag_bytes(), 0);
    }
    // Each follower's file recovers to the leader's offset on its own.
    for f in [&f1_kv, &f2_kv] {
        let found = geohook_repl::recover(&f.file(), &Default::default()).unwrap();
        assert_eq!(found.offset(), end);
        assert_eq!(Kv::from_file(f.file()).map(), kv.map());
    }

    // Acks reach the leader, which then reports zero lag for both.
    common::eventually("acks at the leader's offset", || {
        let stats = leader.stats();
        async move {
            stats.followers.len() == 2
                && stats
                    .followers
                    .iter()
                    .all(|l| l.ack_offset == end && l.lag_bytes == 0)
        }
    })
    .await;
    let stats = leader.stats();
    assert_eq!(
        (
            stats.full_syncs,
            stats.partial_syncs,
            stats.backlog_overruns
        ),
        (2, 0, 0)
    );

    f1.stop().await;
    f2.stop().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn wrong_leaderauth_is_reported_and_nothing_is_applied() {
    let (kv, leader) = Kv::new_leader(LeaderConfig {
        password: Some("right".into()),
        ..Default::default()
    });
    kv.write(&[b"SET", b"a", b"1"]);
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let f_kv = Arc::new(Kv::default());
    for auth in [Some("wrong"), None] {
        let mut f = start_follower(
            f_kv.clone(),
            FollowerConfig {
                auth: auth.map(Into::into),
                ..follower_config(listener.port)
            },
        );
        let s = wait_status(&mut f.status, "an error", |s| s.last_error.is_some()).await;
        let err = s.last_error.unwrap();
        assert!(
            err.contains("invalid password") || err.contains("authentication required"),
            "{err}"
        );
        assert!(!s.connected && !s.caught_up_once);
        f.stop().await;
    }
    assert!(f_kv.map().is_empty());
    assert_eq!(leader.stats().full_syncs, 0);
    listener.shutdown().await;
}
