//! One key's items: the id-ordered map, the R-tree, the expiry index, and searches.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet};
use std::sync::Arc;

use rstar::{RTree, RTreeNode, RTreeObject, AABB};
use wildmatch::WildMatch;

use crate::geom::{Bounds, Point};
use crate::object::{Area, Object};

/// Sentinel for "no expiry", so that an item needs no `Option` tag for it.
const NEVER: i64 = i64::MAX;

/// An object with its fields and expiry, as stored under an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    object: Object,
    fields: Fields,
    expires_at: i64,
}

impl Item {
    pub(crate) fn new(object: Object, fields: Fields, expires_at: Option<i64>) -> Self {
        Item {
            object,
            fields,
            expires_at: expires_at.unwrap_or(NEVER),
        }
    }

    /// The stored object.
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The item's fields (Tile38 FIELD), sorted by name.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// Absolute expiry in unix milliseconds, if the item has a TTL.
    pub fn expires_at(&self) -> Option<i64> {
        (self.expires_at != NEVER).then_some(self.expires_at)
    }

    /// True while the item has not expired at `now_ms`. An item is expired from
    /// the millisecond its deadline is reached (`expires_at <= now`).
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at > now_ms
    }
}

/// Numeric fields of an item, sorted by name, with names shared across a collection.
///
/// A missing field reads as 0, as in Tile38, so a field set to 0 is not stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Option<Box<[FieldSlot]>>);

/// A field name, shared across the collection, and its value.
type FieldSlot = (Arc<str>, f64);

impl Fields {
    fn slice(&self) -> &[FieldSlot] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// The stored value of a field, if it is set (non-zero).
    pub fn get(&self, name: &str) -> Option<f64> {
        let s = self.slice();
        s.binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| s[i].1)
    }

    /// The value of a field, 0 when it is not set (Tile38's reading of a missing field).
    pub fn value(&self, name: &str) -> f64 {
        self.get(name).unwrap_or(0.0)
    }

    /// The set fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.slice().iter().map(|(n, v)| (&**n, *v))
    }

    /// Number of set fields.
    pub fn len(&self) -> usize {
        self.slice().len()
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.slice().is_empty()
    }

    /// These fields with `updates` applied (0 removes), and how many values changed.
    pub(crate) fn merged(&self, updates: &[(Arc<str>, f64)]) -> (Fields, usize) {
        let mut v: Vec<(Arc<str>, f64)> = self.slice().to_vec();
        let mut changed = 0;
        for (name, value) in updates {
            match v.binary_search_by(|(n, _)| n.cmp(name)) {
                Ok(i) => {
                    if v[i].1 != *value {
                        changed += 1;
                        if *value == 0.0 {
                            v.remove(i);
                        } else {
                            v[i].1 = *value;
                        }
                    }
                }
                Err(i) => {
                    if *value != 0.0 {
                        changed += 1;
                        v.insert(i, (name.clone(), *value));
                    }
                }
            }
        }
        let f = if v.is_empty() {
            Fields(None)
        } else {
            Fields(Some(v.into_boxed_slice()))
        };
        (f, changed)
    }
}

/// A WHERE filter: the field's value (0 when unset) must be in `min..=max`.
#[derive(Debug, Clone, PartialEq)]
pub struct Where {
    /// Field name.
    pub field: String,
    /// Smallest accepted value (use `f64::NEG_INFINITY` for `-inf`).
    pub min: f64,
    /// Largest accepted value (use `f64::INFINITY` for `+inf`).
    pub max: f64,
}

/// Paging and filtering options shared by SCAN, NEARBY, WITHIN and INTERSECTS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchOpts {
    /// Number of candidates of the walk to skip, as returned in [`Page::cursor`].
    /// Default: 0.
    pub cursor: u64,
    /// Maximum number of hits; `None` is unlimited (the server applies Tile38's
    /// default of 100 itself). Default: `None`.
    pub limit: Option<usize>,
    /// Glob patterns on the id (`*` and `?`); an item matches when any pattern
    /// does. Empty means every id. Default: empty.
    pub matches: Vec<String>,
    /// Field filters; an item must pass all of them. Default: empty.
    pub wheres: Vec<Where>,
    /// Walk ids in descending order (SCAN only). Default: false.
    pub desc: bool,
}

/// One search result.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// The item's id.
    pub id: &'a str,
    /// The item.
    pub item: &'a Item,
    /// Meters from the query point (NEARBY only).
    pub distance: Option<f64>,
}

/// A page of results and the cursor for the next page.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    /// The hits in walk order: id order for SCAN, distance then id for NEARBY,
    /// R-tree order for WITHIN and INTERSECTS.
    pub hits: Vec<Hit<'a>>,
    /// Where the next page starts, or 0 when the walk finished before the limit
    /// was reached (Tile38's rule: a full page always returns a non-zero cursor).
    pub cursor: u64,
}

