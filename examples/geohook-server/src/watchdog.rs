//! The memwatch wiring: configuration from `MEMWATCH_*` variables with flags
//! taking precedence and the server's own defaults, the watcher on its own
//! thread, and the memory task (`maxmemory`, purges under pressure).
//!
//! # Defaults
//!
//! The memwatch library keeps its contract (an unset threshold is off).
//! The server adds defaults on top: when the process has a memory limit (a
//! cgroup limit, or `MEMWATCH_LIMIT`), an unset threshold means
//! [`DEFAULT_THRESHOLD`] and an unset soft level [`DEFAULT_SOFT`] of the
//! effective limit. An empty value or `0`, as a variable or a flag, turns
//! either off. Without a limit the defaults stay off and the log says why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cli::Args;
use crate::state::Shared;

/// The threshold used when the process has a memory limit and neither
/// `MEMWATCH_THRESHOLD` nor `--memwatch-threshold` is given.
pub(crate) const DEFAULT_THRESHOLD: &str = "90%";
/// The soft level used when the process has a memory limit and neither
/// `MEMWATCH_SOFT_THRESHOLD` nor `--memwatch-soft-threshold` is given.
pub(crate) const DEFAULT_SOFT: &str = "80%";
/// How often the memory task looks at `maxmemory` and memwatch's level.
const MEMORY_TICK: Duration = Duration::from_millis(100);
/// The least time between two purges asked for by memory pressure: a purge
/// walks every arena, so under sustained pressure it runs at most this
/// often.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// One threshold setting as the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Given {
    /// Neither the flag nor the variable: the server's default applies.
    Unset,
    /// An empty value or `0`: off, whatever the default.
    Off,
    /// A value for memwatch to parse.
    Value(String),
}

impl Given {
    /// The flag wins over the variable.
    fn of(flag: Option<&str>, var: Option<String>) -> Given {
        match flag.map(str::to_owned).or(var) {
            None => Given::Unset,
            Some(v) if v.trim().is_empty() || v.trim() == "0" => Given::Off,
            Some(v) => Given::Value(v),
        }
    }
}

/// The threshold and soft level to hand to memwatch (`None` = off), and
/// the reasons for any default not applied, to be logged.
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    threshold: Option<String>,
    soft: Option<String>,
    notes: Vec<String>,
}

/// Applies the server's defaults. `limited` says whether the process has a
/// memory limit (cgroup or configured); `effective` is the effective limit
/// memwatch will resolve percentages against.
fn resolve(threshold: Given, soft: Given, limited: bool, effective: Option<u64>) -> Resolved {
    let mut notes = Vec::new();
    let threshold = match threshold {
        Given::Value(v) => Some(v),
        Given::Off => None,
        Given::Unset if limited => Some(DEFAULT_THRESHOLD.to_owned()),
        Given::Unset => {
            notes.push(format!(
                "memwatch default threshold {DEFAULT_THRESHOLD} not applied: the process has no \
                 cgroup memory limit and MEMWATCH_LIMIT is unset"
            ));
            None
        }
    };
    let soft = match soft {
        Given::Value(v) => Some(v),
        Given::Off => None,
        Given::Unset => match &threshold {
            None => None,
            // The default soft level applies only below the threshold it
            // protects; an explicit small threshold keeps no soft level.
            Some(t) => {
                let below = || -> Option<bool> {
                    let t: memwatch::Threshold = t.parse().ok()?;
                    let s: memwatch::Threshold = DEFAULT_SOFT.parse().ok()?;
                    Some(s.resolve(effective).ok()? < t.resolve(effective).ok()?)
                };
                if below() == Some(true) {
                    Some(DEFAULT_SOFT.to_owned())
                } else {
                    notes.push(format!(
                        "memwatch default soft level {DEFAULT_SOFT} not applied: it is not below \
                         the threshold {t}"
                    ));
                    None
                }
            }
        },
    };
    Resolved {
        threshold,
        soft,
        notes,
    }
}

