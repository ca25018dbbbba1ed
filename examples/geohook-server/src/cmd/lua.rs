//! The Lua side of scripting: a fresh, sandboxed Lua 5.1 state per run,
//! Tile38's `tile38` table, the budgets (time by an instruction-count hook,
//! memory by the state's allocator limit), and the conversions of values
//! both ways: a command's reply into Lua, and what a script returns into a
//! RESP reply or Tile38's JSON `result`.
//!
//! Nothing here knows the database: the command a script calls is run by
//! the `call` closure the caller passes (see `cmd::script`), which holds
//! whatever lock the script's mode takes.
//!
//! The sandbox opens Lua's `table`, `string` and `math` libraries, `os.clock`
//! and `os.difftime` only, and of the base library only functions that
//! neither load code nor reach outside the state (`tonumber`, `tostring`,
//! `type`, `pairs`, `ipairs`, `next`, `select`, `unpack`, `assert`, `error`,
//! `rawequal`, `rawget`, `getmetatable`, `setmetatable`). That is Tile38's
//! set (its base subset is `tonumber` and `tostring`) plus pure functions
//! that only work on values the script already has, and Tile38's `json`
//! module (`json.encode`, `json.decode`). `pcall` and `xpcall` stay out
//! because a script could catch the time limit's stop with them and run on.
//! Source
//! is compiled as text only: Lua 5.1 trusts bytecode, which a peer could
//! forge to break out of the VM.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use geohook_resp::Reply;
use mlua::{ChunkMode, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::scripts::ScriptLimits;

/// How often, in Lua instructions, the hook looks at the clock.
const HOOK_EVERY: u32 = 1_000;

/// How deep a returned table may nest before the reply is refused (a table
/// may contain itself).
const MAX_DEPTH: usize = 64;

/// The most values a script's reply may hold, tables and their items.
const MAX_VALUES: usize = 1 << 20;

/// The base library's functions a script may use; every other global the
/// base library defines is removed.
const BASE_KEPT: &[&str] = &[
    "_G",
    "_VERSION",
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "rawequal",
    "rawget",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
];

/// `tile38.call` and `tile38.pcall` over the one Rust function that runs a
/// command, so that `call` raises its error at the script's line (level 2),
/// as Tile38's `RaiseError` does, and `pcall` returns it as `{err=…}`.
const WRAPPERS: &str = r#"
local raw, fail = ...
tile38.call = function(...)
  local ok, r = raw(...)
  if not ok then fail("ERR " .. r, 2) end
  return r
end
tile38.pcall = function(...)
  local ok, r = raw(...)
  if not ok then return {err = r} end
  return r
end
"#;

/// No new globals: as in Tile38, assigning an undeclared global is an error.
const LOCK_GLOBALS: &str = r#"
setmetatable(_G, {__newindex = function(_, k)
  error("attempt to create global variable '" .. tostring(k) .. "'", 2)
end})
"#;

/// What runs a command a script calls: its reply, or its error's text.
pub(crate) type Call<'c> = &'c mut dyn FnMut(&[Vec<u8>]) -> Result<Reply, String>;

/// One script run's inputs.
#[derive(Debug)]
pub(crate) struct Script<'a> {
    pub(crate) source: &'a [u8],
    /// Its SHA-1, which names the chunk in error messages (`f_<sha>:1: …`).
    pub(crate) sha: &'a str,
    pub(crate) keys: &'a [Vec<u8>],
    pub(crate) argv: &'a [Vec<u8>],
    /// The lower-case command that runs it (the `EVAL_CMD` global).
    pub(crate) eval_cmd: &'static str,
}

/// What a script returned, copied out of its state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Returned {
    Nil,
    Bool(bool),
    Number(f64),
    Str(Vec<u8>),
    /// A table with a non-zero length (`#t`): its sequence, then any other
    /// values it holds.
    List(Vec<Returned>),
    /// Any other table, as key/value pairs.
    Map(Vec<(Returned, Returned)>),
    /// A function, userdata or thread: its type name.
    Unsupported(&'static str),
}

/// Why a script did not return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScriptError {
    /// The text is not valid Lua.
    #[error("{0}")]
    Compile(String),
    /// The script raised an error (its own, or `tile38.call`'s).
    #[error("{0}")]
    Runtime(String),
    /// The script ran past the server's time limit.
    #[error(
        "script stopped: it ran past the time limit of {}s (writes it made before are kept)",
        .0.as_secs_f64()
    )]
    TimeLimit(Duration),
    /// The script ran past its `TIMEOUT`.
    #[error("timeout")]
    Timeout,
    /// The script's state reached the memory limit.
    #[error("script stopped: its Lua state reached the memory limit of {0} bytes")]
    Memory(usize),
    /// The returned value is too deep or too large to reply with.
    #[error("script reply is too large: {0}")]
    TooLarge(&'static str),
}

