//! The data commands, with Tile38's syntax, semantics and reply shapes
//! (coordinates are latitude then longitude).
//!
//! Every write goes through [`Core::commit`] after it changed memory, which
//! appends the command to the log before the reply is sent. What is logged
//! is the command as the client sent it, except that relative TTLs are
//! turned into absolute deadlines (`EX s` becomes `PXAT ms`, `EXPIRE` becomes
//! `PEXPIREAT`), so that a restart does not give an object its full TTL again.

use std::fmt::Write as _;
use std::sync::Arc;

use geohook_db::{
    Area, Bounds, Database, FieldValue, Hit, Item, Object, Page, Point, SearchOpts, SetCondition,
    Where,
};

use smol_str::{SmolStr, StrExt as _};

use crate::aof::Fsync;
use crate::commands::{arity, invalid, Ctx};
use crate::resp::{self, Reply};
use crate::state::{ChangeSink, Core, Shared, When};

/// Tile38's default LIMIT for searches.
const DEFAULT_LIMIT: usize = 100;

/// The data commands that change the database.
pub(crate) fn is_write(name: &str) -> bool {
    matches!(
        name,
        "set" | "del" | "pdel" | "drop" | "flushdb" | "expire" | "pexpireat" | "persist" | "fset"
    )
}

/// The data commands that only read the database.
pub(crate) fn is_read(name: &str) -> bool {
    matches!(
        name,
        "get"
            | "keys"
            | "scan"
            | "nearby"
            | "within"
            | "intersects"
            | "ttl"
            | "exists"
            | "fget"
            | "stats"
            | "bounds"
    )
}

/// Runs a data command from a client.
///
/// # Errors
///
/// The error text for the client.
pub fn run(shared: &Shared, ctx: &Ctx, name: &str, args: &[Vec<u8>]) -> Result<Reply, String> {
    if is_write(name) {
        if shared.is_readonly() {
            return Err("read only".into());
        }
        let mut core = shared.core.write();
        core.writable()?;
        let w = Writer {
            when: When::Deferred,
            sink: shared.changes.as_ref(),
        };
        write(&mut core, &w, ctx, name, args)
    } else if is_read(name) {
        let core = shared.core.read();
        read(&core.db, ctx, name, args)
    } else {
        Err(format!(
            "unknown command '{}'",
            String::from_utf8_lossy(&args[0])
        ))
    }
}

/// Applies one command read back from the log at start.
///
/// # Errors
///
/// An unknown or non-write command, or a command that fails for a reason
/// other than a missing key or id or a blocked NX/XX (those are expected when
/// a shrink's carried-over tail is replayed over its snapshot).
pub fn replay(core: &mut Core, args: &[Vec<u8>]) -> Result<(), String> {
    let name = lower(&args[0]);
    if !is_write(&name) {
        return Err(format!(
            "unknown command '{}'",
            String::from_utf8_lossy(&args[0])
        ));
    }
    let ctx = Ctx {
        json: false,
        start: std::time::Instant::now(),
        now_ms: crate::state::now_ms(),
    };
    let w = Writer {
        when: When::Now(Fsync::No),
        sink: None,
    };
    match write(core, &w, &ctx, &name, args) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.as_str(),
                "key not found" | "id not found" | "id already exists"
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

struct Writer<'a> {
    /// `When::Deferred` for a client's write, which the connection flushes
    /// before it replies; `When::Now` otherwise.
    when: When,
    sink: Option<&'a Arc<dyn ChangeSink>>,
}

impl Writer<'_> {
    fn commit(
        &self,
        core: &mut Core,
        args: &[Vec<u8>],
        key: &str,
        id: Option<&str>,
    ) -> Result<(), String> {
        self.commit_with(core, args, key, id, &[])
    }

    fn commit_with(
        &self,
        core: &mut Core,
        args: &[Vec<u8>],
        key: &str,
        id: Option<&str>,
        before: &[(&str, &Object)],
    ) -> Result<(), String> {
        core.commit_as(self.when, self.sink, args, key, id, before)
    }
}

fn s(a: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(a).map_err(|_| invalid(a))
}

/// The argument in lower case; keywords and command names fit inline, so
/// matching them does not allocate.
fn lower(a: &[u8]) -> SmolStr {
    String::from_utf8_lossy(a).to_ascii_lowercase_smolstr()
}

fn num(a: &[u8]) -> Result<f64, String> {
    geohook_db::parse_number(s(a)?).ok_or_else(|| invalid(a))
}

/// A FIELD value or a WHERE bound: a number, a JSON document or a string,
/// read as Tile38 reads them (see `FieldValue::parse`). It must be UTF-8.
fn field_value(a: &[u8]) -> Result<FieldValue, String> {
    Ok(FieldValue::parse(s(a)?))
}

fn finite(a: &[u8]) -> Result<f64, String> {
    let v = num(a)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(invalid(a))
    }
}

fn uint(a: &[u8]) -> Result<u64, String> {
    s(a)?.parse().map_err(|_| invalid(a))
}

fn db_err(e: geohook_db::Error) -> String {
    e.to_string()
}

/// Go's %v-like formatting of a float: no trailing `.0`.
fn fnum(v: f64) -> String {
    format!("{v}")
}

