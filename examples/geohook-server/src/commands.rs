//! The command dispatcher: authentication, output mode, read/write locking,
//! metrics, and the commands that are about the server rather than the data.
//! The data commands live in [`crate::geo`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use smol_str::StrExt as _;

use crate::geo;
use crate::resp::Reply;
use crate::settings::{self, PROPERTIES};
use crate::state::{now_ms, Shared};

/// Per-connection state.
#[derive(Debug)]
pub struct Session {
    /// Replies in Tile38's JSON shape (`OUTPUT json`).
    pub json: bool,
    /// AUTH succeeded, or no password was required when it connected.
    pub authed: bool,
    /// QUIT was received; close after the reply.
    pub quit: bool,
    /// A data write ran since the last [`Shared::flush_aof`]: the log must
    /// be flushed before this connection's replies go out.
    pub unflushed: bool,
}

impl Session {
    /// A fresh session in RESP mode.
    pub fn new(shared: &Shared) -> Session {
        Session {
            json: false,
            authed: shared.settings.read().requirepass.is_empty(),
            quit: false,
            unflushed: false,
        }
    }
}

/// The context a command runs in.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Reply in JSON.
    pub json: bool,
    /// When the command started, for `elapsed`.
    pub start: Instant,
    /// The database clock.
    pub now_ms: u64,
}

impl Ctx {
    /// A JSON success reply; `body` is empty or starts with a comma.
    pub fn ok_json(&self, body: &str) -> Reply {
        Reply::Bulk(
            format!(
                "{{\"ok\":true{body},\"elapsed\":\"{}\"}}",
                elapsed(self.start)
            )
            .into_bytes(),
        )
    }

    /// `+OK` or `{"ok":true}`.
    pub fn ok(&self) -> Reply {
        if self.json {
            self.ok_json("")
        } else {
            Reply::ok()
        }
    }

    /// `{"ok":true}` in JSON mode, else the integer reply Redis clients expect
    /// from a write that counts what it changed.
    pub fn ok_or_int(&self, n: i64) -> Reply {
        if self.json {
            self.ok()
        } else {
            Reply::Int(n)
        }
    }

    /// Renders an error in the session's mode.
    pub fn err(&self, msg: &str) -> Reply {
        if self.json {
            Reply::Bulk(
                format!(
                    "{{\"ok\":false,\"err\":{},\"elapsed\":\"{}\"}}",
                    serde_json::Value::String(msg.to_string()),
                    elapsed(self.start)
                )
                .into_bytes(),
            )
        } else {
            Reply::Error(msg.to_string())
        }
    }
}

/// Go's duration formatting, as Tile38 prints `elapsed`.
fn elapsed(start: Instant) -> String {
    let ns = start.elapsed().as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns}ns")
    } else if ns < 1_000_000.0 {
        format!("{}µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{}ms", ns / 1_000_000.0)
    } else {
        format!("{}s", ns / 1_000_000_000.0)
    }
}

/// `wrong number of arguments for '<cmd>' command`.
pub fn arity(cmd: &str) -> String {
    format!("wrong number of arguments for '{cmd}' command")
}

/// `invalid argument '<x>'`.
pub fn invalid(arg: &[u8]) -> String {
    format!("invalid argument '{}'", String::from_utf8_lossy(arg))
}

/// Runs one command from a client and renders its reply.
pub fn execute(shared: &Arc<Shared>, session: &mut Session, args: &[Vec<u8>]) -> Reply {
    let start = Instant::now();
    // Command names fit inline in a SmolStr, so this does not allocate.
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase_smolstr();
    let ctx = Ctx {
        json: session.json,
        start,
        now_ms: now_ms(),
    };
    let reply = run(shared, session, &ctx, &name, args);
    if geo::is_write(&name) {
        session.unflushed = true;
    }
    shared.commands_run.fetch_add(1, Ordering::Relaxed);
    // An unknown name is counted as `unknown` there, so that peers cannot
    // grow the metric label set.
    shared.metrics.command(&name, start.elapsed().as_secs_f64());
    match reply {
        Ok(r) => r,
        Err(e) => ctx.err(&e),
    }
}