/// Why the hook stopped a script.
#[derive(Debug, Clone, Copy)]
enum Stop {
    TimeLimit,
    Timeout,
}

/// Checks that `source` compiles, for SCRIPT LOAD.
///
/// # Errors
///
/// The compiler's message.
pub(crate) fn compile(source: &[u8], sha: &str) -> Result<(), ScriptError> {
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::default())
        .map_err(|e| ScriptError::Runtime(message(&e)))?;
    lua.load(source)
        .set_name(format!("=f_{sha}"))
        .set_mode(ChunkMode::Text)
        .into_function()
        .map(drop)
        .map_err(|e| ScriptError::Compile(message(&e)))
}

/// Runs `script` in a fresh state under `limits` (and `deadline`, a
/// `TIMEOUT`'s, when it is sooner), with `call` running each command the
/// script sends through `tile38.call`/`tile38.pcall`: `call` answers the
/// command's reply, or its error's text.
///
/// # Errors
///
/// See [`ScriptError`]. Commands the script ran before an error stay run.
pub(crate) fn run(
    script: &Script<'_>,
    limits: &ScriptLimits,
    deadline: Option<Instant>,
    call: Call<'_>,
) -> Result<Returned, ScriptError> {
    let lua = sandbox(limits).map_err(|e| ScriptError::Runtime(message(&e)))?;
    let started = Instant::now();
    let limit_at = started + limits.time_limit;
    let (until, why) = match deadline {
        Some(d) if d < limit_at => (d, Stop::Timeout),
        _ => (limit_at, Stop::TimeLimit),
    };
    let stopped: Rc<Cell<Option<Stop>>> = Rc::new(Cell::new(None));
    let flag = Rc::clone(&stopped);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_, _| {
            if Instant::now() >= until {
                flag.set(Some(why));
                return Err(mlua::Error::runtime("script stopped"));
            }
            Ok(VmState::Continue)
        },
    )
    .map_err(|e| ScriptError::Runtime(message(&e)))?;
    let outcome = run_in(&lua, script, deadline, call);
    let err = match outcome {
        Ok(v) => return v,
        Err(e) => e,
    };
    Err(match stopped.get() {
        Some(Stop::TimeLimit) => ScriptError::TimeLimit(limits.time_limit),
        Some(Stop::Timeout) => ScriptError::Timeout,
        None if is_memory(&err) => ScriptError::Memory(limits.memory),
        None => ScriptError::Runtime(message(&err)),
    })
}

/// The run itself; the outer error is Lua's, the inner one a compile or
/// reply-size failure.
fn run_in(
    lua: &Lua,
    script: &Script<'_>,
    deadline: Option<Instant>,
    call: Call<'_>,
) -> mlua::Result<Result<Returned, ScriptError>> {
    let g = lua.globals();
    g.raw_set("KEYS", strings(lua, script.keys)?)?;
    g.raw_set("ARGV", strings(lua, script.argv)?)?;
    g.raw_set("EVAL_CMD", script.eval_cmd)?;
    if let Some(d) = deadline {
        let left = d.saturating_duration_since(Instant::now());
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + left;
        g.raw_set("DEADLINE", unix.as_secs_f64())?;
    }
    let f = match lua
        .load(script.source)
        .set_name(format!("=f_{}", script.sha))
        .set_mode(ChunkMode::Text)
        .into_function()
    {
        Ok(f) => f,
        Err(e) if is_memory(&e) => return Err(e),
        Err(e) => return Ok(Err(ScriptError::Compile(message(&e)))),
    };
    lua.scope(|scope| {
        let raw = scope.create_function_mut(|lua, args: MultiValue| {
            let mut argv = Vec::with_capacity(args.len());
            for v in args {
                match v {
                    Value::String(s) => argv.push(s.as_bytes().to_vec()),
                    Value::Number(_) | Value::Integer(_) => {
                        let s = lua.coerce_string(v)?.unwrap_or(lua.create_string("")?);
                        argv.push(s.as_bytes().to_vec());
                    }
                    other => {
                        let msg = format!(
                            "tile38.call takes strings and numbers, not a {}",
                            other.type_name()
                        );
                        return Ok((false, Value::String(lua.create_string(msg)?)));
                    }
                }
            }
            if argv.is_empty() {
                let msg = lua.create_string("tile38.call needs a command name")?;
                return Ok((false, Value::String(msg)));
            }
            match call(&argv) {
                Ok(reply) => Ok((true, reply_to_lua(lua, &reply)?)),
                Err(msg) => Ok((false, Value::String(lua.create_string(msg)?))),
            }
        })?;
        let fail: mlua::Function = lua.globals().get("error")?;
        lua.load(WRAPPERS)
            .set_name("=tile38")
            .call::<()>((raw, fail))?;
        let v: Value = f.call(())?;
        let mut budget = MAX_VALUES;
        Ok(copy_out(&v, 0, &mut budget))
    })
}

