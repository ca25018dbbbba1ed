//! Counters and gauges, read as one snapshot for export (the server turns them into Prometheus metrics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::endpoint::Scheme;

/// Per-scheme delivery counters.
#[derive(Debug, Default)]
pub(crate) struct SchemeCounters {
    pub(crate) deliveries: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// The live counters, shared by the registry, the queues and the deliverer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) schemes: [SchemeCounters; Scheme::ALL.len()],
    pub(crate) queued_messages: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
    pub(crate) enqueued: AtomicU64,
    pub(crate) dropped_expired: AtomicU64,
    pub(crate) dropped_overflow: AtomicU64,
    pub(crate) dropped_removed: AtomicU64,
    pub(crate) dropped_retries: AtomicU64,
    pub(crate) dead_letters_evicted: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connection_recycles: AtomicU64,
    pub(crate) idle_closes: AtomicU64,
    pub(crate) hooks: AtomicU64,
    pub(crate) fence_groups: AtomicU64,
    pub(crate) events: AtomicU64,
}

impl Counters {
    pub(crate) fn scheme(&self, scheme: Scheme) -> &SchemeCounters {
        &self.schemes[scheme.index()]
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let schemes = Scheme::ALL.map(|scheme| {
            let c = self.scheme(scheme);
            SchemeMetrics {
                scheme,
                deliveries: c.deliveries.load(Relaxed),
                failures: c.failures.load(Relaxed),
                retries: c.retries.load(Relaxed),
            }
        });
        Metrics {
            hooks: self.hooks.load(Relaxed),
            fence_groups: self.fence_groups.load(Relaxed),
            events: self.events.load(Relaxed),
            queued_messages: self.queued_messages.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            enqueued: self.enqueued.load(Relaxed),
            dropped_expired: self.dropped_expired.load(Relaxed),
            dropped_overflow: self.dropped_overflow.load(Relaxed),
            dropped_removed: self.dropped_removed.load(Relaxed),
            dropped_retries: self.dropped_retries.load(Relaxed),
            dead_letters_evicted: self.dead_letters_evicted.load(Relaxed),
            redelivered: self.redelivered.load(Relaxed),
            connections_opened: self.connections_opened.load(Relaxed),
            connection_recycles: self.connection_recycles.load(Relaxed),
            idle_closes: self.idle_closes.load(Relaxed),
            schemes,
        }
    }
}

/// Delivery figures for one endpoint scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemeMetrics {
    /// The scheme these figures are for.
    pub scheme: Scheme,
    /// Messages accepted by an endpoint of this scheme (counter).
    pub deliveries: u64,
    /// Send attempts on an endpoint of this scheme that failed (counter).
    pub failures: u64,
    /// Messages scheduled for another attempt after every endpoint failed, counted on the scheme of the
    /// hook's first endpoint (counter).
    pub retries: u64,
}

/// A point-in-time copy of every counter and gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Hooks currently defined (gauge).
    pub hooks: u64,
    /// (hook, object) pairs currently inside a fence, i.e. live fence groups (gauge).
    pub fence_groups: u64,
    /// Events produced by `on_change` and friends, queued or not (counter).
    pub events: u64,
    /// Messages waiting in all hook queues (gauge).
    pub queued_messages: u64,
    /// Bytes of message bodies waiting in all hook queues (gauge).
    pub queued_bytes: u64,
    /// Messages accepted into a queue (counter).
    pub enqueued: u64,
    /// Messages dropped because their time-to-live passed before delivery, with dead letters off
    /// (counter).
    pub dropped_expired: u64,
    /// Messages refused because a queued-bytes bound was reached (counter).
    pub dropped_overflow: u64,
    /// Messages discarded because their hook was deleted or this node stopped being the leader (counter).
    pub dropped_removed: u64,
    /// Messages dropped because they used up their attempts, with dead letters off (counter).
    pub dropped_retries: u64,
    /// Dead letters discarded because the dead-letter bound was reached (counter).
    pub dead_letters_evicted: u64,
    /// Dead letters queued again by REDELIVER (counter).
    pub redelivered: u64,
    /// Broker connections (Redis, Kafka, MQTT, NATS, AMQP) and HTTP clients opened (counter).
    pub connections_opened: u64,
    /// Connections and HTTP clients replaced because they reached their maximum lifetime (counter).
    pub connection_recycles: u64,
    /// Connections closed because they sat idle past the idle timeout (counter).
    pub idle_closes: u64,
    /// Per-scheme delivery figures, in [`Scheme::ALL`] order.
    pub schemes: [SchemeMetrics; Scheme::ALL.len()],
}

impl Metrics {
    /// The figures for one scheme.
    pub fn scheme(&self, scheme: Scheme) -> &SchemeMetrics {
        &self.schemes[scheme.index()]
    }

    /// Messages dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_expired
            + self.dropped_overflow
            + self.dropped_removed
            + self.dropped_retries
            + self.dead_letters_evicted
    }
}
