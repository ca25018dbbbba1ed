//! Whether a follower has stream bytes it has not applied yet, for a server
//! that wants to answer a read only after what already reached it.
//!
//! A client that writes to the leader and then reads from the follower sends
//! its read after the leader's acknowledgement, and the leader hands the
//! write to its followers' sockets before it acknowledges. When the read
//! reaches the follower, the write is then either applied, or being applied
//! by the follower task, or still in the link's socket. A server that handles
//! events in arrival order (Redis, single-threaded) applies it first; a
//! runtime with several workers may run the read first. [`Unapplied::any`]
//! tells the two last cases apart from the first, so that a server pays for
//! waiting only when there is something to wait for, instead of on every
//! request, and [`Unapplied::settled`] waits for the follower task to apply
//! what it has.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Shared between a [`Follower`](crate::Follower) and the server's
/// connections; from [`Follower::unapplied`](crate::Follower::unapplied).
/// Clones share one state.
#[derive(Debug, Clone)]
pub struct Unapplied {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The streaming link's socket, or -1 while there is none.
    fd: AtomicI32,
    /// The follower read bytes from the link and has not yet applied the
    /// commands they complete.
    applying: AtomicBool,
    /// The follower task waits for the link's socket (and nothing else), so
    /// bytes there wake it.
    listening: AtomicBool,
    /// Reads of the link the follower task has applied.
    applied: AtomicU64,
    /// Woken when the follower task has applied what it read, stops
    /// listening, or the link ends.
    settled: Notify,
}

impl Default for Unapplied {
    fn default() -> Self {
        Unapplied {
            inner: Arc::new(Inner {
                fd: AtomicI32::new(-1),
                applying: AtomicBool::new(false),
                listening: AtomicBool::new(false),
                applied: AtomicU64::new(0),
                settled: Notify::new(),
            }),
        }
    }
}

impl Unapplied {
    /// True when the follower is applying bytes it read from the leader, or
    /// bytes wait in its link's socket. One atomic load, and one `ioctl`
    /// (`FIONREAD`) while a link streams.
    ///
    /// Best effort, in both directions: bytes that the follower task has
    /// just taken from the socket but not yet marked as being applied read
    /// as none for that instant, and a link that closes as this runs may
    /// leave its descriptor number to another file, whose unread bytes are
    /// then counted (at worst one needless wait).
    pub fn any(&self) -> bool {
        self.inner.applying.load(Ordering::Acquire) || self.socket_has_bytes()
    }

    /// Waits, at most `rounds` times, for the follower task to apply what
    /// it is applying, or what waits in the link's socket while the task
    /// listens on it; returns at once when neither holds. Each wait ends
    /// when the task has applied one read, so under a stream that never
    /// pauses a request still runs after `rounds` of them; and it never
    /// waits for a task that is doing anything else (writing its
    /// acknowledgement to a leader that does not read, say).
    ///
    /// Unlike a yield, this does not put the task back in the runtime's
    /// queue (which in a multi-threaded runtime may wake a second worker to
    /// take it): it sleeps until the follower task has applied a read or
    /// stops listening.
    pub async fn settled(&self, rounds: u64) {
        let start = self.inner.applied.load(Ordering::Acquire);
        loop {
            let notified = self.inner.settled.notified();
            tokio::pin!(notified);
            // Registered before the checks, so that an apply finishing in
            // between still wakes this.
            notified.as_mut().enable();
            if self
                .inner
                .applied
                .load(Ordering::Acquire)
                .wrapping_sub(start)
                >= rounds
            {
                return;
            }
            let waits = self.inner.applying.load(Ordering::Acquire)
                || (self.inner.listening.load(Ordering::Acquire) && self.socket_has_bytes());
            if !waits {
                return;
            }
            notified.await;
        }
    }

    fn socket_has_bytes(&self) -> bool {
        let fd = self.inner.fd.load(Ordering::Acquire);
        if fd < 0 {
            return false;
        }
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one `c_int` through the pointer, which is
        // valid for the call. The descriptor may have been closed meanwhile
        // (the call fails with EBADF) or reused (the count is another
        // file's); neither is unsafe, and neither changes the file.
        let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
        rc == 0 && n > 0
    }

