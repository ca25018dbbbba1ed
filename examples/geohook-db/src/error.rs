//! The one error type of this crate.

/// Everything that can go wrong in this crate.
///
/// The crate does no I/O, so there is no `Io` variant: every error is about the
/// caller's data (a bad coordinate, a bad GeoJSON document) or about the state of
/// the database (a missing key or id, a blocked `NX`/`XX` condition). The
/// `Display` text of the state errors is Tile38's own message, so a server can
/// send it to a client as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A latitude or longitude is out of range or not a finite number.
    #[error(
        "invalid coordinates: lat {lat} lon {lon} (lat must be in [-90, 90], lon in [-180, 180])"
    )]
    InvalidCoordinates {
        /// The latitude that was given.
        lat: f64,
        /// The longitude that was given.
        lon: f64,
    },
    /// A bounds whose south-west corner is north or east of its north-east corner.
    #[error("invalid bounds: sw ({sw_lat} {sw_lon}) is not south-west of ne ({ne_lat} {ne_lon})")]
    InvalidBounds {
        /// South-west latitude.
        sw_lat: f64,
        /// South-west longitude.
        sw_lon: f64,
        /// North-east latitude.
        ne_lat: f64,
        /// North-east longitude.
        ne_lon: f64,
    },
    /// A GeoJSON document that is not valid JSON, has the wrong nesting, an unknown
    /// type, or bad coordinates.
    #[error("invalid data: {reason} (at {path})")]
    InvalidGeoJson {
        /// What is wrong, in words.
        reason: String,
        /// Where in the document, as a JSON-pointer-like path (`$` is the root).
        path: String,
    },
    /// A geohash with characters outside the geohash alphabet, or empty.
    #[error("invalid geohash '{hash}'")]
    InvalidGeohash {
        /// The geohash that was given.
        hash: String,
    },
    /// A geohash precision outside 1..=12.
    #[error("invalid geohash precision {precision} (must be 1 to 12)")]
    InvalidPrecision {
        /// The precision that was given.
        precision: usize,
    },
    /// A radius or distance that is negative or not a number.
    #[error("invalid distance {meters} meters")]
    InvalidDistance {
        /// The distance that was given.
        meters: f64,
    },
    /// A field name that Tile38 reserves (`z`, `lat`, `lon`) or an empty one.
    #[error("invalid argument '{name}'")]
    ReservedField {
        /// The field name that was given.
        name: String,
    },
    /// A field value that is NaN.
    #[error("invalid argument '{value}' for field '{name}'")]
    InvalidFieldValue {
        /// The field name.
        name: String,
        /// The value that was given, as text.
        value: String,
    },
    /// The key (collection) does not exist.
    #[error("key not found")]
    KeyNotFound {
        /// The key that was looked up.
        key: String,
    },
    /// The key exists but the id does not (or it has expired).
    #[error("id not found")]
    IdNotFound {
        /// The key that was looked up.
        key: String,
        /// The id that was looked up.
        id: String,
    },
    /// `SET … NX` found a live item under this id.
    #[error("id already exists")]
    IdExists {
        /// The key of the item.
        key: String,
        /// The id of the item.
        id: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