fn jnum(v: f64) -> String {
    if v.is_finite() {
        fnum(v)
    } else {
        "null".into()
    }
}

fn jstr(v: &str) -> String {
    serde_json::Value::from(v).to_string()
}

/// Cursor over the arguments.
struct Args<'a> {
    a: &'a [Vec<u8>],
    i: usize,
    cmd: &'a str,
}

impl<'a> Args<'a> {
    fn next(&mut self) -> Result<&'a [u8], String> {
        let v = self.a.get(self.i).ok_or_else(|| arity(self.cmd))?;
        self.i += 1;
        Ok(v)
    }
    fn peek_lower(&self) -> Option<SmolStr> {
        self.a.get(self.i).map(|v| lower(v))
    }
    fn done(&self) -> bool {
        self.i >= self.a.len()
    }
}

fn write(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    name: &str,
    args: &[Vec<u8>],
) -> Result<Reply, String> {
    let now = ctx.now_ms as i64;
    match name {
        "set" => cmd_set(core, w, ctx, args),
        "del" => {
            if args.len() != 3 && args.len() != 4 {
                return Err(arity(name));
            }
            let erron404 = match args.get(3) {
                Some(a) if lower(a) == "erron404" => true,
                Some(a) => return Err(invalid(a)),
                None => false,
            };
            let (key, id) = (s(&args[1])?, s(&args[2])?);
            if erron404 {
                core.db.get(key, id, now).map_err(db_err)?;
            }
            let old = core.db.del(key, id, now);
            let deleted = old.is_some();
            if let Some(old) = old {
                w.commit_with(core, &args[..3], key, Some(id), &[(id, old.object())])?;
            }
            Ok(ctx.ok_or_int(deleted as i64))
        }
        "pdel" => {
            if args.len() != 3 {
                return Err(arity(name));
            }
            let (key, pat) = (s(&args[1])?, s(&args[2])?);
            let removed = core.db.pdel(key, pat, now);
            let n = removed.len();
            if n > 0 {
                let before: Vec<(&str, &Object)> =
                    removed.iter().map(|(i, it)| (&**i, it.object())).collect();
                w.commit_with(core, args, key, None, &before)?;
            }
            Ok(ctx.ok_or_int(n as i64))
        }
        "drop" => {
            if args.len() != 2 {
                return Err(arity(name));
            }
            let key = s(&args[1])?;
            let dropped = core.db.drop_key(key).is_some();
            if dropped {
                w.commit(core, args, key, None)?;
            }
            Ok(ctx.ok_or_int(dropped as i64))
        }
        "flushdb" => {
            if args.len() != 1 {
                return Err(arity(name));
            }
            core.db.flushdb();
            w.commit(core, args, "", None)?;
            Ok(ctx.ok())
        }
        "expire" | "pexpireat" => {
            if args.len() != 4 {
                return Err(arity(name));
            }
            let (key, id) = (s(&args[1])?, s(&args[2])?);
            let at = if name == "expire" {
                let secs = finite(&args[3])?;
                now + (secs * 1000.0) as i64
            } else {
                s(&args[3])?.parse::<i64>().map_err(|_| invalid(&args[3]))?
            };
            match core.db.expire(key, id, at, now) {
                Ok(()) => {
                    let logged = [
                        b"pexpireat".to_vec(),
                        args[1].clone(),
                        args[2].clone(),
                        at.to_string().into_bytes(),
                    ];
                    w.commit(core, &logged, key, Some(id))?;
                    Ok(ctx.ok_or_int(1))
                }
                Err(e) if !ctx.json => match e {
                    geohook_db::Error::KeyNotFound { .. }
                    | geohook_db::Error::IdNotFound { .. } => Ok(Reply::Int(0)),
                    e => Err(db_err(e)),
                },
                Err(e) => Err(db_err(e)),
            }
        }
        "persist" => {
            if args.len() != 3 {
                return Err(arity(name));
            }
            let (key, id) = (s(&args[1])?, s(&args[2])?);
            match core.db.persist(key, id, now) {
                Ok(had) => {
                    if had {
                        w.commit(core, args, key, Some(id))?;
                    }
                    Ok(ctx.ok_or_int(had as i64))
                }
                Err(_) if !ctx.json => Ok(Reply::Int(0)),
                Err(e) => Err(db_err(e)),
            }
        }
        "fset" => {
            if args.len() < 5 {
                return Err(arity(name));
            }
            let (key, id) = (s(&args[1])?, s(&args[2])?);
            let mut i = 3;
            let xx = lower(&args[3]) == "xx";
            if xx {
                i += 1;
            }
            let rest = &args[i..];
            if rest.is_empty() || !rest.len().is_multiple_of(2) {
                return Err(arity(name));
            }
            let mut fields = Vec::with_capacity(rest.len() / 2);
            for pair in rest.chunks(2) {
                fields.push((s(&pair[0])?, field_value(&pair[1])?));
            }
            let changed = core.db.fset(key, id, &fields, xx, now).map_err(db_err)?;
            if changed > 0 {
                w.commit(core, args, key, Some(id))?;
            }
            Ok(ctx.ok_or_int(changed as i64))
        }
        _ => Err(format!("unknown command '{name}'")),
    }
}

