//! Changing a node's role: the start (leader or follower, from the file's
//! header and the settings), FOLLOW, and promotion by `FOLLOW no one`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use geohook_repl::{recover, Backlog, Follower, FollowerConfig, Leader, LeaderConfig, ReplId};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aof::{Fsync, AOF_NAME};
use crate::cmd::ctx::CmdError;
use crate::repl::follower::ServerReplica;
use crate::repl::state::{file_limits, Following, Repl};
use crate::state::Shared;

/// Reads the position from the live file's `bytes` (read once at start and
/// replayed by [`crate::replay::load`] too), sets the log's offset, and
/// takes the role the settings name: a follower of
/// `follow_host:follow_port`, or a leader that serves PSYNC with a backlog
/// loaded from its own file.
///
/// # Errors
///
/// The file's header is damaged.
pub(crate) fn start(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    backlog: usize,
    max_full_syncs: usize,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let live = shared.opts.dir.join(AOF_NAME);
    let found = recover(bytes, &file_limits())
        .with_context(|| format!("replication header of {}", live.display()))?;
    let offset = found.offset();
    let had_header = found.replid().is_some();
    let replid = found.replid().unwrap_or_else(ReplId::random);
    let leader_config = LeaderConfig {
        backlog_capacity: backlog,
        max_full_syncs,
        ..LeaderConfig::default()
    };
    let backlog = Backlog::load(
        leader_config.backlog_capacity,
        offset,
        found.stream_bytes(bytes),
    );
    shared.core.write().aof.set_offset(offset);
    let repl = Arc::new(Repl {
        tracker: tracker.clone(),
        leader_config,
        leader: Mutex::new(None),
        links: Mutex::new(CancellationToken::new()),
        replid: Mutex::new(replid),
        following: Mutex::new(None),
        sync: Arc::default(),
    });
    let _ = shared.repl.set(repl.clone());
    let (mut host, port) = {
        let s = shared.settings.read();
        (s.follow_host.clone(), s.follow_port)
    };
    tracing::info!(replid = %replid.as_str(), offset, "replication position recovered");
    if !host.is_empty() && is_self(&shared.opts.listen, &host, port) {
        // A saved config (written by hand, or copied from another node)
        // that names this server's own address as its leader: following it
        // would only ever reach this node itself, which as a follower
        // serves no PSYNC, so the link would retry forever and every write
        // be refused. FOLLOW refuses the same address; here the setting is
        // dropped, so that the next CONFIG REWRITE does not keep it, and
        // the node leads.
        tracing::error!(
            host = %host,
            port,
            "the saved config names this server as its leader; ignoring it and leading"
        );
        let mut s = shared.settings.write();
        s.follow_host.clear();
        s.follow_port = 0;
        host.clear();
    }
    if host.is_empty() {
        // Under `always` every byte a follower can have received was durable
        // here first, so the history continues under the same id; otherwise
        // an unsynced tail may be lost and a new id makes any follower that
        // saw it full-sync instead of diverging.
        let leader = if shared.opts.fsync == Fsync::Always && had_header {
            Leader::with_backlog(repl.leader_config.clone(), replid, backlog)?
        } else {
            Leader::recovered(repl.leader_config.clone(), replid, backlog)?
        };
        // A history at offset 0 (the new file of a first start) or without
        // a header (a new random id) is one no follower can hold a position
        // in beyond its start, so the backlog keeps nothing until the first
        // follower attaches, as Redis's does: a leader nobody follows does
        // not hold `--repl-backlog-size` of stream in memory. A follower
        // that knew an offset-0 history and comes back after writes gets a
        // full sync instead of a partial one, which is still correct.
        if !had_header || offset == 0 {
            leader.defer_backlog();
        }
        let leader = Arc::new(leader);
        *repl.replid.lock() = leader.position().0;
        shared.core.write().aof.set_tap(Some(leader.clone()));
        *repl.leader.lock() = Some(leader);
        shared.leader.store(true, Ordering::Release);
    } else {
        let position = had_header.then_some((replid, offset));
        follow(shared, &repl, host, port, position)?;
    }
    Ok(())
}

