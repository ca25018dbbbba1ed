//! A connection's pipeline runs in slices of at most
//! `client-pipeline-max` commands, with other clients served between them:
//! one client that pipelines a million tiny commands (and reads every
//! reply, so no byte cap stops it) gets all its replies in order, while
//! another client on the same single runtime worker is answered before the
//! pipeline is done. The slices are counted, and the cap is a CONFIG
//! property that applies from the next batch.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use e2e::{metric_value, resp, run, start_env, Server};

/// Commands in the attacking pipeline.
const PIPELINED: u64 = 1_000_000;
/// The cap under test.
const CAP: u64 = 100;

/// Pipelines [`PIPELINED`] `EXISTS fleet a` commands on a raw connection
/// to `port` and reads every reply, counting them in `answered` and
/// setting `done` after the last; returns the last reply's digit. The
/// writer and the reader are separate threads, so the client never stops
/// reading while it writes.
fn attack(port: u16, done: &AtomicBool, answered: &AtomicU64) -> u8 {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let one = resp(&[b"EXISTS", b"fleet", b"a"]);
    let feeder = std::thread::spawn(move || {
        // 64 KiB writes of whole commands.
        let per = 65_536 / one.len();
        let chunk: Vec<u8> = one.repeat(per);
        let mut sent = 0;
        while sent < PIPELINED {
            let n = (PIPELINED - sent).min(per as u64) as usize;
            writer.write_all(&chunk[..n * one.len()]).unwrap();
            sent += n as u64;
        }
    });
    // Replies are `:0` or `:1`; any other line is kept for the assertion.
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut line = Vec::new();
    let mut last = b'0';
    let mut order_ok = true;
    let mut other = Vec::new();
    for _ in 0..PIPELINED {
        line.clear();
        reader.read_until(b'\n', &mut line).unwrap();
        match &line[..] {
            b":0\r\n" | b":1\r\n" => {
                // Once the object exists, it exists in every later reply.
                order_ok &= !(last == b'1' && line[1] == b'0');
                last = line[1];
            }
            _ => other = line.clone(),
        }
        answered.fetch_add(1, Ordering::Relaxed);
    }
    done.store(true, Ordering::Release);
    feeder.join().unwrap();
    assert!(order_ok, "replies out of order");
    assert!(other.is_empty(), "{}", String::from_utf8_lossy(&other));
    last
}

fn slices(server: &Server) -> f64 {
    metric_value(&server.metrics_page(), "geohook_pipeline_slices_total").unwrap_or(0.0)
}

#[test]
fn a_million_pipelined_commands_run_in_slices_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // One runtime worker: the other client can only be served when the
    // pipelining connection gives the worker up.
    let server = start_env(
        dir.path(),
        &[
            "--client-pipeline-max",
            &CAP.to_string(),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &[("TOKIO_WORKER_THREADS", "1")],
    )
    .unwrap();
    let mut other = server.client();
    assert_eq!(
        run(&mut other, "CONFIG GET client-pipeline-max"),
        "[client-pipeline-max 100]"
    );

    let done = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    let (served_during, last) = std::thread::scope(|scope| {
        let attacker = scope.spawn(|| attack(server.port, &done, &answered));
        // Once the pipeline is under way the other client writes, then
        // pings until the pipeline's last reply has arrived.
        assert!(e2e::wait_until(Duration::from_secs(120), || answered
            .load(Ordering::Relaxed)
            > 0
            || attacker.is_finished()));
        let mut served_during = 0;
        let mut first = true;
        while !done.load(Ordering::Acquire) && !attacker.is_finished() {
            let line = if first {
                "SET fleet a POINT 1 1"
            } else {
                "PING"
            };
            let want = if first { "OK" } else { "PONG" };
            assert_eq!(run(&mut other, line), want);
            first = false;
            if !done.load(Ordering::Acquire) {
                served_during += 1;
            }
        }
        (served_during, attacker.join().unwrap())
    });
    eprintln!(
        "{served_during} commands of another client answered during the pipeline \
         (its later replies say {}); {} slices",
        char::from(last),
        slices(&server)
    );
    assert_eq!(answered.load(Ordering::Relaxed), PIPELINED);
    assert!(
        served_during > 0,
        "the other client waited for the whole pipeline"
    );
    let cut = slices(&server);
    assert!(
        cut >= 1.0 && cut <= (PIPELINED / CAP) as f64,
        "{cut} slices for {PIPELINED} commands at {CAP}"
    );

    // With the cap off the same pipeline is not sliced.
    assert_eq!(run(&mut other, "CONFIG SET client-pipeline-max 0"), "OK");
    let (done, answered) = (AtomicBool::new(false), AtomicU64::new(0));
    attack(server.port, &done, &answered);
    assert_eq!(answered.load(Ordering::Relaxed), PIPELINED);
    assert_eq!(slices(&server), cut, "no slice with the cap off");
}
