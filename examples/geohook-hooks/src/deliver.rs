//! Sending one message to one endpoint, over connections that are pooled and recycled by age.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::endpoint::{
    AmqpTarget, Endpoint, KafkaAuth, KafkaSecurity, MqttTarget, NatsTarget, Target, TlsFiles,
};
use crate::error::{Error, Result};
use crate::metrics::Counters;

/// Connection and timeout settings for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// How long one send may take, connecting included, before it counts as failed.
    /// Default: 5 s (Tile38's HTTP and publish timeout).
    pub send_timeout: Duration,
    /// How long opening a connection may take. Default: 2 s.
    pub connect_timeout: Duration,
    /// Age after which a pooled connection (or HTTP client) is replaced even if it is busy; in-flight
    /// sends finish on the old one. Default: 30 minutes.
    pub max_connection_lifetime: Duration,
    /// Idle time after which a pooled connection is closed. Default: 30 s (Tile38's expiry for Redis
    /// and Kafka connections).
    pub idle_timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            send_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_connection_lifetime: Duration::from_secs(30 * 60),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl DeliveryConfig {
    /// Checks that every duration is positive.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first zero duration.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("send_timeout", self.send_timeout),
            ("connect_timeout", self.connect_timeout),
            ("max_connection_lifetime", self.max_connection_lifetime),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig {
                    field,
                    reason: "must be positive".into(),
                });
            }
        }
        Ok(())
    }
}

/// One message body and the key Kafka records carry (`<key>-<id>`, as Tile38).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The Kafka record key.
    pub key: Bytes,
    /// The event JSON.
    pub body: Bytes,
}

/// A pooled thing with its birth and last use, so that it can be retired by age or idleness.
#[derive(Debug)]
struct Aged<T> {
    conn: T,
    opened: Instant,
    last_used: Instant,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<Aged<T>>>>;
type RedisSlot = Slot<redis::aio::MultiplexedConnection>;
type KafkaSlot = Slot<Arc<KafkaConn>>;
type MqttSlot = Slot<MqttConn>;
type NatsSlot = Slot<NatsConn>;
type AmqpSlot = Slot<AmqpConn>;

/// A Kafka topic's partitions, one client each, in partition order.
#[derive(Debug)]
struct KafkaConn {
    partitions: Vec<rskafka::client::partition::PartitionClient>,
}

/// An MQTT session. rumqttc does its I/O only while its event loop is polled, so a send polls it
/// itself until the broker acknowledges the message; the slot stays locked meanwhile, which
/// serialises the sends of one broker as Tile38's one connection per endpoint does.
struct MqttConn {
    client: rumqttc::AsyncClient,
    events: rumqttc::EventLoop,
    /// Set while a publish waits for its acknowledgement; a send cancelled halfway (its timeout)
    /// leaves it set, and the session is then replaced rather than reused in an unknown state.
    busy: bool,
}

impl fmt::Debug for MqttConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConn")
            .field("busy", &self.busy)
            .finish()
    }
}

/// A NATS connection, and the JetStream context when the endpoint asks for acknowledgements.
#[derive(Debug, Clone)]
struct NatsConn {
    client: async_nats::Client,
    jetstream: Option<async_nats::jetstream::Context>,
}

/// An AMQP connection and its one channel, in confirm mode, with the exchange and queue declared.
#[derive(Debug, Clone)]
struct AmqpConn {
    // Kept so that the connection lives as long as the channel that rides on it.
    _connection: Arc<lapin::Connection>,
    channel: lapin::Channel,
}

