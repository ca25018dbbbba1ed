//! The figures in memwatch/README.md, in one run:
//!
//! 1. the cost of one sample per signal, p50 and p99, on an idle heap and on
//!    a heap with populated arenas across threads, beside reading
//!    `/proc/self/status` (the usual "cheap" alternative) in the same run;
//! 2. the watcher thread's CPU per tick with no workload, beside a thread
//!    that only parks for the same interval;
//! 3. the overhead of a running watcher on an allocation-heavy workload
//!    (jemalloc-resident at 10 ms with and without the RSS bound, 100 ms and
//!    1 s, RSS at 10 ms), as a wall time ratio to no watcher and as the
//!    watcher thread's CPU;
//! 4. the reaction time from crossing the threshold to the token being
//!    cancelled, by memory that is written and by a block never written.
//!
//! `cargo bench -p memwatch --bench figures` (about a minute: the overhead
//! part alone is 42 workload runs of the better part of a second each).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwatch::{
    Cgroup, Config, MemorySource, Signal, SystemSource, Threshold, Watcher, DEFAULT_MAX_STATS_AGE,
};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn time_calls(iters: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut t: Vec<Duration> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (percentile(&t, 0.5), percentile(&t, 0.99))
}

fn ns(d: Duration) -> String {
    format!("{:.1} µs", d.as_nanos() as f64 / 1000.0)
}

fn sample_costs(label: &str) {
    let cgroup = Cgroup::discover().ok().flatten();
    let mut rows = Vec::new();
    for signal in [
        Signal::JemallocResident,
        Signal::Rss,
        Signal::CgroupWorkingSet,
    ] {
        let mut src = SystemSource::new(signal, cgroup.as_ref()).expect("source");
        if src.signal() != signal {
            rows.push(format!(
                "| {signal} | unavailable here: {:?} | |",
                src.degraded()
            ));
            continue;
        }
        let (p50, p99) = time_calls(20_000, || {
            black_box(src.sample().unwrap());
        });
        rows.push(format!("| {signal} | {} | {} |", ns(p50), ns(p99)));
    }
    let (p50, p99) = time_calls(5_000, || {
        black_box(std::fs::read_to_string("/proc/self/status").unwrap());
    });
    rows.push(format!(
        "| /proc/self/status (open+read+close) | {} | {} |",
        ns(p50),
        ns(p99)
    ));
    println!("\n### Sample cost, {label}\n\n| signal | p50 | p99 |\n|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// Populates jemalloc's arenas the way a busy server does: several threads
/// each allocate many small and medium objects and free half of them.
fn populate() -> Vec<Vec<Box<[u8]>>> {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                let mut kept = Vec::new();
                for i in 0..50_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = 16 + (x % 2032) as usize;
                    let b = vec![i as u8; size].into_boxed_slice();
                    if i % 2 == 0 {
                        kept.push(b);
                    }
                }
                kept
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// An allocation-heavy workload: every thread allocates and frees objects
/// of random sizes while keeping a rolling working set.
fn workload(threads: usize, ops: usize) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..threads as u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut x = 0x2545_F491_4F6C_DD1Du64 ^ (t + 1);
                let mut slots: Vec<Option<Vec<u8>>> = (0..1024).map(|_| None).collect();
                for _ in 0..ops {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = 8 + (x % 4096) as usize;
                    let slot = (x >> 32) as usize % slots.len();
                    slots[slot] = Some(vec![x as u8; size]);
                }
                black_box(slots);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

fn overhead() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let ops = 6_000_000;
    let ms = Duration::from_millis;
    let age = DEFAULT_MAX_STATS_AGE;
    // Interval, signal and max_stats_age of a running watcher.
    type Running = (Duration, Signal, Duration);
    let variants: [(&str, Option<Running>); 7] = [
        ("no watcher", None),
        ("no watcher (noise check)", None),
        (
            "jemalloc-resident at 10 ms",
            Some((ms(10), Signal::JemallocResident, age)),
        ),
        (
            "jemalloc-resident at 10 ms, full sample every tick (max_stats_age 0)",
            Some((ms(10), Signal::JemallocResident, Duration::ZERO)),
        ),
        (
            "jemalloc-resident at 100 ms",
            Some((ms(100), Signal::JemallocResident, age)),
        ),
        (
            "jemalloc-resident at 1 s",
            Some((ms(1000), Signal::JemallocResident, age)),
        ),
        ("rss at 10 ms", Some((ms(10), Signal::Rss, age))),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut samples = vec![0u64; variants.len()];
    let mut ticks = vec![0u64; variants.len()];
    let mut watcher_cpu = vec![Duration::ZERO; variants.len()];
    let mut workload_cpu = vec![Duration::ZERO; variants.len()];
    workload(threads, ops / 4); // warm-up
    for _round in 0..7 {
        for (i, (_, interval)) in variants.iter().enumerate() {
            let token = CancellationToken::new();
            let running = interval.map(|(iv, signal, max_stats_age)| {
                let cfg = Config {
                    threshold: Some(Threshold::Bytes(1 << 50)),
                    poll_interval: iv,
                    signal,
                    max_stats_age,
                    ..Default::default()
                };
                let w = Watcher::new(cfg, token.clone()).unwrap().unwrap();
                let h = w.spawn().unwrap();
                (w, h)
            });
            let cpu0 = process_cpu();
            times[i].push(workload(threads, ops));
            let cpu = process_cpu() - cpu0;
            let wcpu = watcher_thread_cpu();
            token.cancel();
            watcher_cpu[i] += wcpu;
            workload_cpu[i] += cpu.saturating_sub(wcpu);
            if let Some((w, h)) = running {
                h.join();
                let m = w.metrics();
                samples[i] += m.samples;
                ticks[i] += m.samples + m.estimates;
            }
        }
    }
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    println!(
        "\n### Watcher overhead ({threads} workload threads × {ops} alloc/free, median of 7 interleaved rounds)\n"
    );
    println!(
        "| variant | median wall time | wall ratio to no watcher | ticks (full samples) | watcher thread CPU / workload CPU | watcher CPU per tick | watcher CPU / wall time |\n|---|---|---|---|---|---|---|"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratio = medians[i].as_secs_f64() / medians[0].as_secs_f64();
        println!(
            "| {name} | {:.1} ms | {:.4} ({:+.2} %) | {} ({}) | {:.4} % | {} | {:.4} % |",
            medians[i].as_secs_f64() * 1e3,
            ratio,
            (ratio - 1.0) * 100.0,
            ticks[i],
            samples[i],
            watcher_cpu[i].as_secs_f64() / workload_cpu[i].as_secs_f64() * 100.0,
            if ticks[i] == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.1} µs",
                    watcher_cpu[i].as_secs_f64() * 1e6 / ticks[i] as f64
                )
            },
            // Share of one core over the rounds' wall time: unlike the share of
            // the workload's CPU, it does not grow when other processes on the
            // machine take CPU away from the workload.
            watcher_cpu[i].as_secs_f64() / times[i].iter().sum::<Duration>().as_secs_f64() * 100.0
        );
    }
}

