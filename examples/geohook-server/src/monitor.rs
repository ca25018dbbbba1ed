//! The MONITOR feed: every command a client runs, as one line for each
//! attached monitor, in Redis's format (`+<unix seconds, 6 decimals> [0
//! <client addr>] "arg" …`, which Tile38 writes too).
//!
//! With no monitor attached a command costs one atomic load here. Each
//! monitor has its own queue of at most `cap` bytes (the connection's
//! `--client-output-soft`): a line that would pass it empties the queue and
//! marks the monitor as fallen behind, and its connection closes. The
//! server therefore holds, for a monitor that does not read, at most the cap
//! (and one line, which a queue always takes when it is empty) and the batch
//! being written to it.
//!
//! What is not shown: the commands Tile38 leaves out (CONFIG, FOLLOW,
//! SLAVEOF, REPLCONF, AOF, AOFMD5, CLIENT, MONITOR), commands that did not
//! run for their name or argument count, and secrets: AUTH's arguments and
//! the two after HELLO's `AUTH` are written `(redacted)`, as Redis does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// The monitors attached to the server.
#[derive(Debug, Default)]
pub(crate) struct Monitors {
    /// How many are attached: the one load a command pays without any.
    attached: AtomicUsize,
    feeds: Mutex<Vec<(u64, Arc<Feed>)>>,
}

/// A monitor's queue fell behind and was emptied; the monitor must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FellBehind;

/// One monitor's queue of lines.
#[derive(Debug)]
pub(crate) struct Feed {
    state: Mutex<FeedState>,
    /// Lines arrived (or the queue overflowed): one stored wake-up.
    ready: Notify,
    /// The queue overflowed, for a writer blocked on a peer that does not
    /// read, apart from `ready` so that it never takes the loop's wake-up.
    gone: Notify,
    cap: usize,
}

#[derive(Debug, Default)]
struct FeedState {
    lines: Vec<u8>,
    overflowed: bool,
}

impl Feed {
    fn offer(&self, line: &[u8]) {
        let mut s = self.state.lock();
        if s.overflowed {
            return;
        }
        if !s.lines.is_empty() && s.lines.len() + line.len() > self.cap {
            // The memory goes now; the connection sees the flag and closes.
            s.overflowed = true;
            s.lines = Vec::new();
            drop(s);
            self.ready.notify_one();
            self.gone.notify_waiters();
            return;
        }
        s.lines.extend_from_slice(line);
        drop(s);
        self.ready.notify_one();
    }

    /// Moves the waiting lines, oldest first, to the end of `out`.
    ///
    /// # Errors
    ///
    /// [`FellBehind`] once a line was refused.
    pub(crate) fn take(&self, out: &mut Vec<u8>) -> Result<(), FellBehind> {
        let mut s = self.state.lock();
        if s.overflowed {
            return Err(FellBehind);
        }
        if out.is_empty() {
            std::mem::swap(out, &mut s.lines);
        } else {
            out.append(&mut s.lines);
        }
        Ok(())
    }

    /// Waits until lines arrive (or the queue overflows) after the last
    /// [`Feed::take`].
    ///
    /// # Cancellation safety
    ///
    /// Safe: a wake-up that is not awaited stays stored for the next call.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Waits until the queue has overflowed (at once if it has).
    ///
    /// # Cancellation safety
    ///
    /// Safe, and it leaves [`Feed::ready`]'s wake-up alone.
    pub(crate) async fn fell_behind(&self) {
        loop {
            let gone = self.gone.notified();
            tokio::pin!(gone);
            // Registered before the flag is read, so that an overflow in
            // between still wakes it.
            gone.as_mut().enable();
            if self.state.lock().overflowed {
                return;
            }
            gone.await;
        }
    }
}

impl Monitors {
    /// Attaches monitor `id` with a queue of at most `cap` bytes.
    pub(crate) fn attach(&self, id: u64, cap: usize) -> Arc<Feed> {
        let feed = Arc::new(Feed {
            state: Mutex::default(),
            ready: Notify::new(),
            gone: Notify::new(),
            cap,
        });
        let mut feeds = self.feeds.lock();
        feeds.push((id, Arc::clone(&feed)));
        self.attached.store(feeds.len(), Ordering::Release);
        feed
    }

    /// Detaches monitor `id`, if attached.
    pub(crate) fn detach(&self, id: u64) {
        let mut feeds = self.feeds.lock();
        feeds.retain(|(i, _)| *i != id);
        self.attached.store(feeds.len(), Ordering::Release);
    }

