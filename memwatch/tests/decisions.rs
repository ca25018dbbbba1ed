//! The decision rule, driven deterministically with a fake source and
//! paused tokio time.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memwatch::{
    Config, Error, Level, Limits, MemorySource, Readings, Sample, Signal, Stopped, Threshold,
    Watcher,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A source whose figure the test sets. A purge replaces the figure with
/// `after_purge` when that is set, as a jemalloc purge drops dirty pages.
#[derive(Debug, Default)]
struct State {
    used: AtomicU64,
    after_purge: AtomicU64,
    purgeable: bool,
    failing: AtomicBool,
    samples: AtomicUsize,
    purges: AtomicUsize,
    /// The cheap upper bound reported by `upper_bound`, when `bounded`.
    bounded: AtomicBool,
    bound: AtomicU64,
}

#[derive(Debug, Clone)]
struct Fake(Arc<State>);

impl Fake {
    fn new(used: u64) -> Self {
        let f = Fake(Arc::new(State::default()));
        f.set(used);
        f
    }

    fn purgeable(used: u64, after_purge: u64) -> Self {
        let f = Fake(Arc::new(State {
            purgeable: true,
            ..Default::default()
        }));
        f.set(used);
        f.0.after_purge.store(after_purge, Ordering::SeqCst);
        f
    }

    /// A source with a cheap upper bound, as `SystemSource` has for the
    /// jemalloc signals.
    fn bounded(used: u64, bound: u64) -> Self {
        let f = Fake::new(used);
        f.0.bounded.store(true, Ordering::SeqCst);
        f.set_bound(bound);
        f
    }

    fn set_bound(&self, bound: u64) {
        self.0.bound.store(bound, Ordering::SeqCst);
    }

    fn set(&self, used: u64) {
        self.0.used.store(used, Ordering::SeqCst);
    }

    fn samples(&self) -> usize {
        self.0.samples.load(Ordering::SeqCst)
    }
}

impl MemorySource for Fake {
    fn signal(&self) -> Signal {
        if self.0.purgeable {
            Signal::JemallocResident
        } else {
            Signal::Rss
        }
    }

    fn sample(&mut self) -> memwatch::Result<Sample> {
        self.0.samples.fetch_add(1, Ordering::SeqCst);
        if self.0.failing.load(Ordering::SeqCst) {
            return Err(Error::Corrupt {
                path: "/fake".into(),
                reason: "injected".into(),
            });
        }
        let used = self.0.used.load(Ordering::SeqCst);
        Ok(Sample {
            used,
            readings: Readings {
                rss: Some(used),
                ..Default::default()
            },
        })
    }

    fn upper_bound(&mut self) -> memwatch::Result<Option<u64>> {
        Ok(self
            .0
            .bounded
            .load(Ordering::SeqCst)
            .then(|| self.0.bound.load(Ordering::SeqCst)))
    }

    fn allocator_report(&mut self) -> Option<String> {
        Some("{\"fake\":true}".into())
    }

    fn read_all(&mut self) -> Readings {
        Readings {
            rss: Some(self.0.used.load(Ordering::SeqCst)),
            ..Default::default()
        }
    }

    fn can_purge(&self) -> bool {
        self.0.purgeable
    }

    fn purge(&mut self) -> memwatch::Result<()> {
        self.0.purges.fetch_add(1, Ordering::SeqCst);
        self.set(self.0.after_purge.load(Ordering::SeqCst));
        Ok(())
    }
}

const INTERVAL: Duration = Duration::from_secs(1);

fn config(threshold: u64) -> Config {
    Config {
        threshold: Some(Threshold::Bytes(threshold)),
        poll_interval: INTERVAL,
        ..Default::default()
    }
}

fn watcher(config: Config, fake: &Fake) -> (Watcher, CancellationToken) {
    let token = CancellationToken::new();
    let w = Watcher::with_source(
        config,
        token.clone(),
        Box::new(fake.clone()),
        Limits::default(),
    )
    .expect("valid config")
    .expect("enabled");
    (w, token)
}

