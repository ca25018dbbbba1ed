//! One key's items: the id-ordered map, the R-tree, the expiry index, and searches.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::sync::Arc;

use crate::glob::Glob;
use rstar::{RTree, RTreeNode, RTreeObject, AABB};

use crate::field::FieldValue;
use crate::geom::{Bounds, LowerBound, Point};
use crate::id::{Id, IdOrder};
use crate::object::{Area, Object};
use crate::points::{self, PointEntry, PointTree, Rect};

mod resume;

/// Sentinel for "no expiry", so that an item needs no `Option` tag for it.
const NEVER: i64 = i64::MAX;

/// A slot arena smaller than this is never shrunk: its memory is small, and
/// the indexes of a small collection are rebuilt for little gain.
const SHRINK_MIN_SLOTS: usize = 4096;

/// An object with its fields and expiry, as stored under an id.
///
/// 40 bytes: the object (32) and one pointer to the fields and expiry, which
/// is null for the common item that has neither, so that a plain point costs
/// no allocation of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    object: Object,
    extra: Option<Box<Extra>>,
}

/// The parts of an item that most items do not have.
#[derive(Debug, Clone, PartialEq)]
struct Extra {
    fields: Fields,
    expires_at: i64,
}

static NO_FIELDS: Fields = Fields(Vec::new());

impl Item {
    fn new(object: Object, fields: Fields, expires_at: i64) -> Item {
        Item {
            object,
            extra: Item::extra(fields, expires_at),
        }
    }

    fn extra(fields: Fields, expires_at: i64) -> Option<Box<Extra>> {
        (!fields.is_empty() || expires_at != NEVER).then(|| Box::new(Extra { fields, expires_at }))
    }

    /// The stored object.
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The item's fields (Tile38 FIELD), sorted by name.
    pub fn fields(&self) -> &Fields {
        self.extra.as_ref().map_or(&NO_FIELDS, |e| &e.fields)
    }

    /// The deadline, [`NEVER`] without one.
    fn deadline(&self) -> i64 {
        self.extra.as_ref().map_or(NEVER, |e| e.expires_at)
    }

    fn set_deadline(&mut self, expires_at: i64) {
        let fields = self.extra.take().map(|e| e.fields).unwrap_or_default();
        self.extra = Item::extra(fields, expires_at);
    }

    fn set_fields(&mut self, fields: Fields) {
        let expires_at = self.deadline();
        self.extra = Item::extra(fields, expires_at);
    }

    /// Bytes the item holds on the heap outside its object.
    fn extra_bytes(&self) -> usize {
        self.extra
            .as_ref()
            .map_or(0, |e| std::mem::size_of::<Extra>() + e.fields.heap_bytes())
    }

    /// Absolute expiry in unix milliseconds, if the item has a TTL.
    pub fn expires_at(&self) -> Option<i64> {
        let t = self.deadline();
        (t != NEVER).then_some(t)
    }

    /// True while the item has not expired at `now_ms`. An item is expired from
    /// the millisecond its deadline is reached (`expires_at <= now`).
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.deadline() > now_ms
    }
}

/// The fields of an item, sorted by name, with names shared across a collection.
///
/// A missing field reads as 0, as in Tile38, so a field set to 0 (or to the
/// empty string) is not stored.
///
/// A `Vec` (no allocation while empty) rather than a boxed slice, so that
/// fields appended after the last name (a snapshot's FSET continuations, as
/// a follower applies them) go in place at an amortized cost per field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Vec<FieldSlot>);

/// A field name, shared across the collection, and its value.
type FieldSlot = (Arc<str>, FieldValue);

impl Fields {
    fn slice(&self) -> &[FieldSlot] {
        &self.0
    }

    /// The stored value of a field, if it is set (non-zero).
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        let s = self.slice();
        s.binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| &s[i].1)
    }

    /// The value of a field, 0 when it is not set (Tile38's reading of a missing field).
    pub fn value(&self, name: &str) -> &FieldValue {
        self.get(name).unwrap_or(FieldValue::zero())
    }

    /// The set fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> + '_ {
        self.slice().iter().map(|(n, v)| (&**n, v))
    }

    /// Bytes the fields hold on the heap, names excepted (they are shared).
    fn heap_bytes(&self) -> usize {
        self.slice()
            .iter()
            .map(|(_, v)| std::mem::size_of::<FieldSlot>() + v.heap_bytes())
            .sum()
    }

    /// Number of set fields.
    pub fn len(&self) -> usize {
        self.slice().len()
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.slice().is_empty()
    }

    /// These fields with `updates` applied (a zero value removes), and how many
    /// values changed.
    ///
    /// Linear in the fields plus the updates (after sorting the updates), so
    /// that a command or a snapshot record with thousands of fields does not
    /// cost a shift of the sorted array per field.
    pub(crate) fn merged(&self, updates: &[(Arc<str>, FieldValue)]) -> (Fields, usize) {
        let mut ups: Vec<&(Arc<str>, FieldValue)> = updates.iter().collect();
        ups.sort_by(|a, b| a.0.cmp(&b.0));
        if ups.windows(2).any(|w| w[0].0 == w[1].0) {
            // A name given twice in one command counts each change, as when
            // the updates are applied one after the other.
            return self.merged_one_by_one(updates);
        }
        let old = self.slice();
        let mut v: Vec<FieldSlot> = Vec::with_capacity(old.len() + ups.len());
        let mut changed = 0;
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < ups.len() {
            let order = match (old.get(i), ups.get(j)) {
                (Some(o), Some(u)) => o.0.cmp(&u.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    v.push(old[i].clone());
                    i += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (name, value) = ups[j];
                    if old[i].1 == *value {
                        v.push(old[i].clone());
                    } else {
                        changed += 1;
                        if !value.is_zero() {
                            v.push((old[i].0.clone(), value.clone()));
                        }
                    }
                    debug_assert_eq!(old[i].0, *name);
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Greater => {
                    let (name, value) = ups[j];
                    if !value.is_zero() {
                        changed += 1;
                        v.push((name.clone(), value.clone()));
                    }
                    j += 1;
                }
            }
        }
        (Self::from_vec(v), changed)
    }

    /// [`Fields::merged`] applying the updates in their order, for updates
    /// that name a field more than once.
    fn merged_one_by_one(&self, updates: &[(Arc<str>, FieldValue)]) -> (Fields, usize) {
        let mut v: Vec<FieldSlot> = self.slice().to_vec();
        let mut changed = 0;
        for (name, value) in updates {
            match v.binary_search_by(|(n, _)| n.cmp(name)) {
                Ok(i) => {
                    if v[i].1 != *value {
                        changed += 1;
                        if value.is_zero() {
                            v.remove(i);
                        } else {
                            v[i].1 = value.clone();
                        }
                    }
                }
                Err(i) => {
                    if !value.is_zero() {
                        changed += 1;
                        v.insert(i, (name.clone(), value.clone()));
                    }
                }
            }
        }
        (Self::from_vec(v), changed)
    }

    fn from_vec(mut v: Vec<FieldSlot>) -> Fields {
        // A merge reserves room for every update, and updates that remove a
        // field or change nothing leave that room unused: FSETs of zeros
        // would otherwise leave an item holding thousands of empty slots
        // that no length or memory estimate shows. A merge is linear in the
        // fields already, so fitting the allocation costs no more.
        v.shrink_to_fit();
        Fields(v)
    }

    /// True when `updates` only add fields after the last one: names
    /// ascending, each after the last stored name, no value zero (a zero
    /// would remove). [`Fields::append`] then applies them in place.
    fn appends(&self, updates: &[(Arc<str>, FieldValue)]) -> bool {
        let mut last = self.0.last().map(|(n, _)| n);
        updates.iter().all(|(name, value)| {
            let after = last.is_none_or(|l| **l < **name);
            last = Some(name);
            after && !value.is_zero()
        })
    }

    /// Adds `updates` (for which [`Fields::appends`] holds) at the end, and
    /// returns the heap bytes they add (as [`Fields::heap_bytes`] counts).
    fn append(&mut self, updates: &[(Arc<str>, FieldValue)]) -> usize {
        let (len, cap) = (self.0.len(), self.0.capacity());
        if len + updates.len() > cap {
            // Grown by an eighth rather than doubled: the slack a vector
            // keeps for appends is memory no estimate counts, at most an
            // eighth of the fields this way instead of as many again, while
            // each field is still copied a bounded number of times (eight)
            // as a long object's continuations arrive.
            self.0.reserve_exact(updates.len().max(len / 8));
        }
        self.0.extend_from_slice(updates);
        updates
            .iter()
            .map(|(_, v)| std::mem::size_of::<FieldSlot>() + v.heap_bytes())
            .sum()
    }
}