fn run(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &Ctx,
    name: &str,
    args: &[Vec<u8>],
) -> Result<Reply, String> {
    if !session.authed && !matches!(name, "auth" | "quit" | "output" | "ping" | "healthz") {
        return Err("NOAUTH Authentication required.".into());
    }
    // A follower refuses writes, and data reads until it has caught up.
    crate::replication::gate(shared, name)?;
    match name {
        "ping" => match args.len() {
            1 if ctx.json => Ok(ctx.ok_json(",\"ping\":\"pong\"")),
            1 => Ok(Reply::Simple("PONG".into())),
            2 if ctx.json => Ok(ctx.ok_json(&format!(",\"ping\":{}", json_str(&args[1])))),
            2 => Ok(Reply::Bulk(args[1].clone())),
            _ => Err(arity(name)),
        },
        "echo" => match args.len() {
            2 if ctx.json => Ok(ctx.ok_json(&format!(",\"message\":{}", json_str(&args[1])))),
            2 => Ok(Reply::Bulk(args[1].clone())),
            _ => Err(arity(name)),
        },
        "quit" => {
            session.quit = true;
            Ok(ctx.ok())
        }
        "output" => output(session, ctx, args),
        "auth" => auth(shared, session, ctx, args),
        "healthz" => {
            if args.len() != 1 {
                return Err(arity(name));
            }
            crate::replication::healthz(shared)?;
            Ok(ctx.ok())
        }
        "follow" => {
            crate::replication::follow_command(shared, args)?;
            Ok(ctx.ok())
        }
        "role" => crate::replication::role(shared, ctx, args),
        "readonly" => {
            if args.len() != 2 {
                return Err(arity(name));
            }
            let v = settings::parse_yes_no(&String::from_utf8_lossy(&args[1]))
                .ok_or_else(|| invalid(&args[1]))?;
            shared.readonly.store(v, Ordering::Relaxed);
            Ok(ctx.ok())
        }
        "config" => config(shared, ctx, args),
        "aofshrink" => {
            if args.len() != 1 {
                return Err(arity(name));
            }
            // Like Tile38, reply at once and shrink in the background; a
            // request while one runs is coalesced by the compactor.
            let Some(h) = shared.compactor.get().cloned() else {
                return Err("aof shrink is not available".into());
            };
            tokio::spawn(async move {
                if let Err(e) = h.compact_now().await {
                    tracing::warn!(error = %e, "AOFSHRINK request failed");
                }
            });
            Ok(ctx.ok())
        }
        "gc" => {
            if args.len() != 1 {
                return Err(arity(name));
            }
            // jemalloc returns dirty pages to the system on its own decay
            // schedule; GC asks it to purge every arena now.
            crate::metrics::purge_jemalloc();
            Ok(ctx.ok())
        }
        "server" | "info" => crate::info::run(shared, ctx, name, args),
        // redis-cli asks for command docs on start; an empty list is valid.
        "command" => Ok(Reply::Array(Vec::new())),
        "hello" => Err("unknown command 'hello'".into()),
        "sethook" | "delhook" | "pdelhook" | "hooks" => crate::hooks::run(shared, ctx, name, args),
        // Channels (SETCHAN and pub/sub) are not implemented.
        "setchan" | "delchan" | "pdelchan" | "chans" => Err(format!(
            "{name} is not available: hooks are not enabled in this build"
        )),
        _ => geo::run(shared, ctx, name, args),
    }
}

fn json_str(b: &[u8]) -> String {
    serde_json::Value::String(String::from_utf8_lossy(b).into_owned()).to_string()
}

fn output(session: &mut Session, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, String> {
    match args.len() {
        1 if ctx.json => Ok(ctx.ok_json(",\"output\":\"json\"")),
        1 => Ok(Reply::bulk("resp")),
        2 => match String::from_utf8_lossy(&args[1])
            .to_ascii_lowercase()
            .as_str()
        {
            "json" => {
                session.json = true;
                Ok(Ctx { json: true, ..*ctx }.ok_json(""))
            }
            "resp" => {
                session.json = false;
                Ok(Reply::ok())
            }
            _ => Err(invalid(&args[1])),
        },
        _ => Err(arity("output")),
    }
}

fn auth(
    shared: &Shared,
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, String> {
    // Redis 6 clients send `AUTH user pass`; only the default user exists.
    let pass = match args.len() {
        2 => &args[1],
        3 => &args[2],
        _ => return Err(arity("auth")),
    };
    let want = shared.settings.read().requirepass.clone();
    if want.is_empty() {
        return Err("AUTH <password> called without any password configured".into());
    }
    if pass.as_slice() != want.as_bytes() {
        session.authed = false;
        return Err("WRONGPASS invalid password".into());
    }
    session.authed = true;
    Ok(ctx.ok())
}

/// A glob match for CONFIG GET and KEYS-like patterns (`*`, `?`).
fn glob(pat: &str, s: &str) -> bool {
    crate::glob::matches(pat, s)
}

fn config(shared: &Shared, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, String> {
    let sub = args
        .get(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .ok_or_else(|| arity("config"))?;
    match sub.as_str() {
        "get" => {
            if args.len() != 3 {
                return Err(arity("config get"));
            }
            let pat = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
            let s = shared.settings.read();
            let props: Vec<(&str, String)> = PROPERTIES
                .iter()
                .filter(|p| glob(&pat, p))
                .filter_map(|p| s.get(p).map(|v| (*p, v)))
                .collect();
            if ctx.json {
                let map: serde_json::Map<String, serde_json::Value> = props
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                Ok(ctx.ok_json(&format!(
                    ",\"properties\":{}",
                    serde_json::Value::Object(map)
                )))
            } else {
                Ok(Reply::Array(
                    props
                        .into_iter()
                        .flat_map(|(k, v)| [Reply::bulk(k), Reply::bulk(v)])
                        .collect(),
                ))
            }
        }
        "set" => {
            if args.len() != 4 && args.len() != 3 {
                return Err(arity("config set"));
            }
            let name = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
            let value = args
                .get(3)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            shared.settings.write().set(&name, &value)?;
            if name.starts_with("aofshrink") {
                crate::shrink::apply_settings(shared)?;
            }
            Ok(ctx.ok())
        }
        "rewrite" => {
            if args.len() != 2 {
                return Err(arity("config rewrite"));
            }
            let s = shared.settings.read().clone();
            s.save(&shared.opts.dir)
                .map_err(|e| format!("config rewrite failed: {e}"))?;
            Ok(ctx.ok())
        }
        _ => Err(format!("unknown CONFIG subcommand '{sub}'")),
    }
}
