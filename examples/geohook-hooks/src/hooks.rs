//! The hook registry, the spatial index of fences, fence state and event building.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use geohook_db::{Area, Bounds, Fields, Object};
use parking_lot::Mutex;
use rstar::{Envelope, RStarInsertionStrategy, RTree, RTreeObject, RTreeParams, AABB};
use tokio_util::sync::CancellationToken;
use wildmatch::WildMatch;

use crate::deliver::Payload;
use crate::error::Error;
use crate::error::Result;
use crate::fence::{
    CommandKind, Delivery, Detect, FenceKind, FenceOutput, Filter, HookDef, Neighbors, NoNeighbors,
    Roam,
};
use crate::metrics::{Counters, Metrics};
use crate::pubsub::PubSub;
use crate::queue::{Outbox, QueueConfig};

// A child module, so that lifecycle exits read fence state without widening its visibility.
#[path = "lifecycle.rs"]
mod lifecycle;

/// A write the server reports to [`Hooks::on_change`].
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// What happened.
    pub command: CommandKind,
    /// The collection.
    pub key: &'a str,
    /// The object's id (empty for `drop`).
    pub id: &'a str,
    /// The live object before the write, if any.
    pub old: Option<&'a Object>,
    /// The object after the write (`set` and `fset`).
    pub new: Option<&'a Object>,
    /// The object's fields after the write (`set` and `fset`); zero fields are left out of events.
    pub fields: Option<&'a Fields>,
    /// When the write happened; events carry it in RFC 3339 with nanoseconds, local time.
    pub time: SystemTime,
}

impl<'a> Change<'a> {
    /// A SET (or anything else that creates or moves an object).
    pub fn set(
        key: &'a str,
        id: &'a str,
        old: Option<&'a Object>,
        new: &'a Object,
        fields: Option<&'a Fields>,
        time: SystemTime,
    ) -> Self {
        Self {
            command: CommandKind::Set,
            key,
            id,
            old,
            new: Some(new),
            fields,
            time,
        }
    }

    /// An FSET that changed fields of `object`, which stays where it is: each fence
    /// reports `inside` or `outside`, as in Tile38.
    pub fn fset(
        key: &'a str,
        id: &'a str,
        object: &'a Object,
        fields: &'a Fields,
        time: SystemTime,
    ) -> Self {
        Self {
            command: CommandKind::Fset,
            key,
            id,
            old: Some(object),
            new: Some(object),
            fields: Some(fields),
            time,
        }
    }

    /// A DEL, or an expiry (which Tile38 reports as a DEL).
    pub fn del(key: &'a str, id: &'a str, old: &'a Object, time: SystemTime) -> Self {
        Self {
            command: CommandKind::Del,
            key,
            id,
            old: Some(old),
            new: None,
            fields: None,
            time,
        }
    }

    /// A DROP of a whole collection.
    pub fn drop(key: &'a str, time: SystemTime) -> Self {
        Self {
            command: CommandKind::Drop,
            key,
            id: "",
            old: None,
            new: None,
            fields: None,
            time,
        }
    }
}

/// What [`Hooks::set_hook`] did, for SETHOOK's reply (`:1` created or changed, `:0` unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// A new hook.
    Created,
    /// An existing hook was replaced; its fence state was reset.
    Changed,
    /// An identical hook already existed; nothing changed.
    Unchanged,
}

/// A hook or channel whose EX passed, as [`Hooks::expire_due`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Its name.
    pub name: String,
    /// Whether it was a channel (logged as DELCHAN rather than DELHOOK).
    pub channel: bool,
}

/// A hook as HOOKS lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct HookInfo {
    /// The definition.
    pub def: Arc<HookDef>,
    /// Seconds left before the hook expires (`None` without EX; HOOKS JSON shows -1).
    pub ttl: Option<f64>,
}

/// A fence in the R-tree. It carries what matching needs, so that evaluating a candidate reads only
/// the leaf the search already loaded instead of chasing the hook's definition.
#[derive(Debug, Clone)]
struct FenceEntry {
    slot: u32,
    env: AABB<[f64; 2]>,
    kind: FenceKind,
    filter: Filter,
    area: Area,
    /// Whether the hook's MATCH, WHERE or NOFIELDS options must be read for its events.
    filtered: bool,
}

impl PartialEq for FenceEntry {
    fn eq(&self, other: &Self) -> bool {
        // A slot holds one hook at a time, so slot and box identify the entry.
        self.slot == other.slot && self.env == other.env
    }
}

impl RTreeObject for FenceEntry {
    type Envelope = AABB<[f64; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.env
    }
}

fn aabb(b: &Bounds) -> AABB<[f64; 2]> {
    AABB::from_corners([b.sw.lon, b.sw.lat], [b.ne.lon, b.ne.lat])
}

/// Wider nodes than rstar's default (6): a shallower tree means fewer cache misses per search when
/// tens of thousands of fences are spread over memory.
#[derive(Debug)]
struct FenceParams;

impl RTreeParams for FenceParams {
    const MIN_SIZE: usize = 5;
    const MAX_SIZE: usize = 16;
    const REINSERTION_COUNT: usize = 4;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// Grid cell size in degrees (about 550 m of latitude): small enough that a cell holds a few dozen
/// fences at 70,000 fences per metro area, large enough that a typical fence spans a few cells.
const CELL: f64 = 0.005;
/// A fence or query box spanning at most this many cells uses the grid; larger ones use the trees.
const SMALL_CELLS: i64 = 16;

/// A small fence's slot and bounding box, as a grid cell lists it.
type CellEntry = (u32, AABB<[f64; 2]>);

/// The cells a box spans, as inclusive ranges of column (longitude) and row (latitude) indexes.
fn cells(env: &AABB<[f64; 2]>) -> ((i32, i32), (i32, i32), i64) {
    let (lo, hi) = (env.lower(), env.upper());
    let col = |lon: f64| ((lon + 180.0) / CELL).floor() as i32;
    let row = |lat: f64| ((lat + 90.0) / CELL).floor() as i32;
    let (c0, c1, r0, r1) = (col(lo[0]), col(hi[0]), row(lo[1]), row(hi[1]));
    let n = (i64::from(c1) - i64::from(c0) + 1) * (i64::from(r1) - i64::from(r0) + 1);
    ((c0, c1), (r0, r1), n)
}

/// The fences of one key.
///
/// Every fence is in `tree`, an R-tree of bounding boxes. Small fences (a few grid cells) are also
/// in `grid`, and the others in `large`: the query of a moving point, the common case, then reads
/// one or a few grid cells plus the search of a small tree, instead of a deep walk through every
/// fence (measured: the deep walk's cache misses dominated at 70,000 fences). A large query box
/// uses `tree` directly.
#[derive(Debug)]
struct KeyFences {
    tree: RTree<FenceEntry, FenceParams>,
    large: RTree<FenceEntry, FenceParams>,
    /// The fences whose DETECT includes `cross` (also in `tree`). A long move searches the box
    /// spanning its two ends only here, so that fences which can hear nothing from the path between
    /// the ends are never visited for it.
    cross: RTree<FenceEntry, FenceParams>,
    /// Slot and box of each small fence, per cell; kept to 40 bytes an entry so that scanning a cell
    /// reads few cache lines.
    grid: HashMap<(i32, i32), Vec<CellEntry>>,
    /// Inserts and removals since the trees were last bulk-loaded. One by one insertion builds a
    /// tree with more overlap than bulk loading, so the trees are rebuilt once the changes reach an
    /// eighth of their size: amortised O(log n) a change.
    churn: usize,
    /// Hooks on this key that ask for `outside`: Tile38 tells them about every write to the key, so
    /// they cannot be found through the index. Hooks with `DETECT enter,exit` (the usual choice at
    /// scale) are not here, and cost only through the index.
    outside: BTreeSet<u32>,
    /// Every hook on this key, for `drop`.
    all: BTreeSet<u32>,
    /// The roam fences on this key. They have no area, so they are in no index and hear every
    /// write to the key, as in Tile38.
    roam: BTreeSet<u32>,
}

impl Default for KeyFences {
    fn default() -> Self {
        Self {
            tree: RTree::new_with_params(),
            large: RTree::new_with_params(),
            cross: RTree::new_with_params(),
            grid: HashMap::new(),
            churn: 0,
            outside: BTreeSet::new(),
            all: BTreeSet::new(),
            roam: BTreeSet::new(),
        }
    }
}

impl KeyFences {
    fn insert(&mut self, entry: FenceEntry) {
        let ((c0, c1), (r0, r1), n) = cells(&entry.env);
        if n <= SMALL_CELLS {
            for c in c0..=c1 {
                for r in r0..=r1 {
                    self.grid
                        .entry((c, r))
                        .or_default()
                        .push((entry.slot, entry.env));
                }
            }
        } else {
            self.large.insert(entry.clone());
        }
        if entry.filter.detects(Detect::Cross) {
            self.cross.insert(entry.clone());
        }
        self.tree.insert(entry);
        self.note_churn();
    }

