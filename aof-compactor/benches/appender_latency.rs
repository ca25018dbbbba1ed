//! Latency of a concurrent appender while rewrites run, against the same
//! appender alone, in the same run. Four phases: the appender alone; during
//! rewrites with the settings (the crate's defaults unless the environment
//! says otherwise); the same settings sharing the appender's [`SyncGate`];
//! and the settings from before pacing existed (`Pacing::off`, 4 MiB steps).
//!
//! The appender writes an 83-byte record and `fdatasync`s it under its lock
//! (Redis's `appendfsync always`), marked on a [`SyncGate`] (which only the
//! gated phase's rewrites look at), timing each append from taking the lock
//! to releasing it. During the rewrite phases a rewriter thread loops over
//! full rewrites of a state of `STATE_MB` megabytes with the [`Rewrite`]
//! protocol: begin under the lock, write the state outside it, catch up
//! outside it, commit and swap the file under the lock, then, outside it,
//! close the appender's old handle and free the replaced file with
//! [`Replaced::release`](aof_compactor::Replaced::release) (the before-pacing
//! phase closes it at once, as before `release` existed). Each round runs
//! the appender alone first, then the three rewrite phases in an order that
//! rotates from round to round (balanced when `ROUNDS` is a multiple of
//! three, as the default is). Sorted samples give the percentiles. Before
//! each phase the file system is synced and left alone for 250 ms, so that
//! one phase's write-back does not land on the next.
//!
//! The rewrite uses the crate's default settings unless the environment says
//! otherwise, so that the figure is what a user who sets nothing gets.
//!
//! Run: `cargo bench -p aof-compactor --bench appender_latency`
//! (optional environment: `SECONDS` per phase, default 3; `ROUNDS`, default 3;
//! `STATE_MB`, default 32; `SYNC_EVERY_KB`, the rewrite's
//! [`Rewrite::sync_every`], default the crate's; `PACING=off` for
//! [`Pacing::off`], the behaviour before pacing; `IN_FLIGHT`, `MIN_STEP_KB` and `REST`, the
//! adaptive pacing's [`Pacing::in_flight`], [`Pacing::min_step`] and [`Pacing::rest`]; `MAX_RATE_MB`, the rewrite's
//! [`Rewrite::max_rate`] in MB/s, default 0 = no cap; `RELEASE_KB`, the longest step of
//! `Replaced::release_in_steps`, default the crate's, 0 to close the replaced
//! file at once).
//!
//! `PHASES=1` also prints, for the appends at or above each rewrite phase's
//! p99, which parts of the rewrite overlapped them (begin and commit under the
//! lock, the state write, catch-up, the release of the replaced file, and the
//! first append after it) against the share of the time each part took.
//! `PHASES_VERBOSE=1` lists those appends one by one with their start in
//! `CLOCK_MONOTONIC` nanoseconds, the clock of `perf record -k mono`, so that
//! they can be matched with a block-layer trace.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aof_compactor::{
    Pacing, PacingStats, Rewrite, SyncGate, DEFAULT_RELEASE_STEP, DEFAULT_SYNC_EVERY,
};
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
    /// The step of `Replaced::release_in_steps`, or `None` to close the
    /// replaced file at once, as before it existed.
    release_step: Option<u64>,
    /// Whether the rewrite shares the appender's [`SyncGate`].
    gate: bool,
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
        if let Ok(n) = std::env::var("REST") {
            let p = pacing.unwrap_or_default();
            pacing = Some(p.rest(n.parse().expect("REST is a number")));
        }
        Settings {
            sync_every: std::env::var("SYNC_EVERY_KB")
                .ok()
                .map(|v| v.parse::<u64>().expect("SYNC_EVERY_KB is a number") * 1024),
            pacing,
            max_rate: env_u64("MAX_RATE_MB", 0) * 1_000_000,
            release_step: match env_u64("RELEASE_KB", DEFAULT_RELEASE_STEP / 1024) {
                0 => None,
                kb => Some(kb * 1024),
            },
            gate: false,
        }
    }

    fn begin(&self, live: &Path, gate: &SyncGate) -> Rewrite {
        let mut rw = Rewrite::begin(live).unwrap();
        if self.gate {
            rw = rw.sync_gate(gate.clone());
        }
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
            "write-back every {} KiB, pacing {}, rate cap {}, replaced file {}{}",
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
            },
            match self.release_step {
                None => "closed at once".to_owned(),
                Some(step) => format!("released in paced steps of at most {} KiB", step / 1024),
            },
            if self.gate {
                ", sharing the appender's sync gate"
            } else {
                ""
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
    gate_waits: u64,
    gate_waited: Duration,
    rested: Duration,
    bytes: u64,
    busy: Duration,
}

