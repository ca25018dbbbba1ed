//! NEARBY: results come by distance (then id), stop at the radius, and a LIMIT
//! takes the nearest ones.

mod common;

use common::*;
use geohook_db::{Database, SearchOpts};

/// Points on the equator at 0.1° steps east of the origin, one of them shared by
/// two ids, plus a polygon that contains the origin.
fn fixture() -> Database {
    let mut db = Database::new();
    for (id, lon) in [
        ("e5", 0.5),
        ("e1", 0.1),
        ("e3", 0.3),
        ("e2", 0.2),
        ("e4", 0.4),
        ("e2b", 0.2),
    ] {
        put(&mut db, "k", id, point(0.0, lon));
    }
    put(&mut db, "k", "w1", point(0.0, -0.15));
    put(
        &mut db,
        "k",
        "zone",
        geo(
            r#"{"type":"Polygon","coordinates":[[[-0.01,-0.01],[0.01,-0.01],[0.01,0.01],[-0.01,0.01],[-0.01,-0.01]]]}"#,
        ),
    );
    put(
        &mut db,
        "k",
        "note",
        geohook_db::Object::String("not spatial".into()),
    );
    db
}

fn check(meters: Option<f64>, limit: Option<usize>, expected: &[&str]) {
    let db = fixture();
    let opts = SearchOpts {
        limit,
        ..Default::default()
    };
    let page = db.nearby("k", &pt(0.0, 0.0), meters, &opts, NOW);
    assert_eq!(ids(&page), expected, "meters {meters:?} limit {limit:?}");
    let d: Vec<f64> = page.hits.iter().map(|h| h.distance.unwrap()).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "ascending: {d:?}");
    for h in &page.hits {
        let want = h.item.object().distance_to(&pt(0.0, 0.0)).unwrap();
        assert_eq!(h.distance, Some(want));
        if let Some(m) = meters {
            assert!(want <= m);
        }
    }
}

#[test]
fn ordering_radius_and_limit() {
    const DEG: f64 = 111_194.93;
    let all = ["zone", "e1", "w1", "e2", "e2b", "e3", "e4", "e5"];
    let cases: &[(Option<f64>, Option<usize>, &[&str])] = &[
        (None, None, &all),
        (None, Some(3), &all[..3]),
        (Some(0.0), None, &["zone"]),
        (Some(0.1 * DEG + 1.0), None, &["zone", "e1"]),
        (
            Some(0.2 * DEG + 1.0),
            None,
            &["zone", "e1", "w1", "e2", "e2b"],
        ),
        (Some(0.2 * DEG + 1.0), Some(4), &["zone", "e1", "w1", "e2"]),
        (Some(10.0 * DEG), None, &all),
    ];
    for (m, l, want) in cases {
        check(*m, *l, want);
    }
}

#[test]
fn missing_key_is_empty() {
    let db = fixture();
    let page = db.nearby("nope", &pt(0.0, 0.0), None, &SearchOpts::default(), NOW);
    assert!(page.hits.is_empty());
    assert_eq!(page.cursor, 0);
}

#[test]
fn knn_across_many_points_matches_sorting() {
    // A 50x50 grid: the nearest 25 to an off-grid point must be the 25 smallest
    // distances, in order, with ties broken by id.
    let mut db = Database::new();
    for i in 0..50 {
        for j in 0..50 {
            put(
                &mut db,
                "g",
                &format!("p{i:02}{j:02}"),
                point(40.0 + i as f64 * 0.01, -74.0 + j as f64 * 0.01),
            );
        }
    }
    let c = pt(40.2213, -73.8071);
    let mut oracle: Vec<(f64, String)> = db
        .scan("g", &SearchOpts::default(), NOW)
        .hits
        .iter()
        .map(|h| (h.item.object().distance_to(&c).unwrap(), h.id.to_owned()))
        .collect();
    oracle.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let opts = SearchOpts {
        limit: Some(25),
        ..Default::default()
    };
    let got = ids(&db.nearby("g", &c, None, &opts, NOW));
    let want: Vec<String> = oracle.into_iter().take(25).map(|x| x.1).collect();
    assert_eq!(got, want);
}