/// Runs a clone of `w` as a task on the test's runtime.
fn spawn_run(w: &Watcher) -> tokio::task::JoinHandle<Stopped> {
    let w = w.clone();
    tokio::spawn(async move { w.run().await })
}

#[tokio::test(start_paused = true)]
async fn fires_once_above_threshold() {
    let fake = Fake::new(2000);
    let (w, token) = watcher(config(1000), &fake);
    let start = Instant::now();
    assert_eq!(w.run().await, Stopped::Fired);
    assert!(token.is_cancelled());
    assert!(w.fired());
    assert_eq!(w.level(), Level::Critical);
    // The first sample is taken at once, so no time passed.
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(fake.samples(), 1);
    // Further checks and runs see the fired state and never fire again.
    for _ in 0..5 {
        assert!(!w.check().unwrap().fired_now);
    }
    assert_eq!(w.run().await, Stopped::Fired);
    assert!(w.metrics().fired);
}

#[tokio::test(start_paused = true)]
async fn fires_on_the_tick_after_crossing() {
    let fake = Fake::new(10);
    let (w, token) = watcher(config(1000), &fake);
    let run = spawn_run(&w);
    tokio::time::sleep(INTERVAL * 3 + INTERVAL / 2).await;
    assert!(!token.is_cancelled());
    let crossed = Instant::now();
    fake.set(1000);
    assert_eq!(run.await.unwrap(), Stopped::Fired);
    // Crossing at 3.5 intervals is seen at the tick at 4 intervals.
    assert_eq!(crossed.elapsed(), INTERVAL / 2);
    assert_eq!(fake.samples(), 5);
}

#[tokio::test(start_paused = true)]
async fn does_not_fire_below_threshold() {
    let fake = Fake::new(999);
    let (w, token) = watcher(config(1000), &fake);
    let res = tokio::time::timeout(INTERVAL * 10 + INTERVAL / 2, w.run()).await;
    assert!(res.is_err(), "run must still be going");
    assert!(!token.is_cancelled());
    assert!(!w.fired());
    // One immediate sample plus one per interval.
    assert_eq!(fake.samples(), 11);
    let m = w.metrics();
    assert_eq!(m.samples, 11);
    assert_eq!(m.headroom_bytes, Some(1));
    assert_eq!(m.level, Level::Normal);
    assert_eq!(m.last_sample.unwrap().used, 999);
}

#[tokio::test(start_paused = true)]
async fn caller_cancellation_stops_without_firing() {
    let fake = Fake::new(10);
    let (w, token) = watcher(config(1000), &fake);
    let run = spawn_run(&w);
    tokio::time::sleep(INTERVAL * 2 + INTERVAL / 2).await;
    token.cancel();
    assert_eq!(run.await.unwrap(), Stopped::Cancelled);
    assert!(!w.fired());
    let taken = fake.samples();
    assert_eq!(taken, 3);
    // Nothing samples any more, even far above the threshold.
    fake.set(u64::MAX);
    tokio::time::sleep(INTERVAL * 10).await;
    assert_eq!(fake.samples(), taken);
    assert!(!w.fired());
}