/// One rewrite phase of the bench: its settings, what the rewriter logged,
/// and the appends timed while it ran.
struct Phase {
    name: &'static str,
    settings: Settings,
    log: Arc<Mutex<RewriterLog>>,
    events: Vec<Event>,
    timed: Vec<(Instant, u64)>,
    sorted: Vec<u64>,
}

impl Phase {
    fn new(name: &'static str, settings: Settings) -> Self {
        Phase {
            name,
            settings,
            log: Arc::default(),
            events: Vec::new(),
            timed: Vec::new(),
            sorted: Vec::new(),
        }
    }
}

/// The appender: its file behind its lock, and the gate its syncs are
/// marked on (which costs nothing to a rewrite that does not look at it).
#[derive(Clone)]
struct Appender {
    file: Arc<Mutex<File>>,
    gate: SyncGate,
}

/// One timed interval of the rewriter: what it was doing, from when to when.
type Event = (&'static str, Instant, Instant);

/// The rewriter's phases, recorded so that slow appends can be matched with
/// what the rewrite was doing at the time.
static PHASES: Mutex<Vec<Event>> = Mutex::new(Vec::new());

/// `t` in `CLOCK_MONOTONIC` nanoseconds, which `Instant` does not expose:
/// both clocks are read once, and `t` is placed by its distance to that
/// instant.
fn mono_ns(t: Instant) -> u64 {
    static BASE: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
    let &(i0, n0) = BASE.get_or_init(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec that the call fills in.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (
            Instant::now(),
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        )
    });
    if t >= i0 {
        n0 + (t - i0).as_nanos() as u64
    } else {
        n0 - (i0 - t).as_nanos() as u64
    }
}

fn mark(name: &'static str, start: Instant) {
    PHASES.lock().push((name, start, Instant::now()));
}

/// Appends for `duration` and returns each append's start and latency in
/// nanoseconds.
fn append_for(appender: &Appender, duration: Duration) -> Vec<(Instant, u64)> {
    let mut samples = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let t = Instant::now();
        {
            let mut f = appender.file.lock();
            f.write_all(RECORD).unwrap();
            appender.gate.sync_data(&f).unwrap();
        }
        samples.push((t, t.elapsed().as_nanos() as u64));
    }
    samples
}

fn latencies(samples: &[(Instant, u64)]) -> Vec<u64> {
    samples.iter().map(|&(_, ns)| ns).collect()
}

