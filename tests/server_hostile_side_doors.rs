//! Issue 15, side doors: the metrics endpoint caps its connections and
//! closes idle ones, so that idle scrapers cannot take the descriptors the
//! RESP port needs; and a wrong AUTH does not log out a connection that
//! already authenticated.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use e2e::{metric_value, run, start, wait_until};

/// True once the peer has closed `s` (end of stream or reset).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn idle_metrics_connections_are_capped_and_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-max-conns",
            "4",
            "--metrics-timeout-ms",
            "1000",
        ],
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(30), || server
        .metrics_addr()
        .is_some()));
    let addr = server.metrics_addr().unwrap();
    let mut idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // Every connection past the cap is closed as it arrives.
    let mut extra: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    assert!(
        wait_until(Duration::from_secs(30), || {
            extra.retain_mut(|s| !closed_by_peer(s));
            extra.is_empty()
        }),
        "{} connections past the cap still open",
        extra.len()
    );
    // The RESP port is served meanwhile.
    let mut c = server.client();
    assert_eq!(run(&mut c, "PING"), "PONG");
    // The idle ones are closed at the timeout, and scrapes work again.
    assert!(
        wait_until(Duration::from_secs(30), || {
            idle.retain_mut(|s| !closed_by_peer(s));
            idle.is_empty()
        }),
        "{} idle connections still open",
        idle.len()
    );
    let page = server.metrics_page();
    assert!(
        metric_value(&page, "tile38_connected_clients").is_some(),
        "{page}"
    );
}

#[test]
fn a_wrong_auth_does_not_log_out_an_authenticated_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--requirepass", "s3cret"]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "AUTH s3cret"), "OK");
    assert_eq!(run(&mut c, "SET fleet a POINT 1 1"), "OK");
    assert_eq!(run(&mut c, "AUTH wrong"), "ERR:WRONGPASS invalid password");
    // A connection that never authenticated stays locked out.
    let mut d = server.client();
    assert_eq!(run(&mut d, "AUTH wrong"), "ERR:WRONGPASS invalid password");
    assert_eq!(
        run(&mut d, "GET fleet a POINT"),
        "ERR:NOAUTH Authentication required."
    );
}

#[test]
fn follow_to_its_own_address_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let port = server.port.to_string();
    let mut hosts: Vec<String> = ["127.0.0.1", "localhost", "LocalHost", "::ffff:127.0.0.1"]
        .map(String::from)
        .to_vec();
    // The machine's own name, which resolves to a loopback address here
    // (as on most hosts through /etc/hosts): only a resolved name reveals it.
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let loopback = |n: &str| {
        use std::net::ToSocketAddrs;
        (n, 1)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.any(|a| a.ip().is_loopback()))
    };
    if !name.is_empty() && loopback(name) {
        hosts.push(name.to_string());
    }
    for host in &hosts {
        assert_eq!(
            run(&mut c, &format!("FOLLOW {host} {port}")),
            "ERR:cannot follow self",
            "{host}"
        );
    }
    // Another port on the same names is another server: accepted (it is
    // not there, so the link only retries), then dropped again.
    let other = e2e::free_port();
    assert_eq!(run(&mut c, &format!("FOLLOW localhost {other}")), "OK");
    assert_eq!(run(&mut c, "FOLLOW no one"), "OK");
    assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET fleet a POINT 1 1"), "OK", "still a leader");
}

/// A saved config that names the server's own address as its leader (a
/// config copied from another node, or written by hand) is dropped at
/// start: the node leads and takes writes instead of following itself, and
/// CONFIG REWRITE no longer keeps the setting.
#[test]
fn a_saved_config_that_follows_itself_is_dropped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = e2e::free_port();
    let config = dir.path().join("config");
    for host in ["127.0.0.1", "localhost"] {
        std::fs::write(
            &config,
            format!(r#"{{"follow_host":"{host}","follow_port":{port}}}"#),
        )
        .unwrap();
        let p = port.to_string();
        let server = start(dir.path(), &["--port", &p]).unwrap();
        let mut c = server.client();
        assert_eq!(run(&mut c, "SET fleet a POINT 1 1"), "OK", "{host}: leads");
        assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
        let saved = std::fs::read_to_string(&config).unwrap();
        let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
        assert_eq!(saved["follow_host"], "", "{host}: {saved}");
        // Started again on what it wrote, it still leads.
        let server = server.restart().unwrap();
        let mut c = server.client();
        assert_eq!(run(&mut c, "SET fleet b POINT 2 2"), "OK", "{host}: leads");
    }
}

#[test]
fn idle_clients_are_closed_at_the_idle_timeout_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--idle-timeout-ms", "300", "--metrics-addr", "127.0.0.1:0"],
    )
    .unwrap();
    let mut idle = server.raw();
    // It is served, then left idle.
    let (pong, _) = e2e::exchange(&mut idle, b"PING\r\n", 7);
    assert_eq!(pong, b"+PONG\r\n");
    assert!(wait_until(Duration::from_secs(30), || closed_by_peer(
        &mut idle
    )));
    assert!(wait_until(Duration::from_secs(30), || server
        .metrics_addr()
        .is_some()));
    let page = server.metrics_page();
    assert_eq!(
        metric_value(&page, r#"geohook_clients_closed_total{reason="idle"}"#),
        Some(1.0),
        "{page}"
    );
    let mut c = server.client();
    assert_eq!(run(&mut c, "PING"), "PONG");
}
