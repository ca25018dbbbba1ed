//! One queue per hook, and the runner that drains them.

use std::collections::{HashMap, HashSet, VecDeque};
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
use crate::journal::{DeadReason, Journal, Replayed};
use crate::metrics::{Counters, Metrics};

/// Queueing and retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a message may wait for delivery before it becomes a dead letter (or, with
    /// `max_dead_letters` 0, is dropped and counted); zero keeps it until it is delivered.
    /// Default: 30 s (Tile38).
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
    /// Attempts after which a message that failed on every endpoint becomes a dead letter; 0 for no
    /// limit (the time-to-live decides). Default: 0.
    pub max_attempts: u32,
    /// Bound on the dead letters held across all hooks; when a new one passes it, the oldest dead
    /// letter of the same hook is discarded and counted. 0 turns dead letters off: a message past its
    /// time-to-live or attempts is dropped and counted. Default: 10,000.
    pub max_dead_letters: usize,
    /// How many hooks get counts of their own in [`Outbox::dead_letter_counts`] (and so a
    /// `hook` label in the server's metrics): the first hooks to make a dead letter since start,
    /// up to this many. The dead letters of every later hook are counted together by reason in
    /// [`Outbox::dead_letter_counts_unlabelled`]. With 70,000 hooks a series per hook would make
    /// the metrics page as large as the hook list; this bounds it, and bounds the memory of the
    /// counts under hook churn, while each count stays a counter that never goes down.
    /// Default: 100.
    pub max_labelled_hooks: usize,
    /// Connection settings. Default: [`DeliveryConfig::default`].
    pub delivery: DeliveryConfig,
}

/// How one hook's messages are retried: the server-wide defaults come from [`QueueConfig`] (and
/// can be changed with [`Outbox::set_default_policy`]); a hook may override them
/// ([`Outbox::set_hook_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// As [`QueueConfig::message_ttl`]; zero keeps a message until it is delivered.
    pub ttl: Duration,
    /// As [`QueueConfig::retry_initial`].
    pub retry_initial: Duration,
    /// As [`QueueConfig::retry_max`].
    pub retry_max: Duration,
    /// As [`QueueConfig::max_attempts`]; 0 for no limit.
    pub max_attempts: u32,
    /// How long one attempt on one endpoint may take, as [`DeliveryConfig::send_timeout`].
    pub timeout: Duration,
}

impl RetryPolicy {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return Err(Error::InvalidConfig {
                field: "retry_initial",
                reason: "must be positive and not above retry_max".into(),
            });
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidConfig {
                field: "timeout",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}

/// One dead letter: an event that outlived its time-to-live or used up its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event id (its `event_id` member).
    pub id: u64,
    /// Why it is here.
    pub reason: DeadReason,
    /// When it became a dead letter, in Unix milliseconds.
    pub at_ms: u64,
    /// The message.
    pub payload: Payload,
}

/// Dead letters made since start: by hook and reason for a bounded set of hooks, by reason alone
/// for the others.
#[derive(Debug, Default)]
struct DeadCounts {
    /// Counts of the hooks that have their own, by hook and reason.
    by_hook: HashMap<(Arc<str>, DeadReason), u64>,
    /// The hooks that have counts of their own: the first ones to make a dead letter.
    labelled: HashSet<Arc<str>>,
    /// Counts of every other hook, by reason.
    unlabelled: HashMap<DeadReason, u64>,
}

impl DeadCounts {
    /// Counts one dead letter of `hook`, under its own name while fewer than `cap` hooks have one
    /// (or it already has one), together with the other hooks' otherwise.
    fn count(&mut self, hook: &Arc<str>, reason: DeadReason, cap: usize) {
        if !self.labelled.contains(hook) && self.labelled.len() < cap {
            self.labelled.insert(Arc::clone(hook));
        }
        let n = if self.labelled.contains(hook) {
            self.by_hook.entry((Arc::clone(hook), reason)).or_default()
        } else {
            self.unlabelled.entry(reason).or_default()
        };
        *n += 1;
    }
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
            max_attempts: 0,
            max_dead_letters: 10_000,
            max_labelled_hooks: 100,
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
        if self.max_queued_bytes == 0 || self.max_hook_queued_bytes == 0 {
            return bad("max_queued_bytes", "bounds must be positive");
        }
        if self.max_concurrent_deliveries == 0 {
            return bad("max_concurrent_deliveries", "must be at least 1");
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1");
        }
        self.delivery.validate()?;
        self.policy().validate()
    }

    /// The retry policy these settings give every hook that does not set its own.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            ttl: self.message_ttl,
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            max_attempts: self.max_attempts,
            timeout: self.delivery.send_timeout,
        }
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
    /// `None`: kept until delivered.
    expires: Option<Instant>,
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
    /// The hook is gone but its queue delivers what it holds first ([`Outbox::retire_hook`]).
    retiring: bool,
    /// The hook's own retry policy, overriding the server-wide one.
    policy: Option<RetryPolicy>,
    /// Dead letters, oldest first.
    dead: VecDeque<DeadLetter>,
}

