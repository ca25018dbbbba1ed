//! The diagnostics bundle written when the watchdog fires: what memory looked
//! like, where the limits were, the recent samples and the allocator's own
//! report, in one JSON file that outlives the process.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::cgroup::Limits;
use crate::config::Signal;
use crate::growth::{unix_ms, History};
use crate::source::{Readings, Sample};

/// How many bundles a diagnostics directory keeps: the newest ones, so that a
/// crash loop cannot fill the disk.
pub const DIAGNOSTICS_KEEP: usize = 8;

/// The largest allocator report put in a bundle. jemalloc's JSON report
/// grows with the number of arenas (tens to hundreds of KiB is usual); a
/// larger one is left out and the bundle says so.
pub const MAX_ALLOCATOR_REPORT: usize = 4 << 20;

/// Everything a bundle reports, gathered by the watcher when it fires.
pub(crate) struct Bundle<'a> {
    pub signal: Signal,
    pub degraded: Option<&'a str>,
    /// `threshold` or `projected`.
    pub reason: &'static str,
    pub growth_bytes_per_sec: Option<f64>,
    pub sample: Sample,
    pub all: Readings,
    pub threshold: u64,
    pub soft: Option<u64>,
    pub limits: Limits,
    pub interval_ms: u64,
    pub samples: u64,
    pub estimates: u64,
    pub purges: u64,
    pub history: &'a History,
    pub allocator: Option<String>,
    /// The heap profile written for this firing, or why none was; `None`
    /// when heap profiles were not requested.
    pub heap_profile: Option<Result<PathBuf, String>>,
}

impl Bundle<'_> {
    /// The bundle as one JSON document.
    fn to_json(&self, now_ms: u64) -> String {
        let je = self.all.jemalloc;
        let doc = serde_json::json!({
            "format": 1,
            "time_unix_ms": now_ms,
            "pid": std::process::id(),
            "signal": self.signal.as_str(),
            "degraded": self.degraded,
            "reason": self.reason,
            "growth_bytes_per_sec": self.growth_bytes_per_sec,
            "used_bytes": self.sample.used,
            "threshold_bytes": self.threshold,
            "soft_bytes": self.soft,
            "limits": {
                "effective_bytes": self.limits.effective(),
                "configured_bytes": self.limits.configured,
                "cgroup_bytes": self.limits.cgroup,
                "physical_bytes": self.limits.physical,
            },
            "poll_interval_ms": self.interval_ms,
            "readings": {
                "rss_bytes": self.all.rss,
                "cgroup_working_set_bytes": self.all.cgroup_working_set,
                "jemalloc": je.map(|j| serde_json::json!({
                    "allocated_bytes": j.allocated,
                    "active_bytes": j.active,
                    "resident_bytes": j.resident,
                    "mapped_bytes": j.mapped,
                    "retained_bytes": j.retained,
                })),
            },
            "samples": self.samples,
            "estimates": self.estimates,
            "purges": self.purges,
            "history": self.history.iter().map(|p| [p.unix_ms, p.used]).collect::<Vec<_>>(),
            "heap_profile": self.heap_profile.as_ref().map(|r| match r {
                Ok(path) => serde_json::json!({ "path": path.display().to_string(), "error": null }),
                Err(reason) => serde_json::json!({ "path": null, "error": reason }),
            }),
        });
        let mut text = doc.to_string();
        // The allocator's report is JSON already; it goes in as it is rather
        // than through a parse and a second serialization.
        text.pop(); // the closing brace
        match &self.allocator {
            Some(r) if r.len() <= MAX_ALLOCATOR_REPORT => {
                text.push_str(",\"allocator\":");
                text.push_str(r);
            }
            Some(r) => {
                text.push_str(&format!(
                    ",\"allocator\":null,\"allocator_omitted\":\"{} bytes, over the {} byte cap\"",
                    r.len(),
                    MAX_ALLOCATOR_REPORT
                ));
            }
            None => text.push_str(",\"allocator\":null"),
        }
        text.push('}');
        text
    }

    /// Writes the bundle into `dir` (created if missing) as
    /// `memwatch-<unix ms>-<pid>.json`, durably (temporary file, fsync,
    /// rename, fsync of the directory), then removes all but the newest
    /// [`DIAGNOSTICS_KEEP`] bundles. Returns the bundle's path.
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let now = unix_ms();
        fs::create_dir_all(dir)?;
        // Thirteen digits of milliseconds last until the year 2286, so names
        // sort by time.
        let name = format!("memwatch-{now:013}-{}.json", std::process::id());
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(self.to_json(now).as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        prune(dir, DIAGNOSTICS_KEEP, ".json")?;
        Ok(path)
    }
}