/// Builds the memwatch configuration: each flag overrides its variable,
/// and the server's defaults fill what neither gives.
/// Diagnostics bundles go to `<dir>/memwatch` unless
/// `MEMWATCH_DIAGNOSTICS_DIR` says otherwise, so that the reason for an
/// exit 2 is found beside the data it protected.
///
/// # Errors
///
/// An invalid value, naming the variable.
fn config(args: &Args) -> anyhow::Result<memwatch::Config> {
    let env = |name: &str| std::env::var(name).ok();
    let interval = args.memwatch_interval.clone();
    let lookup = |threshold: Option<String>, soft: Option<String>| {
        let interval = interval.clone();
        move |name: &str| match name {
            memwatch::env::THRESHOLD => threshold.clone(),
            memwatch::env::SOFT_THRESHOLD => soft.clone(),
            memwatch::env::POLL_INTERVAL if interval.is_some() => interval.clone(),
            _ => env(name),
        }
    };
    // First without thresholds: the other variables, validated, give the
    // configured limit.
    let base =
        memwatch::Config::from_lookup(lookup(None, None)).context("memwatch configuration")?;
    let limits = memwatch::Limits::discover(base.limit);
    let limited = limits.cgroup.is_some() || limits.configured.is_some();
    let r = resolve(
        Given::of(
            args.memwatch_threshold.as_deref(),
            env(memwatch::env::THRESHOLD),
        ),
        Given::of(
            args.memwatch_soft_threshold.as_deref(),
            env(memwatch::env::SOFT_THRESHOLD),
        ),
        limited,
        limits.effective(),
    );
    for note in &r.notes {
        tracing::info!("{note}");
    }
    let mut cfg = memwatch::Config::from_lookup(lookup(r.threshold, r.soft))
        .context("memwatch configuration")?;
    if cfg.diagnostics_dir.is_none() {
        cfg.diagnostics_dir = Some(args.dir.join("memwatch"));
    }
    Ok(cfg)
}

/// Starts the watcher when configured. Returns the token it cancels when it
/// fires (never cancelled when memwatch is off) and its thread handle.
///
/// # Errors
///
/// Invalid configuration, or the thread cannot be started.
pub(crate) fn start(
    args: &Args,
    shared: &Arc<Shared>,
) -> anyhow::Result<(CancellationToken, Option<memwatch::WatcherHandle>)> {
    let token = CancellationToken::new();
    let cfg = config(args)?;
    let Some(watcher) = memwatch::Watcher::new(cfg, token.clone()).context("memwatch")? else {
        tracing::info!("memwatch off");
        return Ok((token, None));
    };
    let m = watcher.metrics();
    tracing::info!(
        threshold_bytes = m.threshold_bytes,
        soft_bytes = m.soft_bytes,
        effective_limit = m.effective_limit,
        signal = %m.signal,
        "memwatch on"
    );
    let handle = watcher.spawn().context("memwatch thread")?;
    let _ = shared.memwatch.set(watcher);
    Ok((token, Some(handle)))
}

/// jemalloc's options in force, as jemalloc reports them: whether
/// background purging threads run, and the dirty and muzzy decay times in
/// milliseconds (-1 = never). `None` when jemalloc cannot be asked.
pub(crate) fn allocator_options() -> Option<(bool, isize, isize)> {
    use tikv_jemalloc_ctl::raw::read;
    // SAFETY: each name is a NUL-terminated jemalloc option whose type is
    // the one read (bool, ssize_t, ssize_t), as jemalloc's manual lists.
    unsafe {
        Some((
            read::<bool>(b"background_thread\0").ok()?,
            read::<isize>(b"opt.dirty_decay_ms\0").ok()?,
            read::<isize>(b"opt.muzzy_decay_ms\0").ok()?,
        ))
    }
}

