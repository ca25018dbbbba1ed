//! The search filters that geohook-db's own `Where` ranges cannot say:
//! `WHERE field op value`, exclusive `(min`/`(max` ranges, `WHEREIN field
//! count v1 v2 ...`, and `WHERE 'expression'` (Tile38's expression.go: a
//! JavaScript-like language over the object's GeoJSON members, its `id`,
//! its `type` and its fields, with `&&`, `||`, `!`, parentheses and
//! comparisons; strings compare without regard to case, and an unknown
//! name reads as 0, as in Tile38).

use geohook_db::{FieldValue, Fields, Item, Object};
use serde_json::Value as Json;

use crate::cmd::args::Args;
use crate::cmd::ctx::CmdError;

/// The deepest nesting of parentheses and `!` an expression may have, so
/// that a peer's expression cannot exhaust the stack of the parser.
const MAX_DEPTH: usize = 64;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" | "===" => Op::Eq,
            "!=" | "!==" => Op::Ne,
            _ => return None,
        })
    }
}

/// One search filter; an item must pass every filter of a search.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    /// `WHERE field min max`, each bound exclusive when written `(v`.
    Range {
        field: String,
        min: FieldValue,
        min_excl: bool,
        max: FieldValue,
        max_excl: bool,
    },
    /// `WHERE field op value`.
    Cmp {
        field: String,
        op: Op,
        value: FieldValue,
    },
    /// `WHEREIN field count v1 ...`: the field equals one of the values.
    In {
        field: String,
        values: Vec<FieldValue>,
    },
    /// `WHERE 'expression'`.
    Expr(Expr),
}

/// True when WHERE's first argument is an expression rather than a field
/// name. Tile38's `detectExprToken` says so when it is the last argument or
/// the next one starts with a letter (other than `inf`). This server also
/// reads `WHERE name a z` as a range of strings, so a bare name (letters,
/// digits, `_`, `.`, `$`) is an expression only when a keyword follows it
/// (`WHERE active IDS`); anything with an operator, a space or a quote in
/// it is one wherever it stands.
pub(crate) fn is_expression(rest: &[Vec<u8>]) -> bool {
    const KEYWORDS: &[&str] = &[
        "buffer", "cursor", "limit", "match", "where", "wherein", "nofields", "distance", "asc",
        "desc", "count", "ids", "objects", "points", "bounds", "hashes", "point", "circle",
        "object", "hash", "get", "sector", "quadkey", "tile",
    ];
    let Some(first) = rest.first() else {
        return false;
    };
    let bare = !first.is_empty()
        && first
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'$'));
    match rest {
        [_] => true,
        [_, next, ..] if !bare => {
            next.is_empty() || (next[0].is_ascii_alphabetic() && !next.eq_ignore_ascii_case(b"inf"))
        }
        [_, next, ..] => {
            let next = String::from_utf8_lossy(next).to_ascii_lowercase();
            KEYWORDS.contains(&next.as_str())
        }
        [] => false,
    }
}

/// Reads what follows `WHERE`: an expression, or `field min max` / `field
/// op value`.
///
/// # Errors
///
/// Arity, a bad argument, or an invalid expression.
pub(crate) fn parse_where(a: &mut Args<'_>, all: &[Vec<u8>]) -> Result<Filter, CmdError> {
    if is_expression(&all[a.pos()..]) {
        return Ok(Filter::Expr(Expr::parse(a.text()?)?));
    }
    let field = a.text()?;
    let (lo, hi) = (a.text()?, a.text()?);
    Ok(Filter::where_field(field, lo, hi))
}

