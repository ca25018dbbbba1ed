//! Helpers shared by the integration tests that need a memory figure they
//! set themselves.

// Each test binary includes this file and uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memwatch::{
    CancellationToken, Config, Limits, MemorySource, Readings, Sample, Signal, Watcher,
};

/// A source that reports the figure the test stores in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settable(pub(crate) Arc<AtomicU64>);

impl Settable {
    pub(crate) fn set(&self, used: u64) {
        self.0.store(used, Ordering::SeqCst);
    }
}

impl MemorySource for Settable {
    fn signal(&self) -> Signal {
        Signal::Rss
    }

    fn sample(&mut self) -> memwatch::Result<Sample> {
        let used = self.0.load(Ordering::SeqCst);
        Ok(Sample {
            used,
            readings: Readings {
                rss: Some(used),
                ..Default::default()
            },
        })
    }
}

/// A watcher over a [`Settable`] source, built from `config`.
pub(crate) fn settable_watcher(config: Config) -> (Watcher, Settable) {
    let source = Settable::default();
    let watcher = Watcher::with_source(
        config,
        CancellationToken::new(),
        Box::new(source.clone()),
        Limits::default(),
    )
    .unwrap()
    .expect("an enabled config");
    (watcher, source)
}

/// The names of the files in `dir` that end with `suffix`, sorted.
pub(crate) fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The one diagnostics bundle in `dir`, parsed.
pub(crate) fn only_bundle(dir: &Path) -> serde_json::Value {
    let bundles = files_ending(dir, ".json");
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    serde_json::from_slice(&std::fs::read(dir.join(&bundles[0])).unwrap()).unwrap()
}