#[derive(Debug)]
struct HookQueue {
    name: Arc<str>,
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
    /// The retry policy of hooks without their own.
    defaults: RwLock<RetryPolicy>,
    /// Dead letters held, across all hooks.
    dead_total: AtomicU64,
    /// Dead letters made since start, by hook (up to `max_labelled_hooks` hooks) and reason.
    dead_counts: Mutex<DeadCounts>,
    /// Names of retiring queues, so that sweeping them never walks every queue.
    retiring: Mutex<Vec<Arc<str>>>,
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
            counters,
            deliverer,
            queues: RwLock::new(HashMap::new()),
            ready_tx,
            ready_rx: tokio::sync::Mutex::new(ready_rx),
            leader: AtomicBool::new(true),
            next_id: AtomicU64::new(unix_micros()),
            journal: OnceLock::new(),
            defaults: RwLock::new(config.policy()),
            dead_total: AtomicU64::new(0),
            dead_counts: Mutex::new(DeadCounts::default()),
            retiring: Mutex::new(Vec::new()),
            config,
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
            if let Some((reason, at_ms)) = r.dead {
                let queues = self.queues.read();
                match queues.get(&r.hook) {
                    Some(q) if self.is_leader() => {
                        let mut state = q.state.lock();
                        self.keep_dead(
                            &mut state,
                            DeadLetter {
                                id: r.id,
                                reason,
                                at_ms,
                                payload: r.payload,
                            },
                        );
                    }
                    _ => {
                        self.counters.dropped_removed.fetch_add(1, Relaxed);
                        journal.done(r.id);
                    }
                }
                continue;
            }
            let age = Duration::from_millis(now_ms.saturating_sub(r.queued_ms));
            match self.enqueue(&r.hook, r.id, r.payload, Some(age), false) {
                Pushed::Queued => requeued += 1,
                Pushed::UnknownHook | Pushed::NotLeader => {
                    self.counters.dropped_removed.fetch_add(1, Relaxed);
                    journal.done(r.id);
                }
                Pushed::Overflow => journal.done(r.id),
            }
        }
        // Queues kept for the pending events of hooks that were deleted or expired before the
        // restart (a replayed DELHOOK retires a lifecycle hook's queue) go once nothing is left.
        self.sweep_retired();
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
            let mut state = q.state.lock();
            state.endpoints = endpoints;
            // A hook set again under a retiring queue's name takes it over, with what it holds.
            state.retiring = false;
            return;
        }
        let state = QueueState {
            endpoints,
            messages: VecDeque::new(),
            bytes: 0,
            scheduled: false,
            attempts: 0,
            removed: false,
            retiring: false,
            policy: None,
            dead: VecDeque::new(),
        };
        let name: Arc<str> = Arc::from(name);
        queues.insert(
            Arc::clone(&name),
            Arc::new(HookQueue {
                name,
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

    /// Retires a hook's queue: the hook is gone, but the queue stays until what it holds is
    /// delivered (or becomes a dead letter), and takes events pushed under the hook's name
    /// meanwhile (the exits of its expiry). It is removed by the delivery loop once empty, or by
    /// [`Outbox::sweep_retired`]; setting the hook again takes it over. Returns whether it existed.
    pub fn retire_hook(&self, name: &str) -> bool {
        let queues = self.queues.read();
        let Some((name, q)) = queues.get_key_value(name) else {
            return false;
        };
        let mut state = q.state.lock();
        if !state.retiring {
            state.retiring = true;
            self.retiring.lock().push(Arc::clone(name));
        }
        true
    }

    /// Removes the retiring queues that hold nothing more to deliver (their dead letters are
    /// dropped and counted, as [`Outbox::remove_hook`] does). Returns how many went.
    pub fn sweep_retired(&self) -> usize {
        let names = std::mem::take(&mut *self.retiring.lock());
        if names.is_empty() {
            return 0;
        }
        let mut queues = self.queues.write();
        let mut kept = Vec::new();
        let mut removed = 0;
        for name in names {
            let Some(q) = queues.get(&name) else { continue };
            let done = {
                let state = q.state.lock();
                if !state.retiring {
                    continue;
                }
                state.messages.is_empty()
            };
            if done {
                let q = queues.remove(&name).expect("present");
                let mut state = q.state.lock();
                state.removed = true;
                self.discard(&mut state);
                removed += 1;
            } else {
                kept.push(name);
            }
        }
        self.retiring.lock().extend(kept);
        removed
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
        self.enqueue(hook, id, payload, None, true)
    }

    /// Queues a message; `age` is how long ago it was first queued (when read back from the journal).
    fn enqueue(
        &self,
        hook: &str,
        id: u64,
        payload: Payload,
        age: Option<Duration>,
        record: bool,
    ) -> Pushed {
        if !self.is_leader() {
            return Pushed::NotLeader;
        }
        let queues = self.queues.read();
        let Some((name, q)) = queues.get_key_value(hook) else {
            return Pushed::UnknownHook;
        };
        let mut state = q.state.lock();
        let ttl = self.policy_of(&state).ttl;
        let queued = Queued {
            seq: id,
            payload,
            expires: expiry(ttl, age.unwrap_or_default()),
        };
        let size = queued.size();
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
        let (queued, dead) = (state.messages.len() as u64, state.dead.len() as u64);
        if let Some(j) = self.journal.get() {
            let ids = state.messages.iter().map(|m| m.seq);
            for id in ids.chain(state.dead.iter().map(|d| d.id)) {
                j.done(id);
            }
        }
        self.dead_total.fetch_sub(dead, Relaxed);
        self.counters
            .dropped_removed
            .fetch_add(queued + dead, Relaxed);
        self.counters.queued_messages.fetch_sub(queued, Relaxed);
        self.counters.queued_bytes.fetch_sub(state.bytes, Relaxed);
        state.dead = VecDeque::new();
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
            let (seq, payload, endpoints, policy) = {
                let mut state = q.state.lock();
                if state.removed {
                    return Outcome::Gone;
                }
                let now = Instant::now();
                // Messages are queued in time order, so the expired ones are (nearly always) a prefix.
                while state
                    .messages
                    .front()
                    .is_some_and(|m| m.expires.is_some_and(|at| at <= now))
                {
                    self.retire_head(&q, &mut state, DeadReason::Expired);
                }
                let Some(head) = state.messages.front() else {
                    state.scheduled = false;
                    if state.messages.capacity() > 64 {
                        // A burst must not pin its peak capacity for ever: 70,000 idle hooks add up.
                        state.messages = VecDeque::new();
                    }
                    if state.retiring {
                        drop(state);
                        self.sweep_retired();
                    }
                    return Outcome::Empty;
                };
                let policy = self.policy_of(&state);
                (
                    head.seq,
                    head.payload.clone(),
                    Arc::clone(&state.endpoints),
                    policy,
                )
            };
            let mut delivered = false;
            let mut last_error = None;
            for endpoint in endpoints.iter() {
                match self
                    .deliverer
                    .send_within(endpoint, &payload, policy.timeout)
                    .await
                {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "hook delivery attempt failed");
                        last_error = Some(e);
                    }
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
                    if let Some(j) = self.journal.get() {
                        j.done(m.seq);
                    }
                }
                state.attempts = 0;
                sent += 1;
                if sent >= self.config.batch {
                    return Outcome::More(Arc::clone(&q));
                }
            } else {
                state.attempts = state.attempts.saturating_add(1);
                if state.attempts == 1 {
                    // Once per failure streak, so that an endpoint that is down or refuses the
                    // connection (a certificate it cannot verify) is seen without a log line per
                    // retry.
                    if let Some(e) = &last_error {
                        tracing::warn!(hook = %q.name, error = %e, "hook delivery failed; retrying");
                    }
                }
                if let Some(first) = endpoints.first() {
                    self.counters
                        .scheme(first.scheme())
                        .retries
                        .fetch_add(1, Relaxed);
                }
                if policy.max_attempts > 0
                    && state.attempts >= policy.max_attempts
                    && state.messages.front().is_some_and(|m| m.seq == seq)
                {
                    // Used up its attempts: the next message gets its own, at once.
                    self.retire_head(&q, &mut state, DeadReason::Retries);
                    continue;
                }
                let delay = backoff(policy.retry_initial, policy.retry_max, state.attempts);
                return Outcome::Retry(Arc::clone(&q), Instant::now() + delay);
            }
        }
    }

    fn account_removal(&self, state: &mut QueueState, m: &Queued) {
        let size = m.size();
        state.bytes -= size;
        self.counters.queued_bytes.fetch_sub(size, Relaxed);
        self.counters.queued_messages.fetch_sub(1, Relaxed);
    }
}

