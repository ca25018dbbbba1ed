//! Issue 15, memory one client can make the server hold through its
//! replies: a pipelined batch of large replies that the client never reads,
//! a search page too large to build, and a request that never completes.
//! Each attack runs against the real binary while a second client checks
//! that the server still answers.

use std::io::{Read, Write};
use std::time::Duration;

use e2e::{metric_value, resp, run, start, wait_until};

/// The server's resident set in bytes, read from /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

const MIB: u64 = 1 << 20;

/// Fails if the server's resident set passes `bound` within 5 s.
fn assert_rss_stays_below(server: &e2e::Server, before: u64, bound: u64) {
    let grew = wait_until(Duration::from_secs(5), || rss(server.pid()) > bound);
    assert!(
        !grew,
        "RSS grew from {} MiB past {} MiB",
        before / MIB,
        rss(server.pid()) / MIB
    );
}

/// `n` points in `fleet`, pipelined; with `field`, each with a field of its
/// own name (`f<i>`).
fn fill(c: &mut redis::Connection, n: usize, field: bool) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        let cmd = pipe.cmd("SET").arg("fleet").arg(format!("truck{i:06}"));
        if field {
            cmd.arg("FIELD").arg(format!("f{i}")).arg(1);
        }
        cmd.arg("POINT").arg(33).arg(-115).ignore();
    }
    let () = pipe.query(c).unwrap();
}

#[test]
fn pipelined_large_replies_never_read_stay_within_the_output_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--client-output-soft", "1mb"]).unwrap();
    let mut c = server.client();
    let big = "x".repeat(MIB as usize);
    let r: String = redis::cmd("SET")
        .arg("big")
        .arg("k")
        .arg("STRING")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, "OK");
    drop(big);
    let before = rss(server.pid());
    // 3,000 GETs of a 1 MiB object: 27 KB sent, 3 GiB of replies, none read.
    let mut attack = server.raw();
    let one = resp(&[b"GET", b"big", b"k"]);
    let batch: Vec<u8> = one.repeat(3000);
    attack.write_all(&batch).unwrap();
    // The soft cap (1 MiB) plus one reply, the socket buffers and the
    // allocator's slack; without a budget the server builds all 3 GiB.
    let bound = before + 64 * MIB;
    assert_rss_stays_below(&server, before, bound);
    // A second client is served meanwhile.
    let mut other = server.client();
    assert_eq!(run(&mut other, "PING"), "PONG");
    // The attacker's replies were held back, not lost: it reads some, and
    // they are the object.
    let mut head = vec![0u8; 16];
    attack.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"$1048576\r\nxxxxxx");
}

#[test]
fn a_million_pipelined_commands_never_read_stay_within_the_output_budget() {
    // Issue 12's slow reader: a million small commands pipelined by a client
    // that reads none of the replies. The server reads a request chunk at a
    // time and stops reading while its unsent replies are at the soft cap,
    // so the commands wait in the client's socket, not in the server.
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--client-output-soft", "1mb"]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET fleet truck1 POINT 33 -115"), "OK");
    let before = rss(server.pid());
    let mut attack = server.raw();
    attack
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let one = resp(&[b"GET", b"fleet", b"truck1"]);
    let writer = std::thread::spawn(move || {
        let chunk = one.repeat(10_000);
        let mut sent = 0u64;
        for _ in 0..100 {
            // A write blocks, then times out, once the server stops reading.
            if attack.write_all(&chunk).is_err() {
                break;
            }
            sent += 10_000;
        }
        (sent, attack)
    });
    let bound = before + 64 * MIB;
    assert_rss_stays_below(&server, before, bound);
    let mut other = server.client();
    assert_eq!(run(&mut other, "PING"), "PONG");
    let (sent, _attack) = writer.join().unwrap();
    // The socket took only part of the million before the server stopped
    // reading; a server without back-pressure would have taken them all.
    assert!(sent < 1_000_000, "all {sent} commands were taken");
    assert!(rss(server.pid()) <= bound);
}

#[test]
fn pipelined_large_scans_never_read_stay_within_the_output_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    fill(&mut c, 20_000, false);
    let before = rss(server.pid());
    // 300 pipelined full scans (about 1.2 MB of reply each, 360 MB in all),
    // never read.
    let mut attack = server.raw();
    let scan = resp(&[b"SCAN", b"fleet", b"LIMIT", b"1000000"]);
    attack.write_all(&scan.repeat(300)).unwrap();
    let bound = before + 64 * MIB;
    assert_rss_stays_below(&server, before, bound);
    let mut other = server.client();
    assert_eq!(run(&mut other, "PING"), "PONG");
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--client-output-soft",
            "64kb",
            "--client-output-timeout-ms",
            "500",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut c = server.client();
    let value = "y".repeat(256 * 1024);
    let r: String = redis::cmd("SET")
        .arg("big")
        .arg("k")
        .arg("STRING")
        .arg(&value)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, "OK");
    let mut attack = server.raw();
    attack
        .write_all(&resp(&[b"GET", b"big", b"k"]).repeat(400))
        .unwrap();
    let closed = r#"geohook_clients_closed_total{reason="output_stall"}"#;
    assert!(
        wait_until(Duration::from_secs(30), || {
            server.metrics_addr().is_some()
                && metric_value(&server.metrics_page(), closed).unwrap_or(0.0) >= 1.0
        }),
        "{}",
        server.metrics_page()
    );
    // What was in flight can still be read, then the connection ends well
    // short of the 100 MiB asked for.
    attack
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = attack.read_to_end(&mut got);
    assert!(got.len() < 400 * value.len(), "{} bytes", got.len());
    assert_eq!(run(&mut c, "PING"), "PONG");
}

