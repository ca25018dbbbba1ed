//! Rewrite throughput as a ratio of its peer, with the two interleaved.
//!
//! The divan bench `rewrite_throughput` measures each side in its own block of
//! samples, so noise from other processes on a shared machine can land on one
//! side only. This harness alternates the two (swapping which goes first each
//! round) and reports the median of each and the ratio of throughputs.
//!
//! The rewrite runs with the crate's default settings (adaptive pacing)
//! unless `PACING=off` asks for [`Pacing::off`] (and `SYNC_EVERY_KB` for a
//! write-back step other than the default), which is how the figure from
//! before pacing is reproduced.
//!
//! Run: `cargo bench -p aof-compactor --bench throughput_ratio`
//! (optional environment: `ROUNDS`, default 15; `SIZE_MB`, default 64;
//! `APPENDS`, 1 KiB appends to the live file spread over each rewrite,
//! default 64, 0 for "nobody appends"; `PACING=off`; `SYNC_EVERY_KB`;
//! `IN_FLIGHT`, the adaptive pacing's [`Pacing::in_flight`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use aof_compactor::{Pacing, PacingStats, Rewrite};

const RECORD: &[u8] = b"*6\r\n$3\r\nSET\r\n$5\r\nfleet\r\n$9\r\ntruck1234\r\n$5\r\nPOINT\r\n$9\r\n33.512345\r\n$10\r\n-112.26789\r\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peer: buffered writes of the records to a new file, then one fsync.
fn plain(path: &Path, records: usize) -> Duration {
    let t = Instant::now();
    let file = File::create(path).unwrap();
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    for _ in 0..records {
        w.write_all(RECORD).unwrap();
    }
    w.into_inner().unwrap().sync_all().unwrap();
    t.elapsed()
}

/// The rewrite's settings from the environment; `None` keeps the default.
fn settings() -> (Option<Pacing>, Option<u64>) {
    let mut pacing = match std::env::var("PACING").as_deref() {
        Ok("off") => Some(Pacing::off()),
        Ok("adaptive") => Some(Pacing::adaptive()),
        Ok(other) => panic!("PACING must be off or adaptive, not {other}"),
        Err(_) => None,
    };
    if let Ok(n) = std::env::var("IN_FLIGHT") {
        let p = pacing.unwrap_or_default();
        pacing = Some(p.in_flight(n.parse().expect("IN_FLIGHT is a number")));
    }
    let sync_every = std::env::var("SYNC_EVERY_KB")
        .ok()
        .map(|v| v.parse::<u64>().expect("SYNC_EVERY_KB is a number") * 1024);
    (pacing, sync_every)
}

/// The same records through a full rewrite, with `appends` appends of 1 KiB
/// to the live file spread over it, carried over by catch-up and commit.
fn rewrite(live: &Path, records: usize, appends: usize, stats: &mut Vec<PacingStats>) -> Duration {
    let (pacing, sync_every) = settings();
    let t = Instant::now();
    let mut rw = Rewrite::begin(live).unwrap();
    if let Some(p) = pacing {
        rw = rw.pacing(p);
    }
    if let Some(bytes) = sync_every {
        rw = rw.sync_every(bytes);
    }
    let mut appender = OpenOptions::new().append(true).open(live).unwrap();
    for i in 0..records {
        rw.write_all(RECORD).unwrap();
        if appends > 0 && i % (records / appends).max(1) == 0 {
            appender.write_all(&[b'a'; 1024]).unwrap();
        }
    }
    rw.catch_up().unwrap();
    stats.push(rw.pacing_stats());
    drop(rw.commit().unwrap());
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let rounds = env_usize("ROUNDS", 15);
    let size_mb = env_usize("SIZE_MB", 64);
    let appends = env_usize("APPENDS", 64);
    let records = size_mb * 1024 * 1024 / RECORD.len();
    let bytes = (records * RECORD.len()) as f64;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("appendonly.aof");
    let peer = dir.path().join("plain.aof");
    let (mut p, mut r) = (Vec::new(), Vec::new());
    let mut stats = Vec::new();
    for round in 0..rounds {
        std::fs::write(&live, RECORD).unwrap();
        if round % 2 == 0 {
            p.push(plain(&peer, records));
            r.push(rewrite(&live, records, appends, &mut stats));
        } else {
            r.push(rewrite(&live, records, appends, &mut stats));
            p.push(plain(&peer, records));
        }
    }
    let (p, r) = (median(p), median(r));
    let mbps = |d: Duration| bytes / d.as_secs_f64() / 1e6;
    let (pacing, sync_every) = settings();
    println!(
        "{rounds} interleaved rounds of {size_mb} MB ({records} records, {appends} appends of 1 KiB during each rewrite); rewrite pacing {}, write-back step {}",
        match pacing {
            None => "default (adaptive)".to_owned(),
            Some(p) if p.is_adaptive() => format!("{p:?}"),
            Some(_) => "off".to_owned(),
        },
        sync_every.map_or("default".to_owned(), |b| format!("{} KiB", b / 1024))
    );
    println!(
        "plain write + fsync  median {:>8.1} ms  {:>7.0} MB/s",
        p.as_secs_f64() * 1e3,
        mbps(p)
    );
    println!(
        "rewrite + commit     median {:>8.1} ms  {:>7.0} MB/s",
        r.as_secs_f64() * 1e3,
        mbps(r)
    );
    println!(
        "pacer over all rounds: {} steps, {} yielded to the appender",
        stats.iter().map(|s| s.steps).sum::<u64>(),
        stats.iter().map(|s| s.yields).sum::<u64>()
    );
    println!(
        "throughput ratio (rewrite / plain): {:.2}",
        p.as_secs_f64() / r.as_secs_f64()
    );
}
