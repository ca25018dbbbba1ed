//! TTLs: an expired item is invisible to every read at once, absent to writes,
//! and removed (and reported once) by `expire_due`.

mod common;

use common::*;
use geohook_db::{Area, Database, Error, SearchOpts, SetCondition};

fn set_ex(db: &mut Database, key: &str, id: &str, lat: f64, ttl_ms: Option<i64>) {
    db.set(
        key,
        id,
        point(lat, 0.0),
        NO_FIELDS,
        ttl_ms.map(|t| NOW + t),
        SetCondition::Always,
        NOW,
    )
    .unwrap();
}

fn fixture() -> Database {
    let mut db = Database::new();
    set_ex(&mut db, "k", "a", 1.0, Some(1_000));
    set_ex(&mut db, "k", "b", 2.0, Some(2_000));
    set_ex(&mut db, "k", "c", 3.0, None);
    set_ex(&mut db, "only", "x", 4.0, Some(1_000));
    db
}

/// WITHIN and INTERSECTS come in R-tree order.
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// What every read says about the ids of "k" at `now`.
fn visible(db: &Database, now: i64) -> Vec<Vec<String>> {
    let o = SearchOpts::default();
    let area = Area::Bounds(bounds(-10.0, -10.0, 10.0, 10.0));
    let exists: Vec<String> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| db.exists("k", id, now) && db.get("k", id, now).is_ok())
        .map(String::from)
        .collect();
    vec![
        exists,
        ids(&db.scan("k", &o, now)),
        ids(&db.nearby("k", &pt(0.0, 0.0), None, &o, now)),
        sorted(ids(&db.within("k", &area, &o, now))),
        sorted(ids(&db.intersects("k", &area, &o, now))),
    ]
}

#[test]
fn invisible_at_the_deadline_millisecond() {
    let db = fixture();
    let cases: &[(i64, &[&str])] = &[
        (0, &["a", "b", "c"]),
        (999, &["a", "b", "c"]),
        (1_000, &["b", "c"]),
        (1_999, &["b", "c"]),
        (2_000, &["c"]),
        (1_000_000, &["c"]),
    ];
    for (dt, want) in cases {
        for (i, got) in visible(&db, NOW + dt).into_iter().enumerate() {
            assert_eq!(got, *want, "read #{i} at +{dt} ms");
        }
    }
    assert_eq!(db.keys("*", NOW + 999), ["k", "only"]);
    assert_eq!(
        db.keys("*", NOW + 1_000),
        ["k"],
        "a key whose items all expired is not listed"
    );
    let s = db.stats("k", NOW + 1_000).unwrap();
    assert_eq!((s.num_objects, s.num_points), (2, 2));
}

#[test]
fn expire_due_removes_and_reports_once() {
    let mut db = fixture();
    assert!(db.expire_due(NOW + 999, 100).is_empty());
    let mut got: Vec<(String, String)> = db
        .expire_due(NOW + 1_500, 100)
        .into_iter()
        .map(|(k, id, item)| {
            assert!(item.expires_at().is_some_and(|t| t <= NOW + 1_500));
            (k.to_string(), id.to_string())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("k".to_owned(), "a".to_owned()),
            ("only".to_owned(), "x".to_owned())
        ]
    );
    assert!(db.expire_due(NOW + 1_500, 100).is_empty(), "reported once");
    assert!(db.collection("only").is_none(), "an emptied key disappears");
    assert_eq!(db.collection("k").unwrap().len_stored(), 2);
}

#[test]
fn expire_due_respects_max() {
    let mut db = Database::new();
    for i in 0..10 {
        set_ex(&mut db, "k", &format!("i{i}"), 1.0, Some(i));
    }
    let first = db.expire_due(NOW + 100, 3);
    let order: Vec<String> = first.iter().map(|e| e.1.to_string()).collect();
    assert_eq!(order, ["i0", "i1", "i2"], "earliest deadline first");
    assert_eq!(db.expire_due(NOW + 100, 100).len(), 7);
}

#[test]
fn ttl_expire_persist() {
    let mut db = fixture();
    assert_eq!(db.ttl("k", "a", NOW + 250), Ok(Some(750)));
    assert_eq!(db.ttl("k", "c", NOW), Ok(None));
    assert!(matches!(
        db.ttl("k", "a", NOW + 1_000),
        Err(Error::IdNotFound { .. })
    ));
    assert!(matches!(
        db.ttl("nope", "a", NOW),
        Err(Error::KeyNotFound { .. })
    ));

    db.expire("k", "c", NOW + 5_000, NOW).unwrap();
    assert_eq!(db.ttl("k", "c", NOW), Ok(Some(5_000)));
    assert!(!db.exists("k", "c", NOW + 5_000));
    assert!(matches!(
        db.expire("k", "zz", NOW, NOW),
        Err(Error::IdNotFound { .. })
    ));

    assert_eq!(db.persist("k", "c", NOW), Ok(true));
    assert_eq!(db.persist("k", "c", NOW), Ok(false));
    assert!(db.exists("k", "c", NOW + 1_000_000));
    // Persisting removes the item from the expiry index too.
    assert!(db
        .expire_due(NOW + 1_000_000, 100)
        .iter()
        .all(|e| &*e.1 != "c"));
    assert!(db.exists("k", "c", NOW + 1_000_000));
}

#[test]
fn writes_treat_expired_items_as_absent() {
    let mut db = fixture();
    let later = NOW + 1_000;
    // DEL of an expired item does nothing: expire_due will report it.
    assert!(db.del("k", "a", later).is_none());
    // NX succeeds over an expired item, and SET returns no previous item.
    let prev = db
        .set(
            "k",
            "a",
            point(9.0, 9.0),
            NO_FIELDS,
            None,
            SetCondition::Nx,
            later,
        )
        .unwrap();
    assert!(prev.is_none());
    assert!(
        db.exists("k", "a", later + 1_000_000),
        "the new item has no TTL"
    );
    assert!(db
        .expire_due(later + 1_000_000, 100)
        .iter()
        .all(|e| &*e.1 != "a"));
    // XX fails over an expired item.
    assert!(matches!(
        db.set(
            "k",
            "b",
            point(1.0, 1.0),
            NO_FIELDS,
            None,
            SetCondition::Xx,
            NOW + 2_000
        ),
        Err(Error::IdNotFound { .. })
    ));
}
