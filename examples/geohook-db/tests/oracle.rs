//! Property test: after a random sequence of writes, every search agrees with a
//! naive model that keeps a plain map and answers by scanning all of it.
//!
//! For point objects the model decides WITHIN/INTERSECTS and distances with its
//! own arithmetic (comparisons and the haversine formula), so those answers are
//! independent of the crate's predicates; for other kinds it reuses the crate's
//! predicates and so checks the R-tree, expiry, filters and cursors around them.

mod common;

use std::collections::BTreeMap;

use common::*;
use geohook_db::{Area, Database, Object, Point, SearchOpts, SetCondition, Where};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Set {
        id: u8,
        obj: Obj,
        speed: Option<u8>,
        ttl: Option<u16>,
    },
    Del {
        id: u8,
    },
    Expire {
        id: u8,
        ttl: u16,
    },
    ExpireDue {
        dt: u16,
    },
}

#[derive(Debug, Clone)]
enum Obj {
    Point(f64, f64),
    Rect(f64, f64, f64, f64),
    Tri(f64, f64, f64),
    Str,
}

fn coord() -> impl Strategy<Value = f64> {
    // A 2°×2° world with coarse values, so that ties and shared edges happen.
    (0..=40u8).prop_map(|v| f64::from(v) * 0.05)
}

fn obj() -> impl Strategy<Value = Obj> {
    prop_oneof![
        6 => (coord(), coord()).prop_map(|(a, b)| Obj::Point(a, b)),
        2 => (coord(), coord(), 0..5u8, 0..5u8).prop_map(|(a, b, h, w)| Obj::Rect(a, b, a + f64::from(h) * 0.05, b + f64::from(w) * 0.05)),
        1 => (coord(), coord(), 1..5u8).prop_map(|(a, b, s)| Obj::Tri(a, b, f64::from(s) * 0.05)),
        1 => Just(Obj::Str),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..60u8, obj(), proptest::option::of(0..100u8), proptest::option::weighted(0.2, 1..3000u16))
            .prop_map(|(id, obj, speed, ttl)| Op::Set { id, obj, speed, ttl }),
        2 => (0..60u8).prop_map(|id| Op::Del { id }),
        1 => (0..60u8, 1..3000u16).prop_map(|(id, ttl)| Op::Expire { id, ttl }),
        1 => (0..3000u16).prop_map(|dt| Op::ExpireDue { dt }),
    ]
}

fn build(o: &Obj) -> Object {
    match *o {
        Obj::Point(a, b) => point(a, b),
        Obj::Rect(a, b, c, d) => rect(a, b, c, d),
        Obj::Tri(a, b, s) => geo(&format!(
            r#"{{"type":"Polygon","coordinates":[[[{b},{a}],[{},{a}],[{b},{}],[{b},{a}]]]}}"#,
            b + s,
            a + s
        )),
        Obj::Str => Object::String("s".into()),
    }
}

#[derive(Debug, Clone)]
struct ModelItem {
    obj: Obj,
    object: Object,
    speed: f64,
    expires: Option<i64>,
}

type Model = BTreeMap<String, ModelItem>;

