//! The fence index finds exactly the hooks a linear scan finds, through inserts, deletes, replacements
//! and the periodic bulk reload of the R-tree.

mod common;

use std::time::SystemTime;

use common::{bounds_hook, point};
use geohook_db::{Bounds, Object};
use geohook_hooks::{Change, Hooks, QueueConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn index_agrees_with_a_linear_scan() {
    let hooks = Hooks::new(QueueConfig::default()).unwrap();
    // Followers keep fence state and count events without queueing them.
    hooks.set_role(false);
    let mut rng = StdRng::seed_from_u64(11);
    let mut live: Vec<Option<[f64; 4]>> = Vec::new();
    let now = SystemTime::now();
    for round in 0..6 {
        for i in 0..400 {
            // Half the fences are small (a few grid cells of 0.005°) packed in a 0.2° square, so that
            // the grid is exercised; the others are large, for the trees.
            let (origin, size) = if i % 2 == 0 {
                (0.2, 0.001..0.015)
            } else {
                (9.0, 0.01..1.0)
            };
            let (lat, lon) = (rng.random_range(0.0..origin), rng.random_range(0.0..origin));
            let b = [
                lat,
                lon,
                lat + rng.random_range(size.clone()),
                lon + rng.random_range(size),
            ];
            let name = format!("h{}", (round * 400 + i) % 1500);
            let idx: usize = name[1..].parse().unwrap();
            if live.len() <= idx {
                live.resize(idx + 1, None);
            }
            // INTERSECTS, so that boxes spanning several grid cells match often and a fence reported
            // twice would show as a count too high.
            let mut def = bounds_hook(&name, "http://127.0.0.1:1/x", "k", Some("enter"), None, b);
            def.kind = geohook_hooks::FenceKind::Intersects;
            hooks.set_hook(def, now).unwrap();
            live[idx] = Some(b);
        }
        for _ in 0..150 {
            let idx = rng.random_range(0..live.len());
            assert_eq!(hooks.del_hook(&format!("h{idx}")), live[idx].is_some());
            live[idx] = None;
        }
        assert_eq!(hooks.len(), live.iter().flatten().count());
        for j in 0..600 {
            let range = if j % 2 == 0 { 0.2 } else { 10.0 };
            let (lat, lon) = (rng.random_range(0.0..range), rng.random_range(0.0..range));
            // Points, small boxes (the grid path) and boxes of up to 0.2° (the tree path).
            let size = match j % 3 {
                0 => 0.0,
                1 => rng.random_range(0.0..0.012),
                _ => rng.random_range(0.0..0.2),
            };
            let o = [lat, lon, lat + size, lon + size];
            let expected = live
                .iter()
                .flatten()
                .filter(|b| b[0] <= o[2] && o[0] <= b[2] && b[1] <= o[3] && o[1] <= b[3])
                .count();
            let object = if size == 0.0 {
                point(lat, lon)
            } else {
                Object::Bounds(Box::new(Bounds::new(o[0], o[1], o[2], o[3]).unwrap()))
            };
            let id = format!("o{round}-{j}");
            let got = hooks.on_change(&Change::set("k", &id, None, &object, None, now));
            assert_eq!(got, expected, "object {o:?} in round {round}");
        }
    }
}