/// Sends messages to endpoints. One HTTP client serves every webhook (it pools per host); Redis and
/// Kafka keep one connection per server (and topic), shared by every hook that names it.
///
/// Every connection is replaced once older than [`DeliveryConfig::max_connection_lifetime`], whether
/// or not it is busy, because reuse under constant load would otherwise keep one connection for the
/// life of the process (the Tile38 Kafka fault). Replacement never interrupts a send: a sender holds
/// its own handle to the old connection, which closes when the last handle drops.
#[derive(Debug)]
pub struct Deliverer {
    config: DeliveryConfig,
    counters: Arc<Counters>,
    http: Mutex<Aged<reqwest::Client>>,
    redis: Mutex<HashMap<(String, u16), RedisSlot>>,
    kafka: Mutex<HashMap<Arc<str>, KafkaSlot>>,
    mqtt: Mutex<HashMap<Arc<str>, MqttSlot>>,
    nats: Mutex<HashMap<Arc<str>, NatsSlot>>,
    amqp: Mutex<HashMap<Arc<str>, AmqpSlot>>,
}

impl Deliverer {
    pub(crate) fn new(config: DeliveryConfig, counters: Arc<Counters>) -> Result<Self> {
        config.validate()?;
        let now = Instant::now();
        let client = build_http_client(&config)?;
        counters.connections_opened.fetch_add(1, Relaxed);
        Ok(Self {
            http: Mutex::new(Aged {
                conn: client,
                opened: now,
                last_used: now,
            }),
            config,
            counters,
            redis: Mutex::new(HashMap::new()),
            kafka: Mutex::new(HashMap::new()),
            mqtt: Mutex::new(HashMap::new()),
            nats: Mutex::new(HashMap::new()),
            amqp: Mutex::new(HashMap::new()),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// Sends one message to one endpoint and counts the outcome on its scheme.
    ///
    /// # Errors
    /// A delivery error ([`Error::Http`], [`Error::HttpStatus`], [`Error::Redis`], [`Error::Kafka`],
    /// [`Error::Timeout`]); the connection used is dropped from the pool so the next send opens a new one.
    ///
    /// # Cancellation safety
    /// Cancelling may leave the message delivered or not; nothing else is affected.
    pub async fn send(&self, endpoint: &Endpoint, payload: &Payload) -> Result<()> {
        self.send_within(endpoint, payload, self.config.send_timeout)
            .await
    }

    /// [`Deliverer::send`] with its own timeout for this one attempt (a hook's retry policy).
    ///
    /// # Errors
    /// As [`Deliverer::send`].
    ///
    /// # Cancellation safety
    /// As [`Deliverer::send`].
    pub async fn send_within(
        &self,
        endpoint: &Endpoint,
        payload: &Payload,
        timeout: Duration,
    ) -> Result<()> {
        let attempt = async {
            match endpoint.target() {
                Target::Http(url) => self.send_http(endpoint, url, payload, timeout).await,
                Target::Redis {
                    host,
                    port,
                    channel,
                } => {
                    self.send_redis(endpoint, host, *port, channel, payload)
                        .await
                }
                Target::Kafka {
                    host,
                    port,
                    topic,
                    security,
                } => {
                    self.send_kafka(endpoint, host, *port, topic, security, payload)
                        .await
                }
                Target::Mqtt(target) => self.send_mqtt(endpoint, target, payload).await,
                Target::Nats(target) => self.send_nats(endpoint, target, payload).await,
                Target::Amqp(target) => self.send_amqp(endpoint, target, payload).await,
            }
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                url: endpoint.url().to_owned(),
                timeout,
            }),
        };
        let counters = self.counters.scheme(endpoint.scheme());
        match &result {
            Ok(()) => counters.deliveries.fetch_add(1, Relaxed),
            Err(_) => counters.failures.fetch_add(1, Relaxed),
        };
        result
    }

    /// Closes pooled connections that sat idle past the idle timeout and retires those past their
    /// maximum lifetime. The queue runner calls this about once a second.
    pub fn reap(&self) {
        let now = Instant::now();
        let idle = self.config.idle_timeout;
        let max_age = self.config.max_connection_lifetime;
        let (mut closed, mut recycled) = (0, 0);
        let (c, r) = (&mut closed, &mut recycled);
        self.redis
            .lock()
            .retain(|_, slot| retain_slot(slot, now, idle, max_age, c, r));
        self.kafka
            .lock()
            .retain(|_, slot| retain_slot(slot, now, idle, max_age, c, r));
        self.mqtt
            .lock()
            .retain(|_, slot| retain_slot(slot, now, idle, max_age, c, r));
        self.nats
            .lock()
            .retain(|_, slot| retain_slot(slot, now, idle, max_age, c, r));
        self.amqp
            .lock()
            .retain(|_, slot| retain_slot(slot, now, idle, max_age, c, r));
        self.counters.idle_closes.fetch_add(closed, Relaxed);
        self.counters
            .connection_recycles
            .fetch_add(recycled, Relaxed);
    }

    fn http_client(&self) -> Result<reqwest::Client> {
        let mut http = self.http.lock();
        let now = Instant::now();
        if now.duration_since(http.opened) >= self.config.max_connection_lifetime {
            // Requests in flight keep the old client (and its connections) alive until they finish.
            http.conn = build_http_client(&self.config)?;
            http.opened = now;
            self.counters.connection_recycles.fetch_add(1, Relaxed);
            self.counters.connections_opened.fetch_add(1, Relaxed);
        }
        http.last_used = now;
        Ok(http.conn.clone())
    }

    async fn send_http(
        &self,
        endpoint: &Endpoint,
        url: &reqwest::Url,
        payload: &Payload,
        timeout: Duration,
    ) -> Result<()> {
        let client = self.http_client()?;
        let err = |source| Error::Http {
            url: endpoint.url().to_owned(),
            source,
        };
        let mut response = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(payload.body.clone())
            .send()
            .await
            .map_err(err)?;
        let status = response.status().as_u16();
        // Read a bounded amount of the reply so the connection can go back to the pool; a peer that
        // sends more than that simply loses its connection.
        let mut budget = 64 * 1024usize;
        while budget > 0 {
            match response.chunk().await.map_err(err)? {
                Some(chunk) => budget = budget.saturating_sub(chunk.len()),
                None => break,
            }
        }
        if matches!(status, 200..=202) {
            Ok(())
        } else {
            Err(Error::HttpStatus {
                url: endpoint.url().to_owned(),
                status,
            })
        }
    }

    async fn send_redis(
        &self,
        endpoint: &Endpoint,
        host: &str,
        port: u16,
        channel: &str,
        payload: &Payload,
    ) -> Result<()> {
        let slot = self
            .redis
            .lock()
            .entry((host.to_owned(), port))
            .or_default()
            .clone();
        let err = |source| Error::Redis {
            url: endpoint.url().to_owned(),
            source,
        };
        let mut conn = self
            .checkout(&slot, async {
                let client = redis::Client::open(format!("redis://{}/", host_port(host, port)))
                    .map_err(err)?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.config.connect_timeout))
                    // Each send has its own deadline (the hook's timeout), around the call.
                    .set_response_timeout(None);
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(err)
            })
            .await?;
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload.body.as_ref())
            .query_async(&mut conn)
            .await;
        if let Err(e) = published {
            slot.lock().await.take();
            return Err(err(e));
        }
        Ok(())
    }

    async fn send_kafka(
        &self,
        endpoint: &Endpoint,
        host: &str,
        port: u16,
        topic: &str,
        security: &KafkaSecurity,
        payload: &Payload,
    ) -> Result<()> {
        use rskafka::client::partition::{Compression, UnknownTopicHandling};
        let slot = pooled(&self.kafka, endpoint);
        let err = |source| Error::Kafka {
            url: endpoint.url().to_owned(),
            source,
        };
        let conn = self
            .checkout(&slot, async {
                // Without a deadline rskafka retries a dead broker for ever; the queue does its own retrying.
                let backoff = rskafka::BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                    deadline: Some(self.config.connect_timeout),
                };
                let mut builder = rskafka::client::ClientBuilder::new(vec![host_port(host, port)])
                    .client_id("geohook")
                    .backoff_config(backoff);
                if security.auth == KafkaAuth::Sasl {
                    builder = builder.sasl_config(kafka_sasl(security));
                }
                if security.tls() {
                    builder = kafka_tls(builder, endpoint, &security.files)?;
                }
                let client = builder.build().await.map_err(err)?;
                // Partition 0 first: its lookup fails with the broker's own error for a missing topic.
                let first = client
                    .partition_client(topic, 0, UnknownTopicHandling::Error)
                    .await
                    .map_err(err)?;
                let count = client
                    .list_topics()
                    .await
                    .map_err(err)?
                    .into_iter()
                    .find(|t| t.name == topic)
                    .map_or(1, |t| t.partitions.len().max(1));
                let mut partitions = vec![first];
                for p in 1..count {
                    let p = i32::try_from(p).unwrap_or(i32::MAX);
                    partitions.push(
                        client
                            .partition_client(topic, p, UnknownTopicHandling::Error)
                            .await
                            .map_err(err)?,
                    );
                }
                Ok(Arc::new(KafkaConn { partitions }))
            })
            .await?;
        let partition = &conn.partitions[kafka_partition(&payload.key, conn.partitions.len())];
        let record = rskafka::record::Record {
            key: Some(payload.key.to_vec()),
            value: Some(payload.body.to_vec()),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        if let Err(e) = partition
            .produce(vec![record], Compression::NoCompression)
            .await
        {
            slot.lock().await.take();
            return Err(err(e));
        }
        Ok(())
    }

    async fn send_mqtt(
        &self,
        endpoint: &Endpoint,
        target: &MqttTarget,
        payload: &Payload,
    ) -> Result<()> {
        let slot = pooled(&self.mqtt, endpoint);
        let err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Mqtt {
            url: endpoint.url().to_owned(),
            source,
        };
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|a| a.conn.busy) {
            *guard = None;
        }
        let conn = self
            .ensure(&mut guard, async {
                let client_id = target.client_id.clone().unwrap_or_else(|| {
                    let b: [u8; 16] = rand::random();
                    let hex = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<String>();
                    // Tile38's form, so that broker ACLs written for Tile38 match.
                    format!(
                        "tile38-{}-{}-{}-{}-{}",
                        hex(&b[0..4]),
                        hex(&b[4..6]),
                        hex(&b[6..8]),
                        hex(&b[8..10]),
                        hex(&b[10..])
                    )
                });
                let mut options = rumqttc::MqttOptions::new(client_id, &target.host, target.port);
                // Replies from the broker are small acknowledgements; events may be large polygons.
                options.set_max_packet_size(64 * 1024, 256 * 1024 * 1024);
                options.set_keep_alive(Duration::from_secs(60));
                if let Some((user, pass)) = &target.credentials {
                    options.set_credentials(user, pass);
                }
                if target.tls != TlsFiles::default() {
                    let tls = rustls_config(&target.tls).map_err(|reason| Error::Tls { reason })?;
                    options.set_transport(mqtt_transport(tls)?);
                }
                let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
                let secs = self.config.connect_timeout.as_secs().max(1);
                events.network_options.set_connection_timeout(secs);
                // The first poll connects; anything but the broker's CONNACK is a failure.
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {}
                    Ok(other) => {
                        return Err(err(format!("unexpected {other:?} before CONNACK").into()))
                    }
                    Err(e) => return Err(err(Box::new(e))),
                }
                Ok(MqttConn {
                    client,
                    events,
                    busy: false,
                })
            })
            .await?;
        conn.busy = true;
        let qos = match target.qos {
            0 => rumqttc::QoS::AtMostOnce,
            1 => rumqttc::QoS::AtLeastOnce,
            _ => rumqttc::QoS::ExactlyOnce,
        };
        let published = mqtt_publish(conn, &target.topic, qos, target.retained, payload).await;
        match published {
            Ok(()) => {
                conn.busy = false;
                Ok(())
            }
            Err(e) => {
                *guard = None;
                Err(err(e))
            }
        }
    }

    async fn send_nats(
        &self,
        endpoint: &Endpoint,
        target: &NatsTarget,
        payload: &Payload,
    ) -> Result<()> {
        let slot = pooled(&self.nats, endpoint);
        let err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Nats {
            url: endpoint.url().to_owned(),
            source,
        };
        {
            // The client reconnects by itself and would buffer what it is given meanwhile; a
            // connection that is not up right now is dropped, so that the send fails and is retried
            // by the queue instead of being held in a buffer that a crash would lose.
            let mut guard = slot.lock().await;
            if guard.as_ref().is_some_and(|a| {
                a.conn.client.connection_state() != async_nats::connection::State::Connected
            }) {
                *guard = None;
            }
        }
        let conn = self
            .checkout(&slot, async {
                let tls = target.secure || target.ca_cert.is_some();
                let scheme = if tls { "tls" } else { "nats" };
                let address = format!("{scheme}://{}", host_port(&target.host, target.port));
                let mut options = async_nats::ConnectOptions::new()
                    .name("geohook")
                    .connection_timeout(self.config.connect_timeout)
                    .require_tls(tls);
                if let Some(ca) = &target.ca_cert {
                    // Only these roots verify the server (the client skips the platform's).
                    options = options.add_root_certificates(ca.clone());
                }
                if let Some((user, pass)) = &target.credentials {
                    options = options.user_and_password(user.clone(), pass.clone());
                }
                if let Some(token) = &target.token {
                    options = options.token(token.clone());
                }
                if let Some((cert, key)) = &target.client_cert {
                    options = options.add_client_certificate(cert.clone(), key.clone());
                }
                let client = options
                    .connect(address)
                    .await
                    .map_err(|e| err(Box::new(e)))?;
                let jetstream = target
                    .jetstream
                    .then(|| async_nats::jetstream::new(client.clone()));
                Ok(NatsConn { client, jetstream })
            })
            .await?;
        let subject = target.subject.clone();
        let sent = match &conn.jetstream {
            // JetStream answers each message once the stream has stored it.
            Some(js) => match js.publish(subject, payload.body.clone()).await {
                Ok(ack) => ack.await.map(drop).map_err(|e| err(Box::new(e))),
                Err(e) => Err(err(Box::new(e))),
            },
            // Core NATS has no acknowledgement: the best there is, as with Tile38, is that the
            // message left for the server; flushing makes a dead connection show up here.
            None => match conn.client.publish(subject, payload.body.clone()).await {
                Ok(()) => conn.client.flush().await.map_err(|e| err(Box::new(e))),
                Err(e) => Err(err(Box::new(e))),
            },
        };
        if sent.is_err() {
            slot.lock().await.take();
        }
        sent
    }

    async fn send_amqp(
        &self,
        endpoint: &Endpoint,
        target: &AmqpTarget,
        payload: &Payload,
    ) -> Result<()> {
        use lapin::options::{
            BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
            QueueDeclareOptions,
        };
        use lapin::types::FieldTable;
        let slot = pooled(&self.amqp, endpoint);
        let err = |source: lapin::Error| Error::Amqp {
            url: endpoint.url().to_owned(),
            source: Box::new(source),
        };
        let conn = self
            .checkout(&slot, async {
                let mut builder = lapin::DefaultConnectionBuilder::new()
                    .map_err(err)?
                    .with_uri_str(target.uri.clone())
                    .with_properties(lapin::ConnectionProperties::default());
                if let Some(ca) = &target.ca_cert {
                    // The client adds these roots (PEM) to the ones it trusts.
                    let pem = std::fs::read_to_string(ca).map_err(|e| Error::Tls {
                        reason: format!("{}: {e}", ca.display()),
                    })?;
                    builder = builder.with_tls_config(lapin::tcp::OwnedTLSConfig {
                        identity: None,
                        cert_chain: Some(pem),
                    });
                }
                let connect = builder.connect();
                let connection = tokio::time::timeout(self.config.connect_timeout, connect)
                    .await
                    .map_err(|_| Error::Timeout {
                        url: endpoint.url().to_owned(),
                        timeout: self.config.connect_timeout,
                    })?
                    .map_err(err)?;
                let channel = connection.create_channel().await.map_err(err)?;
                // Confirms turn "accepted" into "the broker has taken responsibility for it", which
                // is what the journal waits for before it forgets an event (Tile38 does not ask).
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(err)?;
                let kind = match target.kind.as_str() {
                    "direct" => lapin::ExchangeKind::Direct,
                    "fanout" => lapin::ExchangeKind::Fanout,
                    "headers" => lapin::ExchangeKind::Headers,
                    "topic" => lapin::ExchangeKind::Topic,
                    other => lapin::ExchangeKind::Custom(other.to_owned()),
                };
                // Tile38's declarations: an exchange named after the queue and, unless it is a topic
                // exchange, the queue itself bound to it with the route.
                let name = target.queue.as_str();
                channel
                    .exchange_declare(
                        name.into(),
                        kind,
                        ExchangeDeclareOptions {
                            durable: target.durable,
                            auto_delete: target.auto_delete,
                            internal: target.internal,
                            nowait: target.no_wait,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(err)?;
                if target.kind != "topic" {
                    channel
                        .queue_declare(
                            name.into(),
                            QueueDeclareOptions {
                                durable: target.durable,
                                auto_delete: target.auto_delete,
                                nowait: target.no_wait,
                                ..Default::default()
                            },
                            FieldTable::default(),
                        )
                        .await
                        .map_err(err)?;
                    channel
                        .queue_bind(
                            name.into(),
                            name.into(),
                            target.route.as_str().into(),
                            QueueBindOptions {
                                nowait: target.no_wait,
                            },
                            FieldTable::default(),
                        )
                        .await
                        .map_err(err)?;
                }
                Ok(AmqpConn {
                    _connection: Arc::new(connection),
                    channel,
                })
            })
            .await?;
        let properties = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(target.delivery_mode)
            .with_priority(target.priority);
        let confirmed = async {
            let confirm = conn
                .channel
                .basic_publish(
                    target.queue.as_str().into(),
                    target.route.as_str().into(),
                    BasicPublishOptions {
                        mandatory: target.mandatory,
                        immediate: target.immediate,
                    },
                    &payload.body,
                    properties,
                )
                .await
                .map_err(err)?;
            match confirm.await.map_err(err)? {
                lapin::Confirmation::Ack(None) | lapin::Confirmation::NotRequested => Ok(()),
                lapin::Confirmation::Ack(Some(_)) => Err(Error::Rejected {
                    url: endpoint.url().to_owned(),
                    reason: "the broker returned the message as unroutable",
                }),
                lapin::Confirmation::Nack(_) => Err(Error::Rejected {
                    url: endpoint.url().to_owned(),
                    reason: "the broker refused the message",
                }),
            }
        }
        .await;
        if confirmed.is_err() {
            slot.lock().await.take();
        }
        confirmed
    }

    /// The connection pooled in `slot`, after retiring it if it is past its lifetime; when the slot is
    /// empty, awaits `open` and pools what it returns. The slot stays locked while `open` runs, so that
    /// concurrent sends to one peer open one connection between them.
    async fn checkout<T: Clone>(
        &self,
        slot: &tokio::sync::Mutex<Option<Aged<T>>>,
        open: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut guard = slot.lock().await;
        self.ensure(&mut guard, open).await.map(|conn| conn.clone())
    }

    /// [`Deliverer::checkout`] for a slot the caller has locked and keeps locked while it uses the
    /// connection in place.
    async fn ensure<'a, T>(
        &self,
        slot: &'a mut Option<Aged<T>>,
        open: impl std::future::Future<Output = Result<T>>,
    ) -> Result<&'a mut T> {
        let now = Instant::now();
        if slot
            .as_ref()
            .is_some_and(|a| now.duration_since(a.opened) >= self.config.max_connection_lifetime)
        {
            *slot = None;
            self.counters.connection_recycles.fetch_add(1, Relaxed);
        }
        if slot.is_none() {
            let conn = open.await?;
            self.counters.connections_opened.fetch_add(1, Relaxed);
            *slot = Some(Aged {
                conn,
                opened: now,
                last_used: now,
            });
        }
        let aged = slot.as_mut().expect("filled above");
        aged.last_used = now;
        Ok(&mut aged.conn)
    }
}

