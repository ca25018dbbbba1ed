//! Configuration: thresholds, interval, signal, and the `MEMWATCH_*` variables.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// The default poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest poll interval honoured. Shorter values are raised to this
/// floor, because one jemalloc `epoch` costs tens of microseconds with
/// populated arenas and has a millisecond tail under allocation churn.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The default [`Config::max_stats_age`].
pub const DEFAULT_MAX_STATS_AGE: Duration = Duration::from_millis(100);

/// A byte amount, either absolute or relative to the effective memory limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A fraction in `(0, 1]` of the effective limit (see [`crate::Limits`]).
    Fraction(f64),
}

impl Threshold {
    /// True when the threshold means "off" (zero bytes or a zero fraction).
    pub fn is_zero(&self) -> bool {
        match *self {
            Threshold::Bytes(b) => b == 0,
            Threshold::Fraction(f) => f == 0.0,
        }
    }

    /// Resolves the threshold to bytes against `limit`.
    ///
    /// # Errors
    ///
    /// [`Error::NoLimit`] for a fraction when `limit` is `None`.
    pub fn resolve(&self, limit: Option<u64>) -> Result<u64> {
        match *self {
            Threshold::Bytes(b) => Ok(b),
            Threshold::Fraction(f) => {
                let limit = limit.ok_or(Error::NoLimit)?;
                // The product is at most `limit` because f <= 1, so the cast
                // cannot overflow.
                Ok((limit as f64 * f) as u64)
            }
        }
    }

    fn check(&self, field: &'static str) -> Result<()> {
        match *self {
            Threshold::Bytes(_) => Ok(()),
            Threshold::Fraction(f) if f.is_finite() && (0.0..=1.0).contains(&f) => Ok(()),
            Threshold::Fraction(f) => Err(Error::InvalidConfig {
                field,
                reason: format!("fraction {f} is not within 0..=1"),
            }),
        }
    }
}

impl FromStr for Threshold {
    type Err = String;

    /// Parses `80%` (a fraction of the effective limit) or a size such as
    /// `2GiB`, `512MiB`, `1500000000` (bytes, via `bytesize`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(pct) = s.strip_suffix('%') {
            let p: f64 = pct
                .trim()
                .parse()
                .map_err(|e| format!("{pct:?} is not a percentage: {e}"))?;
            if !p.is_finite() || !(0.0..=100.0).contains(&p) {
                return Err(format!("percentage {p} is not within 0..=100"));
            }
            return Ok(Threshold::Fraction(p / 100.0));
        }
        let size: bytesize::ByteSize = s.parse()?;
        // bytesize saturates on overflow, so the maximum value can only come
        // from an input that does not fit in 64 bits.
        if size.as_u64() == u64::MAX {
            return Err(format!("{s:?} overflows a 64-bit byte count"));
        }
        Ok(Threshold::Bytes(size.as_u64()))
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Threshold::Bytes(b) => write!(f, "{}", bytesize::ByteSize(b).display().iec()),
            Threshold::Fraction(x) => write!(f, "{}%", x * 100.0),
        }
    }
}

/// Which memory figure is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// jemalloc `stats.resident` when jemalloc is the verified global
    /// allocator, otherwise process RSS (with a loud warning).
    Auto,
    /// jemalloc `stats.resident`: active, metadata and unused dirty pages.
    /// Dirty pages are purged and the figure re-read before firing.
    JemallocResident,
    /// jemalloc `stats.active`: pages holding live allocations.
    JemallocActive,
    /// jemalloc `stats.allocated`: bytes the application holds.
    JemallocAllocated,
    /// Process resident set size from `/proc/self/statm`.
    Rss,
    /// The cgroup's working set: `memory.current` minus `inactive_file`
    /// (v1: `memory.usage_in_bytes` minus `total_inactive_file`).
    CgroupWorkingSet,
}

