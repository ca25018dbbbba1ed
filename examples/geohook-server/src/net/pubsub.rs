//! A connection that listens rather than asks: a subscriber (after its
//! first SUBSCRIBE or PSUBSCRIBE) or a live fence (after a `NEARBY|WITHIN|
//! INTERSECTS … FENCE` request).
//!
//! Both wait on two things at once, the peer's next bytes and their inbox
//! (`geohook_hooks::Inbox`), and write what arrives through the same output
//! budget as replies. The inbox holds at most `--client-output-soft` bytes:
//! a peer that reads too slowly for its events overflows it and is closed
//! (counted as `pubsub_overflow`), and one that takes nothing for
//! `--client-output-timeout-ms` is closed as a stalled client; the server
//! never holds more for it than the cap and one batch being written.
//!
//! A subscriber with no subscription left after an UNSUBSCRIBE goes back to
//! commands (Redis). In RESP3 a subscribed connection may also run any other
//! command (Redis 6); in RESP2 it gets Tile38's "only (P)SUBSCRIBE / …"
//! error. A live fence ends when the client closes or sends anything (QUIT
//! or another command, as in Tile38), and its fence goes with it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use geohook_hooks::{HookDef, Inbox, Message, PubSub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cmd::args::lower;
use crate::cmd::chan::{self, SubCmd, ONLY_PUBSUB};
use crate::cmd::ctx::{CmdError, Session};
use crate::cmd::dispatch::execute;
use crate::hooks::engine::HookEngine;
use crate::output::{write_replies, OutputLimits, Sent};
use crate::state::Shared;
use geohook_resp::{self as resp, Proto, Reply};

/// How many bytes a listening connection reads at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What the connection does after subscriber mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// It has no subscription left: back to ordinary commands.
    Commands,
    /// It is closed (or must be).
    Close,
}

/// One connection's subscriptions, removed from the pub/sub when dropped, so
/// that no way out of the loop (an error, a close, a panic) leaves them
/// behind.
struct Subscriptions<'a> {
    pubsub: &'a PubSub,
    conn: u64,
    inbox: Arc<Inbox>,
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
}

impl Subscriptions<'_> {
    fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Applies one (P)(UN)SUBSCRIBE and writes one confirmation per channel
    /// or pattern, each with the count after it (Redis, Tile38).
    fn apply(
        &mut self,
        cmd: SubCmd,
        names: &[Vec<u8>],
        session: &Session,
        start: Instant,
        out: &mut Vec<u8>,
    ) {
        let mut names: Vec<String> = names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        if names.is_empty() && cmd.removes() {
            // Without arguments: every channel (or pattern) the connection has.
            let set = if cmd.pattern() {
                &self.patterns
            } else {
                &self.channels
            };
            names = set.iter().cloned().collect();
            if names.is_empty() {
                chan::confirm(session, start, cmd, None, self.count(), out);
                return;
            }
        }
        for name in names {
            match cmd {
                SubCmd::Subscribe => {
                    self.pubsub.subscribe(&name, self.conn, &self.inbox);
                    self.channels.insert(name.clone());
                }
                SubCmd::Psubscribe => {
                    self.pubsub.psubscribe(&name, self.conn, &self.inbox);
                    self.patterns.insert(name.clone());
                }
                SubCmd::Unsubscribe => {
                    self.pubsub.unsubscribe(&name, self.conn);
                    self.channels.remove(&name);
                }
                SubCmd::Punsubscribe => {
                    self.pubsub.punsubscribe(&name, self.conn);
                    self.patterns.remove(&name);
                }
            }
            chan::confirm(session, start, cmd, Some(&name), self.count(), out);
        }
    }
}

impl Drop for Subscriptions<'_> {
    fn drop(&mut self) {
        for c in &self.channels {
            self.pubsub.unsubscribe(c, self.conn);
        }
        for p in &self.patterns {
            self.pubsub.punsubscribe(p, self.conn);
        }
    }
}