/// Starts following `host:port` from `position`.
fn follow(
    shared: &Arc<Shared>,
    repl: &Arc<Repl>,
    host: String,
    port: u16,
    position: Option<(ReplId, u64)>,
) -> anyhow::Result<()> {
    let auth = {
        let a = shared.settings.read().leaderauth.clone();
        (!a.is_empty()).then_some(a)
    };
    let cancel = shared.shutdown.child_token();
    let replica = Arc::new(ServerReplica {
        shared: shared.clone(),
        cancel: cancel.clone(),
        sync: repl.sync.clone(),
    });
    // This node's port and address, announced to the leader (REPLCONF) for
    // its ROLE: Tile38's `replica_announce_port` and `replica_announce_ip`
    // when set, else the port it listens on.
    let (announce_port, announce_ip) = {
        let s = shared.settings.read();
        let own = shared
            .opts
            .listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .filter(|p| *p != 0);
        (
            Some(s.replica_announce_port).filter(|p| *p != 0).or(own),
            Some(s.replica_announce_ip.clone()).filter(|ip| !ip.is_empty()),
        )
    };
    let config = FollowerConfig {
        host: host.clone(),
        port,
        auth,
        announce_port,
        announce_ip,
        ..Default::default()
    };
    let follower = Follower::new(config, replica, position)?;
    let status = follower.status();
    let unapplied = follower.unapplied();
    {
        // Stop leading first: no more backlog appends, attached followers
        // are dropped, and writes are refused from here on.
        let mut core = shared.core.write();
        shared.leader.store(false, Ordering::Release);
        // The hooks stop queueing now, under the lock that orders writes, not
        // at the housekeeping task's next tick: until then the commands this
        // node replicates would also be delivered from here, twice over.
        if let Some(engine) = shared.hooks.get() {
            engine.hooks.set_role(false);
        }
        core.aof.set_tap(None);
        *repl.leader.lock() = None;
        repl.links.lock().cancel();
    }
    if let Some(old) = repl.following.lock().replace(Following {
        host: host.clone(),
        port,
        cancel: cancel.clone(),
        status,
        unapplied,
    }) {
        old.cancel.cancel();
    }
    tracing::info!(%host, port, "following");
    repl.tracker.spawn(follower.run(cancel));
    Ok(())
}

/// Stops following and becomes a leader that continues this node's
/// history under a new replication id.
fn promote(shared: &Arc<Shared>, repl: &Arc<Repl>) -> Result<(), CmdError> {
    let Some(old) = repl.following.lock().take() else {
        return Ok(());
    };
    old.cancel.cancel();
    let mut core = shared.core.write();
    if let Some(s) = repl.sync.lock().take() {
        // Promoted in the middle of a full sync: memory holds part of the
        // leader's snapshot while the file still holds the old state. Reload
        // nothing silently; say so, and free the shrink flag the sync held.
        let _ = std::fs::remove_file(&s.path);
        shared.shrinking.store(false, Ordering::SeqCst);
        tracing::error!(
            "promoted during a full sync: memory holds a partial snapshot; restart to reload the file"
        );
    }
    let offset = core.aof.offset();
    let replid = *repl.replid.lock();
    let leader = Leader::recovered(
        repl.leader_config.clone(),
        replid,
        Backlog::new(repl.leader_config.backlog_capacity, offset),
    )
    .map_err(|e| CmdError::Msg(e.to_string()))?;
    let leader = Arc::new(leader);
    *repl.replid.lock() = leader.position().0;
    core.aof.set_tap(Some(leader.clone()));
    *repl.leader.lock() = Some(leader);
    *repl.links.lock() = CancellationToken::new();
    shared.leader.store(true, Ordering::Release);
    if let Some(engine) = shared.hooks.get() {
        engine.hooks.set_role(true);
    }
    tracing::info!(offset, "no longer following: leading");
    Ok(())
}

/// True when `host:port` names this server's own listener (`listen`):
/// the same port at an address the listener answers on. A host name is
/// resolved first (`localhost`, the machine's own name, any alias in
/// `/etc/hosts`), with [`resolve`]'s deadline; a name that does not
/// resolve in time is not this server as far as the check can tell, and
/// the link's own connection attempts report it.
fn is_self(listen: &str, host: &str, port: u16) -> bool {
    let Ok(listen) = listen.parse::<SocketAddr>() else {
        return false;
    };
    if listen.port() != port {
        return false;
    }
    let ips = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolve(host, port),
    };
    ips.into_iter()
        .any(|ip| answers_on(listen.ip(), ip, is_local))
}

/// True when a listener bound to `bound` answers on `ip`: any loopback
/// address (this node's), the bound address itself, and, when it is bound
/// to all addresses, any address of this machine (`local`).
fn answers_on(bound: IpAddr, ip: IpAddr, local: impl Fn(IpAddr) -> bool) -> bool {
    // `::ffff:127.0.0.1` is 127.0.0.1.
    let ip = ip.to_canonical();
    ip.is_loopback() || ip == bound.to_canonical() || (bound.is_unspecified() && local(ip))
}