/// The slot of `endpoint` in `pool`, created empty on first use. Pools of the brokers are keyed by
/// the whole URL, because its options (credentials, TLS, QoS) belong to the connection.
fn pooled<T>(pool: &Mutex<HashMap<Arc<str>, Slot<T>>>, endpoint: &Endpoint) -> Slot<T> {
    let mut pool = pool.lock();
    if let Some(slot) = pool.get(endpoint.url()) {
        return Arc::clone(slot);
    }
    let slot: Slot<T> = Arc::new(tokio::sync::Mutex::new(None));
    pool.insert(Arc::from(endpoint.url()), Arc::clone(&slot));
    slot
}

/// Publishes one message on an MQTT session and polls the session until the broker acknowledges
/// it: PUBACK for QoS 1, PUBCOMP for QoS 2, and for QoS 0 the moment the packet is written.
async fn mqtt_publish(
    conn: &mut MqttConn,
    topic: &str,
    qos: rumqttc::QoS,
    retain: bool,
    payload: &Payload,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use rumqttc::{Event, Outgoing, Packet, QoS};
    conn.client
        .publish_bytes(topic, qos, retain, payload.body.clone())
        .await?;
    let mut pkid = None;
    loop {
        match conn.events.poll().await? {
            Event::Outgoing(Outgoing::Publish(id)) if pkid.is_none() => {
                if qos == QoS::AtMostOnce {
                    return Ok(());
                }
                pkid = Some(id);
            }
            Event::Incoming(Packet::PubAck(ack))
                if qos == QoS::AtLeastOnce && Some(ack.pkid) == pkid =>
            {
                return Ok(());
            }
            Event::Incoming(Packet::PubComp(done))
                if qos == QoS::ExactlyOnce && Some(done.pkid) == pkid =>
            {
                return Ok(());
            }
            Event::Incoming(Packet::Disconnect) => return Err("the broker disconnected".into()),
            _ => {}
        }
    }
}

