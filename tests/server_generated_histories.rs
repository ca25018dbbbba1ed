//! Generated histories against a real server process: a seeded generator
//! writes points, strings, bounds and GeoJSON with fields and expiries, adds
//! thousands of fields to one object (more than one snapshot record holds),
//! expires, persists, deletes and drops, makes hooks whose `GET` area is then
//! deleted, and interleaves AOFSHRINK, clean restarts, SIGKILL restarts and a
//! follower's full sync. After each of those, the state read back (SCAN of
//! every collection with fields, TTLs within rounding, HOOKS) must equal a
//! model of what the history wrote, and every start must succeed.
//!
//! The seed is printed; `GEN_SEED=<n>` replays one, and `GEN_HISTORIES=<n>`
//! runs more histories than the default.

#[path = "replication_common.rs"]
mod replication_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{run, start, wait_until, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use replication_common::{answers_reads, caught_up, free_port};
use serde_json::{json, Value};

/// An object's shape as the model knows it, compared with the server's
/// reply as JSON (numbers as f64) or as text.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Json(Value),
    Text(String),
}

#[derive(Debug, Clone)]
struct Obj {
    shape: Shape,
    fields: BTreeMap<String, i64>,
    /// When the object expires, if it has an expiry.
    deadline: Option<Instant>,
}

/// How close to its deadline an object's presence is uncertain: the model
/// and the server read the clock at slightly different times.
const SLACK: Duration = Duration::from_millis(1500);

impl Obj {
    /// The object is certainly alive (not within `SLACK` of its deadline).
    fn certain(&self, now: Instant) -> bool {
        self.deadline.is_none_or(|d| d > now + SLACK)
    }
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d + SLACK < now)
    }
}

#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<String, BTreeMap<String, Obj>>,
    hooks: BTreeSet<String>,
}

impl Model {
    /// Forgets objects that have certainly expired.
    fn expire(&mut self, now: Instant) {
        for objs in self.keys.values_mut() {
            objs.retain(|_, o| !o.expired(now));
        }
        self.keys.retain(|_, objs| !objs.is_empty());
    }

    /// A random object that is certainly alive, as (key, id).
    fn pick(&self, rng: &mut StdRng, now: Instant) -> Option<(String, String)> {
        let all: Vec<(String, String)> = self
            .keys
            .iter()
            .flat_map(|(k, objs)| {
                objs.iter()
                    .filter(|(_, o)| o.certain(now))
                    .map(move |(id, _)| (k.clone(), id.clone()))
            })
            .collect();
        (!all.is_empty()).then(|| all[rng.random_range(0..all.len())].clone())
    }
}

/// Numbers as f64, so that `1` and `1.0` compare equal.
fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        other => other.clone(),
    }
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// What the server holds in one collection: id to (shape, fields).
fn scan(
    conn: &mut redis::Connection,
    key: &str,
) -> BTreeMap<String, (Shape, BTreeMap<String, i64>)> {
    let v: redis::Value = redis::cmd("SCAN")
        .arg(key)
        .arg("LIMIT")
        .arg(1_000_000)
        .query(conn)
        .unwrap_or_else(|e| panic!("SCAN {key}: {e}"));
    let redis::Value::Array(top) = v else {
        panic!("SCAN {key}: {v:?}")
    };
    let redis::Value::Array(items) = &top[1] else {
        panic!("SCAN {key}: {top:?}")
    };
    let mut out = BTreeMap::new();
    for item in items {
        let redis::Value::Array(parts) = item else {
            panic!("SCAN item {item:?}")
        };
        let id = text(&parts[0]);
        let raw = text(&parts[1]);
        let shape = match serde_json::from_str::<Value>(&raw) {
            Ok(v) if v.is_object() => Shape::Json(norm(&v)),
            _ => Shape::Text(raw),
        };
        let mut fields = BTreeMap::new();
        if let Some(redis::Value::Array(fs)) = parts.get(2) {
            for pair in fs.chunks(2) {
                let value: f64 = text(&pair[1]).parse().expect("numeric field");
                fields.insert(text(&pair[0]), value as i64);
            }
        }
        out.insert(id, (shape, fields));
    }
    out
}

