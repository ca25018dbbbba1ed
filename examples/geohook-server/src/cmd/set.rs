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

/// Appends the SETs that recreate up to `max` live items after `after` (in
/// key, id order) to `out`; returns the last (key, id) written, or `None`
/// when the walk is finished.
pub(crate) fn snapshot_batch(
    db: &Database,
    after: Option<(&str, &str)>,
    now_ms: i64,
    max: usize,
    out: &mut Vec<u8>,
) -> Option<(String, String)> {
    let mut last = None;
    let mut cmd: Vec<Vec<u8>> = Vec::with_capacity(16);
    for (n, (key, id, item)) in db.iter_after(after, now_ms).enumerate() {
        if n >= max {
            return last;
        }
        cmd.clear();
        cmd.extend([
            b"set".to_vec(),
            key.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
        ]);
        for (f, v) in item.fields().iter() {
            // The text reads back to the same value (see `FieldValue::text`).
            cmd.extend([
                b"field".to_vec(),
                f.as_bytes().to_vec(),
                v.text().as_bytes().to_vec(),
            ]);
        }
        if let Some(at) = item.expires_at() {
            cmd.extend([b"pxat".to_vec(), at.to_string().into_bytes()]);
        }
        match item.object() {
            Object::Point(p) => {
                cmd.push(b"point".to_vec());
                cmd.extend([p.lat, p.lon].map(|v| fnum(v).into_bytes()));
                if let Some(z) = p.z {
                    cmd.push(fnum(z).into_bytes());
                }
            }
            Object::Bounds(b) => {
                cmd.push(b"bounds".to_vec());
                cmd.extend([b.sw.lat, b.sw.lon, b.ne.lat, b.ne.lon].map(|v| fnum(v).into_bytes()));
            }
            Object::String(v) => cmd.extend([b"string".to_vec(), v.as_bytes().to_vec()]),
            other => cmd.extend([b"object".to_vec(), other.to_json().into_bytes()]),
        }
        encode_command(out, &cmd);
        last = Some((key.to_string(), id.to_string()));
    }
    None
}
