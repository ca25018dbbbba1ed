//! Shared fixtures for the integration tests: logs in both formats with known record boundaries.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

pub mod redis;

use wal_repair::{frames, resp, RecordFormat};

/// Record payload sizes that make records straddle 512-byte sectors and 4 KiB pages.
pub const SIZES: [usize; 9] = [1, 17, 495, 510, 530, 1000, 4080, 4100, 64];

/// The two built-in formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    Frames,
    Resp,
}

pub const FORMATS: [Fmt; 2] = [Fmt::Frames, Fmt::Resp];

impl Fmt {
    pub fn format(self) -> &'static dyn RecordFormat {
        match self {
            Fmt::Frames => &frames::Frames,
            Fmt::Resp => &resp::Resp,
        }
    }

    /// Bytes that start every log of this format.
    pub fn header(self) -> Vec<u8> {
        match self {
            Fmt::Frames => frames::MAGIC.to_vec(),
            Fmt::Resp => Vec::new(),
        }
    }

    /// One encoded record for `payload`.
    pub fn record(self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Fmt::Frames => frames::encode(payload, &mut out),
            Fmt::Resp => resp::encode(&[b"SET".as_slice(), b"k", payload], &mut out),
        }
        out
    }

    /// The record payloads of a whole log, read back through the format's own reader.
    pub fn read(self, path: &Path) -> Vec<Vec<u8>> {
        match self {
            Fmt::Frames => frames::read_all(path).expect("read framed log"),
            Fmt::Resp => {
                let bytes = std::fs::read(path).expect("read resp log");
                resp::Commands::new(&bytes)
                    .map(|c| {
                        c.expect("whole command")
                            .args()
                            .nth(2)
                            .expect("payload")
                            .to_vec()
                    })
                    .collect()
            }
        }
    }
}

/// Payload `i` of a fixture: printable, never containing RESP markers, size from [`SIZES`].
pub fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("rec{i}:").into_bytes();
    p.resize(SIZES[i % SIZES.len()].max(p.len()), b'a' + (i % 26) as u8);
    p
}

/// A log of `n` records; returns the bytes and the end offset of each record.
pub fn log(fmt: Fmt, n: usize) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = fmt.header();
    let mut ends = Vec::new();
    for i in 0..n {
        bytes.extend_from_slice(&fmt.record(&payload(i)));
        ends.push(bytes.len());
    }
    (bytes, ends)
}

/// A scratch directory on tmpfs when available, so fsync-heavy tables stay fast.
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

/// Splits a sidecar into its JSON report and the saved bytes.
pub fn read_sidecar(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read sidecar");
    let nl = bytes.iter().position(|&b| b == b'\n').expect("report line");
    let report = serde_json::from_slice(&bytes[..nl]).expect("report json");
    (report, bytes[nl + 1..].to_vec())
}

/// The expected classification of a fixture, and so what repair must do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing to do.
    Clean,
    /// Only zeros after this offset: truncated here.
    Zero(usize),
    /// Torn after this offset: truncated here.
    Torn(usize),
    /// Corrupt at this offset: refused, file byte-identical, no sidecar.
    Corrupt(usize),
}

/// The one table-driven check: scans `bytes` in memory and on disk, then repairs a file holding them,
/// and verifies the classification and every effect on the file system.
pub fn check(name: &str, fmt: Fmt, bytes: &[u8], expect: Expect) {
    use wal_repair::{repair, scan_bytes, scan_file, Config, Error, Outcome, ScanConfig, Tail};

    let dir = scratch();
    let path = write(dir.path(), "t.log", bytes);
    let memory = scan_bytes(fmt.format(), bytes);
    let small = ScanConfig {
        read_chunk: 4096,
        ..ScanConfig::default()
    };
    let disk = scan_file(&path, fmt.format(), &small).expect("scan file");
    assert_eq!(memory, disk, "{name}: memory and chunked file scans differ");
    // The same on three threads (frames logs longer than three chunks take the parallel walk).
    let parallel = ScanConfig {
        threads: 3,
        ..small.clone()
    };
    let disk = scan_file(&path, fmt.format(), &parallel).expect("scan file");
    assert_eq!(
        memory, disk,
        "{name}: memory and parallel file scans differ"
    );
    let got = match memory.tail {
        Tail::Clean => Expect::Clean,
        Tail::Zero => Expect::Zero(memory.valid_len as usize),
        Tail::Torn { .. } => Expect::Torn(memory.valid_len as usize),
        Tail::Corrupt { offset, .. } => Expect::Corrupt(offset as usize),
    };
    assert_eq!(got, expect, "{name}: {:?}", memory.tail);

    let result = repair(&path, fmt.format(), &Config::default());
    let after = std::fs::read(&path).expect("read back");
    match expect {
        Expect::Clean => {
            assert!(
                matches!(result, Ok(Outcome::Clean(_))),
                "{name}: {result:?}"
            );
            assert_eq!(after, bytes, "{name}: clean log modified");
            assert!(
                sidecars(dir.path()).is_empty(),
                "{name}: sidecar for a clean log"
            );
        }
        Expect::Corrupt(offset) => {
            match result {
                Err(Error::Corrupt { offset: o, .. }) => assert_eq!(o as usize, offset, "{name}"),
                other => panic!("{name}: expected Corrupt, got {other:?}"),
            }
            assert_eq!(after, bytes, "{name}: corrupt log modified");
            assert!(
                sidecars(dir.path()).is_empty(),
                "{name}: sidecar for a corrupt log"
            );
        }
        Expect::Zero(valid) | Expect::Torn(valid) => {
            let Ok(Outcome::Repaired(report)) = result else {
                panic!("{name}: expected a repair, got {result:?}");
            };
            assert_eq!(report.valid_len as usize, valid, "{name}");
            assert_eq!(
                after,
                &bytes[..valid],
                "{name}: repaired log is not the valid prefix"
            );
            assert_eq!(sidecars(dir.path()), vec![report.sidecar.clone()], "{name}");
            let (json, saved) = read_sidecar(&report.sidecar);
            assert_eq!(json["valid_len"], valid as u64, "{name}");
            assert_eq!(json["discarded"], (bytes.len() - valid) as u64, "{name}");
            if matches!(expect, Expect::Zero(_)) {
                assert_eq!(json["kind"], "zero", "{name}");
                assert!(saved.is_empty(), "{name}: zeros are described, not copied");
            } else {
                assert_eq!(json["kind"], "torn", "{name}");
                assert_eq!(
                    saved,
                    &bytes[valid..],
                    "{name}: sidecar must hold the cut bytes"
                );
            }
            // A second run is clean and writes nothing.
            assert!(matches!(
                repair(&path, fmt.format(), &Config::default()),
                Ok(Outcome::Clean(_))
            ));
            assert_eq!(
                sidecars(dir.path()).len(),
                1,
                "{name}: second run wrote a sidecar"
            );
        }
    }
}
