//! Memory limits: cgroup v1 and v2 discovery along the process's cgroup
//! ancestry, and physical memory.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Where the kernel's cgroup information lives. Tests point these at fixture
/// directories; production code uses [`CgroupRoots::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoots {
    /// The file listing the process's cgroups.
    ///
    /// Default: `/proc/self/cgroup`.
    pub proc_self_cgroup: PathBuf,
    /// Where the cgroup file systems are mounted: the v2 hierarchy itself, or
    /// the parent of the v1 `memory` hierarchy.
    ///
    /// Default: `/sys/fs/cgroup`.
    pub mount: PathBuf,
}

impl Default for CgroupRoots {
    fn default() -> Self {
        CgroupRoots {
            proc_self_cgroup: PathBuf::from("/proc/self/cgroup"),
            mount: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// The cgroup hierarchy version holding the memory controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The legacy per-controller hierarchy (`memory.limit_in_bytes`).
    V1,
    /// The unified hierarchy (`memory.max`, `memory.high`).
    V2,
}

/// The process's memory cgroup: its version and its directory chain from
/// the leaf up to the hierarchy root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// Which hierarchy the memory controller is on.
    pub version: CgroupVersion,
    /// Directories from the process's own cgroup up to the hierarchy root.
    /// Entries that do not exist (for example when the cgroup namespace hides
    /// the path) are kept; reads of their files are skipped.
    pub chain: Vec<PathBuf>,
}

/// Values at or above this in cgroup v1 limit files mean "unlimited" (the
/// kernel reports `PAGE_COUNTER_MAX` pages rounded to bytes, about 2^63).
const V1_UNLIMITED: u64 = 1 << 62;

impl Cgroup {
    /// Discovers the process's memory cgroup from the standard locations.
    ///
    /// # Errors
    ///
    /// As for [`Cgroup::discover_at`].
    pub fn discover() -> Result<Option<Cgroup>> {
        Self::discover_at(&CgroupRoots::default())
    }

    /// Discovers the memory cgroup from `roots`. Returns `None` when there
    /// is no cgroup file or no memory controller is mounted.
    ///
    /// A v1 `memory` controller line wins when `<mount>/memory` exists (a
    /// hybrid host keeps the controller there); otherwise the `0::` line is
    /// used when `<mount>/cgroup.controllers` exists.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the cgroup file exists but cannot be read,
    /// [`Error::Corrupt`] if a line lacks its `id:controllers:path` fields.
    pub fn discover_at(roots: &CgroupRoots) -> Result<Option<Cgroup>> {
        let text = match fs::read_to_string(&roots.proc_self_cgroup) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    path: roots.proc_self_cgroup.clone(),
                    source,
                })
            }
        };
        let mut v1 = None;
        let mut v2 = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(Error::Corrupt {
                    path: roots.proc_self_cgroup.clone(),
                    reason: format!("line {line:?} is not id:controllers:path"),
                });
            };
            if id == "0" && controllers.is_empty() {
                v2 = Some(path.to_owned());
            } else if controllers.split(',').any(|c| c == "memory") {
                v1 = Some(path.to_owned());
            }
        }
        let v1_mount = roots.mount.join("memory");
        if let Some(path) = v1.filter(|_| v1_mount.is_dir()) {
            return Ok(Some(Cgroup {
                version: CgroupVersion::V1,
                chain: chain(&v1_mount, &path),
            }));
        }
        if let Some(path) = v2.filter(|_| roots.mount.join("cgroup.controllers").is_file()) {
            return Ok(Some(Cgroup {
                version: CgroupVersion::V2,
                chain: chain(&roots.mount, &path),
            }));
        }
        Ok(None)
    }

    /// The smallest limit along the chain: `memory.max` and `memory.high`
    /// (v2) or `memory.limit_in_bytes` (v1). `max` and the v1 "unlimited"
    /// sentinel count as no limit; missing files are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for an unreadable file, [`Error::Corrupt`] for a value
    /// that is not a number.
    pub fn limit(&self) -> Result<Option<u64>> {
        let files: &[&str] = match self.version {
            CgroupVersion::V1 => &["memory.limit_in_bytes"],
            CgroupVersion::V2 => &["memory.max", "memory.high"],
        };
        let mut best: Option<u64> = None;
        for dir in &self.chain {
            for name in files {
                let path = dir.join(name);
                let Some(value) = read_limit(&path)? else {
                    continue;
                };
                if self.version == CgroupVersion::V1 && value >= V1_UNLIMITED {
                    continue;
                }
                best = Some(best.map_or(value, |b| b.min(value)));
            }
        }
        Ok(best)
    }

    /// The `memory.events` files of a cgroup v2 chain, leaf first: the kernel
    /// modifies one when its cgroup reaches `memory.high` or `memory.max` or
    /// runs the OOM killer. Empty for cgroup v1, which has no such file.
    pub fn events_files(&self) -> Vec<PathBuf> {
        if self.version != CgroupVersion::V2 {
            return Vec::new();
        }
        self.chain
            .iter()
            .map(|d| d.join("memory.events"))
            .filter(|f| f.is_file())
            .collect()
    }

    /// The files the working-set signal reads: the usage file and the stat
    /// file of the nearest directory in the chain that has them, and the
    /// `memory.stat` key holding inactive page cache.
    pub fn working_set_files(&self) -> Option<(PathBuf, PathBuf, &'static str)> {
        let (usage, key) = match self.version {
            CgroupVersion::V1 => ("memory.usage_in_bytes", "total_inactive_file"),
            CgroupVersion::V2 => ("memory.current", "inactive_file"),
        };
        self.chain
            .iter()
            .find(|d| d.join(usage).is_file() && d.join("memory.stat").is_file())
            .map(|d| (d.join(usage), d.join("memory.stat"), key))
    }
}

