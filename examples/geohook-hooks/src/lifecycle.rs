//! Lifecycle `exit` events (opt-in): an object inside a fence that stops existing, or a hook that
//! expires while objects are inside it, ends those stays with a synthesized `"detect":"exit"`
//! event, so that a consumer counting enters and exits sees every stay closed (Tile38 #635).
//!
//! A stay is a pair in fence state: an object inside a hook's fence, with the group id its `enter`
//! started. The removals that end stays without an ordinary `exit` are:
//! - an object deleted (DEL, PDEL) or expired: [`Hooks::exit_on_removal`], called before the `del`
//!   is reported, while fence state still holds the stays;
//! - a collection dropped (DROP) or every collection flushed (FLUSHDB): the objects are gone by
//!   the time the change is reported, so the caller stages the exits with the objects before the
//!   removal ([`Hooks::stage_drop_exits`]) and sends them once it is committed
//!   ([`Hooks::emit_drop_exits`]);
//! - a hook or channel whose EX passed: [`Hooks::expire_due`] stages its stays, and the caller,
//!   which can read the objects, sends them once the expiry is committed
//!   ([`Hooks::emit_hook_expiry_exits`]). The expired hook's queue outlives the hook until it is
//!   empty, so that these events (and any queued before) are delivered.
//!
//! Each event has the members of a Tile38 `exit` in Tile38's order, with `command` naming the
//! removal: `{"command":"del"|"drop"|"flushdb"|"delhook"|"delchan","group":…,"detect":"exit",
//! "hook":…,"meta":…,"key":…,"time":…,"id":…,"object":…}` (the object as it was last; no
//! fields), then `event_id` for a hook. `group` is the group of the stay it ends. A hook hears
//! them only when lifecycle events are on for it (SETHOOK's `LIFECYCLE yes`, or the server-wide
//! default with no option) and its DETECT includes `exit`; COMMANDS does not filter them. Live
//! fences never get them. They are produced on the leader only: a follower sends none, neither to
//! hooks (which it never queues) nor to channels, and a follower promoted to leader produces them
//! from its promotion on, from the fence state it kept while following.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use geohook_db::Object;
use parking_lot::Mutex;

use super::{write_hook, write_str, Hooks, Registry};
use crate::fence::{Delivery, Detect, HookDef};

/// The lifecycle opt-ins and the exits staged between a removal and its commit.
#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    /// The server-wide default for hooks and channels without their own setting.
    default: AtomicBool,
    /// Each hook's or channel's own setting, by name.
    own: Mutex<HashMap<Arc<str>, bool>>,
    /// Exits of the DROP (with its key) or FLUSHDB (`None`) about to be committed.
    removal: Mutex<Option<(Option<String>, Vec<Exit>)>>,
    /// Exits of hooks that expired, waiting for their DELHOOK to be committed.
    expired: Mutex<Vec<Exit>>,
}

/// One stay to end.
#[derive(Debug)]
struct Exit {
    def: Arc<HookDef>,
    key: Arc<str>,
    id: Arc<str>,
    group: u64,
    /// The object as it was last; `None` to read it when the exit is sent.
    object: Option<Object>,
    command: &'static str,
}

impl Lifecycle {
    /// Whether `def` hears lifecycle exits: a named hook or channel with the option on (its own or
    /// the default) whose DETECT includes `exit`.
    fn applies(&self, def: &HookDef) -> bool {
        if matches!(def.delivery, Delivery::Live(_)) || !def.filter.detects(Detect::Exit) {
            return false;
        }
        self.is_on(&def.name)
    }

    fn is_on(&self, name: &str) -> bool {
        self.own
            .lock()
            .get(name)
            .copied()
            .unwrap_or_else(|| self.default.load(Relaxed))
    }
}

impl Hooks {
    /// Sets the server-wide default of lifecycle exit events, for hooks and channels set without
    /// `LIFECYCLE` (`CONFIG SET hook-lifecycle`). Default: off.
    pub fn set_lifecycle_default(&self, on: bool) {
        self.lifecycle.default.store(on, Relaxed);
    }

    /// The server-wide default of lifecycle exit events.
    pub fn lifecycle_default(&self) -> bool {
        self.lifecycle.default.load(Relaxed)
    }

    /// Gives a hook or channel its own lifecycle setting, or (with `None`) makes it follow the
    /// server-wide default. Call it after [`Hooks::set_hook`]: removing a hook forgets its setting.
    pub fn set_hook_lifecycle(&self, name: &str, on: Option<bool>) {
        let mut own = self.lifecycle.own.lock();
        match on {
            Some(on) => {
                own.insert(Arc::from(name), on);
            }
            None => {
                own.remove(name);
            }
        }
    }