/// Kafka's default partitioner for keyed records: murmur2 of the key, made positive by clearing
/// the sign bit, modulo the partition count.
fn kafka_partition(key: &[u8], partitions: usize) -> usize {
    if partitions <= 1 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) as usize % partitions
}

/// The 32-bit MurmurHash2 as Kafka's Java client computes it (`Utils.murmur2`, seed 0x9747b28c).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka takes the length as a Java int; keys longer than that cannot exist in a record.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// SASL as Tile38 sets it up: the user and password from `KAFKA_USERNAME` and `KAFKA_PASSWORD`,
/// PLAIN unless `sha256` or `sha512` asks for SCRAM (`sha512` wins, being applied last there).
fn kafka_sasl(security: &KafkaSecurity) -> rskafka::client::SaslConfig {
    use rskafka::client::{Credentials, SaslConfig};
    let credentials = Credentials::new(
        std::env::var("KAFKA_USERNAME").unwrap_or_default(),
        std::env::var("KAFKA_PASSWORD").unwrap_or_default(),
    );
    if security.sha512 {
        SaslConfig::ScramSha512(credentials)
    } else if security.sha256 {
        SaslConfig::ScramSha256(credentials)
    } else {
        SaslConfig::Plain(credentials)
    }
}

#[cfg(feature = "https")]
fn kafka_tls(
    builder: rskafka::client::ClientBuilder,
    _endpoint: &Endpoint,
    files: &TlsFiles,
) -> Result<rskafka::client::ClientBuilder> {
    let tls = rustls_config(files).map_err(|reason| Error::Tls { reason })?;
    Ok(builder.tls_config(tls))
}

