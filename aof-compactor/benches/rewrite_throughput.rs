//! Rewrite throughput against its peer, measured in the same run: writing the
//! same records through [`Rewrite`] (temporary file, incremental fsync, tail
//! copy, fsync, rename, directory fsync) versus a plain buffered write of the
//! same bytes to a new file followed by one fsync.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use aof_compactor::Rewrite;
use divan::counter::BytesCount;
use divan::Bencher;

fn main() {
    divan::main();
}

/// 83-byte records, the shape of a small `SET key id POINT lat lon` command.
const RECORD: &[u8] = b"*6\r\n$3\r\nSET\r\n$5\r\nfleet\r\n$9\r\ntruck1234\r\n$5\r\nPOINT\r\n$9\r\n33.512345\r\n$10\r\n-112.26789\r\n";

const SIZES_MB: &[usize] = &[8, 64];

struct Setup {
    _dir: tempfile::TempDir,
    live: PathBuf,
    records: usize,
}

fn setup(mb: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("appendonly.aof");
    // The live file's old content does not matter to either side; a small one
    // keeps setup cheap.
    std::fs::write(&live, RECORD).unwrap();
    Setup {
        _dir: dir,
        live,
        records: mb * 1024 * 1024 / RECORD.len(),
    }
}

/// The peer: a buffered write of the same bytes to a fresh file, then fsync.
#[divan::bench(args = SIZES_MB, sample_count = 10, sample_size = 1)]
fn plain_write_fsync(bencher: Bencher<'_, '_>, mb: usize) {
    bencher
        .counter(BytesCount::new(
            mb * 1024 * 1024 / RECORD.len() * RECORD.len(),
        ))
        .with_inputs(|| setup(mb))
        .bench_local_values(|s| {
            let file = File::create(s.live.with_extension("plain")).unwrap();
            let mut w = BufWriter::with_capacity(256 * 1024, file);
            for _ in 0..s.records {
                w.write_all(RECORD).unwrap();
            }
            let file = w.into_inner().unwrap();
            file.sync_all().unwrap();
            s
        });
}

/// The full crash-safe rewrite of the same bytes, with 64 KiB appended to the
/// live file while it runs.
#[divan::bench(args = SIZES_MB, sample_count = 10, sample_size = 1)]
fn rewrite_commit(bencher: Bencher<'_, '_>, mb: usize) {
    bencher
        .counter(BytesCount::new(
            mb * 1024 * 1024 / RECORD.len() * RECORD.len(),
        ))
        .with_inputs(|| setup(mb))
        .bench_local_values(|s| {
            let mut rw = Rewrite::begin(&s.live).unwrap();
            let mut appender = OpenOptions::new().append(true).open(&s.live).unwrap();
            for i in 0..s.records {
                rw.write_all(RECORD).unwrap();
                if i % (s.records / 64).max(1) == 0 {
                    appender.write_all(&[b'a'; 1024]).unwrap();
                }
            }
            rw.catch_up().unwrap();
            let committed = rw.commit().unwrap();
            (s, committed)
        });
}

/// The rewrite with incremental fsync off, to show what it costs.
#[divan::bench(args = SIZES_MB, sample_count = 10, sample_size = 1)]
fn rewrite_commit_one_fsync(bencher: Bencher<'_, '_>, mb: usize) {
    bencher
        .counter(BytesCount::new(
            mb * 1024 * 1024 / RECORD.len() * RECORD.len(),
        ))
        .with_inputs(|| setup(mb))
        .bench_local_values(|s| {
            let mut rw = Rewrite::begin(&s.live).unwrap().sync_every(0);
            for _ in 0..s.records {
                rw.write_all(RECORD).unwrap();
            }
            let committed = rw.commit().unwrap();
            (s, committed)
        });
}
