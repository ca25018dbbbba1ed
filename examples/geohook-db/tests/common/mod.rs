//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use geohook_db::{Bounds, Database, Object, Point, SetCondition};

/// A fixed "now" so that tests never read the clock.
pub const NOW: i64 = 1_700_000_000_000;

pub fn pt(lat: f64, lon: f64) -> Point {
    Point::new(lat, lon).expect("valid test point")
}

pub fn point(lat: f64, lon: f64) -> Object {
    Object::Point(pt(lat, lon))
}

pub fn bounds(a: f64, b: f64, c: f64, d: f64) -> Bounds {
    Bounds::new(a, b, c, d).expect("valid test bounds")
}

pub fn rect(a: f64, b: f64, c: f64, d: f64) -> Object {
    Object::Bounds(Box::new(bounds(a, b, c, d)))
}

pub fn geo(json: &str) -> Object {
    Object::from_geojson(json).expect("valid test GeoJSON")
}

pub const NO_FIELDS: &[(&str, f64)] = &[];

/// Stores an object with no fields and no expiry.
pub fn put(db: &mut Database, key: &str, id: &str, obj: Object) {
    db.set(key, id, obj, NO_FIELDS, None, SetCondition::Always, NOW)
        .expect("plain set succeeds");
}

/// Ids of a page, in order.
pub fn ids(page: &geohook_db::Page<'_>) -> Vec<String> {
    page.hits.iter().map(|h| h.id.to_owned()).collect()
}
