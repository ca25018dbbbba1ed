//! SET conditions and field merging, FSET/FGET, DEL, PDEL, DROP, KEYS, FLUSHDB
//! and STATS.

mod common;

use common::*;
use geohook_db::{Database, Error, FieldValue, Object, SearchOpts, SetCondition, Where};

fn set<V: Clone + Into<FieldValue>>(
    db: &mut Database,
    id: &str,
    fields: &[(&str, V)],
    cond: SetCondition,
) -> Result<Option<String>, Error> {
    db.set("k", id, point(1.0, 2.0), fields, None, cond, NOW)
        .map(|prev| prev.map(|i| i.object().to_json()))
}

#[test]
fn nx_xx() {
    use SetCondition::*;
    let mut db = Database::new();
    let cases: Vec<(&str, SetCondition, Result<bool, &str>)> = vec![
        ("a", Xx, Err("key not found")),
        ("a", Nx, Ok(false)),
        ("a", Nx, Err("id already exists")),
        ("a", Xx, Ok(true)),
        ("b", Xx, Err("id not found")),
        ("a", Always, Ok(true)),
        ("b", Always, Ok(false)),
    ];
    for (id, cond, want) in cases {
        let got = set::<f64>(&mut db, id, &[], cond);
        match (got, want) {
            (Ok(prev), Ok(had)) => assert_eq!(prev.is_some(), had, "{id} {cond:?}"),
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg, "{id} {cond:?}"),
            (got, want) => panic!("{id} {cond:?}: got {got:?}, want {want:?}"),
        }
    }
    assert_eq!(db.keys("*", NOW), ["k"]);
}

#[test]
fn set_merges_fields_and_validates_them() {
    let mut db = Database::new();
    set(
        &mut db,
        "a",
        &[("speed", 10.0), ("age", 3.0)],
        SetCondition::Always,
    )
    .unwrap();
    set(&mut db, "a", &[("speed", 20.0)], SetCondition::Always).unwrap();
    let item = db.get("k", "a", NOW).unwrap();
    assert_eq!(
        item.fields()
            .iter()
            .map(|(n, v)| (n, v.clone()))
            .collect::<Vec<_>>(),
        [("age", 3.0.into()), ("speed", 20.0.into())]
    );
    for bad in ["z", "lat", "lon", ""] {
        assert!(matches!(
            set(&mut db, "a", &[(bad, 1.0)], SetCondition::Always),
            Err(Error::ReservedField { .. })
        ));
    }
    assert!(matches!(
        set(&mut db, "a", &[("x", f64::NAN)], SetCondition::Always),
        Err(Error::InvalidFieldValue { .. })
    ));
    assert_eq!(
        db.get("k", "a", NOW).unwrap().fields().len(),
        2,
        "a failed SET changes nothing"
    );
}

