//! Latency of a concurrent appender while rewrites run, against the same
//! appender alone, in the same run; and the same with the settings from
//! before pacing existed (`Pacing::off`, 4 MiB steps) as a third phase.
//!
//! The appender writes an 83-byte record and `fdatasync`s it under its lock
//! (Redis's `appendfsync always`), timing each append from taking the lock to
//! releasing it. In the second and third phases a rewriter thread loops over full
//! rewrites of a state of `STATE_MB` megabytes with the [`Rewrite`] protocol:
//! begin under the lock, write the state outside it, catch up outside it, then
//! commit and swap the file under the lock. Sorted samples give the
//! percentiles. Before each phase the file system is synced and left alone
//! for 250 ms, so that one phase's write-back does not land on the next.
//!
//! The rewrite uses the crate's default settings unless the environment says
//! otherwise, so that the figure is what a user who sets nothing gets.
//!
//! Run: `cargo bench -p aof-compactor --bench appender_latency`
//! (optional environment: `SECONDS` per phase, default 3; `ROUNDS`, default 3;
//! `STATE_MB`, default 32; `SYNC_EVERY_KB`, the rewrite's
//! [`Rewrite::sync_every`], default the crate's; `PACING=off` for
//! [`Pacing::off`], the behaviour before pacing; `IN_FLIGHT` and `MIN_STEP_KB`, the
//! adaptive pacing's [`Pacing::in_flight`] and [`Pacing::min_step`]; `MAX_RATE_MB`, the rewrite's
//! [`Rewrite::max_rate`] in MB/s, default 0 = no cap).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aof_compactor::{Pacing, PacingStats, Rewrite, DEFAULT_SYNC_EVERY};
use parking_lot::Mutex;

const RECORD: &[u8] = b"*6\r\n$3\r\nSET\r\n$5\r\nfleet\r\n$9\r\ntruck1234\r\n$5\r\nPOINT\r\n$9\r\n33.512345\r\n$10\r\n-112.26789\r\n";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The rewrite's settings, each `None` to keep the crate's default.
#[derive(Clone)]
struct Settings {
    sync_every: Option<u64>,
    pacing: Option<Pacing>,
    max_rate: u64,
}

impl Settings {
    fn from_env() -> Self {
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
        if let Ok(kb) = std::env::var("MIN_STEP_KB") {
            let p = pacing.unwrap_or_default();
            pacing = Some(p.min_step(kb.parse::<u64>().expect("MIN_STEP_KB is a number") * 1024));
        }
        Settings {
            sync_every: std::env::var("SYNC_EVERY_KB")
                .ok()
                .map(|v| v.parse::<u64>().expect("SYNC_EVERY_KB is a number") * 1024),
            pacing,
            max_rate: env_u64("MAX_RATE_MB", 0) * 1_000_000,
        }
    }

    fn begin(&self, live: &Path) -> Rewrite {
        let mut rw = Rewrite::begin(live).unwrap();
        if let Some(bytes) = self.sync_every {
            rw = rw.sync_every(bytes);
        }
        if let Some(p) = &self.pacing {
            rw = rw.pacing(p.clone());
        }
        if self.max_rate > 0 {
            rw = rw.max_rate(self.max_rate);
        }
        rw
    }

    fn describe(&self) -> String {
        format!(
            "write-back every {} KiB, pacing {}, rate cap {}",
            self.sync_every.unwrap_or(DEFAULT_SYNC_EVERY) / 1024,
            match &self.pacing {
                None => "default (adaptive)".to_owned(),
                Some(p) if p.is_adaptive() => format!("{p:?}"),
                Some(_) => "off".to_owned(),
            },
            if self.max_rate == 0 {
                "none".to_owned()
            } else {
                format!("{} MB/s", self.max_rate / 1_000_000)
            }
        )
    }
}

/// What the rewriter thread saw: how long it held the appender's lock per
/// rewrite, and the pacer's totals.
#[derive(Default)]
struct RewriterLog {
    held: Vec<u64>,
    steps: u64,
    yields: u64,
    shortest_step: u64,
    bytes: u64,
    busy: Duration,
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
    settings: &Settings,
    stop: &AtomicBool,
    log: &Mutex<RewriterLog>,
) {
    let records = state_mb * 1024 * 1024 / RECORD.len() as u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let (mut rw, begin_held) = {
            let _held = file.lock();
            let t = Instant::now();
            let rw = settings.begin(live);
            (rw, t.elapsed())
        };
        for _ in 0..records {
            rw.write_all(RECORD).unwrap();
        }
        rw.catch_up().unwrap();
        let stats: PacingStats = rw.pacing_stats();
        let mut f = file.lock();
        let t = Instant::now();
        let committed = rw.commit().unwrap();
        let old = std::mem::replace(&mut *f, committed.file);
        drop(f);
        {
            let mut log = log.lock();
            log.held.push((begin_held + t.elapsed()).as_nanos() as u64);
            log.steps += stats.steps;
            log.yields += stats.yields;
            if log.shortest_step == 0 || stats.shortest_step < log.shortest_step {
                log.shortest_step = stats.shortest_step;
            }
            log.bytes += committed.len;
            log.busy += started.elapsed();
        }
        // Closing the last handle of the replaced file frees its blocks, which
        // for a large file takes a while; it happens after the lock is released.
        drop(old);
    }
}

