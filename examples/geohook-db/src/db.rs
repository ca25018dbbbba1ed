//! The database: keys to collections, and every command's data operation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::glob::Glob;

use crate::collection::{Collection, CollectionStats, Item, Page, SearchOpts};
use crate::error::{Error, Result};
use crate::field::FieldValue;
use crate::geom::Point;
use crate::object::{Area, Object};

/// The `NX` / `XX` condition of a SET.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetCondition {
    /// Always store. Default.
    #[default]
    Always,
    /// `NX`: store only when no live item has the id.
    Nx,
    /// `XX`: store only when a live item has the id.
    Xx,
}

/// Server-wide totals for SERVER and INFO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Number of keys.
    pub num_collections: usize,
    /// Sum of the collections' [`CollectionStats`].
    pub totals: CollectionStats,
}

/// An item removed by [`Database::expire_due`]: key, id and the item.
pub type Expired = (Arc<str>, Arc<str>, Item);

/// All keys and their collections.
///
/// Every operation takes the current time `now_ms` (unix milliseconds) from the
/// caller. An item whose `expires_at <= now_ms` is invisible to every read and
/// is treated as absent by writes; it stays in memory until
/// [`Database::expire_due`] removes it, so that the caller can log and announce
/// each expiry exactly once. A key whose last item is removed disappears.
#[derive(Debug, Default)]
pub struct Database {
    cols: BTreeMap<Arc<str>, Collection>,
    /// Set by [`Database::defer_point_index`], for collections made meanwhile.
    deferred: bool,
    /// Collections moved to another key so far ([`Database::rename_key`]).
    moves: u64,
}

fn reserved(name: &str) -> bool {
    name.is_empty() || matches!(name, "z" | "lat" | "lon")
}

impl Database {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// The collection under `key`, if the key exists.
    pub fn collection(&self, key: &str) -> Option<&Collection> {
        self.cols.get(key)
    }

    fn key_not_found(key: &str) -> Error {
        Error::KeyNotFound {
            key: key.to_owned(),
        }
    }

    fn id_not_found(key: &str, id: &str) -> Error {
        Error::IdNotFound {
            key: key.to_owned(),
            id: id.to_owned(),
        }
    }

    /// Checks the names and reads the values of `fields`.
    fn read_fields<S: AsRef<str>, V: Clone + Into<FieldValue>>(
        fields: &[(S, V)],
    ) -> Result<Vec<(&str, FieldValue)>> {
        fields
            .iter()
            .map(|(n, v)| {
                let n = n.as_ref();
                if reserved(n) {
                    return Err(Error::ReservedField { name: n.to_owned() });
                }
                let v: FieldValue = v.clone().into();
                if v.is_nan() {
                    return Err(Error::InvalidFieldValue {
                        name: n.to_owned(),
                        value: v.text().into_owned(),
                    });
                }
                Ok((n, v))
            })
            .collect()
    }

    /// SET: stores `object` under `key`/`id` with an absolute expiry (or none).
    ///
    /// `fields` are merged into the fields of the live item that is replaced
    /// (Tile38 keeps existing fields); a field set to 0 or to the empty string
    /// is removed. Values are numbers (`f64`) or any [`FieldValue`]. Returns the
    /// live item that was replaced.
    ///
    /// # Errors
    /// [`Error::IdExists`] for `Nx` when a live item exists; [`Error::KeyNotFound`]
    /// or [`Error::IdNotFound`] for `Xx` when none does; [`Error::ReservedField`]
    /// and [`Error::InvalidFieldValue`] for bad fields. Nothing changes on error.
    // The arguments mirror the SET command one to one; a builder would only add
    // a type that every caller has to fill in.
    #[allow(clippy::too_many_arguments)]
    pub fn set<S: AsRef<str>, V: Clone + Into<FieldValue>>(
        &mut self,
        key: &str,
        id: &str,
        object: Object,
        fields: &[(S, V)],
        expires_at: Option<i64>,
        cond: SetCondition,
        now_ms: i64,
    ) -> Result<Option<Item>> {
        let fields = Self::read_fields(fields)?;
        // Only NX and XX need to know beforehand; a plain SET (the common
        // write) leaves the one id lookup to `put`.
        let exists = || self.cols.get(key).and_then(|c| c.get(id, now_ms)).is_some();
        match cond {
            SetCondition::Nx if exists() => {
                return Err(Error::IdExists {
                    key: key.to_owned(),
                    id: id.to_owned(),
                })
            }
            SetCondition::Xx if !exists() => {
                return Err(if self.cols.contains_key(key) {
                    Self::id_not_found(key, id)
                } else {
                    Self::key_not_found(key)
                });
            }
            _ => {}
        }
        let col = match self.cols.get_mut(key) {
            Some(c) => c,
            None => {
                let c = self.cols.entry(Arc::from(key)).or_default();
                if self.deferred {
                    c.defer_points();
                }
                c
            }
        };
        let updates: Vec<(Arc<str>, FieldValue)> = fields
            .into_iter()
            .map(|(n, v)| (col.intern(n), v))
            .collect();
        let old = col.put(id, object, &updates, expires_at, now_ms);
        Ok(old.filter(|i| i.is_live(now_ms)))
    }

