//! `CLIENT ID | GETNAME | SETNAME name | SETINFO attr value | LIST | KILL
//! (ID id | ADDR addr | addr)`, and the registry of live client connections
//! that LIST shows and KILL closes.
//!
//! Each connection registers itself when it starts (its id, peer address
//! and socket) and is removed when its [`Registered`] handle is dropped,
//! which the connection does before its socket closes. KILL therefore only
//! ever shuts down a socket that is still open and still that connection's:
//! it calls `shutdown(2)`, the connection's next read sees the end of the
//! stream, and its task ends as if the peer had closed, finishing nothing
//! half-way.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::cmd::args::lower;
use crate::cmd::conn::client_name;
use crate::cmd::ctx::{json_str, CmdError, Ctx, Session};
use crate::cmd::server::typed;
use geohook_resp::Reply;

/// One live connection as LIST shows it.
#[derive(Debug)]
struct Entry {
    addr: String,
    fd: RawFd,
    opened: Instant,
    /// The wall-clock time of the connection's last command, in
    /// milliseconds since the Unix epoch (the command's own `now`, so that
    /// recording it reads no clock), shared with the connection's
    /// [`Session`], which records each command in it without taking the
    /// registry's lock. As in Redis, idle times follow the wall clock: a
    /// clock set back shows 0 until it catches up.
    last_ms: Arc<AtomicU64>,
    name: Mutex<String>,
}

/// Every registered connection by id, in id order as LIST shows them.
static CLIENTS: RwLock<BTreeMap<u64, Arc<Entry>>> = RwLock::new(BTreeMap::new());

/// A connection's place in the registry, removed when dropped. The
/// connection must drop it before its socket closes.
#[derive(Debug)]
pub(crate) struct Registered(u64, Arc<AtomicU64>);

impl Registered {
    /// The entry's last-command time, for the connection's
    /// [`Session::last_ms`].
    pub(crate) fn last_ms(&self) -> Arc<AtomicU64> {
        self.1.clone()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        CLIENTS.write().remove(&self.0);
    }
}

/// Registers the connection `id` from `addr` on the socket `fd`.
pub(crate) fn register(id: u64, addr: String, fd: RawFd) -> Registered {
    let entry = Entry {
        addr,
        fd,
        opened: Instant::now(),
        last_ms: Arc::new(AtomicU64::new(crate::clock::now_ms())),
        name: Mutex::new(String::new()),
    };
    let last_ms = entry.last_ms.clone();
    CLIENTS.write().insert(id, Arc::new(entry));
    Registered(id, last_ms)
}

/// Records that the session's connection ran a command at `now_ms`
/// (milliseconds since the Unix epoch; LIST's `idle`); nothing for a
/// session that is not registered.
pub(crate) fn touch(session: &Session, now_ms: u64) {
    if let Some(last) = &session.last_ms {
        last.store(now_ms, Ordering::Relaxed);
    }
}

/// LIST's text: `id=… addr=… name=… age=… idle=…` per connection, in id
/// order, as Tile38 writes it.
fn list_text() -> String {
    let now = crate::clock::now_ms();
    let mut out = String::new();
    for (id, e) in CLIENTS.read().iter() {
        let age = e.opened.elapsed().as_secs();
        let idle = now.saturating_sub(e.last_ms.load(Ordering::Relaxed)) / 1000;
        out.push_str(&format!(
            "id={id} addr={} name={} age={age} idle={idle}\n",
            e.addr,
            e.name.lock()
        ));
    }
    out
}

/// What KILL selects.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Id(u64),
    Addr(String),
}

/// Reads KILL's filter as Tile38 does: `ID id`, `ADDR addr`, or a bare
/// address (anything with a colon).
fn kill_target(args: &[Vec<u8>]) -> Result<Target, CmdError> {
    let no_such = || CmdError::Msg("No such client".into());
    let text = |a: &[u8]| String::from_utf8_lossy(a).into_owned();
    match args {
        [one] if one.contains(&b':') => Ok(Target::Addr(text(one))),
        [word, value] => match lower(word).as_str() {
            "addr" => Ok(Target::Addr(text(value))),
            // An id that is not a number names no client.
            "id" => text(value).parse().map(Target::Id).map_err(|_| no_such()),
            _ => Err(no_such()),
        },
        [one] if matches!(lower(one).as_str(), "addr" | "id") => Err(CmdError::Arity("client")),
        [_] => Err(no_such()),
        _ => Err(CmdError::Arity("client")),
    }
}

/// Shuts down the sockets of the connections `target` selects and says how
/// many there were.
fn kill(target: &Target) -> usize {
    let clients = CLIENTS.read();
    let mut n = 0;
    for (id, e) in clients.iter() {
        let hit = match target {
            Target::Id(want) => id == want,
            Target::Addr(want) => e.addr == *want,
        };
        if hit {
            // SAFETY: the entry exists, so its connection has not dropped
            // its registration, and it drops that before its socket: `fd`
            // is still that connection's open socket. shutdown(2) only
            // changes the socket's state; the connection still owns and
            // closes it.
            unsafe {
                libc::shutdown(e.fd, libc::SHUT_RDWR);
            }
            n += 1;
        }
    }
    n
}

