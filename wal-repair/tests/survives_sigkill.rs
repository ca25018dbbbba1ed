//! A real crash test. The test binary re-executes itself as a child writer (selected by an environment
//! variable) that appends records, fsyncs each one and prints its sequence number once durable. The
//! parent SIGKILLs the child at random moments, at least 50 times, alternating the two formats; after
//! each kill it repairs the log and checks that every acknowledged record is present and the log is
//! exactly a prefix of what was written.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use wal_repair::{frames, repair, resp, Config, RecordFormat};

const CHILD_ENV: &str = "WAL_REPAIR_CRASH_CHILD";
const KILLS: usize = 60;

fn payload(n: u64) -> Vec<u8> {
    // Sizes cycle through values that straddle 512 B and 4 KiB, so kills land inside sector and page
    // boundaries of a record.
    let len = [7usize, 500, 530, 4090, 4100, 9000, 60][(n % 7) as usize];
    let mut p = format!("record-{n}-").into_bytes();
    p.resize(len.max(p.len()), b'a' + (n % 26) as u8);
    p
}

fn child(spec: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut parts = spec.splitn(3, ':');
    let (Some(format), Some(first), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("bad child spec".into());
    };
    let first: u64 = first.parse()?;
    if format == "frames" {
        // Opening the library's writer checks that the repaired log ends cleanly and writes the header.
        drop(frames::Writer::open(path)?);
    }
    let mut file = OpenOptions::new().append(true).create(true).open(path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::new();
    for n in first.. {
        buf.clear();
        if format == "frames" {
            frames::encode(&payload(n), &mut buf);
        } else {
            resp::encode(&[b"SET".as_slice(), b"key", &payload(n)], &mut buf);
        }
        // Like a page-at-a-time writer, write and sync each record in 1000-byte pieces, so most kills
        // land inside a record and leave a torn tail on disk.
        for piece in buf.chunks(1000) {
            file.write_all(piece)?;
            file.sync_data()?;
        }
        writeln!(out, "{n}")?;
        out.flush()?;
    }
    Ok(())
}

fn records(format: &str, path: &Path) -> Vec<Vec<u8>> {
    if format == "frames" {
        frames::read_all(path).expect("repaired framed log reads cleanly")
    } else {
        let bytes = std::fs::read(path).expect("read");
        resp::Commands::new(&bytes)
            .map(|c| {
                let c = c.expect("repaired RESP log parses cleanly");
                c.args().nth(2).expect("payload").to_vec()
            })
            .collect()
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        if let Err(e) = child(&spec) {
            eprintln!("child failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let me = std::env::current_exe().expect("current exe");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::rng();
    let mut repaired = [0usize; 2];
    for (i, format) in ["frames", "resp"].into_iter().enumerate() {
        let path = dir.path().join(format!("{format}.log"));
        let fmt: &dyn RecordFormat = if format == "frames" {
            &frames::Frames
        } else {
            &resp::Resp
        };
        let mut present = 0u64;
        for kill in 0..KILLS / 2 {
            let mut child = Command::new(&me)
                .env(CHILD_ENV, format!("{format}:{present}:{}", path.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx
                        .send(line.parse::<u64>().expect("sequence number"))
                        .is_err()
                    {
                        break;
                    }
                }
            });
            // Wait (with a deadline) for a random number of acknowledgements, then kill at a random
            // moment within the next few milliseconds so the kill lands inside a write or fsync.
            let want = rng.random_range(1..=12u64);
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut acked = None;
            while acked.is_none_or(|a| a + 1 < present + want) {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(n) => acked = Some(n),
                    Err(e) => panic!("child made no progress before the deadline: {e}"),
                }
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
            child.kill().expect("SIGKILL child");
            child.wait().expect("reap child");
            // Acknowledgements printed before the kill still count.
            while let Ok(n) = rx.recv_timeout(Duration::from_millis(200)) {
                acked = Some(n);
            }
            let acked = acked.expect("at least one ack");

            match repair(&path, fmt, &Config::default()).expect("repair after SIGKILL") {
                wal_repair::Outcome::Repaired(r) => {
                    repaired[i] += 1;
                    std::fs::remove_file(r.sidecar).expect("remove sidecar");
                }
                wal_repair::Outcome::Clean(_) => {}
            }
            let got = records(format, &path);
            let n = got.len() as u64;
            assert!(
                n > acked,
                "{format} kill {kill}: acknowledged record {acked} lost ({n} present)"
            );
            assert!(
                n <= acked + 2,
                "{format} kill {kill}: {n} records but only {acked} acknowledged"
            );
            for (seq, rec) in got.iter().enumerate() {
                assert_eq!(
                    rec,
                    &payload(seq as u64),
                    "{format} kill {kill}: record {seq} differs"
                );
            }
            present = n;
        }
    }
    // Most kills land inside a record; if none did, the test did not exercise repair at all.
    assert!(
        repaired[0] + repaired[1] >= 5,
        "too few torn tails: {repaired:?}"
    );
    println!(
        "survives_sigkill: {KILLS} kills; torn tails repaired: frames {}, resp {}",
        repaired[0], repaired[1]
    );
}
