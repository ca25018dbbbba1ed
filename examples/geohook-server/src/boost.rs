//! Priority inheritance for the database lock, done by hand: a heavy pool
//! thread that runs at `SCHED_IDLE` takes the normal policy for as long as
//! it holds the lock, and drops back when it lets it go.
//!
//! Without this, a heavy search preempted while it holds the read lock on a
//! machine that never idles (other containers, a build) is not scheduled
//! again for seconds, and the writer waiting for the lock waits with it, as
//! does every reader queued behind that writer: the whole server stalls
//! behind its lowest-priority thread (seen in CI at load 16: a SET
//! unanswered for more than 5 s while two clients searched polygons). With
//! the boost the lock is only ever held at normal priority, and the search
//! yields the CPU at its lowered priority between slices of its walk, where
//! it holds nothing.
//!
//! A thread may only lower its policy to one it can raise back: the pool
//! asks [`can_raise`] before it goes to `SCHED_IDLE`.

use std::cell::Cell;

thread_local! {
    /// The policy this thread lowered itself to and raises from while it
    /// holds the lock; `None` on every thread that never lowered itself.
    static LOWERED: Cell<Option<libc::c_int>> = const { Cell::new(None) };
}

/// Records that the calling thread now runs at `policy`, which [`Boost`]
/// lifts while it holds the lock.
pub(crate) fn lowered_to(policy: libc::c_int) {
    LOWERED.with(|l| l.set(Some(policy)));
}

/// Whether this process may raise a thread back to the normal policy after
/// lowering it: root (or `CAP_SYS_NICE`, which a root container keeps), or
/// an `RLIMIT_NICE` that allows nice 0.
pub(crate) fn can_raise() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls; `lim` is a valid out-pointer.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        if unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut lim) } != 0 {
            return false;
        }
        // RLIMIT_NICE allows nice values down to 20 - rlim_cur.
        lim.rlim_cur >= 20
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The normal policy for the calling thread while this lives (taken before
/// the lock, dropped after it); nothing on a thread that never lowered
/// itself.
#[derive(Debug)]
#[must_use = "the boost ends when this is dropped"]
pub(crate) struct Boost {
    restore: Option<libc::c_int>,
}

impl Boost {
    /// Raises the calling thread to the normal policy if it had lowered
    /// itself. A refusal (which [`can_raise`] rules out) leaves it where it
    /// is: the boost is then a no-op, never an error.
    pub(crate) fn hold() -> Boost {
        let restore = LOWERED
            .with(Cell::get)
            .filter(|_| set_policy(libc::SCHED_OTHER));
        Boost { restore }
    }
}

impl Drop for Boost {
    fn drop(&mut self) {
        if let Some(policy) = self.restore {
            set_policy(policy);
        }
    }
}

/// Sets the calling thread's policy; true when it took.
fn set_policy(policy: libc::c_int) -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread, and `param` is a valid
        // `sched_param` that outlives the call.
        unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = policy;
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn policy() -> libc::c_int {
        // SAFETY: pid 0 names the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_lowered_thread_holds_the_lock_at_the_normal_policy() {
        std::thread::spawn(|| {
            // A thread that never lowered itself is left alone.
            drop(Boost::hold());
            assert_eq!(policy(), libc::SCHED_OTHER);
            if !can_raise() {
                eprintln!("skipped: this process cannot raise a thread's policy back");
                return;
            }
            assert!(set_policy(libc::SCHED_IDLE));
            lowered_to(libc::SCHED_IDLE);
            {
                let _b = Boost::hold();
                assert_eq!(policy(), libc::SCHED_OTHER, "raised while held");
            }
            assert_eq!(policy(), libc::SCHED_IDLE, "lowered again after");
        })
        .join()
        .unwrap();
    }
}
