//! A link that has been idle sends a write as soon as it is woken, before
//! the task that appended it runs again after one yield (the order a
//! server's connection relies on to give its followers a write before the
//! client gets the reply), and `Leader::streaming` tells whether any link
//! is open.

mod common;

use std::io::Read;

use common::{eventually, listen, Kv};
use geohook_repl::LeaderConfig;

/// Reads what the socket holds now, without waiting.
fn available(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

// One thread: the order of tasks is the runtime's, not a race between
// threads.
#[tokio::test(flavor = "current_thread")]
async fn an_idle_link_sends_before_the_writer_runs_again_after_one_yield() {
    let (kv, leader) = Kv::new_leader(LeaderConfig::default());
    assert!(!leader.streaming(), "no follower yet");
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let port = listener.port;
    // A follower by hand: a blocking socket read from this thread only
    // while no task needs to run.
    let mut follower = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut s, b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n").unwrap();
        s
    })
    .await
    .unwrap();
    // The full sync of the empty state, then the link streams.
    follower.set_nonblocking(true).unwrap();
    let mut seen = Vec::new();
    eventually("the snapshot ends", || {
        seen.extend(available(&mut follower));
        let done = seen.windows(13).any(|w| w == b"+SNAPSHOTEND\r");
        async move { done }
    })
    .await;
    assert!(leader.streaming(), "the link is open");
    // Whatever the link sent after the snapshot (its first heartbeat). It
    // has sent no stream bytes yet, so it is idle.
    available(&mut follower);

    let cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    kv.write(&[b"SET", b"k", b"v"]);
    tokio::task::yield_now().await;
    let got = available(&mut follower);
    assert!(
        got.windows(cmd.len()).any(|w| w == cmd),
        "after one yield the follower has nothing of the write: {:?}",
        String::from_utf8_lossy(&got)
    );

    // Once the follower is gone, nobody is streaming.
    drop(follower);
    eventually("the link ends", || {
        let s = leader.streaming();
        async move { !s }
    })
    .await;
}