impl Outbox {
    fn policy_of(&self, state: &QueueState) -> RetryPolicy {
        state.policy.unwrap_or_else(|| *self.defaults.read())
    }

    /// The retry policy of hooks without their own.
    pub fn default_policy(&self) -> RetryPolicy {
        *self.defaults.read()
    }

    /// Changes the retry policy of hooks without their own (`CONFIG SET`). Messages already queued
    /// keep the deadline they were given.
    ///
    /// # Errors
    /// As [`RetryPolicy::validate`].
    pub fn set_default_policy(&self, policy: RetryPolicy) -> Result<()> {
        policy.validate()?;
        *self.defaults.write() = policy;
        Ok(())
    }

    /// Gives one hook its own retry policy, or (with `None`) makes it follow the server-wide one.
    /// Returns false for an unknown hook.
    ///
    /// # Errors
    /// As [`RetryPolicy::validate`].
    pub fn set_hook_policy(&self, hook: &str, policy: Option<RetryPolicy>) -> Result<bool> {
        if let Some(p) = &policy {
            p.validate()?;
        }
        let queues = self.queues.read();
        let Some(q) = queues.get(hook) else {
            return Ok(false);
        };
        q.state.lock().policy = policy;
        Ok(true)
    }

    /// The hook's own retry policy, `None` when it follows the server-wide one or is unknown.
    pub fn hook_override(&self, hook: &str) -> Option<RetryPolicy> {
        let queues = self.queues.read();
        let q = queues.get(hook)?;
        let state = q.state.lock();
        state.policy
    }

