//! Admission: whether a command may run now.
//!
//! - **Memory.** The command table says which commands add data
//!   ([`Spec::adds_data`]); this file decides whether memory allows them,
//!   from memwatch's soft level and Tile38's `maxmemory` property, and keeps
//!   the `maxmemory` state with its hysteresis. Reads, deletes, DROP,
//!   FLUSHDB, administration and replication are never refused here: they
//!   are how memory comes back.
//! - **Heavy commands.** The table says which commands can be heavy
//!   ([`Spec::cost`]); [`is_heavy`] decides for one run from its arguments
//!   and its collection's size, and [`HeavyPool`] bounds how many run at
//!   once, answering BUSY at once when full.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::cmd::keyword::Keyword;
use crate::cmd::spec::{Cost, Spec};

/// How far below `maxmemory` the allocated bytes must fall, as a fraction
/// of it, before writes that add data are accepted again. The same 5 % as
/// memwatch's default hysteresis, so that the two paths behave alike.
pub(crate) const MAXMEMORY_HYSTERESIS: f64 = 0.05;

/// Why a command that adds data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Pressure {
    /// memwatch's level is elevated (at or above its soft level) or it
    /// fired.
    Soft,
    /// jemalloc's allocated bytes are above `maxmemory`.
    MaxMemory,
}

impl Pressure {
    /// The metrics label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Pressure::Soft => "memwatch_soft",
            Pressure::MaxMemory => "maxmemory",
        }
    }
}

/// The `maxmemory` state, set by the memory task from jemalloc's
/// allocated bytes and read by every command that adds data (one atomic
/// load).
#[derive(Debug, Default)]
pub(crate) struct MaxMemory {
    over: AtomicBool,
}