/// STATS for one collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectionStats {
    /// Estimated bytes held by the collection's items and indexes.
    pub in_memory_size: usize,
    /// Live objects (strings included).
    pub num_objects: usize,
    /// Positions of all live spatial objects.
    pub num_points: usize,
    /// Live string objects.
    pub num_strings: usize,
}

/// The R-tree entry of one spatial item: its bounding box and its id.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    env: AABB<[f64; 2]>,
    id: Arc<str>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        self.env
    }
}

fn envelope(b: &Bounds) -> AABB<[f64; 2]> {
    AABB::from_corners([b.sw.lon, b.sw.lat], [b.ne.lon, b.ne.lat])
}

/// All items of one key.
///
/// Invariants: every item is in `items`; an item is in `tree` exactly when it is
/// spatial, under its bounding box; it is in `expiries` exactly when it has a TTL,
/// under `(expires_at, id)`; the counters equal the sums over `items`.
#[derive(Debug, Default)]
pub struct Collection {
    items: BTreeMap<Arc<str>, Item>,
    tree: RTree<Entry>,
    expiries: BTreeSet<(i64, Arc<str>)>,
    names: HashSet<Arc<str>>,
    num_points: usize,
    num_strings: usize,
    mem: usize,
}

impl Collection {
    /// The live item under `id`.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<&Item> {
        self.items.get(id).filter(|i| i.is_live(now_ms))
    }

    /// Number of stored items, expired ones not yet removed included.
    pub fn len_stored(&self) -> usize {
        self.items.len()
    }

    /// Number of expired items still stored at `now_ms`.
    fn expired_count(&self, now_ms: i64) -> usize {
        self.expiries
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .count()
    }

    /// Number of live items.
    pub fn len(&self, now_ms: i64) -> usize {
        self.items.len() - self.expired_count(now_ms)
    }

    /// True when no live item remains.
    pub fn is_empty(&self, now_ms: i64) -> bool {
        self.len(now_ms) == 0
    }

    /// Live items in id order.
    pub fn iter(&self, now_ms: i64) -> impl DoubleEndedIterator<Item = (&str, &Item)> + '_ {
        self.items
            .iter()
            .filter(move |(_, i)| i.is_live(now_ms))
            .map(|(k, i)| (&**k, i))
    }

    pub(crate) fn iter_after<'a>(
        &'a self,
        after: Option<&'a str>,
        now_ms: i64,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a Item)> + 'a {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        self.items
            .range::<str, _>((lower, Bound::Unbounded))
            .filter(move |(_, i)| i.is_live(now_ms))
    }

    /// STATS at `now_ms`. Expired items not yet removed are left out of the
    /// counts but still in the memory estimate, because they still hold memory.
    pub fn stats(&self, now_ms: i64) -> CollectionStats {
        let mut s = CollectionStats {
            in_memory_size: self.mem,
            num_objects: self.items.len(),
            num_points: self.num_points,
            num_strings: self.num_strings,
        };
        for (t, id) in &self.expiries {
            if *t > now_ms {
                break;
            }
            if let Some(i) = self.items.get(id) {
                s.num_objects -= 1;
                s.num_points -= i.object.num_points();
                s.num_strings -= usize::from(!i.object.is_spatial());
            }
        }
        s
    }

    /// The shared copy of a field name, so that a million items with the field
    /// `speed` hold one string between them.
    pub(crate) fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        self.names.insert(n.clone());
        n
    }

    /// The shared id if `id` is stored, else a new one.
    pub(crate) fn id_arc(&self, id: &str) -> Arc<str> {
        match self.items.get_key_value(id) {
            Some((k, _)) => k.clone(),
            None => id.into(),
        }
    }

    fn footprint(id: &str, item: &Item) -> usize {
        let base = id.len()
            + 2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<(Arc<str>, Item)>()
            + item.fields.len() * std::mem::size_of::<(Arc<str>, f64)>();
        let obj = match &item.object {
            Object::Point(_) => std::mem::size_of::<Entry>(),
            Object::Bounds(_) => std::mem::size_of::<Bounds>() + std::mem::size_of::<Entry>(),
            Object::Geometry(g) => {
                g.as_str().len()
                    + g.num_points() * 16
                    + std::mem::size_of::<crate::geom::GeoJson>()
                    + std::mem::size_of::<Entry>()
            }
            Object::String(s) => s.len(),
        };
        base + obj
    }

    /// Stores `item` under `id`, replacing and returning what was there (live or not).
    pub(crate) fn insert(&mut self, id: Arc<str>, item: Item) -> Option<Item> {
        let old = self.remove(&id);
        self.num_points += item.object.num_points();
        self.num_strings += usize::from(!item.object.is_spatial());
        self.mem += Self::footprint(&id, &item);
        if let Some(b) = item.object.bounds() {
            self.tree.insert(Entry {
                env: envelope(&b),
                id: id.clone(),
            });
        }
        if item.expires_at != NEVER {
            self.expiries.insert((item.expires_at, id.clone()));
        }
        self.items.insert(id, item);
        old
    }

    /// Removes and returns the item under `id`, live or not.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Item> {
        let (id, item) = self.items.remove_entry(id)?;
        self.num_points -= item.object.num_points();
        self.num_strings -= usize::from(!item.object.is_spatial());
        self.mem -= Self::footprint(&id, &item);
        if let Some(b) = item.object.bounds() {
            let removed = self.tree.remove(&Entry {
                env: envelope(&b),
                id: id.clone(),
            });
            debug_assert!(removed.is_some(), "R-tree entry missing for {id}");
        }
        if item.expires_at != NEVER {
            self.expiries.remove(&(item.expires_at, id));
        }
        Some(item)
    }

    /// Changes the expiry of a stored item.
    pub(crate) fn set_expiry(&mut self, id: &str, expires_at: Option<i64>) {
        let new = expires_at.unwrap_or(NEVER);
        let Some((k, item)) = self.items.get_key_value(id) else {
            return;
        };
        let k = k.clone();
        if item.expires_at != NEVER {
            self.expiries.remove(&(item.expires_at, k.clone()));
        }
        if new != NEVER {
            self.expiries.insert((new, k.clone()));
        }
        if let Some(item) = self.items.get_mut(id) {
            item.expires_at = new;
        }
    }

    /// Replaces the fields of a stored item.
    pub(crate) fn set_fields(&mut self, id: &str, fields: Fields) {
        if let Some((k, item)) = self.items.get_key_value(id) {
            let before = Self::footprint(k, item);
            let k = k.clone();
            if let Some(item) = self.items.get_mut(id) {
                item.fields = fields;
                self.mem = self.mem - before + Self::footprint(&k, item);
            }
        }
    }

    /// Removes up to `max` items whose deadline is `<= now_ms`, earliest first.
    pub(crate) fn expire_due(&mut self, now_ms: i64, max: usize, out: &mut Vec<(Arc<str>, Item)>) {
        while out.len() < max {
            let Some((t, id)) = self.expiries.first().cloned() else {
                break;
            };
            if t > now_ms {
                break;
            }
            if let Some(item) = self.remove(&id) {
                out.push((id, item));
            }
        }
    }

    /// Live items whose id matches the glob `pattern`, in id order.
    pub(crate) fn matching_ids(&self, pattern: &str, now_ms: i64) -> Vec<Arc<str>> {
        let m = WildMatch::new(pattern);
        self.items
            .iter()
            .filter(|(k, i)| i.is_live(now_ms) && m.matches(k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// SCAN: live items in id order (or reverse with `desc`).
    pub fn scan(&self, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        let walk: Box<dyn Iterator<Item = (&Arc<str>, &Item)>> = if opts.desc {
            Box::new(self.items.iter().rev())
        } else {
            Box::new(self.items.iter())
        };
        collect(walk.map(|(k, i)| (&**k, i, None)), opts, now_ms, |_| true)
    }

    /// WITHIN: live items completely inside `area`, in R-tree order.
    pub fn within(&self, area: &Area, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        self.area_search(area, opts, now_ms, |o| o.within(area))
    }

    /// INTERSECTS: live items that share a point with `area`, in R-tree order.
    pub fn intersects(&self, area: &Area, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        self.area_search(area, opts, now_ms, |o| o.intersects(area))
    }

    fn area_search<'a>(
        &'a self,
        area: &Area,
        opts: &SearchOpts,
        now_ms: i64,
        test: impl Fn(&Object) -> bool,
    ) -> Page<'a> {
        let Some(b) = area.bounds() else {
            return Page::default();
        };
        let walk = self
            .tree
            .locate_in_envelope_intersecting(&envelope(&b))
            .filter_map(|e| self.items.get_key_value(&*e.id))
            .map(|(k, i)| (&**k, i, None));
        collect(walk, opts, now_ms, |i| test(&i.object))
    }

    /// NEARBY: live spatial items in order of distance from `center` (ties by id),
    /// within `meters` when given.
    ///
    /// The walk is best-first over the R-tree with exact great-circle distances
    /// to node rectangles as keys, so a LIMIT of k touches about k items plus the
    /// nodes around them, however large the collection.
    pub fn nearby(
        &self,
        center: &Point,
        meters: Option<f64>,
        opts: &SearchOpts,
        now_ms: i64,
    ) -> Page<'_> {
        let walk =
            Nearest::new(self, *center).take_while(move |(_, _, d)| meters.is_none_or(|m| *d <= m));
        collect(walk.map(|(k, i, d)| (k, i, Some(d))), opts, now_ms, |_| {
            true
        })
    }
}

