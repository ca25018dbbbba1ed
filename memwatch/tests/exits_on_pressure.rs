//! End to end: a child process running the crate example (jemalloc as its
//! global allocator) grows its heap past the threshold, shuts down in order,
//! writes its marker file and exits with code 2, never killed by a signal.
//!
//! This file has `harness = false`: the same binary is the parent (the
//! checks below) and, with `MEMWATCH_E2E_CHILD=1`, the child (the example's
//! `main`).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

#[path = "../examples/shutdown_on_pressure.rs"]
mod example;

const CHILD: &str = "MEMWATCH_E2E_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        let code = example::main();
        // ExitCode cannot be inspected, so the process ends through it.
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            exit_code_of(code)
        });
    }
    exits_2_after_orderly_shutdown();
    deadline_exits_2_when_shutdown_hangs();
    invalid_environment_is_an_error_not_a_disable();
    println!("exits_on_pressure: 3 checks passed");
}

/// Maps the example's `ExitCode` back to a number by comparing with the
/// codes it can return.
fn exit_code_of(code: std::process::ExitCode) -> i32 {
    if code == std::process::ExitCode::from(2) {
        2
    } else {
        1
    }
}

fn run_child(dir: &std::path::Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD, "1")
        .env("MEMWATCH_EXAMPLE_MARKER", dir.join("marker"))
        .env("RUST_LOG", "info")
        .env_remove("MEMWATCH_THRESHOLD")
        .env_remove("MEMWATCH_EXIT_DEADLINE")
        .env_remove("MEMWATCH_DIAGNOSTICS_DIR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn child");
    eprintln!(
        "child status {:?}\n--- child stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn exits_2_after_orderly_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child(
        dir.path(),
        &[
            ("MEMWATCH_THRESHOLD", "96MiB"),
            ("MEMWATCH_POLL_INTERVAL", "20ms"),
            (
                "MEMWATCH_DIAGNOSTICS_DIR",
                dir.path().join("diag").to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(
        out.status.signal(),
        None,
        "the child must not be killed by a signal"
    );
    assert_eq!(out.status.code(), Some(2));
    let marker = std::fs::read_to_string(dir.path().join("marker")).expect("marker written");
    assert!(marker.starts_with("orderly shutdown"), "{marker}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("memwatch: memory pressure shutdown").count(),
        1,
        "fires once"
    );
    #[cfg(feature = "jemalloc")]
    assert!(
        log.contains("signal=jemalloc-resident"),
        "the child watches jemalloc"
    );
    // The cache really grew: most of the 96 MiB that crossed the threshold is
    // the cache (the rest is the runtime, the binary and allocator overhead).
    let held: u64 = marker
        .split("held ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("held bytes in marker");
    assert!(held >= 64 << 20, "held {held}");

    // One diagnostics bundle, complete, with the firing figures and, with
    // jemalloc, the allocator's own report.
    let bundles: Vec<_> = std::fs::read_dir(dir.path().join("diag"))
        .expect("diagnostics directory")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let text = std::fs::read_to_string(&bundles[0]).unwrap();
    let b: serde_json::Value = serde_json::from_str(&text).expect("a whole JSON document");
    assert!(b["used_bytes"].as_u64().unwrap() >= 96 << 20, "{b}");
    assert_eq!(b["threshold_bytes"].as_u64(), Some(96 << 20));
    assert!(!b["history"].as_array().unwrap().is_empty());
    #[cfg(feature = "jemalloc")]
    assert!(
        b["allocator"]["jemalloc"]["stats"]["resident"]
            .as_u64()
            .unwrap()
            > 0,
        "jemalloc's report is in the bundle"
    );
    assert!(log.contains("memwatch: diagnostics written"));
}

fn deadline_exits_2_when_shutdown_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child(
        dir.path(),
        &[
            ("MEMWATCH_THRESHOLD", "64MiB"),
            ("MEMWATCH_POLL_INTERVAL", "20ms"),
            ("MEMWATCH_EXIT_DEADLINE", "300ms"),
            ("MEMWATCH_EXAMPLE_HANG_SHUTDOWN", "1"),
        ],
    );
    assert_eq!(out.status.signal(), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !dir.path().join("marker").exists(),
        "the hung shutdown never finished"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("did not finish within the deadline"),
        "deadline logged"
    );
}

fn invalid_environment_is_an_error_not_a_disable() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child(dir.path(), &[("MEMWATCH_THRESHOLD", "lots")]);
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("MEMWATCH_THRESHOLD"), "the variable is named");
    assert!(!dir.path().join("marker").exists());
}
