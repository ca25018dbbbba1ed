//! Reading a command's arguments: one cursor, the value parsers every
//! command shares, and the one parser of search areas (NEARBY, WITHIN,
//! INTERSECTS and SETHOOK's fence).

use std::sync::atomic::{AtomicBool, Ordering};

use geohook_db::{Area, Bounds, Database, FieldValue, Object, Point};
use smol_str::{SmolStr, StrExt as _};

use crate::cmd::ctx::CmdError;
pub(crate) use crate::cmd::keyword::Keyword;
use crate::cmd::shapes;

/// Whether coordinates outside latitude [-90, 90] and longitude [-180, 180]
/// are refused. Tile38 accepts them unless its `REQUIREVALID` environment
/// variable is set, and so do we unless `--require-valid` (or
/// `REQUIREVALID`) is given; the index stores any finite position. It is
/// process-wide because it is a start-up setting, read by every parse.
static REQUIRE_VALID: AtomicBool = AtomicBool::new(false);

/// Sets the coordinate rule for the whole process (at start-up).
pub(crate) fn set_require_valid(on: bool) {
    REQUIRE_VALID.store(on, Ordering::Relaxed);
}

/// A point from a client's numbers: finite always, and within the lat/lon
/// range only under `--require-valid`.
///
/// # Errors
///
/// `invalid argument` for a non-finite number; the database's coordinate
/// error for an out-of-range one under `--require-valid`.
pub(crate) fn point_at(lat: f64, lon: f64, z: Option<f64>) -> Result<Point, CmdError> {
    if REQUIRE_VALID.load(Ordering::Relaxed) {
        return Ok(match z {
            Some(z) => Point::with_z(lat, lon, z)?,
            None => Point::new(lat, lon)?,
        });
    }
    for v in [lat, lon].into_iter().chain(z) {
        if !v.is_finite() {
            return Err(CmdError::Invalid(v.to_string()));
        }
    }
    Ok(Point { lat, lon, z })
}

/// The argument as UTF-8.
///
/// # Errors
///
/// `invalid argument` when it is not UTF-8.
pub(crate) fn text(a: &[u8]) -> Result<&str, CmdError> {
    std::str::from_utf8(a).map_err(|_| CmdError::invalid(a))
}

/// The argument in lower case; keywords and command names fit inline, so
/// matching them does not allocate.
pub(crate) fn lower(a: &[u8]) -> SmolStr {
    // A keyword (the usual case) is lowered on the stack and stored inline,
    // without a lossy decoding first. Lowering only ASCII letters keeps
    // valid UTF-8 valid, so one check of the lowered bytes is enough.
    const INLINE: usize = SmolStr::INLINE_CAP;
    if a.len() <= INLINE {
        let mut buf = [0u8; INLINE];
        let b = &mut buf[..a.len()];
        for (to, from) in b.iter_mut().zip(a) {
            *to = from.to_ascii_lowercase();
        }
        if let Ok(s) = std::str::from_utf8(b) {
            return SmolStr::new_inline(s);
        }
    }
    String::from_utf8_lossy(a).to_ascii_lowercase_smolstr()
}

/// The longest glob pattern (MATCH, KEYS, PDEL), in bytes. Matching costs
/// the id's length times a machine word per 64 pattern characters, so the
/// cap bounds what one pattern can cost per id.
pub(crate) const MAX_PATTERN: usize = 1024;

/// A glob pattern of at most [`MAX_PATTERN`] bytes.
///
/// # Errors
///
/// `invalid argument` when it is not UTF-8; `pattern too long` past the cap.
pub(crate) fn pattern(a: &[u8]) -> Result<&str, CmdError> {
    if a.len() > MAX_PATTERN {
        return Err(CmdError::Msg(format!(
            "pattern too long (over {MAX_PATTERN} bytes)"
        )));
    }
    text(a)
}

/// A finite number.
///
/// # Errors
///
/// `invalid argument` for anything else (NaN and infinities included).
pub(crate) fn finite(a: &[u8]) -> Result<f64, CmdError> {
    geohook_db::parse_number_bytes(a)
        .filter(|v| v.is_finite())
        .ok_or_else(|| CmdError::invalid(a))
}

/// A finite distance in meters, zero or more (BUFFER, ROAM).
///
/// # Errors
///
/// `invalid argument` for anything else.
pub(crate) fn meters(a: &[u8]) -> Result<f64, CmdError> {
    Some(finite(a)?)
        .filter(|m| *m >= 0.0)
        .ok_or_else(|| CmdError::invalid(a))
}

