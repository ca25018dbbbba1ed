//! Field values: numbers, strings and JSON documents (Tile38's FIELD).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// The value of one field of an item.
///
/// Values come from the text of a `FIELD name value` argument, read as
/// Tile38 (1.30 and later) reads it: a number when the text is one, a JSON
/// document when it is a JSON object, array, `true`, `false` or `null`, and a
/// string otherwise. Because every value is read from text the same way,
/// [`FieldValue::text`] reads back to an equal value, which is what lets an
/// append-only file rewrite a field as text.
///
/// A missing field reads as the number 0, and a value that [`is_zero`]
/// (0 or the empty string) is not stored.
///
/// [`is_zero`]: FieldValue::is_zero
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A number, never NaN. `inf` and `-inf` are numbers.
    Number(f64),
    /// Text that is neither a number nor a JSON document.
    String(Arc<str>),
    /// A JSON object, array, `true`, `false` or `null`, as given.
    Json(Arc<str>),
}

static ZERO: FieldValue = FieldValue::Number(0.0);

impl FieldValue {
    /// The value of a missing field: the number 0.
    pub fn zero() -> &'static FieldValue {
        &ZERO
    }

    /// Reads the text of a FIELD argument (see the type's documentation).
    pub fn parse(text: &str) -> FieldValue {
        if let Some(n) = parse_number(text) {
            return FieldValue::Number(n);
        }
        if is_json_document(text) {
            FieldValue::Json(text.into())
        } else {
            FieldValue::String(text.into())
        }
    }

    /// True for the values that mean "unset": 0 and the empty string.
    pub fn is_zero(&self) -> bool {
        match self {
            FieldValue::Number(n) => *n == 0.0,
            FieldValue::String(s) => s.is_empty(),
            FieldValue::Json(_) => false,
        }
    }

    /// True for a number that is NaN, which no field may hold.
    pub fn is_nan(&self) -> bool {
        matches!(self, FieldValue::Number(n) if n.is_nan())
    }

    /// The number, if the value is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The text of the value, as RESP replies and the append-only file carry
    /// it; [`FieldValue::parse`] reads it back to an equal value.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            FieldValue::Number(n) => Cow::Owned(format!("{n}")),
            FieldValue::String(s) | FieldValue::Json(s) => Cow::Borrowed(s),
        }
    }

    /// Appends the value as JSON: a number (`null` when not finite, as JSON
    /// has no infinity), a quoted string, or the document itself.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            FieldValue::Number(n) if n.is_finite() => {
                let _ = write!(out, "{n}");
            }
            FieldValue::Number(_) => out.push_str("null"),
            FieldValue::String(s) => {
                out.push_str(&serde_json::Value::from(&**s).to_string());
            }
            FieldValue::Json(s) => out.push_str(s),
        }
    }

    /// The value as JSON (see [`FieldValue::write_json`]).
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// Bytes the value holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            FieldValue::Number(_) => 0,
            // An `Arc<str>` allocation: two counters and the text.
            FieldValue::String(s) | FieldValue::Json(s) => 16 + s.len(),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            FieldValue::Number(_) => 0,
            FieldValue::String(_) => 1,
            FieldValue::Json(_) => 2,
        }
    }
}