    /// Starts a bulk load, for replaying a log at start: from now on, points
    /// that are written are stored but not put in their collection's spatial
    /// index, which [`Database::build_point_index`] then builds at once, packed
    /// full, in a fraction of the time that one insert per point takes.
    ///
    /// Until then NEARBY, WITHIN and INTERSECTS do not see points (every other
    /// read and write does, and objects of the other kinds are indexed as
    /// usual), so call this only while nothing is served, and always follow it
    /// with [`Database::build_point_index`].
    pub fn defer_point_index(&mut self) {
        self.deferred = true;
        self.cols.values_mut().for_each(Collection::defer_points);
    }

    /// Ends a bulk load started by [`Database::defer_point_index`]: builds the
    /// point index of every collection from the points it holds. Does nothing
    /// when no load is under way.
    pub fn build_point_index(&mut self) {
        self.deferred = false;
        self.cols.values_mut().for_each(Collection::build_points);
    }

    /// GET: the live item under `key`/`id`.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] or [`Error::IdNotFound`].
    pub fn get(&self, key: &str, id: &str, now_ms: i64) -> Result<&Item> {
        let col = self.cols.get(key).ok_or_else(|| Self::key_not_found(key))?;
        col.get(id, now_ms)
            .ok_or_else(|| Self::id_not_found(key, id))
    }

    /// After removals from `key`: drops the key when it is empty, else lets
    /// its collection give memory back if it shrank a lot.
    fn remove_if_empty(&mut self, key: &str) {
        match self.cols.get_mut(key) {
            Some(c) if c.len_stored() == 0 => {
                self.cols.remove(key);
            }
            Some(c) => c.shrink_if_sparse(),
            None => {}
        }
    }

    /// DEL: removes the live item and returns it. An expired item is left for
    /// [`Database::expire_due`], which reports it, and `None` is returned.
    pub fn del(&mut self, key: &str, id: &str, now_ms: i64) -> Option<Item> {
        let col = self.cols.get_mut(key)?;
        col.get(id, now_ms)?;
        let item = col.remove(id).map(|(_, i)| i);
        self.remove_if_empty(key);
        item
    }

    /// PDEL: removes every live item whose id matches the glob `pattern`, and
    /// returns them in id order.
    pub fn pdel(&mut self, key: &str, pattern: &str, now_ms: i64) -> Vec<(Arc<str>, Item)> {
        let Some(col) = self.cols.get_mut(key) else {
            return Vec::new();
        };
        let ids = col.matching_ids(pattern, now_ms);
        let out = ids
            .into_iter()
            .filter_map(|id| col.remove(&id).map(|(id, i)| (Arc::from(id.as_str()), i)))
            .collect();
        self.remove_if_empty(key);
        out
    }

    /// DROP: removes the whole key and returns its collection.
    pub fn drop_key(&mut self, key: &str) -> Option<Collection> {
        self.cols.remove(key)
    }

