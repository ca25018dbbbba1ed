//! One queue per hook, and the runner that drains them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Deliverer, DeliveryConfig, Payload};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::journal::{Journal, Replayed};
use crate::metrics::{Counters, Metrics};

/// Queueing and retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a message may wait for delivery before it is dropped and counted. Default: 30 s (Tile38).
    pub message_ttl: Duration,
    /// Bound on the bytes queued across all hooks; a message that would pass it is refused and counted.
    /// Default: 256 MiB.
    pub max_queued_bytes: u64,
    /// Bound on the bytes queued for one hook, so that one dead endpoint cannot take the whole budget.
    /// Default: 4 MiB.
    pub max_hook_queued_bytes: u64,
    /// How many hooks may be delivering at the same time. Default: 256.
    pub max_concurrent_deliveries: usize,
    /// How many messages one hook sends before it yields its delivery slot to others. Default: 64.
    pub batch: usize,
    /// First retry delay after a message failed on every endpoint. Default: 100 ms.
    pub retry_initial: Duration,
    /// Longest retry delay; delays double from `retry_initial` up to this, each with up to 50 % jitter
    /// taken off. Default: 5 s.
    pub retry_max: Duration,
    /// Connection settings. Default: [`DeliveryConfig::default`].
    pub delivery: DeliveryConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            message_ttl: Duration::from_secs(30),
            max_queued_bytes: 256 << 20,
            max_hook_queued_bytes: 4 << 20,
            max_concurrent_deliveries: 256,
            batch: 64,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            delivery: DeliveryConfig::default(),
        }
    }
}

impl QueueConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.message_ttl.is_zero() {
            return bad("message_ttl", "must be positive");
        }
        if self.max_queued_bytes == 0 || self.max_hook_queued_bytes == 0 {
            return bad("max_queued_bytes", "bounds must be positive");
        }
        if self.max_concurrent_deliveries == 0 {
            return bad("max_concurrent_deliveries", "must be at least 1");
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1");
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return bad("retry_initial", "must be positive and not above retry_max");
        }
        self.delivery.validate()
    }
}

/// What happened to a message handed to [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for delivery.
    Queued,
    /// This node is not the leader; followers neither queue nor deliver.
    NotLeader,
    /// No queue exists under that hook name.
    UnknownHook,
    /// A queued-bytes bound was reached; the message was dropped and counted.
    Overflow,
}

#[derive(Debug)]
struct Queued {
    seq: u64,
    payload: Payload,
    expires: Instant,
}

impl Queued {
    fn size(&self) -> u64 {
        (self.payload.body.len() + self.payload.key.len()) as u64
    }
}

#[derive(Debug)]
struct QueueState {
    endpoints: Arc<[Endpoint]>,
    messages: VecDeque<Queued>,
    bytes: u64,
    /// True while the hook sits in the ready channel, is being drained, or waits for a retry timer, so
    /// that it is scheduled at most once and the ready channel holds at most one entry per hook.
    scheduled: bool,
    attempts: u32,
    removed: bool,
}

#[derive(Debug)]
struct HookQueue {
    state: Mutex<QueueState>,
}

enum Outcome {
    Empty,
    More(Arc<HookQueue>),
    Retry(Arc<HookQueue>, Instant),
    Gone,
}

type Timer = Pin<Box<dyn Future<Output = Arc<HookQueue>> + Send>>;

/// The per-hook queues and their delivery.
///
/// Each hook owns a `VecDeque` of its own messages, so draining a hook touches only that hook's
/// messages (the opposite of Tile38's one shared index, #769). A hook's head message blocks only that
/// hook while it is retried. Nothing here spawns: [`Outbox::run`] is a future the caller spawns, and
/// it drives every delivery inside itself, at most `max_concurrent_deliveries` at a time.
#[derive(Debug)]
pub struct Outbox {
    config: QueueConfig,
    counters: Arc<Counters>,
    deliverer: Deliverer,
    queues: RwLock<HashMap<Arc<str>, Arc<HookQueue>>>,
    ready_tx: mpsc::UnboundedSender<Arc<HookQueue>>,
    ready_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arc<HookQueue>>>,
    leader: AtomicBool,
    /// The next event id; see [`Outbox::next_id`].
    next_id: AtomicU64,
    /// The durable journal, once attached; without it queues live in memory only.
    journal: OnceLock<Journal>,
}