/// Serves a connection in subscriber mode, starting with `first` (a
/// (P)(UN)SUBSCRIBE), reading further requests from `buf` and the stream.
///
/// # Errors
///
/// The socket's error.
pub(crate) async fn serve_subscriber(
    shared: &Arc<Shared>,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    session: &mut Session,
    first: Vec<Vec<u8>>,
) -> std::io::Result<Next> {
    let Some(engine) = shared.hooks.get().cloned() else {
        let mut out = Vec::new();
        chan::error(
            session,
            &CmdError::Msg("pub/sub is not enabled".into()),
            &mut out,
        );
        stream.write_all(&out).await?;
        return Ok(Next::Commands);
    };
    let budget = shared.opts.output;
    let limits = shared.opts.limits;
    let mut subs = Subscriptions {
        pubsub: engine.hooks.pubsub(),
        conn: session.id,
        inbox: Inbox::new(budget.soft),
        channels: BTreeSet::new(),
        patterns: BTreeSet::new(),
    };
    let mut out: Vec<u8> = Vec::new();
    let mut parsed = resp::ArgBufs::default();
    let mut messages: Vec<Message> = Vec::new();
    let mut first = Some(first);
    loop {
        let mut close = false;
        let mut start = 0;
        if let Some(args) = first.take() {
            close = handle(shared, session, &mut subs, &args, &mut out);
        }
        while !close {
            match resp::parse_resume(&buf[start..], &limits, &mut parsed) {
                Ok(Some(used)) => {
                    start += used;
                    let args = parsed.args();
                    if !args.is_empty() {
                        close = handle(shared, session, &mut subs, args, &mut out);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Reply::Error(e.to_string()).encode(&mut out);
                    close = true;
                }
            }
        }
        buf.drain(..start);
        parsed.shrink();
        if std::mem::take(&mut session.unflushed) {
            // A write run in RESP3 subscriber mode: its reply may not go out
            // before the log has it.
            if let Err(e) = shared.flush_aof() {
                out.clear();
                Reply::Error(e.to_string()).encode(&mut out);
                close = true;
            }
        }
        if subs.inbox.drain(&mut messages).is_err() {
            shared.metrics.client_closed("pubsub_overflow");
            tracing::debug!("closing a subscriber that fell past its output cap");
            return Ok(Next::Close);
        }
        for m in messages.drain(..) {
            chan::message(session, &m, &mut out);
        }
        if !out.is_empty() {
            match write_or_overflow(shared, stream, &out, &budget, &subs.inbox).await? {
                Sent::All => out.clear(),
                Sent::Stalled => return Ok(Next::Close),
            }
        }
        if close || session.quit {
            let _ = stream.shutdown().await;
            return Ok(Next::Close);
        }
        if subs.count() == 0 {
            return Ok(Next::Commands);
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            r = stream.read_buf(buf) => {
                if r? == 0 {
                    return Ok(Next::Close);
                }
            }
            () = subs.inbox.ready() => {}
            () = shared.shutdown.cancelled() => return Ok(Next::Close),
        }
    }
}

/// Writes `out` to a listening connection, giving up (`Stalled`, counted)
/// when the peer takes nothing for the stall time or when its inbox
/// overflows meanwhile: a peer that does not read is closed as soon as it
/// is a cap behind, not a timeout later.
async fn write_or_overflow(
    shared: &Shared,
    stream: &mut TcpStream,
    out: &[u8],
    budget: &OutputLimits,
    inbox: &Inbox,
) -> std::io::Result<Sent> {
    tokio::select! {
        r = write_replies(stream, out, budget) => {
            if let Sent::Stalled = r? {
                shared.metrics.client_closed("output_stall");
                return Ok(Sent::Stalled);
            }
            Ok(Sent::All)
        }
        () = inbox.overflow() => {
            shared.metrics.client_closed("pubsub_overflow");
            tracing::debug!("closing a listener that fell past its output cap");
            Ok(Sent::Stalled)
        }
    }
}

/// Runs one request of a subscribed connection; true when it must close.
fn handle(
    shared: &Arc<Shared>,
    session: &mut Session,
    subs: &mut Subscriptions<'_>,
    args: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> bool {
    let start = Instant::now();
    if let Some(cmd) = SubCmd::of(args) {
        let spec = cmd.spec();
        if spec.arity_ok(args.len()) {
            subs.apply(cmd, &args[1..], session, start, out);
        } else {
            chan::error(session, &CmdError::Arity(spec.name), out);
        }
        shared
            .metrics
            .command(Some(spec), start.elapsed().as_secs_f64());
        return false;
    }
    match lower(&args[0]).as_str() {
        "ping" => chan::ping(session, start, args, out),
        "quit" => {
            Reply::ok().encode_as(session.proto, out);
            return true;
        }
        _ if session.proto == Proto::Resp3 => {
            execute(shared, session, args).encode_as(session.proto, out);
        }
        _ => chan::error(session, &CmdError::Msg(ONLY_PUBSUB.into()), out),
    }
    false
}

/// Removes a live fence and its inbox when its connection ends, however it
/// ends.
struct LiveGuard {
    engine: Arc<HookEngine>,
    conn: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.engine.hooks.del_live(self.conn);
        self.engine.hooks.pubsub().detach_live(self.conn);
    }
}

/// Streams the events of the live fence `def` to the connection until the
/// peer closes or sends anything. `pending` holds bytes the client sent
/// after its fence request; like any later byte, they end the stream.
///
/// # Errors
///
/// The socket's error.
pub(crate) async fn serve_live(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    pending: bool,
    session: &Session,
    def: HookDef,
) -> std::io::Result<()> {
    let Some(engine) = shared.hooks.get().cloned() else {
        return Ok(());
    };
    let budget = shared.opts.output;
    let inbox = Inbox::new(budget.soft);
    engine.hooks.pubsub().attach_live(session.id, &inbox);
    let _guard = LiveGuard {
        engine: Arc::clone(&engine),
        conn: session.id,
    };
    let mut out = Vec::new();
    if let Err(e) = engine.hooks.set_live(def, SystemTime::now()) {
        chan::error(session, &CmdError::Msg(e.to_string()), &mut out);
        stream.write_all(&out).await?;
        return Ok(());
    }
    chan::live_ok(session, &mut out);
    if pending {
        stream.write_all(&out).await?;
        return Ok(());
    }
    let mut messages = Vec::new();
    let mut scratch = [0u8; 512];
    loop {
        if !out.is_empty() {
            match write_or_overflow(shared, &mut stream, &out, &budget, &inbox).await? {
                Sent::All => out.clear(),
                Sent::Stalled => return Ok(()),
            }
        }
        tokio::select! {
            // Tile38 ends a live fence on QUIT and on any other command; a
            // close (0 bytes) ends it too.
            _ = stream.read(&mut scratch) => return Ok(()),
            () = inbox.ready() => {}
            () = shared.shutdown.cancelled() => return Ok(()),
        }
        if inbox.drain(&mut messages).is_err() {
            shared.metrics.client_closed("pubsub_overflow");
            tracing::debug!("closing a live fence that fell past its output cap");
            return Ok(());
        }
        for m in messages.drain(..) {
            chan::message(session, &m, &mut out);
        }
    }
}