/// A non-negative integer.
///
/// # Errors
///
/// `invalid argument` for anything else.
pub(crate) fn uint(a: &[u8]) -> Result<u64, CmdError> {
    text(a)?.parse().map_err(|_| CmdError::invalid(a))
}

/// An integer (a logged absolute deadline in milliseconds).
///
/// # Errors
///
/// `invalid argument` for anything else.
pub(crate) fn int(a: &[u8]) -> Result<i64, CmdError> {
    text(a)?.parse().map_err(|_| CmdError::invalid(a))
}

/// A FIELD value or a WHERE bound: a number, a JSON document or a string,
/// read as Tile38 reads them (see `FieldValue::parse`). It must be UTF-8.
///
/// # Errors
///
/// `invalid argument` when it is not UTF-8.
pub(crate) fn field_value(a: &[u8]) -> Result<FieldValue, CmdError> {
    Ok(FieldValue::parse(text(a)?))
}

/// The absolute deadline of `EX seconds` given at `now` (ms).
///
/// # Errors
///
/// `invalid argument` when the seconds are not a finite number.
pub(crate) fn ex_deadline(a: &[u8], now: i64) -> Result<i64, CmdError> {
    let secs = finite(a)?;
    // Saturating: a huge TTL is "never", not an overflow into the past.
    Ok(now.saturating_add((secs * 1000.0) as i64))
}

/// A cursor over one command's arguments.
#[derive(Debug)]
pub(crate) struct Args<'a> {
    all: &'a [Vec<u8>],
    at: usize,
    /// The command (or sub-command) named in an arity error.
    cmd: &'static str,
}