    /// A hook's or channel's own lifecycle setting; `None` when it follows the default.
    pub fn hook_lifecycle(&self, name: &str) -> Option<bool> {
        self.lifecycle.own.lock().get(name).copied()
    }

    /// An object was deleted or expired: sends an `exit` (command `del`) for each stay of it in a
    /// fence that hears lifecycle events. Call it before reporting the `del` through
    /// [`Hooks::on_change`], which clears the stays. Returns the number of events.
    pub fn exit_on_removal(&self, key: &str, id: &str, old: &Object, time: SystemTime) -> usize {
        let exits = {
            let reg = self.registry.lock();
            let Some(stays) = reg.groups.get(key).and_then(|objs| objs.get(id)) else {
                return 0;
            };
            let mut exits = Vec::new();
            for (slot, group) in stays {
                let Some(s) = reg.slots[*slot as usize].as_ref() else {
                    continue;
                };
                if self.lifecycle.applies(&s.def) {
                    exits.push(Exit {
                        def: Arc::clone(&s.def),
                        key: Arc::from(key),
                        id: Arc::from(id),
                        group: *group,
                        object: Some(old.clone()),
                        command: "del",
                    });
                }
            }
            exits
        };
        self.send_exits(exits, time, |_, _| None)
    }

    /// A DROP of `key` (or, with `None`, a FLUSHDB) is about to remove objects: stages an `exit`
    /// for each of their stays in fences that hear lifecycle events, reading each object through
    /// `object(key, id)` while it still exists. [`Hooks::emit_drop_exits`] sends them once the
    /// removal is committed; a later call replaces exits that were never sent (a failed commit).
    pub fn stage_drop_exits(
        &self,
        key: Option<&str>,
        object: impl Fn(&str, &str) -> Option<Object>,
    ) {
        let mut exits = Vec::new();
        {
            let reg = self.registry.lock();
            let keys: Vec<&Arc<str>> = match key {
                Some(k) => reg
                    .groups
                    .get_key_value(k)
                    .map(|(k, _)| k)
                    .into_iter()
                    .collect(),
                None => reg.groups.keys().collect(),
            };
            let command = if key.is_some() { "drop" } else { "flushdb" };
            for k in keys {
                for (id, stays) in &reg.groups[k] {
                    for (slot, group) in stays {
                        let Some(s) = reg.slots[*slot as usize].as_ref() else {
                            continue;
                        };
                        if !self.lifecycle.applies(&s.def) {
                            continue;
                        }
                        exits.push(Exit {
                            def: Arc::clone(&s.def),
                            key: Arc::clone(k),
                            id: Arc::clone(id),
                            group: *group,
                            object: object(k, id),
                            command,
                        });
                    }
                }
            }
        }
        *self.lifecycle.removal.lock() = Some((key.map(str::to_owned), exits));
    }

    /// The DROP of `key` (or, with `None`, the FLUSHDB) was committed: sends the exits staged for
    /// it. After a FLUSHDB it also clears all fence state, since no object is left inside
    /// anything. Call it before reporting a DROP through [`Hooks::on_change`]. Returns the number
    /// of events.
    pub fn emit_drop_exits(&self, key: Option<&str>, time: SystemTime) -> usize {
        let staged = {
            let mut removal = self.lifecycle.removal.lock();
            match removal.take() {
                Some((k, exits)) if k.as_deref() == key => exits,
                // Staged for another removal that was never committed: stale.
                _ => Vec::new(),
            }
        };
        if key.is_none() {
            self.forget_all_stays();
        }
        self.send_exits(staged, time, |_, _| None)
    }

    /// Sends the exits staged by [`Hooks::expire_due`] for the hooks and channels whose EX passed,
    /// reading each object through `object(key, id)`, then removes the queues of expired hooks
    /// that have nothing left to deliver. Call it once their removal is committed. Returns the
    /// number of events.
    pub fn emit_hook_expiry_exits(
        &self,
        object: impl Fn(&str, &str) -> Option<Object>,
        time: SystemTime,
    ) -> usize {
        let staged = std::mem::take(&mut *self.lifecycle.expired.lock());
        let n = self.send_exits(staged, time, object);
        self.outbox.sweep_retired();
        n
    }

