//! A connection after `MONITOR`: it answers `+OK` and then only listens,
//! receiving a line for each command the other clients run (see
//! `monitor.rs` for the lines and the queue's bound).
//!
//! As in Tile38, the lines and the `+OK` are RESP simple strings whatever
//! the connection's protocol or output mode. QUIT answers `+OK` and closes
//! the connection; any other command is refused with an error and closes
//! it, as Tile38 ends a monitor on any input. A monitor whose queue falls a
//! cap behind gets an error line, if its socket takes it, and is closed
//! (counted as `monitor_overflow`); one that takes nothing for the stall
//! time is closed as `output_stall`.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cmd::args::lower;
use crate::cmd::ctx::Session;
use crate::output::{write_replies, Sent};
use crate::state::Shared;
use geohook_resp as resp;

/// How many bytes a monitor reads at a time.
const READ_CHUNK: usize = 4 * 1024;

/// What a monitor that sent a command other than QUIT is told before it
/// is closed.
pub(crate) const ONLY_QUIT: &str = "ERR only QUIT is allowed after MONITOR";

/// What a monitor that fell behind is told, if its socket takes it.
const FELL_BEHIND: &str = "ERR MONITOR output limit reached: lines were dropped";

/// Detaches the monitor when its connection ends, however it ends.
struct Attached<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.shared.monitors.detach(self.id);
    }
}

/// Serves a monitor until it quits, sends anything else, closes, falls
/// behind or the server shuts down. `pending` holds what the client sent
/// after MONITOR in the same read.
///
/// # Errors
///
/// The socket's error.
pub(crate) async fn serve_monitor(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    mut pending: Vec<u8>,
    session: &Session,
) -> std::io::Result<()> {
    let budget = shared.opts.output;
    let limits = shared.opts.limits;
    let feed = shared.monitors.attach(session.id, budget.soft);
    let _attached = Attached {
        shared,
        id: session.id,
    };
    let mut out = b"+OK\r\n".to_vec();
    let mut parsed = resp::ArgBufs::default();
    loop {
        // What the client sent ends the monitor: QUIT with `+OK`, anything
        // else with an error, and bytes that do not parse with theirs.
        let mut end: Option<Vec<u8>> = None;
        match resp::parse_resume(&pending, &limits, &mut parsed) {
            Ok(Some(_)) if !parsed.args().is_empty() => {
                end = Some(if lower(&parsed.args()[0]) == "quit" {
                    b"+OK\r\n".to_vec()
                } else {
                    format!("-{ONLY_QUIT}\r\n").into_bytes()
                });
            }
            Ok(Some(used)) => {
                pending.drain(..used);
            }
            Ok(None) => {}
            Err(e) => end = Some(format!("-{e}\r\n").into_bytes()),
        }
        if let Some(last) = end {
            out.extend_from_slice(&last);
            let _ = write_replies(&mut stream, &out, &budget).await?;
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if !out.is_empty() {
            tokio::select! {
                r = write_replies(&mut stream, &out, &budget) => {
                    if let Sent::Stalled = r? {
                        shared.metrics.client_closed("output_stall");
                        return Ok(());
                    }
                    out.clear();
                }
                () = feed.fell_behind() => {}
            }
        }
        if feed.take(&mut out).is_err() {
            shared.metrics.client_closed("monitor_overflow");
            tracing::debug!("closing a monitor that fell past its output cap");
            // Only what the socket takes at once: a peer that does not read
            // is not waited for.
            let _ = stream.try_write(format!("-{FELL_BEHIND}\r\n").as_bytes());
            return Ok(());
        }
        if !out.is_empty() {
            continue;
        }
        pending.reserve(READ_CHUNK);
        tokio::select! {
            r = stream.read_buf(&mut pending) => {
                if r? == 0 {
                    return Ok(());
                }
            }
            () = feed.ready() => {}
            () = shared.shutdown.cancelled() => return Ok(()),
        }
    }
}
