//! The server's own publish/subscribe: where channel (SETCHAN) and live-fence events go.
//!
//! Each subscribed connection owns one [`Inbox`], bounded in bytes. Publishing never waits: a
//! message is appended to every matching inbox under its own short lock, and an inbox that would
//! pass its cap is marked overflowed and emptied instead, so a subscriber that cannot keep up costs
//! at most its cap and is then closed by its connection, never slowing the writer or the others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use wildmatch::WildMatch;

/// One message for a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Published on a channel the connection subscribed to by name (SUBSCRIBE).
    Channel {
        /// The channel.
        channel: Arc<str>,
        /// The event, as JSON.
        body: Arc<str>,
    },
    /// Published on a channel one of the connection's patterns matches (PSUBSCRIBE).
    Pattern {
        /// The pattern that matched.
        pattern: Arc<str>,
        /// The channel.
        channel: Arc<str>,
        /// The event, as JSON.
        body: Arc<str>,
    },
    /// An event of the connection's live fence.
    Live {
        /// The event, as JSON.
        body: Arc<str>,
    },
}

impl Message {
    /// What the message counts against its inbox's cap: its text plus a little for the framing.
    fn cost(&self) -> usize {
        const FRAMING: usize = 48;
        FRAMING
            + match self {
                Message::Channel { channel, body } => channel.len() + body.len(),
                Message::Pattern {
                    pattern,
                    channel,
                    body,
                } => pattern.len() + channel.len() + body.len(),
                Message::Live { body } => body.len(),
            }
    }
}

/// The inbox overflowed: its connection did not take its messages fast enough and must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("subscriber fell more than its output cap behind")]
pub struct Overflowed;

#[derive(Debug, Default)]
struct InboxState {
    messages: VecDeque<Message>,
    bytes: usize,
    overflowed: bool,
}

/// The messages waiting for one subscribed connection, bounded to `cap` bytes.
#[derive(Debug)]
pub struct Inbox {
    state: Mutex<InboxState>,
    /// A message arrived (or the inbox overflowed): one stored wake-up for the connection's loop.
    ready: Notify,
    /// The inbox overflowed. Apart from `ready` so that waiting for an overflow during a write
    /// never takes the wake-up that the loop needs for a message queued meanwhile.
    gone: Notify,
    cap: usize,
}

impl Inbox {
    /// An empty inbox holding at most `cap` bytes of messages (at least one message is always
    /// accepted when it is empty, so a cap below one event's size does not silence the connection).
    pub fn new(cap: usize) -> Arc<Inbox> {
        Arc::new(Inbox {
            state: Mutex::default(),
            ready: Notify::new(),
            gone: Notify::new(),
            cap,
        })
    }

    /// Queues a message; false once the inbox has overflowed.
    fn offer(&self, message: Message) -> bool {
        let mut s = self.state.lock();
        if s.overflowed {
            return false;
        }
        let cost = message.cost();
        if !s.messages.is_empty() && s.bytes + cost > self.cap {
            // The memory goes now; the connection sees the flag at its next wake-up and closes.
            s.overflowed = true;
            s.messages = VecDeque::new();
            s.bytes = 0;
            drop(s);
            self.ready.notify_one();
            self.gone.notify_waiters();
            return false;
        }
        s.bytes += cost;
        s.messages.push_back(message);
        drop(s);
        self.ready.notify_one();
        true
    }

    /// Moves every waiting message, oldest first, to `out`.
    ///
    /// # Errors
    /// [`Overflowed`] once a message was refused; the connection must then close.
    pub fn drain(&self, out: &mut Vec<Message>) -> Result<(), Overflowed> {
        let mut s = self.state.lock();
        if s.overflowed {
            return Err(Overflowed);
        }
        out.extend(s.messages.drain(..));
        s.bytes = 0;
        Ok(())
    }

    /// Waits until a message arrives (or the inbox overflows) after the last [`Inbox::drain`].
    ///
    /// # Cancellation safety
    /// Safe: a wake-up that is not awaited stays stored for the next call.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Whether a message was refused; the connection must then close.
    pub fn overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Waits until the inbox overflows: a connection blocked writing to a
    /// peer that does not read races its write with this, so that it closes
    /// at the cap rather than after the stall timeout.
    ///
    /// # Cancellation safety
    /// Safe, and it leaves [`Inbox::ready`]'s wake-up alone: a message queued while this waits
    /// still wakes the next `ready`.
    pub async fn overflow(&self) {
        loop {
            let mut gone = std::pin::pin!(self.gone.notified());
            // Registered before the check, so an overflow between the two is not missed.
            gone.as_mut().enable();
            if self.overflowed() {
                return;
            }
            gone.await;
        }
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }
}