impl MaxMemory {
    /// True while writes that add data are refused for `maxmemory`.
    pub(crate) fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Takes one reading of the allocated bytes against `maxmemory` (0 =
    /// off) and returns the new state: over once `allocated > maxmemory`,
    /// and over until it is at or below `maxmemory` less the hysteresis.
    pub(crate) fn observe(&self, allocated: u64, maxmemory: u64) -> bool {
        let over = if maxmemory == 0 {
            false
        } else if self.is_over() {
            let resume = maxmemory - (maxmemory as f64 * MAXMEMORY_HYSTERESIS) as u64;
            allocated > resume
        } else {
            allocated > maxmemory
        };
        self.over.store(over, Ordering::Relaxed);
        over
    }
}

/// The admission decision for one command: a command that adds data is
/// refused while either kind of pressure holds; every other command runs.
///
/// # Errors
///
/// The pressure that refused it (the soft level first).
pub(crate) fn admit(spec: &Spec, soft_level: bool, over_maxmemory: bool) -> Result<(), Pressure> {
    if !spec.adds_data {
        return Ok(());
    }
    if soft_level {
        return Err(Pressure::Soft);
    }
    if over_maxmemory {
        return Err(Pressure::MaxMemory);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::spec::{lookup, TABLE};

    #[test]
    fn only_commands_that_add_data_are_refused() {
        for s in TABLE {
            for (soft, over) in [(true, false), (false, true), (true, true)] {
                let r = admit(s, soft, over);
                assert_eq!(r.is_err(), s.adds_data, "{} {soft} {over}", s.name);
            }
            assert_eq!(admit(s, false, false), Ok(()), "{}", s.name);
        }
        let set = lookup("set").unwrap();
        assert_eq!(admit(set, true, true), Err(Pressure::Soft));
        assert_eq!(admit(set, false, true), Err(Pressure::MaxMemory));
    }

    #[test]
    fn maxmemory_holds_until_the_hysteresis_is_cleared() {
        let m = MaxMemory::default();
        let max = 1000;
        // (allocated, expected state) in order.
        let steps = [
            (900, false),
            (1000, false),
            (1001, true),
            (990, true),
            (951, true),
            (950, false),
            (999, false),
            (1200, true),
        ];
        for (allocated, want) in steps {
            assert_eq!(m.observe(allocated, max), want, "at {allocated}");
            assert_eq!(m.is_over(), want);
        }
        // 0 turns it off at once.
        assert!(!m.observe(u64::MAX, 0));
    }
}

/// A search over a collection with more live objects than this is heavy
/// unless its page is small.
pub(crate) const HEAVY_OBJECTS: usize = 10_000;
/// A page of at most this many results is small: Tile38's default LIMIT.
pub(crate) const SMALL_LIMIT: u64 = 100;
/// The retry hint in a BUSY reply, in milliseconds.
pub(crate) const BUSY_RETRY_MS: u64 = 50;

/// What a search's leading options say about its cost: the LIMIT given,
/// whether it only counts (which visits every match), and whether a MATCH
/// or WHERE filter may make a small page visit many objects.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    limit: Option<u64>,
    count: bool,
    filtered: bool,
}

/// Reads the options that come before a search's output and area (the
/// order `cmd/search.rs` parses them in); stops at the first other word.
fn shape(args: &[Vec<u8>]) -> Shape {
    let mut s = Shape::default();
    let mut i = 2;
    // Lowered on the stack, so that the check allocates nothing.
    while let Some(word) = args.get(i) {
        let takes = match Keyword::of(word).as_bytes() {
            b"limit" => {
                s.limit = args
                    .get(i + 1)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                1
            }
            b"cursor" => 1,
            b"hashes" => 1,
            b"match" => {
                s.filtered = true;
                1
            }
            // A filtered search is heavy on a large collection whatever
            // follows, so the scan can stop here (a WHERE expression takes
            // one argument, a range three, WHEREIN a counted list).
            b"where" | b"wherein" => {
                s.filtered = true;
                break;
            }
            b"buffer" => 1,
            b"count" => {
                s.count = true;
                0
            }
            b"asc" | b"desc" | b"nofields" | b"distance" | b"ids" | b"objects" | b"points" => 0,
            _ => break,
        };
        i += 1 + takes;
    }
    s
}

/// Whether this run of a command is heavy, from its row's [`Cost`] and,
/// for a search, its arguments and the live size of its collection
/// (`collection_len` is asked only for a search): a search is heavy when
/// the collection holds more than [`HEAVY_OBJECTS`] objects and the search
/// counts, filters, or asks for a page above [`SMALL_LIMIT`].
pub(crate) fn is_heavy(
    spec: &Spec,
    args: &[Vec<u8>],
    collection_len: impl FnOnce(&str) -> usize,
) -> bool {
    match spec.cost {
        Cost::Cheap => false,
        Cost::Search => {
            let Some(key) = args.get(1) else {
                return false;
            };
            // The shape first: it reads only the arguments, where the
            // collection's size takes the database's lock, which a search
            // with a small LIMIT (most of them) then need not take twice.
            let s = shape(args);
            if !(s.count || s.filtered || s.limit.unwrap_or(SMALL_LIMIT) > SMALL_LIMIT) {
                return false;
            }
            collection_len(&String::from_utf8_lossy(key)) > HEAVY_OBJECTS
        }
    }
}

/// The scheduling priority of the heavy pool's threads
/// (`--heavy-priority`).
///
/// At `idle` a search takes only CPU time nothing else wants, which is
/// what keeps cheap commands fast on a machine with idle time; on a machine
/// that never idles (load far above the cores) such a thread barely runs,
/// and a slice of a search that holds the database's read lock when it is
/// preempted keeps a waiting writer (and every reader queued behind that
/// writer) waiting until it runs again. `batch` and `normal` trade some
/// cheap-command latency for searches that finish under such load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum HeavyPriority {
    /// `SCHED_IDLE`, raised to the normal policy while the database lock is
    /// held (`SCHED_BATCH` where it could not be raised back).
    #[default]
    Idle,
    /// `SCHED_BATCH`: a normal share of the CPU, but never preempting
    /// another thread when it wakes.
    Batch,
    /// The process's own priority.
    Normal,
}

/// A heavy command's work, run on one of the pool's threads.
pub(crate) type HeavyJob = Box<dyn FnOnce() + Send + 'static>;

/// The bounded pool of heavy commands: at most `size` run at once; one more
/// is refused at once with BUSY rather than queued, so that neither it nor
/// any cheap command waits. Size 0 turns the pool off (heavy commands run
/// like any other, never refused).
///
/// The commands that get a place run on `size` threads of the pool's own,
/// started at the first heavy command, each of which sets its own
/// scheduling priority once as it starts ([`HeavyPriority`]; by default
/// `SCHED_IDLE` on Linux, boosted while it holds the lock): a heavy search then takes only CPU
/// time that nothing else wants, and the runtime's workers, which parse,
/// answer cheap commands and write replies, are never among the threads it
/// competes with. There are exactly as many threads as places, so a job
/// never waits for a thread.
#[derive(Debug)]
pub(crate) struct HeavyPool {
    size: usize,
    priority: HeavyPriority,
    in_use: Arc<AtomicUsize>,
    /// The queue the threads take jobs from, once they are started; `None`
    /// inside when they could not be started (jobs then run where asked).
    threads: OnceLock<Option<crossbeam_channel::Sender<HeavyJob>>>,
}

/// A place in the pool, given back when dropped. It owns its count, so a
/// heavy job carries it to its thread and frees it there when it ends, even
/// when the connection that asked has gone away meanwhile.
#[derive(Debug)]
pub(crate) struct HeavyPermit(Arc<AtomicUsize>);

impl Drop for HeavyPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The pool was full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("heavy command pool full ({size} running), retry in {BUSY_RETRY_MS} ms")]
pub(crate) struct Busy {
    size: usize,
}

