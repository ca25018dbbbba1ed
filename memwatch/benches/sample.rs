//! divan micro-benchmarks of one sample per signal, beside reading
//! `/proc/self/status`. `cargo bench -p memwatch --bench sample`.
//! The p50/p99 table with populated arenas is `--bench figures`.

use memwatch::{Cgroup, MemorySource, Signal, SystemSource};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    divan::main();
}

fn source(signal: Signal) -> Option<SystemSource> {
    let cgroup = Cgroup::discover().ok().flatten();
    let s = SystemSource::new(signal, cgroup.as_ref()).ok()?;
    (s.signal() == signal).then_some(s)
}

#[divan::bench(args = [Signal::JemallocResident, Signal::JemallocAllocated, Signal::Rss, Signal::CgroupWorkingSet])]
fn sample(bencher: divan::Bencher<'_, '_>, signal: Signal) {
    let Some(mut src) = source(signal) else {
        eprintln!("{signal}: unavailable on this host");
        return;
    };
    bencher.bench_local(|| src.sample().unwrap());
}

#[divan::bench]
fn proc_self_status() -> String {
    std::fs::read_to_string("/proc/self/status").unwrap()
}

#[divan::bench]
fn proc_self_statm_open_read_close() -> String {
    std::fs::read_to_string("/proc/self/statm").unwrap()
}