    /// Shows one command run by client `addr` to every monitor; `name` is
    /// the command's name in lower case.
    pub(crate) fn feed(&self, name: &str, addr: &str, args: &[Vec<u8>]) {
        if self.attached.load(Ordering::Acquire) == 0 {
            return;
        }
        if matches!(
            name,
            "config"
                | "follow"
                | "slaveof"
                | "replicaof"
                | "replconf"
                | "aof"
                | "aofmd5"
                | "client"
                | "monitor"
        ) {
            return;
        }
        let line = line(SystemTime::now(), addr, name, args);
        for (_, feed) in self.feeds.lock().iter() {
            feed.offer(&line);
        }
    }
}

/// The monitor line for `args` run at `at` by `addr`, with CRLF.
fn line(at: SystemTime, addr: &str, name: &str, args: &[Vec<u8>]) -> Vec<u8> {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = format!(
        "+{}.{:06} [0 {addr}]",
        since.as_secs(),
        since.subsec_micros()
    )
    .into_bytes();
    // The arguments from `secret.0` up to `secret.1` (excluded) are hidden.
    let mut secret = if name == "auth" {
        (1, args.len())
    } else {
        (0, 0)
    };
    for (i, a) in args.iter().enumerate() {
        out.push(b' ');
        if (secret.0..secret.1).contains(&i) {
            out.extend_from_slice(b"\"(redacted)\"");
            continue;
        }
        quote(a, &mut out);
        // HELLO's `AUTH username password` carries a secret too.
        if name == "hello" && i > 0 && a.eq_ignore_ascii_case(b"auth") {
            secret = (i + 1, i + 3);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `arg` in double quotes with Redis's escapes (`sdscatrepr`): `\"`, `\\`,
/// `\n`, `\r`, `\t`, `\a`, `\b`, and `\xHH` for any other byte that is not
/// printable ASCII.
fn quote(arg: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in arg {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(b),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn show(name: &str, args: &[&[u8]]) -> String {
        let at = UNIX_EPOCH + Duration::from_micros(1_339_518_083_107_412);
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        String::from_utf8(line(at, "127.0.0.1:60866", name, &args)).unwrap()
    }

    #[test]
    fn lines_are_redis_lines_with_its_escapes_and_no_secrets() {
        for (name, args, want) in [
            (
                "set",
                &[&b"set"[..], b"x", b"6"][..],
                r#"+1339518083.107412 [0 127.0.0.1:60866] "set" "x" "6""#,
            ),
            (
                "set",
                &[b"SET", b"k", b"a\"b\\c\n\r\t\x07\x08\x00\xff \x7f~"],
                r#"+1339518083.107412 [0 127.0.0.1:60866] "SET" "k" "a\"b\\c\n\r\t\a\b\x00\xff \x7f~""#,
            ),
            (
                "auth",
                &[b"AUTH", b"secret"],
                r#"+1339518083.107412 [0 127.0.0.1:60866] "AUTH" "(redacted)""#,
            ),
            (
                "auth",
                &[b"auth", b"user", b"secret"],
                r#"+1339518083.107412 [0 127.0.0.1:60866] "auth" "(redacted)" "(redacted)""#,
            ),
            (
                "hello",
                &[b"HELLO", b"3", b"AUTH", b"u", b"p", b"SETNAME", b"n"],
                r#"+1339518083.107412 [0 127.0.0.1:60866] "HELLO" "3" "AUTH" "(redacted)" "(redacted)" "SETNAME" "n""#,
            ),
        ] {
            assert_eq!(show(name, args), format!("{want}\r\n"));
        }
    }

    #[test]
    fn a_monitor_that_falls_behind_loses_its_queue_and_the_others_do_not() {
        let m = Monitors::default();
        let slow = m.attach(1, 100);
        let fast = m.attach(2, 100);
        let args = vec![b"PING".to_vec()];
        let mut got = Vec::new();
        for _ in 0..10 {
            m.feed("ping", "a", &args);
            fast.take(&mut got).unwrap();
        }
        assert_eq!(got.iter().filter(|&&b| b == b'\n').count(), 10);
        assert_eq!(slow.take(&mut Vec::new()), Err(FellBehind));
        assert_eq!(slow.state.lock().lines.capacity(), 0, "its memory is freed");
        m.detach(1);
        m.detach(2);
        assert_eq!(m.attached.load(Ordering::Relaxed), 0);
        // Nothing is shown of the commands Tile38 leaves out.
        let quiet = m.attach(3, 100);
        m.feed("config", "a", &[b"CONFIG".to_vec()]);
        let mut none = Vec::new();
        quiet.take(&mut none).unwrap();
        assert!(none.is_empty());
    }
}
