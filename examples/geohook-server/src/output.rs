//! The per-connection output budget: how many reply bytes a connection may
//! build before it must write them out, how long a peer may leave written
//! replies untaken, and how long it may take to finish sending a request.
//!
//! A pipelined batch is executed only until its replies reach
//! [`OutputLimits::soft`]; then they are written, and the rest of the batch
//! runs after the peer has taken them. A peer that reads nothing therefore
//! makes the server hold at most `soft` plus one command's reply (bounded by
//! [`OutputLimits::max_reply`] for searches and by the request caps for
//! stored objects), and is closed after [`OutputLimits::stall`] (Redis's
//! `client-output-buffer-limit`, by time rather than by bytes, since the
//! bytes are already bounded). An idle timeout, when set, closes
//! connections that send nothing between requests.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bounds on one connection's replies and on a slow peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputLimits {
    /// Reply bytes a batch may build before they are written out and the
    /// rest of the batch waits for the peer to take them.
    ///
    /// Default: 1 MiB.
    pub(crate) soft: usize,
    /// Largest reply one search (SCAN, NEARBY, WITHIN, INTERSECTS) may
    /// build; a page that would exceed it is refused with an error naming
    /// the cap, so that the client pages with a smaller LIMIT.
    ///
    /// Default: 64 MiB.
    pub(crate) max_reply: usize,
    /// How long written replies may stay untaken (a peer that does not
    /// read) before the connection is closed.
    ///
    /// Default: 60 s.
    pub(crate) stall: Duration,
    /// How long a started request may stay incomplete (a peer that drips
    /// its bytes, or stops halfway) before the connection is closed.
    ///
    /// Default: 30 s.
    pub(crate) request_timeout: Duration,
    /// How long a connection may stay idle between requests before it is
    /// closed; `None` keeps idle connections open (Redis's `timeout 0`).
    ///
    /// Default: `None`.
    pub(crate) idle: Option<Duration>,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            soft: 1 << 20,
            max_reply: 64 << 20,
            stall: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            idle: None,
        }
    }
}

impl OutputLimits {
    /// Checks that every bound is usable.
    ///
    /// # Errors
    ///
    /// A message naming the field that is zero.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.soft == 0 {
            return Err("the output soft cap must be above 0".into());
        }
        if self.max_reply == 0 {
            return Err("the largest reply must be above 0".into());
        }
        if self.stall.is_zero()
            || self.request_timeout.is_zero()
            || self.idle.is_some_and(|d| d.is_zero())
        {
            return Err("output and request timeouts must be above 0".into());
        }
        Ok(())
    }
}

/// How writing a batch's replies ended.
#[derive(Debug)]
pub(crate) enum Sent {
    /// Every byte was handed to the socket.
    All,
    /// The peer took nothing for [`OutputLimits::stall`]; the connection
    /// must be closed.
    Stalled,
}

/// Writes `out` to `w` in full, waiting for the peer (back-pressure), but no
/// longer than `limits.stall` without progress.
///
/// # Errors
///
/// The socket's error.
///
/// # Cancellation safety
///
/// Not cancellation safe: part of `out` may have been written.
pub(crate) async fn write_replies<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &[u8],
    limits: &OutputLimits,
) -> std::io::Result<Sent> {
    let mut done = 0;
    while done < out.len() {
        match tokio::time::timeout(limits.stall, w.write(&out[done..])).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => done += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(Sent::Stalled),
        }
    }
    Ok(Sent::All)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn zero_bounds_are_refused() {
        assert!(OutputLimits::default().validate().is_ok());
        for bad in [
            OutputLimits {
                soft: 0,
                ..Default::default()
            },
            OutputLimits {
                max_reply: 0,
                ..Default::default()
            },
            OutputLimits {
                stall: Duration::ZERO,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_is_served_and_one_that_does_not_is_given_up() {
        let limits = OutputLimits {
            stall: Duration::from_secs(5),
            ..Default::default()
        };
        let (mut a, mut b) = tokio::io::duplex(1024);
        let data = vec![7u8; 64 * 1024];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        assert!(matches!(
            write_replies(&mut a, &data, &limits).await,
            Ok(Sent::All)
        ));
        drop(a);
        assert_eq!(reader.await.unwrap(), data.len());
        // Nobody reads: the pipe fills and, with time paused, the stall
        // timer fires instead of waiting forever.
        let (mut a, _b) = tokio::io::duplex(1024);
        assert!(matches!(
            write_replies(&mut a, &data, &limits).await,
            Ok(Sent::Stalled)
        ));
    }
}
