//! The cost of one size check: the measurement through each kind of
//! [`SizeSource`] and the trigger rule applied to it.

use std::sync::Arc;

use aof_compactor::bytesize::ByteSize;
use aof_compactor::{Config, SizeSource};
use divan::Bencher;

fn main() {
    divan::main();
}

fn log_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appendonly.aof");
    std::fs::write(&path, vec![b'x'; 1 << 20]).unwrap();
    (dir, path)
}

/// `stat(2)` on the path, what a `SizeSource::Path` does at every check.
#[divan::bench]
fn path(bencher: Bencher<'_, '_>) {
    let (_dir, path) = log_file();
    let source = SizeSource::Path(path);
    bencher.bench_local(|| source.size().unwrap());
}

/// `fstat(2)` on an open file.
#[divan::bench]
fn open_file(bencher: Bencher<'_, '_>) {
    let (_dir, path) = log_file();
    let source = SizeSource::File(Arc::new(std::fs::File::open(path).unwrap()));
    bencher.bench_local(|| source.size().unwrap());
}

/// A closure summing a base file and two increments, as for a multi-part log.
#[divan::bench]
fn closure_three_files(bencher: Bencher<'_, '_>) {
    let (dir, path) = log_file();
    let parts = [path, dir.path().join("1.incr"), dir.path().join("2.incr")];
    for p in &parts[1..] {
        std::fs::write(p, b"incr").unwrap();
    }
    let source = SizeSource::from_fn(move || {
        parts
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()))
            .sum()
    });
    bencher.bench_local(|| source.size().unwrap());
}

/// The full decision: measure by path, then apply the threshold and growth rule.
#[divan::bench]
fn path_and_rule(bencher: Bencher<'_, '_>) {
    let (_dir, path) = log_file();
    let source = SizeSource::Path(path);
    let config = Config {
        min_size: ByteSize::kb(64),
        growth_percent: Some(100),
        ..Default::default()
    };
    bencher.bench_local(|| {
        let size = source.size().unwrap();
        config.size_triggers(divan::black_box(size), divan::black_box(300_000))
    });
}