#[test]
fn radius_knn_matches_sorting_near_the_antimeridian_and_the_poles() {
    // Around each centre a 41x41 grid of points 0.001° apart (wrapping in
    // longitude, clamped at the poles): the k nearest within the radius must
    // be the k smallest distances up to it, in order, ties by id. This walks
    // the radius window that cuts the search short, where it is easiest to get
    // wrong.
    for (clat, clon) in [
        (40.2213, -73.8071),
        (0.003, 179.996),
        (-12.5, -179.998),
        (89.991, 10.0),
        (-89.995, -120.0),
    ] {
        let mut db = Database::new();
        for i in -20..=20 {
            for j in -20..=20 {
                let lat = (clat + f64::from(i) * 0.001).clamp(-90.0, 90.0);
                let mut lon = clon + f64::from(j) * 0.001;
                if lon > 180.0 {
                    lon -= 360.0;
                } else if lon < -180.0 {
                    lon += 360.0;
                }
                put(&mut db, "g", &format!("p{i:+03}{j:+03}"), point(lat, lon));
            }
        }
        let c = pt(clat, clon);
        for (meters, limit) in [(1_500.0, 10), (500.0, 100), (2_000.0, 400), (0.0, 5)] {
            let mut oracle: Vec<(f64, String)> = db
                .scan("g", &SearchOpts::default(), NOW)
                .hits
                .iter()
                .map(|h| (h.item.object().distance_to(&c).unwrap(), h.id.to_owned()))
                .filter(|(d, _)| *d <= meters)
                .collect();
            oracle.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let opts = SearchOpts {
                limit: Some(limit),
                ..Default::default()
            };
            let got = ids(&db.nearby("g", &c, Some(meters), &opts, NOW));
            let want: Vec<String> = oracle.into_iter().take(limit).map(|x| x.1).collect();
            assert_eq!(
                got, want,
                "centre {clat},{clon} radius {meters} limit {limit}"
            );
        }
    }
}

#[test]
fn knn_matches_sorting_where_stored_positions_round_together() {
    // Clusters of points closer together than one `f32` step, so that many
    // share a stored position and only the exact distances order them,
    // around centres near 0 (tiny steps), at middling magnitudes and near
    // the antimeridian (the largest steps valid coordinates get): the k
    // nearest, with and without a radius, must be the k smallest exact
    // distances, ties by id.
    for (clat, clon) in [
        (1e-9, -2e-9),
        (33.000_001, -115.000_001),
        (-45.5, 179.999_99),
        (0.5, -179.999_99),
    ] {
        let mut db = Database::new();
        for i in -8i32..=8 {
            for j in -8i32..=8 {
                // Uneven steps of 1e-7° to 6.4e-6°, finer than an f32 step
                // (7.6e-6° near 180°, 3.8e-6° near 33°) in most places.
                let lat = clat + f64::from(i * i.abs()) * 1e-7;
                let mut lon = clon + f64::from(j * j.abs()) * 1e-7;
                if lon > 180.0 {
                    lon -= 360.0;
                }
                put(&mut db, "g", &format!("p{i:+03}{j:+03}"), point(lat, lon));
            }
        }
        let c = pt(clat, clon);
        for (meters, limit) in [(None, 7), (Some(0.5), 40), (Some(3.0), 200), (None, 289)] {
            let mut oracle: Vec<(f64, String)> = db
                .scan("g", &SearchOpts::default(), NOW)
                .hits
                .iter()
                .map(|h| (h.item.object().distance_to(&c).unwrap(), h.id.to_owned()))
                .filter(|(d, _)| meters.is_none_or(|m| *d <= m))
                .collect();
            oracle.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let opts = SearchOpts {
                limit: Some(limit),
                ..Default::default()
            };
            let got = ids(&db.nearby("g", &c, meters, &opts, NOW));
            let want: Vec<String> = oracle.into_iter().take(limit).map(|x| x.1).collect();
            assert_eq!(
                got, want,
                "centre {clat},{clon} radius {meters:?} limit {limit}"
            );
        }
    }
}