#[tokio::test(start_paused = true)]
async fn disabled_config_starts_nothing() {
    let token = CancellationToken::new();
    for threshold in [
        None,
        Some(Threshold::Bytes(0)),
        Some(Threshold::Fraction(0.0)),
    ] {
        let cfg = Config {
            threshold,
            ..Default::default()
        };
        let fake = Fake::new(u64::MAX);
        let w = Watcher::with_source(
            cfg.clone(),
            token.clone(),
            Box::new(fake.clone()),
            Limits::default(),
        )
        .unwrap();
        assert!(w.is_none(), "{threshold:?}");
        assert!(Watcher::new(cfg, token.clone()).unwrap().is_none());
        assert_eq!(fake.samples(), 0);
    }
    let from_env = Config::from_lookup(|_| None).unwrap();
    assert!(Watcher::new(from_env, token.clone()).unwrap().is_none());
    assert!(!token.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn concurrent_runs_fire_once() {
    let fake = Fake::new(10);
    let (w, token) = watcher(config(1000), &fake);
    let runs: Vec<_> = (0..4).map(|_| spawn_run(&w)).collect();
    tokio::time::sleep(INTERVAL / 2).await;
    fake.set(5000);
    for r in runs {
        let stopped = r.await.unwrap();
        assert!(matches!(stopped, Stopped::Fired), "{stopped:?}");
    }
    assert!(token.is_cancelled());
}

#[test]
fn concurrent_checks_fire_exactly_once() {
    let fake = Fake::new(5000);
    let (w, token) = watcher(config(1000), &fake);
    let fired_now = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (w, fired_now) = (w.clone(), fired_now.clone());
            std::thread::spawn(move || {
                for _ in 0..500 {
                    if w.check().unwrap().fired_now {
                        fired_now.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fired_now.load(Ordering::SeqCst), 1);
    assert!(token.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn soft_level_with_hysteresis() {
    let fake = Fake::new(0);
    let cfg = Config {
        soft: Some(Threshold::Bytes(800)),
        hysteresis: 0.05, // 50 bytes of a 1000-byte threshold: leave below 750.
        ..config(1000)
    };
    let (w, token) = watcher(cfg, &fake);
    let mut rx = w.subscribe();
    // (sample, expected level)
    let table = [
        (700, Level::Normal),
        (799, Level::Normal),
        (800, Level::Elevated),
        (760, Level::Elevated),
        (750, Level::Elevated),
        (749, Level::Normal),
        (790, Level::Normal),
        (950, Level::Elevated),
        (0, Level::Normal),
    ];
    let mut changes = 0;
    let mut last = Level::Normal;
    for (used, expected) in table {
        fake.set(used);
        let c = w.check().unwrap();
        assert_eq!(c.level, expected, "at {used}");
        assert_eq!(
            w.is_under_pressure(),
            expected >= Level::Elevated,
            "at {used}"
        );
        if expected != last {
            changes += 1;
            assert!(rx.has_changed().unwrap(), "at {used}");
            assert_eq!(*rx.borrow_and_update(), expected);
        } else {
            assert!(!rx.has_changed().unwrap(), "at {used}");
        }
        last = expected;
    }
    assert_eq!(changes, 4);
    assert!(!token.is_cancelled());
    fake.set(1000);
    assert!(w.check().unwrap().fired_now);
    assert_eq!(*rx.borrow_and_update(), Level::Critical);
    assert!(w.is_under_pressure());
}

#[tokio::test(start_paused = true)]
async fn purges_and_resamples_before_firing() {
    // Dirty pages put resident at 1500, but a purge brings it to 900.
    let fake = Fake::purgeable(1500, 900);
    let (w, token) = watcher(config(1000), &fake);
    let c = w.check().unwrap();
    assert!(c.purged);
    assert!(!c.fired_now);
    assert_eq!(c.sample.used, 900);
    assert_eq!(fake.samples(), 2);
    assert_eq!(fake.0.purges.load(Ordering::SeqCst), 1);
    assert!(!token.is_cancelled());
    // Below the threshold no purge is attempted.
    assert!(!w.check().unwrap().purged);
    assert_eq!(fake.0.purges.load(Ordering::SeqCst), 1);
    // Live memory: the purge does not help, so it fires on the re-sample.
    fake.set(1500);
    fake.0.after_purge.store(1200, Ordering::SeqCst);
    let c = w.check().unwrap();
    assert!(c.purged && c.fired_now);
    assert_eq!(c.sample.used, 1200);
    assert!(token.is_cancelled());
    assert_eq!(w.metrics().purges, 2);
}

#[tokio::test(start_paused = true)]
async fn purge_can_be_turned_off_and_needs_a_purgeable_source() {
    let fake = Fake::purgeable(1500, 0);
    let (w, _) = watcher(
        Config {
            purge_before_fire: false,
            ..config(1000)
        },
        &fake,
    );
    let c = w.check().unwrap();
    assert!(!c.purged && c.fired_now);

    let fake = Fake::new(1500);
    let (w, _) = watcher(config(1000), &fake);
    let c = w.check().unwrap();
    assert!(!c.purged && c.fired_now);
}

#[tokio::test(start_paused = true)]
async fn sampling_errors_are_counted_and_retried() {
    let fake = Fake::new(5000);
    fake.0.failing.store(true, Ordering::SeqCst);
    let (w, token) = watcher(config(1000), &fake);
    let run = spawn_run(&w);
    tokio::time::sleep(INTERVAL * 3 + INTERVAL / 2).await;
    assert!(!token.is_cancelled());
    assert_eq!(w.metrics().sample_errors, 4);
    fake.0.failing.store(false, Ordering::SeqCst);
    assert_eq!(run.await.unwrap(), Stopped::Fired);
}

#[tokio::test(start_paused = true)]
async fn poll_interval_has_a_floor() {
    let fake = Fake::new(0);
    let (w, _) = watcher(
        Config {
            poll_interval: Duration::from_micros(10),
            ..config(1000)
        },
        &fake,
    );
    assert_eq!(w.poll_interval(), Duration::from_millis(10));
    let _ = tokio::time::timeout(Duration::from_millis(95), w.run()).await;
    assert_eq!(fake.samples(), 10);
}

#[test]
fn fraction_resolves_against_the_smallest_limit() {
    let fake = Fake::new(0);
    let limits = Limits {
        configured: Some(4000),
        cgroup: Some(2000),
        physical: Some(16000),
    };
    let cfg = Config {
        threshold: Some(Threshold::Fraction(0.5)),
        soft: Some(Threshold::Fraction(0.4)),
        ..Default::default()
    };
    let w = Watcher::with_source(
        cfg.clone(),
        CancellationToken::new(),
        Box::new(fake.clone()),
        limits,
    )
    .unwrap()
    .unwrap();
    assert_eq!(w.threshold_bytes(), 1000);
    assert_eq!(w.metrics().soft_bytes, Some(800));
    assert_eq!(w.metrics().effective_limit, Some(2000));

    let err = Watcher::with_source(
        cfg,
        CancellationToken::new(),
        Box::new(fake.clone()),
        Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoLimit), "{err}");

    // A soft level that resolves above the threshold is rejected.
    let cfg = Config {
        threshold: Some(Threshold::Bytes(500)),
        soft: Some(Threshold::Fraction(0.5)),
        ..Default::default()
    };
    let err =
        Watcher::with_source(cfg, CancellationToken::new(), Box::new(fake), limits).unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { field: "soft", .. }),
        "{err}"
    );
}

#[test]
fn spawned_thread_stops_on_cancel_and_fires() {
    let fake = Fake::new(0);
    let (w, token) = watcher(config(1000), &fake);
    let h = w.spawn().unwrap();
    token.cancel();
    assert_eq!(h.join(), Stopped::Cancelled);

    let fake = Fake::new(1001);
    let (w, token) = watcher(config(1000), &fake);
    let h = w.spawn().unwrap();
    assert_eq!(h.join(), Stopped::Fired);
    assert!(token.is_cancelled() && w.fired());
}

#[test]
fn spawned_thread_samples_while_the_callers_runtime_is_starved() {
    // A single-worker runtime whose only worker is blocked cannot run a
    // watcher task; the dedicated thread still fires.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake = Fake::new(0);
    let (w, token) = watcher(
        Config {
            poll_interval: Duration::from_millis(10),
            ..config(1000)
        },
        &fake,
    );
    let h = w.spawn().unwrap();
    rt.block_on(async {
        // Block the runtime's only thread until the token is cancelled.
        fake.set(2000);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !token.is_cancelled() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    assert!(token.is_cancelled());
    assert_eq!(h.join(), Stopped::Fired);
}

/// A config at a 10 ms interval whose full samples may be up to 100 ms
/// apart: ten ticks per full sample.
fn bounded_config(threshold: u64, soft: Option<u64>) -> Config {
    Config {
        threshold: Some(Threshold::Bytes(threshold)),
        soft: soft.map(Threshold::Bytes),
        poll_interval: Duration::from_millis(10),
        max_stats_age: Duration::from_millis(100),
        ..Default::default()
    }
}

#[test]
fn a_bound_below_every_level_skips_full_samples_up_to_the_max_age() {
    let fake = Fake::bounded(100, 200);
    let (w, _token) = watcher(bounded_config(1000, None), &fake);
    // The first check has no earlier sample to stand on.
    assert!(!w.check().unwrap().estimated);
    for i in 1..10 {
        let c = w.check().unwrap();
        assert!(c.estimated, "tick {i}");
        assert_eq!(c.sample.used, 100, "the last full sample is reported");
        assert_eq!(c.level, Level::Normal);
    }
    // 100 ms after the last full sample, the next tick takes one again.
    assert!(!w.check().unwrap().estimated);
    assert!(w.check().unwrap().estimated);
    assert_eq!(fake.samples(), 2);
    let m = w.metrics();
    assert_eq!((m.samples, m.estimates), (2, 10));
}

#[test]
fn a_bound_at_the_lowest_level_forces_a_full_sample() {
    let fake = Fake::bounded(100, 200);
    let (w, token) = watcher(bounded_config(1000, Some(500)), &fake);
    w.check().unwrap();
    assert!(w.check().unwrap().estimated);
    // The bound reaches the soft level (not the threshold): full sample,
    // and the real figure is still normal.
    fake.set_bound(500);
    let c = w.check().unwrap();
    assert!(!c.estimated);
    assert_eq!(c.level, Level::Normal);
    // Growth that crosses the threshold is acted on at the very tick the
    // bound shows it, not at the next scheduled full sample.
    fake.set_bound(1500);
    fake.set(1200);
    let c = w.check().unwrap();
    assert!(c.fired_now && !c.estimated);
    assert!(token.is_cancelled());
}

#[test]
fn an_elevated_level_samples_at_every_tick() {
    let fake = Fake::bounded(600, 0);
    let (w, _token) = watcher(bounded_config(1000, Some(500)), &fake);
    for _ in 0..5 {
        let c = w.check().unwrap();
        assert!(!c.estimated);
        assert_eq!(c.level, Level::Elevated);
    }
    // Falling back below the hysteresis line is seen at once, because
    // only a full sample can show a fall.
    fake.set(100);
    assert_eq!(w.check().unwrap().level, Level::Normal);
    assert!(w.check().unwrap().estimated);
    assert_eq!(fake.samples(), 6);
}

#[test]
fn a_zero_max_age_or_a_long_interval_samples_at_every_tick() {
    for (interval, age) in [(10, 0), (100, 100), (1000, 100), (10, 19)] {
        let fake = Fake::bounded(100, 200);
        let cfg = Config {
            poll_interval: Duration::from_millis(interval),
            max_stats_age: Duration::from_millis(age),
            ..bounded_config(1000, None)
        };
        let (w, _token) = watcher(cfg, &fake);
        for _ in 0..5 {
            assert!(!w.check().unwrap().estimated, "{interval} ms / {age} ms");
        }
        assert_eq!(fake.samples(), 5);
    }
}

#[tokio::test(start_paused = true)]
async fn a_bounded_source_still_fires_on_the_tick_after_crossing() {
    let fake = Fake::bounded(10, 20);
    let (w, token) = watcher(bounded_config(1000, None), &fake);
    let run = spawn_run(&w);
    tokio::time::sleep(Duration::from_millis(35)).await;
    assert!(!token.is_cancelled());
    let crossed = Instant::now();
    // Resident growth moves the bound as it moves the figure.
    fake.set(1000);
    fake.set_bound(1010);
    assert_eq!(run.await.unwrap(), Stopped::Fired);
    assert_eq!(crossed.elapsed(), Duration::from_millis(5));
    // Ticks at 0 (full) and 10, 20, 30 (bound), then 40 (full, fires).
    assert_eq!(fake.samples(), 2);
    assert_eq!(w.metrics().estimates, 3);
}

#[test]
fn firing_writes_a_diagnostics_bundle_before_cancelling() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(100);
    let cfg = Config {
        diagnostics_dir: Some(dir.path().join("diag")),
        ..config(1000)
    };
    let (w, token) = watcher(cfg, &fake);
    // Watch for the cancel on another thread and look for the bundle at that
    // moment: it must already be there.
    let seen = {
        let (token, path) = (token.clone(), dir.path().join("diag"));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(token.cancelled());
            std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
        })
    };
    for used in [100, 400, 700] {
        fake.set(used);
        w.check().unwrap();
    }
    fake.set(1200);
    assert!(w.check().unwrap().fired_now);
    assert_eq!(
        seen.join().unwrap(),
        1,
        "the bundle exists when the token is cancelled"
    );
    let path = std::fs::read_dir(dir.path().join("diag"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("memwatch-") && name.ends_with(&format!("-{}.json", std::process::id()))
    );
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(b["used_bytes"], 1200);
    assert_eq!(b["threshold_bytes"], 1000);
    assert_eq!(b["signal"], "rss");
    assert_eq!(b["readings"]["rss_bytes"], 1200);
    let history: Vec<u64> = b["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .collect();
    assert_eq!(history, [100, 400, 700, 1200]);
    assert_eq!(b["allocator"]["fake"], true);
}

#[test]
fn an_unwritable_diagnostics_directory_does_not_stop_the_firing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let fake = Fake::new(2000);
    let cfg = Config {
        diagnostics_dir: Some(file.join("diag")),
        ..config(1000)
    };
    let (w, token) = watcher(cfg, &fake);
    assert!(w.check().unwrap().fired_now);
    assert!(token.is_cancelled());
}

/// Raises the fake's figure by `per_sec` every second, half an interval
/// before each tick, until the token is cancelled or `secs` pass. Returns
/// the time from the start to the cancel, if it came.
async fn grow(
    fake: &Fake,
    token: &CancellationToken,
    per_sec: impl Fn(u64) -> u64,
    secs: u64,
) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::sleep(INTERVAL / 2).await;
    for k in 1..=secs {
        fake.set(per_sec(k));
        tokio::time::sleep(INTERVAL).await;
        if token.is_cancelled() {
            // The cancel came at the tick half an interval ago.
            return Some(start.elapsed() - INTERVAL / 2);
        }
    }
    None
}

#[tokio::test(start_paused = true)]
async fn sustained_growth_fires_within_the_shutdown_budget() {
    // 1000 B/s towards a 10000 B threshold with a 5 s budget: at 5 s the
    // figure is 5000 and 5 s more of the same growth reach the threshold.
    let fake = Fake::new(0);
    let cfg = Config {
        shutdown_budget: Some(Duration::from_secs(5)),
        ..config(10_000)
    };
    let (w, token) = watcher(cfg, &fake);
    let run = spawn_run(&w);
    let fired_at = grow(&fake, &token, |k| 1000 * k, 20).await;
    assert_eq!(run.await.unwrap(), Stopped::Fired);
    assert_eq!(fired_at, Some(Duration::from_secs(5)));
    let m = w.metrics();
    assert_eq!(m.growth_bytes_per_sec, Some(1000.0));
    assert_eq!(m.last_sample.unwrap().used, 5000);

    // Without a budget the same growth fires at the threshold, at 10 s.
    let fake = Fake::new(0);
    let (w, token) = watcher(config(10_000), &fake);
    let run = spawn_run(&w);
    let fired_at = grow(&fake, &token, |k| 1000 * k, 20).await;
    assert_eq!(run.await.unwrap(), Stopped::Fired);
    assert_eq!(fired_at, Some(Duration::from_secs(10)));
    assert_eq!(w.metrics().growth_bytes_per_sec, None);
}

#[tokio::test(start_paused = true)]
async fn a_single_jump_or_a_fall_does_not_project_a_crossing() {
    let cfg = Config {
        shutdown_budget: Some(Duration::from_secs(5)),
        ..config(10_000)
    };
    // A 6000 B batch at 3 s, then flat: one half of every window is flat.
    let fake = Fake::new(0);
    let (w, token) = watcher(cfg.clone(), &fake);
    let run = spawn_run(&w);
    let jump = grow(&fake, &token, |k| if k >= 3 { 6000 } else { 0 }, 20).await;
    assert_eq!(jump, None, "fired on a one-off jump");
    token.cancel();
    assert_eq!(run.await.unwrap(), Stopped::Cancelled);

    // Falling memory projects nothing.
    let fake = Fake::new(9000);
    let (w, token) = watcher(cfg, &fake);
    let run = spawn_run(&w);
    let fall = grow(&fake, &token, |k| 9000 - 400 * k, 20).await;
    assert_eq!(fall, None);
    assert_eq!(w.metrics().growth_bytes_per_sec, None);
    token.cancel();
    assert_eq!(run.await.unwrap(), Stopped::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn the_bound_makes_room_for_the_projected_growth() {
    // 10 ms ticks answered from the bound between full samples 100 ms apart;
    // memory grows 4700 B/s towards 10000 B with a 1 s budget. The crossing
    // is projected when the figure reaches 5300 B, at tick 113, between the
    // full samples of ticks 110 and 120; that tick must take a full sample
    // and fire rather than wait for the next scheduled one.
    let fake = Fake::bounded(0, 0);
    let cfg = Config {
        shutdown_budget: Some(Duration::from_secs(1)),
        ..bounded_config(10_000, None)
    };
    let (w, token) = watcher(cfg, &fake);
    let mut fired_at = None;
    for i in 0..300u64 {
        let used = i * 47;
        fake.set(used);
        fake.set_bound(used);
        let c = w.check().unwrap();
        if c.fired_now {
            fired_at = Some(i);
            break;
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    assert_eq!(fired_at, Some(113), "fired at tick {fired_at:?}");
    assert!(token.is_cancelled());
    let m = w.metrics();
    assert!(m.estimates > 50, "the bound answered most ticks: {m:?}");
    let rate = m.growth_bytes_per_sec.unwrap();
    assert!((rate - 4700.0).abs() < 1.0, "{rate}");
}

/// Waits up to five seconds of real time for `f`.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn a_changed_events_file_makes_the_thread_check_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("memory.events");
    std::fs::write(&events, "high 0\nmax 0\n").unwrap();
    // A one-minute interval: every check after the first comes from the file.
    let fake = Fake::new(100);
    let cfg = Config {
        poll_interval: Duration::from_secs(60),
        wake_files: Some(vec![events.clone(), dir.path().join("missing")]),
        ..config(1000)
    };
    let (w, token) = watcher(cfg, &fake);
    let h = w.spawn().unwrap();
    assert!(eventually(|| fake.samples() == 1), "the first sample");
    std::fs::write(&events, "high 1\nmax 0\n").unwrap();
    assert!(
        eventually(|| fake.samples() == 2),
        "no check after the change"
    );
    assert_eq!(w.metrics().event_checks, 1);
    // The check after the change sees memory over the threshold and fires,
    // a minute before the next tick.
    fake.set(1500);
    std::fs::write(&events, "high 2\nmax 1\n").unwrap();
    assert_eq!(h.join(), Stopped::Fired);
    assert!(token.is_cancelled());
}

#[test]
fn an_event_check_takes_a_full_sample_even_when_the_bound_is_low() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("memory.events");
    std::fs::write(&events, "high 0\n").unwrap();
    // 10 ms ticks, all answered by the bound for ten seconds after the first.
    let fake = Fake::bounded(100, 100);
    let cfg = Config {
        wake_files: Some(vec![events.clone()]),
        max_stats_age: Duration::from_secs(10),
        ..bounded_config(1000, None)
    };
    let (w, token) = watcher(cfg, &fake);
    let h = w.spawn().unwrap();
    assert!(eventually(|| w.metrics().estimates >= 5), "cheap ticks");
    assert_eq!(fake.samples(), 1);
    std::fs::write(&events, "high 1\n").unwrap();
    assert!(
        eventually(|| fake.samples() == 2),
        "the event did not force a full sample"
    );
    token.cancel();
    assert_eq!(h.join(), Stopped::Cancelled);
    assert_eq!(w.metrics().event_checks, 1);
}
