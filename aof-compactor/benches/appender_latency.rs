//! Latency of a concurrent appender while rewrites run, against the same
//! appender alone, in the same run.
//!
//! The appender writes an 83-byte record and `fdatasync`s it under its lock
//! (Redis's `appendfsync always`), timing each append from taking the lock to
//! releasing it. In the second phase a rewriter thread loops over full
//! rewrites of a state of `STATE_MB` megabytes with the [`Rewrite`] protocol:
//! begin under the lock, write the state outside it, catch up outside it, then
//! commit and swap the file under the lock. Sorted samples give the
//! percentiles.
//!
//! Run: `cargo bench -p aof-compactor --bench appender_latency`
//! (optional environment: `SECONDS` per side, default 3; `ROUNDS`, default 3;
//! `STATE_MB`, default 32; `SYNC_EVERY_KB`, default 4096; `MAX_RATE_MB`, the
//! rewrite's [`Rewrite::max_rate`] in MB/s, default 0 = no cap).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aof_compactor::Rewrite;
use parking_lot::Mutex;

const RECORD: &[u8] = b"*6\r\n$3\r\nSET\r\n$5\r\nfleet\r\n$9\r\ntruck1234\r\n$5\r\nPOINT\r\n$9\r\n33.512345\r\n$10\r\n-112.26789\r\n";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Appends for `duration` and returns each append's latency in nanoseconds.
fn append_for(file: &Mutex<File>, duration: Duration) -> Vec<u64> {
    let mut samples = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let t = Instant::now();
        {
            let mut f = file.lock();
            f.write_all(RECORD).unwrap();
            f.sync_data().unwrap();
        }
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn rewrite_loop(
    live: &Path,
    file: &Mutex<File>,
    state_mb: u64,
    sync_every: u64,
    max_rate: u64,
    stop: &AtomicBool,
    held: &Mutex<Vec<u64>>,
) {
    let records = state_mb * 1024 * 1024 / RECORD.len() as u64;
    while !stop.load(Ordering::Relaxed) {
        let (mut rw, begin_held) = {
            let _held = file.lock();
            let t = Instant::now();
            let rw = Rewrite::begin(live)
                .unwrap()
                .sync_every(sync_every)
                .max_rate(max_rate);
            (rw, t.elapsed())
        };
        for _ in 0..records {
            rw.write_all(RECORD).unwrap();
        }
        rw.catch_up().unwrap();
        let mut f = file.lock();
        let t = Instant::now();
        let old = std::mem::replace(&mut *f, rw.commit().unwrap().file);
        drop(f);
        held.lock()
            .push((begin_held + t.elapsed()).as_nanos() as u64);
        // Closing the last handle of the replaced file frees its blocks, which
        // for a large file takes a while; it happens after the lock is released.
        drop(old);
    }
}

fn main() {
    let seconds = env_u64("SECONDS", 3);
    let state_mb = env_u64("STATE_MB", 32);
    let rounds = env_u64("ROUNDS", 3);
    let sync_every = env_u64("SYNC_EVERY_KB", 4096) * 1024;
    let max_rate = env_u64("MAX_RATE_MB", 0) * 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("appendonly.aof");
    let file = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&live)
            .unwrap(),
    ));

    // The phases alternate so that noise from other processes on the machine
    // falls on both sides alike.
    let phase = Duration::from_secs(seconds).div_f64(rounds as f64);
    let (mut alone, mut during) = (Vec::new(), Vec::new());
    let held = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..rounds {
        alone.extend(append_for(&file, phase));
        let stop = Arc::new(AtomicBool::new(false));
        let rewriter = {
            let (live, file, stop, held) = (live.clone(), file.clone(), stop.clone(), held.clone());
            std::thread::spawn(move || {
                rewrite_loop(&live, &file, state_mb, sync_every, max_rate, &stop, &held)
            })
        };
        during.extend(append_for(&file, phase));
        stop.store(true, Ordering::Relaxed);
        rewriter.join().unwrap();
    }
    alone.sort_unstable();
    during.sort_unstable();

    println!(
        "appender latency, {seconds} s per side in {rounds} alternating rounds, back-to-back rewrites of a {state_mb} MB state, write-back every {} KiB, rate cap {}",
        sync_every / 1024,
        if max_rate == 0 { "none".to_owned() } else { format!("{} MB/s", max_rate / 1_000_000) }
    );
    println!(
        "{:<28} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "phase", "appends", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    for (name, s) in [("alone", &alone), ("during rewrites", &during)] {
        println!(
            "{:<28} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            name,
            s.len(),
            pct(s, 0.5),
            pct(s, 0.99),
            pct(s, 0.999),
            pct(s, 1.0)
        );
    }
    let mut held = held.lock().clone();
    held.sort_unstable();
    println!(
        "rewrites completed: {}; appender lock held per rewrite (begin + commit): p50 {:.1} µs, max {:.1} µs",
        held.len(),
        pct(&held, 0.5),
        pct(&held, 1.0)
    );
    println!(
        "p99 ratio (during / alone): {:.2}",
        pct(&during, 0.99) / pct(&alone, 0.99)
    );
}
