//! With jemalloc as the global allocator, the self-check passes and the
//! jemalloc signals follow real allocations.

mod common;

use memwatch::{Config, MemorySource, Signal, SystemSource, Threshold, Watcher};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's figures are process-wide, so the tests of this file take
/// turns to keep one test's allocations out of another's deltas.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn watcher(signal: Signal) -> Watcher {
    let cfg = Config {
        threshold: Some(Threshold::Bytes(1 << 50)),
        signal,
        ..Default::default()
    };
    Watcher::new(cfg, CancellationToken::new())
        .unwrap()
        .unwrap()
}

#[cfg(feature = "jemalloc")]
#[test]
fn jemalloc_is_active_and_moves() {
    let _serial = serial();
    let w = watcher(Signal::Auto);
    assert_eq!(w.signal(), Signal::JemallocResident);
    assert_eq!(w.degraded(), None);

    for signal in [
        Signal::JemallocResident,
        Signal::JemallocActive,
        Signal::JemallocAllocated,
    ] {
        let w = watcher(signal);
        assert_eq!(w.signal(), signal);
        let before = w.check().unwrap().sample.used;
        let block = std::hint::black_box(vec![7u8; 64 << 20]);
        let after = w.check().unwrap().sample.used;
        drop(block);
        // Resident may reuse dirty pages left by earlier frees, so the delta
        // is checked with a margin; it is zero when jemalloc is not in use.
        assert!(
            after >= before + (48 << 20),
            "{signal}: {before} -> {after}"
        );
        let j = w.metrics().last_sample.unwrap().readings.jemalloc.unwrap();
        assert!(
            j.allocated >= 64 << 20 && j.resident >= 64 << 20 && j.mapped >= 64 << 20,
            "{j:?}"
        );
    }
}

#[cfg(feature = "jemalloc")]
#[test]
fn purge_returns_dirty_pages() {
    let _serial = serial();
    let mut source = SystemSource::new(Signal::JemallocResident, None).unwrap();
    assert!(source.can_purge());
    // Many small blocks freed together leave dirty pages behind, which
    // jemalloc keeps resident until decay (10 s by default) or a purge.
    let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4000]).collect();
    drop(std::hint::black_box(blocks));
    let dirty = source.sample().unwrap().used;
    source.purge().unwrap();
    let purged = source.sample().unwrap().used;
    assert!(
        purged + (40 << 20) < dirty,
        "resident {dirty} -> {purged} after purge"
    );
}

#[cfg(feature = "jemalloc")]
#[test]
fn the_rss_bound_covers_memory_that_becomes_resident() {
    let _serial = serial();
    for signal in [
        Signal::JemallocResident,
        Signal::JemallocActive,
        Signal::JemallocAllocated,
    ] {
        let mut source = SystemSource::new(signal, None).unwrap();
        assert_eq!(source.upper_bound().unwrap(), None, "no full sample yet");
        // Dirty pages left by earlier tests would be reused without moving
        // RSS (they are in the base already); purged, the block must fault
        // in fresh pages.
        source.purge().unwrap();
        let first = source.sample().unwrap();
        assert!(first.readings.rss.is_some());
        let start = source
            .upper_bound()
            .unwrap()
            .expect("a bound after a sample");
        assert!(
            start >= first.used,
            "{signal}: bound {start} < {}",
            first.used
        );
        // Touched pages: what the OOM killer counts.
        let block = std::hint::black_box(vec![7u8; 64 << 20]);
        let bound = source.upper_bound().unwrap().unwrap();
        let fresh = source.sample().unwrap();
        drop(block);
        assert!(bound >= start + (48 << 20), "{signal}: {start} -> {bound}");
        assert!(
            bound >= fresh.used,
            "{signal}: bound {bound} below a fresh sample {}",
            fresh.used
        );
    }
    // Cheap signals have no bound: their sample is the cheap read.
    let mut rss = SystemSource::new(Signal::Rss, None).unwrap();
    rss.sample().unwrap();
    assert_eq!(rss.upper_bound().unwrap(), None);
}

#[cfg(feature = "jemalloc")]
#[test]
fn the_allocator_report_is_jemallocs_json() {
    let _serial = serial();
    let mut source = SystemSource::new(Signal::JemallocResident, None).unwrap();
    let report = source.allocator_report().expect("a report");
    let v: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    assert!(
        v["jemalloc"]["stats"]["allocated"].as_u64().unwrap() > 0,
        "{report:.300}"
    );
    assert_eq!(
        SystemSource::new(Signal::Rss, None)
            .unwrap()
            .allocator_report(),
        None
    );
}

#[test]
fn rss_signal_is_available_too() {
    let _serial = serial();
    let w = watcher(Signal::Rss);
    assert_eq!(w.signal(), Signal::Rss);
    assert_eq!(w.degraded(), None);
    assert!(w.check().unwrap().sample.used > 0);
    let all = SystemSource::new(Signal::Rss, None).unwrap().read_all();
    assert!(all.rss.is_some());
}

/// jemalloc is the global allocator but profiling is not on (compiled out,
/// or compiled in without `prof:true` at start): no profile, and the bundle
/// says which of the two.
#[cfg(feature = "jemalloc")]
#[test]
fn heap_profiles_need_profiling_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (w, used) = common::settable_watcher(Config {
        threshold: Some(Threshold::Bytes(1000)),
        diagnostics_dir: Some(dir.path().to_path_buf()),
        heap_profile: true,
        ..Default::default()
    });
    used.set(2000);
    assert!(w.check().unwrap().fired_now);
    assert!(common::files_ending(dir.path(), ".heap").is_empty());
    let bundle = common::only_bundle(dir.path());
    let reason = bundle["heap_profile"]["error"].as_str().unwrap();
    #[cfg(feature = "heap-profile")]
    assert!(reason.contains("profiling is off"), "{reason}");
    #[cfg(not(feature = "heap-profile"))]
    assert!(reason.contains("built without profiling"), "{reason}");
    assert_eq!(w.metrics().heap_profiles, 0);
}