/// The watcher thread's CPU per tick with nothing else running: the fixed
/// cost of waking up, sampling and going back to sleep.
fn idle_tick_cost() {
    println!("\n### Watcher thread CPU per tick, no workload (2 s at 10 ms)\n");
    println!("| signal | ticks (full samples) | CPU per tick |\n|---|---|---|");
    for (signal, max_stats_age) in [
        (Signal::JemallocResident, DEFAULT_MAX_STATS_AGE),
        (Signal::JemallocResident, Duration::ZERO),
        (Signal::Rss, DEFAULT_MAX_STATS_AGE),
    ] {
        let token = CancellationToken::new();
        let cfg = Config {
            threshold: Some(Threshold::Bytes(1 << 50)),
            poll_interval: Duration::from_millis(10),
            signal,
            max_stats_age,
            ..Default::default()
        };
        let w = Watcher::new(cfg, token.clone()).unwrap().unwrap();
        let h = w.spawn().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let cpu = watcher_thread_cpu();
        token.cancel();
        h.join();
        let m = w.metrics();
        let n = m.samples + m.estimates;
        println!(
            "| {signal}, max_stats_age {max_stats_age:?} | {n} ({}) | {:.1} µs |",
            m.samples,
            cpu.as_secs_f64() * 1e6 / n as f64
        );
    }
    // The floor: a thread that only parks for the interval, as the watcher
    // does between samples, so the wake-up's own cost shows beside the rows
    // above.
    let bare = std::thread::Builder::new()
        .name("memwatch".into())
        .spawn(|| {
            let end = Instant::now() + Duration::from_secs(2);
            let mut ticks = 0u64;
            while Instant::now() < end {
                std::thread::park_timeout(Duration::from_millis(10));
                ticks += 1;
            }
            (ticks, watcher_thread_cpu())
        })
        .unwrap();
    let (n, cpu) = bare.join().unwrap();
    println!(
        "| none (the thread only parks for 10 ms) | {n} | {:.1} µs |",
        cpu.as_secs_f64() * 1e6 / n as f64
    );
}

