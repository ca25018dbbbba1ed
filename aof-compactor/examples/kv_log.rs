//! A key-value store backed by an append-only log, compacted automatically.
//!
//! A tokio writer task owns the log file; because it handles one message at a
//! time, it *is* the appender's lock: the rewrite handshake's two steps that
//! need the appender quiesced (begin with a matching snapshot, commit and swap
//! the file) are messages to it. The compaction callback does the long part,
//! writing the snapshot, on the blocking pool while writes go on. The
//! writer marks each fsync on a `SyncGate` that the rewrite shares, so that
//! the rewrite's write-back never lands in the middle of one.
//!
//! Run: `cargo run -p aof-compactor --example kv_log`

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aof_compactor::bytesize::ByteSize;
use aof_compactor::{
    BoxError, CompactionOutcome, Compactor, Config, Replaced, Rewrite, SizeSource, SyncGate,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

type State = BTreeMap<String, String>;

enum Msg {
    Set(String, String, oneshot::Sender<()>),
    Begin(oneshot::Sender<Result<(State, Rewrite), aof_compactor::Error>>),
    Commit(
        Rewrite,
        oneshot::Sender<Result<(u64, Replaced), aof_compactor::Error>>,
    ),
}

fn record(k: &str, v: &str) -> String {
    format!("{k}={v}\n")
}

fn replay(path: &Path) -> State {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The appender: the only code that writes to the live file.
fn writer_task(
    path: PathBuf,
    mut file: File,
    mut state: State,
    gate: SyncGate,
    mut rx: mpsc::Receiver<Msg>,
) {
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Set(k, v, ack) => {
                file.write_all(record(&k, &v).as_bytes()).unwrap();
                gate.sync_data(&file).unwrap();
                state.insert(k, v);
                let _ = ack.send(());
            }
            Msg::Begin(reply) => {
                let begun =
                    Rewrite::begin(&path).map(|rw| (state.clone(), rw.sync_gate(gate.clone())));
                let _ = reply.send(begun);
            }
            Msg::Commit(rw, reply) => {
                let result = rw.commit().map(|c| {
                    // The writer's old handle closes here; the blocks of the
                    // replaced file are freed by the compaction, off this
                    // task, with Replaced::release.
                    drop(std::mem::replace(&mut file, c.file));
                    (c.len, c.replaced)
                });
                let _ = reply.send(result);
            }
        }
    }
}

/// One compaction, driven from the compactor's callback.
async fn compact(tx: mpsc::Sender<Msg>) -> Result<CompactionOutcome, BoxError> {
    let (reply, rx) = oneshot::channel();
    tx.send(Msg::Begin(reply)).await?;
    let (state, mut rw) = rx.await??;
    let rw = tokio::task::spawn_blocking(move || -> Result<Rewrite, BoxError> {
        for (k, v) in &state {
            rw.write_all(record(k, v).as_bytes())?;
        }
        rw.catch_up()?;
        Ok(rw)
    })
    .await??;
    let (reply, rx) = oneshot::channel();
    tx.send(Msg::Commit(rw, reply)).await?;
    let (new_size, replaced) = rx.await??;
    // One fdatasync per MiB of the old log: on the blocking pool, with the
    // writer already appending to the new file.
    tokio::task::spawn_blocking(move || replaced.release()).await??;
    Ok(CompactionOutcome::new(new_size))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.aof");
    aof_compactor::clean_leftovers(&path)?;
    let state = replay(&path);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;

    let (tx, rx) = mpsc::channel(64);
    let writer = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || writer_task(path, file, state, SyncGate::new(), rx))
    };

    let config = Config {
        min_size: ByteSize::kib(16),
        growth_percent: Some(100),
        check_interval: Duration::from_millis(50),
        cooldown: Duration::ZERO,
        ..Default::default()
    };
    let callback_tx = tx.clone();
    let (compactor, handle) =
        Compactor::new(config, SizeSource::Path(path.clone()), move |_ctx| {
            compact(callback_tx.clone())
        })?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(compactor.run(shutdown.clone()));

    let mut model = State::new();
    for i in 0..5_000u32 {
        let (k, v) = (format!("key{}", i % 100), format!("value{i}"));
        let (ack, done) = oneshot::channel();
        tx.send(Msg::Set(k.clone(), v.clone(), ack)).await?;
        done.await?;
        model.insert(k, v);
    }
    let last = handle.compact_now().await?;
    shutdown.cancel();
    task.await?;
    drop(tx);
    writer.await?;

    let status = handle.status();
    println!(
        "{} compactions ({} failed), last {:?}; log is {} bytes, base {} bytes",
        status.runs,
        status.failures,
        last.result,
        std::fs::metadata(&path)?.len(),
        status.base_size
    );
    assert_eq!(
        replay(&path),
        model,
        "the compacted log replays to the same state"
    );
    println!("replayed state matches the {} keys written", model.len());
    Ok(())
}
