//! JSON documents inside objects: `JSET key id path value [RAW|STR]`,
//! `JGET key id [path] [RAW]` and `JDEL key id path`, with Tile38's
//! semantics and reply shapes.
//!
//! Tile38 reads and edits the document's text with gjson/sjson paths. No
//! well-kept Rust crate edits JSON text in place by such a path (editing a
//! parsed `serde_json::Value` would reorder keys and rewrite numbers such as
//! `1.0e10`, which Tile38 keeps as sent), so [`Path`] implements the subset
//! Tile38's own tests use: dot-separated keys, `\` escaping a `.` or a
//! wildcard in a key, array indexes, `-1` to append (JSET), and `#` for an
//! array's length (JGET). Wildcards (`*`, `?`), queries (`#(...)`),
//! modifiers (`@`) and pipes (`|`) are refused with an error instead of
//! being read differently from Tile38.
//!
//! The document is checked with `serde_json` (which bounds nesting) before
//! it is walked, so the walker below meets only valid JSON and never
//! recurses.
//!
//! A JSET or JDEL on a spatial object runs as `SET key id OBJECT json` (as
//! Tile38 does) and one on a string object as `SET key id STRING json`: the
//! log and the followers see that SET, which is deterministic to replay and
//! tells the hooks of the change like any SET.

use geohook_db::Database;

use crate::cmd::args::{lower, text};
use crate::cmd::ctx::{json_str, CmdError, Ctx};
use crate::cmd::set::Set;
use crate::state::{Core, Writer};
use geohook_resp::Reply;

/// A parsed gjson/sjson path: its keys, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(Vec<String>);

impl Path {
    /// Parses `a.b\.c.0` into `["a", "b.c", "0"]`.
    ///
    /// # Errors
    ///
    /// An empty path, an empty key, a trailing `\`, or a gjson feature
    /// outside the subset (see the module documentation).
    pub(crate) fn parse(path: &str) -> Result<Path, CmdError> {
        let unsupported = |what: &str| {
            CmdError::Msg(format!(
                "path '{path}' uses {what}, which this server does not support"
            ))
        };
        let mut keys = Vec::new();
        let mut key = String::new();
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) => key.push(e),
                    None => return Err(CmdError::Msg(format!("invalid path '{path}'"))),
                },
                '.' => keys.push(std::mem::take(&mut key)),
                '*' | '?' => return Err(unsupported("a wildcard")),
                '|' => return Err(unsupported("a pipe")),
                '@' if key.is_empty() => return Err(unsupported("a modifier")),
                '#' if key.is_empty() && chars.as_str().starts_with('(') => {
                    return Err(unsupported("a query"))
                }
                c => key.push(c),
            }
        }
        keys.push(key);
        if keys.iter().any(String::is_empty) {
            return Err(CmdError::Msg(format!("invalid path '{path}'")));
        }
        if keys.len() > MAX_DEPTH {
            return Err(CmdError::Msg(format!(
                "path has more than {MAX_DEPTH} keys"
            )));
        }
        Ok(Path(keys))
    }
}

/// The most keys a path may have. A document nests at most 128 deep (the
/// limit `serde_json` reads with), so no longer path could be used, and the
/// cap keeps building a missing branch cheap.
const MAX_DEPTH: usize = 128;

/// An array index as sjson reads a key: digits only.
fn index(key: &str) -> Option<usize> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse().ok()
}