/// Applies cursor, liveness, MATCH, WHERE, the caller's test and LIMIT to a walk.
fn collect<'a>(
    walk: impl Iterator<Item = (&'a str, &'a Item, Option<f64>)>,
    opts: &SearchOpts,
    now_ms: i64,
    test: impl Fn(&Item) -> bool,
) -> Page<'a> {
    if opts.limit == Some(0) {
        return Page::default();
    }
    let patterns: Vec<WildMatch> = opts.matches.iter().map(|p| WildMatch::new(p)).collect();
    let mut hits = Vec::new();
    for (pos, (id, item, distance)) in (0u64..).zip(walk) {
        if pos < opts.cursor || !item.is_live(now_ms) {
            continue;
        }
        if !patterns.is_empty() && !patterns.iter().any(|p| p.matches(id)) {
            continue;
        }
        if !opts.wheres.iter().all(|w| {
            let v = item.fields.value(&w.field);
            v >= w.min && v <= w.max
        }) {
            continue;
        }
        if !test(item) {
            continue;
        }
        hits.push(Hit { id, item, distance });
        if opts.limit == Some(hits.len()) {
            return Page {
                hits,
                cursor: pos + 1,
            };
        }
    }
    Page { hits, cursor: 0 }
}

/// A candidate of the best-first walk.
enum Cand<'a> {
    Node(&'a rstar::ParentNode<Entry>),
    /// A leaf keyed by a lower bound of its distance.
    Leaf(&'a Entry),
    /// A leaf keyed by its exact distance.
    Exact(&'a Arc<str>, &'a Item),
}

struct Queued<'a> {
    dist: f64,
    cand: Cand<'a>,
}