fn cmd_set(core: &mut Core, w: &Writer<'_>, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, String> {
    if args.len() < 4 {
        return Err(arity("set"));
    }
    let now = ctx.now_ms as i64;
    let key = s(&args[1])?;
    let id = s(&args[2])?;
    let mut a = Args {
        a: args,
        i: 3,
        cmd: "set",
    };
    let mut fields: Vec<(&str, FieldValue)> = Vec::new();
    let mut expires: Option<i64> = None;
    let mut ex_at: Option<usize> = None;
    let mut cond = SetCondition::Always;
    let object = loop {
        let word = a.next()?;
        match lower(word).as_str() {
            "field" => {
                let n = s(a.next()?)?;
                let v = a.next()?;
                fields.push((n, field_value(v)?));
            }
            "ex" => {
                ex_at = Some(a.i - 1);
                let secs = finite(a.next()?)?;
                expires = Some(now + (secs * 1000.0) as i64);
            }
            "pxat" => {
                let v = a.next()?;
                expires = Some(s(v)?.parse::<i64>().map_err(|_| invalid(v))?);
            }
            "nx" => {
                if cond == SetCondition::Xx {
                    return Err(invalid(word));
                }
                cond = SetCondition::Nx;
            }
            "xx" => {
                if cond == SetCondition::Nx {
                    return Err(invalid(word));
                }
                cond = SetCondition::Xx;
            }
            "point" => {
                let lat = finite(a.next()?)?;
                let lon = finite(a.next()?)?;
                let p = match a.peek_lower() {
                    Some(_) if a.a.len() - a.i == 1 => {
                        let z = finite(a.next()?)?;
                        Point::with_z(lat, lon, z)
                    }
                    _ => Point::new(lat, lon),
                };
                break Object::Point(p.map_err(db_err)?);
            }
            "bounds" => {
                let v = [
                    finite(a.next()?)?,
                    finite(a.next()?)?,
                    finite(a.next()?)?,
                    finite(a.next()?)?,
                ];
                break Object::Bounds(Box::new(
                    Bounds::new(v[0], v[1], v[2], v[3]).map_err(db_err)?,
                ));
            }
            "object" => {
                let text = s(a.next()?).map_err(|_| "invalid data".to_string())?;
                break Object::from_geojson(text).map_err(db_err)?;
            }
            "hash" => {
                let h = s(a.next()?)?;
                break Object::from_geohash(h).map_err(db_err)?;
            }
            "string" => {
                let v = s(a.next()?)?;
                break Object::String(v.into());
            }
            _ => return Err(invalid(word)),
        }
    };
    if !a.done() {
        return Err(invalid(&args[a.i]));
    }
    let old = match core.db.set(key, id, object, &fields, expires, cond, now) {
        Ok(old) => old,
        Err(
            e @ (geohook_db::Error::IdExists { .. }
            | geohook_db::Error::KeyNotFound { .. }
            | geohook_db::Error::IdNotFound { .. }),
        ) if cond != SetCondition::Always => {
            return if ctx.json {
                Err(db_err(e))
            } else {
                Ok(Reply::Null)
            };
        }
        Err(e) => return Err(db_err(e)),
    };
    let before: Vec<(&str, &Object)> = old.iter().map(|o| (id, o.object())).collect();
    match (ex_at, expires) {
        (Some(i), Some(at)) => {
            let mut logged = args.to_vec();
            logged[i] = b"pxat".to_vec();
            logged[i + 1] = at.to_string().into_bytes();
            w.commit_with(core, &logged, key, Some(id), &before)?;
        }
        _ => w.commit_with(core, args, key, Some(id), &before)?,
    }
    Ok(ctx.ok())
}

fn point_resp(p: &Point) -> Reply {
    let mut v = vec![Reply::bulk(fnum(p.lat)), Reply::bulk(fnum(p.lon))];
    if let Some(z) = p.z {
        v.push(Reply::bulk(fnum(z)));
    }
    Reply::Array(v)
}

fn point_json(p: &Point) -> String {
    match p.z {
        Some(z) => format!(
            "{{\"lat\":{},\"lon\":{},\"z\":{}}}",
            jnum(p.lat),
            jnum(p.lon),
            jnum(z)
        ),
        None => format!("{{\"lat\":{},\"lon\":{}}}", jnum(p.lat), jnum(p.lon)),
    }
}

fn bounds_resp(b: &Bounds) -> Reply {
    Reply::Array(vec![
        Reply::Array(vec![
            Reply::bulk(fnum(b.sw.lat)),
            Reply::bulk(fnum(b.sw.lon)),
        ]),
        Reply::Array(vec![
            Reply::bulk(fnum(b.ne.lat)),
            Reply::bulk(fnum(b.ne.lon)),
        ]),
    ])
}

fn bounds_json(b: &Bounds) -> String {
    format!(
        "{{\"sw\":{},\"ne\":{}}}",
        point_json(&Point { z: None, ..b.sw }),
        point_json(&Point { z: None, ..b.ne })
    )
}

fn no_position() -> String {
    "object has no position".to_string()
}

/// What a search or GET returns per item.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    Count,
    Ids,
    Objects,
    Points,
    Bounds,
    Hashes(usize),
}

fn precision(a: &[u8]) -> Result<usize, String> {
    let p: usize = s(a)?.parse().map_err(|_| invalid(a))?;
    if !(1..=12).contains(&p) {
        return Err(invalid(a));
    }
    Ok(p)
}