#[cfg(not(feature = "https"))]
fn kafka_tls(
    _builder: rskafka::client::ClientBuilder,
    endpoint: &Endpoint,
    _files: &TlsFiles,
) -> Result<rskafka::client::ClientBuilder> {
    Err(Error::Tls {
        reason: format!("{endpoint} asks for TLS, and this build has no TLS (feature `https`)"),
    })
}

#[cfg(feature = "https")]
fn mqtt_transport(tls: Arc<rustls::ClientConfig>) -> Result<rumqttc::Transport> {
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls),
    ))
}

#[cfg(not(feature = "https"))]
fn mqtt_transport(tls: std::convert::Infallible) -> Result<rumqttc::Transport> {
    match tls {}
}

/// A rustls client configuration from an endpoint's certificate files: the roots of `ca_cert`, or
/// the platform's store without it, and the client certificate `cert` with its `key` when given.
#[cfg(feature = "https")]
fn rustls_config(files: &TlsFiles) -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.ca_cert {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .with_platform_verifier()
            .map_err(|e| e.to_string())?,
    };
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("a client certificate needs both cert and key".into()),
    };
    Ok(Arc::new(config))
}

#[cfg(not(feature = "https"))]
fn rustls_config(_files: &TlsFiles) -> std::result::Result<std::convert::Infallible, String> {
    Err("this build has no TLS (feature `https`)".into())
}

