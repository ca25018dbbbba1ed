//! The rewrite helper on real files: what ends up in the live file, what is
//! left behind, and what is refused.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use aof_compactor::{clean_leftovers, Error, Pacing, Rewrite};

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A fresh directory holding one live file `name` with `contents`; the
/// directory lives as long as the returned guard.
fn live_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join(name);
    fs::write(&live, contents).unwrap();
    (dir, live)
}

/// Runs one rewrite of a live file holding `before`, writing `compacted`,
/// appending `during_write` while the state is written, `before_catch_up`
/// and `before_commit` at the later phases, and checks the live file ends up
/// as `compacted` followed by every appended byte in order; once with the
/// default (adaptive) pacing and once with pacing off.
fn check(
    before: &[u8],
    compacted: &[u8],
    during_write: &[u8],
    before_catch_up: &[u8],
    before_commit: &[u8],
) {
    for pacing in [Pacing::adaptive(), Pacing::off()] {
        check_with(
            pacing,
            before,
            compacted,
            during_write,
            before_catch_up,
            before_commit,
        );
    }
}

fn check_with(
    pacing: Pacing,
    before: &[u8],
    compacted: &[u8],
    during_write: &[u8],
    before_catch_up: &[u8],
    before_commit: &[u8],
) {
    let (dir, live) = live_file("app.aof", before);

    let mut rw = Rewrite::begin(&live).unwrap().sync_every(3).pacing(pacing);
    assert_eq!(rw.start_len(), before.len() as u64);
    let half = compacted.len() / 2;
    rw.write_all(&compacted[..half]).unwrap();
    append(&live, during_write);
    rw.write_all(&compacted[half..]).unwrap();
    append(&live, before_catch_up);
    let caught = rw.catch_up().unwrap();
    assert_eq!(caught, (during_write.len() + before_catch_up.len()) as u64);
    append(&live, before_commit);
    let committed = rw.commit().unwrap();

    let mut expected = compacted.to_vec();
    expected.extend_from_slice(during_write);
    expected.extend_from_slice(before_catch_up);
    expected.extend_from_slice(before_commit);
    assert_eq!(fs::read(&live).unwrap(), expected);
    assert_eq!(committed.len, expected.len() as u64);
    assert_eq!(committed.compacted_len, compacted.len() as u64);
    assert_eq!(
        committed.tail_len,
        (expected.len() - compacted.len()) as u64
    );

    // The returned handle appends to the new live file.
    let mut file = committed.file;
    file.write_all(b"after").unwrap();
    expected.extend_from_slice(b"after");
    assert_eq!(fs::read(&live).unwrap(), expected);
    assert_eq!(
        entries(dir.path()),
        vec!["app.aof"],
        "no temporary file remains"
    );
}

#[test]
fn the_new_file_is_the_compacted_state_plus_every_appended_byte() {
    check(b"", b"", b"", b"", b"");
    check(b"set a 1\nset a 2\n", b"set a 2\n", b"", b"", b"");
    check(b"set a 1\nset a 2\n", b"set a 2\n", b"set b 1\n", b"", b"");
    check(b"x", b"set a 2\n", b"", b"set b 1\n", b"");
    check(b"x", b"set a 2\n", b"", b"", b"set b 1\n");
    check(b"xxxxxxxx", b"state", b"one\n", b"two\n", b"three\n");
    // A record split between catch_up and commit is carried over whole.
    check(b"x", b"state", b"", b"set c ", b"7\n");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    check(
        &big,
        &big[..1000],
        &big[..70_000],
        &big[5..2_000_000],
        &big[9..100],
    );
}

#[test]
fn writing_state_after_catch_up_is_refused() {
    let (_dir, live) = live_file("a.aof", b"abc");
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"state").unwrap();
    rw.catch_up().unwrap();
    assert!(rw.write_all(b"more").is_err());
}

