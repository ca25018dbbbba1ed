//! `cut_at`, the operator's "accept data loss": the log keeps exactly the bytes before the offset, the
//! evidence file holds exactly the bytes from the offset on, under the repair lock; an offset past the
//! end, a locked log and an unwritable evidence directory leave the log untouched.

mod common;

use std::path::{Path, PathBuf};

use common::{log, scratch, Fmt};
use wal_repair::{cut_at, Config, Error};

/// The `.lost` files in `dir`.
fn evidence_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "lost"))
        .collect();
    out.sort();
    out
}

/// Cuts a copy of `bytes` at `offset` and checks every effect.
fn check(name: &str, bytes: &[u8], offset: usize) {
    let dir = scratch();
    let path = common::write(dir.path(), "app.aof", bytes);
    let report =
        cut_at(&path, offset as u64, &Config::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        &bytes[..offset],
        "{name}: log"
    );
    assert_eq!(report.offset, offset as u64, "{name}");
    assert_eq!(report.original_len, bytes.len() as u64, "{name}");
    assert_eq!(report.discarded, (bytes.len() - offset) as u64, "{name}");
    let files = evidence_files(dir.path());
    if offset == bytes.len() {
        assert_eq!(report.evidence, None, "{name}");
        assert!(files.is_empty(), "{name}: evidence for an empty cut");
    } else {
        let evidence = report.evidence.clone().expect("evidence path");
        assert_eq!(files, vec![evidence.clone()], "{name}");
        assert_eq!(
            std::fs::read(&evidence).unwrap(),
            &bytes[offset..],
            "{name}: evidence must be exactly the cut bytes"
        );
    }
}

#[test]
fn keeps_exact_evidence_bytes() {
    for fmt in [Fmt::Resp, Fmt::Frames] {
        let (bytes, ends) = log(fmt, 12);
        let mut offsets = vec![
            0,
            1,
            ends[0],
            ends[0] + 3,
            ends[5],
            ends[10] - 1,
            bytes.len(),
        ];
        offsets.extend(ends.iter().map(|e| e - 1));
        for offset in offsets {
            check(&format!("{fmt:?} at {offset}"), &bytes, offset);
        }
    }
}

#[test]
fn offset_past_end_is_refused_and_file_untouched() {
    let dir = scratch();
    let (bytes, _) = log(Fmt::Resp, 3);
    let path = common::write(dir.path(), "app.aof", &bytes);
    for past in [bytes.len() as u64 + 1, u64::MAX] {
        match cut_at(&path, past, &Config::default()) {
            Err(Error::OffsetPastEnd { offset, len, .. }) => {
                assert_eq!((offset, len), (past, bytes.len() as u64));
            }
            other => panic!("offset {past}: expected OffsetPastEnd, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(evidence_files(dir.path()).is_empty());
    }
}

#[test]
fn locked_log_is_refused() {
    let dir = scratch();
    let (bytes, ends) = log(Fmt::Resp, 3);
    let path = common::write(dir.path(), "app.aof", &bytes);
    let holder = std::fs::File::open(&path).unwrap();
    holder.lock().unwrap();
    assert!(matches!(
        cut_at(&path, ends[0] as u64, &Config::default()),
        Err(Error::Locked { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(evidence_files(dir.path()).is_empty());
    holder.unlock().unwrap();
    cut_at(&path, ends[0] as u64, &Config::default()).expect("cut after unlock");
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..ends[0]]);
}

#[test]
fn evidence_goes_to_sidecar_dir_and_never_overwrites() {
    let dir = scratch();
    let side = dir.path().join("evidence");
    std::fs::create_dir(&side).unwrap();
    let (bytes, ends) = log(Fmt::Frames, 6);
    let path = common::write(dir.path(), "app.wal", &bytes);
    let config = Config {
        sidecar_dir: Some(side.clone()),
        ..Config::default()
    };
    let first = cut_at(&path, ends[3] as u64, &config).unwrap();
    let second = cut_at(&path, ends[1] as u64, &config).unwrap();
    assert_ne!(first.evidence, second.evidence);
    assert_eq!(evidence_files(&side).len(), 2);
    assert_eq!(
        std::fs::read(first.evidence.unwrap()).unwrap(),
        &bytes[ends[3]..]
    );
    assert_eq!(
        std::fs::read(second.evidence.unwrap()).unwrap(),
        &bytes[ends[1]..ends[3]]
    );
    assert!(evidence_files(dir.path()).is_empty());
}

#[test]
fn unwritable_evidence_leaves_log_untouched() {
    let dir = scratch();
    let (bytes, ends) = log(Fmt::Resp, 4);
    let path = common::write(dir.path(), "app.aof", &bytes);
    // A regular file where the directory should be: creating the evidence fails even as root.
    let not_a_dir = common::write(dir.path(), "not-a-dir", b"x");
    let config = Config {
        sidecar_dir: Some(not_a_dir),
        ..Config::default()
    };
    assert!(matches!(
        cut_at(&path, ends[1] as u64, &config),
        Err(Error::Io { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