    /// Called by [`Hooks::expire_due`] for a hook or channel about to be removed: stages an exit for
    /// every object inside it, when it hears lifecycle events.
    pub(super) fn stage_hook_expiry(&self, reg: &Registry, slot: u32) {
        let Some(s) = reg.slots[slot as usize].as_ref() else {
            return;
        };
        if !self.lifecycle.applies(&s.def) {
            return;
        }
        let command = if s.def.is_channel() {
            "delchan"
        } else {
            "delhook"
        };
        let mut expired = self.lifecycle.expired.lock();
        for (key, id) in &s.members {
            let group = reg
                .groups
                .get(key)
                .and_then(|objs| objs.get(id))
                .and_then(|stays| stays.iter().find(|(sl, _)| *sl == slot))
                .map(|(_, g)| *g);
            if let Some(group) = group {
                expired.push(Exit {
                    def: Arc::clone(&s.def),
                    key: Arc::clone(key),
                    id: Arc::clone(id),
                    group,
                    object: None,
                    command,
                });
            }
        }
    }

    /// Called when a hook leaves the registry: a hook that hears lifecycle events keeps its queue
    /// until the queue is empty (its expiry's exits, and anything queued before, are still
    /// delivered; a replayed DELHOOK keeps it for the journal's pending events), any other hook's
    /// queue goes at once. Either way the hook's own lifecycle setting is forgotten.
    pub(super) fn release_queue(&self, def: &HookDef) {
        if def.delivery == Delivery::Endpoints {
            if self.lifecycle.applies(def) {
                self.outbox.retire_hook(&def.name);
            } else {
                self.outbox.remove_hook(&def.name);
            }
        }
        if !matches!(def.delivery, Delivery::Live(_)) {
            self.lifecycle.own.lock().remove(def.name.as_str());
        }
    }

    /// Drops every stay of fence state (after a FLUSHDB, when no object is inside anything).
    fn forget_all_stays(&self) {
        let mut reg = self.registry.lock();
        reg.groups.clear();
        reg.group_count = 0;
        for s in reg.slots.iter_mut().flatten() {
            s.members.clear();
        }
        self.counters.fence_groups.store(0, Relaxed);
    }

    /// Writes and sends `exits`, ordered by hook name (Tile38 orders the messages of one write by
    /// name within a detect type), where each fence's delivery says; on the leader only.
    fn send_exits(
        &self,
        mut exits: Vec<Exit>,
        time: SystemTime,
        object: impl Fn(&str, &str) -> Option<Object>,
    ) -> usize {
        // Only the leader produces lifecycle exits, for hooks and channels alike. A follower
        // learns of a DROP, a FLUSHDB or a hook's expiry only after the fact (as a replicated
        // command, with the objects or the hook already gone), so it could send only some of
        // them; its channel subscribers get none rather than a partial set.
        if exits.is_empty() || !self.outbox.is_leader() {
            return 0;
        }
        exits.sort_by(|a, b| a.def.name.cmp(&b.def.name));
        let stamp = chrono::DateTime::<chrono::Local>::from(time)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        let mut body = String::new();
        for e in &exits {
            body.clear();
            let _ = write!(
                body,
                "{{\"command\":\"{}\",\"group\":\"{:08x}{:016x}\",\"detect\":\"exit\"",
                e.command, self.group_prefix, e.group
            );
            write_hook(&mut body, &e.def);
            body.push_str(",\"key\":");
            write_str(&mut body, &e.key);
            let _ = write!(body, ",\"time\":\"{stamp}\",\"id\":");
            write_str(&mut body, &e.id);
            let looked_up;
            let obj = match &e.object {
                Some(o) => Some(o),
                None => {
                    looked_up = object(&e.key, &e.id);
                    looked_up.as_ref()
                }
            };
            if let Some(o) = obj {
                body.push_str(",\"object\":");
                o.write_json(&mut body);
            }
            body.push('}');
            // The Kafka record key of every event about one object.
            let record_key = bytes::Bytes::from(format!("{}-{}", e.key, e.id));
            self.send(&e.def, &record_key, &mut body);
        }
        self.counters.events.fetch_add(exits.len() as u64, Relaxed);
        exits.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use geohook_db::{Area, Bounds, Point};

    use super::*;
    use crate::endpoint::Endpoint;
    use crate::fence::{FenceKind, Filter};
    use crate::hooks::Change;
    use crate::queue::QueueConfig;

    fn hook(name: &str, ex: Option<f64>) -> HookDef {
        HookDef {
            name: name.into(),
            endpoints: Endpoint::parse_list("http://127.0.0.1:1/").unwrap(),
            delivery: Delivery::Endpoints,
            meta: vec![],
            ex,
            kind: FenceKind::Within,
            key: "fleet".into(),
            filter: Filter::parse(Some("enter,exit"), None).unwrap(),
            area: Area::Bounds(Bounds::new(33.0, -112.0, 33.1, -111.9).unwrap()),
            args: vec!["WITHIN".into(), "fleet".into(), "FENCE".into()],
            options: Default::default(),
        }
    }

    #[test]
    fn an_expired_lifecycle_hook_keeps_its_queue_for_its_exits_and_others_do_not() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        hooks.set_hook(hook("x", Some(1.0)), now).unwrap();
        hooks.set_hook_lifecycle("x", Some(true));
        hooks.set_hook(hook("y", Some(1.0)), now).unwrap();
        let inside = Object::Point(Point::new(33.05, -111.95).unwrap());
        hooks.on_change(&Change::set("fleet", "t", None, &inside, None, now));
        assert_eq!(hooks.outbox().queued("x"), Some(1));
        assert_eq!(hooks.outbox().queued("y"), Some(1));
        let later = now + Duration::from_secs(2);
        assert_eq!(hooks.expire_due(later).len(), 2);
        // `y` is gone with its queue; `x`'s queue is retired and takes its exit.
        assert_eq!(hooks.outbox().queued("y"), None);
        assert_eq!(hooks.outbox().queued("x"), Some(1));
        assert_eq!(
            hooks.emit_hook_expiry_exits(|_, _| Some(inside.clone()), later),
            1
        );
        assert_eq!(hooks.outbox().queued("x"), Some(2));
        assert_eq!(hooks.hook_lifecycle("x"), None, "forgotten with the hook");
        // A retired queue with nothing left goes at the next sweep.
        hooks.set_hook(hook("z", None), now).unwrap();
        hooks.set_hook_lifecycle("z", Some(true));
        assert!(hooks.del_hook("z"));
        assert_eq!(hooks.outbox().queued("z"), Some(0));
        assert_eq!(hooks.outbox().sweep_retired(), 1);
        assert_eq!(hooks.outbox().queued("z"), None);
    }

