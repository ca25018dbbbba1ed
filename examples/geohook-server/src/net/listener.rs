//! Accepting clients: protected mode, the total and per-address caps, and
//! the permit each connection holds until its task ends, however it ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::net::conn::serve_conn;
use crate::state::Shared;

/// Counts open connections per client address.
#[derive(Debug, Default)]
struct AddrCounts(parking_lot::Mutex<HashMap<IpAddr, usize>>);

/// A connection's admission: its place in the client count (the gauge the
/// `--max-clients` cap reads) and in its address's count. Both are given
/// back when the permit is dropped, so a connection task that ends in any
/// way, a panic included, frees its slot.
#[derive(Debug)]
struct Permit {
    counts: Arc<AddrCounts>,
    ip: IpAddr,
    clients: Gauge,
}

impl AddrCounts {
    /// A permit for `ip` unless it already has `max` connections; counts
    /// the client in `clients` too.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize, clients: &Gauge) -> Option<Permit> {
        let mut m = self.0.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        clients.inc();
        Some(Permit {
            counts: self.clone(),
            ip,
            clients: clients.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.clients.dec();
        let mut m = self.counts.0.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Protected mode: with no password set, a server listening on a
/// non-loopback address accepts only loopback clients (Redis's rule).
fn refused_by_protected_mode(
    protected: bool,
    has_password: bool,
    local: Option<SocketAddr>,
    peer: IpAddr,
) -> bool {
    protected
        && !has_password
        && !peer.is_loopback()
        && !local.is_some_and(|l| l.ip().is_loopback())
}

/// Descriptors kept for everything but clients: the log, its shrink, the
/// config file, replication links, hook endpoints, the metrics endpoint.
const RESERVED_FDS: u64 = 128;

/// The client cap the process can honour: `max_clients`, lowered so that
/// clients and the reserved descriptors fit under the descriptor limit
/// `nofile` (never below 1). Without this, clients past the limit would
/// make every `accept` fail instead of being refused one by one.
fn clients_within_fd_limit(max_clients: usize, nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_FDS).max(1);
    max_clients.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Raises the soft descriptor limit towards the hard one as far as
/// `max_clients` needs, and returns the client cap that then fits (see
/// [`clients_within_fd_limit`]), warning when it is lower than asked.
fn fit_max_clients(max_clients: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return max_clients;
    }
    let want = (max_clients as u64).saturating_add(RESERVED_FDS);
    if lim.rlim_cur < want && lim.rlim_max > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    let fit = clients_within_fd_limit(max_clients, lim.rlim_cur);
    if fit < max_clients {
        tracing::warn!(
            max_clients,
            nofile = lim.rlim_cur,
            serving = fit,
            "--max-clients does not fit the descriptor limit; capping clients"
        );
    }
    fit
}

/// Accepts clients until the shutdown token fires; every connection task is
/// tracked by `tracker` so that shutdown can wait for in-flight commands.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, tracker: TaskTracker) {
    let local = listener.local_addr().ok();
    let counts = Arc::new(AddrCounts::default());
    let max_clients = fit_max_clients(shared.opts.max_clients);
    let mut backoff = crate::backoff::Backoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => { backoff.succeeded(); s }
                Err(e) => {
                    // Running out of descriptors is transient; keep serving,
                    // waiting longer after each failure in a row.
                    let wait = backoff.failed();
                    if backoff.should_log() {
                        tracing::warn!(error = %e, retry_in = ?wait, "accept failed");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shared.shutdown.cancelled() => break,
                    }
                    continue;
                }
            },
            () = shared.shutdown.cancelled() => break,
        };
        shared.metrics.connections_received.inc();
        let (protected, has_password) = {
            let s = shared.settings.read();
            (s.protected_mode, !s.requirepass.is_empty())
        };
        if refused_by_protected_mode(protected, has_password, local, peer.ip()) {
            shared.metrics.connections_rejected.inc();
            tracker.spawn(refuse(
                stream,
                "DENIED running in protected mode: no password is set and the client is not on loopback; \
                 set requirepass or CONFIG SET protected-mode no from a loopback client",
            ));
            continue;
        }
        if shared.metrics.connected_clients.get() >= max_clients as i64 {
            shared.metrics.connections_rejected.inc();
            tracker.spawn(refuse(stream, "ERR max number of clients reached"));
            continue;
        }
        // Taken here, in the accept loop, so that the caps above see it at once.
        let Some(permit) = counts.admit(
            peer.ip(),
            shared.opts.max_conns_per_addr,
            &shared.metrics.connected_clients,
        ) else {
            shared.metrics.connections_rejected.inc();
            tracker.spawn(refuse(
                stream,
                "ERR max connections per client address reached",
            ));
            continue;
        };
        keep_alive(&stream, shared.settings.read().keepalive);
        let shared = shared.clone();
        tracker.spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_conn(&shared, stream).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Turns on TCP keep-alive with Tile38's `keepalive` period (seconds of