/// Lets the disk finish what the previous phase left (write-back of the last
/// rewrite, the freeing of the replaced file) so that it is not counted
/// against the next phase: `syncfs` of the file system holding `dir`, then a
/// quarter of a second.
fn settle(dir: &Path) {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).unwrap();
    // SAFETY: the descriptor is open for the duration of the call.
    unsafe { libc::syncfs(d.as_raw_fd()) };
    std::thread::sleep(Duration::from_millis(250));
}

/// Appends for `phase` while a rewriter thread loops over rewrites with
/// `settings`, and returns the append latencies.
fn during(
    live: &Path,
    file: &Arc<Mutex<File>>,
    state_mb: u64,
    settings: &Settings,
    phase: Duration,
    log: &Arc<Mutex<RewriterLog>>,
) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let rewriter = {
        let (live, file, stop, log, settings) = (
            live.to_owned(),
            file.clone(),
            stop.clone(),
            log.clone(),
            settings.clone(),
        );
        std::thread::spawn(move || rewrite_loop(&live, &file, state_mb, &settings, &stop, &log))
    };
    let samples = append_for(file, phase);
    stop.store(true, Ordering::Relaxed);
    rewriter.join().unwrap();
    samples
}

fn report(name: &str, samples: &[u64], log: Option<&RewriterLog>, alone: &[u64]) {
    print!(
        "{:<30} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        name,
        samples.len(),
        pct(samples, 0.5),
        pct(samples, 0.99),
        pct(samples, 0.999),
        pct(samples, 1.0)
    );
    match log {
        None => println!(),
        Some(log) => {
            let mut held = log.held.clone();
            held.sort_unstable();
            println!(
                " {:>6.2} {:>6} {:>7.0} {:>8.1} {:>6}/{:<6} {:>5}",
                pct(samples, 0.99) / pct(alone, 0.99),
                held.len(),
                log.bytes as f64 / log.busy.as_secs_f64().max(1e-9) / 1e6,
                pct(&held, 0.5) / 1000.0,
                log.yields,
                log.steps,
                log.shortest_step / 1024
            );
        }
    }
}

fn main() {
    let seconds = env_u64("SECONDS", 3);
    let state_mb = env_u64("STATE_MB", 32);
    let rounds = env_u64("ROUNDS", 3);
    let settings = Settings::from_env();
    // The peer: the settings before pacing existed (no pacing, 4 MiB
    // write-back steps), measured in the same run.
    let before = Settings {
        sync_every: Some(4 * 1024 * 1024),
        pacing: Some(Pacing::off()),
        max_rate: 0,
    };
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
    // falls on every side alike.
    let phase = Duration::from_secs(seconds).div_f64(rounds as f64);
    let (mut alone, mut with_settings, mut with_before) = (Vec::new(), Vec::new(), Vec::new());
    let (log, log_before) = (
        Arc::new(Mutex::new(RewriterLog::default())),
        Arc::new(Mutex::new(RewriterLog::default())),
    );
    for round in 0..rounds {
        settle(dir.path());
        alone.extend(append_for(&file, phase));
        // Which rewrite phase goes first alternates, so that whatever one
        // leaves behind falls on the other as often as the other way round.
        for first in [round % 2 == 0, round % 2 == 1] {
            settle(dir.path());
            if first {
                with_settings.extend(during(&live, &file, state_mb, &settings, phase, &log));
            } else {
                with_before.extend(during(&live, &file, state_mb, &before, phase, &log_before));
            }
        }
    }
    alone.sort_unstable();
    with_settings.sort_unstable();
    with_before.sort_unstable();

    println!(
        "appender latency, {seconds} s per phase in {rounds} alternating rounds, back-to-back rewrites of a {state_mb} MB state"
    );
    println!("rewrite settings: {}", settings.describe());
    println!("before pacing:    {}", before.describe());
    println!(
        "{:<30} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>7} {:>8} {:>13} {:>5}",
        "phase",
        "appends",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "ratio",
        "rwrts",
        "MB/s",
        "lock ms",
        "yields/steps",
        "min KiB"
    );
    report("alone", &alone, None, &alone);
    report(
        "during rewrites (settings)",
        &with_settings,
        Some(&log.lock()),
        &alone,
    );
    report(
        "during rewrites (before)",
        &with_before,
        Some(&log_before.lock()),
        &alone,
    );
    println!(
        "p99 ratio (during / alone): settings {:.2}, before pacing {:.2}",
        pct(&with_settings, 0.99) / pct(&alone, 0.99),
        pct(&with_before, 0.99) / pct(&alone, 0.99)
    );
    println!(
        "columns: ratio = p99 / alone p99; rwrts = rewrites completed; MB/s = rewriter throughput while running; lock ms = p50 appender lock held per rewrite (begin + commit); yields/steps = paced steps after which the live file had grown / all paced steps; min KiB = shortest step"
    );
}
