//! An endpoint that is down, then comes back: events still within their
//! time-to-live arrive, in order, once; older ones become dead letters,
//! counted in the metrics (`hooks_durable_dead_letters.rs` redelivers them). And with a short maximum connection lifetime under constant
//! load, connections are replaced without losing or repeating an event.

#[path = "hooks_peers.rs"]
mod peers;

use std::time::{Duration, Instant};

use e2e::{run, start, wait_until};
use peers::{cmd, free_port, metric, scrape, sethook_enter, HttpSink, RedisPeer};

fn ids(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn events_within_ttl_arrive_once_in_order_and_older_ones_become_dead_letters() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // Longer than the 5 s retry ceiling, so a hook in back-off still gets
    // through before its new events expire.
    let server = start(
        dir.path(),
        &[
            "--hook-message-ttl-ms",
            "6000",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut c = server.client();
    let url = format!("http://127.0.0.1:{port}/events");
    sethook_enter(&mut c, "h", &url);
    for i in 0..5 {
        assert_eq!(
            run(&mut c, &format!("SET fleet old{i} POINT 33.001 -112.001")),
            "OK"
        );
    }
    // The endpoint is down: the five wait, are retried, then expire.
    assert!(
        wait_until(Duration::from_secs(30), || {
            metric(
                &scrape(&server),
                "geohook_hook_dead_letters_total{hook=\"h\",reason=\"expired\"}",
            ) >= 5.0
        }),
        "{}",
        scrape(&server)
    );
    let page = scrape(&server);
    assert!(metric(&page, "geohook_hook_failures_total{scheme=\"http\"}") >= 1.0);
    assert!(metric(&page, "geohook_hook_retries_total{scheme=\"http\"}") >= 1.0);
    for i in 0..10 {
        assert_eq!(
            run(&mut c, &format!("SET fleet new{i} POINT 33.001 -112.001")),
            "OK"
        );
    }
    let sent = Instant::now();
    let http = HttpSink::start_on(port).unwrap();
    let events = http.wait_events(10);
    assert!(
        sent.elapsed() < Duration::from_secs(6),
        "delivered within the TTL"
    );
    let want: Vec<String> = (0..10).map(|i| format!("new{i}")).collect();
    assert!(wait_until(Duration::from_secs(10), || {
        metric(&scrape(&server), "geohook_hook_queued_messages") == 0.0
    }));
    assert_eq!(
        ids(&http.events()),
        want,
        "in order, once, none of the expired ones"
    );
    assert_eq!(ids(&events), want);
    let page = scrape(&server);
    assert_eq!(
        metric(&page, "geohook_hook_deliveries_total{scheme=\"http\"}"),
        10.0
    );
    assert_eq!(
        metric(
            &page,
            "geohook_hook_dead_letters_total{hook=\"h\",reason=\"expired\"}"
        ),
        5.0
    );
}

#[test]
fn connections_are_recycled_under_constant_load_without_loss() {
    let http = HttpSink::start();
    let redis = RedisPeer::start("geo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--hook-max-connection-lifetime-ms",
            "300",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut c = server.client();
    for (name, url) in [("web", http.url("x")), ("pub", redis.url("geo"))] {
        assert_eq!(
            cmd(
                &mut c,
                &[
                    "SETHOOK", name, &url, "NEARBY", "fleet", "FENCE", "DETECT", "enter", "POINT",
                    "33", "-112", "1000"
                ]
            ),
            "1"
        );
    }
    // Constant traffic for about 2.5 s: the reaper (once a second) must
    // replace connections that are busy the whole time.
    let mut n = 0;
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        for _ in 0..5 {
            assert_eq!(
                run(&mut c, &format!("SET fleet t{n} POINT 33.001 -112.001")),
                "OK"
            );
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let want: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    assert_eq!(ids(&http.wait_events(n)), want);
    assert_eq!(ids(&redis.wait_events(n)), want);
    let page = scrape(&server);
    assert!(
        metric(&page, "geohook_hook_connection_recycles_total") >= 2.0,
        "{page}"
    );
    assert_eq!(
        metric(&page, "geohook_hook_deliveries_total{scheme=\"http\"}"),
        n as f64
    );
    assert_eq!(
        metric(&page, "geohook_hook_deliveries_total{scheme=\"redis\"}"),
        n as f64
    );
}