/// Compares the server's state with the model; `what` names the step.
fn check(server: &Server, model: &mut Model, what: &str) {
    let mut conn = server.client();
    let now = Instant::now();
    model.expire(now);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).expect("KEYS");
    let all: BTreeSet<String> = keys.into_iter().chain(model.keys.keys().cloned()).collect();
    for key in &all {
        let mut got = scan(&mut conn, key);
        let empty = BTreeMap::new();
        let want = model.keys.get(key).unwrap_or(&empty);
        // Objects near their deadline may be there or not.
        for (id, o) in want {
            if !o.certain(now) {
                got.remove(id);
            }
        }
        let want: BTreeMap<String, (Shape, BTreeMap<String, i64>)> = want
            .iter()
            .filter(|(_, o)| o.certain(now))
            .map(|(id, o)| (id.clone(), (o.shape.clone(), o.fields.clone())))
            .collect();
        if got != want {
            let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
            let differ: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .map(|(k, v)| {
                    let g = &got[k];
                    format!(
                        "{k}: want {:?} ({} fields), got {:?} ({} fields)",
                        v.0,
                        v.1.len(),
                        g.0,
                        g.1.len()
                    )
                })
                .take(3)
                .collect();
            panic!("after {what}: collection {key}: missing {missing:?}, extra {extra:?}, differ {differ:?}");
        }
        // TTLs, within rounding and the time the check takes.
        if let Some(objs) = model.keys.get(key) {
            for (id, o) in objs {
                let Some(d) = o.deadline.filter(|_| o.certain(now)) else {
                    continue;
                };
                let ttl: i64 = redis::cmd("TTL")
                    .arg(key)
                    .arg(id)
                    .query(&mut conn)
                    .expect("TTL");
                let left = d.saturating_duration_since(Instant::now()).as_secs_f64();
                assert!(
                    (ttl as f64 - left).abs() <= 2.5,
                    "after {what}: TTL {key} {id} is {ttl}, the model says {left:.1}"
                );
            }
        }
    }
    let hooks: redis::Value = redis::cmd("HOOKS")
        .arg("*")
        .query(&mut conn)
        .expect("HOOKS");
    let redis::Value::Array(hooks) = hooks else {
        panic!("HOOKS: {hooks:?}")
    };
    let names: BTreeSet<String> = hooks
        .iter()
        .map(|h| match h {
            redis::Value::Array(parts) => text(&parts[0]),
            other => panic!("HOOKS item {other:?}"),
        })
        .collect();
    assert_eq!(names, model.hooks, "after {what}: hooks");
}

/// Counts a log line, to wait for the next occurrence.
fn count(server: &Server, needle: &str) -> usize {
    server.log().matches(needle).count()
}

struct History {
    rng: StdRng,
    model: Model,
    next_id: u64,
    steps: usize,
    port: u16,
}

