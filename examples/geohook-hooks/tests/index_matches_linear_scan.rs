//! The fence index finds exactly the hooks a linear scan finds, through inserts, deletes, replacements
//! and the periodic bulk reload of the R-tree.

mod common;

use std::time::SystemTime;

use common::{bounds_hook, point};
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
            let (lat, lon) = (rng.random_range(0.0..9.0), rng.random_range(0.0..9.0));
            let b = [
                lat,
                lon,
                lat + rng.random_range(0.01..1.0),
                lon + rng.random_range(0.01..1.0),
            ];
            let name = format!("h{}", (round * 400 + i) % 1500);
            let idx: usize = name[1..].parse().unwrap();
            if live.len() <= idx {
                live.resize(idx + 1, None);
            }
            hooks
                .set_hook(
                    bounds_hook(&name, "http://127.0.0.1:1/x", "k", Some("enter"), None, b),
                    now,
                )
                .unwrap();
            live[idx] = Some(b);
        }
        for _ in 0..150 {
            let idx = rng.random_range(0..live.len());
            assert_eq!(hooks.del_hook(&format!("h{idx}")), live[idx].is_some());
            live[idx] = None;
        }
        assert_eq!(hooks.len(), live.iter().flatten().count());
        for j in 0..300 {
            let (lat, lon) = (rng.random_range(0.0..10.0), rng.random_range(0.0..10.0));
            let expected = live
                .iter()
                .flatten()
                .filter(|b| b[0] <= lat && lat <= b[2] && b[1] <= lon && lon <= b[3])
                .count();
            let id = format!("o{round}-{j}");
            let got = hooks.on_change(&Change::set("k", &id, None, &point(lat, lon), None, now));
            assert_eq!(got, expected, "point ({lat}, {lon}) in round {round}");
        }
    }
}