/// Runs a CLIENT sub-command.
///
/// # Errors
///
/// Arity, a bad name, no client for KILL, or another sub-command.
pub(crate) fn client(
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    match (lower(&args[1]).as_str(), args.len()) {
        ("id", 2) => Ok(if ctx.json {
            ctx.ok_json(&format!(",\"id\":{}", session.id))
        } else {
            Reply::Int(session.id as i64)
        }),
        ("getname", 2) => Ok(match (&session.name, ctx.json) {
            (Some(n), true) => ctx.ok_json(&format!(",\"name\":{}", json_str(n))),
            (None, true) => ctx.ok_json(",\"name\":\"\""),
            (Some(n), false) => Reply::bulk(n.clone()),
            (None, false) => Reply::Null,
        }),
        ("setname", 3) => {
            let name = client_name(&args[2])?;
            if let Some(e) = CLIENTS.read().get(&session.id) {
                e.name.lock().clone_from(&name);
            }
            session.name = (!name.is_empty()).then_some(name);
            Ok(ctx.ok())
        }
        // Libraries report their name and version; nothing here reads them.
        ("setinfo", 4) => Ok(ctx.ok()),
        ("list", 2) => {
            let text = list_text();
            if !ctx.json {
                return Ok(Reply::bulk(text));
            }
            // Tile38 turns each `k=v` into a typed JSON member.
            let list: Vec<serde_json::Value> = text
                .lines()
                .map(|line| {
                    let m: serde_json::Map<String, serde_json::Value> = line
                        .split(' ')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), typed(v)))
                        .collect();
                    serde_json::Value::Object(m)
                })
                .collect();
            Ok(ctx.ok_json(&format!(",\"list\":{}", serde_json::Value::Array(list))))
        }
        ("kill", n) if n >= 3 => {
            let target = kill_target(&args[2..])?;
            if kill(&target) == 0 {
                return Err(CmdError::Msg("No such client".into()));
            }
            Ok(ctx.ok())
        }
        ("id" | "getname" | "setname" | "setinfo" | "list" | "kill", _) => {
            Err(CmdError::Arity("client"))
        }
        _ => Err(CmdError::Msg(
            "Syntax error, try CLIENT (LIST | KILL | GETNAME | SETNAME | ID)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_command_moves_the_registered_entrys_idle_time() {
        let mut session = Session::new(true);
        let registered = register(session.id, "127.0.0.1:1".into(), -1);
        session.last_ms = Some(registered.last_ms());
        let entry = CLIENTS.read().get(&session.id).cloned().unwrap();
        // As if the last command ran at the Unix epoch.
        entry.last_ms.store(0, Ordering::Relaxed);
        assert!(list_text().contains(&format!("id={} ", session.id)));
        let idle = |text: String| -> u64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("id={} ", session.id)))
                .unwrap()
                .to_string();
            line.rsplit("idle=").next().unwrap().parse().unwrap()
        };
        assert!(idle(list_text()) > 1_000_000_000, "{}", list_text());
        touch(&session, Ctx::new(false).now_ms);
        assert!(idle(list_text()) < 60, "{}", list_text());
        drop(registered);
        assert!(CLIENTS.read().get(&session.id).is_none());
    }

    #[test]
    fn kill_filters_parse_as_tile38_reads_them() {
        assert_eq!(kill_target(&args("ID 7")).unwrap(), Target::Id(7));
        assert_eq!(
            kill_target(&args("addr 127.0.0.1:5")).unwrap(),
            Target::Addr("127.0.0.1:5".into())
        );
        assert_eq!(
            kill_target(&args("127.0.0.1:5")).unwrap(),
            Target::Addr("127.0.0.1:5".into())
        );
        for (line, err) in [
            ("ID x", "No such client"),
            ("nope", "No such client"),
            ("TYPE normal", "No such client"),
            ("ID", "wrong number of arguments for 'client' command"),
            (
                "ID 1 ADDR 1:2",
                "wrong number of arguments for 'client' command",
            ),
        ] {
            assert_eq!(
                kill_target(&args(line)).unwrap_err().to_string(),
                err,
                "{line}"
            );
        }
    }

    #[test]
    fn registered_connections_are_listed_until_dropped() {
        // Ids far from the sessions other tests create.
        let a = register(u64::MAX - 1, "10.0.0.1:1".into(), -1);
        let text = list_text();
        assert!(
            text.contains(&format!(
                "id={} addr=10.0.0.1:1 name= age=0 idle=0\n",
                u64::MAX - 1
            )),
            "{text}"
        );
        drop(a);
        assert!(!list_text().contains("10.0.0.1:1"));
        assert_eq!(kill(&Target::Addr("10.0.0.1:1".into())), 0);
    }
}