/// Reads what follows `WHEREIN`: `field count v1 v2 …`; `name` is the
/// command named in an arity error.
///
/// # Errors
///
/// Arity (the count is checked against the arguments left before anything
/// is reserved for it), or a bad argument.
pub(crate) fn parse_wherein(a: &mut Args<'_>, name: &'static str) -> Result<Filter, CmdError> {
    let field = a.text()?.to_string();
    let count = crate::cmd::args::uint(a.next()?)?;
    if count > a.left() as u64 {
        return Err(CmdError::Arity(name));
    }
    let values = (0..count)
        .map(|_| crate::cmd::args::field_value(a.next()?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Filter::In { field, values })
}

/// The WHERE and WHEREIN filters of a fence, as the hook matcher applies
/// them to each written object.
#[derive(Debug)]
pub(crate) struct FenceTest(pub(crate) Vec<Filter>);

impl geohook_hooks::ObjectTest for FenceTest {
    fn accepts(&self, id: &str, object: &Object, fields: &Fields) -> bool {
        self.0.iter().all(|f| f.accepts_parts(id, object, fields))
    }
}

/// A WHERE bound as Tile38 reads it: `+inf` is `inf`, and a leading `(`
/// makes it exclusive.
fn bound(text: &str) -> (FieldValue, bool) {
    let (text, excl) = match text.strip_prefix('(') {
        Some(t) => (t, true),
        None => (text, false),
    };
    (FieldValue::parse(text), excl)
}

impl Filter {
    /// `WHERE field a b`: a range, or an operator and a value.
    pub(crate) fn where_field(field: &str, a: &str, b: &str) -> Filter {
        if let Some(op) = Op::parse(a) {
            return Filter::Cmp {
                field: field.to_string(),
                op,
                value: FieldValue::parse(b),
            };
        }
        let (min, min_excl) = bound(a);
        let (max, max_excl) = bound(b);
        Filter::Range {
            field: field.to_string(),
            min,
            min_excl,
            max,
            max_excl,
        }
    }

    /// An inclusive range that geohook-db's own `Where` can check during
    /// its walk, if this is one.
    pub(crate) fn as_db_where(&self) -> Option<geohook_db::Where> {
        match self {
            Filter::Range {
                field,
                min,
                min_excl: false,
                max,
                max_excl: false,
            } => Some(geohook_db::Where {
                field: field.clone(),
                min: min.clone(),
                max: max.clone(),
            }),
            _ => None,
        }
    }

    /// True when the item with this id passes.
    pub(crate) fn accepts(&self, id: &str, item: &Item) -> bool {
        self.accepts_parts(id, item.object(), item.fields())
    }

    /// True when the object with this id and these fields passes (a fence
    /// tests a written object, which is no stored item yet).
    pub(crate) fn accepts_parts(&self, id: &str, obj: &Object, fields: &Fields) -> bool {
        match self {
            Filter::Range {
                field,
                min,
                min_excl,
                max,
                max_excl,
            } => {
                let v = fields.value(field);
                let above = if *min_excl { v > min } else { v >= min };
                let below = if *max_excl { v < max } else { v <= max };
                above && below
            }
            Filter::Cmp { field, op, value } => {
                let v = fields.value(field);
                match op {
                    Op::Lt => v < value,
                    Op::Le => v <= value,
                    Op::Gt => v > value,
                    Op::Ge => v >= value,
                    Op::Eq => v == value,
                    Op::Ne => v != value,
                }
            }
            Filter::In { field, values } => {
                let v = fields.value(field);
                values.iter().any(|x| x == v)
            }
            Filter::Expr(e) => e.eval(id, obj, fields).truthy(),
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Lit(Val),
    /// A name and the member names that follow it (`properties.speed`).
    Ref(Vec<String>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Op, Box<Expr>, Box<Expr>),
}

/// A value during evaluation, with JavaScript's kinds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    /// An object or array member of a GeoJSON document or a JSON field.
    Json(Json),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Undefined | Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Str(s) => !s.is_empty(),
            Val::Json(_) => true,
        }
    }

    fn number(&self) -> f64 {
        match self {
            Val::Undefined | Val::Json(_) => f64::NAN,
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(*b)),
            Val::Num(n) => *n,
            Val::Str(s) if s.trim().is_empty() => 0.0,
            Val::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
        }
    }

    fn of_json(v: &Json) -> Val {
        match v {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            Json::String(s) => Val::Str(s.clone()),
            other => Val::Json(other.clone()),
        }
    }

    fn of_field(v: &FieldValue) -> Val {
        match v {
            FieldValue::Number(n) => Val::Num(*n),
            FieldValue::String(s) => Val::Str(s.to_string()),
            other => serde_json::from_str(&other.text())
                .map(|j| Val::of_json(&j))
                .unwrap_or(Val::Undefined),
        }
    }
}