/// The memory task: every [`MEMORY_TICK`] it compares jemalloc's allocated
/// bytes with `maxmemory` (when set), and while either memwatch's level is
/// elevated or `maxmemory` is exceeded it asks jemalloc to return its dirty
/// pages, at most once per [`PURGE_EVERY`]. The purge lowers the resident
/// figure memwatch watches long before the threshold, so that memory freed
/// by deletes counts at once rather than after the decay time. It also runs
/// Tile38's `autogc`: a purge every `autogc` seconds, counted from the last
/// one (a change of the setting applies at the next tick). Ends at shutdown.
pub(crate) async fn memory_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(MEMORY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_purge: Option<Instant> = None;
    let mut last_autogc = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        let (maxmemory, autogc) = {
            let s = shared.settings.read();
            (s.maxmemory, s.autogc)
        };
        if autogc > 0 && last_autogc.elapsed() >= Duration::from_secs(autogc) {
            last_autogc = Instant::now();
            tokio::task::spawn_blocking(crate::metrics::purge_jemalloc);
            shared.metrics.autogc_purges.inc();
        } else if autogc == 0 {
            last_autogc = Instant::now();
        }
        let over = if maxmemory > 0 {
            let allocated = crate::metrics::jemalloc_stats().map_or(0, |(a, _)| a);
            let was = shared.maxmemory.is_over();
            let over = shared.maxmemory.observe(allocated, maxmemory);
            if over != was {
                tracing::warn!(
                    allocated,
                    maxmemory,
                    over,
                    "maxmemory: writes that add data {}",
                    if over { "refused" } else { "accepted again" }
                );
            }
            over
        } else {
            shared.maxmemory.observe(0, 0)
        };
        let soft = shared
            .memwatch
            .get()
            .is_some_and(memwatch::Watcher::is_under_pressure);
        if (soft || over) && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(Instant::now());
            tokio::task::spawn_blocking(crate::metrics::purge_jemalloc);
            shared.metrics.pressure_purges.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(s: Option<&str>) -> Given {
        Given::of(None, s.map(str::to_owned))
    }

    #[test]
    fn flags_win_and_empty_or_zero_is_off() {
        assert_eq!(Given::of(None, None), Given::Unset);
        assert_eq!(Given::of(Some(""), Some("80%".into())), Given::Off);
        assert_eq!(Given::of(None, Some(" ".into())), Given::Off);
        assert_eq!(Given::of(None, Some("0".into())), Given::Off);
        assert_eq!(
            Given::of(Some("1GiB"), Some("0".into())),
            Given::Value("1GiB".into())
        );
    }

    #[test]
    fn defaults_apply_with_a_limit_and_are_off_without() {
        let gib = Some(1u64 << 30);
        // (threshold, soft, limited) -> (threshold, soft)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            bool,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case<'_>] = &[
            (None, None, true, Some("90%"), Some("80%")),
            (None, None, false, None, None),
            (None, Some(""), true, Some("90%"), None),
            (Some(""), None, true, None, None),
            (Some(""), Some(""), true, None, None),
            (Some("95%"), None, true, Some("95%"), Some("80%")),
            (Some("95%"), None, false, Some("95%"), Some("80%")),
            // 80 % of 1 GiB is not below 100 MiB: no soft level.
            (Some("100MiB"), None, true, Some("100MiB"), None),
            (Some("75%"), None, true, Some("75%"), None),
            (None, Some("70%"), true, Some("90%"), Some("70%")),
        ];
        for &(t, s, limited, want_t, want_s) in cases {
            let r = resolve(given(t), given(s), limited, gib);
            assert_eq!(
                (r.threshold.as_deref(), r.soft.as_deref()),
                (want_t, want_s),
                "{t:?} {s:?} {limited}"
            );
        }
        let r = resolve(Given::Unset, Given::Unset, false, gib);
        assert!(
            r.notes[0].contains("no cgroup memory limit"),
            "{:?}",
            r.notes
        );
    }
}
