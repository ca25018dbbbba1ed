//! A reader that stops early (`wal-repair check … | head -1`) ends the process quietly: no panic
//! message, exit code 0, as ripgrep does.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{bin, log, scratch, Fmt};

#[test]
fn head_one_of_a_long_check() {
    let dir = scratch();
    let (bytes, _) = log(Fmt::Resp, 3);
    // 3000 files give about 300 KB of output, several times a pipe's 64 KiB buffer, so the binary is
    // still writing (blocked on the full pipe) when the reader goes away and its next write fails.
    let files: Vec<_> = (0..3000)
        .map(|i| common::write(dir.path(), &format!("log-{i:05}.aof"), &bytes))
        .collect();
    let mut child = bin()
        .arg("check")
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wal-repair");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    assert!(first.contains("log-00000.aof: clean"), "{first}");
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "panic on a closed stdout: {stderr}"
    );
    assert!(stderr.is_empty(), "expected a quiet exit, got: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn real_shell_pipe_into_head() {
    let dir = scratch();
    let (bytes, _) = log(Fmt::Frames, 3);
    for i in 0..3000 {
        common::write(dir.path(), &format!("log-{i:05}.wal"), &bytes);
    }
    // `pipefail` makes the pipeline's status the binary's, and stderr is captured from the binary only.
    let script = format!(
        "set -o pipefail; \"$0\" check {}/log-*.wal 2>\"$1\" | head -1",
        dir.path().display()
    );
    let err_file = dir.path().join("stderr.txt");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_wal-repair"))
        .arg(&err_file)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("log-00000.wal: clean"), "{stdout}");
    let stderr = std::fs::read_to_string(&err_file).expect("stderr file");
    assert!(stderr.is_empty(), "expected a quiet exit, got: {stderr}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "binary's exit status through pipefail"
    );
}