/// `a op b` with JavaScript's loose rules and Tile38's case-insensitive
/// strings.
fn compare(op: Op, a: &Val, b: &Val) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Val::Undefined | Val::Null, Val::Undefined | Val::Null)
            if matches!(op, Op::Eq | Op::Ne) =>
        {
            Some(Ordering::Equal)
        }
        (Val::Undefined | Val::Null, _) | (_, Val::Undefined | Val::Null)
            if matches!(op, Op::Eq | Op::Ne) =>
        {
            None
        }
        (Val::Json(x), Val::Json(y)) => (x == y).then_some(Ordering::Equal),
        _ => a.number().partial_cmp(&b.number()),
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// Tile38's name for the object's kind (expr.go's `typeForObject`).
fn type_name(obj: &Object) -> Val {
    let t = match obj {
        Object::Point(_) => "Point",
        Object::Bounds(_) => "Polygon",
        Object::Geometry(_) => {
            return serde_json::from_str::<Json>(&obj.to_json())
                .ok()
                .and_then(|j| j.get("type").and_then(Json::as_str).map(str::to_string))
                .map_or(Val::Undefined, Val::Str)
        }
        Object::String(_) => return Val::Undefined,
    };
    Val::Str(t.into())
}

impl Expr {
    /// Parses an expression.
    ///
    /// # Errors
    ///
    /// `invalid expression` with the reason for a syntax error or for
    /// nesting deeper than [`MAX_DEPTH`].
    pub(crate) fn parse(text: &str) -> Result<Expr, CmdError> {
        let toks = lex(text)?;
        let mut p = Parser { toks, at: 0 };
        let e = p.or(0)?;
        if p.at != p.toks.len() {
            return Err(bad_expr(&format!("unexpected {:?}", p.toks[p.at])));
        }
        Ok(e)
    }

    fn eval(&self, id: &str, obj: &Object, fields: &Fields) -> Val {
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Ref(path) => {
                let mut v = root(&path[0], id, obj, fields);
                for name in &path[1..] {
                    v = match v {
                        Val::Json(Json::Object(m)) => {
                            m.get(name).map_or(Val::Undefined, Val::of_json)
                        }
                        _ => Val::Undefined,
                    };
                }
                v
            }
            Expr::Not(e) => Val::Bool(!e.eval(id, obj, fields).truthy()),
            Expr::And(a, b) => {
                Val::Bool(a.eval(id, obj, fields).truthy() && b.eval(id, obj, fields).truthy())
            }
            Expr::Or(a, b) => {
                Val::Bool(a.eval(id, obj, fields).truthy() || b.eval(id, obj, fields).truthy())
            }
            Expr::Cmp(op, a, b) => Val::Bool(compare(
                *op,
                &a.eval(id, obj, fields),
                &b.eval(id, obj, fields),
            )),
        }
    }
}

/// A name at the root of a reference: a member of the object's GeoJSON,
/// then `id`, `type`, a field, and otherwise 0 (Tile38's `objExpr`).
fn root(name: &str, id: &str, obj: &Object, fields: &Fields) -> Val {
    // A point's or a rectangle's members are only `type` and
    // `coordinates`, so only a GeoJSON object is worth parsing for others.
    let members = match obj {
        Object::Geometry(_) => true,
        Object::Point(_) | Object::Bounds(_) => name == "type" || name == "coordinates",
        Object::String(_) => false,
    };
    if members {
        if let Ok(Json::Object(m)) = serde_json::from_str::<Json>(&obj.to_json()) {
            if let Some(v) = m.get(name) {
                return Val::of_json(v);
            }
        }
    }
    match name {
        "id" => Val::Str(id.to_string()),
        "type" => type_name(obj),
        _ => match fields.get(name) {
            Some(v) => Val::of_field(v),
            None => Val::Num(0.0),
        },
    }
}