    /// RENAME: moves the collection at `key`, whole, to `newkey`, replacing
    /// whatever `newkey` held. Returns false, changing nothing, when `key`
    /// holds no collection. Renaming a key to itself changes nothing.
    ///
    /// A move is the one change whose effect depends on which key an item
    /// was read under, so it is counted: a reader that walks the keys in
    /// batches (a snapshot taken between writes) compares [`Database::moves`]
    /// before and after to learn that an item may have jumped from a key it
    /// had not reached to one it had passed.
    pub fn rename_key(&mut self, key: &str, newkey: &str) -> bool {
        if !self.cols.contains_key(key) {
            return false;
        }
        if key != newkey {
            if let Some(col) = self.cols.remove(key) {
                self.cols.insert(Arc::from(newkey), col);
                self.moves += 1;
            }
        }
        true
    }

    /// How many collections [`Database::rename_key`] has moved since the
    /// database was made.
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// FLUSHDB: removes every key.
    pub fn flushdb(&mut self) {
        self.cols.clear();
    }

    /// KEYS: the keys matching the glob `pattern` that hold at least one live
    /// item, sorted.
    pub fn keys(&self, pattern: &str, now_ms: i64) -> Vec<&str> {
        let m = Glob::new(pattern);
        self.cols
            .iter()
            .filter(|(k, c)| m.is_match(k) && !c.is_empty(now_ms))
            .map(|(k, _)| &**k)
            .collect()
    }

    /// EXISTS: true when a live item is stored under `key`/`id`.
    pub fn exists(&self, key: &str, id: &str, now_ms: i64) -> bool {
        self.get(key, id, now_ms).is_ok()
    }

    /// TTL: milliseconds left, `None` when the item has no expiry.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] or [`Error::IdNotFound`].
    pub fn ttl(&self, key: &str, id: &str, now_ms: i64) -> Result<Option<i64>> {
        let item = self.get(key, id, now_ms)?;
        Ok(item.expires_at().map(|t| t - now_ms))
    }

    /// EXPIRE: sets an absolute expiry on a live item.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] or [`Error::IdNotFound`].
    pub fn expire(&mut self, key: &str, id: &str, expires_at: i64, now_ms: i64) -> Result<()> {
        self.get(key, id, now_ms)?;
        if let Some(c) = self.cols.get_mut(key) {
            c.set_expiry(id, Some(expires_at));
        }
        Ok(())
    }

    /// PERSIST: clears the expiry of a live item; true when it had one.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] or [`Error::IdNotFound`].
    pub fn persist(&mut self, key: &str, id: &str, now_ms: i64) -> Result<bool> {
        let had = self.get(key, id, now_ms)?.expires_at().is_some();
        if had {
            if let Some(c) = self.cols.get_mut(key) {
                c.set_expiry(id, None);
            }
        }
        Ok(had)
    }

    /// FSET: sets fields on a live item (0 removes one) and returns how many
    /// values changed. With `xx`, a missing key or id is not an error and 0 is
    /// returned.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] or [`Error::IdNotFound`] without `xx`;
    /// [`Error::ReservedField`] and [`Error::InvalidFieldValue`] for bad fields.
    pub fn fset<S: AsRef<str>, V: Clone + Into<FieldValue>>(
        &mut self,
        key: &str,
        id: &str,
        fields: &[(S, V)],
        xx: bool,
        now_ms: i64,
    ) -> Result<usize> {
        let fields = Self::read_fields(fields)?;
        if let Err(e) = self.get(key, id, now_ms) {
            return if xx { Ok(0) } else { Err(e) };
        }
        let Some(col) = self.cols.get_mut(key) else {
            return Ok(0);
        };
        let updates: Vec<(Arc<str>, FieldValue)> = fields
            .into_iter()
            .map(|(n, v)| (col.intern(n), v))
            .collect();
        if col.get(id, now_ms).is_none() {
            return Ok(0);
        }
        if let Some(changed) = col.append_fields(id, &updates) {
            return Ok(changed);
        }
        let Some(item) = col.get(id, now_ms) else {
            return Ok(0);
        };
        let (merged, changed) = item.fields().merged(&updates);
        col.set_fields(id, merged);
        Ok(changed)
    }

