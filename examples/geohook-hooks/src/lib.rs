//! Geofence hooks for the geohook example server: Tile38's SETHOOK model with one queue per hook,
//! delivery to HTTP(S), Redis, Kafka, MQTT, NATS and AMQP endpoints over recycled connections, and a
//! fence index whose cost per write does not grow with the number of hooks.
//!
//! The server owns one [`Hooks`]. It calls [`Hooks::set_hook`], [`Hooks::del_hook`],
//! [`Hooks::pdel_hooks`] and [`Hooks::list`] for SETHOOK, DELHOOK, PDELHOOK and HOOKS;
//! [`Hooks::on_change`] after every write (SET, DEL, expiry, DROP); [`Hooks::expire_due`] from its
//! expiry loop; and spawns [`Hooks::run`] once, under its own `CancellationToken`, to deliver.
//!
//! # Example
//! ```
//! use std::time::SystemTime;
//! use geohook_db::{Area, Bounds, Object, Point};
//! use geohook_hooks::{Change, Delivery, Endpoint, FenceKind, Filter, HookDef, Hooks, QueueConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hooks = Hooks::new(QueueConfig::default())?;
//! hooks.set_hook(
//!     HookDef {
//!         name: "warehouse".into(),
//!         endpoints: Endpoint::parse_list("http://127.0.0.1:9999/events,kafka://127.0.0.1:9092/geo")?,
//!         delivery: Delivery::Endpoints,
//!         meta: vec![("site".into(), "north".into())],
//!         ex: None,
//!         kind: FenceKind::Within,
//!         key: "fleet".into(),
//!         filter: Filter::parse(Some("enter,exit"), None)?,
//!         area: Area::Bounds(Bounds::new(33.0, -112.0, 33.1, -111.9)?),
//!         options: Default::default(),
//!         args: "WITHIN fleet FENCE DETECT enter,exit BOUNDS 33 -112 33.1 -111.9"
//!             .split(' ').map(String::from).collect(),
//!     },
//!     SystemTime::now(),
//! )?;
//! let outside = Object::Point(Point::new(32.0, -112.0)?);
//! let inside = Object::Point(Point::new(33.05, -111.95)?);
//! let events = hooks.on_change(&Change::set("fleet", "truck1", Some(&outside), &inside, None, SystemTime::now()));
//! assert_eq!(events, 1); // one "enter"
//! assert_eq!(hooks.outbox().queued("warehouse"), Some(1)); // waits for `run` to deliver it
//! assert_eq!(hooks.metrics().fence_groups, 1); // truck1 is inside warehouse
//! # Ok(()) }
//! ```
//!
//! # Semantics
//! - **Detect**, per hook, comparing the object before and after the write with the fence (WITHIN:
//!   completely inside; INTERSECTS and NEARBY: touching): both in is `inside`; in then out is `exit`;
//!   out then in is `enter`; both out is `cross` when the straight path between the two centres meets
//!   the area, else `outside`. An `enter` also produces `inside`, and an `exit` or `cross` also
//!   produces `outside`, each only when DETECT lists it; no DETECT means all five. The messages of one
//!   write are ordered exit, outside, enter, inside, then by hook name (Tile38's order).
//! - **Events** have Tile38's JSON members in Tile38's order: `set` events `command, group, detect,
//!   hook, meta, key, time, id, object, fields` (`meta` only when set, `fields` only non-zero ones);
//!   `del` (also sent for expiries) `command, hook, meta, key, id, time`; `drop` the same without `id`.
//!   `time` is RFC 3339 with nanoseconds in local time. Kafka records are keyed `<key>-<id>`.
//!   Every event then ends with `event_id`, a number unique per server that rises in queue order
//!   ([`Outbox::next_id`]), by which a receiver drops the duplicates that at-least-once delivery
//!   allows after a crash.
//! - **Durability** (opt-in, [`Outbox::attach_journal`]): queued events are recorded in a
//!   [`Journal`] that the caller flushes before acknowledging the write that caused them, repaired
//!   at open and compacted to what is pending; events past their time-to-live or attempts become
//!   dead letters ([`Outbox::dead_letters`], [`Outbox::redeliver`]).
//! - **Groups and fence state**: an object that enters a fence gets a 24-hex-digit group id that its
//!   `inside` and `exit` events reuse. The state is removed on exit, on delete, on drop and when the hook
//!   is deleted, so it holds only objects inside fences right now ([`Metrics::fence_groups`]).
//! - **Who hears what**: fences are found through a spatial index per key (an R-tree of bounding
//!   boxes, plus a hash grid for fences that span a few 0.005° cells). A write's candidates are the
//!   fences meeting its new position, those meeting its old position or holding state for the object,
//!   and, among fences whose DETECT includes `cross` only (a separate R-tree), those meeting the box
//!   spanning the move; so a long jump across thousands of enter/exit fences costs two small searches,
//!   the candidates' exact tests and the events it produces. Hooks whose DETECT includes `outside`
//!   (including hooks with no DETECT) hear about every write to their key, as in Tile38; use
//!   `DETECT enter,exit` with many hooks. A `del` goes to the hooks the object was inside and the hooks
//!   that hear `outside`, rather than to every hook on the key, which would make every expiry cost
//!   one message per hook (a deliberate difference). `drop` goes to every hook on the key. COMMANDS
//!   filters by event command.
//! - **Queues**: each hook has its own FIFO, so draining one touches only its messages. A message is
//!   tried on the hook's endpoints in order (failover, not fan-out) and removed only once one accepts
//!   it (HTTP 200, 201 or 202; a Redis PUBLISH reply; a Kafka produce acknowledgement; an MQTT
//!   PUBACK or PUBCOMP at QoS 1 or 2, the packet written at QoS 0; a NATS flush, or the JetStream
//!   acknowledgement with `jetstream=true`; an AMQP publisher confirm). When all fail the hook, and only that hook, waits: 100 ms doubling to 5 s, each delay with up to half taken off
//!   at random. A message older than its time-to-live (30 s) is dropped and counted; a message that
//!   would pass the queued-bytes bounds is refused and counted. Only the leader queues; a node that
//!   becomes a follower drops its queues. Delivery is at least once within a process (a peer that
//!   took a message but failed to answer gets it again) and at most once across a crash (queues
//!   live in memory, as in Tile38 apart from its 30 s queue file).
//! - **Lifecycle exits** (opt-in per hook with [`Hooks::set_hook_lifecycle`], or for all with
//!   [`Hooks::set_lifecycle_default`]): a stay that ends without a move (the object deleted,
//!   expired, dropped or flushed, or the hook expired) ends with a Tile38-shaped `exit` carrying
//!   the stay's group ([`Hooks::exit_on_removal`], [`Hooks::stage_drop_exits`],
//!   [`Hooks::emit_hook_expiry_exits`]); an expired lifecycle hook's queue is kept until it has
//!   delivered them ([`Outbox::retire_hook`]).
//! - **Channels and live fences** ([`Delivery`]): a SETCHAN channel is a hook whose events are
//!   published on the channel named after it through [`Hooks::pubsub`], and a live fence
//!   ([`Hooks::set_live`]) one whose events go to one connection's [`Inbox`]. They share the
//!   registry, the fence index, fence state and the event builder with hooks, so all three send the
//!   same events in the same order; their events have no `event_id` (nothing is journaled) and a
//!   live fence's have no `hook` member (Tile38's shape). They are published on every node, a
//!   follower included. Each inbox is bounded in bytes: one that would pass its cap is emptied and
//!   marked overflowed, and its connection closes, so a slow subscriber never holds more than its
//!   cap nor slows the writer.
//! - **Connections** are pooled per server (HTTP per host inside one client, Redis per host and port,
//!   Kafka, MQTT, NATS and AMQP per URL) and replaced once older than
//!   [`DeliveryConfig::max_connection_lifetime`] (30 minutes), however busy; sends in flight finish on
//!   the old connection. Idle ones close after [`DeliveryConfig::idle_timeout`] (30 s).
//!
//! # Crate features
//! - `https` (default): HTTPS webhooks through rustls with the `ring` provider and the platform's
//!   certificate store. Without it, `https://` endpoints parse but fail to deliver.

mod deliver;
mod endpoint;
mod error;
mod fence;
mod hooks;
mod journal;
mod metrics;
mod pubsub;
mod queue;

pub use deliver::{Deliverer, DeliveryConfig, Payload};
pub use endpoint::{
    AmqpTarget, Endpoint, KafkaAuth, KafkaSecurity, MqttTarget, NatsTarget, Scheme, Target,
    TlsFiles,
};
pub use error::{Error, Result};
pub use fence::{
    CommandKind, Delivery, Detect, FenceKind, FenceOptions, FenceOutput, Filter, HookDef,
    Neighbors, NoNeighbors, ObjectTest, Roam,
};
pub use hooks::{Change, Expired, HookInfo, Hooks, SetOutcome};
pub use journal::{DeadReason, Journal, Opened, Replayed};
pub use metrics::{Metrics, SchemeMetrics};
pub use pubsub::{Inbox, Message, Overflowed, PubSub};
pub use queue::{DeadLetter, Outbox, Pushed, QueueConfig, RetryPolicy};
