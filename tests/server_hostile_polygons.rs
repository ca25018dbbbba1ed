//! Issue 15, polygon against polygon: INTERSECTS between a stored polygon
//! and a query polygon of 10,000 vertices each, shaped so that `geo`'s test
//! of every pair of segments cannot stop early (two combs whose teeth
//! interleave without touching), used to hold the read lock for seconds, so
//! every write, and every read queued behind it, waited. With the segment
//! index each such search is short, and a second client is served while two
//! others pipeline them. The same holds for combs sheared into long
//! diagonal teeth, whose segment boxes overlap by the thousand (an R-tree
//! of segments alone tested about every pair): past its budget of pairs
//! the sweep answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::{resp, run, start};

/// Sends `bytes` and reads until the reply ends in `want`, for at most
/// `within`; what arrived by then otherwise. The deadline only fails a
/// stalled server: without the index the write below waited over a minute
/// (debug build), with it about a second on the loaded 2-core machine.
fn reply_within(s: &mut TcpStream, bytes: &[u8], want: &[u8], within: Duration) -> Vec<u8> {
    s.write_all(bytes).unwrap();
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[path = "../examples/geohook-db/tests/common/combs.rs"]
mod combs;
use combs::comb_geojson as comb;

/// Straight combs, then combs sheared into diagonal teeth, one after the
/// other (run side by side, four attackers of a debug build on a loaded
/// machine measure the machine, not the server).
#[test]
fn polygon_searches_are_bounded_and_others_are_served() {
    searches_of_interleaved_shapes_leave_others_served(&|up, dx| comb(2_500, up, dx));
    // Teeth leaning by their own height: each tooth's box spans a third of
    // the comb, so it meets the boxes of about a thousand others.
    searches_of_interleaved_shapes_leave_others_served(&|up, dx| {
        combs::teeth_geojson(2_500, up, dx, 1.0)
    });
}

/// Stores `shape(true, 0)`, then has two clients pipeline three searches
/// each with `shape(false, 0)` (which never touches it) while a third is
/// served a read and a write; then `shape(false, 0.5)` (half a tooth to the
/// right) is found.
fn searches_of_interleaved_shapes_leave_others_served(shape: &dyn Fn(bool, f64) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let r: String = redis::cmd("SET")
        .arg("zones")
        .arg("comb")
        .arg("OBJECT")
        .arg(shape(true, 0.0))
        .query(&mut c)
        .unwrap();
    assert_eq!(r, "OK");
    assert_eq!(run(&mut c, "SET fleet t1 POINT 33 -112"), "OK");

    // Two clients each pipeline three searches with the interleaved comb:
    // every one answers with no hit, as the combs never touch.
    let query = shape(false, 0.0);
    let search = resp(&[b"INTERSECTS", b"zones", b"IDS", b"OBJECT", query.as_bytes()]);
    let mut attackers: Vec<_> = (0..2).map(|_| server.raw()).collect();
    for a in &mut attackers {
        a.write_all(&search.repeat(3)).unwrap();
    }
    // A third client is served meanwhile: a read, and a write, which needs
    // the lock the searches hold.
    let mut other = server.raw();
    // 15 s: a stall, not a latency (the pair test alone took over a
    // minute; a heavy thread at SCHED_IDLE holding the lock unboosted, more
    // than 5 s at load 16).
    let within = Duration::from_secs(15);
    let got = reply_within(&mut other, &resp(&[b"PING"]), b"+PONG\r\n", within);
    assert_eq!(got, b"+PONG\r\n");
    let set = resp(&[b"SET", b"fleet", b"t2", b"POINT", b"33.1", b"-112.1"]);
    let got = reply_within(&mut other, &set, b"+OK\r\n", within);
    assert_eq!(got, b"+OK\r\n");

    // Every search answers with no hit, as the combs never touch (the
    // deadline is generous: it only turns a hang into a failure).
    let none = b"*2\r\n:0\r\n*0\r\n";
    for a in &mut attackers {
        let got = reply_within(a, b"", &none.repeat(3), Duration::from_secs(60));
        assert_eq!(got, none.repeat(3));
    }

    // Moved by half a tooth, the teeth overlap, and the search finds it.
    let crossing = shape(false, 0.5);
    assert_eq!(
        run(&mut c, &format!("INTERSECTS zones IDS OBJECT {crossing}")),
        "[0 [comb]]"
    );
}
