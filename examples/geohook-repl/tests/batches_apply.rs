//! The follower hands a replica the commands of each read in batches of at
//! most `max_batch`, each with its own offset. A batch that fails part-way
//! leaves the position after the commands applied before the failure: the
//! session ends, the follower resumes from exactly there, and every command
//! is applied once. The leader's OFFSET announcements between the commands
//! of one read do not split the batch.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{follower_config, listen, wait_offset, wait_status, Kv};
use geohook_repl::{
    decode_command, BatchError, BoxError, Command, LeaderConfig, Limits, ReplId, Replica,
};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A [`Kv`] that records the batches it is handed, and fails the first batch
/// holding a command for the key `poison` at that command.
#[derive(Default)]
struct Batching {
    kv: Kv,
    sizes: Mutex<Vec<usize>>,
    applied: Mutex<BTreeMap<Vec<u8>, u32>>,
    last_offset: Mutex<Option<u64>>,
    poisoned: Mutex<bool>,
}

impl Replica for Batching {
    fn apply(&self, args: Vec<Vec<u8>>, offset: u64) -> Result<(), BoxError> {
        *self.applied.lock().entry(args[1].clone()).or_default() += 1;
        *self.last_offset.lock() = Some(offset);
        self.kv.apply(args, offset)
    }

    fn apply_batch(&self, cmds: Vec<(Command, u64)>) -> Result<(), BatchError> {
        self.sizes.lock().push(cmds.len());
        for (applied, (args, offset)) in cmds.into_iter().enumerate() {
            if args[1] == b"poison" && !std::mem::replace(&mut *self.poisoned.lock(), true) {
                return Err(BatchError {
                    applied,
                    source: "poisoned once".into(),
                });
            }
            // Offsets rise command by command within and across batches.
            if let Some(last) = *self.last_offset.lock() {
                assert!(offset > last, "offset {offset} after {last}");
            }
            self.apply(args, offset)
                .map_err(|source| BatchError { applied, source })?;
        }
        Ok(())
    }

    fn reset(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        *self.last_offset.lock() = None;
        self.kv.reset(replid, offset)
    }

    fn apply_snapshot(&self, args: Vec<Vec<u8>>) -> Result<(), BoxError> {
        self.kv.apply_snapshot(args)
    }

    fn finish_snapshot(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        *self.last_offset.lock() = Some(offset);
        self.kv.finish_snapshot(replid, offset)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_arrives_in_capped_batches_and_a_failure_resumes_where_it_stopped() {
    let (kv, leader) = Kv::new_leader(LeaderConfig::default());
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let replica = Arc::new(Batching::default());
    let mut f = geohook_repl::Follower::new(
        geohook_repl::FollowerConfig {
            max_batch: 64,
            ..follower_config(listener.port)
        },
        replica.clone(),
        None,
    )
    .map(|follower| {
        let status = follower.status();
        let cancel = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(follower.run(cancel.clone()));
        common::RunningFollower {
            status,
            cancel,
            handle,
        }
    })
    .unwrap();
    wait_offset(&mut f, leader.offset()).await;

    // One burst, written before the leader's task can send any of it, so
    // that the follower reads many commands at once.
    for i in 0..500 {
        kv.write(&[b"SET", format!("key{i}").as_bytes(), b"v"]);
    }
    kv.write(&[b"SET", b"poison", b"p"]);
    for i in 500..600 {
        kv.write(&[b"SET", format!("key{i}").as_bytes(), b"v"]);
    }
    let s = wait_offset(&mut f, leader.offset()).await;

    assert_eq!(replica.kv.map(), kv.map());
    assert_eq!(s.sessions, 2, "the failed batch ends one session");
    assert_eq!(
        (s.full_syncs, s.partial_syncs),
        (1, 1),
        "the second session continues"
    );
    let applied = replica.applied.lock().clone();
    assert_eq!(applied.len(), 601);
    assert!(
        applied.values().all(|&n| n == 1),
        "a command applied twice or never: {applied:?}"
    );
    let sizes = replica.sizes.lock().clone();
    assert!(sizes.iter().all(|&n| (1..=64).contains(&n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > 1),
        "commands of one read arrive together: {sizes:?}"
    );

    f.stop().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn announcements_between_the_commands_of_one_read_do_not_split_its_batch() {
    // A leader by hand: after PSYNC, in one write, three commands from
    // offset 100 with an announcement after each (as three chunks of a
    // leader's link arrive when the follower reads late).
    let id = ReplId::parse(&[b'a'; 40]).unwrap();
    let cmd = |k: &str| format!("*3\r\n$3\r\nSET\r\n$2\r\n{k}\r\n$1\r\n1\r\n");
    let len = cmd("k1").len() as u64;
    let mut reply = format!("+CONTINUE {}\r\n", "a".repeat(40));
    for (i, k) in ["k1", "k2", "k3"].iter().enumerate() {
        reply += &cmd(k);
        reply += &format!("+OFFSET {}\r\n", 100 + len * (i as u64 + 1));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        while !matches!(decode_command(&buf, &Limits::default()), Ok(Some((a, _))) if a[0] == b"PSYNC")
        {
            if sock.read_buf(&mut buf).await.unwrap() == 0 {
                return;
            }
        }
        sock.write_all(reply.as_bytes()).await.unwrap();
        let mut sink = [0u8; 1024];
        while sock.read(&mut sink).await.unwrap_or(0) > 0 {}
    });
    let replica = Arc::new(Batching::default());
    let follower =
        geohook_repl::Follower::new(follower_config(port), replica.clone(), Some((id, 100)))
            .unwrap();
    let mut status = follower.status();
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(follower.run(cancel.clone()));
    let s = wait_status(&mut status, "three commands applied", |s| {
        s.offset == 100 + 3 * len
    })
    .await;
    assert!(
        s.caught_up,
        "the last announcement is where the follower is"
    );
    assert_eq!(s.leader_offset, 100 + 3 * len);
    assert_eq!(*replica.sizes.lock(), vec![3], "one read, one batch");
    assert_eq!(replica.applied.lock().len(), 3);
    cancel.cancel();
    task.await.unwrap();
    server.abort();
}
