//! The cost of heap profiles (`Config::heap_profile`), for memwatch/README.md:
//!
//! 1. the overhead of jemalloc's sampling on an allocation-heavy workload:
//!    the same binary (jemalloc built with profiling) run as a child process
//!    without `prof:true` and with `prof:true,lg_prof_sample:19` (one sample
//!    per 512 KiB allocated on average, jemalloc's default period), in
//!    interleaved rounds, as the ratio of median wall times;
//! 2. what one profile costs when it is written: the time of the check that
//!    turns the level elevated and writes it, and the file's size, on a heap
//!    of 200 000 live objects.
//!
//! `cargo bench -p memwatch --features heap-profile --bench heap_profile`
//! (about half a minute).

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwatch::{
    CancellationToken, Config, Limits, MemorySource, Readings, Sample, Signal, Threshold, Watcher,
};

#[global_allocator]
static GLOBAL: memwatch::Jemalloc = memwatch::Jemalloc;

/// Set in a child process: run the workload and print its wall time.
const ROLE: &str = "MEMWATCH_BENCH_ROLE";
/// jemalloc's start-up options for a prefixed jemalloc (`tikv-jemalloc-sys`).
const MALLOC_CONF: &str = "_RJEM_MALLOC_CONF";

const THREADS: usize = 2;
const OPS: u64 = 3_000_000;
const ROUNDS: usize = 7;

fn opt_prof() -> bool {
    // SAFETY: `opt.prof` is a C `bool`, read into a `bool`.
    unsafe { tikv_jemalloc_ctl::raw::read::<bool>(b"opt.prof\0") }.unwrap_or(false)
}

/// Allocation churn: each thread allocates blocks of 8 B to 4 KiB and frees
/// the block it allocated 1024 allocations earlier. Returns the wall time.
fn workload() -> Duration {
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut ring: Vec<Vec<u8>> = (0..1024).map(|_| Vec::new()).collect();
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                for i in 0..OPS {
                    // xorshift: sizes spread over the small size classes.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = 8 + (x % 4088) as usize;
                    let mut block = Vec::with_capacity(size);
                    block.push(i as u8);
                    ring[(i % 1024) as usize] = black_box(block);
                }
                black_box(ring);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

/// Runs the workload in a child process with jemalloc options `conf`.
fn child(conf: Option<&str>) -> Duration {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, "workload").env_remove(MALLOC_CONF);
    if let Some(conf) = conf {
        cmd.env(MALLOC_CONF, conf);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (prof, nanos) = text.trim().split_once(' ').unwrap();
    assert_eq!(prof == "true", conf.is_some(), "opt.prof in the child");
    Duration::from_nanos(nanos.parse().unwrap())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[derive(Debug, Clone, Default)]
struct Settable(Arc<AtomicU64>);

impl MemorySource for Settable {
    fn signal(&self) -> Signal {
        Signal::Rss
    }

    fn sample(&mut self) -> memwatch::Result<Sample> {
        Ok(Sample {
            used: self.0.load(Ordering::SeqCst),
            readings: Readings::default(),
        })
    }
}

/// In a child with `prof:true`: the check that turns the level elevated and
/// writes a profile, on a heap of 200 000 live objects from 8 threads.
fn dump_cost() -> (Duration, u64) {
    let held: Vec<Vec<Vec<u8>>> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                (0..25_000)
                    .map(|i| vec![t as u8; 64 + (i % 16) * 64])
                    .collect()
            })
        })
        .map(|h| h.join().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let source = Settable::default();
    let watcher = Watcher::with_source(
        Config {
            threshold: Some(Threshold::Bytes(1000)),
            soft: Some(Threshold::Bytes(600)),
            diagnostics_dir: Some(dir.path().to_path_buf()),
            heap_profile: true,
            ..Default::default()
        },
        CancellationToken::new(),
        Box::new(source.clone()),
        Limits::default(),
    )
    .unwrap()
    .unwrap();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        source.0.store(100, Ordering::SeqCst);
        watcher.check().unwrap();
        source.0.store(700, Ordering::SeqCst);
        let start = Instant::now();
        watcher.check().unwrap();
        times.push(start.elapsed());
        let newest = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .max_by_key(|e| e.file_name())
            .unwrap();
        size = newest.metadata().unwrap().len();
    }
    assert_eq!(watcher.metrics().heap_profiles, 5);
    black_box(held);
    (median(times), size)
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("workload") => {
            let d = workload();
            println!("{} {}", opt_prof(), d.as_nanos());
            return;
        }
        Ok("dump") => {
            let (d, size) = dump_cost();
            println!("{} {size}", d.as_nanos());
            return;
        }
        _ => {}
    }
    // `cargo bench` passes `--bench`; nothing else is expected.
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before = load();
    let variants: [Option<&str>; 3] = [
        None,
        Some("prof:true,lg_prof_sample:19"),
        Some("prof:true,lg_prof_sample:21"),
    ];
    let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    // One unmeasured run of each to warm the page cache and the binary.
    for conf in variants {
        child(conf);
    }
    for _ in 0..ROUNDS {
        for (conf, times) in variants.iter().zip(&mut runs) {
            times.push(child(*conf));
        }
    }
    let base = median(runs[0].clone());
    let ops = (THREADS as u64 * OPS) as f64;
    println!(
        "#### Sampling overhead ({THREADS} threads × {OPS} alloc/free, 8 B–4 KiB, median of {ROUNDS} interleaved rounds, one process per round)\n"
    );
    println!("| jemalloc options | median wall time | per alloc/free | ratio | rounds (ms) |");
    println!("|---|---|---|---|---|");
    for (conf, times) in variants.iter().zip(&runs) {
        let m = median(times.clone());
        let ratio = m.as_secs_f64() / base.as_secs_f64();
        let rounds = times
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ");
        let name = match conf {
            None => "none (profiling built, `prof:false`)".to_owned(),
            Some(c) => format!("`{c}`"),
        };
        println!(
            "| {name} | {:.1} ms | {:.1} ns | {ratio:.3} ({:+.1} %) | {rounds} |",
            m.as_secs_f64() * 1e3,
            m.as_nanos() as f64 / ops,
            (ratio - 1.0) * 100.0,
        );
    }
    println!(
        "\nload average before: {}load average after: {}",
        load_before,
        load()
    );

    let sampled = "prof:true,lg_prof_sample:19";
    let out = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "dump")
        .env(MALLOC_CONF, sampled)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut f = text.split_whitespace();
    let nanos: u64 = f.next().unwrap().parse().unwrap();
    let size: u64 = f.next().unwrap().parse().unwrap();
    println!(
        "\n#### Writing one profile (`{sampled}`, 8 threads, 200 000 live objects, median of 5)\n"
    );
    println!("| check that turns the level elevated and writes the profile | profile size |");
    println!("|---|---|");
    println!(
        "| {:.1} ms | {:.0} KiB |",
        Duration::from_nanos(nanos).as_secs_f64() * 1e3,
        size as f64 / 1024.0
    );
}
