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
//! request, and [`Unapplied::settled`] waits until the follower task has
//! applied what reached it before the call.

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
    /// The follower task waits for the link's socket (and nothing else), so
    /// bytes there wake it.
    listening: AtomicBool,
    /// Reads of the link the follower task has begun to apply.
    begun: AtomicU64,
    /// Reads of the link the follower task has applied: `begun`, or one
    /// less while the follower task applies what it read.
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
                listening: AtomicBool::new(false),
                begun: AtomicU64::new(0),
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
        self.applying() || self.socket_has_bytes()
    }

    /// Waits until what reached the follower before this call is applied:
    /// the read the follower task is applying, and, when bytes wait in the
    /// link's socket, the next read, which takes them. So it waits for at
    /// most two reads, and for none when nothing is unapplied; a stream
    /// that keeps arriving meanwhile is not waited for. It never waits for
    /// a task that is doing anything else than applying or listening on
    /// the link (writing its acknowledgement to a leader that does not
    /// read, say).
    ///
    /// Best effort like [`Unapplied::any`]: bytes the follower task has just
    /// taken from the socket but not yet marked as being applied are not
    /// waited for, and a read larger than the follower's buffer takes more
    /// than one read to apply.
    ///
    /// Unlike a yield, this does not put the task back in the runtime's
    /// queue (which in a multi-threaded runtime may wake a second worker to
    /// take it): it sleeps until the follower task has applied a read or
    /// stops listening.
    pub async fn settled(&self) {
        let begun = self.inner.begun.load(Ordering::Acquire);
        // Bytes in the socket now go to the next read. A read that began
        // after `begun` was loaded may have taken them already, and then
        // that read is the one to wait for as well.
        let target = if self.socket_has_bytes() || self.inner.begun.load(Ordering::Acquire) != begun
        {
            begun.saturating_add(1)
        } else {
            begun
        };
        loop {
            let notified = self.inner.settled.notified();
            tokio::pin!(notified);
            // Registered before the checks, so that an apply finishing in
            // between still wakes this.
            notified.as_mut().enable();
            // Reads are applied in the order they began: `applied`
            // reaching `target` means every read up to it is applied.
            if self.inner.applied.load(Ordering::Acquire) >= target {
                return;
            }
            let waits = self.applying()
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

    /// The follower read bytes from the link and has not yet applied the
    /// commands they complete.
    fn applying(&self) -> bool {
        let applied = self.inner.applied.load(Ordering::Acquire);
        self.inner.begun.load(Ordering::Acquire) != applied
    }

    /// Only the follower task calls this (and the [`Streaming`] guard it
    /// holds), so the two counters have one writer.
    pub(crate) fn set_applying(&self, on: bool) {
        match (self.applying(), on) {
            (false, true) => {
                self.inner.begun.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.inner.applied.fetch_add(1, Ordering::AcqRel);
                self.inner.settled.notify_waiters();
            }
            _ => {}
        }
    }

    /// The follower task waits on the link's socket while this is true
    /// (or is about to, with nothing awaited in between). Turned off while
    /// no read is being applied, it wakes whoever waits in
    /// [`Unapplied::settled`] to look again (the task may now be busy with
    /// something else); turned off because a read is being applied, the
    /// end of that apply wakes them.
    pub(crate) fn set_listening(&self, on: bool) {
        self.inner.listening.store(on, Ordering::Release);
        if !on && !self.applying() {
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
    async fn settled_waits_only_for_what_arrived_before_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        let fd = rx.as_raw_fd();
        // Stream bytes reach the link's socket.
        let mut send = |u: &Unapplied| {
            tx.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
            while !u.socket_has_bytes() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        // The follower task's steps on a read, in its order: it takes the
        // bytes and applies them, then ends the apply.
        let mut take = |u: &Unapplied| {
            std::io::Read::read_exact(&mut rx, &mut [0u8; 14]).unwrap();
            u.set_applying(true);
            u.set_listening(false);
        };
        let end_apply = |u: &Unapplied| {
            u.set_listening(true);
            u.set_applying(false);
        };
        // A request's wait; a spawned waiter looks when this test's task
        // yields.
        let waiter = |u: &Unapplied| {
            let u = u.clone();
            tokio::spawn(async move { u.settled().await })
        };
        let u = Unapplied::default();
        // No link: at once.
        u.settled().await;
        let _guard = u.streaming(fd);
        // A link with nothing unread and nothing being applied: at once.
        u.set_listening(true);
        u.settled().await;

        send(&u);
        let a = waiter(&u);
        settle_tasks().await;
        assert!(!a.is_finished(), "bytes wait and the task listens");
        take(&u);
        settle_tasks().await;
        assert!(!a.is_finished(), "being applied");
        // A request arriving now, with the socket empty, waits for this
        // read only; one arriving after more bytes came waits for the
        // next read as well.
        let c = waiter(&u);
        settle_tasks().await;
        send(&u);
        let b = waiter(&u);
        settle_tasks().await;
        assert!(!c.is_finished() && !b.is_finished(), "being applied");
        end_apply(&u);
        settle_tasks().await;
        assert!(a.is_finished(), "its bytes were in the read applied");
        assert!(c.is_finished(), "the read it waited for is applied");
        assert!(!b.is_finished(), "bytes that came during the apply wait");
        take(&u);
        settle_tasks().await;
        assert!(!b.is_finished(), "its bytes are being applied");
        // More of the stream arrives meanwhile; it is not waited for.
        send(&u);
        end_apply(&u);
        settle_tasks().await;
        assert!(b.is_finished(), "the read with its bytes is applied");

        // The task busy elsewhere (writing its acknowledgement): the bytes
        // would not wake it, so nothing waits for them.
        u.set_listening(false);
        u.settled().await;
        // And a waiter is let go when the task stops listening.
        u.set_listening(true);
        let d = waiter(&u);
        settle_tasks().await;
        assert!(!d.is_finished(), "bytes wait and the task listens");
        u.set_listening(false);
        settle_tasks().await;
        assert!(d.is_finished(), "not listening any more");
    }
}