/// A fresh state with only the sandbox's libraries, the `tile38` table
/// (its `call` and `pcall` are added per run), locked globals and the
/// memory limit.
fn sandbox(limits: &ScriptLimits) -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::OS,
        LuaOptions::default(),
    )?;
    let g = lua.globals();
    let mut drop_names = Vec::new();
    for pair in g.pairs::<Value, Value>() {
        let (k, _) = pair?;
        if let Value::String(s) = &k {
            let name = s.to_str()?.to_owned();
            let is_lib = matches!(name.as_str(), "table" | "string" | "math" | "os");
            if !is_lib && !BASE_KEPT.contains(&name.as_str()) {
                drop_names.push(name);
            }
        }
    }
    for name in drop_names {
        g.raw_set(name, Value::Nil)?;
    }
    // `string.dump` makes bytecode, which nothing here can load; gone anyway.
    g.get::<Table>("string")?.raw_set("dump", Value::Nil)?;
    let os: Table = g.get("os")?;
    let safe_os = lua.create_table()?;
    safe_os.raw_set("clock", os.get::<Value>("clock")?)?;
    safe_os.raw_set("difftime", os.get::<Value>("difftime")?)?;
    g.raw_set("os", safe_os)?;

    let t = lua.create_table()?;
    t.raw_set(
        "sha1hex",
        lua.create_function(|_, v: Value| {
            let text = match v {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Number(n) => n.to_string().into_bytes(),
                Value::Integer(n) => n.to_string().into_bytes(),
                _ => Vec::new(),
            };
            Ok(crate::scripts::sha1_hex(&text))
        })?,
    )?;
    t.raw_set(
        "distance_to",
        lua.create_function(|_, (a, b, c, d): (Value, Value, Value, Value)| {
            Ok(haversine(number(&a), number(&b), number(&c), number(&d)))
        })?,
    )?;
    t.raw_set(
        "error_reply",
        lua.create_function(|lua, s: Value| one_field(lua, "err", s))?,
    )?;
    t.raw_set(
        "status_reply",
        lua.create_function(|lua, s: Value| one_field(lua, "ok", s))?,
    )?;
    g.raw_set("tile38", t)?;
    let json = lua.create_table()?;
    json.raw_set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let mut out = String::new();
            match json_encode(&v, &mut Vec::new(), &mut out) {
                Ok(()) => Ok((Value::String(lua.create_string(out)?), Value::Nil)),
                Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e)?))),
            }
        })?,
    )?;
    json.raw_set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            match serde_json::from_slice::<serde_json::Value>(&s.as_bytes()) {
                Ok(v) => Ok((json_to_lua(lua, &v)?, Value::Nil)),
                Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e.to_string())?))),
            }
        })?,
    )?;
    g.raw_set("json", json)?;
    lua.load(LOCK_GLOBALS).set_name("=sandbox").exec()?;
    lua.set_memory_limit(limits.memory)?;
    Ok(lua)
}

/// `{name = tostring(s)}`, the shape of `tile38.error_reply` and
/// `tile38.status_reply`.
fn one_field(lua: &Lua, name: &str, s: Value) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let text = match s {
        Value::String(_) | Value::Number(_) | Value::Integer(_) => {
            lua.coerce_string(s)?.unwrap_or(lua.create_string("")?)
        }
        _ => lua.create_string("")?,
    };
    t.raw_set(name, text)?;
    Ok(t)
}

/// A Lua value as a number, as Lua's `tonumber` reads it; 0 otherwise
/// (gopher-lua's `ToNumber`).
fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => *n,
        Value::Integer(n) => *n as f64,
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

