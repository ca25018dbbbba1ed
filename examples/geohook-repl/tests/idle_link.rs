//! A link that has been idle sends a write as soon as it is woken, before
//! the task that appended it runs again after one yield or after
//! `Leader::handed_over` (the order a server's connection relies on to give
//! its followers a write before the client gets the reply);
//! `handed_over` never waits for a link that cannot take the bytes; and
//! `Leader::streaming` tells whether any link is open.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, listen, Kv, Listener};
use geohook_repl::{Leader, LeaderConfig};

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
    let (_listener, mut follower) = raw_follower(&leader, &kv).await;
    assert!(leader.streaming(), "the link is open");

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

/// A follower by hand on a leader's listener: a raw socket, non-blocking,
/// past its full sync and the heartbeat after it, so that the link is idle.
async fn raw_follower(leader: &Arc<Leader>, kv: &Arc<Kv>) -> (Listener, std::net::TcpStream) {
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let port = listener.port;
    // Connected from a blocking thread; read from this one only while no
    // task needs to run.
    let mut follower = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut s, b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n").unwrap();
        s
    })
    .await
    .unwrap();
    follower.set_nonblocking(true).unwrap();
    let mut seen = Vec::new();
    eventually("the snapshot ends", || {
        seen.extend(available(&mut follower));
        let done = seen.windows(13).any(|w| w == b"+SNAPSHOTEND\r");
        async move { done }
    })
    .await;
    // Whatever the link sent after the snapshot (its first heartbeat). It
    // has sent no stream bytes yet, so it is idle.
    available(&mut follower);
    (listener, follower)
}

/// `handed_over`, bounded so that a test fails instead of hanging.
async fn handed_over(leader: &Leader) {
    tokio::time::timeout(Duration::from_secs(10), leader.handed_over())
        .await
        .expect("handed_over did not resolve");
}

#[tokio::test(flavor = "current_thread")]
async fn handed_over_resumes_after_the_idle_link_wrote_the_append() {
    let (kv, leader) = Kv::new_leader(LeaderConfig::default());
    // No follower: nothing to wait for.
    kv.write(&[b"SET", b"a", b"1"]);
    handed_over(&leader).await;

    let (_listener, mut follower) = raw_follower(&leader, &kv).await;
    for i in 0..50u32 {
        let v = i.to_string();
        kv.write(&[b"SET", b"k", v.as_bytes()]);
        handed_over(&leader).await;
        let got = available(&mut follower);
        let cmd = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{v}\r\n", v.len());
        assert!(
            got.windows(cmd.len()).any(|w| w == cmd.as_bytes()),
            "write {i}: the follower has nothing of it when handed_over resumes: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // Nothing new: resolves at once.
    handed_over(&leader).await;
}

#[tokio::test(flavor = "current_thread")]
async fn handed_over_does_not_wait_for_a_link_stuck_on_a_follower_that_reads_nothing() {
    let (kv, leader) = Kv::new_leader(LeaderConfig::default());
    let (_listener, mut follower) = raw_follower(&leader, &kv).await;
    // The follower stops reading: appends (15 MiB, within the backlog's 16)
    // fill both sockets' buffers until the link's write waits for room.
    let big = vec![b'x'; 64 * 1024];
    let start = kv.write(&[b"SET", b"k", b"v"]);
    for _ in 0..240 {
        kv.write(&[b"SET", b"big", &big]);
        handed_over(&leader).await;
        tokio::task::yield_now().await;
    }
    // More appends still go through while the link waits.
    let mut end = 0;
    for _ in 0..10 {
        end = kv.write(&[b"SET", b"k", b"v"]);
        handed_over(&leader).await;
    }
    assert!(leader.streaming(), "the link is still attached");
    // The link runs on this thread, so it sends nothing while this reads:
    // what the socket holds is what the link got out, short of the stream.
    let mut got = 0u64;
    loop {
        let n = available(&mut follower).len() as u64;
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(
        got < end - start,
        "the link was never stuck ({got} of {} bytes sent)",
        end - start
    );
}