/// Whether `doc` is one valid JSON value (serde_json bounds its nesting).
fn valid(doc: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(doc).is_ok()
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The end of the value that starts at `i`, in a valid document.
fn value_end(s: &[u8], i: usize) -> usize {
    match s[i] {
        b'"' => string_end(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < s.len() {
                match s[j] {
                    b'"' => {
                        j = string_end(s, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            s.len()
        }
        _ => {
            let mut j = i;
            while j < s.len() && !matches!(s[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            j
        }
    }
}

/// The end (past the closing quote) of the string that starts at `i`.
fn string_end(s: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    s.len()
}

/// One member of an object or element of an array: the span of its key
/// (objects only) and of its value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Where the entry starts (its key, or its value in an array).
    start: usize,
    key: Option<(usize, usize)>,
    value: (usize, usize),
}

/// The entries of the object or array at `open` (its `{` or `[`), and the
/// position of its closing bracket.
fn entries(s: &[u8], open: usize) -> (Vec<Entry>, usize) {
    let object = s[open] == b'{';
    let mut out = Vec::new();
    let mut i = skip_ws(s, open + 1);
    loop {
        if s[i] == b'}' || s[i] == b']' {
            return (out, i);
        }
        let start = i;
        let key = if object {
            let end = string_end(s, i);
            i = skip_ws(s, end);
            // The colon.
            i = skip_ws(s, i + 1);
            Some((start, end))
        } else {
            None
        };
        let end = value_end(s, i);
        out.push(Entry {
            start,
            key,
            value: (i, end),
        });
        i = skip_ws(s, end);
        if s[i] == b',' {
            i = skip_ws(s, i + 1);
        }
    }
}

/// The text of a JSON string literal, unescaped.
fn unquote(raw: &str) -> String {
    if raw.contains('\\') {
        serde_json::from_str(raw).unwrap_or_default()
    } else {
        raw[1..raw.len() - 1].to_string()
    }
}

/// Where a path leads in a document.
enum Found {
    /// The value's span.
    Value(usize, usize),
    /// The path stops existing at key `at`, inside the container whose
    /// opening bracket is at `open`.
    Missing { at: usize, open: usize },
    /// Key `at` would descend into the scalar whose span this is.
    Scalar { at: usize, span: (usize, usize) },
}

/// Follows `path` through the valid document `doc`.
fn find(doc: &str, path: &Path) -> Found {
    let s = doc.as_bytes();
    let start = skip_ws(s, 0);
    let mut span = (start, value_end(s, start));
    for (at, key) in path.0.iter().enumerate() {
        let open = span.0;
        if s[open] != b'{' && s[open] != b'[' {
            return Found::Scalar { at, span };
        }
        let (items, _) = entries(s, open);
        let hit = if s[open] == b'{' {
            items
                .iter()
                .rev()
                .find(|e| e.key.is_some_and(|(a, b)| unquote(&doc[a..b]) == *key))
        } else {
            index(key).and_then(|n| items.get(n))
        };
        match hit {
            Some(e) => span = e.value,
            None => return Found::Missing { at, open },
        }
    }
    Found::Value(span.0, span.1)
}

/// JGET's lookup: the raw text of the value at `path`, or `None`. `#` on
/// an array is its length, as in gjson.
fn get_raw(doc: &str, path: &Path) -> Option<String> {
    if !valid(doc) {
        return None;
    }
    match find(doc, path) {
        Found::Value(a, b) => Some(doc[a..b].to_string()),
        Found::Missing { at, open } if at + 1 == path.0.len() && path.0[at] == "#" => {
            let s = doc.as_bytes();
            (s[open] == b'[').then(|| entries(s, open).0.len().to_string())
        }
        _ => None,
    }
}

/// gjson's `String()` of a raw value: a string unescaped, an integer as
/// written, another number in Go's shortest form, `null` as empty, and
/// anything else raw.
fn display(raw: &str) -> String {
    match raw.as_bytes().first() {
        Some(b'"') => unquote(raw),
        Some(b'n') => String::new(),
        Some(b'-' | b'0'..=b'9') => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if digits.bytes().all(|b| b.is_ascii_digit()) {
                raw.to_string()
            } else {
                raw.parse::<f64>()
                    .map(|v| format!("{v}"))
                    .unwrap_or_else(|_| raw.to_string())
            }
        }
        _ => raw.to_string(),
    }
}

/// The JSON text of `keys` created from nothing around `value`: a number
/// (or `-1`) makes an array, anything else an object.
///
/// # Errors
///
/// An index that would pad an array past [`MAX_PAD`].
fn build(keys: &[String], value: &str) -> Result<String, CmdError> {
    // Openings in order, closings in reverse, joined once around the value.
    let mut open = String::new();
    let mut close = Vec::with_capacity(keys.len());
    for key in keys {
        if key == "-1" {
            open.push('[');
            close.push(']');
        } else if let Some(n) = index(key) {
            if n > MAX_PAD {
                return Err(too_far(key));
            }
            open.push('[');
            open.push_str(&"null,".repeat(n));
            close.push(']');
        } else {
            open.push('{');
            open.push_str(&json_str(key));
            open.push(':');
            close.push('}');
        }
    }
    open.push_str(value);
    open.extend(close.iter().rev());
    Ok(open)
}

fn too_far(key: &str) -> CmdError {
    CmdError::Msg(format!("array index '{key}' is too far past the end"))
}

/// sjson's `Set`/`SetRaw`: `doc` with the value at `path` set to the JSON
/// text `value`, creating what is missing. A document that is not a JSON
/// object or array is replaced, as there is nothing to descend into.
///
/// # Errors
///
/// A path that needs more elements of an array than the cap allows, or a
/// key that is not an index for an array.
fn set(doc: &str, path: &Path, value: &str) -> Result<String, CmdError> {
    let trimmed = doc.trim_start();
    if !(valid(doc) && (trimmed.starts_with('{') || trimmed.starts_with('['))) {
        return build(&path.0, value);
    }
    let s = doc.as_bytes();
    Ok(match find(doc, path) {
        Found::Value(a, b) => splice(doc, a, b, value),
        Found::Scalar { at, span } => splice(doc, span.0, span.1, &build(&path.0[at..], value)?),
        Found::Missing { at, open } => {
            let key = &path.0[at];
            let inner = build(&path.0[at + 1..], value)?;
            let (items, close) = entries(s, open);
            let new = if s[open] == b'{' {
                format!("{}:{inner}", json_str(key))
            } else {
                let pad = match (key.as_str(), index(key)) {
                    ("-1", _) => 0,
                    (_, Some(n)) => n - items.len(),
                    _ => return Err(CmdError::Msg(format!("cannot set key '{key}' in an array"))),
                };
                if pad > MAX_PAD {
                    return Err(too_far(key));
                }
                format!("{}{inner}", "null,".repeat(pad))
            };
            let sep = if items.is_empty() { "" } else { "," };
            splice(doc, close, close, &format!("{sep}{new}"))
        }
    })
}

/// The most `null`s a JSET pads an array with, so that one small command
/// cannot make the server allocate without bound.
const MAX_PAD: usize = 1 << 16;

/// sjson's `Delete`: `doc` without the value at `path`, or `None` when the
/// path does not exist.
fn delete(doc: &str, path: &Path) -> Option<String> {
    if !valid(doc) {
        return None;
    }
    let (parent, last) = path.0.split_at(path.0.len() - 1);
    let open = if parent.is_empty() {
        skip_ws(doc.as_bytes(), 0)
    } else {
        match find(doc, &Path(parent.to_vec())) {
            Found::Value(a, _) => a,
            _ => return None,
        }
    };
    let s = doc.as_bytes();
    if s[open] != b'{' && s[open] != b'[' {
        return None;
    }
    let (items, close) = entries(s, open);
    let key = &last[0];
    let pos = if s[open] == b'{' {
        items
            .iter()
            .rposition(|e| e.key.is_some_and(|(a, b)| unquote(&doc[a..b]) == *key))?
    } else {
        index(key).filter(|n| *n < items.len())?
    };
    // The entry goes with the comma before it, or after it when it is the
    // first.
    let (a, b) = match (pos, items.len()) {
        (_, 1) => (items[0].start, close),
        (0, _) => (items[0].start, items[1].start),
        (p, _) => (items[p - 1].value.1, items[p].value.1),
    };
    Some(splice(doc, a, b, ""))
}

fn splice(doc: &str, a: usize, b: usize, with: &str) -> String {
    let mut out = String::with_capacity(doc.len() - (b - a) + with.len());
    out.push_str(&doc[..a]);
    out.push_str(with);
    out.push_str(&doc[b..]);
    out
}

/// Tile38's test for a value JSET stores as a JSON number.
fn is_json_number(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > from
    };
    if b.get(i) == Some(&b'0') {
        i += 1;
    } else if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// The document of an object: a spatial object's GeoJSON, a string's text.
fn document(db: &Database, key: &str, id: &str, now: i64) -> Option<(String, bool)> {
    let item = db.get(key, id, now).ok()?;
    let o = item.object();
    Some((o.to_resp_text().into_owned(), o.is_spatial()))
}

/// Stores `doc` as the object `key`/`id` through SET: as a GeoJSON object
/// when the object was spatial, else as a string.
fn store(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    key: &str,
    id: &str,
    doc: String,
    spatial: bool,
) -> Result<(), CmdError> {
    let kind: &[u8] = if spatial { b"object" } else { b"string" };
    let args = [
        b"set".to_vec(),
        key.as_bytes().to_vec(),
        id.as_bytes().to_vec(),
        kind.to_vec(),
        doc.into_bytes(),
    ];
    Set::parse(&args, ctx.now())?.apply(core, w, ctx)?;
    Ok(())
}

/// `JSET key id path value [RAW|STR]`.
///
/// # Errors
///
/// Arity, a bad flag, path or RAW value, the new document's refusal as
/// GeoJSON (for a spatial object), the log's failure.
pub(crate) fn jset(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let (mut raw, mut string) = (false, false);
    match args.len() {
        5 => {}
        6 => match lower(&args[5]).as_str() {
            "raw" => raw = true,
            "str" => string = true,
            _ => return Err(CmdError::invalid(&args[5])),
        },
        _ => return Err(CmdError::Arity("jset")),
    }
    let (key, id) = (text(&args[1])?, text(&args[2])?);
    let path = Path::parse(text(&args[3])?)?;
    let val = text(&args[4])?;
    if !raw && !string {
        raw = is_json_number(val) || matches!(val, "true" | "false" | "null");
    }
    let value = if raw {
        // sjson would splice any text in; a RAW value that is not JSON
        // would leave a document nothing can read again, so it is refused.
        if !valid(val) {
            return Err(CmdError::invalid(&args[4]));
        }
        val.to_string()
    } else {
        json_str(val)
    };
    let (doc, spatial) = document(&core.db, key, id, ctx.now()).unwrap_or_default();
    let doc = set(&doc, &path, &value)?;
    // A document past serde_json's nesting limit could not be read again
    // (and a later JSET would start it afresh), so it is refused whole.
    if !valid(&doc) {
        return Err(CmdError::Msg("the document would nest too deeply".into()));
    }
    store(core, w, ctx, key, id, doc, spatial)?;
    Ok(ctx.ok())
}

/// `JDEL key id path`.
///
/// # Errors
///
/// In JSON mode a missing key (`key not found`) or path (`path not
/// found`); a bad path; the new document's refusal as GeoJSON; the log's
/// failure.
pub(crate) fn jdel(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let (key, id) = (text(&args[1])?, text(&args[2])?);
    let path = Path::parse(text(&args[3])?)?;
    if core.db.collection(key).is_none() {
        return if ctx.json {
            Err(geohook_db::Error::KeyNotFound { key: key.into() }.into())
        } else {
            Ok(Reply::Int(0))
        };
    }
    let found = document(&core.db, key, id, ctx.now())
        .and_then(|(doc, spatial)| Some((delete(&doc, &path)?, spatial)));
    let Some((doc, spatial)) = found else {
        return if ctx.json {
            Err(CmdError::Msg("path not found".into()))
        } else {
            Ok(Reply::Int(0))
        };
    };
    store(core, w, ctx, key, id, doc, spatial)?;
    Ok(ctx.ok_or_int(1))
}

/// `JGET key id [path] [RAW]`.
///
/// # Errors
///
/// Arity, a bad flag or path; in JSON mode the missing key or id.
pub(crate) fn jget(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    if args.len() > 5 {
        return Err(CmdError::Arity("jget"));
    }
    let raw = match args.get(4) {
        Some(a) if lower(a) == "raw" => true,
        Some(a) => return Err(CmdError::invalid(a)),
        None => false,
    };
    let (key, id) = (text(&args[1])?, text(&args[2])?);
    let path = args.get(3).map(|p| Path::parse(text(p)?)).transpose()?;
    let item = match db.get(key, id, ctx.now()) {
        Ok(item) => item,
        Err(_) if !ctx.json => return Ok(Reply::Null),
        Err(e) => return Err(e.into()),
    };
    let doc = item.object().to_resp_text();
    let found = match &path {
        Some(p) => get_raw(&doc, p),
        None => valid(&doc).then(|| doc.trim().to_string()),
    };
    let value = found.map(|r| if raw { r } else { display(&r) });
    Ok(match (value, ctx.json) {
        (Some(v), true) => ctx.ok_json(&format!(",\"value\":{}", json_str(&v))),
        (None, true) => ctx.ok_json(""),
        (Some(v), false) => Reply::bulk(v),
        (None, false) => Reply::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    /// Runs a sequence of sets from an empty document, as Tile38's
    /// `json_JSET_basic_test` does.
    #[test]
    fn sets_and_deletes_follow_tile38s_basic_test() {
        let mut doc = String::new();
        doc = set(&doc, &p("hello"), "\"world\"").unwrap();
        assert_eq!(doc, r#"{"hello":"world"}"#);
        doc = set(&doc, &p("hello"), "\"planet\"").unwrap();
        assert_eq!(doc, r#"{"hello":"planet"}"#);
        doc = set(&doc, &p("user.name.last"), "\"tom\"").unwrap();
        doc = set(&doc, &p("user.name.first"), "\"andrew\"").unwrap();
        assert_eq!(
            doc,
            r#"{"hello":"planet","user":{"name":{"last":"tom","first":"andrew"}}}"#
        );
        doc = delete(&doc, &p("user.name.last")).unwrap();
        assert_eq!(
            doc,
            r#"{"hello":"planet","user":{"name":{"first":"andrew"}}}"#
        );
        assert_eq!(delete(&doc, &p("user.name.last")), None);
    }

    #[test]
    fn arrays_are_indexed_appended_and_counted() {
        let doc = r#"{"type":"Point","coordinates":[-115,33]}"#;
        let doc = set(doc, &p("coordinates.1"), "44").unwrap();
        assert_eq!(doc, r#"{"type":"Point","coordinates":[-115,44]}"#);
        let mut doc = r#"{"properties":{}}"#.to_string();
        for tag in ["southwest", "united states", "hot"] {
            doc = set(&doc, &p("properties.tags.-1"), &json_str(tag)).unwrap();
        }
        assert_eq!(
            doc,
            r#"{"properties":{"tags":["southwest","united states","hot"]}}"#
        );
        assert_eq!(get_raw(&doc, &p("properties.tags.#")).as_deref(), Some("3"));
        assert_eq!(
            get_raw(&doc, &p("properties.tags.1")).as_deref(),
            Some("\"united states\"")
        );
        assert_eq!(
            set("[1]", &p("3"), "4").unwrap(),
            "[1,null,null,4]",
            "sjson pads with nulls"
        );
        assert!(set("[1]", &p("x"), "4").is_err());
        assert!(set("[]", &p("100000000"), "4").is_err(), "bounded padding");
        assert!(
            set("", &p("a.100000000"), "4").is_err(),
            "bounded when built"
        );
        assert_eq!(
            set(r#"{"a":{}}"#, &p("a.100000000"), "4").unwrap(),
            r#"{"a":{"100000000":4}}"#,
            "a number is a key in an object"
        );
        assert_eq!(delete("[1,2,3]", &p("1")).as_deref(), Some("[1,3]"));
        assert_eq!(delete("[1,2,3]", &p("0")).as_deref(), Some("[2,3]"));
        assert_eq!(delete("[1]", &p("0")).as_deref(), Some("[]"));
        assert_eq!(delete("[1]", &p("1")), None);
    }

    #[test]
    fn whitespace_escapes_and_scalars_in_the_way() {
        let doc = "{ \"a\" : { \"b.c\" : 1 } , \"q\\\"\" : \"x\\ny\" }";
        assert_eq!(get_raw(doc, &p("a.b\\.c")).as_deref(), Some("1"));
        assert_eq!(display(&get_raw(doc, &p("q\"")).unwrap()), "x\ny");
        assert_eq!(
            delete(doc, &p("a")).as_deref(),
            Some("{ \"q\\\"\" : \"x\\ny\" }")
        );
        assert_eq!(
            set(r#"{"a":5}"#, &p("a.b"), "1").unwrap(),
            r#"{"a":{"b":1}}"#
        );
        assert_eq!(set("not json", &p("a"), "1").unwrap(), r#"{"a":1}"#);
        assert_eq!(get_raw("not json", &p("a")), None);
    }

    #[test]
    fn values_display_as_gjson_strings() {
        assert_eq!(display("0"), "0");
        assert_eq!(display("3.14"), "3.14");
        assert_eq!(display("1.0e10"), "10000000000");
        assert_eq!(display("null"), "");
        assert_eq!(display("true"), "true");
        assert_eq!(display(r#"{"a":1}"#), r#"{"a":1}"#);
    }

    #[test]
    fn numbers_are_recognised_as_tile38_does() {
        for v in ["0", "-1", "3.14", "1.0e10", "1E-3"] {
            assert!(is_json_number(v), "{v}");
        }
        for v in ["0123", "", "-", "1.", ".5", "1e", "0x1", "1.0e10x"] {
            assert!(!is_json_number(v), "{v}");
        }
    }

    #[test]
    fn long_paths_are_built_in_one_pass_and_capped() {
        let keys: Vec<String> = (0..MAX_DEPTH).map(|_| "a".to_string()).collect();
        let deep = keys.join(".");
        let doc = set("", &p(&deep), "1").unwrap();
        assert_eq!(doc.len(), MAX_DEPTH * 6 + 1);
        let closing = "}".repeat(MAX_DEPTH);
        assert!(doc.starts_with(r#"{"a":{"a":"#), "{doc}");
        assert!(doc.ends_with(&format!(":1{closing}")), "{doc}");
        assert!(valid(&doc), "still readable at the deepest path allowed");
        assert!(Path::parse(&format!("{deep}.a")).is_err());
    }

    #[test]
    fn paths_parse_the_supported_subset_and_refuse_the_rest() {
        assert_eq!(p("a.b\\.c.0").0, ["a", "b.c", "0"]);
        for bad in [
            "", "a..b", "a.", "a\\", "a.*", "fr?ends", "a|b", "@reverse", "#(a==1)",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }
}