#[test]
fn an_abandoned_rewrite_leaves_the_live_file_alone() {
    let (dir, live) = live_file("a.aof", b"original");

    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"new").unwrap();
    assert!(rw.temp_path().exists());
    drop(rw);
    assert_eq!(entries(dir.path()), vec!["a.aof"]);

    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"new").unwrap();
    rw.abort().unwrap();
    assert_eq!(entries(dir.path()), vec!["a.aof"]);
    assert_eq!(fs::read(&live).unwrap(), b"original");
}

#[test]
fn a_live_file_that_shrank_is_corrupt_and_untouched() {
    let (dir, live) = live_file("a.aof", b"0123456789");
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"state").unwrap();
    OpenOptions::new()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(4)
        .unwrap();
    let err = rw.commit().unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref path, .. } if path == &live),
        "{err}"
    );
    assert_eq!(fs::read(&live).unwrap(), b"0123");
    assert_eq!(entries(dir.path()), vec!["a.aof"]);

    let err = Rewrite::begin_at(&live, 5).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(Rewrite::begin_at(&live, 2).unwrap().start_len(), 2);
}

#[test]
fn a_missing_live_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Rewrite::begin(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, Error::Io { op: "open", .. }), "{err}");
}

#[test]
fn clean_leftovers_removes_only_this_files_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.aof");
    let names = [
        "app.aof",
        "app.aof.compact-123-0.tmp",
        "app.aof.compact-9-77.tmp",
        "app.aof.tmp",
        "other.aof.compact-1-1.tmp",
        "app.aof.compact-1-1.keep",
    ];
    for n in names {
        fs::write(dir.path().join(n), n).unwrap();
    }
    let mut removed: Vec<PathBuf> = clean_leftovers(&live).unwrap();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            dir.path().join("app.aof.compact-123-0.tmp"),
            dir.path().join("app.aof.compact-9-77.tmp")
        ]
    );
    assert_eq!(
        entries(dir.path()),
        vec![
            "app.aof",
            "app.aof.compact-1-1.keep",
            "app.aof.tmp",
            "other.aof.compact-1-1.tmp"
        ]
    );
    assert!(clean_leftovers(&live).unwrap().is_empty());
}

#[test]
fn a_crashed_rewrite_is_cleaned_at_the_next_start() {
    let (dir, live) = live_file("app.aof", b"old");
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"half a state").unwrap();
    let temp = rw.temp_path().to_owned();
    // Forgetting the value skips its destructor, as a crash would.
    std::mem::forget(rw);
    assert!(temp.exists());
    assert_eq!(clean_leftovers(&live).unwrap(), vec![temp]);
    assert_eq!(entries(dir.path()), vec!["app.aof"]);
    assert_eq!(fs::read(&live).unwrap(), b"old");
}

#[tokio::test]
async fn commit_from_async_code() {
    let (_dir, live) = live_file("app.aof", b"a\na\na\n");
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"a\n").unwrap();
    append(&live, b"b\n");
    let committed = rw.commit_async().await.unwrap();
    assert_eq!(committed.len, 4);
    assert_eq!(fs::read(&live).unwrap(), b"a\nb\n");
}

/// The rate cap paces the compacted state and changes nothing in the result. The
/// check on time is a lower bound that sleeping guarantees, so it cannot fail on a slow machine:
/// 1 MiB at 8 MiB/s cannot finish in less than 125 ms.
#[test]
fn a_rate_capped_rewrite_is_paced_and_complete() {
    let (_dir, live) = live_file("app.aof", b"old");
    let state: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let started = std::time::Instant::now();
    let mut rw = Rewrite::begin(&live).unwrap().max_rate(8 << 20);
    for chunk in state.chunks(64 * 1024) {
        rw.write_all(chunk).unwrap();
    }
    append(&live, b"tail");
    rw.commit().unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(125),
        "1 MiB at 8 MiB/s took only {:?}",
        started.elapsed()
    );
    let mut expected = state;
    expected.extend_from_slice(b"tail");
    assert_eq!(fs::read(&live).unwrap(), expected);
}
