//! Sending one message to one endpoint, over connections that are pooled and recycled by age.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::endpoint::{Endpoint, Target};
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

type RedisSlot = Arc<tokio::sync::Mutex<Option<Aged<redis::aio::MultiplexedConnection>>>>;
type KafkaSlot =
    Arc<tokio::sync::Mutex<Option<Aged<Arc<rskafka::client::partition::PartitionClient>>>>>;

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
    kafka: Mutex<HashMap<(String, u16, String), KafkaSlot>>,
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
                Target::Kafka { host, port, topic } => {
                    self.send_kafka(endpoint, host, *port, topic, payload).await
                }
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
        payload: &Payload,
    ) -> Result<()> {
        use rskafka::client::partition::{Compression, UnknownTopicHandling};
        let slot = self
            .kafka
            .lock()
            .entry((host.to_owned(), port, topic.to_owned()))
            .or_default()
            .clone();
        let err = |source| Error::Kafka {
            url: endpoint.url().to_owned(),
            source,
        };
        let partition = self
            .checkout(&slot, async {
                // Without a deadline rskafka retries a dead broker for ever; the queue does its own retrying.
                let backoff = rskafka::BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                    deadline: Some(self.config.connect_timeout),
                };
                let client = rskafka::client::ClientBuilder::new(vec![host_port(host, port)])
                    .client_id("geohook")
                    .backoff_config(backoff)
                    .build()
                    .await
                    .map_err(err)?;
                let partition = client
                    .partition_client(topic, 0, UnknownTopicHandling::Error)
                    .await
                    .map_err(err)?;
                Ok(Arc::new(partition))
            })
            .await?;
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

    /// The connection pooled in `slot`, after retiring it if it is past its lifetime; when the slot is
    /// empty, awaits `open` and pools what it returns. The slot stays locked while `open` runs, so that
    /// concurrent sends to one peer open one connection between them.
    async fn checkout<T: Clone>(
        &self,
        slot: &tokio::sync::Mutex<Option<Aged<T>>>,
        open: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut guard = slot.lock().await;
        let now = Instant::now();
        if guard
            .as_ref()
            .is_some_and(|a| now.duration_since(a.opened) >= self.config.max_connection_lifetime)
        {
            *guard = None;
            self.counters.connection_recycles.fetch_add(1, Relaxed);
        }
        if let Some(aged) = guard.as_mut() {
            aged.last_used = now;
            return Ok(aged.conn.clone());
        }
        let conn = open.await?;
        self.counters.connections_opened.fetch_add(1, Relaxed);
        *guard = Some(Aged {
            conn: conn.clone(),
            opened: now,
            last_used: now,
        });
        Ok(conn)
    }
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
