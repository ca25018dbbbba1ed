//! With jemalloc built with profiling, jemalloc as the global allocator and
//! `prof:true` from the start, the watcher writes jemalloc heap profiles
//! beside the diagnostics bundle when the level turns elevated and when it
//! fires, and the bundle names the firing's profile. Runs with the
//! `heap-profile` feature (`cargo test -p memwatch --features heap-profile`).

mod common;

use std::path::Path;

use common::{files_ending, only_bundle, settable_watcher};
use memwatch::{Config, Level, Threshold};

#[global_allocator]
static GLOBAL: memwatch::Jemalloc = memwatch::Jemalloc;

/// jemalloc reads its options once, before the first allocation, so the
/// binary carries them: profiling on, one sample per 64 KiB allocated on
/// average.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 28] = b"prof:true,lg_prof_sample:16\0";

/// A jemalloc heap profile starts with `heap_v2/<sample period>`; each
/// call site is a line `@ <return addresses>` followed by
/// `  t*: <live objects>: <live bytes> [...]`. Returns the live bytes of the
/// largest site.
fn largest_site_bytes(profile: &Path) -> u64 {
    let text = std::fs::read_to_string(profile).unwrap();
    assert!(
        text.starts_with("heap_v2/65536\n"),
        "{}",
        &text[..text.len().min(200)]
    );
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("@ "))
        .map(|w| {
            let totals = w[1]
                .trim()
                .strip_prefix("t*: ")
                .unwrap_or_else(|| panic!("{}", w[1]));
            totals
                .split(':')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .max()
        .expect("at least one call site")
}

#[test]
fn profiles_when_elevated_and_when_firing() {
    let dir = tempfile::tempdir().unwrap();
    let (watcher, used) = settable_watcher(Config {
        threshold: Some(Threshold::Bytes(1000)),
        soft: Some(Threshold::Bytes(600)),
        diagnostics_dir: Some(dir.path().to_path_buf()),
        heap_profile: true,
        ..Default::default()
    });
    // A block the profiles must account for: far above the sampling
    // period, so it is sampled whatever the draw.
    let held = std::hint::black_box(vec![7u8; 32 << 20]);

    used.set(100);
    assert_eq!(watcher.check().unwrap().level, Level::Normal);
    assert!(files_ending(dir.path(), ".heap").is_empty());

    used.set(700);
    assert_eq!(watcher.check().unwrap().level, Level::Elevated);
    let elevated = files_ending(dir.path(), "-elevated.heap");
    assert_eq!(elevated.len(), 1, "{elevated:?}");
    assert!(largest_site_bytes(&dir.path().join(&elevated[0])) >= 32 << 20);
    // Staying elevated writes nothing more.
    used.set(750);
    watcher.check().unwrap();
    assert_eq!(files_ending(dir.path(), ".heap").len(), 1);

    used.set(1200);
    assert!(watcher.check().unwrap().fired_now);
    let fired = files_ending(dir.path(), "-fired.heap");
    assert_eq!(fired.len(), 1, "{fired:?}");
    let path = dir.path().join(&fired[0]);
    assert!(largest_site_bytes(&path) >= 32 << 20);
    let bundle = only_bundle(dir.path());
    assert_eq!(bundle["heap_profile"]["path"], path.display().to_string());
    assert!(bundle["heap_profile"]["error"].is_null());
    assert_eq!(watcher.metrics().heap_profiles, 2);
    // No temporary file is left behind.
    assert!(files_ending(dir.path(), ".tmp").is_empty());
    drop(held);
}
