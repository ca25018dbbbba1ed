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
//! At most [`holders`] lowered threads are raised at once; the others wait
//! for a turn at their low priority, before they take the lock (a sliced
//! walk keeps its turn from its first slice to its last: [`Turn`]). A heavy
//! search spends nearly all of its CPU time inside a slice, so without this
//! bound every heavy thread would run at the normal policy nearly all the
//! time, sharing the cores evenly with the runtime's workers, and a writer
//! would wait for as many slices as there are heavy threads, each of them
//! possibly preempted by another. Under the heavy-isolation bench's flood
//! (64 clients, four heavy threads on two cores), timing the lock by hand
//! showed slices holding the read lock for milliseconds while preempted, a
//! SET waiting as long for the write lock, and the heavy threads' time in
//! slices exceeding their CPU time. With the bound, heavy searches take at
//! most `holders` cores at the normal policy, and a writer waits for at
//! most that many slices (each of which ends early for it:
//! `cmd::sliced::writer_waits`).
//!
//! A thread may only lower its policy to one it can raise back: the pool
//! asks [`can_raise`] before it goes to `SCHED_IDLE`.

use std::cell::Cell;

use parking_lot::{Condvar, Mutex};

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

/// How many lowered threads may be raised at once: half the cores this
/// process may use, at least one, so that heavy searches leave the other
/// half to the runtime's workers.
pub(crate) fn holders() -> usize {
    (std::thread::available_parallelism().map_or(1, usize::from) / 2).max(1)
}

/// Turns to be raised: a counting semaphore of [`holders`] places.
#[derive(Debug)]
struct Turns {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Turns {
    const fn new(places: usize) -> Turns {
        Turns {
            free: Mutex::new(places),
            freed: Condvar::new(),
        }
    }

    /// Waits for a place and takes it.
    fn take(&self) {
        let mut free = self.free.lock();
        while *free == 0 {
            self.freed.wait(&mut free);
        }
        *free -= 1;
    }

    /// Gives a place back and wakes one waiter.
    fn give(&self) {
        *self.free.lock() += 1;
        self.freed.notify_one();
    }
}

/// The process's turns, sized on first use.
fn turns() -> &'static Turns {
    static TURNS: std::sync::OnceLock<Turns> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| Turns::new(holders()))
}

/// The normal policy for the calling thread while this lives (taken before
/// the lock, dropped after it); nothing on a thread that never lowered
/// itself. A lowered thread first waits for one of the [`holders`] turns.
#[derive(Debug)]
#[must_use = "the boost ends when this is dropped"]
pub(crate) struct Boost {
    restore: Option<libc::c_int>,
    /// Dropped after [`Boost::drop`] has lowered the thread again, so that
    /// no more than `holders` threads are ever raised together.
    _turn: Turn,
}

impl Boost {
    /// Raises the calling thread to the normal policy if it had lowered
    /// itself, once it has a turn (waiting for it at its low priority,
    /// unless it holds a [`Turn`] already). A
    /// refusal (which [`can_raise`] rules out) leaves it where it is: the
    /// boost is then a no-op, never an error.
    pub(crate) fn hold() -> Boost {
        Boost::hold_in(turns())
    }

    fn hold_in(turns: &'static Turns) -> Boost {
        let turn = Turn::hold_in(turns);
        let restore = LOWERED
            .with(Cell::get)
            .filter(|_| set_policy(libc::SCHED_OTHER));
        Boost {
            restore,
            _turn: turn,
        }
    }
}

thread_local! {
    /// True while this thread holds a [`Turn`]: its boosts take no other.
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// One of the [`holders`] turns, held by a lowered thread for a whole
/// sliced walk, its slices and the gaps between them (where it runs at its
/// own low priority, holding no lock): each slice's [`Boost`] then takes no
/// turn of its own. Handing the turn over at every slice instead woke a
/// waiting heavy thread each time, only for it to find the turn taken
/// again, and SET's p99 under the heavy-isolation flood was higher (four
/// runs against the per-slice build: 0.14–0.26 ms against 0.34–0.37 ms).
/// Nothing on a thread that never lowered itself, or already holds one.
#[derive(Debug)]
#[must_use = "the turn is given back when this is dropped"]
pub(crate) struct Turn(Option<&'static Turns>);

impl Turn {
    /// Waits for a turn (at the thread's low priority) and takes it.
    pub(crate) fn hold() -> Turn {
        Turn::hold_in(turns())
    }

    fn hold_in(turns: &'static Turns) -> Turn {
        if LOWERED.with(Cell::get).is_none() || HELD.with(Cell::get) {
            return Turn(None);
        }
        turns.take();
        HELD.with(|h| h.set(true));
        Turn(Some(turns))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(turns) = self.0 {
            HELD.with(|h| h.set(false));
            turns.give();
        }
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

    #[test]
    fn a_lowered_thread_is_raised_only_with_a_turn() {
        static ONE: Turns = Turns::new(1);
        std::thread::spawn(|| {
            // A thread that never lowered itself takes no turn.
            let b = Boost::hold_in(&ONE);
            assert_eq!(*ONE.free.lock(), 1);
            drop(b);
            lowered_to(libc::SCHED_BATCH);
            let b = Boost::hold_in(&ONE);
            assert_eq!(*ONE.free.lock(), 0, "the only turn is taken");
            drop(b);
            assert_eq!(*ONE.free.lock(), 1, "and given back");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_boost_inside_a_held_turn_takes_no_other() {
        static TWO: Turns = Turns::new(2);
        std::thread::spawn(|| {
            lowered_to(libc::SCHED_BATCH);
            let turn = Turn::hold_in(&TWO);
            assert_eq!(*TWO.free.lock(), 1);
            for _ in 0..3 {
                let b = Boost::hold_in(&TWO);
                assert_eq!(*TWO.free.lock(), 1, "the walk's turn serves its slices");
                drop(b);
                assert_eq!(*TWO.free.lock(), 1, "and is not given back by them");
            }
            // A second turn on the same thread is none.
            drop(Turn::hold_in(&TWO));
            assert_eq!(*TWO.free.lock(), 1);
            drop(turn);
            assert_eq!(*TWO.free.lock(), 2);
            // Without a turn held, a boost takes one again.
            let b = Boost::hold_in(&TWO);
            assert_eq!(*TWO.free.lock(), 1);
            drop(b);
            assert_eq!(*TWO.free.lock(), 2);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn no_more_threads_hold_a_turn_than_there_are_turns() {
        static TWO: Turns = Turns::new(2);
        let inside = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        TWO.take();
                        let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        TWO.give();
                    }
                });
            }
        });
        assert!(most.into_inner() <= 2);
        assert_eq!(*TWO.free.lock(), 2);
    }
}