impl Queued<'_> {
    /// At equal distance nodes and bounded leaves come out before exact items, so
    /// every item at that distance is exact before the first is yielded; exact
    /// items then come out in id order.
    fn rank(&self) -> u8 {
        match self.cand {
            Cand::Node(_) => 0,
            Cand::Leaf(_) => 1,
            Cand::Exact(..) => 2,
        }
    }
}

impl PartialEq for Queued<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued<'_> {}
impl PartialOrd for Queued<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued<'_> {
    /// Reversed, because `BinaryHeap` is a max-heap and the walk wants the minimum.
    fn cmp(&self, other: &Self) -> Ordering {
        let by_id = match (&self.cand, &other.cand) {
            (Cand::Exact(a, _), Cand::Exact(b, _)) => a.cmp(b),
            _ => Ordering::Equal,
        };
        other
            .dist
            .total_cmp(&self.dist)
            .then(other.rank().cmp(&self.rank()))
            .then(by_id.reverse())
    }
}

/// Best-first nearest-neighbour iterator over a collection's R-tree.
struct Nearest<'a> {
    col: &'a Collection,
    center: Point,
    heap: BinaryHeap<Queued<'a>>,
}

impl<'a> Nearest<'a> {
    fn new(col: &'a Collection, center: Point) -> Self {
        let mut heap = BinaryHeap::new();
        if col.tree.size() > 0 {
            heap.push(Queued {
                dist: 0.0,
                cand: Cand::Node(col.tree.root()),
            });
        }
        Nearest { col, center, heap }
    }

    /// A lower bound of the distance to anything inside `env`. The slack absorbs
    /// rounding differences between the rectangle formula and the haversine of
    /// the exact distance, so that a bound never exceeds the exact value.
    fn bound(&self, env: &AABB<[f64; 2]>) -> f64 {
        let (lo, hi) = (env.lower(), env.upper());
        let d = crate::geom::rect_distance(&self.center, lo[0], lo[1], hi[0], hi[1]);
        (d * (1.0 - 1e-9) - 1e-6).max(0.0)
    }
}

impl<'a> Iterator for Nearest<'a> {
    type Item = (&'a str, &'a Item, f64);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(q) = self.heap.pop() {
            match q.cand {
                Cand::Node(node) => {
                    for child in node.children() {
                        let (dist, cand) = match child {
                            RTreeNode::Parent(p) => (self.bound(&p.envelope()), Cand::Node(p)),
                            RTreeNode::Leaf(e) => (self.bound(&e.env), Cand::Leaf(e)),
                        };
                        self.heap.push(Queued { dist, cand });
                    }
                }
                Cand::Leaf(e) => {
                    if let Some((k, item)) = self.col.items.get_key_value(&*e.id) {
                        let dist = item
                            .object
                            .distance_to(&self.center)
                            .unwrap_or(f64::INFINITY);
                        self.heap.push(Queued {
                            dist,
                            cand: Cand::Exact(k, item),
                        });
                    }
                }
                Cand::Exact(k, item) => return Some((&**k, item, q.dist)),
            }
        }
        None
    }
}
