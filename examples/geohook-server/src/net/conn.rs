//! One client connection: read, parse a pipelined batch, execute each
//! command, flush the log once for the batch, and only then send the
//! replies.
//!
//! The replies a connection builds are bounded by its output budget
//! ([`crate::output::OutputLimits`]): once they reach the soft cap, the batch stops, they are
//! written out (waiting for the peer), and the rest of the batch runs after.
//! A batch also stops after `client-pipeline-max` commands: its replies are
//! written and the task yields, so that one connection's pipeline of a
//! million tiny commands runs in slices with other clients served between
//! them. A heavy search is awaited, not run here: a pool thread runs it and
//! the runtime worker serves other connections meanwhile.
//! A peer that takes nothing for the stall time, or leaves a request
//! incomplete for the request timeout, is closed.
//!
//! An authenticated (P)(UN)SUBSCRIBE turns the connection into a subscriber
//! and a `NEARBY|WITHIN|INTERSECTS … FENCE` request into a live fence; both
//! are served by `net/pubsub.rs`, a subscriber coming back here once it has
//! no subscription left. An authenticated MONITOR hands the connection to
//! `net/monitor.rs` for good.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cmd::chan::{self, SubCmd};
use crate::cmd::ctx::{CmdError, Ctx, Session};
use crate::cmd::dispatch::execute_async;
use crate::cmd::hooks::is_live_fence;
use crate::net::monitor::serve_monitor;
use crate::net::pubsub::{serve_live, serve_subscriber, Next};
use crate::output::{write_replies, Sent};
use crate::repl::leader::serve_psync;
use crate::repl::status::stream_unapplied;
use crate::state::Shared;
use geohook_resp::{self as resp, Reply};

/// How many bytes a connection reads at a time. Reading in bounded chunks
/// keeps the replies of one pipelined batch bounded too.
const READ_CHUNK: usize = 64 * 1024;

/// Serves one connection until it quits, closes, sends unframeable bytes,
/// or the server shuts down. A batch already read is always finished and
/// answered before the connection closes.
pub(crate) async fn serve_conn(shared: &Arc<Shared>, mut stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut session = Session::new(shared.settings.read().requirepass.is_empty());
    // CLIENT LIST shows the connection and CLIENT KILL may shut its socket
    // down while it is registered; locals drop before the stream, and the
    // PSYNC hand-off drops it first, so the socket is open all that time.
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    session.addr.clone_from(&peer);
    let registered = crate::cmd::client::register(session.id, peer, stream.as_raw_fd());
    session.last_ms = Some(registered.last_ms());
    let limits = shared.opts.limits;
    let budget = shared.opts.output;
    let mut parsed = resp::ArgBufs::default();
    // When the request now buffered (incomplete) must be complete by.
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let mut start = 0;
        let mut close = false;
        // True when the batch stopped at the soft cap with commands left.
        let mut more = false;
        // True when it stopped at the count cap: others get a turn first.
        let mut sliced = false;
        // Read once a batch: CONFIG SET applies from the next one.
        let max_pipeline = shared.settings.read().client_pipeline_max;
        let mut ran: u64 = 0;
        loop {
            match resp::parse_resume(&buf[start..], &limits, &mut parsed) {
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
                        drop(registered);
                        let announced = std::mem::take(&mut session.announced);
                        serve_psync(shared, stream, announced, args, pending).await;
                        return Ok(());
                    }
                    if session.authed && args[0].eq_ignore_ascii_case(b"monitor") {
                        if args.len() != 1 {
                            Ctx::new(session.json)
                                .err(&CmdError::Arity("monitor"))
                                .encode_as(session.proto, &mut out);
                            continue;
                        }
                        // The replies before it go out first, after the log
                        // has what they acknowledge; the connection then
                        // only listens.
                        let pending = buf[start..].to_vec();
                        let flushed = flush_before_replies(shared, &mut session, &mut out);
                        stream.write_all(&out).await?;
                        if !flushed {
                            return Ok(());
                        }
                        return serve_monitor(shared, stream, pending, &session).await;
                    }
                    let listens = session.authed && SubCmd::of(args).is_some();
                    let live = session.authed && !listens && is_live_fence(args);
                    if listens || live {
                        let args = args.to_vec();
                        let fence = if live {
                            match chan::start_live(shared, &session, &args) {
                                Ok(def) => Some(def),
                                Err(e) => {
                                    chan::error(&session, &e, &mut out);
                                    continue;
                                }
                            }
                        } else {
                            None
                        };
                        // The replies before it go out first, after the log
                        // has what they acknowledge.
                        buf.drain(..start);
                        start = 0;
                        let flushed = flush_before_replies(shared, &mut session, &mut out);
                        stream.write_all(&out).await?;
                        out.clear();
                        if !flushed {
                            return Ok(());
                        }
                        if let Some(def) = fence {
                            return serve_live(shared, stream, !buf.is_empty(), &session, def)
                                .await;
                        }
                        match serve_subscriber(shared, &mut stream, &mut buf, &mut session, args)
                            .await?
                        {
                            Next::Commands => continue,
                            Next::Close => return Ok(()),
                        }
                    }
                    session.last_in_batch = start == buf.len();
                    let reply = execute_async(shared, &mut session, args).await;
                    session.last_in_batch = false;
                    reply.encode_as(session.proto, &mut out);
                    if session.quit {
                        close = true;
                        break;
                    }
                    if out.len() >= budget.soft {
                        more = true;
                        break;
                    }
                    ran += 1;
                    if ran == max_pipeline && start < buf.len() {
                        more = true;
                        sliced = true;
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
        if buf.is_empty() {
            deadline = None;
        } else if start > 0 || deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + budget.request_timeout);
        }
        if !flush_before_replies(shared, &mut session, &mut out) {
            close = true;
        }
        if std::mem::take(&mut session.streamed) {
            // The flush woke the followers' links on this thread; an idle
            // link takes and sends the batch's writes before this task
            // resumes, so a follower has them before the client has their
            // replies.
            let leader = shared.repl.get().and_then(|r| r.leader.lock().clone());
            if let Some(leader) = leader {
                leader.handed_over().await;
            }
        }
        if !out.is_empty() {
            if let Sent::Stalled = write_replies(&mut stream, &out, &budget).await? {
                shared.metrics.client_closed("output_stall");
                tracing::debug!("closing a client that takes no replies");
                return Ok(());
            }
            out.clear();
            if out.capacity() > budget.soft.max(64 * 1024) * 2 {
                out = Vec::with_capacity(16 * 1024);
            }
        }
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if more {
            if sliced {
                shared.metrics.pipeline_slices.inc();
                tokio::task::yield_now().await;
            }
            // The rest of the batch is already buffered.
            continue;
        }
        if buf.is_empty() && buf.capacity() > 2 * READ_CHUNK {
            // An idle connection does not keep the buffer of its largest
            // request.
            buf = Vec::with_capacity(16 * 1024);
        }
        // Spare capacity bounds one read; the parser bounds what stays
        // buffered (one incomplete request of at most `max_request`).
        buf.reserve(READ_CHUNK);
        let wait = match deadline {
            Some(at) => Wait::Request(at),
            None => match budget.idle {
                Some(idle) => Wait::Idle(tokio::time::Instant::now() + idle),
                None => Wait::Forever,
            },
        };
        let n = match read_more(shared, &mut stream, &mut buf, wait).await? {
            Some(n) => n,
            None => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        if !shared.is_leader() {
            // On a follower the replication stream and this request often
            // arrive in the same wake-up, and a runtime worker runs the
            // task woken last first. While stream bytes that reached the
            // link are not applied yet, waiting lets them be applied
            // before the request runs, as a server that handles events in
            // arrival order (Redis) would: a client reading its write back
            // here right after the leader acknowledged it then finds it.
            // With nothing unapplied, the request runs at once.
            if let Some(unapplied) = stream_unapplied(shared) {
                unapplied.settled().await;
            }
        }
    }
}