#[test]
fn a_search_page_larger_than_the_reply_cap_is_refused_and_paging_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--max-reply", "32kb"]).unwrap();
    let mut c = server.client();
    fill(&mut c, 3000, false);
    for line in [
        "SCAN fleet LIMIT 1000000",
        "SCAN fleet LIMIT 1000000 IDS",
        "NEARBY fleet LIMIT 1000000 POINT 33 -115 1000",
    ] {
        let r = run(&mut c, line);
        assert!(
            r.starts_with("ERR:reply too large (over 32768 bytes)"),
            "{line}: {}",
            &r[..r.len().min(200)]
        );
    }
    let mut json = server.json_client();
    let v = e2e::run_json(&mut json, "SCAN fleet LIMIT 1000000");
    assert_eq!(v["ok"], false, "{v}");
    // The same walk in pages that fit.
    let mut cursor = 0u64;
    let mut seen = 0;
    loop {
        let v: (u64, Vec<String>) = redis::cmd("SCAN")
            .arg("fleet")
            .arg("CURSOR")
            .arg(cursor)
            .arg("LIMIT")
            .arg(1000)
            .arg("IDS")
            .query(&mut c)
            .unwrap();
        seen += v.1.len();
        cursor = v.0;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen, 3000);
}

#[test]
fn a_json_page_whose_hits_each_carry_their_own_field_is_refused_and_served_without_fields() {
    // JSON lists every field name of the page and, for every hit, a value
    // per name: 3,000 hits with a field each would be 3,000 x 3,000 values
    // (about 18 MB). The cap refuses it from its lower bound, before
    // building it, and the same page without fields, or in a small page,
    // is served.
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--max-reply", "1mb"]).unwrap();
    let mut c = server.client();
    fill(&mut c, 3000, true);
    let mut json = server.json_client();
    let v = e2e::run_json(&mut json, "SCAN fleet LIMIT 3000");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["err"].as_str().unwrap().starts_with("reply too large"),
        "{v}"
    );
    let v = e2e::run_json(&mut json, "SCAN fleet LIMIT 3000 NOFIELDS");
    assert_eq!(v["ok"], true);
    assert_eq!(v["count"], 3000);
    let v = e2e::run_json(&mut json, "SCAN fleet LIMIT 10");
    assert_eq!(v["fields"].as_array().unwrap().len(), 10, "{v}");
    assert_eq!(v["objects"][0]["fields"].as_array().unwrap().len(), 10);
    assert_eq!(run(&mut c, "PING"), "PONG");
}

#[test]
fn a_request_dripped_byte_by_byte_is_cut_off_at_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--request-timeout-ms",
            "1000",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut s = server.raw();
    s.write_all(b"*3\r\n$3\r\nGET\r\n$5\r\nfleet\r\n$100000\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Keep dripping: each byte arrives well inside the timeout, but the
    // request as a whole does not.
    let mut reply = Vec::new();
    let mut other = server.client();
    let mut pinged = false;
    let closed = wait_until(Duration::from_secs(30), || {
        // Another client is served while the drip goes on.
        if !pinged {
            assert_eq!(run(&mut other, "PING"), "PONG");
            pinged = true;
        }
        if s.write_all(b"x").is_err() {
            return true;
        }
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Ok(0) => true,
            Ok(n) => {
                reply.extend_from_slice(&b[..n]);
                false
            }
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    });
    assert!(closed, "the dripping client was never cut off");
    // The error is sent before the close (a reset racing our last byte may
    // discard it on our side, so only what arrived is checked).
    let _ = s.read_to_end(&mut reply);
    assert!(
        reply.is_empty()
            || String::from_utf8_lossy(&reply)
                .starts_with("-ERR Protocol error: request not completed"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(wait_until(Duration::from_secs(30), || server
        .metrics_addr()
        .is_some()));
    let page = server.metrics_page();
    assert_eq!(
        metric_value(
            &page,
            r#"geohook_clients_closed_total{reason="request_timeout"}"#
        ),
        Some(1.0),
        "{page}"
    );
    // A client that is idle between requests is not a dripping one.
    let mut c = server.client();
    assert_eq!(run(&mut c, "PING"), "PONG");
}

#[test]
fn idle_connections_do_not_keep_their_largest_request_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]).unwrap();
    assert!(wait_until(Duration::from_secs(30), || server
        .metrics_addr()
        .is_some()));
    let allocated =
        || metric_value(&server.metrics_page(), "geohook_jemalloc_allocated_bytes").unwrap() as u64;
    let before = allocated();
    // 20 connections each send one 4 MiB request, take the reply, and stay
    // open, idle.
    let payload = vec![b'z'; 4 << 20];
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut s = server.raw();
        s.write_all(&resp(&[b"ECHO", &payload])).unwrap();
        let mut reply = vec![0u8; payload.len() + 11];
        s.read_exact(&mut reply).unwrap();
        assert!(reply.starts_with(b"$4194304\r\nzzz"));
        conns.push(s);
    }
    // Every reply was read, so each connection is idle: what it holds is
    // its small buffers, not 4 MiB each (80 MiB in all).
    let small = wait_until(Duration::from_secs(10), || {
        allocated().saturating_sub(before) < 16 * MIB
    });
    let held = allocated().saturating_sub(before);
    assert!(small, "idle connections hold {} MiB", held / MIB);
    let mut c = server.client();
    assert_eq!(run(&mut c, "PING"), "PONG");
}