fn read(db: &Database, ctx: &Ctx, name: &str, args: &[Vec<u8>]) -> Result<Reply, String> {
    let now = ctx.now_ms as i64;
    match name {
        "get" => cmd_get(db, ctx, args),
        "keys" => {
            if args.len() != 2 {
                return Err(arity(name));
            }
            let keys = db.keys(s(&args[1])?, now);
            if ctx.json {
                let list: Vec<String> = keys.iter().map(|k| jstr(k)).collect();
                Ok(ctx.ok_json(&format!(",\"keys\":[{}]", list.join(","))))
            } else {
                Ok(Reply::Array(keys.into_iter().map(Reply::bulk).collect()))
            }
        }
        "exists" => {
            if args.len() != 3 {
                return Err(arity(name));
            }
            let e = db.exists(s(&args[1])?, s(&args[2])?, now);
            Ok(if ctx.json {
                ctx.ok_json(&format!(",\"exists\":{e}"))
            } else {
                Reply::Int(e as i64)
            })
        }
        "ttl" => {
            if args.len() != 3 {
                return Err(arity(name));
            }
            match db.ttl(s(&args[1])?, s(&args[2])?, now) {
                Ok(t) => {
                    let secs = t.map(|ms| ms / 1000).unwrap_or(-1);
                    Ok(if ctx.json {
                        ctx.ok_json(&format!(",\"ttl\":{secs}"))
                    } else {
                        Reply::Int(secs)
                    })
                }
                Err(_) if !ctx.json => Ok(Reply::Int(-2)),
                Err(e) => Err(db_err(e)),
            }
        }
        "fget" => {
            if args.len() != 4 {
                return Err(arity(name));
            }
            let v = db
                .fget(s(&args[1])?, s(&args[2])?, s(&args[3])?, now)
                .map_err(db_err)?;
            Ok(if ctx.json {
                ctx.ok_json(&format!(",\"value\":{}", v.to_json()))
            } else {
                Reply::bulk(v.text().into_owned())
            })
        }
        "stats" => {
            if args.len() < 2 {
                return Err(arity(name));
            }
            let mut resp = Vec::new();
            let mut json = Vec::new();
            for k in &args[1..] {
                match db.stats(s(k)?, now) {
                    Some(st) => {
                        resp.push(Reply::Array(vec![
                            Reply::bulk("in_memory_size"),
                            Reply::Int(st.in_memory_size as i64),
                            Reply::bulk("num_objects"),
                            Reply::Int(st.num_objects as i64),
                            Reply::bulk("num_points"),
                            Reply::Int(st.num_points as i64),
                            Reply::bulk("num_strings"),
                            Reply::Int(st.num_strings as i64),
                        ]));
                        json.push(format!(
                            "{{\"in_memory_size\":{},\"num_objects\":{},\"num_points\":{},\"num_strings\":{}}}",
                            st.in_memory_size, st.num_objects, st.num_points, st.num_strings
                        ));
                    }
                    None => {
                        resp.push(Reply::Null);
                        json.push("null".into());
                    }
                }
            }
            Ok(if ctx.json {
                ctx.ok_json(&format!(",\"stats\":[{}]", json.join(",")))
            } else {
                Reply::Array(resp)
            })
        }
        "bounds" => {
            if args.len() != 2 {
                return Err(arity(name));
            }
            let key = s(&args[1])?;
            let mut acc: Option<Bounds> = None;
            if let Some(col) = db.collection(key) {
                for (_, item) in col.iter(now) {
                    if let Some(b) = item.object().bounds() {
                        acc = Some(match acc {
                            None => b,
                            Some(a) => Bounds {
                                sw: Point {
                                    lat: a.sw.lat.min(b.sw.lat),
                                    lon: a.sw.lon.min(b.sw.lon),
                                    z: None,
                                },
                                ne: Point {
                                    lat: a.ne.lat.max(b.ne.lat),
                                    lon: a.ne.lon.max(b.ne.lon),
                                    z: None,
                                },
                            },
                        });
                    }
                }
            }
            match acc {
                None if ctx.json => Err("key not found".into()),
                None => Ok(Reply::Null),
                // Tile38's BOUNDS command replies lon first, unlike GET … BOUNDS.
                Some(b) if !ctx.json => Ok(Reply::Array(vec![
                    Reply::Array(vec![Reply::bulk(fnum(b.sw.lon)), Reply::bulk(fnum(b.sw.lat))]),
                    Reply::Array(vec![Reply::bulk(fnum(b.ne.lon)), Reply::bulk(fnum(b.ne.lat))]),
                ])),
                Some(b) => Ok(ctx.ok_json(&format!(
                    ",\"bounds\":{{\"type\":\"Polygon\",\"coordinates\":[[[{a},{b_}],[{c},{b_}],[{c},{d}],[{a},{d}],[{a},{b_}]]]}}",
                    a = fnum(b.sw.lon),
                    b_ = fnum(b.sw.lat),
                    c = fnum(b.ne.lon),
                    d = fnum(b.ne.lat)
                ))),
            }
        }
        "scan" | "nearby" | "within" | "intersects" => search(db, ctx, name, args),
        _ => Err(format!("unknown command '{name}'")),
    }
}