/// How long [`read_more`] may wait for the peer.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// A request is begun and must be complete by then.
    Request(tokio::time::Instant),
    /// Idle between requests, with an idle timeout ending then.
    Idle(tokio::time::Instant),
    /// Idle, with no idle timeout.
    Forever,
}

/// Reads more bytes into `buf`. A request already begun (bytes left over
/// from the last parse) must be complete by its deadline, however slowly
/// its bytes drip in; an idle connection waits until its idle timeout, if
/// any. `None` when the connection should close (shutdown, or a deadline
/// passed).
async fn read_more(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    wait: Wait,
) -> std::io::Result<Option<usize>> {
    let timeout = async {
        match wait {
            Wait::Request(at) | Wait::Idle(at) => tokio::time::sleep_until(at).await,
            Wait::Forever => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        r = stream.read_buf(buf) => r.map(Some),
        () = shared.shutdown.cancelled() => Ok(None),
        () = timeout => {
            if let Wait::Request(_) = wait {
                shared.metrics.client_closed("request_timeout");
                let mut out = Vec::new();
                Reply::Error("Protocol error: request not completed in time".into()).encode(&mut out);
                let _ = stream.write_all(&out).await;
            } else {
                // As Redis does with `timeout`: closed without a word.
                shared.metrics.client_closed("idle");
            }
            Ok(None)
        }
    }
}

/// Writes the log's pending commands before a batch's replies go out, when
/// the batch wrote. If that fails, the replies are replaced by the error:
/// none may acknowledge a write that is not in the file. Returns false then,
/// and the connection closes.
fn flush_before_replies(shared: &Shared, session: &mut Session, out: &mut Vec<u8>) -> bool {
    shared.metrics.flush(&mut session.tally);
    if !std::mem::take(&mut session.unflushed) {
        return true;
    }
    match shared.flush_aof() {
        Ok(()) => true,
        Err(e) => {
            out.clear();
            Reply::Error(e.to_string()).encode(out);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::dispatch::execute;

    #[test]
    fn a_batch_whose_flush_fails_gets_the_error_instead_of_its_replies() {
        // Every write to /dev/full fails with ENOSPC, like a full disk.
        let shared = Arc::new(crate::state::shared_on(std::path::Path::new("/dev/full")));
        let mut session = Session::new(true);
        let mut out = Vec::new();
        for line in ["SET k a POINT 1 1", "SET k b POINT 2 2"] {
            let args: Vec<Vec<u8>> = line.split(' ').map(|s| s.as_bytes().to_vec()).collect();
            execute(&shared, &mut session, &args).encode(&mut out);
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

    #[tokio::test]
    async fn a_batchs_commands_reach_the_shared_metrics_before_its_replies() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(crate::state::shared_on(&dir.path().join("a.aof")));
        let run = || {
            shared
                .metrics
                .commands_run
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let mut session = Session::new(true);
        let args: Vec<Vec<u8>> = vec![b"SCAN".to_vec(), b"fleet".to_vec()];
        for _ in 0..3 {
            execute_async(&shared, &mut session, &args).await;
        }
        assert_eq!(run(), 0, "counted in the connection's tally so far");
        let mut out = Vec::new();
        assert!(flush_before_replies(&shared, &mut session, &mut out));
        assert_eq!(run(), 3);
    }
}
