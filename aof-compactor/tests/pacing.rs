//! The adaptive pacing on real files: steps that double up to full length
//! while nobody appends, minimum steps while the live file grows, steps on
//! page boundaries, rests only while somebody appends, and
//! the same bytes in the end whatever the pacing did.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aof_compactor::{Pacing, PacingStats, Rewrite, DEFAULT_MIN_STEP};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn live_file(contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.aof");
    fs::write(&live, contents).unwrap();
    (dir, live)
}

/// Rewrites a live file holding one record with `chunks` chunks of
/// [`DEFAULT_MIN_STEP`] (32 KiB) of state, appending a record to the live file before the chunks whose index
/// `append_before` accepts, and checks the result holds the state and then
/// every appended record. Returns the pacer's statistics.
fn check(pacing: Pacing, chunks: usize, append_before: impl Fn(usize) -> bool) -> PacingStats {
    let (_dir, live) = live_file(b"old\n");
    let mut appender = OpenOptions::new().append(true).open(&live).unwrap();
    let mut rw = Rewrite::begin(&live)
        .unwrap()
        .sync_every(MIB as u64)
        .pacing(pacing);
    let chunk = vec![b's'; DEFAULT_MIN_STEP as usize];
    let mut appended = Vec::new();
    for i in 0..chunks {
        if append_before(i) {
            let record = format!("set k {i}\n");
            appender.write_all(record.as_bytes()).unwrap();
            appended.extend_from_slice(record.as_bytes());
        }
        rw.write_all(&chunk).unwrap();
    }
    rw.catch_up().unwrap();
    let stats = rw.pacing_stats();
    let committed = rw.commit().unwrap();
    let mut expected = vec![b's'; chunks * DEFAULT_MIN_STEP as usize];
    expected.extend_from_slice(&appended);
    assert_eq!(fs::read(&live).unwrap(), expected);
    assert_eq!(committed.tail_len, appended.len() as u64);
    stats
}

#[test]
fn without_appends_the_steps_double_up_to_full_length() {
    // 8 MiB: steps of 32, 64, 128, 256 and 512 KiB, then seven of 1 MiB;
    // the last 32 KiB are left to catch_up.
    assert_eq!(DEFAULT_MIN_STEP, 32 * KIB as u64);
    let stats = check(Pacing::adaptive(), 256, |_| false);
    assert_eq!(stats.steps, 5 + 7);
    assert_eq!(stats.yields, 0);
    assert_eq!(stats.shortest_step, DEFAULT_MIN_STEP);
}

#[test]
fn appends_drop_the_steps_to_the_minimum() {
    // An append before every chunk of the minimum step: every step sees the
    // file grow, so every step, the first included, is the minimum.
    let stats = check(Pacing::adaptive(), 64, |_| true);
    assert_eq!(stats.shortest_step, DEFAULT_MIN_STEP);
    assert_eq!(stats.yields, stats.steps);
    assert_eq!(stats.steps, 64);
}

#[test]
fn the_rewriter_rests_only_while_somebody_appends() {
    // Every step but the first waits for the one before it, and while the
    // live file grows the rewriter then rests; the bytes are the same.
    let stats = check(Pacing::adaptive(), 64, |_| true);
    assert!(stats.rests >= stats.steps / 2, "{stats:?}");
    assert!(stats.rests < stats.steps, "{stats:?}");
    assert!(!stats.rested.is_zero(), "{stats:?}");
    assert!(stats.rested <= aof_compactor::DEFAULT_HOLD * stats.rests as u32);
    // Nobody appends: full speed, no rest.
    let quiet = check(Pacing::adaptive(), 256, |_| false);
    assert_eq!((quiet.rests, quiet.rested), (0, Duration::ZERO));
    // A rest of 0 turns it off.
    let off = check(Pacing::adaptive().rest(0), 64, |_| true);
    assert_eq!((off.rests, off.rested), (0, Duration::ZERO));
    assert_eq!(off.steps, 64);
}

#[test]
fn steps_stay_short_for_the_hold_and_grow_back_after_it() {
    // Appends during the first 1 MiB only. With an hour's hold the rest of
    // the rewrite stays at minimum steps; with no hold the steps double
    // right after the appends stop. (The default hold is a
    // second; an hour keeps the test free of timing.)
    let hour = Duration::from_secs(3600);
    let held = check(Pacing::adaptive().hold(hour), 256, |i| i < 32);
    assert_eq!(held.shortest_step, DEFAULT_MIN_STEP);
    assert_eq!(held.steps, 256);
    let released = check(Pacing::adaptive().hold(Duration::ZERO), 256, |i| i < 32);
    assert_eq!(released.shortest_step, DEFAULT_MIN_STEP);
    assert!(released.yields < released.steps, "{released:?}");
    assert!(released.steps < held.steps / 2, "{released:?} vs {held:?}");
}

#[test]
fn steps_end_on_page_boundaries_whatever_the_record_size() {
    // 83-byte records with an append every 500 of them: a step that ended
    // where the bytes did would almost never end on a 4 KiB page.
    let (_dir, live) = live_file(b"old\n");
    let mut appender = OpenOptions::new().append(true).open(&live).unwrap();
    let mut rw = Rewrite::begin(&live).unwrap();
    let record = [b'r'; 83];
    let mut appended = Vec::new();
    for i in 0..40_000 {
        if i % 500 == 0 {
            let line = format!("set k {i}\n");
            appender.write_all(line.as_bytes()).unwrap();
            appended.extend_from_slice(line.as_bytes());
        }
        rw.write_all(&record).unwrap();
    }
    rw.catch_up().unwrap();
    let stats = rw.pacing_stats();
    rw.commit().unwrap();
    assert!(stats.steps > 40, "{stats:?}");
    assert_eq!(stats.shortest_step % 4096, 0, "{stats:?}");
    let mut expected = record.repeat(40_000);
    expected.extend_from_slice(&appended);
    assert_eq!(fs::read(&live).unwrap(), expected);
}

#[test]
fn a_larger_minimum_step_is_kept() {
    let stats = check(Pacing::adaptive().min_step(256 * KIB as u64), 64, |_| true);
    assert_eq!(stats.shortest_step, 256 * KIB as u64);
}

#[test]
fn pacing_off_takes_no_paced_steps() {
    let stats = check(Pacing::off(), 64, |_| true);
    assert_eq!(stats, PacingStats::default());
}

#[test]
fn the_pacing_is_the_one_set_whatever_the_order_of_the_settings() {
    let (_dir, live) = live_file(b"old\n");
    let rw = Rewrite::begin(&live)
        .unwrap()
        .pacing(Pacing::off())
        .sync_every(64 * KIB as u64);
    let stats = write_and_stats(rw, &live);
    assert_eq!(stats.steps, 0);
}

fn write_and_stats(mut rw: Rewrite, live: &Path) -> PacingStats {
    rw.write_all(&vec![b's'; MIB]).unwrap();
    let stats = rw.pacing_stats();
    rw.commit().unwrap();
    assert_eq!(fs::read(live).unwrap().len(), MIB);
    stats
}