impl Outbox {
    /// Creates an outbox with no hooks, in the leader role.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from validation, [`Error::Tls`] if the HTTPS client cannot be built.
    pub fn new(config: QueueConfig) -> Result<Self> {
        Self::with_counters(config, Arc::default())
    }

    pub(crate) fn with_counters(config: QueueConfig, counters: Arc<Counters>) -> Result<Self> {
        config.validate()?;
        let deliverer = Deliverer::new(config.delivery.clone(), Arc::clone(&counters))?;
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        Ok(Self {
            config,
            counters,
            deliverer,
            queues: RwLock::new(HashMap::new()),
            ready_tx,
            ready_rx: tokio::sync::Mutex::new(ready_rx),
            leader: AtomicBool::new(true),
            next_id: AtomicU64::new(unix_micros()),
            journal: OnceLock::new(),
        })
    }

    /// Takes the next event id. Ids start at the Unix time in microseconds and never go below one
    /// above the highest id in the journal, so they stay unique across restarts, with or without a
    /// journal, as long as the clock does not run backwards; a receiver can drop duplicates by id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    /// Makes the queues durable: from now on every queued message is recorded in `journal` before
    /// [`Outbox::push_event`] returns (buffered; the caller flushes it with [`Outbox::flush_journal`]
    /// before acknowledging the write that caused it), and every message that leaves its queue is
    /// recorded as done. The `pending` events read back at open are queued again in id order; those
    /// whose hook no longer exists are recorded as done and counted as removed, those past their
    /// time-to-live as expired. Call it once, after the hooks are loaded and before any event is
    /// pushed. Returns how many events were queued again.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if a journal is already attached.
    pub fn attach_journal(
        &self,
        journal: Journal,
        pending: Vec<Replayed>,
        next_id: u64,
    ) -> Result<usize> {
        if self.journal.set(journal).is_err() {
            return Err(Error::InvalidConfig {
                field: "journal",
                reason: "already attached".into(),
            });
        }
        self.next_id.fetch_max(next_id, Relaxed);
        let journal = self.journal.get().expect("just set");
        let now_ms = unix_micros() / 1000;
        let mut requeued = 0;
        for r in pending {
            let age = Duration::from_millis(now_ms.saturating_sub(r.queued_ms));
            match self.enqueue(
                &r.hook,
                r.id,
                r.payload,
                self.config.message_ttl.saturating_sub(age),
                false,
            ) {
                Pushed::Queued => requeued += 1,
                Pushed::UnknownHook | Pushed::NotLeader => {
                    self.counters.dropped_removed.fetch_add(1, Relaxed);
                    journal.done(r.id);
                }
                Pushed::Overflow => journal.done(r.id),
            }
        }
        Ok(requeued)
    }