fn haversine(a: &Point, lat: f64, lon: f64) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), lat.to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2)
        + p1.cos() * p2.cos() * ((lon - a.lon).to_radians() / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// The model's own answer where it has one (points), else the crate's predicate.
fn model_within(m: &ModelItem, area: &Area) -> bool {
    match (&m.obj, area) {
        (Obj::Point(a, b), Area::Bounds(r)) => {
            *a >= r.sw.lat && *a <= r.ne.lat && *b >= r.sw.lon && *b <= r.ne.lon
        }
        (Obj::Point(a, b), Area::Circle { center, meters }) => haversine(center, *a, *b) <= *meters,
        _ => m.object.within(area),
    }
}

fn model_intersects(m: &ModelItem, area: &Area) -> bool {
    match (&m.obj, area) {
        (Obj::Point(..), Area::Bounds(_) | Area::Circle { .. }) => model_within(m, area),
        _ => m.object.intersects(area),
    }
}

fn apply(db: &mut Database, model: &mut Model, now: &mut i64, op: &Op) {
    *now += 1;
    let live = |m: &Model, id: &str, now: i64| {
        m.get(id).is_some_and(|i| i.expires.is_none_or(|t| t > now))
    };
    match op {
        Op::Set {
            id,
            obj,
            speed,
            ttl,
        } => {
            let id = format!("id{id:02}");
            let object = build(obj);
            let fields: Vec<(&str, f64)> = speed.iter().map(|s| ("speed", f64::from(*s))).collect();
            let expires = ttl.map(|t| *now + i64::from(t));
            db.set(
                "k",
                &id,
                object.clone(),
                &fields,
                expires,
                SetCondition::Always,
                *now,
            )
            .unwrap();
            let old_speed = if live(model, &id, *now) {
                model[&id].speed
            } else {
                0.0
            };
            let speed = speed.map_or(old_speed, f64::from);
            model.insert(
                id,
                ModelItem {
                    obj: obj.clone(),
                    object,
                    speed,
                    expires,
                },
            );
        }
        Op::Del { id } => {
            let id = format!("id{id:02}");
            let removed = db.del("k", &id, *now).is_some();
            assert_eq!(removed, live(model, &id, *now));
            if removed {
                model.remove(&id);
            }
        }
        Op::Expire { id, ttl } => {
            let id = format!("id{id:02}");
            let t = *now + i64::from(*ttl);
            let ok = db.expire("k", &id, t, *now).is_ok();
            assert_eq!(ok, live(model, &id, *now));
            if ok {
                model.get_mut(&id).unwrap().expires = Some(t);
            }
        }
        Op::ExpireDue { dt } => {
            *now += i64::from(*dt);
            for (_, id, _) in db.expire_due(*now, usize::MAX) {
                let m = model.remove(&*id).expect("expired item was in the model");
                assert!(m.expires.is_some_and(|t| t <= *now));
            }
            assert!(
                model.values().all(|m| m.expires.is_none_or(|t| t > *now)),
                "everything due was removed"
            );
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn paged(
    limit: usize,
    base: &SearchOpts,
    q: impl Fn(&SearchOpts) -> (Vec<String>, u64),
) -> Vec<String> {
    let mut opts = SearchOpts {
        limit: Some(limit),
        ..base.clone()
    };
    let mut out = Vec::new();
    loop {
        let (ids, cursor) = q(&opts);
        out.extend(ids);
        if cursor == 0 {
            return out;
        }
        opts.cursor = cursor;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn searches_match_a_linear_scan(
        ops in proptest::collection::vec(op(), 1..120),
        q in (coord(), coord(), 0..8u8, 0..8u8, 1..40u32, 1..9usize, 0..100u8),
        desc in any::<bool>(),
        bulk_from in proptest::option::of(0..120usize),
    ) {
        let mut db = Database::new();
        let mut model = Model::new();
        let mut now = NOW;
        // With `bulk_from`, the writes from that one on are a bulk load (as a
        // replay at start does): the point index is built once they are done.
        for (i, op) in ops.iter().enumerate() {
            if bulk_from == Some(i) {
                db.defer_point_index();
            }
            apply(&mut db, &mut model, &mut now, op);
        }
        db.build_point_index();
        let (lat, lon, h, w, radius_steps, limit, min_speed) = q;
        let live: Vec<(&String, &ModelItem)> =
            model.iter().filter(|(_, m)| m.expires.is_none_or(|t| t > now)).collect();
        let wheres = vec![Where { field: "speed".into(), min: f64::from(min_speed).into(), max: f64::INFINITY.into() }];
        let filtered = SearchOpts { wheres: wheres.clone(), matches: vec!["id1?".into(), "id*7".into()], ..Default::default() };
        let pass = |id: &str, m: &ModelItem| {
            m.speed >= f64::from(min_speed) && (id.ends_with('7') || (id.starts_with("id1") && id.len() == 4))
        };

        // SCAN, plain and filtered, ascending or descending, whole and paged.
        let mut want: Vec<String> = live.iter().map(|(id, _)| (*id).clone()).collect();
        if desc { want.reverse(); }
        let base = SearchOpts { desc, ..Default::default() };
        prop_assert_eq!(ids(&db.scan("k", &base, now)), want.clone());
        prop_assert_eq!(paged(limit, &base, |o| { let p = db.scan("k", o, now); (ids(&p), p.cursor) }), want);
        let want_f: Vec<String> = live.iter().filter(|(id, m)| pass(id, m)).map(|(id, _)| (*id).clone()).collect();
        prop_assert_eq!(ids(&db.scan("k", &filtered, now)), want_f);

        // WITHIN and INTERSECTS over bounds, circles and a polygon area.
        let center = pt(lat, lon);
        let areas = vec![
            Area::Bounds(bounds(lat, lon, (lat + f64::from(h) * 0.1).min(90.0), (lon + f64::from(w) * 0.1).min(180.0))),
            Area::circle(center, f64::from(radius_steps) * 2_000.0).unwrap(),
            Area::Object(geo(&format!(
                r#"{{"type":"Polygon","coordinates":[[[{lon},{lat}],[{},{lat}],[{lon},{}],[{lon},{lat}]]]}}"#,
                lon + 0.6, lat + 0.6
            ))),
        ];
        for area in &areas {
            let want_w: Vec<String> = live.iter().filter(|(_, m)| model_within(m, area)).map(|(id, _)| (*id).clone()).collect();
            let want_i: Vec<String> = live.iter().filter(|(_, m)| model_intersects(m, area)).map(|(id, _)| (*id).clone()).collect();
            prop_assert_eq!(sorted(ids(&db.within("k", area, &SearchOpts::default(), now))), want_w.clone(), "within {:?}", area);
            prop_assert_eq!(sorted(ids(&db.intersects("k", area, &SearchOpts::default(), now))), want_i, "intersects {:?}", area);
            prop_assert_eq!(
                sorted(paged(limit, &SearchOpts::default(), |o| { let p = db.within("k", area, o, now); (ids(&p), p.cursor) })),
                want_w
            );
            let want_wf: Vec<String> = live.iter().filter(|(id, m)| pass(id, m) && model_within(m, area)).map(|(id, _)| (*id).clone()).collect();
            prop_assert_eq!(sorted(ids(&db.within("k", area, &filtered, now))), want_wf);
        }

        // NEARBY: the k nearest within a radius, by (distance, id).
        let meters = f64::from(radius_steps) * 5_000.0;
        let mut by_dist: Vec<(f64, String)> = live
            .iter()
            .filter(|(_, m)| m.object.is_spatial())
            .map(|(id, m)| {
                let d = match m.obj {
                    Obj::Point(a, b) => haversine(&center, a, b),
                    _ => m.object.distance_to(&center).unwrap(),
                };
                (d, (*id).clone())
            })
            .filter(|(d, _)| *d <= meters)
            .collect();
        by_dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let page = db.nearby("k", &center, Some(meters), &SearchOpts { limit: Some(limit), ..Default::default() }, now);
        let got: Vec<(f64, String)> = page.hits.iter().map(|h| (h.distance.unwrap(), h.id.to_owned())).collect();
        let want_n: Vec<(f64, String)> = by_dist.iter().take(limit).cloned().collect();
        prop_assert_eq!(got.len(), want_n.len());
        for (g, w) in got.iter().zip(&want_n) {
            // Equal distances computed two ways may differ in the last bits, so
            // compare distances with a tolerance and ids where distances differ.
            prop_assert!((g.0 - w.0).abs() < 1e-6, "{:?} vs {:?}", g, w);
        }
        let all_n = paged(limit, &SearchOpts::default(), |o| {
            let p = db.nearby("k", &center, Some(meters), o, now);
            (ids(&p), p.cursor)
        });
        prop_assert_eq!(sorted(all_n), sorted(by_dist.iter().map(|x| x.1.clone()).collect()));

        // The visible state equals the model, item by item.
        let expected: Vec<String> = live.iter().map(|(id, m)| format!("{id} {} {}", m.object.to_json(), m.speed)).collect();
        let actual: Vec<String> = db.iter_after(None, now).map(|(_, id, it)| format!("{id} {} {}", it.object().to_json(), it.fields().value("speed"))).collect();
        prop_assert_eq!(actual, expected);
        let stats = db.stats("k", now).unwrap_or_default();
        prop_assert_eq!(stats.num_objects, live.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// `Bounds::distance_to` (the distance NEARBY reports for a BOUNDS object,
    /// and the ceiling the walk's cheaper lower bound is tested against in
    /// `geom.rs`) is the exact minimum over the rectangle: never more than the
    /// distance to any point in it, and not much less.
    #[test]
    fn rect_distance_is_the_minimum_over_the_rectangle(
        lat in -80.0..80.0f64, lon in -179.0..179.0f64,
        a in -80.0..80.0f64, b in -179.0..179.0f64, h in 0.0..20.0f64, w in 0.0..60.0f64,
    ) {
        let r = bounds(a, b, (a + h).min(90.0), (b + w).min(180.0));
        let p = pt(lat, lon);
        let exact = r.distance_to(&p);
        let steps = 200;
        let mut brute = f64::INFINITY;
        for i in 0..=steps {
            for j in [0, steps] {
                // Edges only: the minimum over a rectangle that does not contain p is on its boundary.
                let (fi, fj) = (f64::from(i) / f64::from(steps), f64::from(j) / f64::from(steps));
                for (qlat, qlon) in [
                    (r.sw.lat + fi * (r.ne.lat - r.sw.lat), r.sw.lon + fj * (r.ne.lon - r.sw.lon)),
                    (r.sw.lat + fj * (r.ne.lat - r.sw.lat), r.sw.lon + fi * (r.ne.lon - r.sw.lon)),
                ] {
                    brute = brute.min(haversine(&p, qlat, qlon));
                }
            }
        }
        if r.contains_point(&p) {
            prop_assert_eq!(exact, 0.0);
        } else {
            prop_assert!(exact <= brute + 1e-6, "bound {} above a real distance {}", exact, brute);
            // The grid step along an edge is at most 60°/200 = 0.3°, about 33 km.
            prop_assert!(brute - exact < 40_000.0, "bound {} far below {}", exact, brute);
        }
    }
}
