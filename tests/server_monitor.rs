//! MONITOR as Tile38 and Redis clients use it: after `+OK` the connection
//! receives a line for each command the other clients run, in order, in
//! Redis's format and escapes, with AUTH's secret redacted and the commands
//! Tile38 leaves out left out; in RESP3 and in JSON output mode it is the
//! same (Tile38 writes the RESP lines whatever the mode). A monitor that
//! reads nothing is closed at its cap while the server goes on, its memory
//! bounded.

#[path = "hooks_peers.rs"]
mod peers;

use std::io::Write;
use std::time::Duration;

use e2e::{resp, start, Raw, Server};
use peers::metric;

/// A monitor line's parts after the `+`: its time, the client, the args.
fn parts(line: &str) -> (String, String, String) {
    let line = line.strip_prefix('+').unwrap_or_else(|| panic!("{line}"));
    let (time, rest) = line.split_once(" [0 ").unwrap_or_else(|| panic!("{line}"));
    let (client, args) = rest.split_once("] ").unwrap_or_else(|| panic!("{line}"));
    (time.to_owned(), client.to_owned(), args.to_owned())
}

/// A monitor on `server`, authenticated, in `mode` (`resp2`, `resp3` or
/// `json`), past its `+OK`.
fn monitor(server: &Server, mode: &str) -> Raw {
    let mut m = Raw::open(server);
    assert_eq!(m.ask(&["AUTH", "s3cret"]), "+OK");
    match mode {
        "resp3" => assert!(m.ask(&["HELLO", "3"]).contains("proto 3")),
        "json" => assert!(m.ask(&["OUTPUT", "json"]).contains("\"ok\":true")),
        _ => {}
    }
    assert_eq!(m.ask(&["MONITOR"]), "+OK", "{mode}");
    m
}

#[test]
fn a_monitor_sees_every_command_in_order_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--requirepass", "s3cret"]).unwrap();
    let mut mons: Vec<(&str, Raw)> = ["resp2", "resp3", "json"]
        .into_iter()
        .map(|mode| (mode, monitor(&server, mode)))
        .collect();
    let mut c = Raw::open(&server);
    let addr = c.w.local_addr().unwrap().to_string();
    let sent: &[(&[&[u8]], &str)] = &[
        (&[b"AUTH", b"s3cret"], "+OK"),
        (
            &[b"SET", b"fleet", b"t1", b"POINT", b"33.5", b"-112.2"],
            "+OK",
        ),
        (
            &[
                b"SET", b"fleet", b"a\"b\\c", b"FIELD", b"speed", b"5", b"POINT", b"33", b"-112",
            ],
            "+OK",
        ),
        // Refused for its name or its argument count: not shown.
        (&[b"NOSUCH", b"x"], "-ERR unknown command"),
        (
            &[b"GET", b"fleet"],
            "-ERR wrong number of arguments for 'get' command",
        ),
        // Left out, as in Tile38.
        (&[b"CONFIG", b"GET", b"requirepass"], ""),
        (&[b"GET", b"fleet", b"t1"], ""),
        (
            &[
                b"NEARBY", b"fleet", b"IDS", b"POINT", b"33.5", b"-112.2", b"1000",
            ],
            "",
        ),
        // A command that finds nothing ran, and is shown.
        (&[b"GET", b"fleet", b"x\n\r\t\x07\x08\x00\xff~"], ""),
    ];
    for (args, want) in sent {
        let got = c.ask(args);
        if !want.is_empty() {
            assert!(got.starts_with(want), "{args:?}: {got}");
        }
    }
    let want = [
        r#""AUTH" "(redacted)""#,
        r#""SET" "fleet" "t1" "POINT" "33.5" "-112.2""#,
        r#""SET" "fleet" "a\"b\\c" "FIELD" "speed" "5" "POINT" "33" "-112""#,
        r#""GET" "fleet" "t1""#,
        r#""NEARBY" "fleet" "IDS" "POINT" "33.5" "-112.2" "1000""#,
        r#""GET" "fleet" "x\n\r\t\a\b\x00\xff~""#,
    ];
    for (mode, m) in &mut mons {
        let mut last = 0.0;
        for w in want {
            // The monitors opened after this one ran commands too.
            let (time, client, args) = loop {
                let (time, client, args) = parts(&m.read());
                if client == addr {
                    break (time, client, args);
                }
            };
            assert_eq!(
                (client.as_str(), args.as_str()),
                (addr.as_str(), w),
                "{mode}"
            );
            let (secs, micros) = time.split_once('.').unwrap();
            assert_eq!(micros.len(), 6, "{time}");
            let t: f64 = format!("{secs}.{micros}").parse().unwrap();
            assert!(t >= last, "{mode}: lines in order of time");
            last = t;
        }
    }
    // A monitor takes QUIT (`+OK`, closed) and nothing else (an error, and
    // closed, as Tile38 ends a monitor on any input).
    let (_, mut resp2) = mons.remove(0);
    resp2.send(&["PING"]);
    assert_eq!(
        String::from_utf8(resp2.rest()).unwrap(),
        "-ERR only QUIT is allowed after MONITOR\r\n"
    );
    for (mode, mut m) in mons {
        m.send(&["QUIT"]);
        assert_eq!(String::from_utf8(m.rest()).unwrap(), "+OK\r\n", "{mode}");
    }
    // MONITOR with an argument is an argument count error, and the
    // connection stays ordinary.
    assert_eq!(
        c.ask(&["MONITOR", "x"]),
        "-ERR wrong number of arguments for 'monitor' command"
    );
    assert_eq!(c.ask(&["PING"]), "+PONG");
}

/// The server's resident memory in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_monitor_that_reads_nothing_is_closed_at_its_cap_and_costs_a_bounded_memory() {
    const CAP: usize = 256 * 1024;
    const COMMANDS: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--requirepass",
            "s3cret",
            "--client-output-soft",
            &CAP.to_string(),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut slow = monitor(&server, "resp2");
    let mut c = Raw::open(&server);
    assert_eq!(c.ask(&["AUTH", "s3cret"]), "+OK");
    // A kilobyte id makes each line about 1 KiB: 200,000 of them would be
    // about 200 MiB held for the monitor if its queue had no bound.
    let id = vec![b'i'; 1000];
    let before = rss_kib(&server);
    let batch: Vec<u8> = (0..1000)
        .flat_map(|_| resp(&[b"GET", b"fleet", &id]))
        .collect();
    for _ in 0..COMMANDS / 1000 {
        c.w.write_all(&batch).unwrap();
        for _ in 0..1000 {
            c.read();
        }
    }
    let after = rss_kib(&server);
    // The monitor's queue holds at most the cap; the rest is the batch
    // being written, socket buffers and the allocator's own slack, well
    // under 64 MiB (a quarter of the unbounded queue).
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let closed = "geohook_clients_closed_total{reason=\"monitor_overflow\"}";
    assert!(metric(&server.metrics_page(), closed) >= 1.0);
    // The monitor got a part of the lines and then the end of the stream.
    slow.w
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let got = slow.rest();
    let lines = got.windows(4).filter(|w| w == b"\"GET").count();
    assert!(lines > 0 && lines < COMMANDS, "{lines} lines");
    assert_eq!(c.ask(&["PING"]), "+PONG");
}