    #[test]
    fn a_follower_sends_no_exit_and_a_promoted_one_sends_them_from_its_kept_stays() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        hooks.set_hook(hook("h", None), now).unwrap();
        let chan = HookDef {
            endpoints: vec![],
            delivery: Delivery::Channel,
            ..hook("c", None)
        };
        hooks.set_hook(chan, now).unwrap();
        hooks.set_lifecycle_default(true);
        hooks.set_role(false);
        let inside = Object::Point(Point::new(33.05, -111.95).unwrap());
        for id in ["a", "b"] {
            hooks.on_change(&Change::set("fleet", id, None, &inside, None, now));
        }
        assert_eq!(
            hooks.outbox().queued("h"),
            Some(0),
            "a follower queues nothing"
        );
        // Neither the hook nor the channel gets an exit from a follower.
        assert_eq!(hooks.exit_on_removal("fleet", "a", &inside, now), 0);
        hooks.on_change(&Change::del("fleet", "a", &inside, now));
        // Promoted: the stay of `b`, kept while following, ends with an exit to both.
        hooks.set_role(true);
        assert_eq!(hooks.exit_on_removal("fleet", "b", &inside, now), 2);
        assert_eq!(hooks.outbox().queued("h"), Some(1));
    }

    #[test]
    fn a_delete_sends_exits_only_to_hooks_that_hear_them_and_a_flush_forgets_stays() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        for name in ["on", "off", "default"] {
            hooks.set_hook(hook(name, None), now).unwrap();
        }
        hooks.set_hook_lifecycle("on", Some(true));
        hooks.set_hook_lifecycle("off", Some(false));
        hooks.set_lifecycle_default(true);
        let inside = Object::Point(Point::new(33.05, -111.95).unwrap());
        hooks.on_change(&Change::set("fleet", "t", None, &inside, None, now));
        assert_eq!(hooks.exit_on_removal("fleet", "t", &inside, now), 2);
        assert_eq!(hooks.exit_on_removal("fleet", "nobody", &inside, now), 0);
        // FLUSHDB: one exit per stay that hears them, then no stays at all.
        hooks.stage_drop_exits(None, |_, _| Some(inside.clone()));
        assert_eq!(hooks.emit_drop_exits(None, now), 2);
        assert_eq!(hooks.metrics().fence_groups, 0);
        // Staged for another key: stale, nothing sent.
        hooks.on_change(&Change::set("fleet", "u", None, &inside, None, now));
        hooks.stage_drop_exits(Some("fleet"), |_, _| Some(inside.clone()));
        assert_eq!(hooks.emit_drop_exits(Some("vans"), now), 0);
    }
}
