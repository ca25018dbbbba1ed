//! requirepass and AUTH, the per-address connection cap, and the Prometheus
//! endpoint.

use std::io::{Read, Write};

use e2e::{exchange, run, start, wait_until};

#[test]
fn requirepass_gates_every_command_until_auth() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--requirepass", "s3cret"]).unwrap();
    let mut c = server.client();
    assert_eq!(
        run(&mut c, "SET fleet a POINT 1 1"),
        "ERR:NOAUTH Authentication required."
    );
    assert_eq!(run(&mut c, "AUTH wrong"), "ERR:WRONGPASS invalid password");
    assert_eq!(
        run(&mut c, "GET fleet a"),
        "ERR:NOAUTH Authentication required."
    );
    assert_eq!(run(&mut c, "AUTH s3cret"), "OK");
    assert_eq!(run(&mut c, "SET fleet a POINT 1 1"), "OK");
    // A URL with the password authenticates through the client library.
    let url = format!("redis://:s3cret@127.0.0.1:{}/", server.port);
    let mut c2 = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eq!(run(&mut c2, "GET fleet a POINT"), "[1 1]");
    // CONFIG SET requirepass changes it for new connections.
    assert_eq!(run(&mut c, "CONFIG SET requirepass other"), "OK");
    let mut c3 = server.client();
    assert_eq!(
        run(&mut c3, "AUTH s3cret"),
        "ERR:WRONGPASS invalid password"
    );
    assert_eq!(run(&mut c3, "AUTH other"), "OK");
}

#[test]
fn connections_per_address_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--max-conns-per-addr", "3"]).unwrap();
    let held: Vec<_> = (0..3).map(|_| server.client()).collect();
    let mut extra = server.raw();
    let (reply, closed) = exchange(&mut extra, b"PING\r\n", usize::MAX);
    assert!(String::from_utf8_lossy(&reply).starts_with("-ERR max connections per client address"));
    assert!(closed);
    drop(held);
    // Slots are released when connections close.
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        let mut s = server.raw();
        exchange(&mut s, b"PING\r\n", 7).0 == b"+PONG\r\n"
    }));
}

#[test]
fn total_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--max-clients", "2"]).unwrap();
    let held: Vec<_> = (0..2).map(|_| server.client()).collect();
    let mut extra = server.raw();
    let (reply, closed) = exchange(&mut extra, b"PING\r\n", usize::MAX);
    assert!(String::from_utf8_lossy(&reply).starts_with("-ERR max number of clients reached"));
    assert!(closed);
    drop(held);
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        let mut s = server.raw();
        exchange(&mut s, b"PING\r\n", 7).0 == b"+PONG\r\n"
    }));
}

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn metrics_are_served_and_track_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]).unwrap();
    assert!(wait_until(std::time::Duration::from_secs(10), || server
        .metrics_addr()
        .is_some()));
    let addr = server.metrics_addr().unwrap();
    let mut c = server.client();
    for i in 0..10 {
        assert_eq!(
            run(&mut c, &format!("SET fleet t{i} EX 0.05 POINT 1 1")),
            "OK"
        );
    }
    // Invisible once expired, removed (and logged) by the background task soon.
    assert!(wait_until(std::time::Duration::from_secs(10), || run(
        &mut c,
        "SCAN fleet COUNT"
    ) == "0"));
    assert!(wait_until(std::time::Duration::from_secs(10), || server
        .stat(&mut c, "expired_keys")
        == "10"));
    let size: f64 = server.stat(&mut c, "aof_size").parse().unwrap();
    let text = scrape(&addr);
    assert_eq!(value(&text, "tile38_aof_size_bytes"), size);
    assert!(value(&text, "tile38_expired_keys_total") >= 10.0, "{text}");
    assert_eq!(value(&text, "tile38_connected_clients"), 1.0);
    assert!(value(&text, "geohook_jemalloc_allocated_bytes") > 0.0);
    assert!(value(&text, "geohook_jemalloc_resident_bytes") > 0.0);
    assert_eq!(value(&text, "geohook_aof_repairs_total"), 0.0);
    assert!(
        text.contains("geohook_commands_total{cmd=\"set\"} 10"),
        "{text}"
    );
    assert!(
        text.contains("geohook_cmd_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("geohook_aof_shrink_duration_seconds_count 0"),
        "{text}"
    );
    assert_eq!(
        value(&text, "geohook_memwatch_level"),
        -1.0,
        "memwatch is off"
    );
    // Expired objects were logged as DEL, so a restart does not bring them back.
    drop(c);
    let server = server.restart().unwrap();
    assert_eq!(run(&mut server.client(), "SCAN fleet COUNT"), "0");
}
