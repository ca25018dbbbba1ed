//! Bytes from a peer are never trusted: a leader (or follower) sending
//! malformed, oversized or out-of-order data produces a clear error, no
//! panic, no unbounded allocation, and nothing wrong applied.

mod common;

use std::sync::Arc;

use common::{follower_config, wait_status, Kv, DEADLINE};
use geohook_repl::{decode_command, Error, Leader, LeaderConfig, Limits, ReplId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A fake leader that answers every PSYNC with `reply`, then holds the line.
async fn fake_leader(reply: Vec<u8>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    if let Ok(Some((args, _))) = decode_command(&buf, &Limits::default()) {
                        if args[0] == b"PSYNC" {
                            break;
                        }
                    }
                    if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
                let _ = sock.write_all(&reply).await;
                // Hold the connection until the follower drops it.
                let mut sink = [0u8; 1024];
                while sock.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
        }
    });
    (port, task)
}

async fn check(name: &str, reply: Vec<u8>, expected: &str) {
    let id = ReplId::parse(&[b'a'; 40]).unwrap();
    let (port, server) = fake_leader(reply).await;
    let kv = Arc::new(Kv::default());
    let follower =
        geohook_repl::Follower::new(follower_config(port), kv.clone(), Some((id, 100))).unwrap();
    let mut status = follower.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(follower.run(cancel.clone()));
    let s = wait_status(&mut status, name, |s| s.last_error.is_some()).await;
    let err = s.last_error.unwrap();
    assert!(
        err.contains(expected),
        "{name}: error {err:?} lacks {expected:?}"
    );
    assert!(!s.caught_up, "{name}");
    cancel.cancel();
    // The follower task ends cleanly: it did not panic.
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    server.abort();
    let applied = kv.map();
    assert!(
        applied.keys().all(|k| k == b"ok"),
        "{name}: applied {applied:?}"
    );
}

#[tokio::test]
async fn malformed_leader_bytes_are_errors() {
    let id = "a".repeat(40);
    let cont = format!("+CONTINUE {id}\r\n");
    let with = |tail: &[u8]| [cont.as_bytes(), tail].concat();
    // A valid command first, to show that what precedes the damage is kept.
    let good = b"*3\r\n$3\r\nSET\r\n$2\r\nok\r\n$1\r\n1\r\n".as_slice();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "argument count overflow",
            with(b"*99999999999999999999999\r\n"),
            "limit",
        ),
        (
            "bulk beyond max_bulk",
            with(&[good, b"*1\r\n$999999999\r\n"].concat()),
            "limit",
        ),
        ("negative count", with(b"*-1\r\n"), "decimal length"),
        ("empty command", with(b"*0\r\n"), "empty command"),
        (
            "inline text",
            with(b"hello world\r\n"),
            "expected '*', '+' or '-'",
        ),
        (
            "bulk without CRLF",
            with(&[good, b"*1\r\n$3\r\nSETXX"].concat()),
            "CRLF",
        ),
        (
            "endless status line",
            with(&[b"+".as_slice(), &[b'x'; 10_000]].concat()),
            "line too long",
        ),
        (
            // 28 bytes of command from offset 100 reach 128; the commands
            // before an announcement count even while not yet applied.
            "offset behind the commands before it",
            with(&[good, b"+OFFSET 127\r\n"].concat()),
            "out of order",
        ),
        (
            "offset going backwards",
            with(b"+OFFSET 50\r\n"),
            "out of order",
        ),
        (
            "SNAPSHOTEND outside a snapshot",
            with(b"+SNAPSHOTEND\r\n"),
            "outside a snapshot",
        ),
        (
            "unknown status line",
            with(b"+HELLO\r\n"),
            "unexpected status line",
        ),
        (
            "command the state rejects",
            with(&[good, b"*1\r\n$3\r\nFOO\r\n"].concat()),
            "state machine failed",
        ),
        (
            "leader error line",
            with(b"-ERR shutting down\r\n"),
            "shutting down",
        ),
        (
            "CONTINUE with a malformed id",
            b"+CONTINUE xyz\r\n".to_vec(),
            "bad replication id",
        ),
        (
            "bad FULLRESYNC id",
            b"+FULLRESYNC nope 5\r\n".to_vec(),
            "bad replication id",
        ),
        (
            "bad FULLRESYNC offset",
            format!("+FULLRESYNC {id} -5\r\n").into_bytes(),
            "bad FULLRESYNC offset",
        ),
        (
            "stream command inside a snapshot announcement",
            format!("+FULLRESYNC {id} 5\r\n+OFFSET 9\r\n").into_bytes(),
            "out of order",
        ),
        (
            "unknown PSYNC reply",
            b"+WHAT\r\n".to_vec(),
            "unexpected PSYNC reply",
        ),
        (
            "offset overflow",
            format!("+FULLRESYNC {id} 18446744073709551615\r\n+SNAPSHOTEND\r\n*1\r\n$3\r\nDEL\r\n")
                .into_bytes(),
            "largest offset",
        ),
        ("PSYNC error reply", b"-NOPE no\r\n".to_vec(), "NOPE no"),
        ("binary garbage", vec![0u8, 159, 146, 150], "expected"),
    ];
    for (name, reply, expected) in cases {
        check(name, reply, expected).await;
    }
}