/// A WHERE filter: the field's value (0 when unset) must be in `min..=max`,
/// in [`FieldValue`]'s order (numbers, then strings, then JSON documents).
#[derive(Debug, Clone, PartialEq)]
pub struct Where {
    /// Field name.
    pub field: String,
    /// Smallest accepted value (`FieldValue::Number(f64::NEG_INFINITY)` for `-inf`).
    pub min: FieldValue,
    /// Largest accepted value (`FieldValue::Number(f64::INFINITY)` for `+inf`).
    pub max: FieldValue,
}

impl Where {
    /// True when `fields` pass this filter.
    pub fn accepts(&self, fields: &Fields) -> bool {
        let v = fields.value(&self.field);
        *v >= self.min && *v <= self.max
    }
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

/// The R-tree entry of one spatial item: its bounding box, rounded outwards to
/// `f32` (half the memory of `f64`, and still a superset, so exact tests that
/// follow decide), and the item's slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    env: AABB<[f32; 2]>,
    slot: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.slot == other.slot
    }
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f32; 2]>;
    fn envelope(&self) -> Self::Envelope {
        self.env
    }
}

/// Node sizes of the R-tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeParams;

impl rstar::RTreeParams for TreeParams {
    const MIN_SIZE: usize = 4;
    const MAX_SIZE: usize = 12;
    const REINSERTION_COUNT: usize = 3;
    type DefaultInsertionStrategy = rstar::RStarInsertionStrategy;
}

fn down(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) > x {
        f.next_down()
    } else {
        f
    }
}

fn up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x {
        f.next_up()
    } else {
        f
    }
}

fn envelope(b: &Bounds) -> AABB<[f32; 2]> {
    AABB::from_corners(
        [down(b.sw.lon), down(b.sw.lat)],
        [up(b.ne.lon), up(b.ne.lat)],
    )
}

/// An id and its item, at a fixed index that the R-tree and the expiry index
/// refer to: 56 bytes (id 16, item 40), with no allocation of its own for an
/// id of up to 14 bytes and an item without fields or TTL.
#[derive(Debug)]
struct Slot {
    id: Id,
    item: Item,
}

/// Where an object is indexed: plain points in the compact point tree, other
/// spatial objects in the R-tree under their rounded-out box, strings nowhere.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Nowhere,
    Point([f32; 2]),
    Box(AABB<[f32; 2]>),
}

impl Place {
    fn of(o: &Object) -> Place {
        match o {
            Object::Point(p) => Place::Point([p.lon as f32, p.lat as f32]),
            other => other
                .bounds()
                .map_or(Place::Nowhere, |b| Place::Box(envelope(&b))),
        }
    }
}

/// All items of one key.
///
/// Items live in `slots` at stable indices (freed indices are reused). `by_id`
/// maps ids to indices in id order, for lookups, SCAN and cursors; ids of up to
/// 14 bytes are stored inline, so that a lookup compares bytes in the tree's own
/// nodes instead of chasing a pointer per comparison. Invariants: `by_id` and the
/// occupied slots are in one-to-one correspondence; a slot whose object is a
/// point is in `points` under its position rounded to `f32`, and a slot whose
/// object is another spatial kind is in `tree` under its rounded-out bounding
/// box; it is in `expiries` exactly when it has a TTL, under
/// `(expires_at, index)`; the counters equal the sums over the occupied slots.
#[derive(Debug, Default)]
pub struct Collection {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: IdOrder,
    points: PointTree,
    tree: RTree<Entry, TreeParams>,
    expiries: BTreeSet<(i64, u32)>,
    names: HashSet<Arc<str>>,
    /// How many names were left after the last sweep of `names`; the set is
    /// swept again when it has doubled since.
    names_swept: usize,
    /// While true, points are left out of `points` (see
    /// [`crate::Database::defer_point_index`]).
    deferred: bool,
    num_points: usize,
    num_strings: usize,
    mem: usize,
}

/// The id in slot `s`, for the searches of [`IdOrder`].
fn slot_id(slots: &[Option<Slot>], s: u32) -> &str {
    slots[s as usize]
        .as_ref()
        .expect("the id order only holds occupied slots")
        .id
        .as_str()
}

impl Collection {
    /// The slot under `id`.
    fn find(&self, id: &str) -> Option<u32> {
        self.by_id.get(id, |s| slot_id(&self.slots, s))
    }

