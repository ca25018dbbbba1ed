//! `--import-tile38 DIR`: a Tile38 data directory, written here in Tile38's
//! documented AOF format (RESP commands as clients sent them, relative
//! `EX` seconds, an inline command, the lowercase `del` / `delhook` that
//! Tile38's expiry logs, a torn last record) and its JSON `config`, is
//! imported once into an empty data directory; SCAN, GET, FGET, HOOKS and
//! TTL then answer as Tile38 would after loading it, the Tile38 files are
//! untouched, a restart does not extend the TTLs, a second import is
//! refused, and commands this server lacks are refused unless
//! `--accept-data-loss`. The events Tile38 still had queued in its hook
//! queue (`queue.db`, a BuntDB file) are delivered to the hook's endpoint
//! after the import, in Tile38's order, and those past BuntDB's
//! time-to-live are not.

#[path = "hooks_peers.rs"]
mod peers;

use std::path::Path;
use std::time::Duration;

use e2e::{render, resp, run, run_json, start, try_start, Started};

/// Writes a Tile38 data directory: `appendonly.aof` from `records` and a
/// `config` file.
fn tile38_dir(dir: &Path, records: &[&[&str]], tail: &[u8]) {
    let mut aof = Vec::new();
    for r in records {
        if r.len() == 1 {
            // An inline (telnet) command, which Tile38's loader accepts.
            aof.extend_from_slice(r[0].as_bytes());
            aof.extend_from_slice(b"\r\n");
        } else {
            let args: Vec<&[u8]> = r.iter().map(|a| a.as_bytes()).collect();
            aof.extend(resp(&args));
        }
    }
    aof.extend_from_slice(tail);
    std::fs::write(dir.join("appendonly.aof"), aof).unwrap();
    std::fs::write(
        dir.join("config"),
        r#"{
	"protected-mode": "no",
	"server_id": "9a4c6e1b2f3d4e5f",
	"keepalive": "300"
}"#,
    )
    .unwrap();
}

const RECORDS: &[&[&str]] = &[
    &[
        "SET", "fleet", "truck1", "FIELD", "speed", "10", "POINT", "33.5", "-112.2",
    ],
    &[
        "SET", "fleet", "truck2", "EX", "3600", "POINT", "33.6", "-112.3",
    ],
    &["SET", "fleet", "gone", "EX", "1", "POINT", "1", "1"],
    &["SET", "fleet", "truck3", "POINT", "33.7", "-112.4"],
    &["EXPIRE", "fleet", "truck3", "7200"],
    &["FSET", "fleet", "truck1", "speed", "20"],
    &["SET inline-key inline POINT 3 3"],
    &["SET", "strs", "s1", "STRING", "hello"],
    &[
        "SETHOOK",
        "warehouse",
        "http://127.0.0.1:9/x",
        "NEARBY",
        "fleet",
        "FENCE",
        "POINT",
        "33.5",
        "-112.2",
        "500",
    ],
    &[
        "SETHOOK",
        "tmp",
        "http://127.0.0.1:9/y",
        "EX",
        "1",
        "NEARBY",
        "fleet",
        "FENCE",
        "POINT",
        "1",
        "1",
        "10",
    ],
    // What Tile38's expiry wrote when `gone` and `tmp` expired.
    &["del", "fleet", "gone"],
    &["delhook", "tmp"],
];

/// An incomplete last record, as a crash leaves it; Tile38 drops it.
const TORN: &[u8] = b"*5\r\n$3\r\nSET\r\n$5\r\nfleet\r\n$2\r\nzz";

