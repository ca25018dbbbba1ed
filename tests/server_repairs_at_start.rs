//! Start-up through wal-repair: a torn tail is cut once with evidence kept;
//! damage in the middle refuses to start, naming the file and the offset,
//! unless `--accept-data-loss` is given.

use std::path::Path;

use e2e::{run, start, try_start, Started};

/// Writes `n` objects through a real server and stops it cleanly.
fn seed(dir: &Path, n: usize) {
    let server = start(dir, &["--appendfsync", "always"]).unwrap();
    let mut c = server.client();
    for i in 0..n {
        assert_eq!(run(&mut c, &format!("SET fleet t{i} POINT {i} -115")), "OK");
    }
    drop(c);
    server.restart().unwrap().kill9();
}

fn sidecars(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect()
}

#[test]
fn a_torn_tail_is_repaired_once_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), 5);
    let aof = dir.path().join("appendonly.aof");
    let clean = std::fs::read(&aof).unwrap();
    // A write cut off by a crash: a command missing its last bytes.
    let mut torn = clean.clone();
    torn.extend_from_slice(b"*5\r\n$3\r\nset\r\n$5\r\nfleet\r\n$2\r\nt9\r\n$5\r\npoi");
    std::fs::write(&aof, &torn).unwrap();

    let server = start(dir.path(), &[]).unwrap();
    assert!(
        server.log().contains("truncated a torn log tail"),
        "{}",
        server.log()
    );
    assert_eq!(
        std::fs::read(&aof).unwrap(),
        clean,
        "the file is cut exactly at the last whole command"
    );
    let evidence = sidecars(dir.path(), ".torn");
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    let saved = std::fs::read(dir.path().join(&evidence[0])).unwrap();
    assert!(
        saved.ends_with(&torn[clean.len()..]),
        "the sidecar keeps the cut bytes"
    );
    let mut c = server.client();
    assert_eq!(run(&mut c, "SCAN fleet COUNT"), "5");
    assert_eq!(run(&mut c, "GET fleet t4 POINT"), "[4 -115]");
    drop(c);

    // The next start finds a clean file: no second repair, no new evidence.
    let server = server.restart().unwrap();
    assert!(!server.log().contains("torn"), "{}", server.log());
    assert_eq!(sidecars(dir.path(), ".torn").len(), 1);
}

#[test]
fn damage_in_the_middle_refuses_to_start_unless_loss_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), 6);
    let aof = dir.path().join("appendonly.aof");
    let mut bytes = std::fs::read(&aof).unwrap();
    // Damage the third command's array header; whole commands follow it.
    let starts: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'*')
        .map(|(i, _)| i)
        .collect();
    // starts[0] is the file's REPLSTATE header.
    let at = starts[3];
    bytes[at] = b'X';
    bytes[at + 1] = b'!';
    std::fs::write(&aof, &bytes).unwrap();

    match try_start(dir.path(), &[], &[]).unwrap() {
        Started::Up(_) => panic!("started on a file damaged in the middle"),
        Started::Exited(status, log) => {
            assert_eq!(status.code(), Some(1), "{log}");
            assert!(
                log.contains(&aof.display().to_string()),
                "names the file: {log}"
            );
            assert!(
                log.contains(&format!("offset {at}")),
                "names the offset {at}: {log}"
            );
            assert!(
                log.contains("--accept-data-loss"),
                "says how to proceed: {log}"
            );
        }
    }
    assert_eq!(
        std::fs::read(&aof).unwrap(),
        bytes,
        "a refused start changes nothing"
    );

    let server = start(dir.path(), &["--accept-data-loss"]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SCAN fleet IDS"), "[0 [t0 t1]]");
    assert_eq!(std::fs::metadata(&aof).unwrap().len(), at as u64);
    let lost = sidecars(dir.path(), ".lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&lost[0])).unwrap(),
        bytes[at..].to_vec()
    );
    // Writes go on after the cut.
    assert_eq!(run(&mut c, "SET fleet t9 POINT 9 -115"), "OK");
    drop(c);
    let server = server.restart().unwrap();
    assert_eq!(
        run(&mut server.client(), "SCAN fleet IDS"),
        "[0 [t0 t1 t9]]"
    );
}
