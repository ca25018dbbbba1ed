//! A memwatch threshold crossed by real allocations makes the server stop
//! accepting, finish in-flight commands, flush and fsync the file and exit
//! with code 2; the next start needs no repair and has every acknowledged
//! write. SIGTERM drains the same way with code 0.

use std::time::Duration;

use e2e::{run, start, start_env};

#[test]
fn memwatch_threshold_exits_2_and_the_next_start_needs_no_repair() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_env(
        dir.path(),
        &[
            "--memwatch-threshold",
            "64MiB",
            "--memwatch-interval",
            "20ms",
        ],
        &[("MEMWATCH_SIGNAL", "jemalloc-allocated")],
    )
    .unwrap();
    let mut c = server.client();
    let value = "x".repeat(1 << 20);
    let mut acked = 0;
    // 1 MiB strings until the watchdog fires and the server goes away.
    for i in 0..512 {
        let r = e2e::render(
            redis::cmd("SET")
                .arg("big")
                .arg(i)
                .arg("STRING")
                .arg(&value)
                .query::<redis::Value>(&mut c),
        );
        if r != "OK" {
            break;
        }
        acked += 1;
    }
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("server did not exit");
    assert_eq!(status.code(), Some(2), "{}", server.log());
    assert!(acked > 10 && acked < 512, "acked {acked}");
    assert!(server.log().contains("memwatch fired"), "{}", server.log());
    // The reason is kept beside the data: one diagnostics bundle with the
    // firing figure and jemalloc's own report.
    let bundles: Vec<_> = std::fs::read_dir(dir.path().join("memwatch"))
        .expect("a memwatch directory in the data directory")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundles[0]).unwrap()).unwrap();
    assert_eq!(b["signal"], "jemalloc-allocated");
    assert!(b["used_bytes"].as_u64().unwrap() >= 64 << 20, "{b}");
    assert!(
        b["allocator"]["jemalloc"]["stats"]["allocated"]
            .as_u64()
            .unwrap()
            > 0
    );

    let server = start(dir.path(), &[]).unwrap();
    assert!(
        !server.log().contains("torn"),
        "the next start repaired something:\n{}",
        server.log()
    );
    let mut c = server.client();
    let count: u64 = run(&mut c, "SCAN big COUNT").parse().unwrap();
    assert!(count >= acked, "{count} < {acked} acknowledged");
}

#[test]
fn sigterm_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &["--appendfsync", "no"]).unwrap();
    let mut c = server.client();
    for i in 0..100 {
        assert_eq!(run(&mut c, &format!("SET fleet t{i} POINT 1 1")), "OK");
    }
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(0)
    );
    let server = start(dir.path(), &[]).unwrap();
    assert!(!server.log().contains("torn"), "{}", server.log());
    assert_eq!(run(&mut server.client(), "SCAN fleet COUNT"), "100");
}
