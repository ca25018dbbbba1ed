//! A follower announces its port and address (`REPLCONF listening-port`,
//! `ip-address`) before PSYNC, and the leader shows them per link; a
//! follower that announces nothing is shown without them.

mod common;

use std::sync::Arc;

use common::{eventually, follower_config, listen, start_follower, wait_offset, Kv};
use geohook_repl::{Announced, FollowerConfig, LeaderConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_shows_what_each_follower_announced() {
    let (kv, leader) = Kv::new_leader(LeaderConfig::default());
    kv.write(&[b"SET", b"k", b"v"]);
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let announcing = FollowerConfig {
        announce_port: Some(9852),
        announce_ip: Some("10.0.0.7".into()),
        ..follower_config(listener.port)
    };
    let mut f1 = start_follower(Arc::new(Kv::default()), announcing);
    let mut f2 = start_follower(Arc::new(Kv::default()), follower_config(listener.port));
    wait_offset(&mut f1, leader.offset()).await;
    wait_offset(&mut f2, leader.offset()).await;
    eventually("both links listed", || {
        let n = leader.stats().followers.len();
        async move { n == 2 }
    })
    .await;
    let mut seen: Vec<Announced> = leader
        .stats()
        .followers
        .into_iter()
        .map(|f| f.announced)
        .collect();
    seen.sort_by_key(|a| a.port);
    assert_eq!(
        seen,
        [
            Announced::default(),
            Announced {
                port: Some(9852),
                ip: Some("10.0.0.7".into()),
            },
        ]
    );
}

#[test]
fn announcements_are_checked() {
    let arg = |s: &str| s.as_bytes().to_vec();
    let mut a = Announced::default();
    a.take(&[arg("listening-port"), arg("9852")]).unwrap();
    a.take(&[arg("IP-ADDRESS"), arg("host.example")]).unwrap();
    a.take(&[arg("capa"), arg("eof")]).unwrap();
    assert_eq!(a.port, Some(9852));
    assert_eq!(a.ip.as_deref(), Some("host.example"));
    for bad in ["0", "65536", "-1", "x", ""] {
        assert!(a.take(&[arg("listening-port"), arg(bad)]).is_err(), "{bad}");
    }
    assert!(a.take(&[arg("ip-address"), arg("")]).is_err());
    assert!(a.take(&[arg("ip-address"), vec![b'a'; 256]]).is_err());
    assert!(a.take(&[arg("listening-port")]).is_err());
    assert_eq!(a.port, Some(9852));
}
