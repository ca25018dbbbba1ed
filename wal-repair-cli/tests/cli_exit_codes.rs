//! The `wal-repair` binary: exit codes for every outcome, `--json` output, `--dry-run`, and distinct
//! codes for usage and I/O errors.

mod common;

use std::path::Path;

use common::{log, run, scratch, sidecars, Fmt};

/// (name, file contents, arguments, exit code, file contents afterwards)
type Case<'a> = (&'a str, &'a [u8], &'a [&'a str], i32, &'a [u8]);

#[test]
fn exit_codes_and_effects() {
    let dir = scratch();
    let (bytes, ends) = log(Fmt::Resp, 4);
    let (fbytes, _) = log(Fmt::Frames, 4);
    let mut corrupt = bytes.clone();
    corrupt[ends[1] - 1] = b'x';
    let torn = &bytes[..bytes.len() - 3];
    // (name, file contents, args, exit code, file afterwards)
    let table: Vec<Case<'_>> = vec![
        ("check clean", &bytes, &["check"], 0, &bytes),
        ("check clean frames (auto)", &fbytes, &["check"], 0, &fbytes),
        (
            "check clean frames (explicit)",
            &fbytes,
            &["check", "--format", "frames"],
            0,
            &fbytes,
        ),
        (
            "frames file read as resp",
            &fbytes,
            &["check", "--format", "resp"],
            2,
            &fbytes,
        ),
        ("check torn", torn, &["check"], 1, torn),
        (
            "check corrupt",
            &corrupt,
            &["check", "--format", "resp"],
            2,
            &corrupt,
        ),
        ("fix dry-run torn", torn, &["fix", "--dry-run"], 1, torn),
        ("fix corrupt", &corrupt, &["fix"], 2, &corrupt),
        (
            "fix over the cap",
            torn,
            &["fix", "--max-discard", "1"],
            4,
            torn,
        ),
        ("fix torn", torn, &["fix"], 0, &bytes[..ends[2]]),
        ("fix clean", &bytes, &["fix"], 0, &bytes),
    ];
    for (name, contents, args, code, after) in table {
        let path = common::write(dir.path(), "cli.aof", contents);
        let (got, out, err) = run(args, &path);
        assert_eq!(got, code, "{name}: stdout {out} stderr {err}");
        assert_eq!(std::fs::read(&path).unwrap(), after, "{name}");
        assert!(!out.is_empty(), "{name}: no human output");
        for s in sidecars(dir.path()) {
            std::fs::remove_file(s).unwrap();
        }
    }
}

#[test]
fn json_output() {
    let dir = scratch();
    let (bytes, ends) = log(Fmt::Resp, 4);
    let path = common::write(dir.path(), "j.aof", &bytes[..bytes.len() - 3]);
    let json = |args: &[&str]| -> (i32, serde_json::Value) {
        let (code, out, _) = run(args, &path);
        (
            code,
            serde_json::from_str(out.trim()).expect("one JSON object"),
        )
    };
    let (code, v) = json(&["--json", "check"]);
    assert_eq!(code, 1);
    assert_eq!(v["status"], "torn");
    assert_eq!(v["valid_len"], ends[2] as u64);
    assert_eq!(v["records"], 3);
    assert_eq!(v["format"], "resp");
    let (code, v) = json(&["fix", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(v["status"], "repaired");
    assert_eq!(v["discarded"], (bytes.len() - 3 - ends[2]) as u64);
    assert!(Path::new(v["sidecar"].as_str().unwrap()).exists());
    let (code, v) = json(&["check", "--json"]);
    assert_eq!((code, v["status"].as_str()), (0, Some("clean")));
    let missing = dir.path().join("missing");
    let (code, out, _) = run(&["--json", "check"], &missing);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "error");
}

#[test]
fn usage_and_io_errors_exit_3() {
    let dir = scratch();
    let path = common::write(dir.path(), "u.aof", b"");
    let table: Vec<(&str, Vec<&str>)> = vec![
        ("unknown subcommand", vec!["frobnicate"]),
        ("unknown format", vec!["check", "--format", "xml"]),
        ("unknown flag", vec!["fix", "--yes"]),
    ];
    for (name, args) in table {
        let (code, _, err) = run(&args, &path);
        assert_eq!(code, 3, "{name}: {err}");
        assert!(!err.is_empty(), "{name}: no message");
    }
    let (code, _, err) = run(&["check"], &dir.path().join("nope"));
    assert_eq!(code, 3);
    assert!(err.contains("nope"), "{err}");
    // (A directory is a multi-file log now: see checks_directories.rs.)
    let (code, _, err) = run(&["fix"], &dir.path().join("nope").join("x"));
    assert_eq!(code, 3, "a missing file is an I/O error: {err}");
}
