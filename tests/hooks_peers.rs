//! Real hook endpoints on loopback for the `hooks_*` tests, included by each
//! of them with `#[path]`: an HTTP server that records POST bodies, a real
//! `redis-server` with a subscriber, the tansu Kafka-compatible broker, and
//! a way to read the server's Prometheus metrics. The peers themselves are
//! geohook-hooks' test peers (async); this file runs them on one runtime and
//! gives the synchronous tests blocking calls and waits.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Result;
use e2e::{wait_until, Server};

#[path = "../examples/geohook-hooks/tests/common/peers.rs"]
mod shared;

pub use e2e::free_port;
pub use shared::tansu_bin;

/// One runtime for every async peer in the test process.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// An HTTP server that records every POST body in arrival order.
pub struct HttpSink(shared::HttpSink);

impl HttpSink {
    /// Starts on `port` (0 for any free one).
    pub fn start_on(port: u16) -> Result<HttpSink> {
        rt().block_on(shared::HttpSink::start_on(port))
            .map(HttpSink)
    }

    pub fn start() -> HttpSink {
        HttpSink::start_on(0).expect("http sink")
    }

    pub fn url(&self, path: &str) -> String {
        self.0.url(path)
    }

    pub fn bodies(&self) -> Vec<String> {
        self.0.bodies()
    }

    /// The events received so far, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        parse_all(&self.bodies())
    }

    /// Waits until at least `n` bodies arrived; returns the events.
    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        let ok = wait_until(Duration::from_secs(15), || self.0.count() >= n);
        assert!(ok, "expected {n} events, got {:?}", self.bodies());
        self.events()
    }

    pub fn stop(&self) {
        self.0.stop();
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.0.stop();
    }
}

pub fn parse_all(bodies: &[String]) -> Vec<serde_json::Value> {
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("bad JSON {b}: {e}")))
        .collect()
}

/// A real redis-server on a free port and a subscriber recording every
/// message of one channel.
pub struct RedisPeer(shared::Redis);

impl RedisPeer {
    pub fn start(channel: &str) -> Result<RedisPeer> {
        rt().block_on(shared::Redis::start(&[channel]))
            .map(RedisPeer)
    }

    pub fn url(&self, channel: &str) -> String {
        self.0.url(channel)
    }

    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        let ok = wait_until(Duration::from_secs(15), || self.0.payloads().len() >= n);
        let got = self.0.payloads();
        assert!(ok, "expected {n} redis messages, got {got:?}");
        parse_all(&got)
    }
}

/// A real tansu broker on a free port with an in-memory store and one topic.
pub struct KafkaPeer(shared::Kafka);

impl KafkaPeer {
    pub fn start(topic: &str) -> Result<KafkaPeer> {
        rt().block_on(shared::Kafka::start(&[topic])).map(KafkaPeer)
    }

    pub fn url(&self, topic: &str) -> String {
        self.0.url(topic)
    }

    /// Every record of partition 0, as (key, value), in log order.
    pub fn records(&self, topic: &str) -> Result<Vec<(String, String)>> {
        rt().block_on(self.0.records(topic))
    }

    pub fn wait_records(&self, topic: &str, n: usize) -> Vec<(String, String)> {
        let mut got = Vec::new();
        let ok = wait_until(Duration::from_secs(20), || {
            got = self.records(topic).unwrap_or_default();
            got.len() >= n
        });
        assert!(ok, "expected {n} kafka records, got {got:?}");
        got
    }
}

/// The server's metrics page.
pub fn scrape(server: &Server) -> String {
    server.metrics_page()
}

/// One sample's value from the metrics page (0 when absent).
pub fn metric(page: &str, name: &str) -> f64 {
    e2e::metric_value(page, name).unwrap_or(0.0)
}

/// Runs a command given as separate arguments and renders the reply.
pub fn cmd(conn: &mut redis::Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    e2e::render(c.query(conn))
}