    /// The retry policy in force for one hook, or `None` for an unknown hook.
    pub fn hook_policy(&self, hook: &str) -> Option<RetryPolicy> {
        let queues = self.queues.read();
        let q = queues.get(hook)?;
        let state = q.state.lock();
        Some(self.policy_of(&state))
    }

    /// Takes the head message out of its queue because of `reason`: into the dead letters, or, with
    /// dead letters off, dropped and counted.
    fn retire_head(&self, q: &HookQueue, state: &mut QueueState, reason: DeadReason) {
        let m = state.messages.pop_front().expect("front exists");
        self.account_removal(state, &m);
        state.attempts = 0;
        if self.config.max_dead_letters == 0 {
            if let Some(j) = self.journal.get() {
                j.done(m.seq);
            }
            match reason {
                DeadReason::Expired => self.counters.dropped_expired.fetch_add(1, Relaxed),
                DeadReason::Retries => self.counters.dropped_retries.fetch_add(1, Relaxed),
            };
            return;
        }
        let at_ms = unix_micros() / 1000;
        if let Some(j) = self.journal.get() {
            j.dead(m.seq, reason, at_ms);
        }
        self.dead_counts
            .lock()
            .count(&q.name, reason, self.config.max_labelled_hooks);
        self.keep_dead(
            state,
            DeadLetter {
                id: m.seq,
                reason,
                at_ms,
                payload: m.payload,
            },
        );
    }

    /// Holds a dead letter, discarding (and counting) the hook's oldest one past the bound.
    fn keep_dead(&self, state: &mut QueueState, dead: DeadLetter) {
        state.dead.push_back(dead);
        let total = self.dead_total.fetch_add(1, Relaxed) + 1;
        if total > self.config.max_dead_letters as u64 {
            let old = state.dead.pop_front().expect("just pushed");
            self.dead_total.fetch_sub(1, Relaxed);
            self.counters.dead_letters_evicted.fetch_add(1, Relaxed);
            if let Some(j) = self.journal.get() {
                j.done(old.id);
            }
        }
    }

    /// The dead letters of one hook, oldest first, or `None` for an unknown hook.
    pub fn dead_letters(&self, hook: &str) -> Option<Vec<DeadLetter>> {
        let queues = self.queues.read();
        let q = queues.get(hook)?;
        let state = q.state.lock();
        Some(state.dead.iter().cloned().collect())
    }

    /// Dead letters held, across all hooks.
    pub fn dead_letter_count(&self) -> u64 {
        self.dead_total.load(Relaxed)
    }

