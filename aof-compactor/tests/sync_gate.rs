//! A rewrite that shares the appender's `SyncGate` starts no write-back step,
//! and its release no truncation step, while a sync is marked, waits a
//! bounded time for it, and ends with the same bytes as without the gate.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use aof_compactor::{
    Pacing, PacingStats, Rewrite, SyncGate, DEFAULT_GATED_MIN_STEP, DEFAULT_GATE_WAIT,
    DEFAULT_MIN_STEP,
};

const KIB: usize = 1024;
/// The state is written in chunks of the gated minimum step.
const CHUNK: usize = 32 * KIB;
const MIB: u64 = 1024 * 1024;

fn live_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.aof");
    fs::write(&live, b"old\n").unwrap();
    (dir, live)
}

/// Rewrites a one-record live file with `chunks` chunks of 32 KiB of state,
/// the rewrite built by `build` from `Rewrite::begin`. Before each chunk the
/// appender writes a record and syncs it through `gate`, on this thread, so
/// no sync is ever under way while the rewrite runs its steps. Checks that
/// the new file is the state and then every record, and returns the
/// pacer's statistics.
fn check(gate: &SyncGate, chunks: usize, build: impl FnOnce(Rewrite) -> Rewrite) -> PacingStats {
    let (_dir, live) = live_file();
    let mut appender = OpenOptions::new().append(true).open(&live).unwrap();
    let mut rw = build(Rewrite::begin(&live).unwrap());
    let chunk = vec![b's'; CHUNK];
    let mut appended = Vec::new();
    for i in 0..chunks {
        let record = format!("set k {i}\n");
        appender.write_all(record.as_bytes()).unwrap();
        gate.sync_data(&appender).unwrap();
        appended.extend_from_slice(record.as_bytes());
        rw.write_all(&chunk).unwrap();
    }
    rw.catch_up().unwrap();
    let stats = rw.pacing_stats();
    rw.commit().unwrap();
    let mut expected = vec![b's'; chunks * CHUNK];
    expected.extend_from_slice(&appended);
    assert_eq!(fs::read(&live).unwrap(), expected);
    stats
}

#[test]
fn steps_between_the_syncs_do_not_wait() {
    let gate = SyncGate::new();
    let stats = check(&gate, 32, |rw| rw.sync_gate(gate.clone()));
    // Every step is the gated minimum: each saw the live file grow.
    assert_eq!(stats.steps, 32);
    assert_eq!(stats.yields, 32);
    assert_eq!(stats.gate_waits, 0, "{stats:?}");
    assert_eq!(stats.shortest_step, DEFAULT_GATED_MIN_STEP);
}

#[test]
fn without_the_gate_the_minimum_step_is_the_same_32_kib() {
    // Chunks of 32 KiB, one step each, every one at the minimum; no gate,
    // so no waits.
    let stats = check(&SyncGate::new(), 32, |rw| rw);
    assert_eq!(DEFAULT_MIN_STEP, DEFAULT_GATED_MIN_STEP);
    assert_eq!(stats.steps, 32);
    assert_eq!(stats.yields, 32);
    assert_eq!(stats.gate_waits, 0);
    assert_eq!(stats.shortest_step, DEFAULT_MIN_STEP);
}

#[test]
fn every_step_waits_while_a_sync_is_marked_and_the_rewrite_still_ends() {
    // A sync that never ends (a stuck disk, or appenders that sync back to
    // back): each step waits for it, at most DEFAULT_GATE_WAIT, and the
    // rewrite completes with the right bytes. The gate is given before
    // the other settings, which must not drop it.
    let gate = SyncGate::new();
    let stuck = gate.enter();
    let stats = check(&SyncGate::new(), 16, |rw| {
        rw.sync_gate(gate.clone())
            .sync_every(MIB)
            .pacing(Pacing::adaptive())
    });
    drop(stuck);
    assert_eq!(stats.steps, 16);
    assert_eq!(stats.gate_waits, 16, "{stats:?}");
    assert_eq!(gate.waits(), 16);
    // Each wait ran to its limit: the mark was never cleared.
    assert!(stats.gate_waited >= DEFAULT_GATE_WAIT * 16, "{stats:?}");
}

#[test]
fn without_pacing_the_write_back_does_not_wait_at_the_gate() {
    // Pacing::off is the behaviour from before pacing, gate or no gate.
    let gate = SyncGate::new();
    let _stuck = gate.enter();
    let stats = check(&SyncGate::new(), 8, |rw| {
        rw.sync_gate(gate.clone()).pacing(Pacing::off())
    });
    assert_eq!(stats.gate_waits, 0, "{stats:?}");
    assert_eq!(gate.waits(), 0);
}

#[test]
fn the_release_of_the_replaced_file_waits_at_the_gate_step_by_step() {
    // A 16 KiB live file released in 4 KiB steps while a sync is marked
    // that never ends: each of the four steps waits out the limit first.
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("app.aof");
    fs::write(&live, vec![b'o'; 16 * KIB]).unwrap();
    let gate = SyncGate::new();
    let stuck = gate.enter();
    let mut rw = Rewrite::begin(&live).unwrap().sync_gate(gate.clone());
    rw.write_all(b"new\n").unwrap();
    let committed = rw.commit().unwrap();
    // The commit waited nothing: a 4-byte state ends no step.
    assert_eq!(gate.waits(), 0);
    assert_eq!(
        committed.replaced.release_in_steps(4096).unwrap(),
        16 * KIB as u64
    );
    assert_eq!(gate.waits(), 4);
    assert!(gate.waited() >= DEFAULT_GATE_WAIT * 4);
    drop(stuck);
    assert_eq!(fs::read(&live).unwrap(), b"new\n");
}

#[test]
fn a_gate_given_after_writes_keeps_the_steps_taken() {
    // Given late, the gate changes nothing already done: the steps taken
    // stay counted (the pacer is not rebuilt), and the next step waits at
    // the gate.
    let (_dir, live) = live_file();
    let gate = SyncGate::new();
    let mut rw = Rewrite::begin(&live).unwrap();
    rw.write_all(&vec![b's'; 2 * 64 * KIB]).unwrap();
    rw.write_all(&vec![b's'; 64 * KIB]).unwrap();
    let before = rw.pacing_stats();
    let stuck = gate.enter();
    let mut rw = rw.sync_gate(gate.clone());
    assert_eq!(rw.pacing_stats(), before);
    rw.write_all(&vec![b's'; 256 * KIB]).unwrap();
    drop(stuck);
    let after = rw.pacing_stats();
    assert_eq!(after.steps, before.steps + 1, "{before:?} {after:?}");
    assert_eq!(after.gate_waits, 1);
    rw.commit().unwrap();
    assert_eq!(fs::read(&live).unwrap(), vec![b's'; 7 * 64 * KIB]);
}