/// Prints, for the appends slower than `threshold_ns`, which of the
/// rewriter's phases overlapped them, against the share of the time each
/// phase took: a phase overlapping far more slow appends than its share of
/// the time is where the tail comes from.
fn attribute(name: &str, samples: &[(Instant, u64)], events: &[Event], threshold_ns: u64) {
    use std::collections::BTreeMap;
    // The appends run back to back, so their latencies add up to the
    // phase's length.
    let span = Duration::from_nanos(samples.iter().map(|s| s.1).sum());
    let mut time: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut each: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for &(label, s, e) in events {
        *time.entry(label).or_default() += e.saturating_duration_since(s);
        each.entry(label)
            .or_default()
            .push(e.saturating_duration_since(s).as_nanos() as u64);
    }
    let slow: Vec<_> = samples.iter().filter(|s| s.1 > threshold_ns).collect();
    let mut hits: BTreeMap<&str, usize> = BTreeMap::new();
    let mut none = 0;
    for &&(start, ns) in &slow {
        let end = start + Duration::from_nanos(ns);
        let mut labels: Vec<&str> = events
            .iter()
            .filter(|&&(_, s, e)| s < end && e > start)
            .map(|&(l, _, _)| l)
            .collect();
        // The first append to start after the old file was dropped carries
        // the journal commit that frees its blocks.
        if events
            .iter()
            .filter(|&&(l, _, e)| l == "drop old file" && e <= start)
            .max_by_key(|&&(_, _, e)| e)
            .is_some_and(|&(_, _, dropped)| {
                !samples.iter().any(|&(t, _)| t >= dropped && t < start)
            })
        {
            labels.push("first append after a drop");
        }
        labels.sort_unstable();
        labels.dedup();
        if std::env::var_os("PHASES_VERBOSE").is_some() {
            println!(
                "    SLOW {} {:>8.1} ms: {:?}",
                mono_ns(start),
                ns as f64 / 1e6,
                labels
            );
        }
        if labels.is_empty() {
            none += 1;
        }
        for l in labels {
            *hits.entry(l).or_default() += 1;
        }
    }
    println!(
        "{name}: {} of {} appends over {:.0} µs; phases overlapping them (share of slow appends / share of time):",
        slow.len(),
        samples.len(),
        threshold_ns as f64 / 1000.0
    );
    let mut labels: Vec<&str> = time.keys().chain(hits.keys()).copied().collect();
    labels.sort_unstable();
    labels.dedup();
    for l in labels {
        let mut d = each.get(l).cloned().unwrap_or_default();
        d.sort_unstable();
        println!(
            "    {:<28} {:>5.1} % / {:>5.1} %   n {:>6}  p50 {:>8.1} µs  max {:>8.1} µs",
            l,
            100.0 * hits.get(l).copied().unwrap_or(0) as f64 / slow.len().max(1) as f64,
            100.0 * time.get(l).copied().unwrap_or_default().as_secs_f64() / span.as_secs_f64(),
            d.len(),
            if d.is_empty() { 0.0 } else { pct(&d, 0.5) },
            if d.is_empty() { 0.0 } else { pct(&d, 1.0) },
        );
    }
    println!(
        "    {:<28} {:>5.1} %",
        "(none)",
        100.0 * none as f64 / slow.len().max(1) as f64
    );
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn rewrite_loop(
    live: &Path,
    appender: &Appender,
    state_mb: u64,
    settings: &Settings,
    stop: &AtomicBool,
    log: &Mutex<RewriterLog>,
) {
    let records = state_mb * 1024 * 1024 / RECORD.len() as u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let (mut rw, begin_held) = {
            let _held = appender.file.lock();
            let t = Instant::now();
            let rw = settings.begin(live, &appender.gate);
            mark("begin (lock)", t);
            (rw, t.elapsed())
        };
        let t = Instant::now();
        for _ in 0..records {
            rw.write_all(RECORD).unwrap();
        }
        mark("state write", t);
        let t = Instant::now();
        rw.catch_up().unwrap();
        mark("catch_up", t);
        let stats: PacingStats = rw.pacing_stats();
        let mut f = appender.file.lock();
        let t = Instant::now();
        let committed = rw.commit().unwrap();
        let replaced = committed.replaced;
        let old = std::mem::replace(&mut *f, committed.file);
        drop(f);
        mark("commit (lock)", t);
        {
            let mut log = log.lock();
            log.held.push((begin_held + t.elapsed()).as_nanos() as u64);
            log.steps += stats.steps;
            log.yields += stats.yields;
            log.gate_waits += stats.gate_waits;
            log.gate_waited += stats.gate_waited;
            log.rested += stats.rested;
            if log.shortest_step == 0 || stats.shortest_step < log.shortest_step {
                log.shortest_step = stats.shortest_step;
            }
            log.bytes += committed.len;
            log.busy += started.elapsed();
        }
        // Closing the last handle of the replaced file frees its blocks, which
        // for a large file takes a while; it happens after the lock is released.
        let t = Instant::now();
        drop(old);
        match settings.release_step {
            None => drop(replaced),
            Some(step) => {
                replaced.release_in_steps(step).unwrap();
            }
        }
        mark("drop old file", t);
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
    appender: &Appender,
    state_mb: u64,
    settings: &Settings,
    phase: Duration,
    log: &Arc<Mutex<RewriterLog>>,
    events: &mut Vec<Event>,
) -> Vec<(Instant, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let rewriter = {
        let (live, appender, stop, log, settings) = (
            live.to_owned(),
            appender.clone(),
            stop.clone(),
            log.clone(),
            settings.clone(),
        );
        std::thread::Builder::new()
            .name("rewriter".into())
            .spawn(move || rewrite_loop(&live, &appender, state_mb, &settings, &stop, &log))
            .unwrap()
    };
    let samples = append_for(appender, phase);
    stop.store(true, Ordering::Relaxed);
    rewriter.join().unwrap();
    events.append(&mut PHASES.lock());
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
                " {:>6.2} {:>6} {:>7.0} {:>8.1} {:>6}/{:<6} {:>5} {:>6}/{:<9.1} {:>8.0}",
                pct(samples, 0.99) / pct(alone, 0.99),
                held.len(),
                log.bytes as f64 / log.busy.as_secs_f64().max(1e-9) / 1e6,
                pct(&held, 0.5) / 1000.0,
                log.yields,
                log.steps,
                log.shortest_step / 1024,
                log.gate_waits,
                log.gate_waited.as_secs_f64() * 1000.0,
                log.rested.as_secs_f64() * 1000.0
            );
        }
    }
}