    /// Dead letters made since start, by hook and reason, sorted, for the first
    /// `max_labelled_hooks` hooks that made any (see [`QueueConfig::max_labelled_hooks`]).
    pub fn dead_letter_counts(&self) -> Vec<(Arc<str>, DeadReason, u64)> {
        let mut v: Vec<_> = self
            .dead_counts
            .lock()
            .by_hook
            .iter()
            .map(|((h, r), n)| (Arc::clone(h), *r, *n))
            .collect();
        v.sort();
        v
    }

    /// Dead letters made since start by the hooks past `max_labelled_hooks`, by reason (every
    /// reason, in [`DeadReason::ALL`]'s order). With [`Outbox::dead_letter_counts`] they add up to
    /// every dead letter made since start.
    pub fn dead_letter_counts_unlabelled(&self) -> Vec<(DeadReason, u64)> {
        let counts = self.dead_counts.lock();
        DeadReason::ALL
            .iter()
            .map(|r| (*r, counts.unlabelled.get(r).copied().unwrap_or(0)))
            .collect()
    }

    /// REDELIVER: queues every dead letter of `hook` again, ahead of its queued messages and in id
    /// order, each with a fresh time-to-live and attempt count. Returns how many, or `None` for an
    /// unknown hook.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] on a follower, which neither queues nor delivers.
    pub fn redeliver(&self, hook: &str) -> Result<Option<usize>> {
        if !self.is_leader() {
            return Err(Error::InvalidConfig {
                field: "role",
                reason: "only the leader delivers".into(),
            });
        }
        let queues = self.queues.read();
        let Some(q) = queues.get(hook) else {
            return Ok(None);
        };
        let mut state = q.state.lock();
        let mut dead: Vec<DeadLetter> = std::mem::take(&mut state.dead).into();
        let n = dead.len();
        if n == 0 {
            return Ok(Some(0));
        }
        dead.sort_unstable_by_key(|d| d.id);
        self.dead_total.fetch_sub(n as u64, Relaxed);
        let ttl = self.policy_of(&state).ttl;
        let now_ms = unix_micros() / 1000;
        for d in dead.into_iter().rev() {
            if let Some(j) = self.journal.get() {
                j.requeue(d.id, now_ms);
            }
            let m = Queued {
                seq: d.id,
                payload: d.payload,
                expires: expiry(ttl, Duration::ZERO),
            };
            let size = m.size();
            state.bytes += size;
            self.counters.queued_bytes.fetch_add(size, Relaxed);
            self.counters.queued_messages.fetch_add(1, Relaxed);
            state.messages.push_front(m);
        }
        state.attempts = 0;
        self.counters.redelivered.fetch_add(n as u64, Relaxed);
        if !state.scheduled {
            state.scheduled = true;
            let _ = self.ready_tx.send(Arc::clone(q));
        }
        Ok(Some(n))
    }
}

/// The deadline of a message queued `age` ago under `ttl` (zero: none).
fn expiry(ttl: Duration, age: Duration) -> Option<Instant> {
    (!ttl.is_zero()).then(|| Instant::now() + ttl.saturating_sub(age))
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

    #[test]
    fn dead_letter_counts_name_at_most_the_cap_of_hooks_and_add_up() {
        let mut counts = DeadCounts::default();
        let cap = QueueConfig::default().max_labelled_hooks;
        // 70,000 hooks make a dead letter each, and the first 300 a second one of the other
        // reason.
        let names: Vec<Arc<str>> = (0..70_000).map(|i| Arc::from(format!("h{i}"))).collect();
        for name in &names {
            counts.count(name, DeadReason::Expired, cap);
        }
        for name in &names[..300] {
            counts.count(name, DeadReason::Retries, cap);
        }
        assert_eq!(counts.labelled.len(), cap);
        assert_eq!(
            counts.by_hook.len(),
            2 * cap,
            "the first hooks keep their own counts"
        );
        assert!(counts.labelled.iter().all(|h| names[..cap].contains(h)));
        let total: u64 =
            counts.by_hook.values().sum::<u64>() + counts.unlabelled.values().sum::<u64>();
        assert_eq!(total, 70_300);
        assert_eq!(counts.unlabelled[&DeadReason::Expired], 70_000 - cap as u64);
        assert_eq!(counts.unlabelled[&DeadReason::Retries], 300 - cap as u64);
        // A cap of 0 names no hook.
        let mut none = DeadCounts::default();
        none.count(&names[0], DeadReason::Expired, 0);
        assert!(none.by_hook.is_empty());
        assert_eq!(none.unlabelled[&DeadReason::Expired], 1);
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