    fn remove(&mut self, entry: &FenceEntry) {
        let ((c0, c1), (r0, r1), n) = cells(&entry.env);
        if n <= SMALL_CELLS {
            for c in c0..=c1 {
                for r in r0..=r1 {
                    if let Some(v) = self.grid.get_mut(&(c, r)) {
                        v.retain(|(slot, _)| *slot != entry.slot);
                        if v.is_empty() {
                            self.grid.remove(&(c, r));
                        }
                    }
                }
            }
        } else {
            self.large.remove(entry);
        }
        if entry.filter.detects(Detect::Cross) {
            self.cross.remove(entry);
        }
        self.tree.remove(entry);
        self.note_churn();
    }

    /// Whether a query box is small enough for the grid.
    fn is_small(query: &AABB<[f64; 2]>) -> bool {
        cells(query).2 <= SMALL_CELLS
    }

    /// Calls `f` once with the slot of every fence whose bounding box meets `query`.
    fn for_each_candidate(&self, query: &AABB<[f64; 2]>, mut f: impl FnMut(u32)) {
        let ((c0, c1), (r0, r1), n) = cells(query);
        if n > SMALL_CELLS {
            self.tree
                .locate_in_envelope_intersecting(query)
                .for_each(|e| f(e.slot));
            return;
        }
        for c in c0..=c1 {
            for r in r0..=r1 {
                let Some(entries) = self.grid.get(&(c, r)) else {
                    continue;
                };
                for (slot, env) in entries.iter().filter(|(_, env)| env.intersects(query)) {
                    // A fence sits in every cell it spans; report it only from the first cell it
                    // shares with the query, so that it is seen once.
                    let ((ec0, _), (er0, _), _) = cells(env);
                    if c == ec0.max(c0) && r == er0.max(r0) {
                        f(*slot);
                    }
                }
            }
        }
        self.large
            .locate_in_envelope_intersecting(query)
            .for_each(|e| f(e.slot));
    }

