//! The trigger policy under paused tokio time: a fake size source, a scripted
//! callback, and assertions on which runs happened when.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aof_compactor::bytesize::ByteSize;
use aof_compactor::{
    CompactionOutcome, Compactor, Config, Error, Handle, InFlight, RunFailure, SizeSource, Trigger,
};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

/// What the fake compaction does on its next call.
#[derive(Clone, Copy, Debug)]
enum Behavior {
    /// Wait `delay`, then set the size to `new_size` and report it.
    Shrink {
        new_size: u64,
        delay: Duration,
    },
    /// Wait `delay` unless cancelled, then report the size unchanged.
    Slow {
        delay: Duration,
    },
    Fail,
    Panic,
}

struct Harness {
    size: Arc<AtomicU64>,
    size_fails: Arc<AtomicBool>,
    behavior: Arc<Mutex<Behavior>>,
    calls: Arc<AtomicU32>,
    max_active: Arc<AtomicU32>,
    handle: Handle,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    t0: Instant,
}

impl Harness {
    fn start(config: Config, size: u64, behavior: Behavior) -> Harness {
        Self::start_with(config, size, behavior, InFlight::Wait, None)
    }

    fn start_with(
        config: Config,
        size: u64,
        behavior: Behavior,
        in_flight: InFlight,
        free_space: Option<u64>,
    ) -> Harness {
        let size = Arc::new(AtomicU64::new(size));
        let size_fails = Arc::new(AtomicBool::new(false));
        let behavior = Arc::new(Mutex::new(behavior));
        let calls = Arc::new(AtomicU32::new(0));
        let active = Arc::new(AtomicU32::new(0));
        let max_active = Arc::new(AtomicU32::new(0));

        let source = {
            let size = size.clone();
            let fails = size_fails.clone();
            SizeSource::from_fn(move || {
                if fails.load(Ordering::SeqCst) {
                    Err(io::Error::other("stat failed"))
                } else {
                    Ok(size.load(Ordering::SeqCst))
                }
            })
        };
        let callback = {
            let (size, behavior, calls) = (size.clone(), behavior.clone(), calls.clone());
            let (active, max_active) = (active.clone(), max_active.clone());
            move |ctx: aof_compactor::CompactionContext| {
                calls.fetch_add(1, Ordering::SeqCst);
                let b = *behavior.lock();
                if let Behavior::Panic = b {
                    panic!("boom");
                }
                let (size, active, max_active) = (size.clone(), active.clone(), max_active.clone());
                async move {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    max_active.fetch_max(now, Ordering::SeqCst);
                    let result = match b {
                        Behavior::Shrink { new_size, delay } => {
                            sleep(delay).await;
                            size.store(new_size, Ordering::SeqCst);
                            Ok(CompactionOutcome::new(new_size))
                        }
                        Behavior::Slow { delay } => {
                            tokio::select! {
                                () = sleep(delay) => Ok(CompactionOutcome::new(size.load(Ordering::SeqCst))),
                                () = ctx.cancel.cancelled() => Err("cancelled".to_owned()),
                            }
                        }
                        Behavior::Fail => Err("disk on fire".to_owned()),
                        Behavior::Panic => unreachable!(),
                    };
                    active.fetch_sub(1, Ordering::SeqCst);
                    result
                }
            }
        };
        let (compactor, handle) = Compactor::new(config, source, callback).unwrap();
        let mut compactor = compactor.on_shutdown(in_flight);
        if let Some(free) = free_space {
            compactor = compactor.with_disk_space(move || Ok(free));
        }
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(compactor.run(shutdown.clone()));
        Harness {
            size,
            size_fails,
            behavior,
            calls,
            max_active,
            handle,
            shutdown,
            task,
            t0: Instant::now(),
        }
    }