#[test]
fn fset_fget() {
    let mut db = Database::new();
    set(&mut db, "a", &[("speed", 10.0)], SetCondition::Always).unwrap();
    /// id, fields, XX, expected changed count or error text.
    type Case<'a> = (&'a str, Vec<(&'a str, f64)>, bool, Result<usize, &'a str>);
    let cases: Vec<Case<'_>> = vec![
        ("a", vec![("speed", 10.0)], false, Ok(0)),
        ("a", vec![("speed", 11.0), ("age", 2.0)], false, Ok(2)),
        ("a", vec![("age", 0.0)], false, Ok(1)),
        ("a", vec![("never", 0.0)], false, Ok(0)),
        ("b", vec![("speed", 1.0)], false, Err("id not found")),
        ("b", vec![("speed", 1.0)], true, Ok(0)),
        (
            "a",
            vec![("lat", 1.0)],
            false,
            Err("invalid argument 'lat'"),
        ),
    ];
    for (id, fields, xx, want) in cases {
        let got = db
            .fset("k", id, &fields, xx, NOW)
            .map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(String::from), "{id} {fields:?} xx={xx}");
    }
    assert_eq!(db.fget("k", "a", "speed", NOW), Ok(11.0.into()));
    assert_eq!(db.fget("k", "a", "age", NOW), Ok(0.0.into()));
    assert!(matches!(
        db.fset("nokey", "a", &[("s", 1.0)], false, NOW),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(db.get("k", "b", NOW).is_err(), "FSET XX does not create");
}

#[test]
fn del_pdel_drop_flush() {
    let mut db = Database::new();
    for id in ["truck1", "truck2", "truck10", "car1", "bus"] {
        put(&mut db, "fleet", id, point(1.0, 1.0));
    }
    put(&mut db, "other", "x", point(1.0, 1.0));
    assert!(db.del("fleet", "bus", NOW).is_some());
    assert!(db.del("fleet", "bus", NOW).is_none());
    assert!(db.del("nokey", "bus", NOW).is_none());

    let removed: Vec<String> = db
        .pdel("fleet", "truck?", NOW)
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(removed, ["truck1", "truck2"]);
    assert_eq!(
        ids(&db.scan("fleet", &Default::default(), NOW)),
        ["car1", "truck10"]
    );
    assert!(db.pdel("nokey", "*", NOW).is_empty());

    assert_eq!(db.keys("*", NOW), ["fleet", "other"]);
    assert_eq!(db.keys("fl*", NOW), ["fleet"]);
    assert_eq!(db.keys("x", NOW), Vec::<&str>::new());

    let dropped = db.drop_key("fleet").expect("fleet existed");
    assert_eq!(dropped.len(NOW), 2);
    assert!(db.drop_key("fleet").is_none());
    assert_eq!(db.keys("*", NOW), ["other"]);

    db.del("other", "x", NOW);
    assert!(
        db.collection("other").is_none(),
        "deleting the last item removes the key"
    );

    put(&mut db, "a", "1", point(1.0, 1.0));
    db.flushdb();
    assert!(db.keys("*", NOW).is_empty());
}

#[test]
fn stats_follow_every_write() {
    let mut db = Database::new();
    put(&mut db, "k", "p", point(1.0, 1.0));
    put(&mut db, "k", "b", rect(0.0, 0.0, 1.0, 1.0));
    put(
        &mut db,
        "k",
        "g",
        geo(r#"{"type":"LineString","coordinates":[[1,2],[3,4],[5,6]]}"#),
    );
    put(&mut db, "k", "s", Object::String("hello".into()));
    let s = db.stats("k", NOW).unwrap();
    assert_eq!((s.num_objects, s.num_points, s.num_strings), (4, 6, 1));
    assert!(s.in_memory_size > 0);
    put(&mut db, "k", "s", point(1.0, 1.0));
    db.del("k", "g", NOW);
    let s2 = db.stats("k", NOW).unwrap();
    assert_eq!((s2.num_objects, s2.num_points, s2.num_strings), (3, 4, 0));
    assert!(s2.in_memory_size < s.in_memory_size);
    let t = db.totals(NOW);
    assert_eq!((t.num_collections, t.totals), (1, s2));
    db.del("k", "p", NOW);
    db.del("k", "b", NOW);
    db.del("k", "s", NOW);
    assert_eq!(
        db.totals(NOW).totals.in_memory_size,
        0,
        "the estimate returns to zero"
    );
}

#[test]
fn iteration_in_batches_sees_every_item_once() {
    let mut db = Database::new();
    for k in ["a", "b", "c"] {
        for i in 0..25 {
            put(&mut db, k, &format!("{i:02}"), point(1.0, 1.0));
        }
    }
    let all: Vec<(String, String)> = db
        .iter_after(None, NOW)
        .map(|(k, i, _)| (k.into(), i.into()))
        .collect();
    assert_eq!(all.len(), 75);
    let mut batched = Vec::new();
    let mut last: Option<(String, String)> = None;
    loop {
        let batch: Vec<(String, String)> = db
            .iter_after(last.as_ref().map(|(k, i)| (k.as_str(), i.as_str())), NOW)
            .take(7)
            .map(|(k, i, _)| (k.into(), i.into()))
            .collect();
        if batch.is_empty() {
            break;
        }
        last = batch.last().cloned();
        batched.extend(batch);
    }
    assert_eq!(batched, all);
    let dump = db.canonical_dump(NOW);
    assert_eq!(dump.lines().count(), 75);
    assert!(dump.starts_with(r#""a" "00" {"type":"Point","coordinates":[1,1]}"#));
}

#[test]
fn string_and_json_fields() {
    let mut db = Database::new();
    let text = |t: &str| FieldValue::parse(t);
    set(
        &mut db,
        "a",
        &[
            ("hello", text("world")),
            ("hiya", text("55")),
            ("doc", text("{\"a\":[1]}")),
        ],
        SetCondition::Always,
    )
    .unwrap();
    let item = db.get("k", "a", NOW).unwrap();
    let got: Vec<(&str, String)> = item
        .fields()
        .iter()
        .map(|(n, v)| (n, v.to_json()))
        .collect();
    assert_eq!(
        got,
        [
            ("doc", "{\"a\":[1]}".into()),
            ("hello", "\"world\"".into()),
            ("hiya", "55".into())
        ]
    );
    // A string replaces a number and back; the empty string removes.
    assert_eq!(
        db.fset("k", "a", &[("hiya", text("fast"))], false, NOW),
        Ok(1)
    );
    assert_eq!(db.fget("k", "a", "hiya", NOW), Ok(text("fast")));
    assert_eq!(db.fset("k", "a", &[("hello", text(""))], false, NOW), Ok(1));
    assert_eq!(db.fget("k", "a", "hello", NOW), Ok(0.0.into()));
    assert_eq!(db.get("k", "a", NOW).unwrap().fields().len(), 2);

    // WHERE compares strings with strings; numbers sort before them.
    set(
        &mut db,
        "b",
        &[("hiya", text("alpha"))],
        SetCondition::Always,
    )
    .unwrap();
    set(&mut db, "c", &[("hiya", 7.0)], SetCondition::Always).unwrap();
    let ids = |min: &str, max: &str| -> Vec<String> {
        let opts = SearchOpts {
            wheres: vec![Where {
                field: "hiya".into(),
                min: text(min),
                max: text(max),
            }],
            ..Default::default()
        };
        db.scan("k", &opts, NOW)
            .hits
            .iter()
            .map(|h| h.id.to_owned())
            .collect()
    };
    assert_eq!(ids("a", "g"), ["a", "b"]);
    assert_eq!(ids("b", "z"), ["a"]);
    assert_eq!(ids("-inf", "+inf"), ["c"]);
    assert_eq!(ids("-inf", "zzz"), ["a", "b", "c"]);
}

#[test]
fn rename_key_moves_the_collection_whole_and_counts_the_move() {
    let mut db = Database::new();
    put(&mut db, "fleet", "a", point(1.0, 1.0));
    put(&mut db, "fleet", "b", point(2.0, 2.0));
    put(&mut db, "taken", "x", point(3.0, 3.0));
    assert_eq!(db.moves(), 0);

    // Missing keys change nothing and count nothing.
    assert!(!db.rename_key("nokey", "other"));
    assert_eq!(db.moves(), 0);
    // A key renamed to itself exists and stays.
    assert!(db.rename_key("fleet", "fleet"));
    assert_eq!(db.moves(), 0);

    // The move replaces the target and keeps every item.
    assert!(db.rename_key("fleet", "taken"));
    assert_eq!(db.moves(), 1);
    assert_eq!(db.keys("*", NOW), ["taken"]);
    let moved = db.collection("taken").expect("taken exists");
    assert_eq!(moved.len(NOW), 2);
    assert!(moved.get("x", NOW).is_none(), "the old target is replaced");
    assert_eq!(
        moved.get("a", NOW).map(|i| i.object().to_json()),
        Some(point(1.0, 1.0).to_json())
    );
}

/// FSET records that only add names after an object's last field (a
/// snapshot's continuations, as a follower applies them) take the in-place
/// path; every other FSET the general merge. Both must leave the same
/// fields, count the same changes and keep the same memory estimate as one
/// SET of the final fields.
#[test]
fn fset_continuations_append_in_place_as_a_merge_would() {
    let name = |i: usize| format!("f{i:06}");
    let cases: &[(&str, &[(usize, f64)])] = &[
        ("after the last", &[(10, 1.0), (11, 2.0), (20, 3.0)]),
        ("before the last", &[(10, 1.0), (3, 2.0)]),
        ("between", &[(4, 7.0)]),
        ("a zero", &[(10, 1.0), (11, 0.0)]),
        ("a name twice", &[(10, 1.0), (10, 2.0)]),
        ("replacing the last", &[(8, 9.0)]),
        ("descending", &[(12, 1.0), (11, 1.0)]),
    ];
    for (what, ups) in cases {
        let mut db = Database::new();
        let base: Vec<(String, f64)> = (0..10).step_by(2).map(|i| (name(i), 1.0)).collect();
        db.set(
            "k",
            "a",
            point(1.0, 2.0),
            &base,
            None,
            SetCondition::Always,
            NOW,
        )
        .unwrap();
        let ups: Vec<(String, f64)> = ups.iter().map(|&(i, v)| (name(i), v)).collect();
        let changed = db.fset("k", "a", &ups, false, NOW).unwrap();

        // The same final fields from one SET, applied one update at a time.
        let mut want: std::collections::BTreeMap<String, f64> = base.into_iter().collect();
        let mut want_changed = 0;
        for (n, v) in &ups {
            let old = want.get(n).copied().unwrap_or(0.0);
            if old != *v {
                want_changed += 1;
            }
            if *v == 0.0 {
                want.remove(n);
            } else {
                want.insert(n.clone(), *v);
            }
        }
        let want: Vec<(String, f64)> = want.into_iter().collect();
        let mut fresh = Database::new();
        fresh
            .set(
                "k",
                "a",
                point(1.0, 2.0),
                &want,
                None,
                SetCondition::Always,
                NOW,
            )
            .unwrap();

        assert_eq!(changed, want_changed, "{what}");
        assert_eq!(
            db.get("k", "a", NOW).unwrap().fields(),
            fresh.get("k", "a", NOW).unwrap().fields(),
            "{what}"
        );
        assert_eq!(
            db.stats("k", NOW).unwrap().in_memory_size,
            fresh.stats("k", NOW).unwrap().in_memory_size,
            "{what}: memory estimate"
        );
    }
}