fn ttl(c: &mut redis::Connection, id: &str) -> i64 {
    redis::cmd("TTL").arg("fleet").arg(id).query(c).unwrap()
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_tile38_directory_imports_once_and_answers_as_tile38() {
    let t38 = tempfile::tempdir().unwrap();
    tile38_dir(t38.path(), RECORDS, TORN);
    let before = snapshot(t38.path());
    let ours = tempfile::tempdir().unwrap();
    let src = t38.path().to_str().unwrap();

    let mut server = start(ours.path(), &["--import-tile38", src]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SCAN fleet IDS"), "[0 [truck1 truck2 truck3]]");
    assert_eq!(run(&mut c, "SCAN inline-key IDS"), "[0 [inline]]");
    assert_eq!(run(&mut c, "GET fleet truck1 POINT"), "[33.5 -112.2]");
    assert_eq!(run(&mut c, "FGET fleet truck1 speed"), "20");
    assert_eq!(run(&mut c, "GET strs s1"), "hello");
    assert_eq!(run(&mut c, "GET fleet gone"), "nil");
    // Relative TTLs count from the import, as Tile38 counts them from its
    // load; objects without one have none, expired ones are gone.
    let t2 = ttl(&mut c, "truck2");
    assert!((3590..=3600).contains(&t2), "{t2}");
    let t3 = ttl(&mut c, "truck3");
    assert!((7190..=7200).contains(&t3), "{t3}");
    assert_eq!(ttl(&mut c, "truck1"), -1);
    assert_eq!(ttl(&mut c, "gone"), -2);
    // The hook that expired under Tile38 stays deleted.
    let mut j = server.json_client();
    let hooks = run_json(&mut j, "HOOKS *");
    let names: Vec<&str> = hooks["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["warehouse"], "{hooks}");
    // The config property this server has came over.
    assert_eq!(
        render(
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("protected-mode")
                .query(&mut c)
        ),
        "[protected-mode no]"
    );
    // The Tile38 files are untouched.
    assert_eq!(snapshot(t38.path()), before);

    // A restart without the flag reads our own file: the deadlines are
    // absolute now, so the TTLs keep counting down instead of starting
    // over as they would in Tile38.
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
    let server = start(ours.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SCAN fleet IDS"), "[0 [truck1 truck2 truck3]]");
    let again = ttl(&mut c, "truck2");
    assert!(again <= t2 && again >= 3580, "{again} after {t2}");
    drop(c);
    server.signal(libc::SIGTERM);

    // A second import over the data is refused, and changes nothing.
    let ours_before = {
        let mut s = server;
        assert!(s.wait_exit(Duration::from_secs(20)).is_some());
        std::fs::read(ours.path().join("appendonly.aof")).unwrap()
    };
    match try_start(ours.path(), &["--import-tile38", src], &[]).unwrap() {
        Started::Exited(st, log) => {
            assert!(!st.success());
            assert!(log.contains("already holds data"), "{log}");
        }
        Started::Up(_) => panic!("a second import started"),
    }
    assert_eq!(
        std::fs::read(ours.path().join("appendonly.aof")).unwrap(),
        ours_before
    );
}

#[test]
fn unsupported_commands_are_counted_and_refused_unless_data_loss_is_accepted() {
    let t38 = tempfile::tempdir().unwrap();
    let mut records: Vec<&[&str]> = RECORDS.to_vec();
    // JSET is a write this server has: imported like any other.
    records.push(&["JSET", "user", "901", "name", "Tom"]);
    // Commands of a newer Tile38 than this server knows stand for what
    // cannot be imported.
    records.push(&["XSET", "user", "902", "name", "Ann"]);
    records.push(&["XSET", "user", "903", "name", "Bob"]);
    records.push(&[
        "XCHAN", "ch", "NEARBY", "fleet", "FENCE", "POINT", "33", "-112", "100",
    ]);
    tile38_dir(t38.path(), &records, b"");
    let src = t38.path().to_str().unwrap();
    let ours = tempfile::tempdir().unwrap();

    match try_start(ours.path(), &["--import-tile38", src], &[]).unwrap() {
        Started::Exited(st, log) => {
            assert!(!st.success());
            assert!(log.contains("xset x2"), "{log}");
            assert!(log.contains("xchan x1"), "{log}");
            assert!(!log.contains("jset x"), "{log}");
            assert!(log.contains("--accept-data-loss"), "{log}");
        }
        Started::Up(_) => panic!("an import with unsupported commands started"),
    }
    // Nothing was written: the directory is still empty of data.
    let aof = ours.path().join("appendonly.aof");
    assert!(!aof.exists() || std::fs::metadata(&aof).unwrap().len() == 0);

    let server = start(ours.path(), &["--import-tile38", src, "--accept-data-loss"]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SCAN fleet IDS"), "[0 [truck1 truck2 truck3]]");
    assert_eq!(run(&mut c, "KEYS *"), "[fleet inline-key strs user]");
    assert_eq!(run(&mut c, "JGET user 901 name"), "Tom");
    assert!(server.log().contains("xset x2"), "{}", server.log());
}

/// A BuntDB `set` record, with `ex seconds` when given.
fn buntdb_set(out: &mut Vec<u8>, key: &str, value: &str, ex: Option<u64>) {
    let ex = ex.map(|n| n.to_string());
    let mut args: Vec<&[u8]> = vec![b"set", key.as_bytes(), value.as_bytes()];
    if let Some(n) = &ex {
        args.push(b"ex");
        args.push(n.as_bytes());
    }
    out.extend(resp(&args));
}

/// An event as Tile38 queues it for a hook.
fn tile38_event(hook: &str, id: &str) -> String {
    format!(
        r#"{{"command":"set","group":"g-{id}","detect":"enter","hook":"{hook}","key":"fleet","time":"2026-12-02T10:00:00.000000000Z","id":"{id}","object":{{"type":"Point","coordinates":[-112.2,33.5]}}}}"#
    )
}

#[test]
fn events_queued_in_tile38s_hook_queue_are_delivered_after_the_import() {
    let port = peers::free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let t38 = tempfile::tempdir().unwrap();
    let records: Vec<Vec<&str>> = vec![
        vec!["SET", "fleet", "truck1", "POINT", "33.5", "-112.2"],
        vec![
            "SETHOOK",
            "warehouse",
            &url,
            "NEARBY",
            "fleet",
            "FENCE",
            "POINT",
            "33.5",
            "-112.2",
            "500",
        ],
        vec![
            "SETHOOK", "old", &url, "NEARBY", "fleet", "FENCE", "POINT", "1", "1", "10",
        ],
        vec!["DELHOOK", "old"],
    ];
    let records: Vec<&[&str]> = records.iter().map(Vec::as_slice).collect();
    tile38_dir(t38.path(), &records, b"");
    // Tile38's queue: events 1 to 5 for `warehouse`, 2 already sent
    // (deleted), 4 with a time-to-live that has passed; one for the deleted
    // hook `old`; and Tile38's own counter.
    let mut q = Vec::new();
    buntdb_set(&mut q, "hook:idx", "6", None);
    for n in 1..=5u64 {
        let ex = if n == 4 { 0 } else { 3600 };
        buntdb_set(
            &mut q,
            &format!("hook:log:{n}"),
            &tile38_event("warehouse", &format!("t{n}")),
            Some(ex),
        );
    }
    buntdb_set(&mut q, "hook:log:6", &tile38_event("old", "t6"), Some(3600));
    q.extend(resp(&[b"del", b"hook:log:2"]));
    std::fs::write(t38.path().join("queue.db"), &q).unwrap();
    let before = std::fs::read(t38.path().join("queue.db")).unwrap();

    let ours = tempfile::tempdir().unwrap();
    let src = t38.path().to_str().unwrap();
    let server = start(ours.path(), &["--import-tile38", src]).unwrap();
    assert!(
        server.wait_log("hook_events=4", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("hook_events_expired=1"),
        "{}",
        server.log()
    );
    // The event of the deleted hook is dropped when the journal opens.
    assert!(
        server.wait_log(
            "hook journal: events queued again events=3",
            Duration::from_secs(10)
        ),
        "{}",
        server.log()
    );
    let http = peers::sink_on(port);
    let events = http.wait_events(3);
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["t1", "t3", "t5"],
        "in Tile38's order, sent and expired ones left out"
    );
    assert!(events.iter().all(|e| e["hook"] == "warehouse"
        && e["detect"] == "enter"
        && e["event_id"].as_u64().is_some()));
    assert_eq!(
        std::fs::read(t38.path().join("queue.db")).unwrap(),
        before,
        "Tile38's queue is left untouched"
    );
    drop(server);

    // A queue.db BuntDB would refuse stops the import unless data loss is
    // accepted.
    std::fs::write(
        t38.path().join("queue.db"),
        b"*2\r\n$4\r\nincr\r\n$1\r\na\r\n",
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    match try_start(other.path(), &["--import-tile38", src], &[]).unwrap() {
        Started::Exited(st, log) => {
            assert!(!st.success());
            assert!(log.contains("queue.db"), "{log}");
            assert!(log.contains("--accept-data-loss"), "{log}");
        }
        Started::Up(_) => panic!("an import with a damaged queue.db started"),
    }
    let server = start(
        other.path(),
        &["--import-tile38", src, "--accept-data-loss"],
    )
    .unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SCAN fleet IDS"), "[0 [truck1]]");
}
