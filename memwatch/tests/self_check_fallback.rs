//! Without jemalloc as the global allocator, the start-up self-check reports
//! the fallback loudly and watches process RSS instead of a number that
//! cannot move.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use memwatch::{Config, Signal, Threshold, Watcher};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn falls_back_to_rss_and_says_so() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for signal in [
        Signal::Auto,
        Signal::JemallocResident,
        Signal::JemallocAllocated,
    ] {
        let cfg = Config {
            threshold: Some(Threshold::Bytes(1 << 50)),
            signal,
            ..Default::default()
        };
        let w = Watcher::new(cfg, CancellationToken::new())
            .unwrap()
            .unwrap();
        assert_eq!(w.signal(), Signal::Rss, "{signal}");
        let reason = w.degraded().expect("degraded reason");
        #[cfg(feature = "jemalloc")]
        assert!(reason.contains("not the global allocator"), "{reason}");
        #[cfg(not(feature = "jemalloc"))]
        assert!(
            reason.contains("without its `jemalloc` feature"),
            "{reason}"
        );
        assert_eq!(w.metrics().degraded.as_deref(), Some(reason));

        // The fallback figure moves with a real allocation.
        let before = w.check().unwrap().sample.used;
        let block = std::hint::black_box(vec![7u8; 64 << 20]);
        let after = w.check().unwrap().sample.used;
        drop(block);
        assert!(after >= before + (48 << 20), "RSS {before} -> {after}");
    }
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("ERROR"), "{text}");
    assert!(text.contains("watching process RSS instead"), "{text}");
}

/// Heap profiles asked for in a process whose Rust heap is not jemalloc's:
/// an error line when the watcher is built, no profile, and the reason in
/// the firing's bundle.
#[test]
fn heap_profiles_say_why_they_cannot_be_written() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
    #[cfg(feature = "jemalloc")]
    assert!(reason.contains("not the global allocator"), "{reason}");
    #[cfg(not(feature = "jemalloc"))]
    assert!(
        reason.contains("without its `jemalloc` feature"),
        "{reason}"
    );
    assert_eq!(w.metrics().heap_profiles, 0);
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("ERROR")
            && text.contains("heap profiles were requested but cannot be written"),
        "{text}"
    );
}