impl<'a> Args<'a> {
    /// A cursor at argument `at` (0 is the command name).
    pub(crate) fn new(all: &'a [Vec<u8>], at: usize, cmd: &'static str) -> Args<'a> {
        Args { all, at, cmd }
    }

    /// The next argument.
    ///
    /// # Errors
    ///
    /// The arity error when there is none.
    pub(crate) fn next(&mut self) -> Result<&'a [u8], CmdError> {
        // Not `ok_or`: that builds the error, and drops it, for every
        // argument that is there.
        let Some(v) = self.all.get(self.at) else {
            return Err(CmdError::Arity(self.cmd));
        };
        self.at += 1;
        Ok(v)
    }

    /// The next argument as UTF-8.
    ///
    /// # Errors
    ///
    /// Arity, or `invalid argument`.
    pub(crate) fn text(&mut self) -> Result<&'a str, CmdError> {
        text(self.next()?)
    }

    /// The next argument as a finite number.
    ///
    /// # Errors
    ///
    /// Arity, or `invalid argument`.
    pub(crate) fn finite(&mut self) -> Result<f64, CmdError> {
        finite(self.next()?)
    }

    /// The next argument in lower case, without taking it.
    pub(crate) fn peek_lower(&self) -> Option<SmolStr> {
        self.all.get(self.at).map(|v| lower(v))
    }

    /// The next argument as a [`Keyword`], without taking it: what an
    /// option parser matches on, without allocating or checking UTF-8.
    pub(crate) fn peek_keyword(&self) -> Option<Keyword> {
        self.all.get(self.at).map(|v| Keyword::of(v))
    }

    /// The next argument, without taking it.
    pub(crate) fn peek(&self) -> Option<&'a [u8]> {
        self.all.get(self.at).map(Vec::as_slice)
    }

    /// True when the next argument is `keyword` (lower case) in any case.
    pub(crate) fn peek_is(&self, keyword: &str) -> bool {
        self.all
            .get(self.at)
            .is_some_and(|v| v.eq_ignore_ascii_case(keyword.as_bytes()))
    }

    /// How many arguments are left.
    pub(crate) fn left(&self) -> usize {
        self.all.len().saturating_sub(self.at)
    }

    /// True when every argument was taken.
    pub(crate) fn done(&self) -> bool {
        self.left() == 0
    }

    /// The position of the next argument.
    pub(crate) fn pos(&self) -> usize {
        self.at
    }

    /// Refuses arguments left over.
    ///
    /// # Errors
    ///
    /// `invalid argument` naming the first one left.
    pub(crate) fn finish(&self) -> Result<(), CmdError> {
        match self.all.get(self.at) {
            Some(a) => Err(CmdError::invalid(a)),
            None => Ok(()),
        }
    }

    /// A `lat lon` pair.
    ///
    /// # Errors
    ///
    /// Arity, a bad number, or coordinates out of range.
    pub(crate) fn point(&mut self) -> Result<Point, CmdError> {
        let lat = self.finite()?;
        let lon = self.finite()?;
        point_at(lat, lon, None)
    }

    /// Four numbers: south-west lat lon, north-east lat lon.
    ///
    /// # Errors
    ///
    /// Arity, a bad number, or a bounds that is not south-west to north-east.
    pub(crate) fn bounds(&mut self) -> Result<Bounds, CmdError> {
        let mut v = [0.0; 4];
        for x in &mut v {
            *x = self.finite()?;
        }
        let b = Bounds {
            sw: point_at(v[0], v[1], None)?,
            ne: point_at(v[2], v[3], None)?,
        };
        // The corners must be in order whatever the coordinate rule.
        if b.sw.lat > b.ne.lat || b.sw.lon > b.ne.lon {
            return Err(geohook_db::Error::InvalidBounds {
                sw_lat: v[0],
                sw_lon: v[1],
                ne_lat: v[2],
                ne_lon: v[3],
            }
            .into());
        }
        Ok(b)
    }

    /// A GeoJSON document.
    ///
    /// # Errors
    ///
    /// Arity, `invalid data` when it is not UTF-8, or the GeoJSON error
    /// (positions out of range only under `--require-valid`).
    pub(crate) fn geojson(&mut self) -> Result<Object, CmdError> {
        let text = text(self.next()?).map_err(|_| CmdError::Msg("invalid data".into()))?;
        // The same coordinate rule as `point_at`: out-of-range positions are
        // Tile38's default, refused only under `--require-valid`.
        if REQUIRE_VALID.load(Ordering::Relaxed) {
            Ok(Object::from_geojson(text)?)
        } else {
            Ok(Object::from_geojson_any_range(text)?)
        }
    }

    /// A search area: `POINT lat lon [meters]` (the radius only where
    /// `point_radius`, and only as the last argument), `CIRCLE lat lon
    /// meters`, `BOUNDS`, `OBJECT geojson`, `HASH geohash`, `SECTOR lat lon
    /// meters bearing1 bearing2`, `QUADKEY key`, `TILE x y z`, or `GET key
    /// id` (the stored object's shape, read from `db`).
    ///
    /// # Errors
    ///
    /// Arity, `invalid argument` for an unknown area type, or the database's
    /// error for a bad shape or a missing object.
    pub(crate) fn area(
        &mut self,
        db: &Database,
        now: i64,
        point_radius: bool,
    ) -> Result<Area, CmdError> {
        let word = self.next()?;
        Ok(match lower(word).as_str() {
            "point" => {
                let p = self.point()?;
                let meters = if point_radius && !self.done() {
                    Some(self.finite()?)
                } else {
                    None
                };
                Area::point(p, meters)?
            }
            "circle" => {
                let p = self.point()?;
                Area::circle(p, self.finite()?)?
            }
            "bounds" => Area::Bounds(self.bounds()?),
            "object" => Area::Object(self.geojson()?),
            "hash" => Area::hash(self.text()?)?,
            "sector" => {
                let p = self.point()?;
                let (meters, b1, b2) = (self.finite()?, self.finite()?, self.finite()?);
                shapes::sector(p, meters, b1, b2)?
            }
            "quadkey" => Area::Bounds(shapes::quadkey_bounds(self.text()?)?),
            "tile" => {
                let mut xyz = [0u64; 3];
                for v in &mut xyz {
                    *v = uint(self.next()?)?;
                }
                Area::Bounds(shapes::tile_bounds(xyz[0], xyz[1], xyz[2])?)
            }
            "get" => {
                let (k, i) = (self.text()?, self.text()?);
                Area::Object(db.get(k, i, now)?.object().clone())
            }
            _ => return Err(CmdError::invalid(word)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_lowers_ascii_letters_only_and_decodes_bad_bytes_lossily() {
        let long = "A".repeat(SmolStr::INLINE_CAP + 5);
        for (given, want) in [
            (&b"LiMiT"[..], "limit"),
            (b"", ""),
            ("ÉTÉ-Nearby".as_bytes(), "ÉtÉ-nearby"),
            (long.as_bytes(), long.to_ascii_lowercase().as_str()),
            (b"AB\xffC", "ab\u{fffd}c"),
        ] {
            assert_eq!(lower(given).as_str(), want, "{given:?}");
        }
    }

    #[test]
    fn peek_keyword_and_peek_leave_the_argument_in_place() {
        let all = [b"NEARBY".to_vec(), b"Fleet".to_vec()];
        let mut a = Args::new(&all, 1, "nearby");
        assert_eq!(a.peek_keyword().unwrap().as_bytes(), b"fleet");
        assert_eq!(a.peek(), Some(&b"Fleet"[..]));
        a.next().unwrap();
        assert!(a.peek_keyword().is_none() && a.peek().is_none());
    }
}
