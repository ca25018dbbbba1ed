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

/// Events a brute-force evaluation of every hook expects for one SET, and whether the object is
/// inside each fence afterwards.
fn oracle(
    fences: &[Option<(geohook_hooks::HookDef, bool)>],
    old: Option<&Object>,
    new: &Object,
) -> (usize, Vec<bool>) {
    use geohook_hooks::Detect;
    let inside = |o: &Object, def: &geohook_hooks::HookDef, within: bool| {
        if within {
            o.within(&def.area)
        } else {
            o.intersects(&def.area)
        }
    };
    let path = old.and_then(|o| {
        let (a, b) = (o.center()?, new.center()?);
        if a.lat == b.lat && a.lon == b.lon {
            return None;
        }
        Object::from_geojson(&format!(
            "{{\"type\":\"LineString\",\"coordinates\":[[{},{}],[{},{}]]}}",
            a.lon, a.lat, b.lon, b.lat
        ))
        .ok()
    });
    let mut events = 0;
    let mut now_inside = Vec::with_capacity(fences.len());
    for fence in fences {
        let Some((def, within)) = fence else {
            now_inside.push(false);
            continue;
        };
        let was = old.is_some_and(|o| inside(o, def, *within));
        let is = inside(new, def, *within);
        now_inside.push(is);
        let f = &def.filter;
        let heard = match (was, is) {
            (true, true) => vec![Detect::Inside],
            (true, false) => vec![Detect::Exit, Detect::Outside],
            (false, true) => vec![Detect::Enter, Detect::Inside],
            (false, false) => {
                let crossed = f.detects(Detect::Cross)
                    && path.as_ref().is_some_and(|l| l.intersects(&def.area));
                if crossed {
                    vec![Detect::Cross, Detect::Outside]
                } else {
                    vec![Detect::Outside]
                }
            }
        };
        events += heard.into_iter().filter(|d| f.detects(*d)).count();
    }
    (events, now_inside)
}

/// Objects that jump across the whole region (thousands of fences between their two ends) and
/// objects that step a little, against fences with every mix of DETECT (cross-detecting and
/// outside-listening hooks among enter/exit ones), with hooks replaced and deleted on the way: every
/// SET produces exactly the events, and leaves exactly the fence state, that evaluating every hook
/// by brute force gives.
#[test]
fn long_jumps_agree_with_a_linear_scan() {
    const DETECTS: [Option<&str>; 9] = [
        Some("enter,exit"),
        Some("enter,exit"),
        Some("enter,exit"),
        Some("enter"),
        Some("exit,inside"),
        Some("cross"),
        Some("enter,exit,cross"),
        Some("outside"),
        None,
    ];
    let hooks = Hooks::new(QueueConfig::default()).unwrap();
    hooks.set_role(false);
    let mut rng = StdRng::seed_from_u64(23);
    let now = SystemTime::now();
    let mut fences: Vec<Option<(geohook_hooks::HookDef, bool)>> = Vec::new();
    let random_fence = |rng: &mut StdRng, name: &str| {
        // Mostly small fences packed in a 1° square (the grid path), some large ones (the trees).
        let size = if rng.random_range(0..10) == 0 {
            rng.random_range(0.05..0.3)
        } else {
            rng.random_range(0.002..0.02)
        };
        let (lat, lon) = (rng.random_range(0.0..1.0), rng.random_range(0.0..1.0));
        let b = [
            lat,
            lon,
            lat + size,
            lon + size * rng.random_range(0.5..2.0),
        ];
        let detect = DETECTS[rng.random_range(0..DETECTS.len())];
        let mut def = bounds_hook(name, "http://127.0.0.1:1/x", "k", detect, None, b);
        let within = rng.random_bool(0.5);
        if !within {
            def.kind = geohook_hooks::FenceKind::Intersects;
        }
        (def, within)
    };
    for i in 0..3000 {
        let fence = random_fence(&mut rng, &format!("f{i}"));
        hooks.set_hook(fence.0.clone(), now).unwrap();
        fences.push(Some(fence));
    }
    let mut objects: Vec<Option<Object>> = vec![None; 60];
    // Fence state as the oracle sees it: (object, fence) pairs the object is inside.
    let mut state: Vec<Vec<bool>> = vec![vec![false; fences.len()]; objects.len()];
    let mut groups = 0usize;
    for step in 0..3000 {
        if step % 200 == 199 {
            // Replace or delete a few hooks; either resets their fence state.
            for _ in 0..40 {
                let i = rng.random_range(0..fences.len());
                for s in &mut state {
                    groups -= usize::from(s[i]);
                    s[i] = false;
                }
                if rng.random_bool(0.5) {
                    let fence = random_fence(&mut rng, &format!("f{i}"));
                    hooks.set_hook(fence.0.clone(), now).unwrap();
                    fences[i] = Some(fence);
                } else {
                    hooks.del_hook(&format!("f{i}"));
                    fences[i] = None;
                }
            }
        }
        let v = rng.random_range(0..objects.len());
        let (lat, lon) = match (&objects[v], rng.random_range(0..10)) {
            // A short step from where the object is.
            (Some(o), 0..4) => {
                let c = o.center().unwrap();
                (
                    (c.lat + rng.random_range(-0.01..0.01)).clamp(0.0, 1.3),
                    (c.lon + rng.random_range(-0.01..0.01)).clamp(0.0, 1.3),
                )
            }
            // A jump anywhere in the region.
            _ => (rng.random_range(0.0..1.3), rng.random_range(0.0..1.3)),
        };
        let new = if rng.random_range(0..4) == 0 {
            let size = rng.random_range(0.0005..0.01);
            Object::Bounds(Box::new(
                Bounds::new(lat, lon, lat + size, lon + size).unwrap(),
            ))
        } else {
            point(lat, lon)
        };
        let old = objects[v].take();
        let (expected, inside) = oracle(&fences, old.as_ref(), &new);
        let id = format!("o{v}");
        let got = hooks.on_change(&Change::set("k", &id, old.as_ref(), &new, None, now));
        assert_eq!(got, expected, "step {step}: {old:?} -> {new:?}");
        groups -= state[v].iter().filter(|x| **x).count();
        groups += inside.iter().filter(|x| **x).count();
        state[v] = inside;
        assert_eq!(hooks.metrics().fence_groups, groups as u64, "step {step}");
        objects[v] = Some(new);
    }
}