    /// The link streams on `fd` until the returned guard drops (before the
    /// socket closes).
    pub(crate) fn streaming(&self, fd: RawFd) -> Streaming {
        self.inner.fd.store(fd, Ordering::Release);
        Streaming {
            unapplied: self.clone(),
        }
    }

    pub(crate) fn set_applying(&self, on: bool) {
        let was = self.inner.applying.swap(on, Ordering::AcqRel);
        if was && !on {
            self.inner.applied.fetch_add(1, Ordering::AcqRel);
            self.inner.settled.notify_waiters();
        }
    }

    /// The follower task waits on the link's socket while this is true.
    /// Turned off, it wakes whoever waits in [`Unapplied::settled`] to look
    /// again (the task may now be busy with something else).
    pub(crate) fn set_listening(&self, on: bool) {
        self.inner.listening.store(on, Ordering::Release);
        if !on {
            self.inner.settled.notify_waiters();
        }
    }
}

/// Clears the link's descriptor and the applying mark when dropped.
#[derive(Debug)]
pub(crate) struct Streaming {
    unapplied: Unapplied,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.unapplied.inner.fd.store(-1, Ordering::Release);
        self.unapplied.set_listening(false);
        self.unapplied.set_applying(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn counts_bytes_waiting_in_the_socket_and_a_batch_being_applied() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (rx, _) = listener.accept().unwrap();
        let u = Unapplied::default();
        assert!(!u.any(), "no link");
        tx.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        assert!(!u.any(), "bytes on a socket that is not the link's");
        let guard = u.streaming(rx.as_raw_fd());
        // Loopback delivers at once, but give the kernel a moment.
        let mut waited = 0;
        while !u.any() && waited < 1000 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            waited += 1;
        }
        assert!(u.any(), "14 bytes unread");
        let mut got = [0u8; 14];
        std::io::Read::read_exact(&mut &rx, &mut got).unwrap();
        assert!(!u.any(), "all read, nothing being applied");
        u.set_applying(true);
        assert!(u.clone().any(), "being applied, seen through a clone");
        u.set_applying(false);
        assert!(!u.any());
        u.set_applying(true);
        drop(guard);
        assert!(!u.any(), "the link ended");
        tx.write_all(b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!u.any(), "a socket no longer the link's");
    }

    /// Runs the spawned tasks until none can go on.
    async fn settle_tasks() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn settled_waits_only_for_a_follower_task_that_will_apply() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (rx, _) = listener.accept().unwrap();
        let u = Unapplied::default();
        // No link: at once.
        u.settled(2).await;
        let _guard = u.streaming(rx.as_raw_fd());
        // A link with nothing unread and nothing being applied: at once.
        u.set_listening(true);
        u.settled(2).await;

        tx.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        while !u.any() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Bytes wait while the task listens: it waits, one round per read
        // applied, at most two.
        let waiter = tokio::spawn({
            let u = u.clone();
            async move { u.settled(2).await }
        });
        settle_tasks().await;
        assert!(!waiter.is_finished(), "bytes wait and the task listens");
        // The follower task's order on a read: applying, then not listening.
        u.set_applying(true);
        u.set_listening(false);
        settle_tasks().await;
        assert!(!waiter.is_finished(), "being applied");
        u.set_applying(false);
        u.set_listening(true);
        settle_tasks().await;
        assert!(
            !waiter.is_finished(),
            "one read applied, and the bytes are still there (this test never reads them)"
        );
        u.set_applying(true);
        u.set_listening(false);
        settle_tasks().await;
        assert!(!waiter.is_finished(), "being applied again");
        u.set_applying(false);
        settle_tasks().await;
        assert!(waiter.is_finished(), "two rounds at most");

        // The task busy elsewhere (writing its acknowledgement): the bytes
        // would not wake it, so nothing waits for them.
        u.set_listening(false);
        u.settled(2).await;
        // And a waiter is let go when the task stops listening.
        u.set_listening(true);
        let waiter = tokio::spawn({
            let u = u.clone();
            async move { u.settled(1000).await }
        });
        settle_tasks().await;
        assert!(!waiter.is_finished());
        u.set_listening(false);
        settle_tasks().await;
        assert!(waiter.is_finished(), "not listening any more");
    }
}