/// `json.encode`, as Tile38's gopher-json writes values: a table whose
/// keys run 1, 2, 3… in order is an array, any other an object (keys as
/// text, sorted), and an empty table is `null`.
fn json_encode(
    v: &Value,
    stack: &mut Vec<*const std::ffi::c_void>,
    out: &mut String,
) -> Result<(), String> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(n) => out.push_str(&n.to_string()),
        Value::Number(f) if f.is_finite() => out.push_str(&number_text(*f)),
        Value::Number(f) => return Err(format!("json: unsupported value: {f}")),
        Value::String(s) => out.push_str(&crate::cmd::ctx::json_str(&String::from_utf8_lossy(
            &s.as_bytes(),
        ))),
        Value::Table(t) => {
            let p = t.to_pointer();
            if stack.contains(&p) || stack.len() >= MAX_DEPTH {
                return Err("cannot encode recursively nested tables to JSON".into());
            }
            stack.push(p);
            let mut arr: Vec<String> = Vec::new();
            let mut obj: Option<std::collections::BTreeMap<String, String>> = None;
            for pair in t.pairs::<Value, Value>() {
                let (k, item) = pair.map_err(|e| message(&e))?;
                let mut text = String::new();
                json_encode(&item, stack, &mut text)?;
                let index = match k {
                    Value::Integer(i) => Some(i as f64),
                    Value::Number(f) => Some(f),
                    _ => None,
                };
                if obj.is_none() && index == Some(arr.len() as f64 + 1.0) {
                    arr.push(text);
                    continue;
                }
                let map = obj.get_or_insert_with(|| {
                    let m = arr.drain(..).enumerate();
                    m.map(|(i, v)| ((i + 1).to_string(), v)).collect()
                });
                let key = match &k {
                    Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
                    Value::Integer(i) => i.to_string(),
                    Value::Number(f) => number_text(*f),
                    Value::Boolean(b) => b.to_string(),
                    other => other.type_name().to_owned(),
                };
                map.insert(key, text);
            }
            stack.pop();
            match obj {
                Some(map) => {
                    out.push('{');
                    for (i, (k, v)) in map.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&crate::cmd::ctx::json_str(k));
                        out.push(':');
                        out.push_str(v);
                    }
                    out.push('}');
                }
                None if arr.is_empty() => out.push_str("null"),
                None => {
                    out.push('[');
                    out.push_str(&arr.join(","));
                    out.push(']');
                }
            }
        }
        other => return Err(format!("cannot encode {} to JSON", other.type_name())),
    }
    Ok(())
}

/// `json.decode`: JSON null is nil, numbers are numbers, arrays and objects
/// are tables.
fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        serde_json::Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Tile38's `geo.DistanceTo`: haversine meters on the database's sphere.
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * geohook_db::EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

fn strings(lua: &Lua, items: &[Vec<u8>]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

fn is_memory(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory(cause),
        _ => false,
    }
}

/// An error's message without mlua's wrapping; newlines become `\n`, since
/// a RESP error is one line (as Tile38 writes them).
fn message(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { cause, .. } => return message(cause),
        other => other.to_string(),
    };
    // mlua appends Lua's traceback to some messages; the first line is the
    // error itself.
    let first = text.split("\nstack traceback:").next().unwrap_or(&text);
    first.replace('\n', "\\n")
}

/// A command's RESP reply as Tile38 hands it to a script: nil as `false`,
/// integers as numbers, bulk strings as strings, arrays as tables, a status
/// as `{ok=…}` and an error as `{err=…}`.
pub(crate) fn reply_to_lua(lua: &Lua, reply: &Reply) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Null => Value::Boolean(false),
        Reply::Int(n) => Value::Number(*n as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(b)?),
        Reply::Simple(s) => Value::Table(lua.create_table_from([("ok", s.as_str())])?),
        Reply::Error(s) => Value::Table(lua.create_table_from([("err", s.as_str())])?),
        Reply::Array(items) | Reply::Push(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, reply_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        Reply::Map(pairs) => {
            let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                t.raw_set(2 * i + 1, reply_to_lua(lua, k)?)?;
                t.raw_set(2 * i + 2, reply_to_lua(lua, v)?)?;
            }
            Value::Table(t)
        }
        Reply::Encoded(bytes) => {
            let mut rest = &bytes[..];
            let v = decode(lua, &mut rest, 0)?;
            if !rest.is_empty() {
                return Err(mlua::Error::runtime("trailing bytes after a reply"));
            }
            v
        }
        _ => return Err(mlua::Error::runtime("a reply of an unknown shape")),
    })
}