impl History {
    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("o{}", self.next_id)
    }

    fn fields(&mut self, n: usize) -> Vec<(String, i64)> {
        (0..n)
            .map(|_| {
                let name = format!("f{}", self.rng.random_range(0..6000));
                // Zero is how a field is removed; the model keeps values non-zero.
                let v =
                    self.rng.random_range(1..1000) * if self.rng.random_bool(0.5) { 1 } else { -1 };
                (name, v)
            })
            .collect()
    }

    /// One SET of a new object of a random shape.
    fn set(&mut self, conn: &mut redis::Connection) {
        let key = ["fleet", "zone", "misc"][self.rng.random_range(0..3)].to_string();
        let id = self.fresh_id();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(&id);
        let mut fields = BTreeMap::new();
        let nf = self.rng.random_range(0..4);
        for (f, v) in self.fields(nf) {
            cmd.arg("FIELD").arg(&f).arg(v);
            fields.insert(f, v);
        }
        let mut deadline = None;
        match self.rng.random_range(0..6) {
            0 => {
                cmd.arg("EX").arg(1);
                deadline = Some(Instant::now() + Duration::from_secs(1));
            }
            1 => {
                cmd.arg("EX").arg(5000);
                deadline = Some(Instant::now() + Duration::from_secs(5000));
            }
            _ => {}
        }
        // Coordinates in tenths, each computed from an integer, so that the
        // model's numbers are the nearest doubles to their short decimal
        // text (no `a + 1.0` rounding noise for the JSON reader to disagree
        // with by one unit in the last place).
        let (lat_t, lon_t) = (
            self.rng.random_range(-800..800),
            self.rng.random_range(-1700..1700),
        );
        let t = |n: i32| f64::from(n) / 10.0;
        let (lat, lon, lat1, lon1) = (t(lat_t), t(lon_t), t(lat_t + 10), t(lon_t + 10));
        let shape = match (key.as_str(), self.rng.random_range(0..4)) {
            ("zone", _) | (_, 3) => {
                let poly = json!({"type":"Polygon","coordinates":[[[lon,lat],[lon1,lat],[lon1,lat1],[lon,lat]]]});
                cmd.arg("OBJECT").arg(poly.to_string());
                Shape::Json(norm(&poly))
            }
            (_, 0) => {
                cmd.arg("POINT").arg(lat).arg(lon);
                Shape::Json(norm(&json!({"type":"Point","coordinates":[lon,lat]})))
            }
            (_, 1) => {
                let s = format!("s{} with spaces", self.rng.random_range(0..100));
                cmd.arg("STRING").arg(&s);
                Shape::Text(s)
            }
            _ => {
                cmd.arg("BOUNDS").arg(lat).arg(lon).arg(lat1).arg(lon1);
                let (a, b, c, d) = (lon, lat, lon1, lat1);
                Shape::Json(norm(
                    &json!({"type":"Polygon","coordinates":[[[a,b],[c,b],[c,d],[a,d],[a,b]]]}),
                ))
            }
        };
        let r: String = cmd.query(conn).unwrap_or_else(|e| panic!("SET: {e}"));
        assert_eq!(r, "OK");
        self.model.keys.entry(key).or_default().insert(
            id,
            Obj {
                shape,
                fields,
                deadline,
            },
        );
    }

    /// One step of the history; returns a name when the step needs a check.
    fn step(&mut self, server: &mut Option<Server>, dir: &Path) -> Option<String> {
        self.steps += 1;
        let now = Instant::now();
        let s = server.as_ref().expect("server");
        let mut conn = s.client();
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=29 => self.set(&mut conn),
            30..=37 => {
                // Many fields on one object: several FSETs of up to 2000
                // fields each go past what one snapshot record holds.
                let (key, id) = self.model.pick(&mut self.rng, now)?;
                let n = [1, 3, 1500, 2000][self.rng.random_range(0..4)];
                let fs = self.fields(n);
                let mut cmd = redis::cmd("FSET");
                cmd.arg(&key).arg(&id);
                for (f, v) in &fs {
                    cmd.arg(f).arg(*v);
                }
                let _: i64 = cmd.query(&mut conn).unwrap_or_else(|e| panic!("FSET: {e}"));
                let o = self.model.keys.get_mut(&key)?.get_mut(&id)?;
                o.fields.extend(fs);
            }
            38..=43 => {
                let (key, id) = self.model.pick(&mut self.rng, now)?;
                let secs = if self.rng.random_bool(0.5) { 1 } else { 3000 };
                assert_eq!(run(&mut conn, &format!("EXPIRE {key} {id} {secs}")), "1");
                self.model.keys.get_mut(&key)?.get_mut(&id)?.deadline =
                    Some(Instant::now() + Duration::from_secs(secs));
            }
            44..=47 => {
                let (key, id) = self.model.pick(&mut self.rng, now)?;
                run(&mut conn, &format!("PERSIST {key} {id}"));
                self.model.keys.get_mut(&key)?.get_mut(&id)?.deadline = None;
            }
            48..=53 => {
                let (key, id) = self.model.pick(&mut self.rng, now)?;
                assert_eq!(run(&mut conn, &format!("DEL {key} {id}")), "1");
                self.model.keys.get_mut(&key)?.remove(&id);
            }
            54..=55 => {
                // PDEL of the ids that start with one digit.
                let key = ["fleet", "misc"][self.rng.random_range(0..2)];
                let d = self.rng.random_range(1..10);
                run(&mut conn, &format!("PDEL {key} o{d}*"));
                if let Some(objs) = self.model.keys.get_mut(key) {
                    objs.retain(|id, _| !id.starts_with(&format!("o{d}")));
                }
            }
            56 => {
                let key = ["fleet", "misc"][self.rng.random_range(0..2)];
                run(&mut conn, &format!("DROP {key}"));
                self.model.keys.remove(key);
            }
            57..=63 => {
                // A hook whose fence is another object, found by GET.
                let zone: Vec<String> = self
                    .model
                    .keys
                    .get("zone")
                    .map(|z| {
                        z.iter()
                            .filter(|(_, o)| o.certain(now))
                            .map(|(id, _)| id.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let name = format!("h{}", self.rng.random_range(0..20));
                let line = if zone.is_empty() || self.rng.random_bool(0.3) {
                    format!(
                        "SETHOOK {name} http://127.0.0.1:9/x NEARBY fleet FENCE POINT 10 10 5000"
                    )
                } else {
                    let z = &zone[self.rng.random_range(0..zone.len())];
                    format!("SETHOOK {name} http://127.0.0.1:9/x WITHIN fleet FENCE GET zone {z}")
                };
                let r = run(&mut conn, &line);
                assert!(r == "1" || r == "0", "{line}: {r}");
                self.model.hooks.insert(name);
            }
            64..=66 => {
                // Delete an object a hook's area came from: the hook keeps
                // the area it resolved, and must survive every restart.
                let (key, id) = self.model.pick(&mut self.rng, now)?;
                if key != "zone" {
                    return None;
                }
                assert_eq!(run(&mut conn, &format!("DEL zone {id}")), "1");
                self.model.keys.get_mut("zone")?.remove(&id);
            }
            67..=69 => {
                let name = self.model.hooks.iter().next()?.clone();
                assert_eq!(run(&mut conn, &format!("DELHOOK {name}")), "1");
                self.model.hooks.remove(&name);
            }
            70..=74 => {
                // Wait for the short expiries to happen on the server.
                let due: Vec<(String, String)> = self
                    .model
                    .keys
                    .iter()
                    .flat_map(|(k, objs)| {
                        objs.iter()
                            .filter(|(_, o)| {
                                o.deadline.is_some_and(|d| d < now + Duration::from_secs(2))
                            })
                            .map(move |(id, _)| (k.clone(), id.clone()))
                    })
                    .collect();
                if due.is_empty() {
                    return None;
                }
                let gone = wait_until(Duration::from_secs(10), || {
                    due.iter()
                        .all(|(k, id)| run(&mut conn, &format!("EXISTS {k} {id}")) == "0")
                });
                assert!(gone, "objects past their deadline still exist: {due:?}");
                for (k, id) in &due {
                    self.model.keys.get_mut(k)?.remove(id);
                }
                return Some("expiries".into());
            }
            75..=80 => {
                let before = count(s, "aof shrink finished");
                assert_eq!(run(&mut conn, "AOFSHRINK"), "OK");
                assert!(
                    wait_until(Duration::from_secs(30), || count(s, "aof shrink finished")
                        > before
                        || s.log().contains("aof shrink failed")),
                    "shrink did not finish"
                );
                assert!(!s.log().contains("aof shrink failed"), "{}", s.log());
                return Some("AOFSHRINK".into());
            }
            81..=86 => {
                let s = server.take().expect("server");
                *server = Some(s.restart().expect("clean restart"));
                return Some("clean restart".into());
            }
            87..=92 => {
                server.take().expect("server").kill9();
                *server = Some(start(dir, &self.args()).expect("start after SIGKILL"));
                return Some("SIGKILL restart".into());
            }
            _ => {
                // A follower's full sync: a fresh node follows, catches up,
                // and must hold exactly the model's state.
                let fdir = tempfile::tempdir().unwrap();
                let follower = start(fdir.path(), &["--appendfsync", "always"]).unwrap();
                let mut fc = follower.client();
                assert_eq!(
                    run(&mut fc, &format!("FOLLOW 127.0.0.1 {}", self.port)),
                    "OK"
                );
                assert!(
                    caught_up(s, &follower, Duration::from_secs(30)),
                    "follower did not catch up: {}",
                    follower.log()
                );
                assert!(
                    answers_reads(&mut fc, Duration::from_secs(20)),
                    "follower never answered reads: {}",
                    follower.log()
                );
                check(&follower, &mut self.model, "a follower's full sync");
                assert!(
                    !follower.log().contains("replicated command not applied"),
                    "{}",
                    follower.log()
                );
                return None;
            }
        }
        None
    }

    fn args(&self) -> Vec<&'static str> {
        let port: &'static str = Box::leak(self.port.to_string().into_boxed_str());
        vec!["--port", port, "--appendfsync", "always"]
    }
}