impl HeavyPool {
    /// A pool of `size` places (0 = off). No thread starts until the first
    /// heavy command.
    pub(crate) fn new(size: usize) -> HeavyPool {
        HeavyPool {
            size,
            priority: HeavyPriority::default(),
            in_use: Arc::new(AtomicUsize::new(0)),
            threads: OnceLock::new(),
        }
    }

    /// The same pool, its threads at `priority`.
    pub(crate) fn with_priority(self, priority: HeavyPriority) -> HeavyPool {
        HeavyPool { priority, ..self }
    }

    /// The default size: twice the cores this process may use.
    pub(crate) fn default_size() -> usize {
        2 * std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// The configured size (0 = off).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Heavy commands running now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Takes a place, never waiting: `Ok(None)` when the pool is off.
    ///
    /// # Errors
    ///
    /// [`Busy`] when every place is taken.
    pub(crate) fn try_acquire(&self) -> Result<Option<HeavyPermit>, Busy> {
        if self.size == 0 {
            return Ok(None);
        }
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.size).then_some(n + 1)
            })
            .map(|_| Some(HeavyPermit(Arc::clone(&self.in_use))))
            .map_err(|_| Busy { size: self.size })
    }

    /// Runs `job` on one of the pool's low-priority threads. The caller
    /// holds a place ([`HeavyPool::try_acquire`]) and moves it into the
    /// job, so a thread is always free for it.
    ///
    /// # Errors
    ///
    /// The job is handed back when the pool is off or its threads could not
    /// be started; the caller then runs it itself.
    pub(crate) fn spawn(&self, job: HeavyJob) -> Result<(), HeavyJob> {
        if self.size == 0 {
            return Err(job);
        }
        let Some(queue) = self
            .threads
            .get_or_init(|| start_threads(self.size, self.priority))
        else {
            return Err(job);
        };
        queue.send(job).map_err(|e| e.into_inner())
    }
}

/// Starts the pool's threads; `None` (logged) when not even one starts.
/// The threads live as long as the process: the queue's sender is never
/// dropped while the pool is in use, and each thread waits on it idle.
fn start_threads(
    size: usize,
    priority: HeavyPriority,
) -> Option<crossbeam_channel::Sender<HeavyJob>> {
    let (tx, rx) = crossbeam_channel::unbounded::<HeavyJob>();
    let mut started = 0;
    for n in 0..size {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("heavy-{n}"))
            .spawn(move || {
                if let Err(e) = set_own_priority(priority) {
                    tracing::warn!(error = %e, ?priority, "heavy pool thread keeps normal priority");
                }
                for job in rx {
                    // A panicking job loses its own reply (its sender is
                    // dropped, and the client gets an error), not the
                    // thread: the pool keeps its size.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a heavy command panicked");
                    }
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::warn!(error = %e, "cannot start a heavy pool thread"),
        }
    }
    (started > 0).then_some(tx)
}

/// Sets the calling thread's scheduling priority. `idle` lowers it as far
/// as it goes: `SCHED_IDLE` (the thread runs only when a CPU has nothing
/// else to run, and any other thread that wakes preempts it at once), when
/// the process can raise it back while it holds the lock, else
/// `SCHED_BATCH`; `batch` sets `SCHED_BATCH`; `normal` changes nothing.
///
/// # Errors
///
/// The calls failed (the thread keeps its priority).
fn set_own_priority(priority: HeavyPriority) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // A thread that holds the database lock must be able to get back to
        // the normal policy while it does (`crate::boost`); a process that
        // could not raise it back takes SCHED_BATCH instead of SCHED_IDLE.
        let policy = match priority {
            HeavyPriority::Normal => return Ok(()),
            HeavyPriority::Batch => libc::SCHED_BATCH,
            HeavyPriority::Idle if crate::boost::can_raise() => libc::SCHED_IDLE,
            HeavyPriority::Idle => {
                tracing::info!(
                    "SCHED_IDLE needs a way back to the normal policy while the \
                     database lock is held (root, CAP_SYS_NICE or RLIMIT_NICE 20); \
                     heavy pool threads use SCHED_BATCH"
                );
                libc::SCHED_BATCH
            }
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread, and `param` is a valid
        // `sched_param` that outlives the call.
        if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
            if policy == libc::SCHED_IDLE {
                crate::boost::lowered_to(policy);
            }
            return Ok(());
        }
        Err(std::io::Error::last_os_error())
    }
    #[cfg(not(target_os = "linux"))]
    {
        if priority == HeavyPriority::Normal {
            return Ok(());
        }
        Err(std::io::Error::other(
            "lowering a thread's priority is only done on Linux",
        ))
    }
}

