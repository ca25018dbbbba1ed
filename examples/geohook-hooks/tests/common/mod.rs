//! Test support for this crate: the real peers (`peers.rs`) and hook helpers.
#![allow(dead_code, unreachable_pub, unused_imports)]

mod peers;

pub use peers::*;

/// A hook definition for the tests: `kind key FENCE BOUNDS minlat minlon maxlat maxlon`.
pub fn bounds_hook(
    name: &str,
    endpoints: &str,
    key: &str,
    detect: Option<&str>,
    commands: Option<&str>,
    b: [f64; 4],
) -> geohook_hooks::HookDef {
    let area = geohook_db::Area::Bounds(geohook_db::Bounds::new(b[0], b[1], b[2], b[3]).unwrap());
    let mut args: Vec<String> = vec!["WITHIN".into(), key.into(), "FENCE".into()];
    if let Some(d) = detect {
        args.extend(["DETECT".into(), d.into()]);
    }
    if let Some(c) = commands {
        args.extend(["COMMANDS".into(), c.into()]);
    }
    args.push("BOUNDS".into());
    args.extend(b.iter().map(|v| v.to_string()));
    geohook_hooks::HookDef {
        name: name.into(),
        endpoints: geohook_hooks::Endpoint::parse_list(endpoints).unwrap(),
        delivery: geohook_hooks::Delivery::Endpoints,
        meta: vec![],
        ex: None,
        kind: geohook_hooks::FenceKind::Within,
        key: key.into(),
        filter: geohook_hooks::Filter::parse(detect, commands).unwrap(),
        area,
        options: Default::default(),
        args,
    }
}

/// A point object.
pub fn point(lat: f64, lon: f64) -> geohook_db::Object {
    geohook_db::Object::Point(geohook_db::Point::new(lat, lon).unwrap())
}

/// Parses JSON bodies and returns (hook, command, detect) triples for one hook, in arrival order.
pub fn events_of(bodies: &[String], hook: &str) -> Vec<serde_json::Value> {
    bodies
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap())
        .filter(|v| v["hook"] == hook)
        .collect()
}