    /// FGET: the value of a field of a live item (0 when unset).
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] or [`Error::IdNotFound`].
    pub fn fget(&self, key: &str, id: &str, field: &str, now_ms: i64) -> Result<FieldValue> {
        Ok(self.get(key, id, now_ms)?.fields().value(field).clone())
    }

    /// SCAN over `key`; an empty page when the key does not exist.
    pub fn scan(&self, key: &str, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        self.cols
            .get(key)
            .map(|c| c.scan(opts, now_ms))
            .unwrap_or_default()
    }

    /// NEARBY over `key`: ordered by distance, then id; see [`Collection::nearby`].
    pub fn nearby(
        &self,
        key: &str,
        center: &Point,
        meters: Option<f64>,
        opts: &SearchOpts,
        now_ms: i64,
    ) -> Page<'_> {
        self.cols
            .get(key)
            .map(|c| c.nearby(center, meters, opts, now_ms))
            .unwrap_or_default()
    }

    /// WITHIN over `key`.
    pub fn within(&self, key: &str, area: &Area, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        self.cols
            .get(key)
            .map(|c| c.within(area, opts, now_ms))
            .unwrap_or_default()
    }

    /// INTERSECTS over `key`.
    pub fn intersects(&self, key: &str, area: &Area, opts: &SearchOpts, now_ms: i64) -> Page<'_> {
        self.cols
            .get(key)
            .map(|c| c.intersects(area, opts, now_ms))
            .unwrap_or_default()
    }

    /// Removes up to `max` expired items (deadline `<= now_ms`) across all keys
    /// and returns them, so that the caller can log a DEL and emit events for each.
    pub fn expire_due(&mut self, now_ms: i64, max: usize) -> Vec<Expired> {
        let mut out = Vec::new();
        let mut emptied = Vec::new();
        let mut batch = Vec::new();
        for (key, col) in self.cols.iter_mut() {
            if out.len() >= max {
                break;
            }
            col.expire_due(now_ms, max - out.len(), &mut batch);
            out.extend(batch.drain(..).map(|(id, item)| (key.clone(), id, item)));
            if col.len_stored() == 0 {
                emptied.push(key.clone());
            } else {
                col.shrink_if_sparse();
            }
        }
        for k in emptied {
            self.cols.remove(&k);
        }
        out
    }

    /// STATS for one key.
    pub fn stats(&self, key: &str, now_ms: i64) -> Option<CollectionStats> {
        self.cols.get(key).map(|c| c.stats(now_ms))
    }

    /// Totals over every key.
    pub fn totals(&self, now_ms: i64) -> DbStats {
        let mut s = DbStats {
            num_collections: self.cols.len(),
            ..DbStats::default()
        };
        for c in self.cols.values() {
            let c = c.stats(now_ms);
            s.totals.in_memory_size += c.in_memory_size;
            s.totals.num_objects += c.num_objects;
            s.totals.num_points += c.num_points;
            s.totals.num_strings += c.num_strings;
        }
        s
    }

    /// Every live item in (key, id) order, starting strictly after `after`
    /// (`None` = from the start). The AOF rewrite walks the state in batches by
    /// passing the last (key, id) of the previous batch.
    pub fn iter_after<'a>(
        &'a self,
        after: Option<(&'a str, &'a str)>,
        now_ms: i64,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a Item)> + 'a {
        use std::ops::Bound;
        let lower = match after {
            Some((k, _)) => Bound::Included(k),
            None => Bound::Unbounded,
        };
        self.cols
            .range::<str, _>((lower, Bound::Unbounded))
            .flat_map(move |(key, col)| {
                let start = after.filter(|(k, _)| *k == &**key).map(|(_, id)| id);
                col.iter_after(start, now_ms)
                    .map(move |(id, item)| (&**key, id, item))
            })
    }

    /// A canonical text of the live state: one line per item in (key, id) order
    /// with the object's JSON, the fields and the expiry. Two databases hold the
    /// same data exactly when their dumps are equal.
    pub fn canonical_dump(&self, now_ms: i64) -> String {
        let mut s = String::new();
        for (k, id, item) in self.iter_after(None, now_ms) {
            let _ = write!(s, "{k:?} {id:?} ");
            item.object().write_json(&mut s);
            for (n, v) in item.fields().iter() {
                let _ = write!(s, " {n:?}={v}");
            }
            if let Some(t) = item.expires_at() {
                let _ = write!(s, " ex={t}");
            }
            s.push('\n');
        }
        s
    }
}