fn retain_slot<T>(
    slot: &Arc<tokio::sync::Mutex<Option<Aged<T>>>>,
    now: Instant,
    idle: Duration,
    max_age: Duration,
    closed: &mut u64,
    recycled: &mut u64,
) -> bool {
    // A slot that is locked is in use right now, so it is neither idle nor safe to inspect.
    let Ok(mut guard) = slot.try_lock() else {
        return true;
    };
    let Some(aged) = guard.as_ref() else {
        return false;
    };
    if now.duration_since(aged.last_used) >= idle {
        *closed += 1;
        *guard = None;
        return false;
    }
    if now.duration_since(aged.opened) >= max_age {
        // Retiring here too keeps a connection that is used only rarely from outliving its lifetime.
        *recycled += 1;
        *guard = None;
        return false;
    }
    true
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn build_http_client(config: &DeliveryConfig) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.send_timeout)
        .pool_idle_timeout(config.idle_timeout)
        // Webhooks go where the hook says; following redirects would post events somewhere else.
        .redirect(reqwest::redirect::Policy::none());
    #[cfg(feature = "https")]
    let builder = {
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map_err(|e| Error::Tls {
                reason: e.to_string(),
            })?
            .with_no_client_auth();
        builder.tls_backend_preconfigured(tls)
    };
    builder.build().map_err(|e| Error::Tls {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        // The cases of Kafka's `UtilsTest.testMurmur2`, as Java ints.
        for (key, want) in [
            (&b"21"[..], -973_932_308_i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(
                murmur2(key) as i32,
                want,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        // toPositive clears the sign bit rather than taking the absolute value.
        assert_eq!(
            kafka_partition(b"21", 7),
            ((-973_932_308_i32) & 0x7fff_ffff) as usize % 7
        );
        assert_eq!(kafka_partition(b"anything", 1), 0);
        assert_eq!(kafka_partition(b"anything", 0), 0);
    }

    #[test]
    fn reaping_closes_idle_slots_and_retires_old_ones() {
        let (idle, max_age) = (Duration::from_secs(30), Duration::from_secs(1800));
        let now = Instant::now() + max_age + idle;
        let slot = |opened: Instant, last_used: Instant| {
            Arc::new(tokio::sync::Mutex::new(Some(Aged {
                conn: (),
                opened,
                last_used,
            })))
        };
        let (mut closed, mut recycled) = (0, 0);
        let mut keep = |s: &Arc<tokio::sync::Mutex<Option<Aged<()>>>>| {
            retain_slot(s, now, idle, max_age, &mut closed, &mut recycled)
        };
        // Young and used a moment ago: kept.
        assert!(keep(&slot(now - idle, now - Duration::from_secs(1))));
        // Idle for the idle timeout: closed, however young.
        assert!(!keep(&slot(now - Duration::from_secs(31), now - idle)));
        // In use a moment ago but at its maximum lifetime: retired.
        assert!(!keep(&slot(now - max_age, now)));
        // Empty: dropped from the map without counting.
        assert!(!keep(&Arc::new(tokio::sync::Mutex::new(None))));
        // Locked by a send in progress: kept, whatever its age.
        let busy = slot(now - max_age - idle, now - max_age - idle);
        let _guard = busy.try_lock().unwrap();
        assert!(keep(&busy));
        assert_eq!((closed, recycled), (1, 1));
    }
}