fn fields_resp(item: &Item) -> Option<Reply> {
    let f = item.fields();
    if f.is_empty() {
        return None;
    }
    Some(Reply::Array(
        f.iter()
            .flat_map(|(n, v)| [Reply::bulk(n), Reply::bulk(v.text().into_owned())])
            .collect(),
    ))
}

fn fields_json_map(item: &Item) -> String {
    let parts: Vec<String> = item
        .fields()
        .iter()
        .map(|(n, v)| format!("{}:{}", jstr(n), v.to_json()))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn cmd_get(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, String> {
    if args.len() < 3 {
        return Err(arity("get"));
    }
    let now = ctx.now_ms as i64;
    let (key, id) = (s(&args[1])?, s(&args[2])?);
    let mut a = Args {
        a: args,
        i: 3,
        cmd: "get",
    };
    let mut withfields = false;
    let mut out = Output::Objects;
    while !a.done() {
        let word = a.next()?;
        match lower(word).as_str() {
            "withfields" => withfields = true,
            "object" => out = Output::Objects,
            "point" => out = Output::Points,
            "bounds" => out = Output::Bounds,
            "hash" => out = Output::Hashes(precision(a.next()?)?),
            _ => return Err(invalid(word)),
        }
        if out != Output::Objects && !a.done() {
            return Err(invalid(&args[a.i]));
        }
    }
    let item = match db.get(key, id, now) {
        Ok(i) => i,
        Err(_) if !ctx.json => return Ok(Reply::Null),
        Err(e) => return Err(db_err(e)),
    };
    let obj = item.object();
    if ctx.json {
        let body = match out {
            Output::Points => format!(
                ",\"point\":{}",
                point_json(&obj.center().ok_or_else(no_position)?)
            ),
            Output::Bounds => format!(
                ",\"bounds\":{}",
                bounds_json(&obj.bounds().ok_or_else(no_position)?)
            ),
            Output::Hashes(p) => format!(",\"hash\":{}", jstr(&obj.geohash(p).map_err(db_err)?)),
            _ => format!(",\"object\":{}", obj.to_json()),
        };
        let fields = if withfields && !item.fields().is_empty() {
            format!(",\"fields\":{}", fields_json_map(item))
        } else {
            String::new()
        };
        return Ok(ctx.ok_json(&format!("{body}{fields}")));
    }
    let value = match out {
        Output::Points => point_resp(&obj.center().ok_or_else(no_position)?),
        Output::Bounds => bounds_resp(&obj.bounds().ok_or_else(no_position)?),
        Output::Hashes(p) => Reply::bulk(obj.geohash(p).map_err(db_err)?),
        _ => Reply::bulk(obj.to_resp_text().into_owned()),
    };
    match (withfields, fields_resp(item)) {
        (true, Some(f)) => Ok(Reply::Array(vec![value, f])),
        _ => Ok(value),
    }
}

fn parse_area(db: &Database, a: &mut Args<'_>, now: i64) -> Result<Area, String> {
    let word = a.next()?;
    let area = match lower(word).as_str() {
        "point" => {
            let p = Point::new(finite(a.next()?)?, finite(a.next()?)?).map_err(db_err)?;
            Area::point(p, None).map_err(db_err)?
        }
        "circle" => {
            let p = Point::new(finite(a.next()?)?, finite(a.next()?)?).map_err(db_err)?;
            Area::circle(p, finite(a.next()?)?).map_err(db_err)?
        }
        "bounds" => {
            let v = [
                finite(a.next()?)?,
                finite(a.next()?)?,
                finite(a.next()?)?,
                finite(a.next()?)?,
            ];
            Area::Bounds(Bounds::new(v[0], v[1], v[2], v[3]).map_err(db_err)?)
        }
        "object" => {
            let text = s(a.next()?).map_err(|_| "invalid data".to_string())?;
            Area::Object(Object::from_geojson(text).map_err(db_err)?)
        }
        "hash" => Area::hash(s(a.next()?)?).map_err(db_err)?,
        "get" => {
            let (k, i) = (s(a.next()?)?, s(a.next()?)?);
            Area::Object(db.get(k, i, now).map_err(db_err)?.object().clone())
        }
        _ => return Err(invalid(word)),
    };
    Ok(area)
}

fn search(db: &Database, ctx: &Ctx, name: &str, args: &[Vec<u8>]) -> Result<Reply, String> {
    if args.len() < 2 {
        return Err(arity(name));
    }
    let now = ctx.now_ms as i64;
    let key = s(&args[1])?;
    let mut a = Args {
        a: args,
        i: 2,
        cmd: name,
    };
    let mut opts = SearchOpts::default();
    let mut limit: Option<usize> = None;
    let mut out = Output::Objects;
    let mut nofields = false;
    let mut distance = false;
    // Options come first, then the output type, then (for spatial searches)
    // the area; SCAN ends after the output.
    while let Some(word) = a.peek_lower() {
        match word.as_str() {
            "cursor" => {
                a.next()?;
                opts.cursor = uint(a.next()?)?;
            }
            "limit" => {
                a.next()?;
                limit = Some(uint(a.next()?)? as usize);
            }
            "match" => {
                a.next()?;
                opts.matches.push(s(a.next()?)?.to_string());
            }
            "where" => {
                a.next()?;
                let field = s(a.next()?)?.to_string();
                let min = field_value(a.next()?)?;
                let max = field_value(a.next()?)?;
                opts.wheres.push(Where { field, min, max });
            }
            "asc" => {
                a.next()?;
                opts.desc = false;
            }
            "desc" => {
                a.next()?;
                opts.desc = true;
            }
            "nofields" => {
                a.next()?;
                nofields = true;
            }
            "distance" if name == "nearby" => {
                a.next()?;
                distance = true;
            }
            "count" => {
                a.next()?;
                out = Output::Count;
            }
            "ids" => {
                a.next()?;
                out = Output::Ids;
            }
            "objects" => {
                a.next()?;
                out = Output::Objects;
            }
            "points" => {
                a.next()?;
                out = Output::Points;
            }
            "bounds" if name == "scan" || a.a.len() - a.i != 5 => {
                a.next()?;
                out = Output::Bounds;
            }
            "hashes" => {
                a.next()?;
                out = Output::Hashes(precision(a.next()?)?);
            }
            _ => break,
        }
    }
    opts.limit = match out {
        Output::Count => limit,
        _ => Some(limit.unwrap_or(DEFAULT_LIMIT)),
    };
    let page: Page<'_> = match name {
        "scan" => db.scan(key, &opts, now),
        "nearby" => {
            let word = a.next()?;
            if lower(word) != "point" {
                return Err(invalid(word));
            }
            let p = Point::new(finite(a.next()?)?, finite(a.next()?)?).map_err(db_err)?;
            let meters = if a.done() {
                None
            } else {
                Some(finite(a.next()?)?)
            };
            if meters.is_some_and(|m| m < 0.0) {
                return Err(invalid(&args[a.i - 1]));
            }
            db.nearby(key, &p, meters, &opts, now)
        }
        "within" => {
            let area = parse_area(db, &mut a, now)?;
            db.within(key, &area, &opts, now)
        }
        _ => {
            let area = parse_area(db, &mut a, now)?;
            db.intersects(key, &area, &opts, now)
        }
    };
    if !a.done() {
        return Err(invalid(&args[a.i]));
    }
    render(ctx, &page, out, nofields, distance)
}

fn render(
    ctx: &Ctx,
    page: &Page<'_>,
    out: Output,
    nofields: bool,
    distance: bool,
) -> Result<Reply, String> {
    let count = page.hits.len();
    if out == Output::Count {
        return Ok(if ctx.json {
            ctx.ok_json(&format!(",\"count\":{count},\"cursor\":{}", page.cursor))
        } else {
            Reply::Int(count as i64)
        });
    }
    let with_fields =
        !nofields && out != Output::Ids && page.hits.iter().any(|h| !h.item.fields().is_empty());
    if ctx.json {
        // The field names of every hit, sorted; each hit lists its values in
        // that order (Tile38's "fields" array).
        let mut names: Vec<&str> = Vec::new();
        if with_fields {
            for h in &page.hits {
                for (n, _) in h.item.fields().iter() {
                    if let Err(i) = names.binary_search(&n) {
                        names.insert(i, n);
                    }
                }
            }
        }
        let mut items = Vec::with_capacity(count);
        for h in &page.hits {
            items.push(json_item(h, out, &names, distance)?);
        }
        let list_name = match out {
            Output::Ids => "ids",
            Output::Points => "points",
            Output::Bounds => "bounds",
            Output::Hashes(_) => "hashes",
            _ => "objects",
        };
        let mut body = String::new();
        if !names.is_empty() {
            let n: Vec<String> = names.iter().map(|n| jstr(n)).collect();
            let _ = write!(body, ",\"fields\":[{}]", n.join(","));
        }
        let _ = write!(
            body,
            ",\"{list_name}\":[{}],\"count\":{count},\"cursor\":{}",
            items.join(","),
            page.cursor
        );
        return Ok(ctx.ok_json(&body));
    }
    // `[cursor, [item, …]]`, written straight into one buffer: a search
    // reply is the hot path, and a tree of replies costs an allocation per
    // hit.
    let mut buf = Vec::with_capacity(24 + count * 24);
    resp::encode_array_header(2, &mut buf);
    Reply::Int(page.cursor as i64).encode(&mut buf);
    resp::encode_array_header(count, &mut buf);
    for h in &page.hits {
        let obj = h.item.object();
        if out == Output::Ids && !distance {
            resp::encode_bulk(h.id.as_bytes(), &mut buf);
            continue;
        }
        let value = match out {
            Output::Ids => None,
            Output::Points => Some(point_resp(&obj.center().ok_or_else(no_position)?)),
            Output::Bounds => Some(bounds_resp(&obj.bounds().ok_or_else(no_position)?)),
            Output::Hashes(p) => Some(Reply::bulk(obj.geohash(p).map_err(db_err)?)),
            _ => Some(Reply::bulk(obj.to_resp_text().into_owned())),
        };
        let dist = if distance {
            h.distance.map(|d| Reply::bulk(fnum(d)))
        } else {
            None
        };
        let item = match (value, dist) {
            (None, None) => Reply::bulk(h.id),
            (None, Some(d)) => Reply::Array(vec![Reply::bulk(h.id), d]),
            (Some(v), d) => {
                let mut row = vec![Reply::bulk(h.id), v];
                if with_fields {
                    if let Some(f) = fields_resp(h.item) {
                        row.push(f);
                    }
                }
                if let Some(d) = d {
                    row.push(d);
                }
                Reply::Array(row)
            }
        };
        item.encode(&mut buf);
    }
    Ok(Reply::Encoded(buf))
}

fn json_item(h: &Hit<'_>, out: Output, names: &[&str], distance: bool) -> Result<String, String> {
    let obj = h.item.object();
    let id = jstr(h.id);
    let dist = match (distance, h.distance) {
        (true, Some(d)) => format!(",\"distance\":{}", jnum(d)),
        _ => String::new(),
    };
    let fields = if names.is_empty() {
        String::new()
    } else {
        let v: Vec<String> = names
            .iter()
            .map(|n| h.item.fields().value(n).to_json())
            .collect();
        format!(",\"fields\":[{}]", v.join(","))
    };
    Ok(match out {
        Output::Ids if dist.is_empty() => id,
        Output::Ids => format!("{{\"id\":{id}{dist}}}"),
        Output::Points => {
            format!(
                "{{\"id\":{id},\"point\":{}{fields}{dist}}}",
                point_json(&obj.center().ok_or_else(no_position)?)
            )
        }
        Output::Bounds => {
            format!(
                "{{\"id\":{id},\"bounds\":{}{fields}{dist}}}",
                bounds_json(&obj.bounds().ok_or_else(no_position)?)
            )
        }
        Output::Hashes(p) => {
            format!(
                "{{\"id\":{id},\"hash\":{}{fields}{dist}}}",
                jstr(&obj.geohash(p).map_err(db_err)?)
            )
        }
        _ => format!("{{\"id\":{id},\"object\":{}{fields}{dist}}}", obj.to_json()),
    })
}

/// Removes up to 10 000 expired objects and logs a `del` for each (as
/// Tile38's background expiry does); returns how many were removed.
pub fn expire_due(shared: &Shared, now_ms: u64) -> u64 {
    let mut core = shared.core.write();
    if core.writable().is_err() {
        return 0;
    }
    let expired = core.db.expire_due(now_ms as i64, 10_000);
    let n = expired.len() as u64;
    for (key, id, item) in expired {
        let args = [
            b"del".to_vec(),
            key.as_bytes().to_vec(),
            id.as_bytes().to_vec(),
        ];
        if let Err(e) = core.commit_as(
            When::Now(shared.opts.fsync),
            shared.changes.as_ref(),
            &args,
            &key,
            Some(&id),
            &[(&id, item.object())],
        ) {
            tracing::error!(error = %e, "could not log an expiry");
            break;
        }
    }
    n
}

/// Number of live objects, for metrics.
pub fn num_objects(db: &Database) -> u64 {
    db.totals(crate::state::now_ms() as i64).totals.num_objects as u64
}

/// Appends `set` commands recreating up to `max` live items after `after`
/// (in key, id order) to `out`; returns the last (key, id) written, or
/// `None` when the walk is finished.
pub fn snapshot_batch(
    db: &Database,
    after: Option<(&str, &str)>,
    now_ms: u64,
    max: usize,
    out: &mut Vec<u8>,
) -> Option<(String, String)> {
    let mut last = None;
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(16);
    for (n, (key, id, item)) in db.iter_after(after, now_ms as i64).enumerate() {
        if n >= max {
            return last;
        }
        args.clear();
        args.push(b"set".to_vec());
        args.push(key.as_bytes().to_vec());
        args.push(id.as_bytes().to_vec());
        for (f, v) in item.fields().iter() {
            args.push(b"field".to_vec());
            args.push(f.as_bytes().to_vec());
            // The text reads back to the same value (see `FieldValue::text`).
            args.push(v.text().as_bytes().to_vec());
        }
        if let Some(at) = item.expires_at() {
            args.push(b"pxat".to_vec());
            args.push(at.to_string().into_bytes());
        }
        match item.object() {
            Object::Point(p) => {
                args.push(b"point".to_vec());
                args.push(fnum(p.lat).into_bytes());
                args.push(fnum(p.lon).into_bytes());
                if let Some(z) = p.z {
                    args.push(fnum(z).into_bytes());
                }
            }
            Object::Bounds(b) => {
                args.push(b"bounds".to_vec());
                for v in [b.sw.lat, b.sw.lon, b.ne.lat, b.ne.lon] {
                    args.push(fnum(v).into_bytes());
                }
            }
            Object::String(v) => {
                args.push(b"string".to_vec());
                args.push(v.as_bytes().to_vec());
            }
            other => {
                args.push(b"object".to_vec());
                args.push(other.to_json().into_bytes());
            }
        }
        crate::resp::encode_command(out, &args);
        last = Some((key.to_string(), id.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aof::Aof;
    use crate::resp::Limits;
    use crate::state::shared_on;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    /// A state with its log in a fresh directory, after the SETs of `lines`.
    fn seeded(lines: &[&str]) -> (tempfile::TempDir, Shared) {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_on(&dir.path().join("a.aof"));
        for line in lines {
            run(&shared, &ctx(), "set", &args(line)).unwrap();
        }
        (dir, shared)
    }

    fn ctx() -> Ctx {
        Ctx {
            json: false,
            start: std::time::Instant::now(),
            now_ms: crate::state::now_ms(),
        }
    }

    #[test]
    fn a_failed_write_is_reported_and_stops_all_later_writes() {
        // Every write to /dev/full fails with ENOSPC, like a full disk.
        let shared = shared_on(std::path::Path::new("/dev/full"));
        let a = args("SET fleet a POINT 1 1");
        // A client's write is committed to the pending buffer; the flush the
        // connection makes before replying is where the disk says no.
        run(&shared, &ctx(), "set", &a).unwrap();
        let err = shared.flush_aof().unwrap_err();
        assert!(
            err.starts_with("aof write failed, writes disabled: write /dev/full:"),
            "{err}"
        );
        // The next write is refused before it touches memory.
        let err = run(&shared, &ctx(), "set", &args("SET fleet b POINT 1 1")).unwrap_err();
        assert!(
            err.starts_with("aof write failed, writes disabled"),
            "{err}"
        );
        let n = shared
            .core
            .read()
            .db
            .totals(ctx().now_ms as i64)
            .totals
            .num_objects;
        assert_eq!(n, 1, "only the write whose append failed reached memory");
        // Reads still work.
        assert_eq!(
            run(&shared, &ctx(), "exists", &args("EXISTS fleet b")).unwrap(),
            Reply::Int(0)
        );
    }

    #[test]
    fn logged_ttls_are_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appendonly.aof");
        let shared = shared_on(&path);
        let c = ctx();
        run(&shared, &c, "set", &args("SET fleet a EX 10 POINT 1 1")).unwrap();
        run(&shared, &c, "expire", &args("EXPIRE fleet a 20")).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"",
            "pending until the flush"
        );
        shared.flush_aof().unwrap();
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let at10 = (c.now_ms + 10_000).to_string();
        let at20 = (c.now_ms + 20_000).to_string();
        assert!(
            text.contains(&format!("$4\r\npxat\r\n${}\r\n{at10}\r\n", at10.len())),
            "{text:?}"
        );
        assert!(
            text.contains(&format!(
                "$9\r\npexpireat\r\n$5\r\nfleet\r\n$1\r\na\r\n${}\r\n{at20}",
                at20.len()
            )),
            "{text:?}"
        );
        assert!(!text.contains("EX\r\n"), "{text:?}");
    }

    #[test]
    fn search_replies_are_encoded_in_place_as_resp() {
        let (_dir, shared) = seeded(&[
            "SET k a POINT 33 -115",
            "SET k b FIELD speed 5 POINT 33.001 -115",
            "SET k c POINT 33.002 -115",
        ]);
        let c = ctx();
        let wire = |line: &str| {
            let mut out = Vec::new();
            run(&shared, &c, "nearby", &args(line))
                .unwrap()
                .encode(&mut out);
            String::from_utf8(out).unwrap()
        };
        // A full page: the cursor points past its last hit.
        assert_eq!(
            wire("NEARBY k LIMIT 2 IDS POINT 33 -115 1000"),
            "*2\r\n:2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            wire("NEARBY k IDS POINT 33 -115 120"),
            "*2\r\n:0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            wire("NEARBY k LIMIT 1 DISTANCE IDS POINT 33.001 -115"),
            "*2\r\n:1\r\n*1\r\n*2\r\n$1\r\nb\r\n$1\r\n0\r\n"
        );
        assert_eq!(
            wire("NEARBY k POINTS POINT 33.001 -115 10"),
            "*2\r\n:0\r\n*1\r\n*3\r\n$1\r\nb\r\n*2\r\n$6\r\n33.001\r\n$4\r\n-115\r\n\
             *2\r\n$5\r\nspeed\r\n$1\r\n5\r\n"
        );
        assert_eq!(wire("NEARBY k IDS POINT 0 0 10"), "*2\r\n:0\r\n*0\r\n");
    }

    #[test]
    fn snapshot_batches_recreate_the_state() {
        let (dir, shared) = seeded(&[
            "SET k p FIELD speed 3 POINT 33 -115 7",
            "SET k b BOUNDS 1 2 3 4",
            "SET k s EX 100 STRING hello",
            "SET k2 o OBJECT {\"type\":\"LineString\",\"coordinates\":[[1,2],[3,4]]}",
        ]);
        let c = ctx();
        let core = shared.core.read();
        let mut out = Vec::new();
        let mut after: Option<(String, String)> = None;
        // Batches of one exercise the resume-after logic.
        loop {
            let next = snapshot_batch(
                &core.db,
                after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())),
                c.now_ms,
                1,
                &mut out,
            );
            match next {
                Some(l) => after = Some(l),
                None => break,
            }
        }
        let mut copy = Core {
            db: Database::new(),
            aof: Aof::open(&dir.path().join("b.aof")).unwrap(),
            loading: true,
        };
        let mut rest = &out[..];
        while let Some((cmd, used)) = crate::resp::parse(rest, &Limits::default()).unwrap() {
            replay(&mut copy, &cmd).unwrap();
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        let now = c.now_ms as i64;
        assert_eq!(copy.db.canonical_dump(now), core.db.canonical_dump(now));
    }
}