#[tokio::test]
async fn a_follower_is_never_caught_up_on_a_chunk_that_ends_in_an_error() {
    // A valid command (28 bytes from offset 100), the leader's offset
    // announced as exactly where that leaves the follower, then bytes that
    // cannot be decoded, all in one write.
    let id = ReplId::parse(&[b'a'; 40]).unwrap();
    let reply = [
        format!("+CONTINUE {}\r\n", "a".repeat(40)).as_bytes(),
        b"*3\r\n$3\r\nSET\r\n$2\r\nok\r\n$1\r\n1\r\n",
        b"+OFFSET 128\r\nhello world\r\n",
    ]
    .concat();
    let (port, server) = fake_leader(reply).await;
    let kv = Arc::new(Kv::default());
    let follower =
        geohook_repl::Follower::new(follower_config(port), kv.clone(), Some((id, 100))).unwrap();
    let mut status = follower.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(follower.run(cancel.clone()));
    let s = wait_status(&mut status, "decode error", |s| s.last_error.is_some()).await;
    assert!(s.last_error.unwrap().contains("expected"));
    // `caught_up_once` is sticky: it shows whether the follower ever said so.
    assert!(!s.caught_up_once && !s.caught_up);
    cancel.cancel();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    server.abort();
}

/// Drives [`Leader::handle_connection`] with `input` from a fake follower and
/// returns the leader's verdict and what it wrote back.
async fn leader_sees(config: LeaderConfig, input: &[u8]) -> (Result<(), Error>, Vec<u8>) {
    let leader = Leader::new(config, ReplId::random(), 0).unwrap();
    let (kv, _) = Kv::new_leader(LeaderConfig::default());
    let (mut ours, theirs) = tokio::io::duplex(1 << 16);
    ours.write_all(input).await.unwrap();
    // End of input: the leader sees EOF once it has read everything.
    ours.shutdown().await.unwrap();
    let cancel = CancellationToken::new();
    let serve = leader.handle_connection(theirs, "test", &*kv, &cancel);
    let result = tokio::time::timeout(DEADLINE, serve).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, ours.read_to_end(&mut out)).await;
    (result, out)
}

#[tokio::test]
async fn malformed_follower_bytes_are_errors() {
    let cases: Vec<(&str, LeaderConfig, &[u8], &str)> = vec![
        (
            "garbage",
            LeaderConfig::default(),
            b"\x00\x01\x02",
            "expected '*'",
        ),
        (
            "huge bulk in the handshake",
            LeaderConfig::default(),
            b"*1\r\n$100000\r\n",
            "limit",
        ),
        (
            "too many arguments",
            LeaderConfig::default(),
            b"*1000\r\n",
            "limit",
        ),
        (
            "unknown command",
            LeaderConfig::default(),
            b"*1\r\n$3\r\nGET\r\n",
            "unexpected command",
        ),
        (
            "PSYNC with a wrong arity",
            LeaderConfig::default(),
            b"*2\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n",
            "PSYNC takes 2 arguments",
        ),
    ];
    for (name, config, input, expected) in cases {
        let (result, _) = leader_sees(config, input).await;
        match result {
            Err(Error::Protocol { reason, .. }) => {
                assert!(reason.contains(expected), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    // Without AUTH, a password-protected leader refuses PSYNC and sends nothing else.
    let config = LeaderConfig {
        password: Some("pw".into()),
        ..Default::default()
    };
    let (result, out) = leader_sees(config, b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n").await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out, b"-ERR authentication required\r\n");

    // A follower that sends garbage while streaming is dropped with an error.
    let (result, out) = leader_sees(
        LeaderConfig::default(),
        b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\nabc\r\n",
    )
    .await;
    assert!(
        out.starts_with(b"+FULLRESYNC "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    match result {
        Err(Error::Protocol { reason, .. }) => assert!(reason.contains("REPLCONF ACK"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_follower_times_out_in_the_handshake() {
    let leader = Leader::new(LeaderConfig::default(), ReplId::random(), 0).unwrap();
    let (kv, _) = Kv::new_leader(LeaderConfig::default());
    let (_ours, theirs) = tokio::io::duplex(1024);
    let cancel = CancellationToken::new();
    let result = leader
        .handle_connection(theirs, "silent", &*kv, &cancel)
        .await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
}

#[tokio::test]
async fn a_silent_leader_is_left_after_leader_timeout() {
    let id = ReplId::parse(&[b'a'; 40]).unwrap();
    let (port, server) = fake_leader(format!("+CONTINUE {id}\r\n").into_bytes()).await;
    let kv = Arc::new(Kv::default());
    let config = geohook_repl::FollowerConfig {
        leader_timeout: std::time::Duration::from_millis(200),
        ..follower_config(port)
    };
    let follower = geohook_repl::Follower::new(config, kv, Some((id, 100))).unwrap();
    let mut status = follower.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(follower.run(cancel.clone()));
    let s = wait_status(&mut status, "a timeout", |s| s.last_error.is_some()).await;
    assert!(
        s.last_error.as_deref().unwrap().contains("timed out"),
        "{s:?}"
    );
    assert_eq!((s.sessions, s.partial_syncs), (1, 1));
    cancel.cancel();
    task.await.unwrap();
    server.abort();
}