/// One RESP2 value of `buf` (a reply this server encoded itself, as
/// searches do) straight into Lua, with [`reply_to_lua`]'s shapes.
fn decode(lua: &Lua, buf: &mut &[u8], depth: usize) -> mlua::Result<Value> {
    let bad = || mlua::Error::runtime("malformed encoded reply");
    if depth > MAX_DEPTH {
        return Err(bad());
    }
    let end = buf.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
    let (line, rest) = (&buf[..end], &buf[end + 2..]);
    let (&kind, body) = line.split_first().ok_or_else(bad)?;
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    *buf = rest;
    Ok(match kind {
        b'+' => Value::Table(lua.create_table_from([("ok", text)])?),
        b'-' => Value::Table(lua.create_table_from([("err", text)])?),
        b':' => Value::Number(text.parse::<i64>().map_err(|_| bad())? as f64),
        b'$' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            let n = usize::try_from(n).map_err(|_| bad())?;
            if buf.len() < n + 2 {
                return Err(bad());
            }
            let s = lua.create_string(&buf[..n])?;
            *buf = &buf[n + 2..];
            Value::String(s)
        }
        b'*' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            // Each item takes at least three bytes, so the count is bounded
            // by what is left before anything is allocated for it.
            let n = usize::try_from(n).map_err(|_| bad())?;
            if n > buf.len() / 3 {
                return Err(bad());
            }
            let t = lua.create_table_with_capacity(n, 0)?;
            for i in 0..n {
                t.raw_set(i + 1, decode(lua, buf, depth + 1)?)?;
            }
            Value::Table(t)
        }
        _ => return Err(bad()),
    })
}

/// Copies a returned value out of the state, refusing cycles' blow-up by
/// depth and size.
fn copy_out(v: &Value, depth: usize, budget: &mut usize) -> Result<Returned, ScriptError> {
    *budget = budget
        .checked_sub(1)
        .ok_or(ScriptError::TooLarge("more than 1048576 values"))?;
    Ok(match v {
        Value::Nil => Returned::Nil,
        Value::Boolean(b) => Returned::Bool(*b),
        Value::Integer(n) => Returned::Number(*n as f64),
        Value::Number(n) => Returned::Number(*n),
        Value::String(s) => Returned::Str(s.as_bytes().to_vec()),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(ScriptError::TooLarge("tables nested more than 64 deep"));
            }
            let len = t.raw_len();
            let lua_err = |e: mlua::Error| ScriptError::Runtime(message(&e));
            if len > 0 {
                let mut items = Vec::new();
                for i in 1..=len {
                    let item: Value = t.raw_get(i).map_err(lua_err)?;
                    items.push(copy_out(&item, depth + 1, budget)?);
                }
                for pair in t.pairs::<Value, Value>() {
                    let (k, item) = pair.map_err(lua_err)?;
                    let in_seq = match k {
                        Value::Integer(i) => (1..=len as i64).contains(&i),
                        Value::Number(f) => f.fract() == 0.0 && f >= 1.0 && f <= len as f64,
                        _ => false,
                    };
                    if !in_seq {
                        items.push(copy_out(&item, depth + 1, budget)?);
                    }
                }
                Returned::List(items)
            } else {
                let mut pairs = Vec::new();
                for pair in t.pairs::<Value, Value>() {
                    let (k, item) = pair.map_err(lua_err)?;
                    let k = copy_out(&k, depth + 1, budget)?;
                    pairs.push((k, copy_out(&item, depth + 1, budget)?));
                }
                Returned::Map(pairs)
            }
        }
        Value::Function(_) => Returned::Unsupported("function"),
        Value::Thread(_) => Returned::Unsupported("thread"),
        Value::UserData(_) | Value::LightUserData(_) => Returned::Unsupported("userdata"),
        _ => Returned::Unsupported("value"),
    })
}

impl Returned {
    /// The RESP reply, as Tile38's `ConvertToRESP`: nil and `false` are
    /// null, `true` is 1, a number is its floor as an integer (NaN and the
    /// infinities as text), a one-entry table `{ok=…}` or `{err=…}` is a
    /// status or an error, any other map is an array of `[key, value]`
    /// pairs, and a function cannot be returned.
    pub(crate) fn to_resp(&self) -> Reply {
        match self {
            Returned::Nil | Returned::Bool(false) => Reply::Null,
            Returned::Bool(true) => Reply::Int(1),
            Returned::Number(f) if f.is_nan() => Reply::bulk("NaN"),
            Returned::Number(f) if f.is_infinite() => {
                Reply::bulk(if *f > 0.0 { "+Inf" } else { "-Inf" })
            }
            // The cast saturates at i64's bounds.
            Returned::Number(f) => Reply::Int(f.floor() as i64),
            Returned::Str(s) => Reply::Bulk(s.clone()),
            Returned::List(items) => Reply::Array(items.iter().map(Returned::to_resp).collect()),
            Returned::Map(pairs) => {
                if let [(Returned::Str(k), v)] = pairs.as_slice() {
                    let text = || String::from_utf8_lossy(&v.text()).into_owned();
                    match k.as_slice() {
                        b"ok" => return Reply::Simple(text()),
                        b"err" => return Reply::Error(text()),
                        _ => {}
                    }
                }
                Reply::Array(
                    pairs
                        .iter()
                        .map(|(k, v)| Reply::Array(vec![k.to_resp(), v.to_resp()]))
                        .collect(),
                )
            }
            Returned::Unsupported(t) => Reply::Error(format!("Unsupported lua type: {t}")),
        }
    }