/// idleness before the first probe), as Tile38 does for every accepted
/// connection, so that a client that vanished without a FIN (a cut cable, a
/// dropped NAT entry) is found and its connection slot freed. `0` leaves the
/// system's default (off). The period is read at accept, so `CONFIG SET
/// keepalive` applies to connections accepted after it, as in Tile38.
fn keep_alive(stream: &TcpStream, secs: u64) {
    if secs == 0 {
        return;
    }
    let probe = socket2::TcpKeepalive::new().with_time(std::time::Duration::from_secs(secs));
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&probe) {
        tracing::debug!(error = %e, "cannot set TCP keep-alive");
    }
}

async fn refuse(mut stream: TcpStream, msg: &'static str) {
    let _ = stream.write_all(format!("-{msg}\r\n").as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_cap_fits_the_descriptor_limit() {
        assert_eq!(clients_within_fd_limit(10_000, 1_048_576), 10_000);
        assert_eq!(clients_within_fd_limit(10_000, 1024), 896);
        assert_eq!(clients_within_fd_limit(10_000, 10_128), 10_000);
        assert_eq!(clients_within_fd_limit(10_000, 10_127), 9_999);
        assert_eq!(clients_within_fd_limit(10, 64), 1);
    }

    #[test]
    fn protected_mode_refuses_only_remote_clients_without_a_password() {
        let lo: SocketAddr = "127.0.0.1:9851".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9851".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        for (protected, pass, listen, peer, refused) in [
            (true, false, any, remote, true),
            (true, false, any, local, false),
            (true, true, any, remote, false),
            (false, false, any, remote, false),
            (true, false, lo, remote, false),
        ] {
            assert_eq!(
                refused_by_protected_mode(protected, pass, Some(listen), peer),
                refused,
                "{protected} {pass} {listen} {peer}"
            );
        }
    }

    #[test]
    fn address_slots_are_capped_and_released() {
        let counts = Arc::new(AddrCounts::default());
        let clients = Gauge::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = counts.admit(ip, 2, &clients).unwrap();
        let _b = counts.admit(ip, 2, &clients).unwrap();
        assert!(counts.admit(ip, 2, &clients).is_none());
        assert_eq!(clients.get(), 2);
        drop(a);
        assert_eq!(clients.get(), 1);
        assert!(counts.admit(ip, 2, &clients).is_some());
    }

    #[tokio::test]
    async fn a_panicking_connection_gives_its_slot_back() {
        let counts = Arc::new(AddrCounts::default());
        let clients = Gauge::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let permit = counts.admit(ip, 1, &clients).unwrap();
        // The connection task owns its permit, as in `accept_loop`.
        let task = tokio::spawn(async move {
            let _permit = permit;
            panic!("a bug in a command handler");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(clients.get(), 0, "the client count is given back");
        assert!(
            counts.admit(ip, 1, &clients).is_some(),
            "and so is the address's slot"
        );
    }
}
