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