#[test]
fn generated_histories_read_back_what_they_wrote() {
    let seed: u64 = std::env::var("GEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let histories: u64 = std::env::var("GEN_HISTORIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    println!("seed {seed} (GEN_SEED={seed} replays it)");
    let mut total_steps = 0;
    let mut checks = 0;
    for h in 0..histories {
        let dir = tempfile::tempdir().unwrap();
        let mut hist = History {
            rng: StdRng::seed_from_u64(seed.wrapping_add(h)),
            model: Model::default(),
            next_id: 0,
            steps: 0,
            port: free_port(),
        };
        let mut server = Some(start(dir.path(), &hist.args()).expect("first start"));
        for _ in 0..40 {
            if let Some(what) = hist.step(&mut server, dir.path()) {
                check(server.as_ref().unwrap(), &mut hist.model, &what);
                checks += 1;
            }
        }
        // Every history ends with both kinds of restart and a final check.
        let s = server
            .take()
            .unwrap()
            .restart()
            .expect("final clean restart");
        check(&s, &mut hist.model, "final clean restart");
        s.kill9();
        let s = start(dir.path(), &hist.args()).expect("final start after SIGKILL");
        check(&s, &mut hist.model, "final SIGKILL restart");
        checks += 2;
        total_steps += hist.steps;
    }
    println!("ran {histories} histories, {total_steps} steps, {checks} state checks (seed {seed})");
}

/// A full sync taken in batches while a writer changes objects on both sides
/// of the batch cursor: once the writer stops and the follower is caught up,
/// its state equals the leader's (the writes between batches arrive through
/// the stream after the snapshot's offset and converge over the snapshot).
#[test]
fn a_full_sync_during_writes_ends_identical() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let leader = start(dir.path(), &["--port", &port_s, "--appendfsync", "always"]).unwrap();
    let mut lc = leader.client();
    // Several batches of 1,000 objects, one of them with continuation records.
    let mut pipe = redis::pipe();
    for i in 0..6000 {
        pipe.cmd("SET")
            .arg("fleet")
            .arg(format!("o{i:05}"))
            .arg("FIELD")
            .arg("speed")
            .arg(i + 1)
            .arg("POINT")
            .arg(f64::from(i % 80))
            .arg(f64::from(i % 170))
            .ignore();
    }
    pipe.query::<()>(&mut lc).unwrap();
    let mut fset = redis::cmd("FSET");
    fset.arg("fleet").arg("o03000");
    for i in 0..1500 {
        fset.arg(format!("g{i:04}")).arg(i + 1);
    }
    let _: i64 = fset.query(&mut lc).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let mut c = leader.client();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(7);
            while !stop.load(Ordering::Relaxed) {
                let id = format!("o{:05}", rng.random_range(0..7000));
                let line = match rng.random_range(0..4) {
                    0 => format!("DEL fleet {id}"),
                    1 => format!("SET fleet {id} POINT 1 2"),
                    2 => format!("FSET fleet {id} speed {}", rng.random_range(1..100)),
                    _ => format!("SET other {id} STRING x"),
                };
                run(&mut c, &line);
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let fdir = tempfile::tempdir().unwrap();
    let follower = start(fdir.path(), &["--appendfsync", "always"]).unwrap();
    let mut fc = follower.client();
    assert_eq!(run(&mut fc, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    // Keep writing until the follower's full sync has finished, so that
    // writes land while its batches are taken.
    assert!(
        wait_until(Duration::from_secs(60), || follower
            .log()
            .contains("full sync finished")),
        "{}",
        follower.log()
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(writes.load(Ordering::Relaxed) > 0);
    assert!(
        caught_up(&leader, &follower, Duration::from_secs(30)),
        "{}",
        follower.log()
    );
    assert!(
        answers_reads(&mut fc, Duration::from_secs(20)),
        "{}",
        follower.log()
    );
    let (fd, ld) = (e2e::dump(&mut fc), e2e::dump(&mut lc));
    replication_common::assert_same_state(&fd, &ld);
    println!(
        "{} writes during the full sync",
        writes.load(Ordering::Relaxed)
    );
}