fn main() {
    let seconds = env_u64("SECONDS", 3);
    let state_mb = env_u64("STATE_MB", 32);
    let rounds = env_u64("ROUNDS", 3);
    let settings = Settings::from_env();
    // Fixes the base of the monotonic timestamps before any append.
    mono_ns(Instant::now());
    // The same settings with the appender's syncs marked on a gate the
    // rewrite shares (`Rewrite::sync_gate`).
    let gated = Settings {
        gate: true,
        ..settings.clone()
    };
    // The peer: the settings before pacing existed (no pacing, 4 MiB
    // write-back steps), measured in the same run.
    let before = Settings {
        sync_every: Some(4 * 1024 * 1024),
        pacing: Some(Pacing::off()),
        max_rate: 0,
        release_step: None,
        gate: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("appendonly.aof");
    let appender = Appender {
        file: Arc::new(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&live)
                .unwrap(),
        )),
        gate: SyncGate::new(),
    };

    let mut phases = [
        Phase::new("during rewrites (settings)", settings.clone()),
        Phase::new("during rewrites (with gate)", gated.clone()),
        Phase::new("during rewrites (before)", before.clone()),
    ];
    // The phases alternate so that noise from other processes on the machine
    // falls on every side alike.
    let phase = Duration::from_secs(seconds).div_f64(rounds as f64);
    let mut alone = Vec::new();
    for round in 0..rounds {
        settle(dir.path());
        alone.extend(latencies(&append_for(&appender, phase)));
        // Which rewrite phase goes first rotates, so that whatever one
        // leaves behind falls on each of the others in turn.
        let n = phases.len();
        for k in 0..n {
            let p = &mut phases[(k + round as usize) % n];
            settle(dir.path());
            let samples = during(
                &live,
                &appender,
                state_mb,
                &p.settings,
                phase,
                &p.log,
                &mut p.events,
            );
            p.timed.extend(samples);
        }
    }
    alone.sort_unstable();
    for p in &mut phases {
        p.sorted = latencies(&p.timed);
        p.sorted.sort_unstable();
    }

    println!(
        "appender latency, {seconds} s per phase in {rounds} alternating rounds, back-to-back rewrites of a {state_mb} MB state"
    );
    println!("rewrite settings: {}", settings.describe());
    println!("with gate:        {}", gated.describe());
    println!("before pacing:    {}", before.describe());
    println!(
        "{:<30} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>7} {:>8} {:>13} {:>5} {:>16} {:>8}",
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
        "min KiB",
        "gate waits",
        "rest ms"
    );
    report("alone", &alone, None, &alone);
    for p in &phases {
        report(p.name, &p.sorted, Some(&p.log.lock()), &alone);
    }
    println!(
        "p99 ratio (during / alone): settings {:.2}, with gate {:.2}, before pacing {:.2}",
        pct(&phases[0].sorted, 0.99) / pct(&alone, 0.99),
        pct(&phases[1].sorted, 0.99) / pct(&alone, 0.99),
        pct(&phases[2].sorted, 0.99) / pct(&alone, 0.99)
    );
    if std::env::var_os("PHASES").is_some() {
        // The appends at or above the phase's p99 are its tail.
        let tail = |s: &[u64]| (pct(s, 0.99) * 1000.0) as u64 - 1;
        for p in &phases {
            attribute(p.name, &p.timed, &p.events, tail(&p.sorted));
        }
    }
    println!(
        "columns: ratio = p99 / alone p99; rwrts = rewrites completed; MB/s = rewriter throughput while running; lock ms = p50 appender lock held per rewrite (begin + commit); yields/steps = paced steps after which the live file had grown / all paced steps; min KiB = shortest step; gate waits = steps that waited for the appender's sync / total ms waited; rest ms = time the write-back rested (Pacing::rest)"
    );
}