    /// Sleeps (in paused time) until `secs` after the start.
    async fn at(&self, secs: f64) {
        tokio::time::sleep_until(self.t0 + Duration::from_secs_f64(secs)).await;
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::SeqCst);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn config(min: u64) -> Config {
    Config {
        min_size: ByteSize(min),
        check_interval: Duration::from_secs(10),
        cooldown: Duration::ZERO,
        ..Default::default()
    }
}

const NOOP: Behavior = Behavior::Slow {
    delay: Duration::ZERO,
};

/// One row of the threshold table: a size against `min_size = 1000`.
async fn check_threshold(size: u64, expected_runs: u32) {
    let h = Harness::start(config(1000), size, NOOP);
    h.at(5.0).await;
    assert_eq!(
        h.calls(),
        0,
        "size {size}: no check before the first interval"
    );
    h.at(10.5).await;
    assert_eq!(h.calls(), expected_runs, "size {size}");
    assert_eq!(h.handle.status().current_size, Some(size));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn threshold_below_at_and_above() {
    for (size, runs) in [(0, 0), (999, 0), (1000, 0), (1001, 1), (u64::MAX, 1)] {
        check_threshold(size, runs).await;
    }
}

#[tokio::test(start_paused = true)]
async fn zero_min_size_means_off() {
    let h = Harness::start(config(0), u64::MAX, NOOP);
    h.at(100.5).await;
    assert_eq!(h.calls(), 0);
    assert!(!h.handle.status().enabled);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn growth_rule_across_several_runs() {
    let cfg = Config {
        growth_percent: Some(100),
        ..config(100)
    };
    let shrink = |new_size| Behavior::Shrink {
        new_size,
        delay: Duration::ZERO,
    };
    let h = Harness::start(cfg, 150, shrink(100));
    // Base 0 at start: any size above min_size is "infinite" growth.
    h.at(10.5).await;
    assert_eq!(h.calls(), 1);
    assert_eq!(h.handle.status().base_size, 100);

    // (size, expected total runs after the next check, base reported by the callback)
    let steps = [
        (150, 1, 0),   // +50% over 100
        (199, 1, 0),   // +99%
        (200, 2, 120), // +100%: runs, new base 120
        (239, 2, 0),   // +99% over 120
        (240, 3, 130), // +100% over 120
        (259, 3, 0),
        (260, 4, 0),
    ];
    let mut t = 10.5;
    for (size, runs, next_base) in steps {
        if next_base > 0 {
            *h.behavior.lock() = shrink(next_base);
        }
        h.set_size(size);
        t += 10.0;
        h.at(t).await;
        assert_eq!(h.calls(), runs, "size {size}");
    }
    assert_eq!(h.handle.status().runs, 4);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cooldown_suppresses_the_next_run() {
    let cfg = Config {
        cooldown: Duration::from_secs(60),
        ..config(100)
    };
    // The fake does not shrink, so every check finds the size above the threshold.
    let h = Harness::start(cfg, 500, NOOP);
    h.at(10.5).await;
    assert_eq!(h.calls(), 1);
    assert!(h.handle.status().held_until.is_some());
    h.at(69.5).await;
    assert_eq!(h.calls(), 1, "within the cooldown");
    h.at(70.5).await;
    assert_eq!(h.calls(), 2, "the check at 70 s is 60 s after the run");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_cap_and_a_manual_run_resets_it() {
    let cfg = Config {
        backoff_after_failures: 2,
        backoff_initial: Duration::from_secs(60),
        backoff_max: Duration::from_secs(120),
        ..config(100)
    };
    let h = Harness::start(cfg, 500, Behavior::Fail);
    // (time, expected calls): checks every 10 s; failures 1 and 2 at 10 and
    // 20 s retry at the normal rate; failure 3 at 30 s waits 60 s (until 90),
    // failure 4 waits 120 s (until 210), failure 5 is capped at 120 s (330).
    let schedule = [
        (10.5, 1),
        (20.5, 2),
        (30.5, 3),
        (89.5, 3),
        (90.5, 4),
        (209.5, 4),
        (210.5, 5),
        (329.5, 5),
        (330.5, 6),
    ];
    for (t, calls) in schedule {
        h.at(t).await;
        assert_eq!(h.calls(), calls, "at {t} s");
    }
    let st = h.handle.status();
    assert_eq!((st.consecutive_failures, st.failures, st.runs), (6, 6, 0));
    assert!(matches!(st.last_status, Some(Err(RunFailure::Failed(ref m))) if m == "disk on fire"));

    // A manual run ignores the back-off and starts the count over; even though
    // it fails too, the next automatic check is back at the normal rate.
    h.at(335.0).await;
    let report = h.handle.compact_now().await.unwrap();
    assert_eq!(report.trigger, Trigger::Manual);
    assert_eq!(h.calls(), 7);
    assert_eq!(h.handle.status().consecutive_failures, 1);
    h.at(345.5).await;
    assert_eq!(h.calls(), 8, "no back-off after the reset");

    // A successful manual run clears the failures entirely.
    *h.behavior.lock() = NOOP;
    let report = h.handle.compact_now().await.unwrap();
    assert!(report.result.is_ok());
    assert_eq!(h.handle.status().consecutive_failures, 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_overlapping_runs_under_a_slow_callback() {
    let cfg = Config {
        check_interval: Duration::from_secs(1),
        ..config(100)
    };
    let h = Harness::start(
        cfg,
        500,
        Behavior::Slow {
            delay: Duration::from_secs(100),
        },
    );
    h.at(1.5).await;
    assert!(h.handle.status().in_progress);
    // Five manual requests during the run all join it.
    let joins: Vec<_> = (0..5)
        .map(|_| {
            let handle = h.handle.clone();
            tokio::spawn(async move { handle.compact_now().await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for j in joins {
        ids.push(j.await.unwrap().id);
    }
    assert_eq!(ids, vec![1; 5], "all joined the first run");
    assert_eq!(h.calls(), 1);
    h.at(500.0).await;
    assert_eq!(h.max_active.load(Ordering::SeqCst), 1);
    // Each run takes 100 s and the next check is 1 s after it ends.
    let calls = h.calls();
    assert!((4..=5).contains(&calls), "{calls} runs in 500 s");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reconfiguration_during_a_run_applies_at_the_next_check() {
    let h = Harness::start(
        config(100),
        500,
        Behavior::Shrink {
            new_size: 300,
            delay: Duration::from_secs(30),
        },
    );
    h.at(15.0).await;
    assert!(h.handle.status().in_progress);

    // An invalid value is refused and nothing changes.
    let err = h.handle.update(|c| c.growth_percent = Some(0)).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "growth_percent",
            ..
        }
    ));
    assert_eq!(h.handle.config(), config(100));

    // Raise the threshold above the post-run size and slow the interval; the
    // run in flight finishes regardless.
    h.handle
        .update(|c| {
            c.min_size = ByteSize(1000);
            c.check_interval = Duration::from_secs(60);
        })
        .unwrap();
    h.at(40.5).await;
    let st = h.handle.status();
    assert!(!st.in_progress);
    assert_eq!((st.runs, st.base_size), (1, 300));
    assert_eq!(st.next_check_at, Some(h.t0 + Duration::from_secs(100)));

    // Growth past the new threshold is picked up at the new interval.
    h.set_size(1001);
    h.at(99.5).await;
    assert_eq!(h.calls(), 1);
    h.at(100.5).await;
    assert_eq!(h.calls(), 2);

    // Disabling during the second run lets it finish and stops further runs.
    h.handle.update(|c| c.min_size = ByteSize(0)).unwrap();
    h.set_size(u64::MAX);
    h.at(1000.0).await;
    assert_eq!(h.calls(), 2);
    assert_eq!(h.handle.status().runs, 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume() {
    let h = Harness::start(config(100), 500, NOOP);
    h.handle.pause();
    h.at(100.5).await;
    assert_eq!(h.calls(), 0);
    assert!(h.handle.status().paused);

    // Manual runs still work while paused.
    assert!(h.handle.compact_now().await.unwrap().result.is_ok());
    assert_eq!(h.calls(), 1);

    h.handle.resume();
    assert!(!h.handle.is_paused());
    // The manual run ended at 100.5 s, so the next check is at 110.5 s.
    h.at(110.0).await;
    assert_eq!(h.calls(), 1);
    h.at(111.0).await;
    assert_eq!(h.calls(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_run_in_flight_by_default() {
    let h = Harness::start(
        config(100),
        500,
        Behavior::Slow {
            delay: Duration::from_secs(30),
        },
    );
    h.at(15.0).await;
    assert!(h.handle.status().in_progress);
    h.shutdown.cancel();
    let handle = h.handle.clone();
    h.task.await.unwrap();
    assert_eq!(Instant::now() - h.t0, Duration::from_secs(40));
    let report = handle.last_report().unwrap();
    assert!(report.result.is_ok(), "{report:?}");
    assert!(matches!(handle.compact_now().await, Err(Error::Stopped)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_can_cancel_a_run_in_flight() {
    let h = Harness::start_with(
        config(100),
        500,
        Behavior::Slow {
            delay: Duration::from_secs(30),
        },
        InFlight::Cancel,
        None,
    );
    h.at(15.0).await;
    let waiter = {
        let handle = h.handle.clone();
        tokio::spawn(async move { handle.compact_now().await })
    };
    h.shutdown.cancel();
    let handle = h.handle.clone();
    h.task.await.unwrap();
    assert_eq!(Instant::now() - h.t0, Duration::from_secs(15));
    let report = waiter.await.unwrap().unwrap();
    assert_eq!(report.result, Err(RunFailure::Cancelled));
    let st = handle.status();
    assert_eq!(st.consecutive_failures, 0, "cancellation is not a failure");
    assert!(!st.in_progress);
}

#[tokio::test(start_paused = true)]
async fn the_handle_can_cancel_a_run() {
    let h = Harness::start(
        config(100),
        500,
        Behavior::Slow {
            delay: Duration::from_secs(30),
        },
    );
    assert!(!h.handle.cancel_run());
    h.at(15.0).await;
    assert!(h.handle.cancel_run());
    h.at(15.5).await;
    assert_eq!(
        h.handle.last_report().unwrap().result,
        Err(RunFailure::Cancelled)
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_size_source_skips_checks_without_failing_runs() {
    let h = Harness::start(config(100), 500, NOOP);
    h.size_fails.store(true, Ordering::SeqCst);
    h.at(30.5).await;
    let st = h.handle.status();
    assert_eq!(h.calls(), 0);
    assert_eq!(st.size_error.as_deref(), Some("stat failed"));
    assert_eq!((st.failures, st.consecutive_failures), (0, 0));

    h.size_fails.store(false, Ordering::SeqCst);
    h.at(40.5).await;
    assert_eq!(h.calls(), 1);
    assert_eq!(h.handle.status().size_error, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_callback_is_a_failure() {
    let h = Harness::start(config(100), 500, Behavior::Panic);
    h.at(10.5).await;
    let st = h.handle.status();
    assert_eq!(
        st.last_status,
        Some(Err(RunFailure::Panicked("boom".into())))
    );
    assert_eq!((st.failures, st.consecutive_failures), (1, 1));

    // The task survives and the next run succeeds.
    *h.behavior.lock() = NOOP;
    h.at(20.5).await;
    assert_eq!(h.handle.status().runs, 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_polling_is_caught_too() {
    let (compactor, handle) =
        Compactor::new(config(100), SizeSource::from_fn(|| Ok(500)), |_ctx| async {
            sleep(Duration::from_secs(1)).await;
            if true {
                panic!("late boom");
            }
            Ok::<_, Error>(CompactionOutcome::new(0))
        })
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(compactor.run(shutdown.clone()));
    let report = handle.compact_now().await.unwrap();
    assert_eq!(report.result, Err(RunFailure::Panicked("late boom".into())));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn not_enough_free_space_fails_without_calling_back() {
    let cfg = Config {
        min_free_percent: Some(100),
        ..config(100)
    };
    let h = Harness::start_with(cfg, 500, NOOP, InFlight::Wait, Some(499));
    h.at(10.5).await;
    assert_eq!(h.calls(), 0);
    assert_eq!(
        h.handle.status().last_status,
        Some(Err(RunFailure::NoSpace {
            needed: 500,
            available: 499
        }))
    );
    h.set_size(499);
    h.at(20.5).await;
    assert_eq!(h.calls(), 1);
    h.stop().await;
}

#[tokio::test]
async fn free_space_check_needs_a_probe() {
    let (_compactor, handle) = Compactor::new(
        Config::default(),
        SizeSource::from_fn(|| Ok(0)),
        |_ctx| async { Ok::<_, Error>(CompactionOutcome::new(0)) },
    )
    .unwrap();
    let err = handle
        .update(|c| c.min_free_percent = Some(50))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "min_free_percent",
            ..
        }
    ));
}

#[test]
fn config_validation_names_the_field() {
    let cases: [(Config, Option<&str>); 6] = [
        (Config::default(), None),
        (
            Config {
                growth_percent: Some(0),
                ..Default::default()
            },
            Some("growth_percent"),
        ),
        (
            Config {
                check_interval: Duration::ZERO,
                ..Default::default()
            },
            Some("check_interval"),
        ),
        (
            Config {
                backoff_initial: Duration::ZERO,
                ..Default::default()
            },
            Some("backoff_initial"),
        ),
        (
            Config {
                backoff_max: Duration::from_secs(1),
                ..Default::default()
            },
            Some("backoff_max"),
        ),
        (
            Config {
                min_free_percent: Some(0),
                ..Default::default()
            },
            Some("min_free_percent"),
        ),
    ];
    for (cfg, expected) in cases {
        match (cfg.validate(), expected) {
            (Ok(()), None) => {}
            (Err(Error::InvalidConfig { field, .. }), Some(want)) => assert_eq!(field, want),
            (got, want) => panic!("{cfg:?}: got {got:?}, wanted {want:?}"),
        }
    }
}

#[test]
fn a_path_source_measures_the_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let source = SizeSource::Path(path.clone());
    assert_eq!(source.size().unwrap_err().kind(), io::ErrorKind::NotFound);
    std::fs::write(&path, [0u8; 1234]).unwrap();
    assert_eq!(source.size().unwrap(), 1234);
    let file = SizeSource::File(Arc::new(std::fs::File::open(&path).unwrap()));
    assert_eq!(file.size().unwrap(), 1234);
    let free = aof_compactor::Statvfs::for_file(&path);
    assert!(aof_compactor::DiskSpace::available(&free).unwrap() > 0);
}
