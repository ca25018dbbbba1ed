//! Crash safety with real processes. The test binary re-executes itself as a
//! child that appends `set <key> <seq>` records (fsynced, then acknowledged on
//! stdout) while another thread rewrites the log in a loop. The parent
//! SIGKILLs it at random moments; after each kill the log must replay, hold
//! every acknowledged record's effect, and equal the model's state.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use aof_compactor::{clean_leftovers, Rewrite};
use parking_lot::Mutex;
use rand::Rng;

const CHILD_ENV: &str = "AOF_COMPACTOR_CRASH_CHILD";
const KILLS: usize = 60;
const KEYS: u64 = 37;

/// The key record `seq` writes; a fixed scramble so keys repeat irregularly.
fn key_of(seq: u64) -> u64 {
    seq.wrapping_mul(2_654_435_761) % KEYS
}

/// The state after records `0..n`: the last seq written to each key.
fn model(n: u64) -> BTreeMap<u64, u64> {
    (0..n).map(|seq| (key_of(seq), seq)).collect()
}

/// Replays a log. A final line without its newline is a torn append and is
/// ignored (the child truncates it at start); anything else malformed fails.
/// Returns the state and the length of the complete prefix.
fn replay(bytes: &[u8]) -> (BTreeMap<u64, u64>, usize) {
    let mut state = BTreeMap::new();
    let mut pos = 0;
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let line = std::str::from_utf8(&bytes[pos..pos + nl]).expect("utf-8 record");
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("set"), Some(k), Some(v), None) => {
                let (k, v): (u64, u64) = (k.parse().unwrap(), v.parse().unwrap());
                assert_eq!(
                    key_of(v),
                    k,
                    "record {line:?} at {pos} does not match its seq"
                );
                state.insert(k, v);
            }
            _ => panic!("malformed record {line:?} at offset {pos}"),
        }
        pos += nl + 1;
    }
    (state, pos)
}

fn record(seq: u64) -> String {
    format!("set {} {seq}\n", key_of(seq))
}

struct Writer {
    file: File,
    state: BTreeMap<u64, u64>,
}

fn child(path: &Path) -> ! {
    clean_leftovers(path).unwrap();
    let bytes = fs::read(path).unwrap_or_default();
    let (state, complete) = replay(&bytes);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    if complete < bytes.len() {
        file.set_len(complete as u64).unwrap();
    }
    let mut next = state.values().max().map_or(0, |m| m + 1);
    let writer = Arc::new(Mutex::new(Writer { file, state }));

    let rewriter = {
        let (writer, path) = (writer.clone(), path.to_owned());
        move || loop {
            // Begin with the appender held, so the snapshot matches the
            // recorded length exactly.
            let (snapshot, mut rw) = {
                let w = writer.lock();
                (w.state.clone(), Rewrite::begin(&path).unwrap())
            };
            let mut by_seq: Vec<u64> = snapshot.into_values().collect();
            by_seq.sort_unstable();
            for (i, seq) in by_seq.into_iter().enumerate() {
                rw.write_all(record(seq).as_bytes()).unwrap();
                // A real snapshot takes a while; the pauses let the appender
                // add records during each phase of the rewrite.
                if i == KEYS as usize / 2 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            rw.catch_up().unwrap();
            std::thread::sleep(Duration::from_micros(500));
            let mut w = writer.lock();
            w.file = rw.commit().unwrap().file;
            drop(w);
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    std::thread::spawn(rewriter);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready {next}").unwrap();
    out.flush().unwrap();
    loop {
        {
            let mut w = writer.lock();
            w.file.write_all(record(next).as_bytes()).unwrap();
            w.file.sync_data().unwrap();
            w.state.insert(key_of(next), next);
        }
        writeln!(out, "ack {next}").unwrap();
        out.flush().unwrap();
        next += 1;
    }
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect()
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.aof");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acked_total = None::<u64>;
    let mut killed_mid_rewrite = 0;
    let mut leftovers: Vec<PathBuf> = Vec::new();

    for iteration in 0..KILLS {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("child did not start");
        let start: u64 = ready.strip_prefix("ready ").unwrap().parse().unwrap();
        if let Some(acked) = acked_total {
            assert!(
                start >= acked,
                "iteration {iteration}: restarted at {start}, {acked} were acknowledged"
            );
        }
        // The new child's rewriter may have created its own temporary file by
        // now, but the previous child's must be gone.
        for old in &leftovers {
            assert!(!old.exists(), "{} survived the restart", old.display());
        }

        // Let it run for a random while, measured from the moment it acknowledged
        // its first record, so that every kill lands in a running workload.
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no first ack");
        assert_eq!(first, format!("ack {start}"));
        let until = Instant::now() + Duration::from_micros(rng.random_range(0..50_000));
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();

        let acks: Vec<u64> = std::iter::once(first)
            .chain(rx.try_iter())
            .map(|l| l.strip_prefix("ack ").unwrap().parse().unwrap())
            .collect();
        let last_acked = *acks.last().unwrap();
        acked_total = Some(last_acked + 1);

        leftovers = temp_files(dir.path());
        if !leftovers.is_empty() {
            killed_mid_rewrite += 1;
        }
        let bytes = fs::read(&path).expect("the live file must exist after any crash");
        let (state, _) = replay(&bytes);
        let n = state.values().max().map_or(0, |m| m + 1);
        assert!(
            n > last_acked,
            "iteration {iteration}: record {last_acked} was acknowledged but the log ends at {n}"
        );
        assert_eq!(
            state,
            model(n),
            "iteration {iteration}: replay differs from the model"
        );
    }
    println!(
        "{KILLS} kills, {killed_mid_rewrite} with a rewrite in flight, {} records acknowledged",
        acked_total.unwrap()
    );
    assert!(killed_mid_rewrite > 0, "no kill landed during a rewrite");
}

fn main() {
    match std::env::var_os(CHILD_ENV) {
        Some(path) => child(Path::new(&path)),
        None => parent(),
    }
}