/// Sets hook `name` to send `enter` events of `fleet` objects within 1 km of
/// 33,-112 to `url`.
pub fn sethook_enter(c: &mut redis::Connection, name: &str, url: &str) {
    assert_eq!(
        cmd(
            c,
            &[
                "SETHOOK", name, url, "NEARBY", "fleet", "FENCE", "DETECT", "enter", "POINT", "33",
                "-112", "1000"
            ]
        ),
        "1"
    );
}

/// Starts an HTTP sink on `port`, waiting for a previous one to let go of it.
pub fn sink_on(port: u16) -> HttpSink {
    let mut sink = None;
    assert!(wait_until(Duration::from_secs(10), || {
        sink = HttpSink::start_on(port).ok();
        sink.is_some()
    }));
    sink.unwrap()
}

/// The object ids of `events` in the order their event ids first appear, and
/// how many events repeat an event id already seen.
pub fn first_seen(events: &[serde_json::Value]) -> (Vec<String>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut order = Vec::new();
    let mut dups = 0;
    for e in events {
        let eid = e["event_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no event_id in {e}"));
        if seen.insert(eid) {
            order.push(e["id"].as_str().unwrap().to_owned());
        } else {
            dups += 1;
        }
    }
    (order, dups)
}

/// One cycle of a SIGKILL loop: a writer SETs `fleet` objects `c{cycle}n0`,
/// `c{cycle}n1`, … into `s` near 33,-112, paced, recording in `acked` each
/// one the server acknowledged, until `s` is killed with SIGKILL at a random
/// point 100 to 600 ms in, wherever the writer, the deliveries and the
/// journal happen to be.
pub fn write_until_kill9(
    s: Server,
    cycle: usize,
    acked: &std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
    rng: &mut impl rand::Rng,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (port, stop, acked) = (s.port, stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
                return;
            };
            let Ok(mut c) = client.get_connection() else {
                return;
            };
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("c{cycle}n{n}");
                let r: redis::RedisResult<String> = redis::cmd("SET")
                    .arg(&["fleet", &id, "POINT", "33.001", "-112.001"])
                    .query(&mut c);
                match r {
                    Ok(ok) if ok == "OK" => acked.lock().push(id),
                    _ => return,
                }
                n += 1;
                // Paced so that deliveries keep up over the whole loop.
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(rng.random_range(100..600)));
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

/// A fence that reports `enter` and `exit` of `fleet` objects in the box
/// 33,-112 to 33.1,-111.9.
pub const ENTER_EXIT_FENCE: [&str; 10] = [
    "WITHIN",
    "fleet",
    "FENCE",
    "DETECT",
    "enter,exit",
    "BOUNDS",
    "33",
    "-112",
    "33.1",
    "-111.9",
];

/// Sets each of `hooks` (name, endpoint URL) on [`ENTER_EXIT_FENCE`] with
/// META site north, then moves `truck1` into the fence with a field and out
/// again, so that each hook has one enter and one exit event to deliver.
pub fn sethooks_and_cross_the_fence(c: &mut redis::Connection, hooks: &[(&str, String)]) {
    for (name, url) in hooks {
        let mut args = vec!["SETHOOK", *name, url.as_str(), "META", "site", "north"];
        args.extend(ENTER_EXIT_FENCE);
        assert_eq!(cmd(c, &args), "1", "{name}");
    }
    assert_eq!(e2e::run(c, "SET fleet truck1 POINT 32 -112"), "OK");
    assert_eq!(
        e2e::run(c, "SET fleet truck1 FIELD speed 20 POINT 33.05 -111.95"),
        "OK"
    );
    assert_eq!(e2e::run(c, "SET fleet truck1 POINT 32 -112"), "OK");
}

/// The members of an event, in the order they appear in its JSON text.
pub fn member_order(body: &str) -> Vec<String> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).unwrap();
    let mut keys: Vec<(usize, String)> = v
        .keys()
        .map(|k| (body.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}
