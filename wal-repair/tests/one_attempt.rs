//! The start-up helper reads, repairs a torn tail once, and reads again; anything else is a typed error
//! and never a loop. I/O errors are never repaired.

mod common;

use std::cell::Cell;

use common::{log, scratch, sidecars, Fmt};
use wal_repair::{frames, read_with_repair, Config, Error};

#[test]
fn torn_tail_is_repaired_once_then_read() {
    let dir = scratch();
    let (bytes, _) = log(Fmt::Frames, 5);
    let path = common::write(dir.path(), "a.log", &bytes[..bytes.len() - 2]);
    let calls = Cell::new(0);
    let got = read_with_repair(&path, &frames::Frames, &Config::default(), |p| {
        calls.set(calls.get() + 1);
        frames::read_all(p)
    })
    .unwrap();
    assert_eq!(calls.get(), 2);
    assert_eq!(got.value.len(), 4);
    assert!(got.repair.is_some());
    // Already clean: one read, no repair.
    let again = read_with_repair(&path, &frames::Frames, &Config::default(), |p| {
        frames::read_all(p)
    })
    .unwrap();
    assert!(again.repair.is_none());
}

#[test]
fn corruption_is_returned_without_modifying() {
    let dir = scratch();
    let (mut bytes, ends) = log(Fmt::Frames, 5);
    bytes[ends[1] - 1] ^= 1;
    let path = common::write(dir.path(), "b.log", &bytes);
    let err = read_with_repair(&path, &frames::Frames, &Config::default(), |p| {
        frames::read_all(p)
    })
    .unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { offset, .. } if offset as usize == ends[0]),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(sidecars(dir.path()).is_empty());
}

#[test]
fn a_second_failure_is_a_hard_error() {
    let dir = scratch();
    let (bytes, _) = log(Fmt::Frames, 3);
    let path = common::write(dir.path(), "c.log", &bytes[..bytes.len() - 1]);
    let calls = Cell::new(0);
    // A reader that keeps failing even after a successful repair.
    let always_torn = |p: &std::path::Path| -> Result<(), Error> {
        calls.set(calls.get() + 1);
        Err(Error::TornTail {
            path: p.to_path_buf(),
            offset: 0,
            discarded: 1,
        })
    };
    let err =
        read_with_repair(&path, &frames::Frames, &Config::default(), always_torn).unwrap_err();
    assert!(matches!(err, Error::StillBroken { .. }), "{err:?}");
    assert_eq!(calls.get(), 2, "exactly one retry");

    // On a clean log a failing reader is also a hard error, after exactly one read.
    calls.set(0);
    let err =
        read_with_repair(&path, &frames::Frames, &Config::default(), always_torn).unwrap_err();
    assert!(matches!(err, Error::StillBroken { .. }), "{err:?}");
    assert_eq!(calls.get(), 1);
}

#[test]
fn io_errors_are_never_repaired() {
    let dir = scratch();
    // A directory where the log should be: every read is an I/O error.
    let path = dir.path().join("is-a-dir");
    std::fs::create_dir(&path).unwrap();
    let err = read_with_repair(&path, &frames::Frames, &Config::default(), |p| {
        frames::read_all(p)
    })
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let err = wal_repair::repair(&path, &frames::Frames, &Config::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(sidecars(dir.path()).is_empty());
}