/// The inboxes of one channel or pattern, by connection id.
type Inboxes = BTreeMap<u64, Arc<Inbox>>;

#[derive(Debug, Default)]
struct Subscriptions {
    channels: HashMap<Arc<str>, Inboxes>,
    patterns: BTreeMap<Arc<str>, (WildMatch, Inboxes)>,
    live: HashMap<u64, Arc<Inbox>>,
}

/// Who listens to which channel, pattern or live fence.
///
/// Subscribers are named by a connection id the caller chooses (unique per connection).
#[derive(Debug, Default)]
pub struct PubSub {
    subs: RwLock<Subscriptions>,
}

impl PubSub {
    /// No subscribers.
    pub fn new() -> PubSub {
        PubSub::default()
    }

    /// SUBSCRIBE: `inbox` of connection `conn` receives what is published on `channel`.
    pub fn subscribe(&self, channel: &str, conn: u64, inbox: &Arc<Inbox>) {
        self.subs
            .write()
            .channels
            .entry(Arc::from(channel))
            .or_default()
            .insert(conn, Arc::clone(inbox));
    }

    /// UNSUBSCRIBE from one channel.
    pub fn unsubscribe(&self, channel: &str, conn: u64) {
        let mut subs = self.subs.write();
        if let Some(m) = subs.channels.get_mut(channel) {
            m.remove(&conn);
            if m.is_empty() {
                subs.channels.remove(channel);
            }
        }
    }

    /// PSUBSCRIBE: `inbox` receives what is published on every channel matching the glob `pattern`
    /// (`*` and `?`, as Tile38 matches).
    pub fn psubscribe(&self, pattern: &str, conn: u64, inbox: &Arc<Inbox>) {
        self.subs
            .write()
            .patterns
            .entry(Arc::from(pattern))
            .or_insert_with(|| (WildMatch::new(pattern), BTreeMap::new()))
            .1
            .insert(conn, Arc::clone(inbox));
    }

    /// PUNSUBSCRIBE from one pattern.
    pub fn punsubscribe(&self, pattern: &str, conn: u64) {
        let mut subs = self.subs.write();
        if let Some((_, m)) = subs.patterns.get_mut(pattern) {
            m.remove(&conn);
            if m.is_empty() {
                subs.patterns.remove(pattern);
            }
        }
    }

    /// Sends the events of connection `conn`'s live fence to `inbox`.
    pub fn attach_live(&self, conn: u64, inbox: &Arc<Inbox>) {
        self.subs.write().live.insert(conn, Arc::clone(inbox));
    }

    /// Forgets connection `conn`'s live fence inbox.
    pub fn detach_live(&self, conn: u64) {
        self.subs.write().live.remove(&conn);
    }

    /// Publishes `body` on `channel`; returns how many subscriptions received it (a connection
    /// subscribed by name and by two matching patterns counts three times, as in Redis).
    pub fn publish(&self, channel: &str, body: &str) -> usize {
        let subs = self.subs.read();
        let exact = subs.channels.get(channel);
        let any_pattern = subs
            .patterns
            .values()
            .any(|(glob, _)| glob.matches(channel));
        if exact.is_none() && !any_pattern {
            return 0;
        }
        let channel: Arc<str> = Arc::from(channel);
        let body: Arc<str> = Arc::from(body);
        let mut n = 0;
        for inbox in exact.into_iter().flat_map(BTreeMap::values) {
            n += usize::from(inbox.offer(Message::Channel {
                channel: Arc::clone(&channel),
                body: Arc::clone(&body),
            }));
        }
        for (pattern, (glob, inboxes)) in &subs.patterns {
            if !glob.matches(&channel) {
                continue;
            }
            for inbox in inboxes.values() {
                n += usize::from(inbox.offer(Message::Pattern {
                    pattern: Arc::clone(pattern),
                    channel: Arc::clone(&channel),
                    body: Arc::clone(&body),
                }));
            }
        }
        n
    }

    /// Sends `body` to connection `conn`'s live fence; false when it is gone or overflowed.
    pub fn send_live(&self, conn: u64, body: &str) -> bool {
        let subs = self.subs.read();
        subs.live.get(&conn).is_some_and(|inbox| {
            inbox.offer(Message::Live {
                body: Arc::from(body),
            })
        })
    }

