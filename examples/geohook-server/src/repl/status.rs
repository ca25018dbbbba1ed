//! What the rest of the server reads of the replication state: the status
//! (SERVER, ROLE, INFO, metrics), the follower's gate, HEALTHZ, and the
//! header a shrink writes.

use geohook_repl::encode_header;

use crate::cmd::ctx::CmdError;
use crate::cmd::spec::{Kind, Spec};
use crate::metrics::set_gauge;
use crate::state::Shared;

/// A node's replication state for SERVER, ROLE and metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    /// "leader" or "follower".
    pub(crate) role: &'static str,
    /// The current replication id.
    pub(crate) replid: String,
    /// This node's replication offset.
    pub(crate) offset: u64,
    /// On a follower: `host:port` of the leader.
    pub(crate) following: Option<String>,
    /// On a follower: at the leader's last announced offset.
    pub(crate) caught_up: bool,
    /// On a follower: caught up at least once since FOLLOW or start.
    pub(crate) caught_up_once: bool,
    /// On a follower: the leader's last announced offset.
    pub(crate) leader_offset: u64,
    /// On a follower: bytes behind; on a leader: the largest follower lag.
    pub(crate) lag_bytes: u64,
    /// On a follower: how long it has been behind, in milliseconds.
    pub(crate) lag_ms: u64,
    /// Full syncs (served on a leader, received on a follower).
    pub(crate) full_syncs: u64,
    /// Partial resyncs (served on a leader, received on a follower).
    pub(crate) partial_syncs: u64,
    /// On a leader: PSYNCs refused with `-BUSY` because `--max-full-syncs`
    /// snapshots were being sent.
    pub(crate) full_sync_busy: u64,
    /// On a leader: attached followers.
    pub(crate) connected_followers: u64,
}

/// Refuses a command a follower must not run now: writes ("not the
/// leader"), and data reads until it has caught up with its leader once
/// ("catching up to leader").
///
/// # Errors
///
/// The message for the client.
pub(crate) fn gate(shared: &Shared, spec: &Spec) -> Result<(), CmdError> {
    if shared.is_leader() {
        return Ok(());
    }
    match spec.kind {
        Kind::Write => Err(CmdError::NotLeader),
        Kind::Read if !caught_up(shared, true) => Err(CmdError::CatchingUp),
        _ => Ok(()),
    }
}

/// HEALTHZ on a follower: fails while it is behind its leader.
///
/// # Errors
///
/// "catching up to leader".
pub(crate) fn healthz(shared: &Shared) -> Result<(), CmdError> {
    if shared.is_leader() || caught_up(shared, false) {
        Ok(())
    } else {
        Err(CmdError::CatchingUp)
    }
}

/// On a follower, what tells whether its link has stream bytes it has not
/// applied yet (in its socket, or read and being applied).
pub(crate) fn stream_unapplied(shared: &Shared) -> Option<geohook_repl::Unapplied> {
    let repl = shared.repl.get()?;
    let f = repl.following.lock();
    f.as_ref().map(|f| f.unapplied.clone())
}

fn caught_up(shared: &Shared, once: bool) -> bool {
    let Some(repl) = shared.repl.get() else {
        return true;
    };
    let f = repl.following.lock();
    match f.as_ref() {
        Some(f) => {
            let s = f.status.borrow();
            if once {
                s.caught_up_once
            } else {
                s.caught_up
            }
        }
        None => true,
    }
}

/// The node's replication state.
pub(crate) fn status(shared: &Shared) -> Status {
    let offset = shared.core.read().aof.offset();
    let Some(repl) = shared.repl.get() else {
        return Status {
            role: "leader",
            offset,
            ..Status::default()
        };
    };
    let replid = repl.replid.lock().as_str().to_owned();
    if let Some(f) = repl.following.lock().as_ref() {
        let s = f.status.borrow();
        return Status {
            role: "follower",
            replid: s.replid.map(|r| r.as_str().to_owned()).unwrap_or(replid),
            offset,
            following: Some(format!("{}:{}", f.host, f.port)),
            caught_up: s.caught_up,
            caught_up_once: s.caught_up_once,
            leader_offset: s.leader_offset,
            lag_bytes: s.lag_bytes(),
            lag_ms: s.lag().as_millis() as u64,
            full_syncs: s.full_syncs,
            partial_syncs: s.partial_syncs,
            full_sync_busy: 0,
            connected_followers: 0,
        };
    }
    let leader = repl.leader.lock().clone();
    let stats = leader.map(|l| l.stats());
    Status {
        role: "leader",
        replid,
        offset,
        leader_offset: offset,
        lag_bytes: stats
            .as_ref()
            .and_then(|s| s.followers.iter().map(|f| f.lag_bytes).max())
            .unwrap_or(0),
        full_syncs: stats.as_ref().map_or(0, |s| s.full_syncs),
        partial_syncs: stats.as_ref().map_or(0, |s| s.partial_syncs),
        full_sync_busy: stats.as_ref().map_or(0, |s| s.busy_refusals),
        connected_followers: stats.as_ref().map_or(0, |s| {
            s.followers.iter().filter(|f| f.streaming).count() as u64
        }),
        ..Status::default()
    }
}

