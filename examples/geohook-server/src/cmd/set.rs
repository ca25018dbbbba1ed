//! SET: `SET key id [FIELD name value …] [EX seconds | PXAT ms] [NX | XX]
//! (POINT lat lon [z] | BOUNDS … | OBJECT geojson | HASH geohash | STRING
//! value)`, and the form every object takes in a snapshot (a shrink's or a
//! full sync's): the SET that recreates it.
//!
//! Logged as `set key id [field name value …] [pxat ms] [nx|xx] OBJECT`,
//! with the object's words as sent: a relative `EX` becomes the absolute
//! `PXAT`, so that a restart never gives an object its full TTL again.

use geohook_db::{Database, FieldValue, Object, SetCondition};

use crate::cmd::args::{self, lower, Args};
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::render::fnum;
use crate::cmd::spec::Cmd;
use crate::state::{Core, Record, Writer};
use geohook_resp::{encode_command, Reply};

/// A parsed SET.
#[derive(Debug)]
pub(crate) struct Set<'a> {
    key: &'a str,
    id: &'a str,
    fields: Vec<(&'a str, FieldValue)>,
    /// The absolute deadline, from `EX` or `PXAT`.
    expires: Option<i64>,
    cond: SetCondition,
    object: Object,
    /// The object's words as sent (`POINT 33 -115`), logged as they are.
    object_args: &'a [Vec<u8>],
}