impl Signal {
    /// The name used in logs, metrics and `MEMWATCH_SIGNAL`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Signal::Auto => "auto",
            Signal::JemallocResident => "jemalloc-resident",
            Signal::JemallocActive => "jemalloc-active",
            Signal::JemallocAllocated => "jemalloc-allocated",
            Signal::Rss => "rss",
            Signal::CgroupWorkingSet => "cgroup-working-set",
        }
    }

    /// True for the signals read from jemalloc.
    pub fn is_jemalloc(&self) -> bool {
        matches!(
            self,
            Signal::JemallocResident | Signal::JemallocActive | Signal::JemallocAllocated
        )
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Signal {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let all = [
            Signal::Auto,
            Signal::JemallocResident,
            Signal::JemallocActive,
            Signal::JemallocAllocated,
            Signal::Rss,
            Signal::CgroupWorkingSet,
        ];
        let s = s.trim();
        all.into_iter()
            .find(|sig| sig.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = all.iter().map(Signal::as_str).collect();
                format!("unknown signal {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// Watchdog configuration. Build it as
/// `Config { threshold: Some(Threshold::Fraction(0.9)), ..Default::default() }`
/// or read it with [`Config::from_env`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The level at which the token is cancelled. `None` or zero disables the
    /// watchdog entirely: [`Watcher::new`](crate::Watcher::new) returns `None`
    /// and no thread or task exists.
    ///
    /// Default: `None` (off).
    pub threshold: Option<Threshold>,
    /// The soft level: at or above it [`Level::Elevated`](crate::Level) is
    /// published so that admission control can shed load. It must resolve
    /// below the threshold.
    ///
    /// Default: `None` (no soft level).
    pub soft: Option<Threshold>,
    /// How far below the soft level usage must fall, as a fraction of the
    /// resolved threshold, before the level returns to normal. This keeps
    /// the level from flapping around the soft line.
    ///
    /// Default: `0.05`.
    pub hysteresis: f64,
    /// An explicit memory limit in bytes. The effective limit is the smallest
    /// of this, the cgroup limits and physical memory.
    ///
    /// Default: `None`.
    pub limit: Option<u64>,
    /// Time between samples. Values below [`MIN_POLL_INTERVAL`] are raised to
    /// it; the effective value is the one logged at start.
    ///
    /// Default: 1 s.
    pub poll_interval: Duration,
    /// The figure compared with the threshold.
    ///
    /// Default: [`Signal::Auto`].
    pub signal: Signal,
    /// The longest time ticks may be answered by the source's cheap upper
    /// bound ([`MemorySource::upper_bound`](crate::MemorySource::upper_bound))
    /// instead of a full sample.
    ///
    /// For jemalloc signals a full sample advances jemalloc's `epoch`, which
    /// walks every arena (about 5 µs idle, 35–150 µs with eight busy
    /// arenas). At intervals shorter than this age, a tick whose bound
    /// (`stats.resident` at the last full sample plus every rise of RSS
    /// since, one `pread`) is below the soft level (or the threshold) and
    /// the level is normal skips that walk. Memory that becomes resident is
    /// thus still seen within one interval; address space handed out but
    /// never touched is seen within this age. Zero takes a full sample at
    /// every tick; at intervals of this age or longer every tick is a full
    /// sample anyway.
    ///
    /// Default: 100 ms.
    pub max_stats_age: Duration,
    /// Purge jemalloc's dirty pages and re-sample before firing on
    /// [`Signal::JemallocResident`].
    ///
    /// Default: `true`.
    pub purge_before_fire: bool,
    /// Files whose modification makes the spawned thread check at once
    /// instead of at the next tick (inotify `IN_MODIFY`; at most one extra
    /// check per [`MIN_POLL_INTERVAL`], always a full sample).
    ///
    /// Default: `None`, meaning the `memory.events` file of every cgroup v2
    /// directory from the process's cgroup up to the root, which the kernel
    /// modifies when a cgroup reaches `memory.high` or `memory.max` or runs
    /// the OOM killer. `Some(vec![])` watches nothing. Only
    /// [`Watcher::spawn`](crate::Watcher::spawn) watches; [`Watcher::run`](crate::Watcher::run) polls.
    pub wake_files: Option<Vec<PathBuf>>,
    /// The time an orderly shutdown needs. When set, the watchdog also fires
    /// when memory grows fast enough to reach the threshold within this
    /// budget: `used + rate × budget >= threshold`, where `rate` is the
    /// growth sustained over the last `max(8 × poll interval, 1 s)` (the
    /// smaller of the rates of the window's two halves, so that one jump
    /// does not project a crossing). A shutdown then starts while it can
    /// still finish, instead of at a line that fast growth passes within
    /// one interval.
    ///
    /// Default: `None` (fire at the threshold only).
    pub shutdown_budget: Option<Duration>,
    /// Where to write a diagnostics bundle when the watchdog fires: one JSON
    /// file `memwatch-<unix ms>-<pid>.json` with the firing sample, every
    /// signal, the limits, the recent samples and jemalloc's own statistics
    /// (`malloc_stats_print` in JSON), written and fsynced before the token
    /// is cancelled. The directory keeps the newest
    /// [`DIAGNOSTICS_KEEP`](crate::DIAGNOSTICS_KEEP) bundles.
    ///
    /// Default: `None` (no bundle).
    pub diagnostics_dir: Option<PathBuf>,
    /// Also write a jemalloc heap profile (jemalloc's own `prof.dump`, read
    /// by `jeprof` and pprof tools) into [`Config::diagnostics_dir`] when
    /// the level turns [`Level::Elevated`](crate::Level) and when the
    /// watchdog fires, named `memwatch-<unix ms>-<pid>-elevated.heap` and
    /// `…-fired.heap`; the firing bundle names its profile. The directory
    /// keeps the newest [`DIAGNOSTICS_KEEP`](crate::DIAGNOSTICS_KEEP)
    /// profiles.
    ///
    /// This needs jemalloc built with profiling (the `heap-profile` crate
    /// feature), jemalloc as the global allocator and `prof:true` in
    /// jemalloc's start-up options (`_RJEM_MALLOC_CONF=prof:true` or a
    /// `_rjem_malloc_conf` symbol in the binary). When any of these is
    /// missing the watcher logs why at error level once when it is built,
    /// writes no profile and puts the reason in the bundle's
    /// `heap_profile.error`. It needs `diagnostics_dir`.
    ///
    /// A profile is written by the check that saw the change, on the
    /// spawned thread (or the task polling [`Watcher::run`](crate::Watcher::run)),
    /// which waits for it: milliseconds per profile (see the README).
    ///
    /// Default: `false`.
    pub heap_profile: bool,
    /// Opt-in deadline: if the process is still running this long after the
    /// watchdog fired, a dedicated thread calls `std::process::exit` with
    /// [`EXIT_CODE_MEMORY_PRESSURE`](crate::EXIT_CODE_MEMORY_PRESSURE).
    ///
    /// Default: `None` (never exit on the caller's behalf).
    pub exit_deadline: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: None,
            soft: None,
            hysteresis: 0.05,
            limit: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            signal: Signal::Auto,
            max_stats_age: DEFAULT_MAX_STATS_AGE,
            purge_before_fire: true,
            wake_files: None,
            shutdown_budget: None,
            diagnostics_dir: None,
            heap_profile: false,
            exit_deadline: None,
        }
    }
}

/// The environment variables read by [`Config::from_env`].
pub mod env {
    /// Threshold: a size (`2GiB`, `1500MB`, bytes) or a percentage of the
    /// effective limit (`80%`). Unset, empty or zero: the watchdog is off.
    pub const THRESHOLD: &str = "MEMWATCH_THRESHOLD";
    /// Soft level, same syntax as the threshold.
    pub const SOFT_THRESHOLD: &str = "MEMWATCH_SOFT_THRESHOLD";
    /// Hysteresis as a percentage of the threshold (`5%`).
    pub const HYSTERESIS: &str = "MEMWATCH_HYSTERESIS";
    /// Explicit memory limit, a size.
    pub const LIMIT: &str = "MEMWATCH_LIMIT";
    /// Poll interval, a duration (`500ms`, `2s`).
    pub const POLL_INTERVAL: &str = "MEMWATCH_POLL_INTERVAL";
    /// Signal name: `auto`, `jemalloc-resident`, `jemalloc-active`,
    /// `jemalloc-allocated`, `rss`, `cgroup-working-set`.
    pub const SIGNAL: &str = "MEMWATCH_SIGNAL";
    /// The longest a tick may go without a full sample, a duration
    /// (`100ms`; `0` = a full sample at every tick).
    pub const MAX_STATS_AGE: &str = "MEMWATCH_MAX_STATS_AGE";
    /// `true` or `false`: purge jemalloc before firing.
    pub const PURGE: &str = "MEMWATCH_PURGE";
    /// `true` (default) or `false`: check at once when a cgroup's
    /// `memory.events` changes.
    pub const CGROUP_EVENTS: &str = "MEMWATCH_CGROUP_EVENTS";
    /// Shutdown budget, a duration (`5s`): also fire when sustained growth
    /// would reach the threshold within it. Unset or `0`: threshold only.
    pub const SHUTDOWN_BUDGET: &str = "MEMWATCH_SHUTDOWN_BUDGET";
    /// Directory for the diagnostics bundle written when firing. Unset: none.
    pub const DIAGNOSTICS_DIR: &str = "MEMWATCH_DIAGNOSTICS_DIR";
    /// Write jemalloc heap profiles beside the diagnostics bundles (`true`);
    /// see [`Config::heap_profile`](crate::Config::heap_profile).
    pub const HEAP_PROFILE: &str = "MEMWATCH_HEAP_PROFILE";
    /// Exit deadline after firing, a duration (`30s`). Unset: no deadline.
    pub const EXIT_DEADLINE: &str = "MEMWATCH_EXIT_DEADLINE";
}

impl Config {
    /// The poll interval actually used: the configured one, raised to
    /// [`MIN_POLL_INTERVAL`].
    pub fn effective_poll_interval(&self) -> Duration {
        self.poll_interval.max(MIN_POLL_INTERVAL)
    }

    /// True when a non-zero threshold is set.
    pub fn is_enabled(&self) -> bool {
        self.threshold.is_some_and(|t| !t.is_zero())
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.threshold {
            t.check("threshold")?;
        }
        if let Some(s) = &self.soft {
            s.check("soft")?;
            if let (Some(t), Threshold::Fraction(sf)) = (&self.threshold, s) {
                if let Threshold::Fraction(tf) = t {
                    if sf >= tf {
                        return Err(Error::InvalidConfig {
                            field: "soft",
                            reason: format!("soft level {s} is not below the threshold {t}"),
                        });
                    }
                }
            }
            if let (Some(Threshold::Bytes(tb)), Threshold::Bytes(sb)) = (&self.threshold, s) {
                if sb >= tb && *tb != 0 {
                    return Err(Error::InvalidConfig {
                        field: "soft",
                        reason: format!(
                            "soft level {s} is not below the threshold {}",
                            Threshold::Bytes(*tb)
                        ),
                    });
                }
            }
        }
        if !self.hysteresis.is_finite() || !(0.0..1.0).contains(&self.hysteresis) {
            return Err(Error::InvalidConfig {
                field: "hysteresis",
                reason: format!("{} is not within 0..1", self.hysteresis),
            });
        }
        if self.limit == Some(0) {
            return Err(Error::InvalidConfig {
                field: "limit",
                reason: "a zero limit cannot be met; leave it unset instead".into(),
            });
        }
        if self.poll_interval.is_zero() {
            return Err(Error::InvalidConfig {
                field: "poll_interval",
                reason: "must be positive".into(),
            });
        }
        if self.shutdown_budget.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidConfig {
                field: "shutdown_budget",
                reason: "a zero budget projects nothing; leave it unset instead".into(),
            });
        }
        if self.heap_profile && self.diagnostics_dir.is_none() {
            return Err(Error::InvalidConfig {
                field: "heap_profile",
                reason: "heap profiles are written into diagnostics_dir, which is unset".into(),
            });
        }
        if self.exit_deadline.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidConfig {
                field: "exit_deadline",
                reason: "a zero deadline would exit before any shutdown; leave it unset instead"
                    .into(),
            });
        }
        Ok(())
    }

    /// Reads the `MEMWATCH_*` variables listed in [`env`](mod@env) from the process
    /// environment. Unset variables keep their [`Default`] values, so with
    /// `MEMWATCH_THRESHOLD` unset the result is disabled.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEnv`] for any value that does not parse or overflows,
    /// and [`Error::InvalidConfig`] if the combination fails [`Config::validate`].
    pub fn from_env() -> Result<Config> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Like [`Config::from_env`], reading variables through `lookup`, so that
    /// callers (and tests) can supply their own environment.
    ///
    /// # Errors
    ///
    /// As for [`Config::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        fn get(lookup: &impl Fn(&str) -> Option<String>, var: &'static str) -> Option<String> {
            lookup(var).filter(|v| !v.trim().is_empty())
        }
        fn bad(var: &'static str, value: &str, reason: impl Into<String>) -> Error {
            Error::InvalidEnv {
                var,
                value: value.to_owned(),
                reason: reason.into(),
            }
        }
        fn duration(var: &'static str, value: &str) -> Result<Duration> {
            humantime::parse_duration(value.trim()).map_err(|e| bad(var, value, e.to_string()))
        }

        let mut cfg = Config::default();
        if let Some(v) = get(&lookup, env::THRESHOLD) {
            let t: Threshold = v.parse().map_err(|e: String| bad(env::THRESHOLD, &v, e))?;
            cfg.threshold = (!t.is_zero()).then_some(t);
        }
        if let Some(v) = get(&lookup, env::SOFT_THRESHOLD) {
            let t: Threshold = v
                .parse()
                .map_err(|e: String| bad(env::SOFT_THRESHOLD, &v, e))?;
            cfg.soft = (!t.is_zero()).then_some(t);
        }
        if let Some(v) = get(&lookup, env::HYSTERESIS) {
            match v.parse::<Threshold>() {
                Ok(Threshold::Fraction(f)) if f < 1.0 => cfg.hysteresis = f,
                Ok(_) => return Err(bad(env::HYSTERESIS, &v, "expected a percentage below 100%")),
                Err(e) => return Err(bad(env::HYSTERESIS, &v, e)),
            }
        }
        if let Some(v) = get(&lookup, env::LIMIT) {
            match v.parse::<Threshold>() {
                Ok(Threshold::Bytes(b)) if b > 0 => cfg.limit = Some(b),
                Ok(_) => return Err(bad(env::LIMIT, &v, "expected a positive size such as 4GiB")),
                Err(e) => return Err(bad(env::LIMIT, &v, e)),
            }
        }
        if let Some(v) = get(&lookup, env::POLL_INTERVAL) {
            let d = duration(env::POLL_INTERVAL, &v)?;
            if d.is_zero() {
                return Err(bad(env::POLL_INTERVAL, &v, "must be positive"));
            }
            cfg.poll_interval = d;
        }
        if let Some(v) = get(&lookup, env::SIGNAL) {
            cfg.signal = v.parse().map_err(|e: String| bad(env::SIGNAL, &v, e))?;
        }
        if let Some(v) = get(&lookup, env::MAX_STATS_AGE) {
            cfg.max_stats_age = duration(env::MAX_STATS_AGE, &v)?;
        }
        fn boolean(var: &'static str, value: &str) -> Result<bool> {
            match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(bad(var, value, "expected true or false")),
            }
        }
        if let Some(v) = get(&lookup, env::PURGE) {
            cfg.purge_before_fire = boolean(env::PURGE, &v)?;
        }
        if let Some(v) = get(&lookup, env::CGROUP_EVENTS) {
            if !boolean(env::CGROUP_EVENTS, &v)? {
                cfg.wake_files = Some(Vec::new());
            }
        }
        if let Some(v) = get(&lookup, env::SHUTDOWN_BUDGET) {
            let d = duration(env::SHUTDOWN_BUDGET, &v)?;
            cfg.shutdown_budget = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = get(&lookup, env::DIAGNOSTICS_DIR) {
            cfg.diagnostics_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get(&lookup, env::HEAP_PROFILE) {
            cfg.heap_profile = boolean(env::HEAP_PROFILE, &v)?;
        }
        if let Some(v) = get(&lookup, env::EXIT_DEADLINE) {
            let d = duration(env::EXIT_DEADLINE, &v)?;
            cfg.exit_deadline = (!d.is_zero()).then_some(d);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn unset_and_zero_are_off() {
        for pairs in [
            &[][..],
            &[("MEMWATCH_THRESHOLD", "0")][..],
            &[("MEMWATCH_THRESHOLD", "  ")][..],
        ] {
            let cfg = Config::from_lookup(env_of(pairs)).unwrap();
            assert!(!cfg.is_enabled(), "{pairs:?}");
        }
    }

    #[test]
    fn parses_documented_forms() {
        let cfg = Config::from_lookup(env_of(&[
            ("MEMWATCH_THRESHOLD", "2GiB"),
            ("MEMWATCH_SOFT_THRESHOLD", "1.5GiB"),
            ("MEMWATCH_POLL_INTERVAL", "500ms"),
            ("MEMWATCH_SIGNAL", "rss"),
            ("MEMWATCH_EXIT_DEADLINE", "30s"),
            ("MEMWATCH_HYSTERESIS", "10%"),
            ("MEMWATCH_LIMIT", "4GiB"),
            ("MEMWATCH_PURGE", "false"),
            ("MEMWATCH_MAX_STATS_AGE", "0"),
            ("MEMWATCH_DIAGNOSTICS_DIR", "/var/lib/app/memwatch"),
            ("MEMWATCH_SHUTDOWN_BUDGET", "5s"),
            ("MEMWATCH_CGROUP_EVENTS", "off"),
            ("MEMWATCH_HEAP_PROFILE", "true"),
        ]))
        .unwrap();
        assert!(cfg.heap_profile);
        assert!(!Config::default().heap_profile);
        assert_eq!(cfg.threshold, Some(Threshold::Bytes(2 << 30)));
        assert_eq!(cfg.soft, Some(Threshold::Bytes(3 << 29)));
        assert_eq!(cfg.poll_interval, Duration::from_millis(500));
        assert_eq!(cfg.signal, Signal::Rss);
        assert_eq!(cfg.exit_deadline, Some(Duration::from_secs(30)));
        assert_eq!(cfg.hysteresis, 0.1);
        assert_eq!(cfg.limit, Some(4 << 30));
        assert!(!cfg.purge_before_fire);
        assert_eq!(cfg.max_stats_age, Duration::ZERO);
        assert_eq!(cfg.shutdown_budget, Some(Duration::from_secs(5)));
        assert_eq!(cfg.wake_files, Some(Vec::new()));
        assert_eq!(Config::default().wake_files, None);
        assert_eq!(
            cfg.diagnostics_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/app/memwatch"))
        );
        assert_eq!(Config::default().max_stats_age, DEFAULT_MAX_STATS_AGE);

        let cfg = Config::from_lookup(env_of(&[("MEMWATCH_THRESHOLD", "80%")])).unwrap();
        assert_eq!(cfg.threshold, Some(Threshold::Fraction(0.8)));
    }

    #[test]
    fn invalid_values_are_errors_not_silence() {
        let cases: &[(&str, &str)] = &[
            ("MEMWATCH_THRESHOLD", "lots"),
            ("MEMWATCH_THRESHOLD", "99999999999EiB"),
            ("MEMWATCH_THRESHOLD", "150%"),
            ("MEMWATCH_THRESHOLD", "-3%"),
            ("MEMWATCH_POLL_INTERVAL", "soon"),
            ("MEMWATCH_POLL_INTERVAL", "0s"),
            ("MEMWATCH_SIGNAL", "heap"),
            ("MEMWATCH_PURGE", "maybe"),
            ("MEMWATCH_LIMIT", "50%"),
            ("MEMWATCH_HYSTERESIS", "1GiB"),
            ("MEMWATCH_MAX_STATS_AGE", "often"),
            ("MEMWATCH_SHUTDOWN_BUDGET", "soon"),
            ("MEMWATCH_CGROUP_EVENTS", "sometimes"),
            ("MEMWATCH_HEAP_PROFILE", "perhaps"),
        ];
        for &(var, value) in cases {
            // The bad pair comes first so that it wins over the valid threshold.
            match Config::from_lookup(env_of(&[(var, value), ("MEMWATCH_THRESHOLD", "1GiB")])) {
                Err(Error::InvalidEnv { var: v, .. }) => assert_eq!(v, var, "{var}={value}"),
                other => panic!("{var}={value}: expected InvalidEnv, got {other:?}"),
            }
        }
    }

    #[test]
    fn heap_profiles_need_a_diagnostics_dir() {
        let err = Config::from_lookup(env_of(&[
            ("MEMWATCH_THRESHOLD", "1GiB"),
            ("MEMWATCH_HEAP_PROFILE", "on"),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "heap_profile",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn soft_must_be_below_threshold() {
        let err = Config::from_lookup(env_of(&[
            ("MEMWATCH_THRESHOLD", "1GiB"),
            ("MEMWATCH_SOFT_THRESHOLD", "2GiB"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { field: "soft", .. }),
            "{err}"
        );
    }

    #[test]
    fn poll_interval_floor() {
        let cfg = Config {
            poll_interval: Duration::from_millis(1),
            ..Default::default()
        };
        assert_eq!(cfg.effective_poll_interval(), MIN_POLL_INTERVAL);
        assert_eq!(
            Config::default().effective_poll_interval(),
            Duration::from_secs(1)
        );
    }
}