/// What ROLE shows of a node, in Tile38's (and Redis's) terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// A leader: its offset and the followers that announced a port.
    Master {
        offset: u64,
        /// Each follower's address (announced, or its connection's), its
        /// announced port and the offset it last acknowledged.
        followers: Vec<(String, u16, u64)>,
    },
    /// A follower: its leader, the link's state and its own offset.
    Slave {
        host: String,
        port: u16,
        state: &'static str,
        offset: u64,
    },
}

/// The node's role for ROLE.
pub(crate) fn role(shared: &Shared) -> Role {
    let offset = shared.core.read().aof.offset();
    let Some(repl) = shared.repl.get() else {
        return Role::Master {
            offset,
            followers: Vec::new(),
        };
    };
    if let Some(f) = repl.following.lock().as_ref() {
        let s = f.status.borrow();
        // Redis's link states: streaming, receiving a snapshot, or not
        // connected (and trying).
        let state = if !s.connected {
            "connecting"
        } else if s.caught_up_once {
            "connected"
        } else {
            "sync"
        };
        return Role::Slave {
            host: f.host.clone(),
            port: f.port,
            state,
            offset: s.offset,
        };
    }
    let leader = repl.leader.lock().clone();
    let followers = leader
        .map(|l| l.stats().followers)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|link| {
            let port = link.announced.port?;
            let ip = link
                .announced
                .ip
                .clone()
                .unwrap_or_else(|| host_of(&link.peer));
            Some((ip, port, link.ack_offset))
        })
        .collect();
    Role::Master { offset, followers }
}

/// The host part of a connection's `ip:port` (`[::1]` read as `localhost`,
/// as Tile38 writes it).
fn host_of(peer: &str) -> String {
    let host = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
    if host == "[::1]" {
        "localhost".to_owned()
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    }
}

/// The fields SERVER adds for replication, as (name, value) pairs.
pub(crate) fn server_fields(shared: &Shared) -> Vec<(&'static str, String)> {
    let s = status(shared);
    vec![
        ("role", s.role.to_string()),
        ("following", s.following.clone().unwrap_or_default()),
        ("caught_up", s.caught_up.to_string()),
        ("caught_up_once", s.caught_up_once.to_string()),
        ("replid", s.replid.clone()),
        ("repl_offset", s.offset.to_string()),
        ("leader_offset", s.leader_offset.to_string()),
        ("repl_lag_bytes", s.lag_bytes.to_string()),
        ("repl_lag_ms", s.lag_ms.to_string()),
        ("repl_full_syncs", s.full_syncs.to_string()),
        ("repl_partial_syncs", s.partial_syncs.to_string()),
        ("repl_full_sync_busy", s.full_sync_busy.to_string()),
        ("connected_followers", s.connected_followers.to_string()),
    ]
}

/// The REPLSTATE header a shrink starts its new file with: this node's
/// replication id and `offset` (the logical offset where the shrink's
/// carried-over tail begins), with `base_len` the snapshot's length.
pub(crate) fn shrink_header(shared: &Shared, offset: u64, base_len: u64) -> Option<Vec<u8>> {
    let repl = shared.repl.get()?;
    let replid = *repl.replid.lock();
    Some(encode_header(&replid, offset, base_len))
}

/// Copies [`status`] into the gauges, before a scrape.
pub(crate) fn refresh_gauges(shared: &Shared) {
    let s = status(shared);
    let g = &shared.metrics.repl;
    set_gauge(&g.leader, u64::from(s.role == "leader"));
    set_gauge(&g.offset, s.offset);
    set_gauge(&g.lag_bytes, s.lag_bytes);
    g.lag_seconds.set(s.lag_ms as f64 / 1000.0);
    set_gauge(&g.full_syncs, s.full_syncs);
    set_gauge(&g.partial_syncs, s.partial_syncs);
    set_gauge(&g.full_sync_busy, s.full_sync_busy);
    set_gauge(&g.connected_followers, s.connected_followers);
}
