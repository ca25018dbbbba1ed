//! Fault test with real processes: a follower process that writes its own
//! file is SIGKILLed at random points while the leader keeps writing, then
//! restarted. Every time, its file recovers (header, stream, maybe a torn
//! tail), its stream bytes equal the leader's at the same offsets, and it
//! resumes with a partial resync: one full sync in the whole run.
//!
//! This file has its own `main` (`harness = false`): run with the variable
//! `REPL_CHILD_FILE` set, the same binary is the follower process.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{listen, Kv};
use geohook_repl::{
    encode_command, encode_header, recover, BoxError, Follower, FollowerConfig, LeaderConfig,
    Limits, ReplId, Replica,
};
use parking_lot::Mutex;
use rand::Rng;
use tokio_util::sync::CancellationToken;

fn main() {
    match std::env::var_os("REPL_CHILD_FILE") {
        Some(path) => child(PathBuf::from(path)),
        None => parent(),
    }
}

/// The follower process's state machine: only its file.
struct FileReplica {
    path: PathBuf,
    file: Mutex<File>,
    base: Mutex<Vec<u8>>,
}

impl Replica for FileReplica {
    fn apply(&self, args: Vec<Vec<u8>>, _offset: u64) -> Result<(), BoxError> {
        let mut bytes = Vec::new();
        encode_command(&mut bytes, &args);
        self.file.lock().write_all(&bytes)?;
        Ok(())
    }

    fn reset(&self, _: &ReplId, _: u64) -> Result<(), BoxError> {
        self.base.lock().clear();
        Ok(())
    }

    fn apply_snapshot(&self, args: Vec<Vec<u8>>) -> Result<(), BoxError> {
        encode_command(&mut self.base.lock(), &args);
        Ok(())
    }

    fn finish_snapshot(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        // The new file takes the old one's place whole, by a rename.
        let base = std::mem::take(&mut *self.base.lock());
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&encode_header(replid, offset, base.len() as u64))?;
        f.write_all(&base)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        *self.file.lock() = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

fn child(path: PathBuf) {
    let port: u16 = std::env::var("REPL_CHILD_PORT").unwrap().parse().unwrap();
    let bytes = fs::read(&path).unwrap_or_default();
    let found = match recover(&bytes, &Limits::default()) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("child: {e}");
            std::process::exit(3);
        }
    };
    // Start-up repair: cut the torn tail before appending.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    file.set_len(found.complete_len).unwrap();
    let position = found.replid().map(|id| (id, found.offset()));
    let replica = Arc::new(FileReplica {
        path,
        file: Mutex::new(file),
        base: Mutex::new(Vec::new()),
    });
    let config = FollowerConfig {
        port,
        ack_interval: Duration::from_millis(5),
        reconnect_min: Duration::from_millis(5),
        reconnect_max: Duration::from_millis(50),
        ..Default::default()
    };
    let follower = Follower::new(config, replica, position).unwrap();
    // The parent holds our stdin open; when it ends (the parent died or
    // panicked) the child must not linger reconnecting for ever.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(follower.run(CancellationToken::new()));
}

/// A follower process, SIGKILLed when dropped (also when the test panics).
struct ChildGuard(Child);

impl ChildGuard {
    fn kill(&mut self) -> std::process::ExitStatus {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(path: &Path, port: u16) -> ChildGuard {
    ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .env("REPL_CHILD_FILE", path)
            .env("REPL_CHILD_PORT", port.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Checks the follower's file against the leader's and returns its offset.
fn check_file(path: &Path, leader_file: &[u8]) -> u64 {
    let bytes = fs::read(path).unwrap_or_default();
    let found =
        recover(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("follower file: {e}"));
    let Some(header) = found.header else {
        assert_eq!(
            found.complete_len, 0,
            "a file without a header has no commands"
        );
        return 0;
    };
    let leader = recover(leader_file, &Limits::default()).unwrap();
    assert_eq!(Some(header.replid), leader.replid());
    // The leader's file is never shrunk here: stream offset o is at
    // header_len + o in it.
    let from = (leader.header_len + header.offset) as usize;
    let stream = found.stream_bytes(&bytes);
    assert!(found.offset() <= leader.offset());
    assert_eq!(
        stream,
        &leader_file[from..from + stream.len()],
        "stream bytes differ"
    );
    found.offset()
}

fn parent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("follower.aof");
        let (kv, leader) = Kv::new_leader(LeaderConfig::default());
        let listener = listen(leader.clone(), kv.clone(), 0).await;
        let stop = CancellationToken::new();
        let writer = {
            let (kv, stop) = (kv.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.is_cancelled() {
                    for _ in 0..50 {
                        kv.write(&[
                            b"SET",
                            format!("k{}", i % 500).as_bytes(),
                            format!("v{i}").as_bytes(),
                        ]);
                        i += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };

        let mut rng = rand::rng();
        let mut last = 0;
        for round in 0..25 {
            let mut child = spawn_child(&path, listener.port);
            // Kill at a random point after the session is established: while
            // commands are being applied and written. The first session must
            // also have finished its full sync (the follower acks only once
            // the snapshot is in its file), or a kill inside the snapshot
            // would rightly cost a second full sync.
            common::eventually("the session", || {
                let s = leader.stats();
                let synced =
                    round > 0 || s.followers.iter().any(|l| l.streaming && l.ack_offset > 0);
                async move { s.full_syncs == 1 && s.partial_syncs == round && synced }
            })
            .await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
            let status = child.kill();
            assert_ne!(
                status.code(),
                Some(3),
                "round {round}: the child could not recover its file"
            );
            let offset = check_file(&path, &kv.file());
            assert!(
                offset >= last,
                "round {round}: the follower went back from {last} to {offset}"
            );
            last = offset;
        }
        stop.cancel();
        writer.await.unwrap();

        // A last run catches up completely: same state as the leader.
        let mut child = spawn_child(&path, listener.port);
        let end = leader.offset();
        common::eventually("the final catch-up", || {
            let s = leader.stats();
            async move { s.followers.iter().any(|l| l.ack_offset == end) }
        })
        .await;
        child.kill();
        assert_eq!(check_file(&path, &kv.file()), end);
        assert_eq!(Kv::from_file(fs::read(&path).unwrap()).map(), kv.map());
        let stats = leader.stats();
        assert_eq!(stats.full_syncs, 1, "{stats:?}");
        assert_eq!(stats.partial_syncs, 25, "{stats:?}");
        println!(
            "sigkill_follower: 25 SIGKILLs, offset {end}, {} partial resyncs, 1 full sync",
            stats.partial_syncs
        );
        listener.shutdown().await;
    });
}