    /// The JSON text, as Tile38's `ConvertToJSON`: a table with a length is
    /// an array, any other table an object (keys that are not strings are
    /// written as strings, so the text stays JSON). NaN and the infinities,
    /// which JSON cannot write, are `null`.
    ///
    /// # Errors
    ///
    /// A function, userdata or thread, which has no JSON form.
    pub(crate) fn to_json(&self, out: &mut String) -> Result<(), String> {
        match self {
            Returned::Nil => out.push_str("null"),
            Returned::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Returned::Number(f) if !f.is_finite() => out.push_str("null"),
            Returned::Number(f) => out.push_str(&number_text(*f)),
            Returned::Str(s) => {
                out.push_str(&crate::cmd::ctx::json_str(&String::from_utf8_lossy(s)))
            }
            Returned::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.to_json(out)?;
                }
                out.push(']');
            }
            Returned::Map(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let key = String::from_utf8_lossy(&k.text()).into_owned();
                    out.push_str(&crate::cmd::ctx::json_str(&key));
                    out.push(':');
                    v.to_json(out)?;
                }
                out.push('}');
            }
            Returned::Unsupported(t) => return Err(format!("Unsupported lua type: {t}")),
        }
        Ok(())
    }

    /// The value as text, as Lua's `tostring` writes a string or a number
    /// (the key of a JSON object, the text of a status).
    fn text(&self) -> Vec<u8> {
        match self {
            Returned::Str(s) => s.clone(),
            Returned::Number(f) => number_text(*f).into_bytes(),
            Returned::Bool(b) => b.to_string().into_bytes(),
            Returned::Nil => b"nil".to_vec(),
            Returned::List(_) | Returned::Map(_) => b"table".to_vec(),
            Returned::Unsupported(t) => t.as_bytes().to_vec(),
        }
    }
}