    fn note_churn(&mut self) {
        self.churn += 1;
        if self.churn >= 64.max(self.tree.size() / 8) {
            let tree = std::mem::replace(&mut self.tree, RTree::new_with_params());
            self.tree = RTree::bulk_load_with_params(tree.into_iter().collect());
            let large = std::mem::replace(&mut self.large, RTree::new_with_params());
            self.large = RTree::bulk_load_with_params(large.into_iter().collect());
            let cross = std::mem::replace(&mut self.cross, RTree::new_with_params());
            self.cross = RTree::bulk_load_with_params(cross.into_iter().collect());
            self.churn = 0;
        }
    }
}

#[derive(Debug)]
struct Slot {
    /// Kind, filter and area copied out of `def`, so that matching reads the slot only.
    fence: FenceEntry,
    def: Arc<HookDef>,
    expires_at_ms: Option<i64>,
    /// Objects inside this hook's fence, so that deleting the hook can clear them from `groups`.
    members: BTreeSet<(Arc<str>, Arc<str>)>,
}

/// (hook slot, group id): one object's stay inside one fence.
type Stay = (u32, u64);

#[derive(Debug, Default)]
struct Registry {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_name: BTreeMap<Arc<str>, u32>,
    fences: HashMap<Arc<str>, KeyFences>,
    expiries: BTreeSet<(i64, Arc<str>)>,
    /// The slot of each connection's live fence, by connection id. Live fences have no name, so
    /// they are not in `by_name` and cannot clash with a hook or channel.
    live: HashMap<u64, u32>,
    /// Fence state: for each object inside at least one fence, the hooks it is inside and the group
    /// id of that stay. An entry goes when the object leaves, is deleted or the hook goes, so this
    /// holds only current insides and cannot grow for ever (Tile38 keeps groups until a delete).
    groups: HashMap<Arc<str>, HashMap<Arc<str>, Vec<Stay>>>,
    group_count: u64,
}

/// Geofence hooks: the registry, the fence index and state, and the outbox that delivers their events.
///
/// Every method is synchronous and cheap except [`Hooks::run`], the delivery loop the caller spawns.
#[derive(Debug)]
pub struct Hooks {
    registry: Mutex<Registry>,
    outbox: Outbox,
    pubsub: Arc<PubSub>,
    counters: Arc<Counters>,
    group_seq: AtomicU64,
    group_prefix: u32,
    lifecycle: lifecycle::Lifecycle,
}

/// Unix time in milliseconds.
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Hooks {
    /// Creates an empty registry (leader role) with the given queue settings.
    ///
    /// # Errors
    /// As [`Outbox::new`].
    pub fn new(config: QueueConfig) -> Result<Self> {
        let counters = Arc::<Counters>::default();
        let outbox = Outbox::with_counters(config, Arc::clone(&counters))?;
        let group_prefix = u32::try_from(unix_ms(SystemTime::now()) / 1000).unwrap_or(0);
        Ok(Self {
            registry: Mutex::default(),
            outbox,
            pubsub: Arc::new(PubSub::new()),
            counters,
            group_seq: AtomicU64::new(1),
            group_prefix,
            lifecycle: lifecycle::Lifecycle::default(),
        })
    }

    /// The outbox (queues and delivery).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The server's own pub/sub, where channel and live-fence events are published (on every
    /// node: a follower's subscribers hear its own matching, as in Tile38).
    pub fn pubsub(&self) -> &Arc<PubSub> {
        &self.pubsub
    }

    /// A snapshot of every counter and gauge.
    pub fn metrics(&self) -> Metrics {
        self.counters.snapshot()
    }

    /// Switches between leader and follower; see [`Outbox::set_role`]. Fence state is kept on both so
    /// that a promoted follower detects enter and exit correctly.
    pub fn set_role(&self, leader: bool) {
        self.outbox.set_role(leader);
    }

    /// Whether this node queues and delivers events.
    pub fn is_leader(&self) -> bool {
        self.outbox.is_leader()
    }

    /// Delivers queued events until `cancel` fires; see [`Outbox::run`].
    ///
    /// # Cancellation safety
    /// As [`Outbox::run`].
    pub async fn run(&self, cancel: CancellationToken) {
        self.outbox.run(cancel).await;
    }

    /// SETHOOK: creates or replaces a hook. `now` starts the EX clock.
    ///
    /// SETCHAN is the same call with [`Delivery::Channel`]; hooks and channels share one name
    /// space, as in Tile38.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHook`] from [`HookDef::validate`], for a live fence (see
    /// [`Hooks::set_live`]), or for a name that a channel uses when setting a hook (and the
    /// reverse).
    pub fn set_hook(&self, def: HookDef, now: SystemTime) -> Result<SetOutcome> {
        def.validate()?;
        if matches!(def.delivery, Delivery::Live(_)) {
            return Err(Error::InvalidHook {
                name: def.name,
                reason: "a live fence is set with set_live".into(),
            });
        }
        let mut reg = self.registry.lock();
        let outcome = match reg.by_name.get(def.name.as_str()).copied() {
            Some(slot) => {
                let existing = reg.slots[slot as usize]
                    .as_ref()
                    .expect("named slot is live");
                if existing.def.is_channel() != def.is_channel() {
                    return Err(Error::InvalidHook {
                        name: def.name,
                        reason: "hooks and channels cannot share the same name".into(),
                    });
                }
                if *existing.def == def {
                    return Ok(SetOutcome::Unchanged);
                }
                self.remove_slot(&mut reg, slot);
                SetOutcome::Changed
            }
            None => SetOutcome::Created,
        };
        self.insert_slot(&mut reg, def, now);
        Ok(outcome)
    }

    /// Starts (or replaces) the live fence of the connection named in `def.delivery`: its events
    /// go to that connection's inbox in [`Hooks::pubsub`] until [`Hooks::del_live`].
    ///
    /// # Errors
    /// [`crate::Error::InvalidHook`] from [`HookDef::validate`], or a definition whose delivery is
    /// not [`Delivery::Live`].
    pub fn set_live(&self, def: HookDef, now: SystemTime) -> Result<()> {
        def.validate()?;
        let Delivery::Live(conn) = def.delivery else {
            return Err(Error::InvalidHook {
                name: def.name,
                reason: "not a live fence".into(),
            });
        };
        let mut reg = self.registry.lock();
        if let Some(slot) = reg.live.get(&conn).copied() {
            self.remove_slot(&mut reg, slot);
        }
        self.insert_slot(&mut reg, def, now);
        Ok(())
    }

    /// Ends connection `conn`'s live fence and drops its fence state. Returns whether it had one.
    pub fn del_live(&self, conn: u64) -> bool {
        let mut reg = self.registry.lock();
        let Some(slot) = reg.live.get(&conn).copied() else {
            return false;
        };
        self.remove_slot(&mut reg, slot);
        true
    }

    fn insert_slot(&self, reg: &mut Registry, def: HookDef, now: SystemTime) {
        let roams = def.options.roam.is_some();
        // A roam fence has no area; its box is never searched.
        let env = match def.area.bounds() {
            Some(b) if !roams => aabb(&b),
            _ => AABB::from_point([0.0, 0.0]),
        };
        let expires_at_ms = def
            .ex
            .map(|ex| unix_ms(now).saturating_add((ex * 1000.0) as i64));
        let name: Arc<str> = Arc::from(def.name.as_str());
        let key: Arc<str> = Arc::from(def.key.as_str());
        let wants_outside = def.filter.detects(Detect::Outside) && !roams;
        let delivery = def.delivery;
        if delivery == Delivery::Endpoints {
            self.outbox.set_hook(&def.name, def.endpoints.clone());
        }
        let slot = match reg.free.pop() {
            Some(s) => s,
            None => {
                reg.slots.push(None);
                u32::try_from(reg.slots.len() - 1).expect("fewer than 2^32 hooks")
            }
        };
        let entry = FenceEntry {
            slot,
            env,
            kind: def.kind,
            filter: def.filter,
            area: def.area.clone(),
            filtered: def.options.filters(),
        };
        reg.slots[slot as usize] = Some(Slot {
            fence: entry.clone(),
            def: Arc::new(def),
            expires_at_ms,
            members: BTreeSet::new(),
        });
        if let Delivery::Live(conn) = delivery {
            reg.live.insert(conn, slot);
        } else {
            reg.by_name.insert(Arc::clone(&name), slot);
            if let Some(at) = expires_at_ms {
                reg.expiries.insert((at, name));
            }
        }
        let fences = reg.fences.entry(key).or_default();
        if roams {
            fences.roam.insert(slot);
        } else {
            fences.insert(entry);
        }
        fences.all.insert(slot);
        if wants_outside {
            fences.outside.insert(slot);
        }
        self.counters.hooks.store(reg.by_name.len() as u64, Relaxed);
    }

    /// DELHOOK: removes a hook, its queue and its fence state. Returns whether it existed (a
    /// channel of that name is left alone, as in Tile38).
    pub fn del_hook(&self, name: &str) -> bool {
        self.del_named(name, false)
    }

    /// DELCHAN: removes a channel and its fence state. Returns whether it existed.
    pub fn del_chan(&self, name: &str) -> bool {
        self.del_named(name, true)
    }

    fn del_named(&self, name: &str, channel: bool) -> bool {
        let mut reg = self.registry.lock();
        let Some(slot) = reg.by_name.get(name).copied() else {
            return false;
        };
        if reg.slots[slot as usize]
            .as_ref()
            .is_none_or(|s| s.def.is_channel() != channel)
        {
            return false;
        }
        self.remove_slot(&mut reg, slot);
        self.counters.hooks.store(reg.by_name.len() as u64, Relaxed);
        true
    }

    /// PDELHOOK: removes every hook whose name matches the glob; returns their names.
    pub fn pdel_hooks(&self, pattern: &str) -> Vec<String> {
        self.pdel(pattern, false)
    }

    /// PDELCHAN: removes every channel whose name matches the glob; returns their names.
    pub fn pdel_chans(&self, pattern: &str) -> Vec<String> {
        self.pdel(pattern, true)
    }

    fn pdel(&self, pattern: &str, channel: bool) -> Vec<String> {
        let mut reg = self.registry.lock();
        let glob = WildMatch::new(pattern);
        let doomed: Vec<u32> = reg
            .by_name
            .iter()
            .filter(|(n, _)| glob.matches(n))
            .map(|(_, s)| *s)
            .filter(|s| {
                reg.slots[*s as usize]
                    .as_ref()
                    .is_some_and(|s| s.def.is_channel() == channel)
            })
            .collect();
        let mut names = Vec::with_capacity(doomed.len());
        for slot in doomed {
            names.push(
                reg.slots[slot as usize]
                    .as_ref()
                    .expect("live")
                    .def
                    .name
                    .clone(),
            );
            self.remove_slot(&mut reg, slot);
        }
        self.counters.hooks.store(reg.by_name.len() as u64, Relaxed);
        names
    }

    /// HOOKS: the hooks whose name matches the glob, sorted by name.
    pub fn list(&self, pattern: &str, now: SystemTime) -> Vec<HookInfo> {
        self.list_of(pattern, now, false)
    }

    /// CHANS: the channels whose name matches the glob, sorted by name.
    pub fn list_chans(&self, pattern: &str, now: SystemTime) -> Vec<HookInfo> {
        self.list_of(pattern, now, true)
    }

    fn list_of(&self, pattern: &str, now: SystemTime, channel: bool) -> Vec<HookInfo> {
        let reg = self.registry.lock();
        let glob = WildMatch::new(pattern);
        let now_ms = unix_ms(now);
        reg.by_name
            .iter()
            .filter(|(n, _)| glob.matches(n))
            .map(|(_, s)| reg.slots[*s as usize].as_ref().expect("live"))
            .filter(|slot| slot.def.is_channel() == channel)
            .map(|slot| {
                let ttl = slot
                    .expires_at_ms
                    .map(|at| (at - now_ms).max(0) as f64 / 1000.0);
                HookInfo {
                    def: Arc::clone(&slot.def),
                    ttl,
                }
            })
            .collect()
    }

    /// One hook or channel by name.
    pub fn get(&self, name: &str, now: SystemTime) -> Option<HookInfo> {
        self.list_exact(name, now)
    }

    fn list_exact(&self, name: &str, now: SystemTime) -> Option<HookInfo> {
        let reg = self.registry.lock();
        let slot = reg.slots[*reg.by_name.get(name)? as usize].as_ref()?;
        let ttl = slot
            .expires_at_ms
            .map(|at| (at - unix_ms(now)).max(0) as f64 / 1000.0);
        Some(HookInfo {
            def: Arc::clone(&slot.def),
            ttl,
        })
    }

    /// Number of hooks and channels (live fences are not counted).
    pub fn len(&self) -> usize {
        self.registry.lock().by_name.len()
    }

    /// Whether there are no hooks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any hook, channel or live fence is on `key`. A write to a key
    /// nobody watches matches nothing, so the caller need not read the
    /// written object back to build its change.
    pub fn watches(&self, key: &str) -> bool {
        self.registry.lock().fences.contains_key(key)
    }

    /// Removes hooks and channels whose EX has passed and returns them, so that the server can
    /// log a DELHOOK or DELCHAN for each (Tile38 writes `delhook name` to the AOF on expiry).
    pub fn expire_due(&self, now: SystemTime) -> Vec<Expired> {
        let now_ms = unix_ms(now);
        let mut reg = self.registry.lock();
        let mut names = Vec::new();
        while let Some((at, name)) = reg.expiries.first().cloned() {
            if at > now_ms {
                break;
            }
            let mut channel = false;
            if let Some(slot) = reg.by_name.get(&name).copied() {
                channel = reg.slots[slot as usize]
                    .as_ref()
                    .is_some_and(|s| s.def.is_channel());
                self.stage_hook_expiry(&reg, slot);
                self.remove_slot(&mut reg, slot);
            }
            reg.expiries.remove(&(at, Arc::clone(&name)));
            names.push(Expired {
                name: name.to_string(),
                channel,
            });
        }
        self.counters.hooks.store(reg.by_name.len() as u64, Relaxed);
        names
    }

    fn remove_slot(&self, reg: &mut Registry, slot: u32) {
        let Some(s) = reg.slots[slot as usize].take() else {
            return;
        };
        reg.free.push(slot);
        if let Delivery::Live(conn) = s.def.delivery {
            reg.live.remove(&conn);
        } else {
            reg.by_name.remove(s.def.name.as_str());
        }
        if let Some(at) = s.expires_at_ms {
            reg.expiries.remove(&(at, Arc::from(s.def.name.as_str())));
        }
        if let Some(f) = reg.fences.get_mut(s.def.key.as_str()) {
            if !f.roam.remove(&slot) {
                f.remove(&s.fence);
            }
            f.all.remove(&slot);
            f.outside.remove(&slot);
            if f.all.is_empty() {
                reg.fences.remove(s.def.key.as_str());
            }
        }
        for (key, id) in &s.members {
            remove_group(reg, key, id, slot);
        }
        self.counters.fence_groups.store(reg.group_count, Relaxed);
        self.release_queue(&s.def);
    }

    /// Reports one write. Matches it against the fences on its key, updates fence state, and queues
    /// the resulting events of hooks (on the leader), publishes those of channels and sends those of
    /// live fences (on every node). Returns the number of events produced.
    ///
    /// Cost: index searches over the fences of `change.key` at the new and the old position (about
    /// log(hooks) each), plus, for a move, a search of the path's spanning box among the fences that
    /// detect `cross` only, plus the work for each event produced. A long jump over thousands of
    /// enter/exit fences therefore visits only the fences at its two ends, as in Tile38. Hooks that ask
    /// for `outside` get an event for every write to their key, as in Tile38, so they are visited on
    /// every write.
    pub fn on_change(&self, change: &Change<'_>) -> usize {
        self.on_change_near(change, &NoNeighbors)
    }

    /// [`Hooks::on_change`], with the database's objects near a position for roam fences
    /// (`NEARBY key FENCE ROAM key pattern meters`): each roam fence on the key reports the
    /// objects that `near` finds within its reach of the written object (`nearby`) and those
    /// that were within reach of its old position and are no longer (`faraway`).
    pub fn on_change_near(&self, change: &Change<'_>, near: &dyn Neighbors) -> usize {
        let mut reg = self.registry.lock();
        let reg = &mut *reg;
        let Some(fences) = reg.fences.get(change.key) else {
            return 0;
        };
        let mut events: Vec<(Detect, u32, Option<u64>)> = Vec::new();
        let mut plain: Vec<(u32, Option<u64>)> = Vec::new();
        let mut roams: Vec<RoamEvent> = Vec::new();
        match change.command {
            CommandKind::Drop => {
                plain.extend(fences.all.iter().map(|s| (*s, None)));
                if let Some(objects) = reg.groups.remove(change.key) {
                    for (id, hooks) in objects {
                        for (slot, _) in hooks {
                            reg.group_count -= 1;
                            if let Some(s) = reg.slots[slot as usize].as_mut() {
                                s.members.remove(&(Arc::from(change.key), Arc::clone(&id)));
                            }
                        }
                    }
                }
            }
            CommandKind::Del => {
                // Hooks the object was inside, plus those that hear about every write (outside).
                let inside: Vec<(u32, u64)> = reg
                    .groups
                    .get_mut(change.key)
                    .and_then(|objs| objs.remove(change.id))
                    .unwrap_or_default();
                if reg.groups.get(change.key).is_some_and(HashMap::is_empty) {
                    reg.groups.remove(change.key);
                }
                let fences = reg.fences.get(change.key).expect("checked above");
                // Roam fences hear every delete on their key, as Tile38's do.
                let mut recipients: BTreeMap<u32, Option<u64>> = fences
                    .outside
                    .iter()
                    .chain(&fences.roam)
                    .map(|s| (*s, None))
                    .collect();
                for (slot, group) in &inside {
                    reg.group_count -= 1;
                    recipients.insert(*slot, Some(*group));
                    if let Some(s) = reg.slots[*slot as usize].as_mut() {
                        s.members
                            .remove(&(Arc::from(change.key), Arc::from(change.id)));
                    }
                }
                // MATCH applies to deletes too; WHERE does not (the object is gone).
                plain.extend(recipients.into_iter().filter(|(slot, _)| {
                    reg.slots[*slot as usize]
                        .as_ref()
                        .is_some_and(|s| s.def.options.id_matches(change.id))
                }));
            }
            CommandKind::Set | CommandKind::Fset => {
                let Some(new) = change.new else { return 0 };
                self.match_set(reg, change, new, &mut events);
                if change.command == CommandKind::Set {
                    self.match_roam(reg, change, new, near, &mut roams);
                } else {
                    bare_roams(reg, change, &mut roams);
                }
            }
        }
        self.counters.fence_groups.store(reg.group_count, Relaxed);
        let produced = events.len() + plain.len() + roams.len();
        self.counters.events.fetch_add(produced as u64, Relaxed);
        if produced == 0 {
            return produced;
        }
        // A follower's hooks stay quiet (the leader delivers them), but its channels and live fences
        // speak to its own subscribers.
        let leader = self.outbox.is_leader();
        let speaks = |slot: u32| {
            reg.slots[slot as usize].as_ref().is_some_and(|s| {
                s.def.filter.allows(change.command)
                    && (leader || s.def.delivery != Delivery::Endpoints)
            })
        };
        // A COUNT fence writes nothing per object, so of its events only `del` and `drop`
        // (which carry no object) remain, as in Tile38.
        let describes = |slot: u32| {
            reg.slots[slot as usize]
                .as_ref()
                .is_some_and(|s| s.def.options.output != FenceOutput::Count)
        };
        events.retain(|e| speaks(e.1) && describes(e.1));
        plain.retain(|p| speaks(p.0));
        roams.retain(|r| speaks(r.slot) && describes(r.slot));
        if events.is_empty() && plain.is_empty() && roams.is_empty() {
            return produced;
        }
        let time = chrono::DateTime::<chrono::Local>::from(change.time)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        // Tile38 orders the messages of one write by detect weight, then by hook name.
        events.sort_by(|a, b| {
            let name = |s: u32| reg.slots[s as usize].as_ref().map(|s| s.def.name.as_str());
            a.0.weight()
                .cmp(&b.0.weight())
                .then_with(|| name(a.1).cmp(&name(b.1)))
        });
        // The Kafka record key is the same for every event of one write.
        let key = bytes::Bytes::from(if change.id.is_empty() {
            change.key.to_owned()
        } else {
            format!("{}-{}", change.key, change.id)
        });
        let mut body = String::new();
        for (detect, slot, group) in events {
            let def = &reg.slots[slot as usize].as_ref().expect("live").def;
            body.clear();
            self.write_set(&mut body, def, detect.as_str(), group, change, &time);
            self.send(def, &key, &mut body);
        }
        for (slot, _) in plain {
            let def = &reg.slots[slot as usize].as_ref().expect("live").def;
            body.clear();
            write_plain(&mut body, def, change, &time);
            self.send(def, &key, &mut body);
        }
        // The messages of one write to one roam fence share a group.
        let mut group = None;
        for (i, r) in roams.iter().enumerate() {
            let def = &reg.slots[r.slot as usize].as_ref().expect("live").def;
            if i == 0 || roams[i - 1].slot != r.slot {
                group = Some(self.next_group());
            }
            body.clear();
            self.write_roam(&mut body, def, group, change, &time, r);
            self.send(def, &key, &mut body);
        }
        produced
    }

    /// Finds the roam events of a SET: for each roam fence on the key whose MATCH the id passes,
    /// the neighbours within reach of the new position (`nearby`, without those already near the
    /// old position under NODWELL) and those near the old position only (`faraway`), each list
    /// nearest first, then by id, as Tile38 sorts them.
    fn match_roam(
        &self,
        reg: &Registry,
        change: &Change<'_>,
        new: &Object,
        near: &dyn Neighbors,
        out: &mut Vec<RoamEvent>,
    ) {
        let Some(fences) = reg.fences.get(change.key) else {
            return;
        };
        for &slot in &fences.roam {
            let def = &reg.slots[slot as usize].as_ref().expect("live").def;
            let Some(roam) = &def.options.roam else {
                continue;
            };
            if !def.filter.detects_roam() || !def.options.id_matches(change.id) {
                continue;
            }
            let around = |obj: &Object| -> Vec<(String, Object, f64)> {
                let mut v = Vec::new();
                near.near(&roam.key, obj, roam.meters, &mut |id, o, m| {
                    // The written object is never its own neighbour.
                    let same = id == change.id && roam.key == change.key;
                    if !same && roam_matches(roam, id) {
                        v.push((id.to_owned(), o.clone(), m));
                    }
                });
                v
            };
            let mut nearby = around(new);
            let mut before = change.old.map(&around).unwrap_or_default();
            let now: BTreeSet<String> = nearby.iter().map(|n| n.0.clone()).collect();
            let was: BTreeSet<String> = before.iter().map(|n| n.0.clone()).collect();
            // A neighbour near both positions is dwelling: not faraway, and under NODWELL not
            // nearby again either.
            before.retain(|n| !now.contains(&n.0));
            if roam.nodwell {
                nearby.retain(|n| !was.contains(&n.0));
            }
            // A faraway neighbour's distance is measured to the new position.
            for f in &mut before {
                if let Some(c) = f.1.center() {
                    f.2 = new.distance_to(&c).unwrap_or(f.2);
                }
            }
            let order = |a: &(String, Object, f64), b: &(String, Object, f64)| {
                a.2.total_cmp(&b.2).then_with(|| a.0.cmp(&b.0))
            };
            nearby.sort_by(order);
            before.sort_by(order);
            let listed = |id: &str, object: &Object| -> Vec<(String, Object)> {
                let Some(scan) = &roam.scan else {
                    return Vec::new();
                };
                roam_scan(near, &roam.key, id, object, scan)
            };
            for (faraway, list) in [(false, nearby), (true, before)] {
                out.extend(list.into_iter().map(|(id, object, meters)| RoamEvent {
                    slot,
                    scan: listed(&id, &object),
                    neighbour: Some(Neighbour {
                        faraway,
                        id,
                        object,
                        meters,
                    }),
                }));
            }
        }
    }

    /// A roam event: the `set` event with `"detect":"roam"` and a `nearby` or `faraway` member
    /// naming the neighbour, its object and its distance in meters (to the millimetre, rounded
    /// down, as Tile38 writes it).
    fn write_roam(
        &self,
        out: &mut String,
        def: &HookDef,
        group: Option<u64>,
        change: &Change<'_>,
        time: &str,
        r: &RoamEvent,
    ) {
        self.write_set(out, def, "roam", group, change, time);
        // An FSET's roam event is the bare message: Tile38 looks for neighbours on SET only.
        let Some(n) = &r.neighbour else {
            return;
        };
        out.pop();
        out.push_str(if n.faraway {
            ",\"faraway\":{\"key\":"
        } else {
            ",\"nearby\":{\"key\":"
        });
        let roam = def.options.roam.as_ref().expect("a roam fence");
        write_str(out, &roam.key);
        out.push_str(",\"id\":");
        write_str(out, &n.id);
        out.push_str(",\"object\":");
        n.object.write_json(out);
        let meters = (n.meters * 1000.0).floor() / 1000.0;
        let _ = write!(out, ",\"meters\":{meters}");
        if roam.scan.is_some() {
            out.push_str(",\"scan\":[");
            for (i, (id, object)) in r.scan.iter().enumerate() {
                out.push_str(if i == 0 { "{\"id\":" } else { ",{\"id\":" });
                write_str(out, id);
                if *id == n.id {
                    out.push_str(",\"self\":true");
                }
                out.push_str(",\"object\":");
                object.write_json(out);
                out.push('}');
            }
            out.push(']');
        }
        out.push_str("}}");
    }

    /// Sends one event where its fence's delivery says. Channel and live messages carry Tile38's
    /// members only: they are not journaled, so an event id would identify nothing.
    fn send(&self, def: &HookDef, key: &bytes::Bytes, body: &mut String) {
        match def.delivery {
            Delivery::Endpoints => self.push(def, key, body),
            Delivery::Channel => {
                self.pubsub.publish(&def.name, body);
            }
            Delivery::Live(conn) => {
                self.pubsub.send_live(conn, body);
            }
        }
    }

    fn push(&self, def: &HookDef, key: &bytes::Bytes, body: &mut String) {
        // The event id goes last, after Tile38's members; Tile38 clients ignore members they do not
        // know, and a receiver drops duplicates (a redelivery after a crash) by it.
        let id = self.outbox.next_id();
        body.pop();
        let _ = write!(body, ",\"event_id\":{id}}}");
        self.outbox.push_event(
            &def.name,
            id,
            Payload {
                key: key.clone(),
                body: body.as_str().to_owned().into(),
            },
        );
    }

    fn next_group(&self) -> u64 {
        self.group_seq.fetch_add(1, Relaxed)
    }

    fn match_set(
        &self,
        reg: &mut Registry,
        change: &Change<'_>,
        new: &Object,
        events: &mut Vec<(Detect, u32, Option<u64>)>,
    ) {
        let Some(new_bounds) = new.bounds() else {
            return;
        };
        let old = change.old.filter(|o| o.bounds().is_some());
        let new_env = aabb(&new_bounds);
        let old_env = old.and_then(Object::bounds).map(|b| aabb(&b));
        // The spanning box covers both positions, so it also covers the straight path between the
        // centres.
        let mut span = new_env;
        if let Some(o) = &old_env {
            span.merge(o);
        }
        let fences = reg.fences.get(change.key).expect("caller checked");
        let state: &[Stay] = reg
            .groups
            .get(change.key)
            .and_then(|o| o.get(change.id))
            .map_or(&[], Vec::as_slice);
        let has_state = !state.is_empty();
        // A fence can produce an event for this write only if it meets the new position (inside,
        // enter), meets the old one (exit, and inside for a hook set while the object was already
        // in it), holds fence state for the object (so that stale state is cleared), meets the path
        // between them and detects `cross`, or hears every write (`outside`, handled below). A short
        // move's spanning box is a few grid cells, and one search of it is cheaper than three; a long
        // move searches both ends apart and the spanning box only among cross-detecting fences, so
        // that its cost does not grow with the number of fences it jumps over.
        let mut candidates: Vec<u32> = Vec::new();
        if KeyFences::is_small(&span) {
            fences.for_each_candidate(&span, |slot| candidates.push(slot));
        } else {
            fences.for_each_candidate(&new_env, |slot| candidates.push(slot));
            if let Some(o) = &old_env {
                fences.for_each_candidate(o, |slot| candidates.push(slot));
            }
            candidates.extend(state.iter().map(|(slot, _)| *slot));
            if old_env.is_some() {
                candidates.extend(
                    fences
                        .cross
                        .locate_in_envelope_intersecting(&span)
                        .map(|e| e.slot),
                );
            }
            candidates.sort_unstable();
            candidates.dedup();
        }
        let mut path: Option<Option<Object>> = None;
        let mut seen: Vec<u32> = Vec::new();
        // First decide every detect with shared borrows only, then update state; most candidates of
        // a move are "outside, before and after" and need neither state nor an event.
        let mut decided: Vec<(u32, Detect, Filter)> = Vec::new();
        let slots = &reg.slots;
        for slot in candidates {
            if !fences.outside.is_empty() {
                seen.push(slot);
            }
            let e = &slots[slot as usize].as_ref().expect("live").fence;
            let mut was = old.is_some_and(|o| e.kind.matches(o, &e.area));
            let mut is = e.kind.matches(new, &e.area);
            // An end that is in the area but fails WHERE is no crossing, as in Tile38.
            let mut nocross = false;
            if e.filtered {
                let opts = &slots[slot as usize].as_ref().expect("live").def.options;
                if !opts.id_matches(change.id)
                    || (opts.nofields && change.command == CommandKind::Fset)
                {
                    continue;
                }
                let fields = change.fields.unwrap_or(&*NO_FIELDS);
                let passes = opts.accepts(change.id, new, fields);
                // Fence state says whether the object passed before this write: the fields it
                // had then are gone. Without state (a hook set while the object was inside), the
                // old position is judged with the new fields.
                let stayed = state.iter().any(|(s, _)| *s == slot);
                let in_before = was;
                was = was && (stayed || old.is_some_and(|o| opts.accepts(change.id, o, fields)));
                nocross = (in_before && !was) || (is && !passes);
                is = is && passes;
                // Tile38 reports nothing for an object that fails WHERE and is outside anyway.
                if !was && !is && !passes && change.command != CommandKind::Fset {
                    continue;
                }
            }
            let detect = match (was, is) {
                (true, true) => Detect::Inside,
                (true, false) => Detect::Exit,
                (false, true) => Detect::Enter,
                (false, false) => {
                    // The path test is the costly one; a hook that hears neither cross nor its outside
                    // fallback would see nothing either way.
                    let wanted =
                        e.filter.detects(Detect::Cross) || e.filter.detects(Detect::Outside);
                    if !wanted && !has_state {
                        continue;
                    }
                    let crossed = wanted
                        && !nocross
                        && old.is_some_and(|o| {
                            let line = path.get_or_insert_with(|| segment(o, new));
                            line.as_ref().is_some_and(|l| l.intersects(&e.area))
                        });
                    if crossed {
                        Detect::Cross
                    } else {
                        Detect::Outside
                    }
                }
            };
            decided.push((e.slot, detect, e.filter));
        }
        seen.sort_unstable();
        let outside: Vec<u32> = fences
            .outside
            .iter()
            .copied()
            .filter(|s| seen.binary_search(s).is_err())
            .collect();
        for (slot, detect, filter) in decided {
            let group = self.update_state(reg, change, slot, detect);
            emit(events, filter, detect, slot, group);
        }
        for slot in outside {
            let s = reg.slots[slot as usize].as_ref().expect("live");
            if s.fence.filtered {
                let opts = &s.def.options;
                let fields = change.fields.unwrap_or(&*NO_FIELDS);
                if !opts.id_matches(change.id)
                    || (opts.nofields && change.command == CommandKind::Fset)
                    || (change.command != CommandKind::Fset
                        && !opts.accepts(change.id, new, fields))
                {
                    continue;
                }
            }
            // Neither end can be inside and the path cannot cross: the fence's box misses them all.
            emit(
                events,
                reg.slots[slot as usize].as_ref().expect("live").def.filter,
                Detect::Outside,
                slot,
                None,
            );
        }
    }

    /// Records enters and drops exits in fence state; returns the group id the event carries.
    fn update_state(
        &self,
        reg: &mut Registry,
        change: &Change<'_>,
        slot: u32,
        detect: Detect,
    ) -> Option<u64> {
        let key = change.key;
        let current = reg
            .groups
            .get(key)
            .and_then(|o| o.get(change.id))
            .and_then(|v| v.iter().find(|(s, _)| *s == slot))
            .map(|(_, g)| *g);
        match detect {
            Detect::Enter | Detect::Inside => {
                if detect == Detect::Inside && current.is_some() {
                    return current;
                }
                // An enter starts a new group; an inside with no state (a hook set while the object was
                // already inside, or a promoted follower) starts one too.
                if let Some(g) = current {
                    return Some(g);
                }
                let g = self.next_group();
                let key: Arc<str> = Arc::from(key);
                let id: Arc<str> = Arc::from(change.id);
                reg.groups
                    .entry(Arc::clone(&key))
                    .or_default()
                    .entry(Arc::clone(&id))
                    .or_default()
                    .push((slot, g));
                reg.group_count += 1;
                if let Some(s) = reg.slots[slot as usize].as_mut() {
                    s.members.insert((key, id));
                }
                Some(g)
            }
            Detect::Exit | Detect::Outside | Detect::Cross => {
                if current.is_some() {
                    remove_group(reg, key, change.id, slot);
                    if let Some(s) = reg.slots[slot as usize].as_mut() {
                        s.members.remove(&(Arc::from(key), Arc::from(change.id)));
                    }
                }
                // A cross gets a group of its own, as in Tile38; the others reuse the stay's group.
                if detect == Detect::Cross {
                    Some(self.next_group())
                } else {
                    current
                }
            }
        }
    }

    fn write_set(
        &self,
        out: &mut String,
        def: &HookDef,
        detect: &str,
        group: Option<u64>,
        change: &Change<'_>,
        time: &str,
    ) {
        let group = group.unwrap_or_else(|| self.next_group());
        let _ = write!(
            out,
            "{{\"command\":\"{}\",\"group\":\"{:08x}{:016x}\",\"detect\":\"{}\"",
            change.command.as_str(),
            self.group_prefix,
            group,
            detect
        );
        write_hook(out, def);
        out.push_str(",\"key\":");
        write_str(out, change.key);
        let _ = write!(out, ",\"time\":\"{time}\",\"id\":");
        write_str(out, change.id);
        let output = def.options.output;
        if let Some(new) = change.new {
            write_output(out, output, new);
        }
        let fields = change
            .fields
            .filter(|_| !def.options.nofields && output != FenceOutput::Ids);
        if let Some(fields) = fields {
            let mut first = true;
            for (name, value) in fields.iter().filter(|(_, v)| !v.is_zero()) {
                out.push_str(if first { ",\"fields\":{" } else { "," });
                first = false;
                write_str(out, name);
                out.push(':');
                value.write_json(out);
            }
            if !first {
                out.push('}');
            }
        }
        if def.filter.distance() && def.options.roam.is_none() {
            // Tile38 writes the distance after the fields, from the object to the centre of the
            // fence's area.
            let centre = match &def.area {
                Area::Circle { center, .. } => Some(*center),
                Area::Point(p) => Some(*p),
                other => other.bounds().map(|b| b.center()),
            };
            if let Some(d) = centre.and_then(|c| change.new?.distance_to(&c)) {
                let _ = write!(out, ",\"distance\":{d}");
            }
        }
        out.push('}');
    }
}

/// The member that describes the object in a `set` or `fset` event, as the fence's output asks:
/// Tile38's scan writer writes `"object"`, `"point"`, `"bounds"` or `"hash"` here, and nothing
/// for IDS. (COUNT sends no such event.)
fn write_output(out: &mut String, output: FenceOutput, object: &Object) {
    match output {
        FenceOutput::Objects => {
            out.push_str(",\"object\":");
            object.write_json(out);
        }
        FenceOutput::Points => {
            if let Some(c) = object.center() {
                out.push_str(",\"point\":");
                c.write_latlon_json(out);
            }
        }
        FenceOutput::Bounds => {
            if let Some(b) = object.bounds() {
                out.push_str(",\"bounds\":");
                b.write_latlon_json(out);
            }
        }
        FenceOutput::Hashes(precision) => {
            if let Ok(hash) = object.geohash(usize::from(precision)) {
                out.push_str(",\"hash\":");
                write_str(out, &hash);
            }
        }
        FenceOutput::Ids | FenceOutput::Count => {}
    }
}

/// The bare roam events of an FSET: Tile38 looks for neighbours on SET only, and on FSET sends
/// each roam fence on the key (without DETECT, and whose MATCH the id passes) the event itself,
/// `"detect":"roam"` with no `nearby` or `faraway` member. NOFIELDS fences hear no FSET.
fn bare_roams(reg: &Registry, change: &Change<'_>, out: &mut Vec<RoamEvent>) {
    let Some(fences) = reg.fences.get(change.key) else {
        return;
    };
    for &slot in &fences.roam {
        let def = &reg.slots[slot as usize].as_ref().expect("live").def;
        if def.filter.detects_roam() && !def.options.nofields && def.options.id_matches(change.id) {
            out.push(RoamEvent {
                slot,
                neighbour: None,
                scan: Vec::new(),
            });
        }
    }
}

/// What `ROAM … SCAN pattern` lists with neighbour `id`: the neighbour itself first (whether or
/// not its id matches the pattern, as Tile38 reads it apart), then the other objects of `key`
/// whose id matches `id` followed by `pattern`, in id order.
fn roam_scan(
    near: &dyn Neighbors,
    key: &str,
    id: &str,
    object: &Object,
    pattern: &str,
) -> Vec<(String, Object)> {
    let mut out = vec![(id.to_owned(), object.clone())];
    near.scan(key, &format!("{id}{pattern}"), &mut |found, o| {
        if found != id {
            out.push((found.to_owned(), o.clone()));
        }
    });
    out
}

/// The fields of an event that has none, for WHERE (every field reads as 0).
static NO_FIELDS: std::sync::LazyLock<Fields> = std::sync::LazyLock::new(Fields::default);

/// One roam event of a write: a neighbour a roam fence reports for a SET, or the bare event of
/// an FSET.
#[derive(Debug)]
struct RoamEvent {
    slot: u32,
    /// `None` for an FSET's bare event.
    neighbour: Option<Neighbour>,
    /// What `ROAM … SCAN` lists with the neighbour (empty without SCAN).
    scan: Vec<(String, Object)>,
}

/// A neighbour that came within reach (`nearby`) or went out of it (`faraway`).
#[derive(Debug)]
struct Neighbour {
    faraway: bool,
    id: String,
    object: Object,
    meters: f64,
}

/// Whether a neighbour's id matches a roam fence's pattern (`*` matches any).
fn roam_matches(roam: &Roam, id: &str) -> bool {
    roam.pattern == "*" || geohook_db::Glob::new(&roam.pattern).is_match(id)
}

fn emit(
    events: &mut Vec<(Detect, u32, Option<u64>)>,
    filter: Filter,
    detect: Detect,
    slot: u32,
    group: Option<u64>,
) {
    // An enter is also an inside, and an exit or a cross also an outside; each is sent if DETECT
    // asks for it, which also makes a filtered-out enter fall back to inside (and exit to outside).
    let also = match detect {
        Detect::Enter => Some(Detect::Inside),
        Detect::Exit | Detect::Cross => Some(Detect::Outside),
        Detect::Inside | Detect::Outside => None,
    };
    for d in std::iter::once(detect).chain(also) {
        if filter.detects(d) {
            events.push((d, slot, group));
        }
    }
}

fn remove_group(reg: &mut Registry, key: &str, id: &str, slot: u32) {
    let Some(objs) = reg.groups.get_mut(key) else {
        return;
    };
    let Some(hooks) = objs.get_mut(id) else {
        return;
    };
    let before = hooks.len();
    hooks.retain(|(s, _)| *s != slot);
    reg.group_count -= (before - hooks.len()) as u64;
    if hooks.is_empty() {
        objs.remove(id);
        if objs.is_empty() {
            reg.groups.remove(key);
        }
    }
}

/// The straight path from the old centre to the new one, as an object that can be tested against an area.
fn segment(old: &Object, new: &Object) -> Option<Object> {
    let (a, b) = (old.center()?, new.center()?);
    if a.lat == b.lat && a.lon == b.lon {
        return None;
    }
    Object::from_geojson(&format!(
        "{{\"type\":\"LineString\",\"coordinates\":[[{},{}],[{},{}]]}}",
        a.lon, a.lat, b.lon, b.lat
    ))
    .ok()
}

fn write_plain(out: &mut String, def: &HookDef, change: &Change<'_>, time: &str) {
    let _ = write!(out, "{{\"command\":\"{}\"", change.command.as_str());
    write_hook(out, def);
    out.push_str(",\"key\":");
    write_str(out, change.key);
    if change.command != CommandKind::Drop {
        out.push_str(",\"id\":");
        write_str(out, change.id);
    }
    let _ = write!(out, ",\"time\":\"{time}\"}}");
}

/// The `hook` and `meta` members; a live fence has neither (Tile38 leaves them out when the name
/// is empty).
fn write_hook(out: &mut String, def: &HookDef) {
    if !def.name.is_empty() {
        out.push_str(",\"hook\":");
        write_str(out, &def.name);
    }
    write_meta(out, def);
}

fn write_meta(out: &mut String, def: &HookDef) {
    for (i, (k, v)) in def.meta.iter().enumerate() {
        out.push_str(if i == 0 { ",\"meta\":{" } else { "," });
        write_str(out, k);
        out.push(':');
        write_str(out, v);
    }
    if !def.meta.is_empty() {
        out.push('}');
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a String cannot fail.
    let _ = serde_json::to_writer(StringWriter(out), s);
}

/// Adapts a String to io::Write for serde_json, which only ever writes valid UTF-8.
struct StringWriter<'a>(&'a mut String);

impl std::io::Write for StringWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let s = std::str::from_utf8(buf).map_err(std::io::Error::other)?;
        self.0.push_str(s);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::fence::Neighbors;
    use crate::pubsub::{Inbox, Message};