/// True when `ip` is an address of this machine: a socket can be bound to
/// it (no packet is sent).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// How long FOLLOW waits for a host name to resolve.
const RESOLVE_WITHIN: Duration = Duration::from_secs(2);

/// The addresses `host` resolves to, asked on a thread of its own so that
/// a slow resolver costs FOLLOW at most [`RESOLVE_WITHIN`] (the runtime
/// worker's other connections move elsewhere meanwhile); none when it
/// fails or is late.
fn resolve(host: &str, port: u16) -> Vec<IpAddr> {
    use std::net::ToSocketAddrs;
    let (tx, rx) = std::sync::mpsc::channel();
    let host = host.to_owned();
    let asked = std::thread::Builder::new()
        .name("follow-resolve".into())
        .spawn(move || {
            let ips: Vec<IpAddr> = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| a.ip()).collect())
                .unwrap_or_default();
            let _ = tx.send(ips);
        });
    if asked.is_err() {
        return Vec::new();
    }
    let wait = || rx.recv_timeout(RESOLVE_WITHIN).unwrap_or_default();
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// `FOLLOW host port` or `FOLLOW no one`: follows a leader (from this
/// node's position) or stops following and leads; the setting is kept for
/// CONFIG REWRITE.
///
/// # Errors
///
/// A bad port, this server's own address, or replication not started.
pub(crate) fn follow_command(shared: &Arc<Shared>, args: &[Vec<u8>]) -> Result<(), CmdError> {
    let host = String::from_utf8_lossy(&args[1]).into_owned();
    let port_s = String::from_utf8_lossy(&args[2]).into_owned();
    let repl = shared
        .repl
        .get()
        .ok_or_else(|| CmdError::Msg("replication is not started".into()))?
        .clone();
    if host.eq_ignore_ascii_case("no") && port_s.eq_ignore_ascii_case("one") {
        promote(shared, &repl)?;
        let mut s = shared.settings.write();
        s.follow_host.clear();
        s.follow_port = 0;
        return Ok(());
    }
    let port: u16 = match port_s.parse() {
        Ok(p) if p != 0 => p,
        _ => return Err(CmdError::invalid(&args[2])),
    };
    if is_self(&shared.opts.listen, &host, port) {
        return Err(CmdError::Msg("cannot follow self".into()));
    }
    // Stop the old link first: its task checks the token under the core
    // lock before applying, so no command lands after the position is read.
    if let Some(old) = repl.following.lock().take() {
        old.cancel.cancel();
    }
    let position = {
        let core = shared.core.read();
        Some((*repl.replid.lock(), core.aof.offset()))
    };
    follow(shared, &repl, host.clone(), port, position)
        .map_err(|e| CmdError::Msg(e.to_string()))?;
    let mut s = shared.settings.write();
    s.follow_host = host;
    s.follow_port = port;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{answers_on, is_self};
    use std::net::IpAddr;

    #[test]
    fn own_address_is_recognised() {
        for (listen, host, port, want) in [
            ("127.0.0.1:9851", "127.0.0.1", 9851, true),
            ("127.0.0.1:9851", "localhost", 9851, true),
            ("127.0.0.1:9851", "LOCALHOST", 9851, true),
            ("127.0.0.1:9851", "127.0.0.2", 9851, true),
            ("127.0.0.1:9851", "::1", 9851, true),
            ("127.0.0.1:9851", "::ffff:127.0.0.1", 9851, true),
            ("10.1.2.3:9851", "10.1.2.3", 9851, true),
            ("10.1.2.3:9851", "10.1.2.4", 9851, false),
            ("127.0.0.1:9851", "127.0.0.1", 9852, false),
            // A name that does not resolve is not this server.
            ("127.0.0.1:9851", "leader.invalid", 9851, false),
            ("", "127.0.0.1", 9851, false),
        ] {
            assert_eq!(is_self(listen, host, port), want, "{listen} {host}:{port}");
        }
    }

    /// A listener on all addresses answers on this machine's addresses
    /// only: another node at the same port is not this one.
    #[test]
    fn all_addresses_means_this_machines_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let local = |a: IpAddr| a == ip("10.1.2.3");
        for (bound, host, want) in [
            ("0.0.0.0", "10.1.2.3", true),
            ("0.0.0.0", "10.1.2.4", false),
            ("::", "::ffff:10.1.2.3", true),
            ("::", "127.0.0.1", true),
            ("10.1.2.3", "10.1.2.4", false),
        ] {
            assert_eq!(
                answers_on(ip(bound), ip(host), local),
                want,
                "{bound} {host}"
            );
        }
    }
}