impl<'a> Set<'a> {
    /// Parses a SET sent at `now` (ms).
    ///
    /// # Errors
    ///
    /// Arity, a bad option or value, a bad shape.
    pub(crate) fn parse(all: &'a [Vec<u8>], now: i64) -> Result<Set<'a>, CmdError> {
        let mut a = Args::new(all, 1, "set");
        let key = a.text()?;
        let id = a.text()?;
        let mut fields = Vec::new();
        let mut expires = None;
        let mut cond = SetCondition::Always;
        let (object, object_at) = loop {
            let at = a.pos();
            let word = a.next()?;
            match lower(word).as_str() {
                "field" => {
                    let name = a.text()?;
                    fields.push((name, args::field_value(a.next()?)?));
                }
                "ex" => expires = Some(args::ex_deadline(a.next()?, now)?),
                "pxat" => expires = Some(args::int(a.next()?)?),
                "nx" if cond != SetCondition::Xx => cond = SetCondition::Nx,
                "xx" if cond != SetCondition::Nx => cond = SetCondition::Xx,
                "point" => {
                    let (lat, lon) = (a.finite()?, a.finite()?);
                    let z = if a.left() == 1 {
                        Some(a.finite()?)
                    } else {
                        None
                    };
                    break (Object::Point(args::point_at(lat, lon, z)?), at);
                }
                "bounds" => break (Object::Bounds(Box::new(a.bounds()?)), at),
                "object" => break (a.geojson()?, at),
                "hash" => break (Object::from_geohash(a.text()?)?, at),
                "string" => break (Object::String(a.text()?.into()), at),
                _ => return Err(CmdError::invalid(word)),
            }
        };
        a.finish()?;
        Ok(Set {
            key,
            id,
            fields,
            expires,
            cond,
            object,
            object_args: &all[object_at..],
        })
    }

    /// Applies the SET and commits its logged form.
    ///
    /// # Errors
    ///
    /// The database's refusal (in JSON mode also a blocked NX/XX, which RESP
    /// answers with a null), or the log's failure.
    pub(crate) fn apply(
        self,
        core: &mut Core,
        w: &Writer<'_>,
        ctx: &Ctx,
    ) -> Result<Reply, CmdError> {
        let mut pxat = itoa::Buffer::new();
        let mut logged: Vec<&[u8]> = Vec::with_capacity(8 + 3 * self.fields.len());
        logged.extend([b"set".as_slice(), self.key.as_bytes(), self.id.as_bytes()]);
        // The field values are logged in their text form, which reads back to
        // the same value.
        let texts: Vec<_> = self.fields.iter().map(|(_, v)| v.text()).collect();
        for ((name, _), text) in self.fields.iter().zip(&texts) {
            logged.extend([b"field".as_slice(), name.as_bytes(), text.as_bytes()]);
        }
        if let Some(at) = self.expires {
            logged.extend([b"pxat".as_slice(), pxat.format(at).as_bytes()]);
        }
        match self.cond {
            SetCondition::Nx => logged.push(b"nx"),
            SetCondition::Xx => logged.push(b"xx"),
            SetCondition::Always => {}
        }
        logged.extend(self.object_args.iter().map(Vec::as_slice));
        let old = match core.db.set(
            self.key,
            self.id,
            self.object,
            &self.fields,
            self.expires,
            self.cond,
            ctx.now(),
        ) {
            Ok(old) => old,
            Err(
                e @ (geohook_db::Error::IdExists { .. }
                | geohook_db::Error::KeyNotFound { .. }
                | geohook_db::Error::IdNotFound { .. }),
            ) if self.cond != SetCondition::Always => {
                return if ctx.json {
                    Err(e.into())
                } else {
                    Ok(Reply::Null)
                };
            }
            Err(e) => return Err(e.into()),
        };
        let before: Vec<(&str, &Object)> = old.iter().map(|o| (self.id, o.object())).collect();
        core.commit(
            w,
            Record {
                before: &before,
                ..Record::new(Cmd::Set, &logged, self.key, Some(self.id))
            },
        )?;
        Ok(ctx.ok())
    }
}

/// Most fields one snapshot record carries: an object with more is written
/// as its SET followed by FSET continuation records, so that no record a
/// shrink or a full sync writes comes near a reader's argument cap, and no
/// reader holds one huge argument vector.
pub(crate) const RECORD_FIELDS: usize = 1000;

/// Bytes of field names and values after which a record is closed and the
/// next fields go into an FSET continuation, whatever their count.
pub(crate) const RECORD_BYTES: usize = 1 << 20;

/// Bytes after which a batch ends early (after the item that crossed it),
/// so that a batch of large objects holds the read lock and the caller's
/// buffer for a bounded time and size.
pub(crate) const BATCH_BYTES: usize = 4 << 20;

/// Where [`snapshot_batch`] puts its commands: encoded bytes (a shrink's
/// file buffer) or argument vectors (a full sync's queue).
pub(crate) trait SnapshotSink {
    /// Takes one command.
    fn command(&mut self, args: &[Vec<u8>]);
    /// Bytes taken so far, to end a batch at [`BATCH_BYTES`].
    fn bytes(&self) -> usize;
}

impl SnapshotSink for Vec<u8> {
    fn command(&mut self, args: &[Vec<u8>]) {
        encode_command(self, args);
    }
    fn bytes(&self) -> usize {
        self.len()
    }
}

/// Appends the records that recreate up to `max` live items after `after`
/// (in key, id order) to `out`: per item one SET, then FSET continuations
/// when its fields exceed [`RECORD_FIELDS`] or [`RECORD_BYTES`]. Every
/// record of an item is written in the same call, so an item is never split
/// across two lock holds. The batch also ends once `out` has taken
/// [`BATCH_BYTES`]. Returns the last (key, id) written, or `None` when the
/// walk is finished.
pub(crate) fn snapshot_batch<S: SnapshotSink + ?Sized>(
    db: &Database,
    after: Option<(&str, &str)>,
    now_ms: i64,
    max: usize,
    out: &mut S,
) -> Option<(String, String)> {
    let mut last = None;
    let mut cmd: Vec<Vec<u8>> = Vec::with_capacity(16);
    let start_bytes = out.bytes();
    for (n, (key, id, item)) in db.iter_after(after, now_ms).enumerate() {
        if n >= max || out.bytes() - start_bytes >= BATCH_BYTES {
            return last;
        }
        // The object's words go into the SET; they are built first so the
        // fields can be cut into records around them.
        let mut object: Vec<Vec<u8>> = Vec::with_capacity(6);
        if let Some(at) = item.expires_at() {
            object.extend([b"pxat".to_vec(), at.to_string().into_bytes()]);
        }
        match item.object() {
            Object::Point(p) => {
                object.push(b"point".to_vec());
                object.extend([p.lat, p.lon].map(|v| fnum(v).into_bytes()));
                if let Some(z) = p.z {
                    object.push(fnum(z).into_bytes());
                }
            }
            Object::Bounds(b) => {
                object.push(b"bounds".to_vec());
                object
                    .extend([b.sw.lat, b.sw.lon, b.ne.lat, b.ne.lon].map(|v| fnum(v).into_bytes()));
            }
            Object::String(v) => object.extend([b"string".to_vec(), v.as_bytes().to_vec()]),
            other => object.extend([b"object".to_vec(), other.to_json().into_bytes()]),
        }
        let head = |verb: &[u8]| {
            vec![
                verb.to_vec(),
                key.as_bytes().to_vec(),
                id.as_bytes().to_vec(),
            ]
        };
        cmd.clear();
        cmd.extend(head(b"set"));
        let mut in_record = 0usize;
        let mut record_bytes = 0usize;
        let mut first = true;
        for (f, v) in item.fields().iter() {
            if in_record == RECORD_FIELDS || record_bytes >= RECORD_BYTES {
                // Close the current record: the SET gets its object words,
                // an FSET is complete as it is.
                if first {
                    cmd.append(&mut object);
                    first = false;
                }
                out.command(&cmd);
                cmd.clear();
                cmd.extend(head(b"fset"));
                in_record = 0;
                record_bytes = 0;
            }
            // The text reads back to the same value (see `FieldValue::text`).
            let text = v.text();
            record_bytes += f.len() + text.len();
            in_record += 1;
            if first {
                cmd.extend([
                    b"field".to_vec(),
                    f.as_bytes().to_vec(),
                    text.as_bytes().to_vec(),
                ]);
            } else {
                cmd.extend([f.as_bytes().to_vec(), text.as_bytes().to_vec()]);
            }
        }
        if first {
            cmd.append(&mut object);
        }
        out.command(&cmd);
        last = Some((key.to_string(), id.to_string()));
    }
    None
}
