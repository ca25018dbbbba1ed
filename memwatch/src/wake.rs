//! How the spawned thread waits between ticks: until a timeout, until the
//! token is cancelled (its waker writes an eventfd), or until a watched file
//! is modified (inotify), whichever comes first. The kernel modifies a
//! cgroup's `memory.events` when the cgroup reaches `memory.high` or
//! `memory.max` or runs the OOM killer, which is exactly when a sample
//! should not wait for the next tick.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

/// What ended a [`Waiter::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The timeout passed.
    Timeout,
    /// The waker was called (the token's cancellation).
    Waker,
    /// A watched file was modified.
    Modified,
}

/// The eventfd and the inotify descriptor the thread polls.
#[derive(Debug)]
pub(crate) struct Waiter {
    wake: Arc<OwnedFd>,
    inotify: Option<OwnedFd>,
    /// How many files are watched.
    watched: usize,
}

struct EventFdWaker(Arc<OwnedFd>);

impl Wake for EventFdWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: the descriptor is open for as long as this waker lives,
        // and the buffer is eight valid bytes, as eventfd requires. A full
        // counter (EAGAIN) already means "woken".
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Waiter {
    /// Opens the eventfd and watches `files` for modification. Files that
    /// cannot be watched are returned with the reason, and the others are
    /// still watched; without any, the waiter only times out and wakes.
    ///
    /// # Errors
    ///
    /// The eventfd cannot be created.
    pub(crate) fn new(files: &[PathBuf]) -> io::Result<(Waiter, Vec<(PathBuf, io::Error)>)> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let efd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `efd` is a new descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let mut failed = Vec::new();
        let mut inotify = None;
        let mut watched = 0;
        if !files.is_empty() {
            // SAFETY: as above.
            match cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) }) {
                Ok(fd) => {
                    // SAFETY: a new descriptor that nothing else owns.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    for f in files {
                        match add_watch(&fd, f) {
                            Ok(()) => watched += 1,
                            Err(e) => failed.push((f.clone(), e)),
                        }
                    }
                    inotify = Some(fd);
                }
                Err(e) => {
                    failed.extend(files.iter().map(|f| (f.clone(), io::Error::from(e.kind()))))
                }
            }
        }
        Ok((
            Waiter {
                wake,
                inotify,
                watched,
            },
            failed,
        ))
    }

    /// How many files are watched.
    pub(crate) fn watched(&self) -> usize {
        self.watched
    }

    /// A waker that ends the current or the next [`Waiter::wait`].
    pub(crate) fn waker(&self) -> Waker {
        Waker::from(Arc::new(EventFdWaker(Arc::clone(&self.wake))))
    }

    /// Waits up to `timeout` (rounded up to a millisecond).
    pub(crate) fn wait(&self, timeout: Duration) -> Woken {
        let mut fds = [
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.inotify.as_ref().map_or(-1, AsRawFd::as_raw_fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid array of two pollfd; a negative fd is
        // ignored by poll.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n <= 0 {
            // A timeout, or EINTR: the caller re-checks its clock either way.
            return Woken::Timeout;
        }
        let mut buf = [0u8; 4096];
        let mut woken = Woken::Timeout;
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: reads into a buffer of the stated length.
            unsafe { libc::read(fds[0].fd, buf.as_mut_ptr().cast(), 8) };
            woken = Woken::Waker;
        }
        if fds[1].revents & libc::POLLIN != 0 {
            // Drain every queued event; one check answers them all.
            // SAFETY: reads into a buffer of the stated length.
            while unsafe { libc::read(fds[1].fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
            woken = Woken::Modified;
        }
        woken
    }
}

fn add_watch(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a NUL-terminated path and `fd` an inotify descriptor.
    cvt(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn times_out_wakes_and_sees_modifications() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "high 0\n").unwrap();
        let missing = dir.path().join("nope");
        let (w, failed) = Waiter::new(&[events.clone(), missing.clone()]).unwrap();
        assert_eq!(w.watched(), 1);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, missing);

        let t = Instant::now();
        assert_eq!(w.wait(Duration::from_millis(20)), Woken::Timeout);
        assert!(t.elapsed() >= Duration::from_millis(20));

        w.waker().wake_by_ref();
        assert_eq!(w.wait(Duration::from_secs(10)), Woken::Waker);

        std::fs::write(&events, "high 1\n").unwrap();
        std::fs::write(&events, "high 2\n").unwrap();
        assert_eq!(w.wait(Duration::from_secs(10)), Woken::Modified);
        // Both writes were drained by the one wake-up.
        assert_eq!(w.wait(Duration::from_millis(1)), Woken::Timeout);
    }
}