    /// Channels with at least one subscriber by name, and patterns with at least one subscriber.
    pub fn counts(&self) -> (usize, usize) {
        let subs = self.subs.read();
        (subs.channels.len(), subs.patterns.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(inbox: &Inbox) -> Vec<String> {
        let mut out = Vec::new();
        inbox.drain(&mut out).unwrap();
        out.into_iter()
            .map(|m| match m {
                Message::Channel { channel, body } => format!("{channel}:{body}"),
                Message::Pattern {
                    pattern,
                    channel,
                    body,
                } => format!("{pattern}>{channel}:{body}"),
                Message::Live { body } => format!("live:{body}"),
            })
            .collect()
    }

    #[test]
    fn channels_and_patterns_reach_their_subscribers_in_order() {
        let ps = PubSub::new();
        let (a, b) = (Inbox::new(1 << 20), Inbox::new(1 << 20));
        ps.subscribe("fleet", 1, &a);
        ps.psubscribe("fl*", 2, &b);
        ps.psubscribe("x?", 2, &b);
        assert_eq!(ps.publish("fleet", "1"), 2);
        assert_eq!(ps.publish("xy", "2"), 1);
        assert_eq!(ps.publish("other", "3"), 0);
        assert_eq!(ps.publish("fleet", "4"), 2);
        assert_eq!(bodies(&a), ["fleet:1", "fleet:4"]);
        assert_eq!(bodies(&b), ["fl*>fleet:1", "x?>xy:2", "fl*>fleet:4"]);
        ps.unsubscribe("fleet", 1);
        ps.punsubscribe("fl*", 2);
        assert_eq!(ps.publish("fleet", "5"), 0);
        assert_eq!(ps.counts(), (0, 1));
    }

    #[test]
    fn a_subscriber_past_its_cap_overflows_and_holds_nothing() {
        let ps = PubSub::new();
        let slow = Inbox::new(200);
        let fast = Inbox::new(1 << 20);
        ps.subscribe("c", 1, &slow);
        ps.subscribe("c", 2, &fast);
        let body = "x".repeat(100);
        // The first message always fits; the second passes 200 bytes with framing.
        assert_eq!(ps.publish("c", &body), 2);
        assert_eq!(ps.publish("c", &body), 1);
        assert_eq!(
            slow.queued_bytes(),
            0,
            "the overflowed inbox let its messages go"
        );
        assert_eq!(ps.publish("c", &body), 1);
        assert!(slow.overflowed() && !fast.overflowed());
        assert_eq!(slow.drain(&mut Vec::new()), Err(Overflowed));
        assert_eq!(bodies(&fast).len(), 3, "the other subscriber is unaffected");
    }

    #[test]
    fn live_messages_go_to_their_connection_only() {
        let ps = PubSub::new();
        let (a, b) = (Inbox::new(1 << 20), Inbox::new(1 << 20));
        ps.attach_live(1, &a);
        ps.attach_live(2, &b);
        assert!(ps.send_live(1, "e"));
        ps.detach_live(1);
        assert!(!ps.send_live(1, "f"));
        assert_eq!(bodies(&a), ["live:e"]);
        assert!(bodies(&b).is_empty());
    }

    /// The connection writes with `overflow()` raced against the write; a message that arrives
    /// meanwhile must still wake its next `ready()`, or it waits for the message after it.
    #[tokio::test]
    async fn waiting_for_an_overflow_leaves_the_wake_up_of_a_message() {
        use std::time::Duration;
        let ps = PubSub::new();
        let inbox = Inbox::new(1 << 20);
        ps.subscribe("c", 1, &inbox);
        let writing = tokio::time::timeout(Duration::from_millis(50), async {
            tokio::join!(inbox.overflow(), async {
                tokio::task::yield_now().await;
                ps.publish("c", "queued during the write");
            })
        });
        assert!(writing.await.is_err(), "no overflow happened");
        tokio::time::timeout(Duration::from_secs(5), inbox.ready())
            .await
            .expect("the message queued during the write wakes the loop");
        assert_eq!(bodies(&inbox), ["c:queued during the write"]);
        // An overflow still ends the wait.
        let small = Inbox::new(10);
        ps.subscribe("d", 2, &small);
        let (_, ()) = tokio::join!(small.overflow(), async {
            tokio::task::yield_now().await;
            ps.publish("d", "one");
            ps.publish("d", "two");
        });
        assert!(small.overflowed());
    }
}
