//! Tell a torn log tail from corruption, and repair only the tail.
//!
//! A process killed in the middle of an append (OOM killer, power loss, `kill -9`) leaves its
//! append-only log ending in a cut-off record. This crate scans such a log, classifies its end as
//! clean, a zero tail, a torn tail or corruption, and repairs exactly the torn or zero tail: it first
//! saves the discarded bytes and a report to a uniquely named sidecar file (synced with its directory),
//! then truncates and syncs the log under an exclusive lock. Corruption, meaning damage that valid data
//! follows, is reported and never truncated. Formats are pluggable through [`RecordFormat`]; the crate
//! ships RESP ([`resp`], the format of Redis and Tile38 AOFs) and its own length + CRC32C framing
//! ([`frames`]), with a writer and a reader. The `wal-repair` command (package `wal-repair-cli`) wraps
//! it for operators.
//!
//! # Example
//!
//! ```
//! use wal_repair::{frames, repair, Config, Outcome};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("app.wal");
//! let mut log = frames::Writer::open(&path)?;
//! log.append(b"first")?;
//! log.append(b"second")?;
//! log.sync()?;
//! drop(log);
//!
//! // Simulate a crash in the middle of appending a third record.
//! let mut torn = Vec::new();
//! frames::encode(b"third, never acknowledged", &mut torn);
//! let mut bytes = std::fs::read(&path)?;
//! let valid = bytes.len() as u64;
//! bytes.extend_from_slice(&torn[..10]);
//! std::fs::write(&path, &bytes)?;
//!
//! let Outcome::Repaired(report) = repair(&path, &frames::Frames, &Config::default())? else {
//!     panic!("expected a repair");
//! };
//! assert_eq!(report.valid_len, valid);
//! assert_eq!(report.discarded, 10);
//! assert!(report.sidecar.exists());
//! assert_eq!(frames::read_all(&path)?, vec![b"first".to_vec(), b"second".to_vec()]);
//!
//! // A second run finds nothing to do and writes no new sidecar.
//! assert!(matches!(repair(&path, &frames::Frames, &Config::default())?, Outcome::Clean(_)));
//! # Ok(())
//! # }
//! ```
//!
//! # The repair rule
//!
//! The scanner walks whole records from the start (after the format's file header) until the first
//! offset `B` where the format answers *invalid*, or *incomplete* with no more bytes in the file. `B` is
//! the valid length. Then, looking only at the bytes `[B, EOF)`:
//!
//! 1. If there are none, the log is **clean**.
//! 2. If they are all zero, it is a **zero tail** (preallocated space, or a write whose data never
//!    reached the disk).
//! 3. Otherwise the scanner tries every offset after `B` up to the last non-zero byte where the format
//!    says a record could start ([`RecordFormat::next_candidate`]; RESP jumps to the next `*`, so annotation lines never count as evidence).
//!    If a whole, valid record decodes at any of them, the log is **corrupt** at `B`: valid data follows
//!    the damage, so this is not an interrupted append. This also covers a length field that runs past
//!    the end of the file: it is torn only if nothing valid follows.
//! 4. If the format has no file header (RESP), no whole record precedes `B` and the format called the
//!    bytes at `B` invalid (not merely incomplete), the log is **corrupt**: nothing shows the file is in
//!    this format at all, and cutting would delete a whole file of another format (for example a Redis
//!    AOF with an RDB preamble).
//! 5. Otherwise it is a **torn tail**.
//!
//! The search in step 3 is bounded by [`ScanConfig::resync_window`] (default 64 MiB, which must exceed
//! the largest record): if the non-zero bytes after `B` extend further, the tail cannot be proven torn
//! and is reported as corrupt. A RESP record whose payload contains a whole RESP record can make a torn
//! tail look corrupt; that errs on the side of refusing, never of losing data.
//!
//! [`repair`] under [`Policy::TruncateTornTail`] (the default) cuts a torn or zero tail to `B`, if the
//! bytes cut do not exceed [`Config::max_discard`]. In order: take an exclusive lock on the log (or fail
//! with [`Error::Locked`]); write the sidecar `<name>.<secs>.<nanos>-<pid>-<n>.torn` with `create_new`
//! (one JSON [`RepairReport`] line, then the discarded bytes, omitted for a zero tail); fsync it and its
//! directory; truncate the log to `B`; fsync the log; emit one `tracing` warning with the fields
//! `path`, `valid_len`, `discarded`, `reason` and `sidecar`. If anything fails before the truncate, the
//! log is untouched. A crash at any point converges on re-run (an earlier sidecar is never overwritten),
//! and a second run on a repaired log is clean and writes nothing. An I/O error is always returned as
//! [`Error::Io`] and never taken for a torn tail. Bytes before `B` are never modified.
//!
//! In a log kept as several files only the last file may be repaired; anything but a clean end in an
//! earlier file is corruption. [`dir`] reads such a log from a directory: a Redis 7 multi-part AOF
//! (the manifest gives the files; an RDB base is left alone; a damaged manifest is corruption) or a
//! segment directory (files in name order), and [`dir::repair_parts`] applies the rule;
//! [`repair_segments`] does the same for a list of paths. [`read_with_repair`] is the start-up helper: read, repair a
//! torn tail once, read again, otherwise a typed error. After a repair, a writer must append at exactly
//! `B`; [`frames::Writer::open`] refuses a log that does not end cleanly.
//!
//! [`cut_at`] is the operator's explicit "accept data loss" for a log refused as corrupt: under the same
//! lock, it moves everything from a given offset to a `.lost` evidence file (synced with its directory)
//! and only then truncates the log there.
//!
//! Scanning never allocates in proportion to a length field: the file is read in
//! [`ScanConfig::read_chunk`] pieces and the buffer grows only to hold a record that is actually present
//! (`tests/scan_allocates_nothing.rs` feeds it length fields of 4 GiB and 10^18 under a counting allocator).
//!
//! A scan of a framed log can be split over threads ([`ScanConfig::threads`], default 1): each thread
//! reads its own chunks, hops from header to header to hand the next thread its first record offset,
//! then checks its records while they are still in its core's cache, and the chunk results are taken
//! in file order, so the answer is the one a single thread gives (`tests/parallel_scan_agrees.rs`).
//!
//! # Stability
//!
//! Before 1.0 a minor version may break the API and a patch version never does. The on-disk formats
//! (the frames format, the `.torn` sidecar: one JSON line then the cut bytes, the `.lost` file: exactly
//! the cut bytes) are stable. Report, scan and directory types and [`Error`] are `#[non_exhaustive]`;
//! [`Tail`] and [`Outcome`] are exhaustive on purpose, so a new classification is a breaking change.
//!
//! # Crate features
//!
//! None: the library has no optional parts, and its dependencies are only what the scan and the
//! repair use (CRC32C, memchr, serde for the JSON report, thiserror, tracing). The command-line tool
//! is the separate `wal-repair-cli` package, so depending on this crate never compiles clap,
//! indicatif or anyhow.

pub mod dir;
mod error;
mod parallel;

/// The README's code blocks, compiled and run as doc tests so that the snippet a user copies is one
/// that builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub mod format;
pub mod frames;
mod repair;
pub mod resp;
mod scan;

pub use dir::{list_segments, repair_segments};
pub use error::Error;
pub use format::{Frame, RecordFormat};
pub use repair::{
    check, cut_at, read_with_repair, repair, repair_with, Config, CutReport, Outcome, Policy,
    Recovered, RepairFs, RepairReport, StdFs,
};
pub use scan::{scan_bytes, scan_file, scan_open_file, Scan, ScanConfig, Tail};