/// A number as gopher-lua prints it: an integer without a fraction, any
/// other number in its shortest form.
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, keys: &[&str], argv: &[&str]) -> Result<Returned, ScriptError> {
        eval_with(src, keys, argv, &ScriptLimits::default(), &mut |args| {
            Ok(Reply::Array(
                args.iter().map(|a| Reply::Bulk(a.clone())).collect(),
            ))
        })
    }

    fn eval_with(
        src: &str,
        keys: &[&str],
        argv: &[&str],
        limits: &ScriptLimits,
        call: Call<'_>,
    ) -> Result<Returned, ScriptError> {
        let owned = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let (keys, argv) = (owned(keys), owned(argv));
        let sha = crate::scripts::sha1_hex(src.as_bytes());
        let script = Script {
            source: src.as_bytes(),
            sha: &sha,
            keys: &keys,
            argv: &argv,
            eval_cmd: "eval",
        };
        run(&script, limits, None, call)
    }

    fn resp(src: &str) -> Reply {
        eval(src, &[], &[]).unwrap().to_resp()
    }

    fn json(src: &str) -> String {
        let mut out = String::new();
        eval(src, &[], &[]).unwrap().to_json(&mut out).unwrap();
        out
    }

    #[test]
    fn lua_values_become_tile38s_resp_replies() {
        assert_eq!(resp("return 2 + 2"), Reply::Int(4));
        assert_eq!(resp("return 3.7"), Reply::Int(3));
        assert_eq!(resp("return -0.5"), Reply::Int(-1));
        assert_eq!(resp("return 'hi'"), Reply::bulk("hi"));
        assert_eq!(resp("return nil"), Reply::Null);
        assert_eq!(resp("return false"), Reply::Null);
        assert_eq!(resp("return true"), Reply::Int(1));
        assert_eq!(resp("return 0/0"), Reply::bulk("NaN"));
        assert_eq!(resp("return 1/0"), Reply::bulk("+Inf"));
        assert_eq!(
            resp("return {1, 'a', {true}}"),
            Reply::Array(vec![
                Reply::Int(1),
                Reply::bulk("a"),
                Reply::Array(vec![Reply::Int(1)])
            ])
        );
        assert_eq!(resp("return {}"), Reply::Array(vec![]));
        assert_eq!(resp("return {ok = 'FINE'}"), Reply::Simple("FINE".into()));
        assert_eq!(
            resp("return tile38.status_reply('FINE')"),
            Reply::Simple("FINE".into())
        );
        assert_eq!(
            resp("return tile38.error_reply('bad')"),
            Reply::Error("bad".into())
        );
        assert_eq!(
            resp("return {a = 1}"),
            Reply::Array(vec![Reply::Array(vec![Reply::bulk("a"), Reply::Int(1)])])
        );
        assert_eq!(
            resp("return os.clock"),
            Reply::Error("Unsupported lua type: function".into())
        );
    }

    #[test]
    fn lua_values_become_tile38s_json_results() {
        assert_eq!(json("return 2 + 2"), "4");
        assert_eq!(json("return 2.5"), "2.5");
        assert_eq!(json("return 'a\"b'"), r#""a\"b""#);
        assert_eq!(json("return nil"), "null");
        assert_eq!(json("return false"), "false");
        assert_eq!(json("return {1, 'x', {}}"), r#"[1,"x",{}]"#);
        assert_eq!(json("return {err = 'e'}"), r#"{"err":"e"}"#);
        assert_eq!(json("return {[5] = true}"), r#"{"5":true}"#);
        let mut out = String::new();
        let f = eval("return print", &[], &[]).unwrap();
        assert_eq!(f, Returned::Nil, "print is not in the sandbox");
        let f = eval("return tostring", &[], &[]).unwrap();
        assert!(f.to_json(&mut out).is_err());
    }

    #[test]
    fn replies_become_lua_values_as_tile38_hands_them_over() {
        let reply = Reply::Array(vec![
            Reply::Null,
            Reply::Int(7),
            Reply::bulk("s"),
            Reply::Simple("OK".into()),
            Reply::Error("no".into()),
            Reply::Encoded(b"*2\r\n:3\r\n*1\r\n$2\r\nab\r\n".to_vec()),
        ]);
        let src = "local r = tile38.call('x') \
                   return {type(r[1]), r[1], r[2], r[3], r[4].ok, r[5].err, r[6][1], r[6][2][1]}";
        let got = eval_with(src, &[], &[], &ScriptLimits::default(), &mut |_| {
            Ok(reply.clone())
        });
        assert_eq!(
            got.unwrap().to_resp(),
            Reply::Array(vec![
                Reply::bulk("boolean"),
                Reply::Null,
                Reply::Int(7),
                Reply::bulk("s"),
                Reply::bulk("OK"),
                Reply::bulk("no"),
                Reply::Int(3),
                Reply::bulk("ab"),
            ])
        );
    }

    #[test]
    fn keys_argv_and_tile38_helpers() {
        let r = |src, k: &[&str], a: &[&str]| eval(src, k, a).unwrap().to_resp();
        assert_eq!(
            r("return KEYS[1] .. ' and ' .. ARGV[1]", &["k"], &["a"]),
            Reply::bulk("k and a")
        );
        assert_eq!(
            r("return tile38.sha1hex('asdf')", &[], &[]),
            Reply::bulk("3da541559918a808c2402bba5012f6c60b27661c")
        );
        assert_eq!(
            r(
                "return tile38.distance_to(37.7341129, -122.4408378, 37.733, -122.43)",
                &[],
                &[]
            ),
            Reply::Int(961)
        );
        assert_eq!(r("return tonumber(ARGV[1])", &[], &["38"]), Reply::Int(38));
        // Numbers reach a command as Lua prints them.
        assert_eq!(
            r(
                "return tile38.call('set', 'k', 'a', 'point', 33, -115.5)",
                &[],
                &[]
            ),
            Reply::Array(
                ["set", "k", "a", "point", "33", "-115.5"]
                    .map(Reply::bulk)
                    .to_vec()
            )
        );
    }

    #[test]
    fn call_raises_at_the_scripts_line_and_pcall_returns_the_error() {
        let mut failing = |_: &[Vec<u8>]| Err("read only".to_string());
        let l = ScriptLimits::default();
        let src = "\nlocal r = tile38.call('set')\nreturn r";
        let err = eval_with(src, &[], &[], &l, &mut failing).unwrap_err();
        let sha = crate::scripts::sha1_hex(src.as_bytes());
        assert_eq!(
            err,
            ScriptError::Runtime(format!("f_{sha}:2: ERR read only"))
        );
        // A tail call leaves no line to name, as in Lua.
        let err = eval_with("return tile38.call('set')", &[], &[], &l, &mut failing).unwrap_err();
        assert_eq!(err, ScriptError::Runtime("ERR read only".into()));
        let got = eval_with("return tile38.pcall('set')", &[], &[], &l, &mut failing).unwrap();
        assert_eq!(got.to_resp(), Reply::Error("read only".into()));
        let err = eval_with("return tile38.call({})", &[], &[], &l, &mut failing).unwrap_err();
        assert!(
            err.to_string().contains("takes strings and numbers"),
            "{err}"
        );
    }

    #[test]
    fn the_sandbox_has_no_way_out() {
        for name in [
            "io",
            "file",
            "os.execute",
            "os.getenv",
            "loadfile",
            "dofile",
            "load",
            "loadstring",
            "package",
            "require",
            "debug",
            "pcall",
            "xpcall",
            "coroutine",
            "string.dump",
            "collectgarbage",
            "getfenv",
            "setfenv",
            "rawset",
        ] {
            assert_eq!(resp(&format!("return {name}")), Reply::Null, "{name}");
        }
        let err = eval("x = 1", &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("attempt to create global variable 'x'"),
            "{err}"
        );
        // Bytecode is refused; only text compiles.
        let err = eval("\x1bLua", &[], &[]).unwrap_err();
        assert!(matches!(err, ScriptError::Compile(_)), "{err:?}");
        assert!(matches!(
            compile(b"return +", "s"),
            Err(ScriptError::Compile(_))
        ));
        assert!(compile(b"return 1", "s").is_ok());
    }

    #[test]
    fn an_endless_loop_is_stopped_at_the_time_limit() {
        let limits = ScriptLimits {
            time_limit: Duration::from_millis(50),
            ..ScriptLimits::default()
        };
        let mut calls = 0;
        let err = eval_with(
            "tile38.call('set') while true do end",
            &[],
            &[],
            &limits,
            &mut |_| {
                calls += 1;
                Ok(Reply::ok())
            },
        )
        .unwrap_err();
        assert_eq!(err, ScriptError::TimeLimit(Duration::from_millis(50)));
        assert_eq!(calls, 1, "the call made before the stop was made");
        // A loop of string work, not of bare jumps, is stopped as well.
        let err = eval_with(
            "local s = '' while true do s = string.sub(s .. 'x', -10) end",
            &[],
            &[],
            &limits,
            &mut |_| Ok(Reply::Null),
        )
        .unwrap_err();
        assert_eq!(err, ScriptError::TimeLimit(Duration::from_millis(50)));
    }

    #[test]
    fn a_growing_table_is_stopped_at_the_memory_limit() {
        let limits = ScriptLimits {
            memory: 4 << 20,
            ..ScriptLimits::default()
        };
        let err = eval_with(
            "local t = {} local i = 0 while true do i = i + 1 t[i] = string.rep('x', 100) .. i end",
            &[],
            &[],
            &limits,
            &mut |_| Ok(Reply::Null),
        )
        .unwrap_err();
        assert_eq!(err, ScriptError::Memory(4 << 20));
        let err = eval_with(
            "return string.rep('x', 1e9)",
            &[],
            &[],
            &limits,
            &mut |_| Ok(Reply::Null),
        )
        .unwrap_err();
        assert_eq!(err, ScriptError::Memory(4 << 20));
    }

    #[test]
    fn the_json_module_encodes_and_decodes_as_tile38s() {
        assert_eq!(
            resp(r#"return json.encode({1, 'a', true})"#),
            Reply::bulk(r#"[1,"a",true]"#)
        );
        assert_eq!(
            resp(r#"return json.encode({b = 2.5, a = {x = 1}})"#),
            Reply::bulk(r#"{"a":{"x":1},"b":2.5}"#)
        );
        assert_eq!(resp(r#"return json.encode({})"#), Reply::bulk("null"));
        assert_eq!(
            resp(r#"return json.encode({[1] = 'a', [3] = 'c'})"#),
            Reply::bulk(r#"{"1":"a","3":"c"}"#)
        );
        assert_eq!(
            resp(r#"local t = {} t.me = t local s, e = json.encode(t) return e"#),
            Reply::bulk("cannot encode recursively nested tables to JSON")
        );
        assert_eq!(
            resp(
                r#"local v = json.decode('{"a":[1,2,{"b":"c"}],"n":null}') return {v.a[2], v.a[3].b, v.n == nil}"#
            ),
            Reply::Array(vec![Reply::Int(2), Reply::bulk("c"), Reply::Int(1)])
        );
        assert_eq!(
            resp(r#"local v, e = json.decode('{') return v == nil and e ~= nil"#),
            Reply::Int(1)
        );
    }

    #[test]
    fn a_table_that_contains_itself_is_refused_not_followed() {
        let err = eval("local t = {} t[1] = t return t", &[], &[]).unwrap_err();
        assert!(matches!(err, ScriptError::TooLarge(_)), "{err:?}");
    }
}