/// CPU time of the whole process (user + system).
fn process_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the thread named `memwatch`, from its schedstat (nanosecond
/// resolution), or zero when there is none.
fn watcher_thread_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "memwatch" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let ns: u64 = stat
                .split(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Duration::from_nanos(ns);
        }
    }
    Duration::ZERO
}

/// How the threshold is crossed in [`reaction`].
#[derive(Clone, Copy, PartialEq)]
enum Crossing {
    /// 1 MiB blocks written as they are allocated: memory that becomes
    /// resident, as memory that the OOM killer counts does.
    Touched,
    /// One 96 MiB block that is never written: jemalloc counts it as
    /// resident when it hands it out, but the kernel backs none of it.
    Untouched,
}

fn reaction(interval: Duration, max_stats_age: Duration, trials: u32, crossing: Crossing) {
    let mut reactions = Vec::new();
    let mut src = SystemSource::new(Signal::JemallocResident, None).unwrap();
    for trial in 0..trials {
        src.purge().unwrap();
        let base = src.sample().unwrap().used;
        let token = CancellationToken::new();
        let cfg = Config {
            threshold: Some(Threshold::Bytes(base + (64 << 20))),
            poll_interval: interval,
            max_stats_age,
            signal: Signal::JemallocResident,
            ..Default::default()
        };
        let w = Watcher::new(cfg, token.clone()).unwrap().unwrap();
        let cancelled_at = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let waiter = {
            let (token, cancelled_at) = (token.clone(), cancelled_at.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(token.cancelled());
                cancelled_at.store(epoch.elapsed().as_nanos() as u64, Ordering::SeqCst);
            })
        };
        let h = w.spawn().unwrap();
        // Cross at a different phase of the interval in every trial.
        std::thread::sleep(interval.mul_f64(1.0 + f64::from(trial % 10) / 10.0));
        // jemalloc counts a large extent as active and resident as soon as
        // it is handed out, so the threshold (64 MiB above the purged
        // resident figure) is crossed when the block that takes the total
        // past 64 MiB is returned.
        let (blocks, crossed) = match crossing {
            Crossing::Touched => {
                let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(96);
                let mut crossed = Duration::ZERO;
                for i in 1..=96 {
                    blocks.push(vec![i as u8; 1 << 20]);
                    if i == 64 {
                        crossed = epoch.elapsed();
                    }
                }
                (blocks, crossed)
            }
            Crossing::Untouched => {
                let block: Vec<u8> = Vec::with_capacity(96 << 20);
                let crossed = epoch.elapsed();
                (vec![block], crossed)
            }
        };
        waiter.join().unwrap();
        h.join();
        black_box(&blocks);
        drop(blocks);
        let at = Duration::from_nanos(cancelled_at.load(Ordering::SeqCst));
        reactions.push(at.saturating_sub(crossed));
    }
    reactions.sort();
    // Resident growth moves the RSS bound, so it is seen at the next tick;
    // a block nobody writes is seen at the next full sample, at most
    // `max_stats_age` after the previous one.
    let bound = match crossing {
        Crossing::Touched => interval,
        Crossing::Untouched => interval.max(max_stats_age),
    } + Duration::from_millis(5);
    let within = reactions.iter().filter(|r| **r <= bound).count();
    println!(
        "| {:?} | {:?} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {within}/{} within {bound:?} |",
        interval,
        max_stats_age,
        match crossing {
            Crossing::Touched => "written 1 MiB blocks",
            Crossing::Untouched => "one unwritten 96 MiB block",
        },
        trials,
        percentile(&reactions, 0.5).as_secs_f64() * 1e3,
        percentile(&reactions, 0.99).as_secs_f64() * 1e3,
        reactions.last().unwrap().as_secs_f64() * 1e3,
        trials
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    println!("memwatch figures (jemalloc global allocator, release build)");
    sample_costs("idle heap");
    let populated = populate();
    let held: usize = populated.iter().flatten().map(|b| b.len()).sum();
    sample_costs(&format!(
        "populated heap (8 threads, 200 k live objects, {} MiB held)",
        held >> 20
    ));
    drop(populated);
    idle_tick_cost();
    overhead();
    println!("\n### Reaction time: threshold crossed → token cancelled\n");
    println!("| interval | max_stats_age | crossed by | trials | p50 | p99 | max | within bound |\n|---|---|---|---|---|---|---|---|");
    let ms = Duration::from_millis;
    let age = DEFAULT_MAX_STATS_AGE;
    reaction(ms(10), age, 50, Crossing::Touched);
    reaction(ms(10), Duration::ZERO, 50, Crossing::Touched);
    reaction(ms(10), age, 50, Crossing::Untouched);
    reaction(ms(100), age, 20, Crossing::Touched);
    reaction(ms(1000), age, 5, Crossing::Touched);
}
