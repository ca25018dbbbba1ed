//! Freeing the replaced file in steps after a commit: the old file shrinks
//! to nothing only when no name points to it any more, and the new live file
//! is never touched.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use aof_compactor::Rewrite;

/// Rewrites a live file of `old_len` bytes to `b"new\n"`, letting `before_release`
/// see the live path before the replaced file is released in `step`-byte
/// steps, and checks the bytes freed, what a handle on the old file sees
/// afterwards, and that the live file holds the new state.
fn check(old_len: usize, step: u64, before_release: impl Fn(&Path), expected: Expected) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.aof");
    fs::write(&live, vec![b'o'; old_len]).unwrap();
    let old: File = OpenOptions::new().append(true).open(&live).unwrap();
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"new\n").unwrap();
    let committed = rw.commit().unwrap();
    before_release(&live);
    let freed = committed.replaced.release_in_steps(step).unwrap();
    assert_eq!(freed, expected.freed);
    assert_eq!(old.metadata().unwrap().len(), expected.old_len_after);
    assert_eq!(fs::read(&live).unwrap(), b"new\n");
}

struct Expected {
    freed: u64,
    old_len_after: u64,
}

#[test]
fn an_unlinked_old_file_is_shrunk_to_nothing() {
    // A length that is not a multiple of the step, one that is, and one
    // shorter than a step.
    for (old_len, step) in [(3_000_000, 1 << 20), (4 << 20, 1 << 20), (100, 1 << 20)] {
        check(
            old_len,
            step,
            |_| {},
            Expected {
                freed: old_len as u64,
                old_len_after: 0,
            },
        );
    }
}

#[test]
fn a_step_below_a_page_is_raised_to_one() {
    // 64 KiB in steps of one byte would take 65,536 fsyncs; raised to 4 KiB
    // it takes 16, and frees the same.
    check(
        64 * 1024,
        1,
        |_| {},
        Expected {
            freed: 64 * 1024,
            old_len_after: 0,
        },
    );
}

#[test]
fn an_old_file_with_another_name_is_left_intact() {
    // A hard link taken before the commit (a backup, say) keeps the old file
    // reachable, so it must keep its bytes.
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.aof");
    let live = dir.path().join("app.aof");
    fs::write(&live, vec![b'o'; 2_000_000]).unwrap();
    fs::hard_link(&live, &backup).unwrap();
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"new\n").unwrap();
    let committed = rw.commit().unwrap();
    assert_eq!(committed.replaced.release().unwrap(), 0);
    assert_eq!(fs::read(&backup).unwrap(), vec![b'o'; 2_000_000]);
    assert_eq!(fs::read(&live).unwrap(), b"new\n");
}

#[test]
fn dropping_the_replaced_file_frees_nothing_in_steps() {
    // Without release the old file keeps its bytes for any handle still on it.
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.aof");
    fs::write(&live, vec![b'o'; 1_000_000]).unwrap();
    let old = File::open(&live).unwrap();
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(b"new\n").unwrap();
    drop(rw.commit().unwrap());
    assert_eq!(old.metadata().unwrap().len(), 1_000_000);
}
