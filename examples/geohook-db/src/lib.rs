//! Geospatial data model of the geohook example server: Tile38's objects,
//! collections, R-tree searches, fields and expiry, as a plain data structure.
//!
//! The crate holds no locks, does no I/O and spawns nothing; the server wraps a
//! [`Database`] in its own lock, turns commands into calls, and renders results.
//! Every call takes the current time in unix milliseconds, so that tests and the
//! server decide what "now" is.
//!
//! # Example
//! ```
//! use geohook_db::{Area, Bounds, Database, Object, Point, SearchOpts, SetCondition};
//!
//! let mut db = Database::new();
//! let now = 1_700_000_000_000;
//! let truck = Object::Point(Point::new(33.5123, -112.2693)?);
//! db.set("fleet", "truck1", truck, &[("speed", 42.0)], None, SetCondition::Always, now)?;
//! let park = Object::from_geojson(
//!     r#"{"type":"Polygon","coordinates":[[[-112.3,33.5],[-112.2,33.5],[-112.2,33.6],[-112.3,33.6],[-112.3,33.5]]]}"#,
//! )?;
//! db.set("fleet", "park", park, &[] as &[(&str, f64)], Some(now + 10_000), SetCondition::Always, now)?;
//!
//! let area = Area::Bounds(Bounds::new(33.0, -113.0, 34.0, -112.0)?);
//! let page = db.within("fleet", &area, &SearchOpts::default(), now);
//! assert_eq!(page.hits.len(), 2);
//!
//! let near = db.nearby("fleet", &Point::new(33.5, -112.27)?, Some(5_000.0), &SearchOpts::default(), now);
//! assert_eq!(near.hits[0].id, "park"); // distance 0: the point is inside the park
//!
//! // Ten seconds later the park has expired: invisible at once, removed on demand.
//! assert!(!db.exists("fleet", "park", now + 10_000));
//! let expired = db.expire_due(now + 10_000, 100);
//! assert_eq!(&*expired[0].1, "park");
//! # Ok::<(), geohook_db::Error>(())
//! ```
//!
//! # Semantics
//! - Coordinates: [`Point`] is latitude then longitude; GeoJSON text is
//!   `[lon, lat]`. Latitudes are checked against [-90, 90] and longitudes
//!   against [-180, 180]; non-finite numbers are rejected. GeoJSON objects keep
//!   the client's text and are returned verbatim.
//! - WITHIN: no point of the object lies outside the area (edges count as
//!   inside). INTERSECTS: the object and the area share at least one point.
//!   CIRCLE uses great-circle distance: a shape is within a circle when all its
//!   vertices are, and intersects it when its nearest point is within the
//!   radius. Areas that cross the antimeridian are not supported.
//! - Distances are haversine on a sphere of 6,371 km, as in Tile38. NEARBY
//!   returns items by distance to their nearest point, then by id.
//! - Expiry: an item with `expires_at <= now` is invisible to every read and
//!   absent to every write; [`Database::expire_due`] removes it and reports it.
//! - Cursors count the candidates of a walk (ids for SCAN, R-tree candidates
//!   for WITHIN/INTERSECTS, distance order for NEARBY). A page that reaches its
//!   limit returns the position after its last hit; a shorter page returns 0.
//!   Walking pages with the returned cursors visits every matching item exactly
//!   once while the collection does not change.
//! - Field values are numbers, strings or JSON documents ([`FieldValue`], read
//!   from text as Tile38 1.30 reads a FIELD argument); an unset field reads as
//!   0, so setting 0 (or the empty string) removes it. WHERE ranges compare
//!   numbers by value, then strings, then documents. `z`, `lat` and `lon` are
//!   reserved names.
//!
//! # Crate features
//! None. Geometry predicates come from `geo`, geohashes from `geohash`, the
//! R-tree from `rstar`, glob patterns (`*` and `?`, as Tile38) by [`Glob`], in time linear in the id.

mod collection;
mod db;
mod error;
mod field;
mod geom;
mod glob;
mod id;
mod object;
mod points;
mod segments;

pub use collection::{Collection, CollectionStats, Fields, Hit, Item, Page, SearchOpts, Where};
pub use db::{Database, DbStats, Expired, SetCondition};
pub use error::{Error, Result};
pub use field::{parse_number, parse_number_bytes, FieldValue};
pub use geom::{Bounds, GeoJson, GeoJsonKind, Point, EARTH_RADIUS_M};
pub use glob::Glob;
pub use object::{Area, AreaTest, GeohashCell, Object};
