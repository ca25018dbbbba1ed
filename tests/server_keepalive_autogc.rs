//! Tile38's `keepalive` and `autogc` properties act: accepted connections
//! carry TCP keep-alive with the configured period, and `autogc` returns
//! jemalloc's dirty pages on its period.

use std::net::TcpStream;
use std::time::Duration;

use e2e::{metric_value, run, start, wait_until};

/// The kernel's view of one TCP socket in `/proc/net/tcp`: which timer is
/// armed (`tr`: 0 none, 1 retransmit, 2 keep-alive, 3 TIME_WAIT, 4 zero
/// window) and in how many clock ticks it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timer {
    kind: u32,
    ticks: u64,
}

/// The timer of the server's end of the connection from `client_port` to
/// `server_port` on 127.0.0.1.
fn server_side_timer(server_port: u16, client_port: u16) -> Option<Timer> {
    let local = format!("0100007F:{server_port:04X}");
    let remote = format!("0100007F:{client_port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != local || f[2] != remote {
            return None;
        }
        let (kind, when) = f[5].split_once(':')?;
        Some(Timer {
            kind: u32::from_str_radix(kind, 16).ok()?,
            ticks: u64::from_str_radix(when, 16).ok()?,
        })
    })
}

/// The clock ticks per second the kernel reports timers in.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).unwrap_or(100)
}

/// Opens a connection, makes sure the server has accepted it (a PING
/// answered), and returns the server end's timer.
fn accepted_timer(port: u16) -> (TcpStream, Option<Timer>) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
    let client_port = s.local_addr().unwrap().port();
    let mut timer = None;
    // The reply can leave a delayed-ACK or retransmit timer armed for a
    // moment; the keep-alive timer is what remains once the link is idle.
    wait_until(Duration::from_secs(5), || {
        timer = server_side_timer(port, client_port);
        timer.is_some_and(|t| t.kind != 1)
    });
    (s, timer)
}

#[test]
fn accepted_connections_get_the_keepalive_period() {
    if !std::path::Path::new("/proc/net/tcp").exists() {
        eprintln!("skipped: no /proc/net/tcp to read socket timers from");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--bind", "127.0.0.1"]).unwrap();
    let hz = ticks_per_second();

    // Tile38's default: 300 s.
    let (_a, t) = accepted_timer(server.port);
    let t = t.expect("the server's end of the connection is listed");
    assert_eq!(t.kind, 2, "a keep-alive timer is armed by default: {t:?}");
    assert!(
        t.ticks <= 300 * hz && t.ticks > 240 * hz,
        "the first probe is due in about 300 s: {t:?}"
    );

    // A new period applies to connections accepted after it.
    let mut c = server.client();
    assert_eq!(run(&mut c, "CONFIG SET keepalive 42"), "OK");
    let (_b, t) = accepted_timer(server.port);
    let t = t.expect("listed");
    assert_eq!(t.kind, 2, "{t:?}");
    assert!(
        t.ticks <= 42 * hz && t.ticks > 12 * hz,
        "due in about 42 s: {t:?}"
    );

    // 0 leaves the system's default, which is no keep-alive.
    assert_eq!(run(&mut c, "CONFIG SET keepalive 0"), "OK");
    let (_c, t) = accepted_timer(server.port);
    assert_eq!(
        t.expect("listed").kind,
        0,
        "no timer armed with keepalive 0"
    );
}

#[test]
fn autogc_purges_on_its_period_and_stops_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]).unwrap();
    assert!(
        server.wait_log("metrics endpoint up", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let purges = || {
        metric_value(&server.metrics_page(), "geohook_autogc_purges_total")
            .expect("the autogc counter is on the metrics page")
    };
    assert_eq!(purges(), 0.0, "autogc is off by default, as in Tile38");

    let mut c = server.client();
    assert_eq!(run(&mut c, "CONFIG SET autogc 1"), "OK");
    assert!(
        wait_until(Duration::from_secs(15), || purges() >= 2.0),
        "two purges within 15 s at a period of 1 s"
    );

    assert_eq!(run(&mut c, "CONFIG SET autogc 0"), "OK");
    // One purge may have been due as the setting changed; after it none.
    let settled = purges() + 1.0;
    std::thread::sleep(Duration::from_secs(3));
    assert!(purges() <= settled, "no purge runs with autogc 0");
}