    fn slot(&self, idx: u32) -> &Slot {
        self.slots[idx as usize]
            .as_ref()
            .expect("indexes only refer to occupied slots")
    }

    fn slot_mut(&mut self, idx: u32) -> &mut Slot {
        self.slots[idx as usize]
            .as_mut()
            .expect("indexes only refer to occupied slots")
    }

    /// The live item under `id`.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<&Item> {
        let idx = self.find(id)?;
        Some(&self.slot(idx).item).filter(|i| i.is_live(now_ms))
    }

    /// Number of stored items, expired ones not yet removed included.
    pub fn len_stored(&self) -> usize {
        self.by_id.len()
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
        self.by_id.len() - self.expired_count(now_ms)
    }

    /// True when no live item remains.
    pub fn is_empty(&self, now_ms: i64) -> bool {
        self.len(now_ms) == 0
    }

    /// Live items in id order.
    pub fn iter(&self, now_ms: i64) -> impl DoubleEndedIterator<Item = (&str, &Item)> + '_ {
        self.by_id
            .iter()
            .map(|i| self.slot(i))
            .filter(move |s| s.item.is_live(now_ms))
            .map(|s| (s.id.as_str(), &s.item))
    }

    pub(crate) fn iter_after<'a>(
        &'a self,
        after: Option<&'a str>,
        now_ms: i64,
    ) -> impl Iterator<Item = (&'a str, &'a Item)> + 'a {
        let from = match after {
            Some(a) => match self.by_id.search(a, |s| slot_id(&self.slots, s)) {
                Ok((b, i)) => (b, i + 1),
                Err(pos) => pos,
            },
            None => (0, 0),
        };
        self.by_id
            .iter_from(from)
            .map(|i| self.slot(i))
            .filter(move |s| s.item.is_live(now_ms))
            .map(|s| (s.id.as_str(), &s.item))
    }

    /// STATS at `now_ms`. Expired items not yet removed are left out of the
    /// counts but still in the memory estimate, because they still hold memory.
    pub fn stats(&self, now_ms: i64) -> CollectionStats {
        let mut s = CollectionStats {
            in_memory_size: self.mem,
            num_objects: self.by_id.len(),
            num_points: self.num_points,
            num_strings: self.num_strings,
        };
        for (t, idx) in &self.expiries {
            if *t > now_ms {
                break;
            }
            let i = &self.slot(*idx).item;
            s.num_objects -= 1;
            s.num_points -= i.object.num_points();
            s.num_strings -= usize::from(!i.object.is_spatial());
        }
        s
    }

    /// The shared copy of a field name, so that a million items with the field
    /// `speed` hold one string between them.
    pub(crate) fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        if self.names.len() >= 2 * self.names_swept.max(32) {
            // Names no item holds any more: only the set's own reference is
            // left. Sweeping when the set has doubled keeps it within twice
            // the live names (set-then-clear of ever new names cannot grow
            // it for good) at an amortized constant cost per new name.
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.names_swept = self.names.len();
        }
        let n: Arc<str> = name.into();
        self.names.insert(n.clone());
        n
    }

    fn footprint(id: &Id, item: &Item) -> usize {
        // Slot, id-map entry, index entry, and what they point to.
        let base = std::mem::size_of::<Option<Slot>>()
            + std::mem::size_of::<u32>()
            + id.heap_bytes()
            + item.extra_bytes();
        let obj = match &item.object {
            Object::Point(_) => std::mem::size_of::<PointEntry>(),
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

    fn account(&mut self, id: &Id, item: &Item, add: bool) {
        let (p, s, m) = (
            item.object.num_points(),
            usize::from(!item.object.is_spatial()),
            Self::footprint(id, item),
        );
        if add {
            self.num_points += p;
            self.num_strings += s;
            self.mem += m;
        } else {
            self.num_points -= p;
            self.num_strings -= s;
            self.mem -= m;
        }
    }

    fn index(&mut self, place: Place, slot: u32) {
        match place {
            Place::Nowhere => {}
            Place::Point(_) if self.deferred => {}
            Place::Point(xy) => self.points.insert(PointEntry { xy, slot }),
            Place::Box(env) => self.tree.insert(Entry { env, slot }),
        }
    }

    /// Leaves points out of the point index until [`Collection::build_points`].
    pub(crate) fn defer_points(&mut self) {
        self.deferred = true;
    }

    /// Builds the point index at once from the stored points, if it was deferred.
    pub(crate) fn build_points(&mut self) {
        if !std::mem::take(&mut self.deferred) {
            return;
        }
        let entries = self
            .slots
            .iter()
            .zip(0u32..)
            .filter_map(|(s, slot)| match Place::of(&s.as_ref()?.item.object) {
                Place::Point(xy) => Some(PointEntry { xy, slot }),
                _ => None,
            })
            .collect();
        self.points = PointTree::bulk_load(entries);
    }

    fn unindex(&mut self, place: Place, slot: u32) {
        let removed = match place {
            Place::Nowhere => true,
            Place::Point(_) if self.deferred => true,
            Place::Point(xy) => self.points.remove(xy, slot),
            Place::Box(env) => self.tree.remove(&Entry { env, slot }).is_some(),
        };
        debug_assert!(removed, "index entry missing for slot {slot}");
    }

    /// Stores `object` under `id` with `updates` merged into the fields of the
    /// item it replaces when that item is live, and returns the replaced item
    /// (live or not). One id lookup; the spatial index is touched only when the
    /// object's place in it changes.
    pub(crate) fn put(
        &mut self,
        id: &str,
        object: Object,
        updates: &[(Arc<str>, FieldValue)],
        expires_at: Option<i64>,
        now_ms: i64,
    ) -> Option<Item> {
        let expires_at = expires_at.unwrap_or(NEVER);
        let new_place = Place::of(&object);
        // One search of the id order for a new id as for an existing one: a
        // miss gives the position where the new slot goes.
        let idx = match self.by_id.search(id, |s| slot_id(&self.slots, s)) {
            Ok((b, i)) => self.by_id.slot_at((b, i)),
            Err(pos) => {
                let idx = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        let i =
                            u32::try_from(self.slots.len()).expect("fewer than 2^32 items per key");
                        self.slots.push(None);
                        i
                    }
                };
                self.put_new(idx, Id::new(id), object, updates, expires_at, new_place);
                self.by_id.insert(pos, idx, |s| slot_id(&self.slots, s));
                return None;
            }
        };
        let (old_place, old_exp, base) = {
            let old = &self.slot(idx).item;
            let base = if old.is_live(now_ms) {
                old.fields().clone()
            } else {
                Fields::default()
            };
            (Place::of(&old.object), old.deadline(), base)
        };
        let (fields, _) = base.merged(updates);
        let item = Item::new(object, fields, expires_at);
        if old_place != new_place {
            self.unindex(old_place, idx);
            self.index(new_place, idx);
        }
        if old_exp != expires_at {
            if old_exp != NEVER {
                self.expiries.remove(&(old_exp, idx));
            }
            if expires_at != NEVER {
                self.expiries.insert((expires_at, idx));
            }
        }
        let id = self.slot(idx).id.clone();
        self.account(&id, &item, true);
        let old = std::mem::replace(&mut self.slot_mut(idx).item, item);
        self.account(&id, &old, false);
        Some(old)
    }

    /// The rest of [`Collection::put`] for a new id, whose slot is free; the
    /// caller then puts the slot in `by_id`.
    fn put_new(
        &mut self,
        idx: u32,
        id: Id,
        object: Object,
        updates: &[(Arc<str>, FieldValue)],
        expires_at: i64,
        place: Place,
    ) {
        let (fields, _) = Fields::default().merged(updates);
        let item = Item::new(object, fields, expires_at);
        self.account(&id, &item, true);
        self.slots[idx as usize] = Some(Slot { id, item });
        self.index(place, idx);
        if expires_at != NEVER {
            self.expiries.insert((expires_at, idx));
        }
    }

    /// Removes and returns the item under `id`, live or not.
    pub(crate) fn remove(&mut self, id: &str) -> Option<(Id, Item)> {
        let pos = self.by_id.search(id, |s| slot_id(&self.slots, s)).ok()?;
        let idx = self.by_id.remove(pos, |s| slot_id(&self.slots, s));
        let Slot { id, item } = self.slots[idx as usize]
            .take()
            .expect("indexes only refer to occupied slots");
        self.free.push(idx);
        self.account(&id, &item, false);
        self.unindex(Place::of(&item.object), idx);
        if item.deadline() != NEVER {
            self.expiries.remove(&(item.deadline(), idx));
        }
        Some((id, item))
    }

    /// Gives memory back once the collection has shrunk to under a quarter
    /// of its slot arena (and the arena holds at least
    /// [`SHRINK_MIN_SLOTS`]): the live slots move to a new arena of exactly
    /// their number, in id order, and the indexes are rebuilt over the new
    /// slot numbers (the spatial ones packed at once). Freed slots are
    /// otherwise only reused, never returned, so a collection that once held
    /// a million items would keep their memory for good. The work is linear
    /// in the live items (plus the sort of the packing) and needs three
    /// quarters of them to be deleted again before it repeats, so removals
    /// stay amortised constant time apart from that sort's logarithm.
    pub(crate) fn shrink_if_sparse(&mut self) {
        let live = self.by_id.len();
        if self.slots.capacity() < SHRINK_MIN_SLOTS || live >= self.slots.capacity() / 4 {
            return;
        }
        let mut renumber = vec![u32::MAX; self.slots.len()];
        let mut slots = Vec::with_capacity(live);
        for old in self.by_id.iter() {
            renumber[old as usize] = u32::try_from(slots.len()).expect("fewer than 2^32 items");
            slots.push(self.slots[old as usize].take());
        }
        self.slots = slots;
        self.free = Vec::new();
        let to = |old: u32| renumber[old as usize];
        let slots = &self.slots;
        self.by_id = self.by_id.renumbered(to, |s| slot_id(slots, s));
        self.expiries = self.expiries.iter().map(|&(t, s)| (t, to(s))).collect();
        if self.tree.size() > 0 {
            let entries = self
                .tree
                .iter()
                .map(|e| Entry {
                    env: e.env,
                    slot: to(e.slot),
                })
                .collect();
            self.tree = RTree::bulk_load_with_params(entries);
        }
        if !self.deferred {
            self.deferred = true;
            self.build_points();
        }
    }

    /// The slot arena's capacity, for tests of [`Collection::shrink_if_sparse`].
    #[cfg(test)]
    pub(crate) fn slot_capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Changes the expiry of a stored item.
    pub(crate) fn set_expiry(&mut self, id: &str, expires_at: Option<i64>) {
        let new = expires_at.unwrap_or(NEVER);
        let Some(idx) = self.find(id) else {
            return;
        };
        let old = self.slot(idx).item.deadline();
        if old != NEVER {
            self.expiries.remove(&(old, idx));
        }
        if new != NEVER {
            self.expiries.insert((new, idx));
        }
        self.update(idx, |item| item.set_deadline(new));
    }

    /// Adds `updates` to the fields of the stored item `id` in place, when
    /// they all come after its last field (see `Fields::appends`), and
    /// answers how many values changed (all of them); `None` otherwise, and
    /// nothing is changed. A snapshot's FSET continuations take this path,
    /// so that applying one costs its own fields, not the object's.
    pub(crate) fn append_fields(
        &mut self,
        id: &str,
        updates: &[(Arc<str>, FieldValue)],
    ) -> Option<usize> {
        let idx = self.find(id)?;
        let slot = self.slots[idx as usize]
            .as_mut()
            .expect("indexes only refer to occupied slots");
        // An item without fields takes the general path, which gives it
        // its extra part.
        let extra = slot.item.extra.as_mut()?;
        if extra.fields.is_empty() || !extra.fields.appends(updates) {
            return None;
        }
        // The memory estimate moves by what is added, counted as
        // `footprint` counts it, without walking the fields.
        self.mem += extra.fields.append(updates);
        Some(updates.len())
    }

    /// Replaces the fields of a stored item.
    pub(crate) fn set_fields(&mut self, id: &str, fields: Fields) {
        let Some(idx) = self.find(id) else {
            return;
        };
        self.update(idx, |item| item.set_fields(fields));
    }

    /// Changes the item in slot `idx` in place, keeping the memory estimate.
    fn update(&mut self, idx: u32, f: impl FnOnce(&mut Item)) {
        let slot = self.slots[idx as usize]
            .as_mut()
            .expect("indexes only refer to occupied slots");
        let before = Self::footprint(&slot.id, &slot.item);
        f(&mut slot.item);
        let after = Self::footprint(&slot.id, &slot.item);
        self.mem = self.mem - before + after;
    }

    /// Removes up to `max` items whose deadline is `<= now_ms`, earliest first.
    pub(crate) fn expire_due(&mut self, now_ms: i64, max: usize, out: &mut Vec<(Arc<str>, Item)>) {
        while out.len() < max {
            let Some(&(t, idx)) = self.expiries.first() else {
                break;
            };
            if t > now_ms {
                break;
            }
            let id = self.slot(idx).id.clone();
            if let Some((id, item)) = self.remove(&id) {
                out.push((Arc::from(id.as_str()), item));
            }
        }
    }

    /// Live items whose id matches the glob `pattern`, in id order.
    pub(crate) fn matching_ids(&self, pattern: &str, now_ms: i64) -> Vec<Id> {
        let m = Glob::new(pattern);
        self.by_id
            .iter()
            .map(|i| (&self.slot(i).id, i))
            .filter(|&(k, i)| self.slot(i).item.is_live(now_ms) && m.is_match(k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// SCAN: live items in id order (or reverse with `desc`).
    pub fn scan(&self, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        let walk: Box<dyn Iterator<Item = u32>> = if opts.desc {
            Box::new(self.by_id.iter().rev())
        } else {
            Box::new(self.by_id.iter())
        };
        let walk = walk.map(|i| {
            let s = self.slot(i);
            (s.id.as_str(), &s.item, None)
        });
        collect(walk, opts, now_ms, |_| true)
    }

    /// WITHIN: live items completely inside `area`, in R-tree order.
    pub fn within(&self, area: &Area, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        let t = area.test();
        self.area_search(area, opts, now_ms, |o| t.within(o))
    }

    /// INTERSECTS: live items that share a point with `area`, in R-tree order.
    pub fn intersects(&self, area: &Area, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        let t = area.test();
        self.area_search(area, opts, now_ms, |o| t.intersects(o))
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
        let env = envelope(&b);
        // Points first, then the other spatial objects: a fixed order for
        // cursors while the collection does not change.
        let q = Rect {
            lo: env.lower(),
            hi: env.upper(),
        };
        let walk = self
            .points
            .locate(q)
            .map(|e| e.slot)
            .chain(
                self.tree
                    .locate_in_envelope_intersecting(&env)
                    .map(|e| e.slot),
            )
            .map(|i| {
                let s = self.slot(i);
                (s.id.as_str(), &s.item, None)
            });
        collect(walk, opts, now_ms, |i| test(&i.object))
    }

    /// NEARBY: live spatial items in order of distance from `center` (ties by id),
    /// within `meters` when given.
    ///
    /// The walk is best-first over the R-tree, keyed by lower bounds of the
    /// great-circle distance to node rectangles and by exact distances of items,
    /// so a LIMIT of k touches about k items plus the nodes around them, however
    /// large the collection.
    pub fn nearby(
        &self,
        center: &Point,
        meters: Option<f64>,
        opts: &SearchOpts,
        now_ms: i64,
    ) -> Page<'_> {
        // The walk drops everything beyond the radius, so it ends where the
        // radius does.
        let walk = Nearest::new(self, *center, meters.unwrap_or(f64::INFINITY));
        collect(walk.map(|(k, i, d)| (k, i, Some(d))), opts, now_ms, |_| {
            true
        })
    }
}

/// Asks the processor to bring the memory at `t` into the cache without
/// waiting for it.
#[inline(always)]
fn prefetch<T>(t: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, reads nothing into
    // the program and writes nothing, whatever the address, and SSE is part
    // of every x86-64 processor.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(t.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = t;
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
    let patterns: Vec<Glob> = opts.matches.iter().map(|p| Glob::new(p)).collect();
    // A small LIMIT is filled without regrowing; a large one grows as hits come.
    let mut hits = Vec::with_capacity(opts.limit.unwrap_or(0).min(64));
    for (pos, (id, item, distance)) in (0u64..).zip(walk) {
        if pos < opts.cursor || !item.is_live(now_ms) {
            continue;
        }
        if !patterns.is_empty() && !patterns.iter().any(|p| p.is_match(id)) {
            continue;
        }
        if !opts.wheres.iter().all(|w| w.accepts(item.fields())) {
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

/// Meters of rounding a resumed nearest walk allows for when it decides
/// that a node lies wholly behind its front: far above the error of the
/// haversine (a few centimetres at worst, near the antipode), and small
/// enough that a node is seldom opened again for nothing.
const NEAR_SLACK: f64 = 1.0;

/// A candidate of the best-first walk.
enum Cand<'a> {
    Node(&'a rstar::ParentNode<Entry>),
    /// A node of the point tree.
    Points(&'a points::Node),
    /// A leaf (by its slot) keyed by a lower bound of its distance.
    Leaf(u32),
    /// A leaf keyed by its exact distance.
    Exact(&'a Slot),
}

/// A candidate and its place in the walk's order.
struct Queued<'a> {
    /// The order as one integer, the nearest the largest (`BinaryHeap` is a
    /// max-heap): the complement of the distance's bits shifted left by one,
    /// whose low bit is set for an exact item and clear for a bound (a node
    /// or a leaf not measured yet). A distance is never negative, so its
    /// bits order as the numbers do, and the shift drops only the sign of a
    /// zero. At equal distance bounds thus come out before exact items, so
    /// every item at that distance is exact before the first is yielded;
    /// exact items then come out in id order.
    key: u64,
    cand: Cand<'a>,
}

impl<'a> Queued<'a> {
    #[inline(always)]
    fn new(dist: f64, cand: Cand<'a>) -> Self {
        // The key drops the sign bit: only distances of zero or more order
        // as their bits do.
        debug_assert!(dist >= 0.0 || dist.is_nan(), "negative distance {dist}");
        let exact = matches!(cand, Cand::Exact(_));
        Queued {
            key: !((dist.to_bits() << 1) | u64::from(exact)),
            cand,
        }
    }

    /// The distance the key was made from.
    #[inline(always)]
    fn dist(&self) -> f64 {
        f64::from_bits(!self.key >> 1)
    }
}

impl PartialEq for Queued<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued<'_> {}
impl PartialOrd for Queued<'_> {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued<'_> {
    /// Ids are compared only between exact items at equal distance: the heap
    /// compares on every push and pop, and distances almost always differ.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .cmp(&other.key)
            .then_with(|| match (&self.cand, &other.cand) {
                (Cand::Exact(a), Cand::Exact(b)) => b.id.cmp(&a.id),
                _ => Ordering::Equal,
            })
    }
}

/// Best-first nearest-neighbour iterator over a collection's R-tree.
///
/// Nodes and leaves are queued under a cheap lower bound of their distance
/// ([`LowerBound`]); a leaf gets its exact distance only when it reaches the
/// front, so a walk computes about as many exact distances as it yields.
/// Anything whose bound is beyond `max` is never queued.
struct Nearest<'a> {
    col: &'a Collection,
    center: Point,
    bound: LowerBound,
    max: f64,
    /// With a radius, the latitude/longitude box around the circle: a child
    /// whose box misses it is skipped by four comparisons, before its bound.
    window: Option<Rect>,
    /// `window` for a leaf's points, tested without building their boxes
    /// (see [`Rect::for_points`]).
    point_window: Option<Rect>,
    /// Items at this distance or nearer are left out (a walk resumed after
    /// it, see [`Collection::nearest_after`]); minus infinity otherwise.
    after: f64,
    /// The centre's antipode, when the centre is in range and the walk was
    /// resumed after a distance: a node's farthest point from the centre is its nearest
    /// from the antipode, so nodes wholly nearer than `after` are skipped.
    /// Such a walk also keys nodes by their exact distance (see `bound`).
    antipode: Option<Point>,
    /// The nearest candidate offered since the last one was taken, held out
    /// of the heap because it is usually the next one taken (the nearest
    /// child of the node just opened), which then costs no push and no pop.
    /// It may be farther than the heap's top: [`Nearest::pop`] and
    /// [`Nearest::nearer_than_all`] compare both.
    held: Option<Queued<'a>>,
    heap: BinaryHeap<Queued<'a>>,
}

impl<'a> Nearest<'a> {
    fn new(col: &'a Collection, center: Point, max: f64) -> Self {
        // Room for a few opened nodes' children, so that a short walk does
        // not grow the heap several times.
        let mut heap = BinaryHeap::with_capacity(64);
        if col.tree.size() > 0 {
            heap.push(Queued::new(0.0, Cand::Node(col.tree.root())));
        }
        if col.points.len() > 0 {
            heap.push(Queued::new(0.0, Cand::Points(col.points.root())));
        }
        // Widened by a hair beyond the rounding of its trigonometry; a
        // superset only costs a bound computation.
        let window = max.is_finite().then(|| {
            let b = crate::geom::circle_bounds(&center, max);
            let pad = 1e-7;
            Rect {
                lo: [down(b.sw.lon - pad), down(b.sw.lat - pad)],
                hi: [up(b.ne.lon + pad), up(b.ne.lat + pad)],
            }
        });
        let point_window = window.as_ref().map(Rect::for_points);
        Nearest {
            col,
            center,
            bound: LowerBound::new(&center),
            max,
            window,
            point_window,
            after: f64::NEG_INFINITY,
            antipode: None,
            held: None,
            heap,
        }
    }

    /// Queues a candidate: held when it is nearer than the one held (which
    /// then goes to the heap), into the heap otherwise.
    #[inline(always)]
    fn push(&mut self, q: Queued<'a>) {
        match &mut self.held {
            None => self.held = Some(q),
            Some(h) if q > *h => self.heap.push(std::mem::replace(h, q)),
            Some(_) => self.heap.push(q),
        }
    }

    /// Takes the nearest candidate, held or queued.
    #[inline(always)]
    fn pop(&mut self) -> Option<Queued<'a>> {
        match self.held.take() {
            None => self.heap.pop(),
            Some(h) => {
                if self.heap.peek().is_some_and(|top| *top > h) {
                    self.held = Some(h);
                    self.heap.pop()
                } else {
                    Some(h)
                }
            }
        }
    }

    /// True when `dist` is strictly nearer than every candidate queued.
    #[inline(always)]
    fn nearer_than_all(&self, dist: f64) -> bool {
        self.held.as_ref().is_none_or(|h| dist < h.dist())
            && self.heap.peek().is_none_or(|top| dist < top.dist())
    }

    /// Leaves out every item at `after` meters or nearer (none at minus
    /// infinity), for a walk that may be resumed.
    fn after(mut self, after: f64) -> Self {
        self.after = after;
        let c = self.center;
        let in_range = (-90.0..=90.0).contains(&c.lat) && (-180.0..=180.0).contains(&c.lon);
        // Only a resumed walk pays for exact node distances and the
        // antipode test: a first part (nothing passed yet) is the plain
        // walk, whose cheap bound is as good where it starts, so a short
        // NEARBY (a small LIMIT, one part) costs what it cost unsliced.
        let resumed = after > f64::NEG_INFINITY;
        self.antipode = (in_range && resumed).then(|| Point {
            lat: -c.lat,
            lon: if c.lon > 0.0 {
                c.lon - 180.0
            } else {
                c.lon + 180.0
            },
            z: None,
        });
        self
    }

    /// True when every item in the node of box `r` is at `after` meters or
    /// nearer, so that a resumed walk need not open it. The farthest point
    /// of a box from the centre is the nearest from the antipode, at half a
    /// circumference less that distance; [`NEAR_SLACK`] absorbs the
    /// rounding of that difference, which is worst near the antipode.
    fn wholly_passed(&self, r: &Rect) -> bool {
        let Some(a) = &self.antipode else {
            return false;
        };
        if self.after == f64::NEG_INFINITY {
            return false;
        }
        if !in_range(r) {
            return false;
        }
        let (lo, hi) = (r.lo, r.hi);
        let near = crate::geom::rect_distance(
            a,
            f64::from(lo[0]),
            f64::from(lo[1]),
            f64::from(hi[0]),
            f64::from(hi[1]),
        );
        let farthest = std::f64::consts::PI * crate::geom::EARTH_RADIUS_M - near;
        farthest + NEAR_SLACK <= self.after
    }

    /// False when `r` lies wholly outside the radius's window.
    #[inline(always)]
    fn in_window(&self, r: &Rect) -> bool {
        self.window.as_ref().is_none_or(|w| w.intersects(r))
    }

    /// Queues `cand`, whose box is `r`, unless it is outside the radius;
    /// true when it was queued.
    #[inline(always)]
    fn offer(&mut self, r: &Rect, cand: Cand<'a>) -> bool {
        if !self.in_window(r) {
            return false;
        }
        // Only nodes: a leaf's exact distance is as cheap as this test.
        if self.antipode.is_some()
            && matches!(cand, Cand::Node(_) | Cand::Points(_))
            && self.wholly_passed(r)
        {
            return false;
        }
        let dist = self.bound(r);
        if dist <= self.max {
            self.push(Queued::new(dist, cand));
            return true;
        }
        false
    }

    #[inline(always)]
    fn bound(&self, r: &Rect) -> f64 {
        let (lo, hi) = (r.lo, r.hi);
        self.bound_of(
            f64::from(lo[0]),
            f64::from(lo[1]),
            f64::from(hi[0]),
            f64::from(hi[1]),
        )
    }

    /// Queues the leaf entry of a stored point that passed `point_window`
    /// (so it is inside the radius's window: no second window test), unless
    /// its bound is beyond the radius; true when it was queued.
    ///
    /// The bound is that of the point's box padded in `f64` by
    /// [`point_pad`] on each side, a box that holds the point's one-`f32`-
    /// step box ([`Rect::of`]) and so the exact position, built with a
    /// multiply and an add per axis instead of the four `next_up` and
    /// `next_down` calls, which were most of a leaf's cost per point.
    #[inline(always)]
    fn offer_point(&mut self, xy: [f32; 2], slot: u32) -> bool {
        let (x, y) = (f64::from(xy[0]), f64::from(xy[1]));
        let (px, py) = (point_pad(x), point_pad(y));
        let dist = self.bound_of(x - px, y - py, x + px, y + py);
        if dist <= self.max {
            self.push(Queued::new(dist, Cand::Leaf(slot)));
            return true;
        }
        false
    }

    #[inline(always)]
    fn bound_of(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> f64 {
        let cheap = self.bound.rect(x0, y0, x1, y1);
        // A resumed walk starts again from the root each time, and the
        // cheap bound is loose far from the centre (by several percent a
        // quarter turn away): every node within that slack beyond the front
        // would be opened again by every resumed walk. The exact distance,
        // less the cheap bound's own slack for rounding, opens only the
        // nodes across the front.
        if self.antipode.is_some() && in_range_f64(x0, y0, x1, y1) {
            let exact = crate::geom::rect_distance(&self.center, x0, y0, x1, y1);
            cheap.max(exact * (1.0 - 1e-9) - 1e-6)
        } else {
            cheap
        }
    }
}

/// True when the box lies within the latitude and longitude ranges, where
/// the bounds of [`Nearest`] hold.
fn in_range(r: &Rect) -> bool {
    r.lo[1] >= -90.0 && r.hi[1] <= 90.0 && r.lo[0] >= -180.0 && r.hi[0] <= 180.0
}

/// [`in_range`] of a box given by its corners in `f64`.
#[inline(always)]
fn in_range_f64(x0: f64, y0: f64, x1: f64, y1: f64) -> bool {
    y0 >= -90.0 && y1 <= 90.0 && x0 >= -180.0 && x1 <= 180.0
}

/// The pad of a stored point's coordinate `v` (an `f32` widened) in
/// [`Nearest::offer_point`]: `|v|` times 2^-23, at least one `f32` step at
/// `v` (a step is 2^-23 of the power of two at or below `|v|`), plus 10^-40
/// for the steps near zero. Every `f64` that rounds to the stored `f32` is
/// within half a step of it, so the padded box holds it with half a step to
/// spare, far more than the rounding of `v ± pad` in `f64` (2^-53 of `|v|`).
#[inline(always)]
fn point_pad(v: f64) -> f64 {
    v.abs() * f64::from(f32::EPSILON) + 1e-40
}

impl<'a> Iterator for Nearest<'a> {
    type Item = (&'a str, &'a Item, f64);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(q) = self.pop() {
            match q.cand {
                Cand::Node(node) => {
                    for child in node.children() {
                        let env = child.envelope();
                        let r = Rect {
                            lo: env.lower(),
                            hi: env.upper(),
                        };
                        let cand = match child {
                            RTreeNode::Parent(p) => Cand::Node(p),
                            RTreeNode::Leaf(e) => Cand::Leaf(e.slot),
                        };
                        self.offer(&r, cand);
                    }
                }
                Cand::Points(points::Node::Inner(children)) => {
                    for c in children {
                        if self.offer(&c.rect, Cand::Points(&c.node)) {
                            // A node's entries are behind a pointer of their
                            // own: ask for them early.
                            match &c.node {
                                points::Node::Leaf(v) => prefetch(v.as_ptr()),
                                points::Node::Inner(v) => prefetch(v.as_ptr()),
                            }
                        }
                    }
                }
                Cand::Points(points::Node::Leaf(entries)) => {
                    for e in entries {
                        if self.point_window.is_some_and(|w| !w.contains(e.xy)) {
                            continue;
                        }
                        if self.offer_point(e.xy, e.slot) {
                            // Slots lie in insertion order, not in space, so
                            // reading one is a cache miss, and these misses
                            // taken one at a time were most of a walk's time.
                            // Asking for every queued one now lets them
                            // overlap, and the slot is usually at hand when
                            // it is popped.
                            prefetch(&raw const self.col.slots[e.slot as usize]);
                        }
                    }
                }
                Cand::Leaf(idx) => {
                    let slot = self.col.slot(idx);
                    let dist = match &slot.item.object {
                        // The same value as `Object::distance_to`, with the
                        // centre's cosine computed once per walk.
                        Object::Point(p) => self.bound.distance_to_point(p),
                        other => other.distance_to(&self.center).unwrap_or(f64::INFINITY),
                    };
                    if dist > self.max || dist <= self.after {
                        continue;
                    }
                    // Strictly nearer than everything queued: yield at once and
                    // save a push and a pop. Ties go through the heap, which
                    // orders them by id.
                    if self.nearer_than_all(dist) {
                        return Some((slot.id.as_str(), &slot.item, dist));
                    }
                    self.push(Queued::new(dist, Cand::Exact(slot)));
                }
                Cand::Exact(slot) => return Some((slot.id.as_str(), &slot.item, q.dist())),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_pad_holds_every_position_that_rounds_to_a_stored_point() {
        // Every f64 that rounds to x lies within half a step of it; the
        // padded box must hold that and the one-step box of `Rect::of`, at
        // every magnitude down to the subnormals.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut values = vec![
            0.0,
            1e-45,
            1e-40,
            1e-30,
            127.999_99,
            128.0,
            179.999_999,
            180.0,
            255.999_9,
            256.0,
            1e30,
        ];
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
            // Magnitudes from 2^-140 to 2^100, and dense in 0..360.
            values.push(if seed & 1 == 0 {
                (unit * 240.0 - 140.0).exp2()
            } else {
                unit * 360.0
            });
        }
        for v in values.iter().flat_map(|v| [*v, -*v]) {
            let x = v as f32;
            let pad = point_pad(f64::from(x));
            let (lo, hi) = (f64::from(x) - pad, f64::from(x) + pad);
            assert!(lo <= v && v <= hi, "{v} outside the padded box of {x}");
            assert!(
                lo <= f64::from(x.next_down()) && f64::from(x.next_up()) <= hi,
                "{v}"
            );
        }
    }

    fn fields(pairs: &[(&str, f64)]) -> Vec<(Arc<str>, FieldValue)> {
        pairs
            .iter()
            .map(|(n, v)| (Arc::from(*n), FieldValue::Number(*v)))
            .collect()
    }

    #[test]
    fn merging_in_one_pass_answers_as_applying_one_by_one() {
        let base = Fields::default()
            .merged(&fields(&[("b", 2.0), ("d", 4.0), ("f", 6.0)]))
            .0;
        let cases: &[&[(&str, f64)]] = &[
            &[],
            &[("a", 1.0)],
            &[("g", 7.0), ("a", 1.0), ("c", 3.0)],
            &[("b", 2.0)],
            &[("b", 0.0), ("d", 5.0), ("e", 0.0)],
            &[("f", 0.0), ("d", 0.0), ("b", 0.0)],
            &[("b", 9.0), ("b", 2.0)],
            &[("x", 1.0), ("x", 0.0), ("a", 3.0)],
        ];
        for ups in cases {
            let ups = fields(ups);
            assert_eq!(base.merged(&ups), base.merged_one_by_one(&ups), "{ups:?}");
        }
    }

    #[test]
    fn a_collection_that_shrank_gives_its_slots_back_and_still_answers() {
        let mut col = Collection::default();
        let n = 20_000u32;
        let point = |i: u32| {
            let (lat, lon) = (f64::from(i % 100) * 0.01, f64::from(i / 100) * 0.01);
            Object::Point(Point::new(lat, lon).unwrap())
        };
        for i in 0..n {
            // Every tenth a box (the other R-tree), every seventh with a TTL.
            let object = if i.is_multiple_of(10) {
                let b = point(i).bounds().unwrap();
                Object::Bounds(Box::new(b))
            } else {
                point(i)
            };
            let ttl = i.is_multiple_of(7).then_some(1_000 + i64::from(i));
            col.put(&format!("id{i}"), object, &[], ttl, 0);
        }
        let before = col.slot_capacity();
        assert!(before >= n as usize);
        // Deleting 80%, in an order unrelated to the slots, shrinks the arena.
        let kept = |i: u32| i % 10 == 3 || i.is_multiple_of(10);
        for i in (0..n).rev().filter(|&i| !kept(i)) {
            let removed = col.remove(&format!("id{i}"));
            assert!(removed.is_some(), "id{i}");
            col.shrink_if_sparse();
        }
        let live = (0..n).filter(|&i| kept(i)).count();
        assert_eq!(col.len(0), live);
        assert!(
            col.slot_capacity() < before / 4,
            "capacity {} of {before} for {live} items",
            col.slot_capacity()
        );
        assert_eq!(col.slots.len() - col.free.len(), live);
        // Every index still reaches every item under its new slot.
        for i in (0..n).filter(|&i| kept(i)) {
            assert!(col.get(&format!("id{i}"), 0).is_some(), "id{i}");
        }
        let ids: Vec<&str> = col.by_id.iter().map(|s| col.slot(s).id.as_str()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order kept");
        assert_eq!(ids.len(), live);
        let everything = Area::Bounds(Bounds::new(-1.0, -1.0, 10.0, 10.0).unwrap());
        let all = col.within(&everything, &SearchOpts::default(), 0);
        assert_eq!(all.hits.len(), live, "both spatial indexes");
        let near = col.nearby(
            &Point::new(0.0, 0.0).unwrap(),
            None,
            &SearchOpts::default(),
            0,
        );
        assert_eq!(near.hits.len(), live);
        let mut expired = Vec::new();
        col.expire_due(i64::MAX - 1, usize::MAX, &mut expired);
        let with_ttl = (0..n).filter(|&i| kept(i) && i.is_multiple_of(7)).count();
        assert_eq!(expired.len(), with_ttl, "the expiry index");
        // And it grows again as before.
        for i in n..n + 5_000 {
            col.put(&format!("id{i}"), point(i), &[], None, 0);
        }
        assert_eq!(col.len(0), live - with_ttl + 5_000);
    }

    /// Field vectors hold about what they use: a merge that removes or
    /// changes nothing gives back the room it reserved, and appends keep at
    /// most an eighth of slack.
    #[test]
    fn field_vectors_hold_about_their_length() {
        let many: Vec<(String, f64)> = (0..2_000).map(|i| (format!("f{i:05}"), 1.0)).collect();
        let as_fields = |v: f64| -> Vec<(Arc<str>, FieldValue)> {
            many.iter()
                .map(|(n, _)| (Arc::from(n.as_str()), FieldValue::Number(v)))
                .collect()
        };
        let base = Fields::default().merged(&fields(&[("a", 1.0)])).0;
        let (cleared, changed) = base.merged(&as_fields(0.0));
        assert_eq!((cleared.len(), changed), (1, 0));
        assert_eq!(cleared.0.capacity(), 1, "room for 2,001 slots kept for 1");
        let (full, _) = base.merged(&as_fields(1.0));
        assert_eq!(full.0.capacity(), full.len());
        let (emptied, _) = full.merged(&as_fields(0.0));
        assert_eq!(emptied.0.capacity(), 1);

        let mut grown = Fields::default().merged(&fields(&[("a", 1.0)])).0;
        let mut next = 0u32;
        for _ in 0..500 {
            let batch: Vec<(Arc<str>, FieldValue)> = (0..100)
                .map(|_| {
                    next += 1;
                    (Arc::from(format!("b{next:08}")), FieldValue::Number(1.0))
                })
                .collect();
            assert!(grown.appends(&batch));
            grown.append(&batch);
            let (len, cap) = (grown.len(), grown.0.capacity());
            assert!(cap <= len + len / 8 + 100, "{cap} slots for {len} fields");
        }
        assert_eq!(grown.len(), 50_001);
    }

    #[test]
    fn names_no_item_holds_are_dropped() {
        let mut col = Collection::default();
        let mut held = Vec::new();
        for i in 0..10_000 {
            let n = col.intern(&format!("f{i}"));
            if i % 100 == 0 {
                held.push(n);
            }
        }
        assert!(
            col.names.len() <= 2 * held.len().max(32) + 1,
            "{}",
            col.names.len()
        );
        for n in &held {
            assert!(Arc::ptr_eq(n, &col.intern(n)), "a held name was copied");
        }
    }
}
