//! The TCP front end: accepting, protected mode, per-address caps, and the
//! per-connection read-parse-execute-reply loop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::commands::{self, Session};
use crate::resp::{self, Reply};
use crate::state::Shared;

/// How many bytes a connection reads at a time. Reading in bounded chunks
/// keeps the replies of one pipelined batch bounded too.
const READ_CHUNK: usize = 64 * 1024;

/// Counts open connections per client address and releases the slot on drop.
#[derive(Debug, Default)]
pub struct AddrCounts(parking_lot::Mutex<HashMap<IpAddr, usize>>);

/// A connection's slot in [`AddrCounts`].
#[derive(Debug)]
pub struct Slot {
    counts: Arc<AddrCounts>,
    ip: IpAddr,
}

impl AddrCounts {
    /// Takes a slot for `ip` unless it already has `max` connections.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut m = self.0.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
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
pub fn refused_by_protected_mode(
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

/// Accepts clients until the shutdown token fires; every connection task is
/// tracked by `tracker` so that shutdown can wait for in-flight commands.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, tracker: TaskTracker) {
    let local = listener.local_addr().ok();
    let counts = Arc::new(AddrCounts::default());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Running out of descriptors is transient; keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
        if shared.metrics.connected_clients.get() >= shared.opts.max_clients as i64 {
            shared.metrics.connections_rejected.inc();
            tracker.spawn(refuse(stream, "ERR max number of clients reached"));
            continue;
        }
        let Some(slot) = counts.acquire(peer.ip(), shared.opts.max_conns_per_addr) else {
            shared.metrics.connections_rejected.inc();
            tracker.spawn(refuse(
                stream,
                "ERR max connections per client address reached",
            ));
            continue;
        };
        let shared = shared.clone();
        // Counted here, in the accept loop, so that the cap above sees it at once.
        shared.metrics.connected_clients.inc();
        tracker.spawn(async move {
            if let Err(e) = serve_conn(&shared, stream).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            shared.metrics.connected_clients.dec();
            drop(slot);
        });
    }
}

async fn refuse(mut stream: TcpStream, msg: &'static str) {
    let _ = stream.write_all(format!("-{msg}\r\n").as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves one connection until it quits, closes, sends unframeable bytes,
/// or the server shuts down. A batch already read is always finished and
/// answered before the connection closes.
async fn serve_conn(shared: &Arc<Shared>, mut stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut session = Session::new(shared);
    let limits = shared.opts.limits;
    let mut parsed = resp::ArgBufs::default();
    loop {
        let mut start = 0;
        let mut close = false;
        loop {
            match resp::parse_into(&buf[start..], &limits, &mut parsed) {
                Ok(Some(used)) => {
                    start += used;
                    let args = parsed.args();
                    if args.is_empty() {
                        continue;
                    }
                    if session.authed && args[0].eq_ignore_ascii_case(b"psync") {
                        // A follower: the connection becomes a replication
                        // link, served by the replication module.
                        if !flush_before_replies(shared, &mut session, &mut out) {
                            stream.write_all(&out).await?;
                            return Ok(());
                        }
                        stream.write_all(&out).await?;
                        let pending = buf[start..].to_vec();
                        let args = args.to_vec();
                        crate::replication::serve_psync(shared, stream, args, pending).await;
                        return Ok(());
                    }
                    let reply = commands::execute(shared, &mut session, args);
                    reply.encode(&mut out);
                    if session.quit {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Reply::Error(e.to_string()).encode(&mut out);
                    close = true;
                    break;
                }
            }
        }
        buf.drain(..start);
        parsed.shrink();
        if !flush_before_replies(shared, &mut session, &mut out) {
            close = true;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
            if out.capacity() > 1 << 20 {
                out = Vec::with_capacity(16 * 1024);
            }
        }
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        // Spare capacity bounds one read; the parser bounds what stays
        // buffered (one incomplete request of at most `max_request`).
        buf.reserve(READ_CHUNK);
        let n = tokio::select! {
            r = stream.read_buf(&mut buf) => r?,
            () = shared.shutdown.cancelled() => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
    }
}

/// Writes the log's pending commands before a batch's replies go out, when
/// the batch wrote. If that fails, the replies are replaced by the error:
/// none may acknowledge a write that is not in the file. Returns false then,
/// and the connection closes.
fn flush_before_replies(shared: &Shared, session: &mut Session, out: &mut Vec<u8>) -> bool {
    if !std::mem::take(&mut session.unflushed) {
        return true;
    }
    match shared.flush_aof() {
        Ok(()) => true,
        Err(e) => {
            out.clear();
            Reply::Error(e).encode(out);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_whose_flush_fails_gets_the_error_instead_of_its_replies() {
        // Every write to /dev/full fails with ENOSPC, like a full disk.
        let shared = Arc::new(crate::state::shared_on(std::path::Path::new("/dev/full")));
        let mut session = Session::new(&shared);
        let mut out = Vec::new();
        for line in ["SET k a POINT 1 1", "SET k b POINT 2 2"] {
            let args: Vec<Vec<u8>> = line.split(' ').map(|s| s.as_bytes().to_vec()).collect();
            commands::execute(&shared, &mut session, &args).encode(&mut out);
        }
        assert_eq!(out, b"+OK\r\n+OK\r\n", "committed, not yet written");
        assert!(!flush_before_replies(&shared, &mut session, &mut out));
        let reply = String::from_utf8(out).unwrap();
        assert!(
            reply.starts_with("-ERR aof write failed, writes disabled: write /dev/full")
                && !reply.contains("+OK"),
            "{reply:?}"
        );
        // A batch that only read needs no flush and keeps its replies.
        let mut out = b"+PONG\r\n".to_vec();
        assert!(flush_before_replies(&shared, &mut session, &mut out));
        assert_eq!(out, b"+PONG\r\n");
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
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = counts.acquire(ip, 2).unwrap();
        let _b = counts.acquire(ip, 2).unwrap();
        assert!(counts.acquire(ip, 2).is_none());
        drop(a);
        assert!(counts.acquire(ip, 2).is_some());
    }
}