#[cfg(test)]
mod heavy_tests {
    use super::*;
    use crate::cmd::spec::lookup;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn searches_of_large_collections_without_a_small_page_are_heavy() {
        let big = HEAVY_OBJECTS + 1;
        // (command, collection size, heavy)
        let cases = [
            ("SCAN k", big, false),
            ("SCAN k", HEAVY_OBJECTS, false),
            ("SCAN k COUNT", big, true),
            ("SCAN k COUNT", 10, false),
            ("SCAN k LIMIT 100 IDS", big, false),
            ("SCAN k LIMIT 101 IDS", big, true),
            ("SCAN k CURSOR 5 LIMIT 100000", big, true),
            ("SCAN k MATCH a* LIMIT 10", big, true),
            ("WITHIN k WHERE speed 0 10 IDS BOUNDS 0 0 1 1", big, true),
            ("NEARBY k POINT 33 -115", big, false),
            ("NEARBY k LIMIT 5000 DISTANCE POINT 33 -115", big, true),
            ("INTERSECTS k LIMIT 1000000 BOUNDS 0 0 1 1", big, true),
            // LIMIT as an area's word is not an option.
            ("WITHIN k BOUNDS 0 0 1 1", big, false),
            ("GET k id", big, false),
            ("PING", big, false),
        ];
        for (line, len, want) in cases {
            let a = args(line);
            let spec = lookup(&line.split(' ').next().unwrap().to_ascii_lowercase()).unwrap();
            assert_eq!(is_heavy(spec, &a, |_| len), want, "{line} over {len}");
        }
    }

    #[test]
    fn the_pool_refuses_at_once_when_full_and_gives_places_back() {
        let pool = HeavyPool::new(2);
        let a = pool.try_acquire().unwrap().unwrap();
        let b = pool.try_acquire().unwrap().unwrap();
        assert_eq!(pool.in_use(), 2);
        let busy = pool.try_acquire().unwrap_err();
        assert_eq!(
            busy.to_string(),
            format!("heavy command pool full (2 running), retry in {BUSY_RETRY_MS} ms")
        );
        drop(a);
        let c = pool.try_acquire().unwrap().unwrap();
        drop((b, c));
        assert_eq!(pool.in_use(), 0);
        let off = HeavyPool::new(0);
        for _ in 0..10 {
            assert!(off.try_acquire().unwrap().is_none());
        }
        assert!(off.spawn(Box::new(|| {})).is_err(), "no threads when off");
    }

    #[test]
    fn jobs_run_on_low_priority_threads_that_free_their_place() {
        let pool = HeavyPool::new(2);
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let permit = pool.try_acquire().unwrap().unwrap();
            let tx = tx.clone();
            let job: HeavyJob = Box::new(move || {
                drop(permit);
                let name = std::thread::current().name().map(str::to_owned);
                // SAFETY: plain queries of the calling thread.
                let (policy, nice) = unsafe {
                    (
                        libc::sched_getscheduler(0),
                        libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t),
                    )
                };
                tx.send((name, policy, nice)).unwrap();
            });
            assert!(pool.spawn(job).is_ok());
        }
        for _ in 0..2 {
            let (name, policy, nice) = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("the job ran");
            assert!(name.unwrap().starts_with("heavy-"));
            assert!(
                policy == libc::SCHED_IDLE || nice == 19,
                "policy {policy}, nice {nice}"
            );
        }
        assert_eq!(pool.in_use(), 0, "the jobs gave their places back");
        // A panicking job does not take its thread with it.
        assert!(pool.spawn(Box::new(|| panic!("a job's bug"))).is_ok());
        // Two jobs that each wait for the other finish only on two threads.
        let both = Arc::new(std::sync::Barrier::new(2));
        for _ in 0..2 {
            let (tx, both) = (tx.clone(), Arc::clone(&both));
            let job: HeavyJob = Box::new(move || {
                both.wait();
                tx.send((None, 0, 0)).unwrap();
            });
            assert!(pool.spawn(job).is_ok());
        }
        for _ in 0..2 {
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("both threads still serve");
        }
    }

    #[test]
    fn the_priority_flag_sets_the_threads_policy() {
        for (priority, want) in [
            (HeavyPriority::Batch, libc::SCHED_BATCH),
            (HeavyPriority::Normal, libc::SCHED_OTHER),
        ] {
            let pool = HeavyPool::new(1).with_priority(priority);
            let (tx, rx) = std::sync::mpsc::channel();
            let permit = pool.try_acquire().unwrap().unwrap();
            let job: HeavyJob = Box::new(move || {
                drop(permit);
                // SAFETY: a plain query of the calling thread.
                tx.send(unsafe { libc::sched_getscheduler(0) }).unwrap();
            });
            assert!(pool.spawn(job).is_ok());
            let policy = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("the job ran");
            assert_eq!(policy, want, "{priority:?}");
        }
    }
}
