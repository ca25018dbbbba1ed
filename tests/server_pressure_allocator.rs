//! The server configures jemalloc itself (background purging threads,
//! dirty pages purged after 1 s, muzzy pages at once) and the usual
//! environment variable overrides it, as jemalloc itself reports at start.
//! After most of the data is deleted, resident memory comes back close to
//! the live heap without any command asking for it.

use std::time::Duration;

use e2e::{run, start, start_env, wait_until};

#[test]
fn the_server_sets_jemalloc_options_and_the_environment_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    assert!(
        server
            .log()
            .contains("background_thread=true dirty_decay_ms=1000 muzzy_decay_ms=0"),
        "{}",
        server.log()
    );
    server.kill9();

    let dir = tempfile::tempdir().unwrap();
    let server = start_env(
        dir.path(),
        &[],
        &[(
            "_RJEM_MALLOC_CONF",
            "background_thread:false,dirty_decay_ms:5000",
        )],
    )
    .unwrap();
    assert!(
        server
            .log()
            .contains("background_thread=false dirty_decay_ms=5000 muzzy_decay_ms=0"),
        "{}",
        server.log()
    );
}

#[test]
fn resident_memory_returns_close_to_live_data_after_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let value = "v".repeat(4000);
    // About 80 MB of strings, then 80 % of them deleted.
    let n = 20_000;
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET")
            .arg("k")
            .arg(i)
            .arg("STRING")
            .arg(&value)
            .ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..n {
        if i % 5 != 0 {
            pipe.cmd("DEL").arg("k").arg(i).ignore();
        }
    }
    pipe.query::<()>(&mut c).unwrap();
    assert_eq!(run(&mut c, "SCAN k COUNT"), (n / 5).to_string());
    // Nothing asks for a purge (no GC, no memory pressure): the allocator's
    // own background threads return the freed pages.
    let mut last = (0, 0);
    let back = wait_until(Duration::from_secs(15), || {
        let allocated: u64 = server.stat(&mut c, "heap_size").parse().unwrap();
        let resident: u64 = server.stat(&mut c, "heap_resident").parse().unwrap();
        last = (allocated, resident);
        resident < allocated + allocated / 2 + (8 << 20)
    });
    assert!(
        back,
        "resident {} stayed far above allocated {} after the deletes",
        last.1, last.0
    );
}