fn bad_expr(why: &str) -> CmdError {
    CmdError::Msg(format!("invalid expression: {why}"))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Name(Vec<String>),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn lex(text: &str) -> Result<Vec<Tok>, CmdError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let two = b.get(i..i + 2).unwrap_or(&[]);
        let three = b.get(i..i + 3).unwrap_or(&[]);
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'&' if two == b"&&" => {
                out.push(Tok::And);
                i += 2;
            }
            b'|' if two == b"||" => {
                out.push(Tok::Or);
                i += 2;
            }
            b'=' | b'!' if three == b"===" || three == b"!==" => {
                out.push(Tok::Op(if c == b'=' { Op::Eq } else { Op::Ne }));
                i += 3;
            }
            b'=' | b'!' | b'<' | b'>' if two.len() == 2 && two[1] == b'=' => {
                out.push(Tok::Op(match c {
                    b'=' => Op::Eq,
                    b'!' => Op::Ne,
                    b'<' => Op::Le,
                    _ => Op::Ge,
                }));
                i += 2;
            }
            b'!' => {
                out.push(Tok::Not);
                i += 1;
            }
            b'<' | b'>' => {
                out.push(Tok::Op(if c == b'<' { Op::Lt } else { Op::Gt }));
                i += 1;
            }
            b'\'' | b'"' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => return Err(bad_expr("unterminated string")),
                        Some(&q) if q == c => break,
                        Some(b'\\') if j + 1 < b.len() => {
                            s.push(b[j + 1] as char);
                            j += 2;
                        }
                        Some(_) => {
                            // Copy one whole UTF-8 character.
                            let ch = text[j..].chars().next().unwrap_or('\u{fffd}');
                            s.push(ch);
                            j += ch.len_utf8();
                        }
                    }
                }
                out.push(Tok::Str(s));
                i = j + 1;
            }
            b'0'..=b'9' | b'.' | b'-' => {
                let start = i;
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                let t = &text[start..i];
                let n: f64 = t
                    .parse()
                    .map_err(|_| bad_expr(&format!("bad number {t:?}")))?;
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'$' | b'.'))
                {
                    i += 1;
                }
                let path: Vec<String> = text[start..i].split('.').map(str::to_string).collect();
                if path.iter().any(String::is_empty) {
                    return Err(bad_expr(&format!("bad name {:?}", &text[start..i])));
                }
                out.push(Tok::Name(path));
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(bad_expr(&format!("unexpected {ch:?}")));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn deeper(depth: usize) -> Result<usize, CmdError> {
        if depth >= MAX_DEPTH {
            return Err(bad_expr("nested too deeply"));
        }
        Ok(depth + 1)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, CmdError> {
        let mut e = self.and(depth)?;
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and(depth)?));
        }
        Ok(e)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, CmdError> {
        let mut e = self.cmp(depth)?;
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.cmp(depth)?));
        }
        Ok(e)
    }

    fn cmp(&mut self, depth: usize) -> Result<Expr, CmdError> {
        let mut e = self.unary(depth)?;
        while let Some(&Tok::Op(op)) = self.peek() {
            self.at += 1;
            e = Expr::Cmp(op, Box::new(e), Box::new(self.unary(depth)?));
        }
        Ok(e)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, CmdError> {
        let depth = Self::deeper(depth)?;
        let Some(t) = self.toks.get(self.at).cloned() else {
            return Err(bad_expr("unexpected end"));
        };
        self.at += 1;
        Ok(match t {
            Tok::Not => Expr::Not(Box::new(self.unary(depth)?)),
            Tok::Open => {
                let e = self.or(depth)?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(bad_expr("missing ')'"));
                }
                self.at += 1;
                e
            }
            Tok::Num(n) => Expr::Lit(Val::Num(n)),
            Tok::Str(s) => Expr::Lit(Val::Str(s)),
            Tok::Name(path) if path.len() == 1 => match path[0].as_str() {
                "true" => Expr::Lit(Val::Bool(true)),
                "false" => Expr::Lit(Val::Bool(false)),
                "null" => Expr::Lit(Val::Null),
                "undefined" => Expr::Lit(Val::Undefined),
                _ => Expr::Ref(path),
            },
            Tok::Name(path) => Expr::Ref(path),
            other => return Err(bad_expr(&format!("unexpected {other:?}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geohook_db::{Database, Point, SetCondition};

    fn check(expr: &str, want: bool) {
        let mut db = Database::new();
        let obj = Object::from_geojson(
            r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[-112,33]},"properties":{"speed":50,"Name":"Tom"}}"#,
        )
        .unwrap();
        let fields = [
            ("maxSpeed", FieldValue::Number(120.0)),
            ("teamId", FieldValue::Number(1.0)),
            ("label", FieldValue::String("Truck".into())),
        ];
        db.set("k", "truck1", obj, &fields, None, SetCondition::Always, 0)
            .unwrap();
        let item = db.get("k", "truck1", 0).unwrap();
        let e = Expr::parse(expr).unwrap();
        assert_eq!(
            e.eval("truck1", item.object(), item.fields()).truthy(),
            want,
            "{expr}"
        );
        let _ = Point::new(0.0, 0.0);
    }

    #[test]
    fn expressions_read_fields_members_and_id() {
        for (e, want) in [
            ("maxSpeed == 120", true),
            ("maxSpeed == 121", false),
            ("maxSpeed > 100 && teamId == 1", true),
            ("maxSpeed > 200 || teamId == 1", true),
            ("!(maxSpeed > 100)", false),
            ("!optionalId || optionalId == 999", true),
            ("!!!optionalId || optionalId == 999", true),
            ("optionalId == 0", true),
            ("1 == 1 || x == 2", true),
            ("id == 'truck1'", true),
            ("id == 'TRUCK1'", true),
            ("id != \"truck2\"", true),
            ("label == 'truck'", true),
            ("properties.speed == 50", true),
            ("properties.Speed == 50", false),
            ("properties.Name == 'tom'", true),
            ("type == 'Feature'", true),
            ("maxSpeed >= 120 && maxSpeed <= 120", true),
            ("maxSpeed < -1", false),
        ] {
            check(e, want);
        }
    }

    #[test]
    fn bad_expressions_are_refused() {
        for e in ["a ==", "(a == 1", "a == 'x", "a # 1", "a..b == 1"] {
            assert!(Expr::parse(e).is_err(), "{e}");
        }
        let deep = "(".repeat(1000) + "1" + &")".repeat(1000);
        assert!(Expr::parse(&deep).is_err());
        let nots = "!".repeat(100_000) + "1";
        assert!(Expr::parse(&nots).is_err());
    }

    #[test]
    fn where_detects_expressions_as_tile38() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        assert!(is_expression(&v(&["speed == 1"])));
        assert!(is_expression(&v(&["speed == 1", "IDS"])));
        assert!(!is_expression(&v(&["speed", "0", "10"])));
        assert!(!is_expression(&v(&["speed", "inf", "10"])));
        assert!(!is_expression(&v(&["speed", "==", "10"])));
        assert!(is_expression(&v(&["active", "IDS"])));
        assert!(!is_expression(&v(&["hello", "a", "z", "IDS"])));
        assert!(is_expression(&v(&["!optionalId || x == 1", "count"])));
    }
}
