//! Heavy commands run through a bounded pool: with the pool full, one more
//! heavy search gets `-BUSY … retry in … ms` at once, while PING, GET and a
//! small search of the same large collection keep their normal replies.
//! The searches run on the pool's own threads, which run at the lowest
//! scheduling priority. With the pool off (`--heavy-pool-size 0`) the same
//! flood is never refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{metric_value, render, run, start, Grid, Server};

/// Objects in the searched collection: above the heavy line (10 000).
const OBJECTS: usize = 20_000;
/// Connections flooding heavy searches.
const FLOODERS: usize = 8;

fn load(server: &Server) {
    let grid = Grid {
        rows: 1000,
        origin: (33.0, -115.0),
        step: (0.001, 0.001),
    };
    grid.load(&mut server.client(), "fleet", OBJECTS, |i| format!("p{i}"));
}

#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    busy: AtomicU64,
    other: Mutex<Vec<String>>,
}

/// Floods `SCAN fleet COUNT` (heavy: it visits every object) from
/// [`FLOODERS`] connections until `stop`, or `max_each` searches each.
fn flood(
    server: &Server,
    stop: &Arc<AtomicBool>,
    max_each: u64,
) -> (Arc<Seen>, Vec<std::thread::JoinHandle<()>>) {
    let seen = Arc::new(Seen::default());
    let threads = (0..FLOODERS)
        .map(|_| {
            let mut c = server.client();
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                for _ in 0..max_each {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let r = render(redis::cmd("SCAN").arg("fleet").arg("COUNT").query(&mut c));
                    if r == OBJECTS.to_string() {
                        seen.ok.fetch_add(1, Ordering::Relaxed);
                    } else if r
                        .starts_with("ERR:BUSY heavy command pool full (1 running), retry in ")
                    {
                        seen.busy.fetch_add(1, Ordering::Relaxed);
                    } else {
                        seen.other.lock().unwrap().push(r);
                    }
                }
            })
        })
        .collect();
    (seen, threads)
}

#[test]
fn a_full_pool_answers_busy_and_cheap_commands_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--heavy-pool-size", "1", "--metrics-addr", "127.0.0.1:0"],
    )
    .unwrap();
    load(&server);
    let mut probe = server.client();
    let get = run(&mut probe, "GET fleet p7 POINT");
    assert!(get.contains("33.007"), "{get}");

    let stop = Arc::new(AtomicBool::new(false));
    let (seen, threads) = flood(&server, &stop, u64::MAX);
    // Cheap commands, including a small search of the same collection, are
    // answered normally during the flood: 100 rounds and until the flood
    // has been refused at least once (at most 60 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut probes = 0;
    while (seen.busy.load(Ordering::Relaxed) == 0 || probes < 100) && Instant::now() < deadline {
        assert_eq!(run(&mut probe, "PING"), "PONG");
        assert_eq!(run(&mut probe, "GET fleet p7 POINT"), get);
        let small = run(&mut probe, "SCAN fleet LIMIT 10 IDS");
        assert!(small.contains("p1"), "{small}");
        probes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let (ok, busy) = (
        seen.ok.load(Ordering::Relaxed),
        seen.busy.load(Ordering::Relaxed),
    );
    eprintln!("{ok} heavy searches ran, {busy} got BUSY, {probes} probes answered");
    assert!(busy > 0, "no heavy search was refused ({ok} ran)");
    assert!(ok > 0);
    assert!(
        seen.other.lock().unwrap().is_empty(),
        "{:?}",
        seen.other.lock().unwrap()
    );
    let page = server.metrics_page();
    assert_eq!(
        metric_value(&page, "geohook_heavy_rejected_total{cmd=\"scan\"}"),
        Some(busy as f64),
        "{page}"
    );
    assert_eq!(metric_value(&page, "geohook_heavy_in_use"), Some(0.0));
    // The searches ran on the pool's own thread, at the lowest priority.
    let pool = heavy_threads(server.pid());
    assert_eq!(pool.len(), 1, "{pool:?}");
    for (policy, nice) in pool {
        assert!(
            policy == SCHED_IDLE || nice == 19,
            "policy {policy}, nice {nice}"
        );
    }
}

/// Linux's number for the `SCHED_IDLE` policy (`/proc/…/stat` field 41).
const SCHED_IDLE: i64 = 5;

/// The scheduling policy and nice value of each of the process's threads
/// named `heavy-N`, from `/proc/<pid>/task/*/stat`.
fn heavy_threads(pid: u32) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        // `pid (comm) state …`: the name may hold spaces, so split after it.
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        if !head.contains("(heavy-") {
            continue;
        }
        let fields: Vec<&str> = rest.split(' ').collect();
        // Fields 19 (nice) and 41 (policy), counted from 1 with `state` as 3.
        let field = |n: usize| fields[n - 3].parse::<i64>().unwrap();
        out.push((field(41), field(19)));
    }
    out
}

#[test]
fn with_the_pool_off_heavy_commands_are_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--heavy-pool-size", "0"]).unwrap();
    assert!(
        server.log().contains("heavy command pool off"),
        "{}",
        server.log()
    );
    load(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, threads) = flood(&server, &stop, 20);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(seen.ok.load(Ordering::Relaxed), 20 * FLOODERS as u64);
    assert_eq!(seen.busy.load(Ordering::Relaxed), 0);
}