impl Ord for FieldValue {
    /// Numbers by value, before strings in byte order, before JSON documents
    /// in byte order. This is the order WHERE ranges are tested in.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (FieldValue::Number(a), FieldValue::Number(b)) => {
                a.partial_cmp(b).unwrap_or(Ordering::Equal)
            }
            (FieldValue::String(a), FieldValue::String(b))
            | (FieldValue::Json(a), FieldValue::Json(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for FieldValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Numbers are never NaN (the database refuses it), so equality is total.
impl Eq for FieldValue {}

impl From<f64> for FieldValue {
    fn from(n: f64) -> Self {
        FieldValue::Number(n)
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// A number as Tile38 commands write one: Rust's float syntax, which
/// includes `inf`, `+inf`, `-inf` and `infinity` in any case; NaN is not a
/// number here. Used for field values and by the server for every numeric
/// argument, so that both read numbers the same way. It does not allocate.
pub fn parse_number(text: &str) -> Option<f64> {
    parse_number_bytes(text.as_bytes())
}

/// [`parse_number`] of an argument's bytes; bytes that are not UTF-8 are
/// not a number.
///
/// Coordinates and distances are mostly short plain decimals (`33`,
/// `-115.0123`), and those are read here without the float parser: with
/// at most 15 digits the digits are an integer below 2^53 and the scale a
/// power of ten up to 10^15, both exact as `f64`, so their quotient, one
/// IEEE division, is the correctly rounded value, the one the float parser
/// returns (Clinger's fast path; a property test compares the two). Anything
/// else (exponents, more digits, `inf`) goes to the float parser.
pub fn parse_number_bytes(bytes: &[u8]) -> Option<f64> {
    if let Some(v) = short_decimal(bytes) {
        return Some(v);
    }
    std::str::from_utf8(bytes)
        .ok()?
        .parse()
        .ok()
        .filter(|v: &f64| !v.is_nan())
}

/// Most digits [`short_decimal`] reads: 10^15 < 2^53.
const SHORT_DIGITS: usize = 15;

/// The value of `[+-]digits[.digits]` (or `[+-].digits`) with 1 to
/// [`SHORT_DIGITS`] digits in all; `None` for anything else.
fn short_decimal(bytes: &[u8]) -> Option<f64> {
    const SCALE: [f64; SHORT_DIGITS + 1] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, rest) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if rest.len() > SHORT_DIGITS + 1 {
        return None;
    }
    let mut digits: u64 = 0;
    let mut count = 0;
    let mut point = None;
    for (i, &c) in rest.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                digits = digits * 10 + u64::from(c - b'0');
                count += 1;
            }
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
    }
    if count == 0 || count > SHORT_DIGITS {
        return None;
    }
    let scale = point.map_or(0, |i| rest.len() - 1 - i);
    let v = digits as f64 / SCALE[scale];
    Some(if negative { -v } else { v })
}

/// True for a JSON object, array, `true`, `false` or `null`. JSON strings and
/// numbers are not documents: a number is read as a number first, and a
/// quoted string stays a string with its quotes, as given.
fn is_json_document(text: &str) -> bool {
    let t = text.trim_start();
    let starts = matches!(t.as_bytes().first(), Some(b'{' | b'['))
        || matches!(text.trim(), "true" | "false" | "null");
    starts && serde_json::from_str::<serde_json::Value>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_strings_and_documents() {
        assert_eq!(FieldValue::parse("55"), FieldValue::Number(55.0));
        assert_eq!(FieldValue::parse("-1.5e3"), FieldValue::Number(-1500.0));
        assert_eq!(
            FieldValue::parse("-inf"),
            FieldValue::Number(f64::NEG_INFINITY)
        );
        assert_eq!(
            FieldValue::parse("world"),
            FieldValue::String("world".into())
        );
        assert_eq!(FieldValue::parse("nan"), FieldValue::String("nan".into()));
        assert_eq!(
            FieldValue::parse("\"q\""),
            FieldValue::String("\"q\"".into())
        );
        assert_eq!(
            FieldValue::parse("{\"a\":1}"),
            FieldValue::Json("{\"a\":1}".into())
        );
        assert_eq!(FieldValue::parse("[1,2]"), FieldValue::Json("[1,2]".into()));
        assert_eq!(FieldValue::parse("true"), FieldValue::Json("true".into()));
        // Not valid JSON: a string.
        assert_eq!(
            FieldValue::parse("{oops"),
            FieldValue::String("{oops".into())
        );
        assert_eq!(FieldValue::parse(""), FieldValue::String("".into()));
    }

    #[test]
    fn numbers_take_infinities_in_any_case_and_refuse_nan() {
        for (t, want) in [
            ("inf", Some(f64::INFINITY)),
            ("+INF", Some(f64::INFINITY)),
            ("-Inf", Some(f64::NEG_INFINITY)),
            ("Infinity", Some(f64::INFINITY)),
            ("-infinity", Some(f64::NEG_INFINITY)),
            ("1e400", Some(f64::INFINITY)),
            ("-115", Some(-115.0)),
            ("33.5e1", Some(335.0)),
            ("nan", None),
            ("-NaN", None),
            ("", None),
            (" 1", None),
            ("0x10", None),
            ("1_0", None),
        ] {
            assert_eq!(parse_number(t), want, "{t}");
        }
    }

    #[test]
    fn short_decimals_read_as_the_float_parser_reads_them() {
        for t in [
            "0",
            "-0",
            "+0",
            "-0.0",
            "5.",
            ".5",
            "-.5",
            "+.25",
            "007",
            "0.1",
            "0.3",
            "-115",
            "33.5123",
            "999999999999999",
            "-99999999999999.9",
            "0.000000000000001",
            "123456789012345",
            "1234567890123456",
            "0.1234567890123456",
            "9007199254740993",
        ] {
            let want: f64 = t.parse().unwrap();
            let got = parse_number(t).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{t}");
        }
        for t in [".", "-", "+", "-.", "1.2.3", "--1", "1-", "1 ", "١"] {
            assert_eq!(parse_number(t), None, "{t}");
        }
        assert_eq!(parse_number_bytes(b"12\xff"), None);
        assert_eq!(parse_number_bytes(b"-115"), Some(-115.0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 5000,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        #[test]
        fn plain_decimals_match_the_float_parser(
            t in "[+-]?[0-9]{0,18}(\\.[0-9]{0,18})?"
        ) {
            let want = t.parse::<f64>().ok();
            let got = parse_number(&t);
            proptest::prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{}", t);
        }
    }

    #[test]
    fn text_reads_back_to_the_same_value() {
        for t in [
            "0",
            "55",
            "-1.25",
            "1e300",
            "inf",
            "-inf",
            "world",
            "a b",
            "{\"a\":[1]}",
            "null",
            "[",
            "\"x\"",
        ] {
            let v = FieldValue::parse(t);
            assert_eq!(FieldValue::parse(&v.text()), v, "{t}");
        }
    }

    #[test]
    fn zero_values_and_json() {
        assert!(FieldValue::parse("0").is_zero());
        assert!(FieldValue::parse("-0").is_zero());
        assert!(FieldValue::parse("").is_zero());
        assert!(!FieldValue::parse("null").is_zero());
        assert_eq!(FieldValue::parse("20").to_json(), "20");
        assert_eq!(FieldValue::parse("inf").to_json(), "null");
        assert_eq!(
            FieldValue::parse("say \"hi\"").to_json(),
            "\"say \\\"hi\\\"\""
        );
        assert_eq!(FieldValue::parse("[1, 2]").to_json(), "[1, 2]");
    }

    #[test]
    fn order_is_numbers_then_strings_then_documents() {
        let mut v: Vec<FieldValue> = ["b", "10", "[1]", "a", "-inf", "2", "{}"]
            .iter()
            .map(|t| FieldValue::parse(t))
            .collect();
        v.sort();
        let t: Vec<String> = v.iter().map(|x| x.text().into_owned()).collect();
        assert_eq!(t, ["-inf", "2", "10", "a", "b", "[1]", "{}"]);
    }
}