    fn def(name: &str, delivery: Delivery) -> HookDef {
        HookDef {
            name: name.into(),
            endpoints: if delivery == Delivery::Endpoints {
                Endpoint::parse_list("http://127.0.0.1:1/").unwrap()
            } else {
                Vec::new()
            },
            delivery,
            meta: vec![],
            ex: None,
            kind: FenceKind::Within,
            key: "fleet".into(),
            filter: Filter::default(),
            area: Area::Bounds(Bounds::new(33.0, -112.0, 33.1, -111.9).unwrap()),
            options: Default::default(),
            args: vec!["WITHIN".into(), "fleet".into(), "FENCE".into()],
        }
    }

    fn point(lat: f64, lon: f64) -> Object {
        Object::Point(geohook_db::Point::new(lat, lon).unwrap())
    }

    /// (detect or command, has a hook member) of every message in an inbox.
    fn seen(inbox: &Inbox) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        inbox.drain(&mut out).unwrap();
        out.into_iter()
            .map(|m| {
                let body = match m {
                    Message::Channel { body, .. }
                    | Message::Pattern { body, .. }
                    | Message::Live { body } => body,
                };
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert!(v.get("event_id").is_none(), "{body}");
                let what = v
                    .get("detect")
                    .unwrap_or(&v["command"])
                    .as_str()
                    .unwrap()
                    .to_owned();
                (what, v.get("hook").is_some())
            })
            .collect()
    }

    fn moves(hooks: &Hooks) {
        let (out, inn) = (point(32.0, -112.5), point(33.05, -111.95));
        let now = SystemTime::now();
        hooks.on_change(&Change::set("fleet", "t", None, &out, None, now));
        hooks.on_change(&Change::set("fleet", "t", Some(&out), &inn, None, now));
        hooks.on_change(&Change::set("fleet", "t", Some(&inn), &out, None, now));
        hooks.on_change(&Change::del("fleet", "t", &out, now));
    }

    #[test]
    fn hooks_channels_and_live_fences_hear_the_same_events() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        assert!(!hooks.watches("fleet"));
        hooks.set_live(def("", Delivery::Live(7)), now).unwrap();
        // A live fence alone makes its key watched; other keys stay unwatched.
        assert!(hooks.watches("fleet") && !hooks.watches("other"));
        hooks.set_hook(def("h", Delivery::Endpoints), now).unwrap();
        hooks.set_hook(def("c", Delivery::Channel), now).unwrap();
        let (sub, live) = (Inbox::new(1 << 20), Inbox::new(1 << 20));
        hooks.pubsub().subscribe("c", 1, &sub);
        hooks.pubsub().attach_live(7, &live);
        moves(&hooks);
        let want: Vec<String> = ["outside", "enter", "inside", "exit", "outside", "del"]
            .map(String::from)
            .into();
        let chan = seen(&sub);
        assert_eq!(chan.iter().map(|c| c.0.clone()).collect::<Vec<_>>(), want);
        assert!(
            chan.iter().all(|c| c.1),
            "channel events name their channel"
        );
        let live = seen(&live);
        assert_eq!(live.iter().map(|c| c.0.clone()).collect::<Vec<_>>(), want);
        assert!(live.iter().all(|c| !c.1), "live events have no hook member");
        assert_eq!(hooks.outbox().queued("h"), Some(want.len()));
        // Live fences and channels are not hooks, and a channel's name is taken.
        assert_eq!(hooks.list("*", now).len(), 1);
        assert_eq!(hooks.list_chans("*", now).len(), 1);
        assert!(hooks.set_hook(def("c", Delivery::Endpoints), now).is_err());
        assert!(!hooks.del_hook("c") && hooks.pdel_hooks("*") == ["h"]);
        assert!(hooks.del_live(7) && !hooks.del_live(7));
        assert!(hooks.watches("fleet"), "the channel is still on the key");
        assert_eq!(hooks.pdel_chans("*"), ["c"]);
        assert!(hooks.is_empty());
        assert!(!hooks.watches("fleet"));
        assert_eq!(hooks.metrics().fence_groups, 0);
    }

    #[test]
    fn a_nearby_fence_with_distance_reports_it() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        let centre = geohook_db::Point::new(33.0, -112.0).unwrap();
        for (conn, distance) in [(1, true), (2, false)] {
            let mut d = def("", Delivery::Live(conn));
            d.kind = FenceKind::Nearby;
            d.area = Area::circle(centre, 1000.0).unwrap();
            d.filter = Filter::default().with_distance(distance);
            hooks.set_live(d, now).unwrap();
        }
        let (with, without) = (Inbox::new(1 << 20), Inbox::new(1 << 20));
        hooks.pubsub().attach_live(1, &with);
        hooks.pubsub().attach_live(2, &without);
        let p = point(33.001, -112.0);
        hooks.on_change(&Change::set("fleet", "t", None, &p, None, now));
        let body = |inbox: &Inbox| {
            let mut out = Vec::new();
            inbox.drain(&mut out).unwrap();
            let Message::Live { body } = &out[0] else {
                panic!("{out:?}")
            };
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        };
        let d = body(&with)["distance"].as_f64().expect("distance");
        let want = p.distance_to(&centre).unwrap();
        assert!(
            (d - want).abs() < 1e-6 && (100.0..120.0).contains(&d),
            "{d}"
        );
        assert!(body(&without).get("distance").is_none());
    }

    /// Passes objects east of a longitude: a stand-in for the server's WHERE.
    #[derive(Debug)]
    struct EastOf(f64);

    impl crate::fence::ObjectTest for EastOf {
        fn accepts(&self, _: &str, object: &Object, _: &Fields) -> bool {
            object.center().is_some_and(|c| c.lon > self.0)
        }
    }

    fn live_bodies(inbox: &Inbox) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        inbox.drain(&mut out).unwrap();
        out.into_iter()
            .map(|m| {
                let Message::Live { body } = m else {
                    panic!("{m:?}")
                };
                serde_json::from_str(&body).unwrap()
            })
            .collect()
    }

    #[test]
    fn match_and_where_decide_which_objects_a_fence_reports() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        let mut d = def("", Delivery::Live(1));
        d.options.matches = vec!["truck*".into()];
        d.options.test = Some(Arc::new(EastOf(-111.97)));
        hooks.set_live(d, now).unwrap();
        let inbox = Inbox::new(1 << 20);
        hooks.pubsub().attach_live(1, &inbox);
        let (west, east, far) = (
            point(33.05, -111.99),
            point(33.05, -111.95),
            point(32.0, -111.0),
        );
        // An id outside MATCH is never reported, deletes included.
        hooks.on_change(&Change::set("fleet", "car1", None, &east, None, now));
        hooks.on_change(&Change::del("fleet", "car1", &east, now));
        assert!(live_bodies(&inbox).is_empty());
        // Inside the area but failing WHERE: nothing, as Tile38 sends nothing for an object
        // that fails WHERE while outside.
        hooks.on_change(&Change::set("fleet", "truck1", None, &west, None, now));
        assert!(live_bodies(&inbox).is_empty());
        // Passing WHERE inside the area enters; failing it again exits, though the truck
        // never left the area.
        hooks.on_change(&Change::set(
            "fleet",
            "truck1",
            Some(&west),
            &east,
            None,
            now,
        ));
        hooks.on_change(&Change::set(
            "fleet",
            "truck1",
            Some(&east),
            &west,
            None,
            now,
        ));
        hooks.on_change(&Change::set(
            "fleet",
            "truck1",
            Some(&west),
            &far,
            None,
            now,
        ));
        let detects: Vec<String> = live_bodies(&inbox)
            .iter()
            .map(|v| v["detect"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(detects, ["enter", "inside", "exit", "outside", "outside"]);
        hooks.on_change(&Change::del("fleet", "truck1", &far, now));
        let del = live_bodies(&inbox);
        assert_eq!(del.len(), 1);
        assert_eq!(del[0]["command"], "del");
        assert_eq!(hooks.metrics().fence_groups, 0);
    }

    #[test]
    fn a_within_fence_with_distance_reports_it_from_the_areas_centre() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        let mut d = def("", Delivery::Live(1));
        d.filter = Filter::default().with_distance(true);
        d.options.nofields = true;
        hooks.set_live(d, now).unwrap();
        let inbox = Inbox::new(1 << 20);
        hooks.pubsub().attach_live(1, &inbox);
        let p = point(33.05, -111.95);
        hooks.on_change(&Change::set("fleet", "t", None, &p, None, now));
        let got = live_bodies(&inbox);
        assert_eq!(got[0]["detect"], "enter");
        let d = got[0]["distance"].as_f64().expect("distance");
        assert!(d.abs() < 1.0, "the point is the centre: {d}");
        // NOFIELDS: an FSET sends nothing.
        let fields = Fields::default();
        hooks.on_change(&Change::fset("fleet", "t", &p, &fields, now));
        assert!(live_bodies(&inbox).is_empty());
    }

    /// Neighbours from a fixed list of points.
    struct Fixed(Vec<(&'static str, Object)>);

    impl Neighbors for Fixed {
        fn near(
            &self,
            key: &str,
            object: &Object,
            meters: f64,
            f: &mut dyn FnMut(&str, &Object, f64),
        ) {
            assert_eq!(key, "people");
            let c = object.center().unwrap();
            for (id, o) in &self.0 {
                let m = o.distance_to(&c).unwrap();
                if m <= meters {
                    f(id, o, m);
                }
            }
        }
    }

    fn roam_fence(conn: u64, nodwell: bool) -> HookDef {
        let mut d = def("", Delivery::Live(conn));
        d.kind = FenceKind::Nearby;
        d.options.roam = Some(Roam {
            key: "people".into(),
            pattern: "p*".into(),
            meters: 1000.0,
            nodwell,
            scan: None,
        });
        d
    }

    #[test]
    fn roam_fences_report_nearby_and_faraway_neighbours() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        hooks.set_live(roam_fence(1, false), now).unwrap();
        hooks.set_live(roam_fence(2, true), now).unwrap();
        let (dwell, nodwell) = (Inbox::new(1 << 20), Inbox::new(1 << 20));
        hooks.pubsub().attach_live(1, &dwell);
        hooks.pubsub().attach_live(2, &nodwell);
        let people = Fixed(vec![
            ("p1", point(33.0, -112.0)),
            ("p2", point(33.0, -111.995)),
            ("q1", point(33.0, -112.0)),
        ]);
        let (a, b, c) = (
            point(33.0, -112.001),
            point(33.0, -111.985),
            point(34.0, -111.0),
        );
        let roams = |inbox: &Inbox| -> Vec<(String, String, f64)> {
            live_bodies(inbox)
                .into_iter()
                .map(|v| {
                    assert_eq!(v["detect"], "roam");
                    let (kind, n) = match v.get("nearby") {
                        Some(n) => ("nearby", n.clone()),
                        None => ("faraway", v["faraway"].clone()),
                    };
                    assert_eq!(n["key"], "people");
                    assert!(n["object"]["type"] == "Point");
                    (
                        kind.to_owned(),
                        n["id"].as_str().unwrap().to_owned(),
                        n["meters"].as_f64().unwrap(),
                    )
                })
                .collect()
        };
        hooks.on_change_near(&Change::set("fleet", "t", None, &a, None, now), &people);
        let first = roams(&dwell);
        let ids: Vec<(&str, &str)> = first.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
        // Nearest first; q1 does not match the pattern.
        assert_eq!(ids, [("nearby", "p1"), ("nearby", "p2")]);
        assert!((first[0].2 - 93.2).abs() < 1.0, "{first:?}");
        assert_eq!(first[0].2, (first[0].2 * 1000.0).floor() / 1000.0);
        assert_eq!(roams(&nodwell).len(), 2);
        // Moving east: p2 stays near (dwelling: reported again, but not under NODWELL), p1 is
        // now faraway, measured from the new position.
        hooks.on_change_near(&Change::set("fleet", "t", Some(&a), &b, None, now), &people);
        let second = roams(&dwell);
        let ids: Vec<(&str, &str)> = second
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect();
        assert_eq!(ids, [("nearby", "p2"), ("faraway", "p1")]);
        assert!(second[1].2 > 900.0, "{second:?}");
        let ids: Vec<String> = roams(&nodwell).into_iter().map(|r| r.1).collect();
        assert_eq!(ids, ["p1"]);
        // Far from everyone: p2 is faraway; then nothing more.
        hooks.on_change_near(&Change::set("fleet", "t", Some(&b), &c, None, now), &people);
        assert_eq!(roams(&dwell).len(), 1);
        hooks.on_change_near(&Change::set("fleet", "t", Some(&c), &c, None, now), &people);
        assert!(roams(&dwell).is_empty());
        // Deletes reach roam fences; a roam fence holds no fence state.
        hooks.on_change(&Change::del("fleet", "t", &c, now));
        assert_eq!(live_bodies(&dwell)[0]["command"], "del");
        assert_eq!(hooks.metrics().fence_groups, 0);
        assert!(hooks.del_live(1) && hooks.del_live(2));
    }

    #[test]
    fn a_follower_publishes_channels_but_queues_no_hook_events() {
        let hooks = Hooks::new(QueueConfig::default()).unwrap();
        let now = SystemTime::now();
        hooks.set_hook(def("h", Delivery::Endpoints), now).unwrap();
        hooks.set_hook(def("c", Delivery::Channel), now).unwrap();
        hooks.set_role(false);
        let sub = Inbox::new(1 << 20);
        hooks.pubsub().psubscribe("*", 1, &sub);
        moves(&hooks);
        assert_eq!(seen(&sub).len(), 6);
        assert_eq!(hooks.outbox().queued("h"), Some(0));
    }
}