/// Removes all but the newest `keep` files of `dir` named
/// `memwatch-*<suffix>` (bundles, or heap profiles).
pub(crate) fn prune(dir: &Path, keep: usize, suffix: &str) -> std::io::Result<()> {
    let mut bundles: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("memwatch-") && n.ends_with(suffix))
        })
        .collect();
    bundles.sort();
    let excess = bundles.len().saturating_sub(keep);
    for old in &bundles[..excess] {
        fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for t in 1..=11u64 {
            fs::write(dir.path().join(format!("memwatch-{t:013}-1.json")), "{}").unwrap();
        }
        fs::write(dir.path().join("other.json"), "{}").unwrap();
        fs::write(dir.path().join("memwatch-0000000000001-1-fired.heap"), "").unwrap();
        prune(dir.path(), 8, ".json").unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 10, "{left:?}");
        assert_eq!(left[0], "memwatch-0000000000001-1-fired.heap");
        assert_eq!(left[1], "memwatch-0000000000004-1.json");
        assert_eq!(left[9], "other.json");

        // Heap profiles are pruned on their own, and bundles are left alone.
        for t in 2..=10u64 {
            fs::write(
                dir.path().join(format!("memwatch-{t:013}-1-elevated.heap")),
                "",
            )
            .unwrap();
        }
        prune(dir.path(), 8, ".heap").unwrap();
        let heaps: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".heap"))
            .collect();
        assert_eq!(heaps.len(), 8, "{heaps:?}");
        assert!(!heaps.iter().any(|n| n.contains("-0000000000001-")));
        assert!(!heaps.iter().any(|n| n.contains("-0000000000002-")));
        let bundles = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
            })
            .count();
        assert_eq!(bundles, 9);
    }

    #[test]
    fn an_oversized_allocator_report_is_left_out() {
        let history = History::default();
        let mut b = Bundle {
            signal: Signal::Rss,
            degraded: None,
            reason: "threshold",
            growth_bytes_per_sec: None,
            sample: Sample::default(),
            all: Readings::default(),
            threshold: 1,
            soft: None,
            limits: Limits::default(),
            interval_ms: 1000,
            samples: 1,
            estimates: 0,
            purges: 0,
            history: &history,
            allocator: Some(format!("[{}1]", "1,".repeat(MAX_ALLOCATOR_REPORT))),
            heap_profile: None,
        };
        let v: serde_json::Value = serde_json::from_str(&b.to_json(5)).unwrap();
        assert!(v["allocator"].is_null());
        assert!(v["allocator_omitted"].as_str().unwrap().contains("cap"));
        b.allocator = Some("{\"a\":1}".into());
        let v: serde_json::Value = serde_json::from_str(&b.to_json(5)).unwrap();
        assert_eq!(v["allocator"]["a"], 1);
        assert_eq!(v["time_unix_ms"], 5);
        assert!(v["heap_profile"].is_null());
        b.heap_profile = Some(Err("off".into()));
        let v: serde_json::Value = serde_json::from_str(&b.to_json(5)).unwrap();
        assert_eq!(v["heap_profile"]["error"], "off");
        assert!(v["heap_profile"]["path"].is_null());
        b.heap_profile = Some(Ok(PathBuf::from("/d/memwatch-1-2-fired.heap")));
        let v: serde_json::Value = serde_json::from_str(&b.to_json(5)).unwrap();
        assert_eq!(v["heap_profile"]["path"], "/d/memwatch-1-2-fired.heap");
    }
}
