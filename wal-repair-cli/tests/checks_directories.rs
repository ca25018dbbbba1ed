//! `wal-repair check DIR` and `fix DIR`: a Redis multi-part AOF directory (or its manifest) and a
//! segment directory, with the same exit codes and `--json` as for one file.

mod common;

use std::path::Path;

use common::{log, run, scratch, Fmt};

/// A hand-made Redis 7 multi-part AOF: a RESP base and two incremental files.
fn redis_dir(root: &Path, last: &[u8]) -> std::path::PathBuf {
    let dir = root.join("appendonlydir");
    std::fs::create_dir(&dir).unwrap();
    let (bytes, _) = log(Fmt::Resp, 4);
    common::write(&dir, "appendonly.aof.1.base.aof", &bytes);
    common::write(&dir, "appendonly.aof.1.incr.aof", &bytes);
    common::write(&dir, "appendonly.aof.2.incr.aof", last);
    common::write(
        &dir,
        "appendonly.aof.manifest",
        b"file appendonly.aof.1.base.aof seq 1 type b\n\
          file appendonly.aof.1.incr.aof seq 1 type i\n\
          file appendonly.aof.2.incr.aof seq 2 type i\n",
    );
    dir
}

type Case<'a> = (&'a str, &'a [u8], bool, &'a [&'a str], i32);

#[test]
fn redis_multi_part_directory() {
    let (bytes, ends) = log(Fmt::Resp, 4);
    let torn = &bytes[..bytes.len() - 3];
    // (name, last incremental file, damage to the first incremental file?, args, exit code)
    let table: Vec<Case<'_>> = vec![
        ("clean", &bytes, false, &["check"], 0),
        ("torn last file", torn, false, &["check"], 1),
        ("torn earlier file", &bytes, true, &["check"], 2),
        ("fix dry-run torn", torn, false, &["fix", "--dry-run"], 1),
        ("fix earlier file", torn, true, &["fix"], 2),
        (
            "frames forced on a Redis AOF",
            &bytes,
            false,
            &["check", "--format", "frames"],
            3,
        ),
    ];
    for (name, last, damage_earlier, args, code) in table {
        let root = scratch();
        let dir = redis_dir(root.path(), last);
        if damage_earlier {
            common::write(&dir, "appendonly.aof.1.incr.aof", torn);
        }
        let (got, out, err) = run(args, &dir);
        assert_eq!(got, code, "{name}: {out} {err}");
        // The manifest path works as the directory does, as redis-check-aof takes it.
        let (got, _, _) = run(args, &dir.join("appendonly.aof.manifest"));
        assert_eq!(got, code, "{name} (manifest path)");
        if code != 3 {
            assert!(
                out.contains("redis-multi-part, 3 files") || name.starts_with("fix"),
                "{out}"
            );
        }
        let last_now = std::fs::read(dir.join("appendonly.aof.2.incr.aof")).unwrap();
        assert_eq!(last_now, last, "{name}: modified");
    }

    let root = scratch();
    let dir = redis_dir(root.path(), torn);
    let (code, out, _) = run(&["fix"], &dir);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(dir.join("appendonly.aof.2.incr.aof")).unwrap(),
        &bytes[..ends[2]]
    );
    let (code, out, _) = run(&["check", "--json"], &dir);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["status"], "clean");
    assert_eq!(v["layout"], "redis-multi-part");
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    assert_eq!(v["files"][0]["role"], "base");

    common::write(
        &dir,
        "appendonly.aof.manifest",
        b"file appendonly.aof.1.base.aof seq 1 ty",
    );
    let (code, out, _) = run(&["check", "--json"], &dir);
    assert_eq!(code, 2, "damaged manifest: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "corrupt");
    assert!(v["path"]
        .as_str()
        .unwrap()
        .ends_with("appendonly.aof.manifest"));
}

#[test]
fn segment_directory() {
    let root = scratch();
    let dir = root.path().join("wal");
    std::fs::create_dir(&dir).unwrap();
    let (bytes, ends) = log(Fmt::Frames, 4);
    common::write(&dir, "000001.wal", &bytes);
    common::write(&dir, "000002.wal", &bytes[..bytes.len() - 2]);
    let (code, out, _) = run(&["--json", "check"], &dir);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["layout"].as_str(), v["format"].as_str()),
        (Some("segments"), Some("frames"))
    );
    assert_eq!(v["files"][1]["status"], "torn");
    let (code, _, _) = run(&["fix"], &dir);
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read(dir.join("000002.wal")).unwrap(),
        &bytes[..ends[2]]
    );
    // The sidecar left beside the segments is not taken for a third segment.
    let (code, out, _) = run(&["check"], &dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("segments, 2 files: clean"), "{out}");
}