    /// The journal, when attached.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.get()
    }

    /// Writes the journal's buffered records, and fsyncs them when `sync` is true; nothing without a
    /// journal.
    ///
    /// # Errors
    /// As [`Journal::flush`].
    pub fn flush_journal(&self, sync: bool) -> Result<()> {
        match self.journal.get() {
            Some(j) => j.flush(sync),
            None => Ok(()),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The deliverer, for direct sends.
    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> Metrics {
        self.counters.snapshot()
    }

    /// Creates the queue for a hook, or changes the endpoints of an existing one (queued messages stay).
    pub fn set_hook(&self, name: &str, endpoints: Vec<Endpoint>) {
        let endpoints: Arc<[Endpoint]> = endpoints.into();
        let mut queues = self.queues.write();
        if let Some(q) = queues.get(name) {
            q.state.lock().endpoints = endpoints;
            return;
        }
        let state = QueueState {
            endpoints,
            messages: VecDeque::new(),
            bytes: 0,
            scheduled: false,
            attempts: 0,
            removed: false,
        };
        queues.insert(
            Arc::from(name),
            Arc::new(HookQueue {
                state: Mutex::new(state),
            }),
        );
    }

    /// Removes a hook's queue; its waiting messages are dropped and counted. Returns whether it existed.
    pub fn remove_hook(&self, name: &str) -> bool {
        let Some(q) = self.queues.write().remove(name) else {
            return false;
        };
        let mut state = q.state.lock();
        state.removed = true;
        self.discard(&mut state);
        true
    }

    /// Switches between leader and follower. A follower refuses new messages and drops the queued ones,
    /// because the new leader will deliver from its own queues.
    pub fn set_role(&self, leader: bool) {
        self.leader.store(leader, Relaxed);
        if !leader {
            for q in self.queues.read().values() {
                self.discard(&mut q.state.lock());
            }
        }
    }

    /// Whether this node queues and delivers.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Relaxed)
    }

    /// Queues one message for a hook under a new id.
    pub fn push(&self, hook: &str, payload: Payload) -> Pushed {
        let id = self.next_id();
        self.push_event(hook, id, payload)
    }

    /// Queues one message for a hook under the id taken with [`Outbox::next_id`] (and written into
    /// its body), recording it in the journal when one is attached.
    pub fn push_event(&self, hook: &str, id: u64, payload: Payload) -> Pushed {
        self.enqueue(hook, id, payload, self.config.message_ttl, true)
    }

    fn enqueue(
        &self,
        hook: &str,
        id: u64,
        payload: Payload,
        ttl: Duration,
        record: bool,
    ) -> Pushed {
        if !self.is_leader() {
            return Pushed::NotLeader;
        }
        let queues = self.queues.read();
        let Some((name, q)) = queues.get_key_value(hook) else {
            return Pushed::UnknownHook;
        };
        let queued = Queued {
            seq: id,
            payload,
            expires: Instant::now() + ttl,
        };
        let size = queued.size();
        let mut state = q.state.lock();
        let global = self.counters.queued_bytes.load(Relaxed);
        if state.bytes + size > self.config.max_hook_queued_bytes
            || global + size > self.config.max_queued_bytes
        {
            self.counters.dropped_overflow.fetch_add(1, Relaxed);
            return Pushed::Overflow;
        }
        if record {
            if let Some(j) = self.journal.get() {
                // Under the queue's lock, so the journal's order of a hook's events is its queue order.
                j.enqueue(id, name, unix_micros() / 1000, &queued.payload);
            }
        }
        state.bytes += size;
        state.messages.push_back(queued);
        self.counters.queued_bytes.fetch_add(size, Relaxed);
        self.counters.queued_messages.fetch_add(1, Relaxed);
        self.counters.enqueued.fetch_add(1, Relaxed);
        if !state.scheduled {
            state.scheduled = true;
            // The receiver lives as long as self, so this cannot fail.
            let _ = self.ready_tx.send(Arc::clone(q));
        }
        Pushed::Queued
    }

    /// Messages queued for one hook, or `None` for an unknown hook.
    pub fn queued(&self, hook: &str) -> Option<usize> {
        self.queues
            .read()
            .get(hook)
            .map(|q| q.state.lock().messages.len())
    }

    fn discard(&self, state: &mut QueueState) {
        let n = state.messages.len() as u64;
        if let Some(j) = self.journal.get() {
            for m in &state.messages {
                j.done(m.seq);
            }
        }
        self.counters.dropped_removed.fetch_add(n, Relaxed);
        self.counters.queued_messages.fetch_sub(n, Relaxed);
        self.counters.queued_bytes.fetch_sub(state.bytes, Relaxed);
        state.messages = VecDeque::new();
        state.bytes = 0;
        state.attempts = 0;
    }

    /// Delivers queued messages until `cancel` fires. Spawn it once; a second concurrent call waits
    /// for the first to end.
    ///
    /// # Cancellation safety
    /// Cancelling (through the token or by dropping the future) abandons sends in flight; their
    /// messages stay at the head of their queues and are sent again by the next `run`.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut ready = self.ready_rx.lock().await;
        // A previous run that was cancelled left its hooks unscheduled; pick up what they still hold.
        for q in self.queues.read().values() {
            let mut state = q.state.lock();
            if !state.scheduled && !state.messages.is_empty() {
                state.scheduled = true;
                let _ = self.ready_tx.send(Arc::clone(q));
            }
        }
        let mut inflight = FuturesUnordered::new();
        let mut timers: FuturesUnordered<Timer> = FuturesUnordered::new();
        let mut reap = tokio::time::interval(Duration::from_secs(1));
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max = self.config.max_concurrent_deliveries;
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(outcome) = inflight.next(), if !inflight.is_empty() => match outcome {
                    Outcome::Empty | Outcome::Gone => {}
                    // Going to the back of the ready channel lets other hooks have the slot.
                    Outcome::More(q) => { let _ = self.ready_tx.send(q); }
                    Outcome::Retry(q, at) => timers.push(Box::pin(async move {
                        tokio::time::sleep_until(at).await;
                        q
                    })),
                },
                Some(q) = timers.next(), if !timers.is_empty() => { let _ = self.ready_tx.send(q); }
                Some(q) = ready.recv(), if inflight.len() < max => inflight.push(self.drain(q)),
                _ = reap.tick() => self.deliverer.reap(),
            }
        }
        // Hooks that were ready, in flight or waiting on a timer must be schedulable by the next run,
        // which reschedules every queue that still holds messages.
        while ready.try_recv().is_ok() {}
        for q in self.queues.read().values() {
            q.state.lock().scheduled = false;
        }
    }

    async fn drain(&self, q: Arc<HookQueue>) -> Outcome {
        let mut sent = 0;
        loop {
            let (seq, payload, endpoints) = {
                let mut state = q.state.lock();
                if state.removed {
                    return Outcome::Gone;
                }
                let now = Instant::now();
                // Messages are queued in time order, so the expired ones are always a prefix.
                while state.messages.front().is_some_and(|m| m.expires <= now) {
                    let m = state.messages.pop_front().expect("front exists");
                    self.account_removal(&mut state, &m);
                    self.counters.dropped_expired.fetch_add(1, Relaxed);
                    state.attempts = 0;
                }
                let Some(head) = state.messages.front() else {
                    state.scheduled = false;
                    if state.messages.capacity() > 64 {
                        // A burst must not pin its peak capacity for ever: 70,000 idle hooks add up.
                        state.messages = VecDeque::new();
                    }
                    return Outcome::Empty;
                };
                (head.seq, head.payload.clone(), Arc::clone(&state.endpoints))
            };
            let mut delivered = false;
            for endpoint in endpoints.iter() {
                match self.deliverer.send(endpoint, &payload).await {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "hook delivery attempt failed"),
                }
            }
            let mut state = q.state.lock();
            if state.removed {
                return Outcome::Gone;
            }
            if delivered {
                // The queue may have been cleared during the send (role change); pop only our message.
                if state.messages.front().is_some_and(|m| m.seq == seq) {
                    let m = state.messages.pop_front().expect("front exists");
                    self.account_removal(&mut state, &m);
                }
                state.attempts = 0;
                sent += 1;
                if sent >= self.config.batch {
                    return Outcome::More(Arc::clone(&q));
                }
            } else {
                state.attempts = state.attempts.saturating_add(1);
                if let Some(first) = endpoints.first() {
                    self.counters
                        .scheme(first.scheme())
                        .retries
                        .fetch_add(1, Relaxed);
                }
                let delay = backoff(
                    self.config.retry_initial,
                    self.config.retry_max,
                    state.attempts,
                );
                return Outcome::Retry(Arc::clone(&q), Instant::now() + delay);
            }
        }
    }

    fn account_removal(&self, state: &mut QueueState, m: &Queued) {
        if let Some(j) = self.journal.get() {
            j.done(m.seq);
        }
        let size = m.size();
        state.bytes -= size;
        self.counters.queued_bytes.fetch_sub(size, Relaxed);
        self.counters.queued_messages.fetch_sub(1, Relaxed);
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Exponential back-off with jitter: `initial * 2^(attempt-1)`, capped at `max`, then a random
/// amount of up to half taken off so that hooks failing together do not retry in lockstep.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let full = initial.saturating_mul(1 << exp).min(max);
    let jitter = rand::rng().random_range(0.5..=1.0);
    full.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 1..30 {
            let full = i.saturating_mul(1 << (attempt - 1).min(20)).min(m);
            let d = backoff(i, m, attempt);
            assert!(
                d <= full && d >= full / 2,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
    }

    fn payload(n: usize) -> Payload {
        Payload {
            key: "k-i".into(),
            body: vec![b'x'; n].into(),
        }
    }

    #[tokio::test]
    async fn bounds_roles_and_removal_are_counted() {
        let config = QueueConfig {
            max_hook_queued_bytes: 100,
            max_queued_bytes: 140,
            ..Default::default()
        };
        let outbox = Outbox::new(config).unwrap();
        let ep = Endpoint::parse_list("http://127.0.0.1:9/x").unwrap();
        outbox.set_hook("a", ep.clone());
        outbox.set_hook("b", ep);
        assert_eq!(outbox.push("nope", payload(1)), Pushed::UnknownHook);
        assert_eq!(outbox.push("a", payload(47)), Pushed::Queued);
        assert_eq!(outbox.push("a", payload(47)), Pushed::Queued);
        assert_eq!(
            outbox.push("a", payload(47)),
            Pushed::Overflow,
            "per-hook bound"
        );
        assert_eq!(
            outbox.push("b", payload(47)),
            Pushed::Overflow,
            "global bound"
        );
        assert_eq!(outbox.push("b", payload(10)), Pushed::Queued);
        let m = outbox.metrics();
        assert_eq!(
            (m.queued_messages, m.queued_bytes, m.dropped_overflow),
            (3, 113, 2)
        );
        assert!(outbox.remove_hook("a"));
        outbox.set_role(false);
        assert_eq!(outbox.push("b", payload(1)), Pushed::NotLeader);
        let m = outbox.metrics();
        assert_eq!(
            (m.queued_messages, m.queued_bytes, m.dropped_removed),
            (0, 0, 3)
        );
    }

    #[tokio::test]
    async fn a_journal_requeues_what_was_pending_and_records_every_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.journal");
        let ep = Endpoint::parse_list("http://127.0.0.1:9/x").unwrap();
        let outbox = Outbox::new(QueueConfig::default()).unwrap();
        outbox.set_hook("a", ep.clone());
        outbox.set_hook("b", ep.clone());
        let opened = Journal::open(&path).unwrap();
        assert_eq!(
            outbox
                .attach_journal(opened.journal, opened.pending, opened.next_id)
                .unwrap(),
            0
        );
        let mut ids = Vec::new();
        for hook in ["a", "b", "a", "a"] {
            let id = outbox.next_id();
            ids.push(id);
            assert_eq!(outbox.push_event(hook, id, payload(3)), Pushed::Queued);
        }
        assert_eq!(outbox.journal().unwrap().pending(), 4);
        outbox.flush_journal(true).unwrap();
        drop(outbox);

        // After a crash the hooks come back from the log, except "b", which was deleted.
        let opened = Journal::open(&path).unwrap();
        assert_eq!(opened.pending.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        let outbox = Outbox::new(QueueConfig::default()).unwrap();
        outbox.set_hook("a", ep);
        let next = opened.next_id;
        assert_eq!(
            outbox
                .attach_journal(opened.journal, opened.pending, opened.next_id)
                .unwrap(),
            3
        );
        assert_eq!(outbox.queued("a"), Some(3));
        assert!(outbox.next_id() >= next, "ids are not reused");
        let m = outbox.metrics();
        assert_eq!((m.queued_messages, m.dropped_removed), (3, 1));
        let journal = outbox.journal().unwrap();
        assert_eq!(journal.pending(), 3, "b's event is recorded as done");
        assert!(outbox.remove_hook("a"));
        assert_eq!(outbox.journal().unwrap().pending(), 0);
        outbox.flush_journal(true).unwrap();
        drop(outbox);
        assert!(Journal::open(&path).unwrap().pending.is_empty());
    }
}
