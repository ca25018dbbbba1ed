//! Cursors, LIMIT and MATCH: following the returned cursors visits every
//! matching item exactly once, for SCAN, NEARBY, WITHIN and INTERSECTS.

mod common;

use std::collections::BTreeSet;

use common::*;
use geohook_db::{Area, Database, Page, SearchOpts, Where};

fn fixture() -> Database {
    let mut db = Database::new();
    for i in 0..237 {
        let id = if i % 3 == 0 {
            format!("truck{i}")
        } else {
            format!("car{i}")
        };
        let lat = 33.0 + (i % 17) as f64 * 0.01;
        let lon = -112.0 + (i / 17) as f64 * 0.01;
        db.set(
            &id,
            "unused",
            point(0.0, 0.0),
            NO_FIELDS,
            None,
            Default::default(),
            NOW,
        )
        .unwrap();
        db.set(
            "fleet",
            &id,
            point(lat, lon),
            &[("speed", i as f64)],
            None,
            Default::default(),
            NOW,
        )
        .unwrap();
    }
    db
}

/// Walks every page with `limit` and returns the ids in the order seen.
fn walk(
    limit: usize,
    base: &SearchOpts,
    query: &dyn Fn(&SearchOpts) -> (Vec<String>, u64),
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut opts = SearchOpts {
        limit: Some(limit),
        ..base.clone()
    };
    for _ in 0..10_000 {
        let (hits, cursor) = query(&opts);
        assert!(hits.len() <= limit);
        let n = hits.len();
        seen.extend(hits);
        if cursor == 0 {
            return seen;
        }
        assert_eq!(n, limit, "only a full page continues");
        assert!(cursor > opts.cursor, "cursor advances");
        opts.cursor = cursor;
    }
    panic!("cursor never reached 0");
}

#[test]
fn every_item_exactly_once() {
    let db = fixture();
    let area = Area::Bounds(bounds(33.02, -111.99, 33.12, -111.90));
    let circle = Area::circle(pt(33.08, -111.95), 3_000.0).unwrap();
    let filters: Vec<(&str, SearchOpts)> = vec![
        ("all", SearchOpts::default()),
        (
            "match truck*",
            SearchOpts {
                matches: vec!["truck*".into()],
                ..Default::default()
            },
        ),
        (
            "match two patterns",
            SearchOpts {
                matches: vec!["truck1?".into(), "car2*".into()],
                ..Default::default()
            },
        ),
        (
            "where speed 50..150",
            SearchOpts {
                wheres: vec![Where {
                    field: "speed".into(),
                    min: 50.0.into(),
                    max: 150.0.into(),
                }],
                ..Default::default()
            },
        ),
        (
            "desc",
            SearchOpts {
                desc: true,
                ..Default::default()
            },
        ),
    ];
    type Query<'a> = Box<dyn Fn(&SearchOpts) -> (Vec<String>, u64) + 'a>;
    fn out(p: Page<'_>) -> (Vec<String>, u64) {
        (ids(&p), p.cursor)
    }
    let queries: Vec<(&str, Query<'_>)> = vec![
        (
            "scan",
            Box::new(|o: &SearchOpts| out(db.scan("fleet", o, NOW))),
        ),
        (
            "nearby",
            Box::new(|o: &SearchOpts| out(db.nearby("fleet", &pt(33.05, -111.93), None, o, NOW))),
        ),
        (
            "nearby 2km",
            Box::new(|o: &SearchOpts| {
                out(db.nearby("fleet", &pt(33.05, -111.93), Some(2_000.0), o, NOW))
            }),
        ),
        (
            "within",
            Box::new(|o: &SearchOpts| out(db.within("fleet", &area, o, NOW))),
        ),
        (
            "intersects circle",
            Box::new(|o: &SearchOpts| out(db.intersects("fleet", &circle, o, NOW))),
        ),
    ];
    for (qname, query) in &queries {
        for (fname, base) in &filters {
            let full = query(base).0;
            let unique: BTreeSet<&String> = full.iter().collect();
            assert_eq!(
                unique.len(),
                full.len(),
                "{qname}/{fname}: duplicates in one page"
            );
            for limit in [1, 7, 50, 1000] {
                let paged = walk(limit, base, &**query);
                assert_eq!(paged, full, "{qname}/{fname}/limit {limit}");
            }
        }
    }
}

#[test]
fn scan_order_and_filters() {
    let db = fixture();
    let all = ids(&db.scan("fleet", &SearchOpts::default(), NOW));
    assert_eq!(all.len(), 237);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "SCAN is in id order");
    let desc = ids(&db.scan(
        "fleet",
        &SearchOpts {
            desc: true,
            ..Default::default()
        },
        NOW,
    ));
    assert_eq!(desc, sorted.iter().rev().cloned().collect::<Vec<_>>());
    let trucks = ids(&db.scan(
        "fleet",
        &SearchOpts {
            matches: vec!["truck*".into()],
            ..Default::default()
        },
        NOW,
    ));
    assert_eq!(trucks.len(), 79);
    assert!(trucks.iter().all(|t| t.starts_with("truck")));
    let one = ids(&db.scan(
        "fleet",
        &SearchOpts {
            matches: vec!["car?".into()],
            ..Default::default()
        },
        NOW,
    ));
    assert_eq!(one, ["car1", "car2", "car4", "car5", "car7", "car8"]);
    let w = SearchOpts {
        wheres: vec![Where {
            field: "speed".into(),
            min: 0.0.into(),
            max: 0.0.into(),
        }],
        ..Default::default()
    };
    assert_eq!(
        ids(&db.scan("fleet", &w, NOW)),
        ["truck0"],
        "unset field reads as 0"
    );
    let limit0 = db.scan(
        "fleet",
        &SearchOpts {
            limit: Some(0),
            ..Default::default()
        },
        NOW,
    );
    assert!(limit0.hits.is_empty() && limit0.cursor == 0);
}
