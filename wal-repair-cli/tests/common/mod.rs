//! Shared fixtures for the CLI tests: logs in both formats with known record boundaries, and a way to
//! run the binary.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

use wal_repair::{frames, resp};

/// The two built-in formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    Frames,
    Resp,
}

/// Record payload sizes that make records straddle 512-byte sectors and 4 KiB pages.
pub const SIZES: [usize; 9] = [1, 17, 495, 510, 530, 1000, 4080, 4100, 64];

/// Payload `i` of a fixture: printable, never containing RESP markers, size from [`SIZES`].
pub fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("rec{i}:").into_bytes();
    p.resize(SIZES[i % SIZES.len()].max(p.len()), b'a' + (i % 26) as u8);
    p
}

/// A log of `n` records; returns the bytes and the end offset of each record.
pub fn log(fmt: Fmt, n: usize) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = match fmt {
        Fmt::Frames => frames::MAGIC.to_vec(),
        Fmt::Resp => Vec::new(),
    };
    let mut ends = Vec::new();
    for i in 0..n {
        match fmt {
            Fmt::Frames => frames::encode(&payload(i), &mut bytes),
            Fmt::Resp => resp::encode(&[b"SET".as_slice(), b"k", &payload(i)], &mut bytes),
        }
        ends.push(bytes.len());
    }
    (bytes, ends)
}

/// A scratch directory on tmpfs when available.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// Writes `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

/// The sidecar files in `dir`.
pub fn sidecars(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "torn"))
        .collect();
    out.sort();
    out
}

/// The `wal-repair` binary built for this test run.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wal-repair"))
}

/// Runs the binary with `args` then `path`; returns the exit code, stdout and stderr.
pub fn run(args: &[&str], path: &Path) -> (i32, String, String) {
    let out = bin().args(args).arg(path).output().expect("run wal-repair");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