/// The directories from `mount/path` up to `mount`. A path that climbs out
/// of the namespace (`/../..`, seen when the cgroup namespace root is below
/// the process's cgroup) cannot be mapped, so only the mount root is used.
fn chain(mount: &Path, path: &str) -> Vec<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return vec![mount.to_path_buf()];
    }
    rel.ancestors().map(|a| mount.join(a)).collect()
}

fn read_limit(path: &Path) -> Result<Option<u64>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        reason: format!("{text:?} is not a byte count: {e}"),
    })
}

/// Physical memory in bytes, from `sysconf`.
pub fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || page <= 0 {
        return None;
    }
    (pages as u64).checked_mul(page as u64)
}

/// The inputs of the effective memory limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The limit set in [`Config::limit`](crate::Config::limit).
    pub configured: Option<u64>,
    /// The smallest cgroup limit along the process's cgroup ancestry.
    pub cgroup: Option<u64>,
    /// Physical memory.
    pub physical: Option<u64>,
}

impl Limits {
    /// The effective limit: the smallest of the known limits.
    pub fn effective(&self) -> Option<u64> {
        [self.configured, self.cgroup, self.physical]
            .into_iter()
            .flatten()
            .min()
    }

    /// Gathers the limits of this process from the standard locations.
    /// A cgroup that cannot be read is logged as a warning and left out,
    /// because physical memory still bounds the limit.
    pub fn discover(configured: Option<u64>) -> Limits {
        Self::discover_at(configured, &CgroupRoots::default())
    }

    /// Like [`Limits::discover`] with the cgroup files under `roots`.
    pub fn discover_at(configured: Option<u64>, roots: &CgroupRoots) -> Limits {
        let cgroup = Cgroup::discover_at(roots).unwrap_or_else(|error| {
            tracing::warn!(%error, "memwatch: cannot read the process's cgroup; using the other limits");
            None
        });
        Self::of(configured, cgroup.as_ref())
    }

    /// The limits given an already discovered `cgroup`, so that
    /// [`Watcher::new`](crate::Watcher::new), which also needs the cgroup for
    /// its source, reads `/proc/self/cgroup` only once.
    pub(crate) fn of(configured: Option<u64>, cgroup: Option<&Cgroup>) -> Limits {
        let cgroup = cgroup.and_then(|c| {
            c.limit()
                .map_err(|error| {
                    tracing::warn!(%error, "memwatch: cannot read the cgroup memory limit; using the other limits");
                })
                .ok()
                .flatten()
        });
        Limits {
            configured,
            cgroup,
            physical: physical_memory(),
        }
    }
}
