//! Memory signals: the [`MemorySource`] trait and the built-in readers
//! (jemalloc, process RSS, cgroup working set).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cgroup::Cgroup;
use crate::config::Signal;
use crate::error::{Error, Result};

/// jemalloc's global statistics, read after one `epoch` advance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JemallocStats {
    /// `stats.allocated`: bytes held by the application.
    pub allocated: u64,
    /// `stats.active`: bytes in pages with live allocations.
    pub active: u64,
    /// `stats.resident`: bytes in resident pages, dirty ones included.
    pub resident: u64,
    /// `stats.mapped`: bytes in active extents.
    pub mapped: u64,
    /// `stats.retained`: virtual memory kept mapped but not resident.
    pub retained: u64,
}

/// Every signal value that a source could read at one moment. Fields a
/// source does not provide are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readings {
    /// jemalloc statistics, when jemalloc is the verified global allocator.
    pub jemalloc: Option<JemallocStats>,
    /// Process resident set size in bytes.
    pub rss: Option<u64>,
    /// The cgroup's working set in bytes.
    pub cgroup_working_set: Option<u64>,
}

/// One sample: the compared figure and the readings it came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// The figure compared with the threshold, in bytes.
    pub used: u64,
    /// The readings taken for this sample.
    pub readings: Readings,
}

/// A source of memory samples. The built-in [`SystemSource`] reads the
/// kernel and jemalloc; tests and exotic deployments supply their own.
///
/// Implementations are called from one thread at a time (the watcher holds
/// a lock around every call), and should be cheap: they run once per poll
/// interval.
pub trait MemorySource: Send {
    /// The signal that [`Sample::used`] reports.
    fn signal(&self) -> Signal;

    /// Reads the current figure.
    ///
    /// # Errors
    ///
    /// Whatever the underlying read reports. The watcher logs it, counts it
    /// and tries again at the next interval.
    fn sample(&mut self) -> Result<Sample>;

    /// True if [`MemorySource::purge`] can release memory that `sample`
    /// counts. The watcher purges and re-samples before firing only then.
    fn can_purge(&self) -> bool {
        false
    }

    /// Returns unused memory to the operating system.
    ///
    /// # Errors
    ///
    /// Whatever the purge reports; the watcher then decides on the
    /// unpurged sample.
    fn purge(&mut self) -> Result<()> {
        Ok(())
    }

    /// A cheap upper bound on the figure [`MemorySource::sample`] would
    /// report now, valid since the last successful `sample`, or `None` when
    /// the source has no such bound (the default).
    ///
    /// While the bound stays below every level the watcher acts on, it
    /// answers ticks from the bound and skips the full sample, for at most
    /// [`Config::max_stats_age`](crate::Config::max_stats_age). A source whose
    /// `sample` is already cheap has no reason to implement this.
    ///
    /// # Errors
    ///
    /// Whatever the underlying read reports; the watcher then takes a full
    /// sample.
    fn upper_bound(&mut self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The allocator's own report as one JSON document, for the diagnostics
    /// bundle written when the watchdog fires; `None` (the default) when the
    /// source has none.
    fn allocator_report(&mut self) -> Option<String> {
        None
    }

    /// Every reading available, for the one warning logged when firing.
    /// The default is the readings of a fresh sample.
    fn read_all(&mut self) -> Readings {
        self.sample().map(|s| s.readings).unwrap_or_default()
    }

    /// Why the source is not the one that was asked for, if it fell back.
    fn degraded(&self) -> Option<&str> {
        None
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a whole small kernel file into `buf` from offset 0 through a kept
/// descriptor, so that a sample costs one `pread` and no allocation.
fn pread_all<'a>(file: &File, path: &Path, buf: &'a mut [u8]) -> Result<&'a [u8]> {
    let mut len = 0;
    loop {
        let n = file
            .read_at(&mut buf[len..], len as u64)
            .map_err(io_err(path))?;
        if n == 0 {
            return Ok(&buf[..len]);
        }
        len += n;
        // procfs and cgroupfs render these files whole and hand over as much
        // as fits, so a read that stopped short of the buffer at a line end
        // got the entire file. Stopping here saves the second `pread` that
        // would only report end of file, on every tick.
        if len < buf.len() && buf[len - 1] == b'\n' {
            return Ok(&buf[..len]);
        }
        if len == buf.len() {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                reason: format!("longer than the {} bytes expected", buf.len()),
            });
        }
    }
}

fn parse_u64(path: &Path, text: &[u8]) -> Result<u64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::Corrupt {
            path: path.to_owned(),
            reason: format!("{:?} is not a number", String::from_utf8_lossy(text)),
        })
}

/// Process RSS from `/proc/self/statm`, read with `pread` on a descriptor
/// opened once.
#[derive(Debug)]
pub struct RssReader {
    file: File,
    path: PathBuf,
    page_size: u64,
    buf: [u8; 256],
}

impl RssReader {
    /// Opens `/proc/self/statm`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be opened.
    pub fn open() -> Result<Self> {
        Self::open_at(Path::new("/proc/self/statm"))
    }

    /// Opens a statm-format file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be opened.
    pub fn open_at(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(RssReader {
            file,
            path: path.to_owned(),
            page_size: if page > 0 { page as u64 } else { 4096 },
            buf: [0; 256],
        })
    }

    /// The resident set size in bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] on a failed read, [`Error::Corrupt`] on an unexpected format.
    pub fn read(&mut self) -> Result<u64> {
        let text = pread_all(&self.file, &self.path, &mut self.buf)?;
        // statm is "size resident shared text lib data dt", in pages.
        let field = text.split(|b| *b == b' ').nth(1).unwrap_or_default();
        Ok(parse_u64(&self.path, field)?.saturating_mul(self.page_size))
    }
}

/// The cgroup working set: usage minus inactive page cache, as the kubelet
/// computes it, because page cache that the kernel can drop would otherwise
/// fire the watchdog for nothing.
#[derive(Debug)]
pub struct CgroupReader {
    usage: File,
    usage_path: PathBuf,
    stat: File,
    stat_path: PathBuf,
    key: &'static str,
    buf: Vec<u8>,
}

impl CgroupReader {
    /// Opens the usage and stat files of `cgroup`, or returns `None` when
    /// no directory in its chain has them.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the files exist but cannot be opened.
    pub fn open(cgroup: &Cgroup) -> Result<Option<Self>> {
        let Some((usage_path, stat_path, key)) = cgroup.working_set_files() else {
            return Ok(None);
        };
        Ok(Some(CgroupReader {
            usage: File::open(&usage_path).map_err(io_err(&usage_path))?,
            stat: File::open(&stat_path).map_err(io_err(&stat_path))?,
            usage_path,
            stat_path,
            key,
            // memory.stat is one to two KiB on current kernels; the margin
            // keeps future keys from turning into a Corrupt error.
            buf: vec![0; 64 * 1024],
        }))
    }

    /// The working set in bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] on a failed read, [`Error::Corrupt`] if the stat key is missing.
    pub fn read(&mut self) -> Result<u64> {
        let usage = {
            let text = pread_all(&self.usage, &self.usage_path, &mut self.buf)?;
            parse_u64(&self.usage_path, text)?
        };
        let text = pread_all(&self.stat, &self.stat_path, &mut self.buf)?;
        let inactive = text
            .split(|b| *b == b'\n')
            .find_map(|line| {
                let rest = line.strip_prefix(self.key.as_bytes())?;
                rest.strip_prefix(b" ")
            })
            .ok_or_else(|| Error::Corrupt {
                path: self.stat_path.clone(),
                reason: format!("no {} line", self.key),
            })?;
        let inactive = parse_u64(&self.stat_path, inactive)?;
        Ok(usage.saturating_sub(inactive))
    }
}

#[cfg(feature = "jemalloc")]
pub(crate) mod jemalloc {
    use super::JemallocStats;
    use crate::error::{Error, Result};
    use tikv_jemalloc_ctl::{epoch, epoch_mib, raw, stats, thread};

    fn err(name: &'static str) -> impl FnOnce(tikv_jemalloc_ctl::Error) -> Error {
        move |e| Error::Jemalloc {
            name,
            reason: e.to_string(),
        }
    }

    /// The size of the probe allocation used by [`self_check`]. It is far
    /// above jemalloc's thread-cache sizes, so it is always counted at once.
    const PROBE: usize = 4 << 20;

    /// Verifies that jemalloc statistics exist and that jemalloc serves this
    /// process's Rust allocations. Returns the reason when it does not.
    pub(crate) fn self_check() -> Option<String> {
        let mut mib = [0usize; 2];
        if raw::name_to_mib(b"stats.allocated\0", &mut mib).is_err() {
            return Some(
                "jemalloc statistics are compiled out (enable the `stats` feature of tikv-jemalloc-sys)"
                    .into(),
            );
        }
        let counter = match thread::allocatedp::mib().and_then(|m| m.read()) {
            Ok(c) => c,
            Err(e) => return Some(format!("cannot read thread.allocatedp: {e}")),
        };
        let before = counter.get();
        let probe = std::hint::black_box(vec![1u8; PROBE]);
        let after = counter.get();
        drop(probe);
        let delta = after.wrapping_sub(before);
        if delta < PROBE as u64 {
            return Some(format!(
                "jemalloc is linked but is not the global allocator: a {PROBE}-byte allocation moved \
                 thread.allocated by {delta} bytes (set #[global_allocator] to tikv_jemallocator::Jemalloc)"
            ));
        }
        None
    }

    /// jemalloc's global statistics through MIBs resolved once, for
    /// exporters that want the same figures memwatch decides on. It does not
    /// check that jemalloc is the global allocator; [`SystemSource`](super::SystemSource)
    /// does that for the watcher.
    pub struct JemallocReader {
        epoch: epoch_mib,
        allocated: stats::allocated_mib,
        active: stats::active_mib,
        resident: stats::resident_mib,
        mapped: stats::mapped_mib,
        retained: stats::retained_mib,
    }

    impl std::fmt::Debug for JemallocReader {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("JemallocReader").finish_non_exhaustive()
        }
    }

    impl JemallocReader {
        /// Resolves the MIBs of the statistics.
        ///
        /// # Errors
        ///
        /// [`Error::Jemalloc`] when a control is unknown (statistics
        /// compiled out).
        pub fn new() -> Result<Self> {
            Ok(JemallocReader {
                epoch: epoch::mib().map_err(err("epoch"))?,
                allocated: stats::allocated::mib().map_err(err("stats.allocated"))?,
                active: stats::active::mib().map_err(err("stats.active"))?,
                resident: stats::resident::mib().map_err(err("stats.resident"))?,
                mapped: stats::mapped::mib().map_err(err("stats.mapped"))?,
                retained: stats::retained::mib().map_err(err("stats.retained"))?,
            })
        }

        /// Advances the statistics epoch and reads every figure.
        ///
        /// # Errors
        ///
        /// [`Error::Jemalloc`] naming the control that failed.
        pub fn read(&self) -> Result<JemallocStats> {
            // The statistics are a snapshot refreshed only by an epoch advance.
            self.epoch.advance().map_err(err("epoch"))?;
            Ok(JemallocStats {
                allocated: self.allocated.read().map_err(err("stats.allocated"))? as u64,
                active: self.active.read().map_err(err("stats.active"))? as u64,
                resident: self.resident.read().map_err(err("stats.resident"))? as u64,
                mapped: self.mapped.read().map_err(err("stats.mapped"))? as u64,
                retained: self.retained.read().map_err(err("stats.retained"))? as u64,
            })
        }

        /// `malloc_stats_print` in JSON, without the constants that never
        /// change while the process runs.
        pub fn report(&self) -> Option<String> {
            let mut options = tikv_jemalloc_ctl::stats_print::Options::default();
            options.json_format = true;
            options.skip_constants = true;
            let mut out = Vec::new();
            tikv_jemalloc_ctl::stats_print::stats_print(&mut out, options).ok()?;
            String::from_utf8(out).ok()
        }

        /// Purges the unused dirty pages of every arena now.
        ///
        /// # Errors
        ///
        /// [`Error::Jemalloc`] with the code mallctl returned.
        pub fn purge(&self) -> Result<()> {
            // `arena.<i>.purge` is a void control: jemalloc answers EPERM to
            // any old or new value, so the typed `raw::write` cannot issue it
            // and the call goes straight to mallctl with null pointers.
            // 4096 is MALLCTL_ARENAS_ALL.
            let name = c"arena.4096.purge";
            // SAFETY: the name is NUL-terminated and every pointer is null
            // with zero length, which is what a void control expects.
            let rc = unsafe {
                tikv_jemalloc_sys::mallctl(
                    name.as_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                )
            };
            if rc != 0 {
                return Err(Error::Jemalloc {
                    name: "arena.4096.purge",
                    reason: std::io::Error::from_raw_os_error(rc).to_string(),
                });
            }
            Ok(())
        }
    }
}

/// What a jemalloc sample left behind for [`SystemSource::upper_bound`].
///
/// Every jemalloc figure is at most `stats.resident`, and `stats.resident`
/// can only grow past its last value by pages jemalloc newly counts as
/// resident. Pages that the process touches show up in its RSS, so the
/// resident figure at the last sample plus every rise of RSS since then
/// bounds what a fresh sample would report, for all memory that is
/// actually resident. Rises are summed tick by tick, so a fall of RSS (a
/// purge, pages of another allocator returned) never hides a later rise.
/// Address space that jemalloc hands out but nobody has touched yet is the
/// one thing the bound does not see; it costs the kernel nothing until it
/// is touched, and the periodic full sample catches it.
///
/// jemalloc also counts its own metadata as resident by the page when it
/// carves it out (radix-tree leaves for a new extent among it), before the
/// kernel backs it: measured at 8–41 KiB for a 64 MiB allocation. The bound
/// therefore adds [`RssBound::SLACK`] and 1/256 of the rise.
#[derive(Debug, Clone, Copy)]
struct RssBound {
    /// `stats.resident` at the last full sample.
    base: u64,
    /// RSS at the previous reading.
    last_rss: u64,
    /// The sum of RSS rises since the last full sample.
    growth: u64,
}

impl RssBound {
    /// A constant allowance for metadata counted before it is touched.
    const SLACK: u64 = 64 << 10;

    fn value(&self) -> u64 {
        self.base
            .saturating_add(self.growth)
            .saturating_add(self.growth / 256)
            .saturating_add(Self::SLACK)
    }
}

/// The built-in source: the configured signal, with the other signals read
/// alongside for the firing log.
#[derive(Debug)]
pub struct SystemSource {
    signal: Signal,
    degraded: Option<String>,
    rss: Option<RssReader>,
    cgroup: Option<CgroupReader>,
    #[cfg(feature = "jemalloc")]
    jemalloc: Option<jemalloc::JemallocReader>,
    bound: Option<RssBound>,
}

impl SystemSource {
    /// Builds the source for `signal`, checking that it can move.
    ///
    /// jemalloc signals (and [`Signal::Auto`]) require jemalloc to be the
    /// global allocator with statistics compiled in. When the start-up
    /// self-check fails, the failure is logged at error level, recorded in
    /// [`MemorySource::degraded`], and process RSS is watched instead; the
    /// same happens for [`Signal::CgroupWorkingSet`] without a memory cgroup.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if not even `/proc/self/statm` can be opened.
    pub fn new(signal: Signal, cgroup: Option<&Cgroup>) -> Result<Self> {
        let cgroup_reader = match cgroup.map(CgroupReader::open).transpose() {
            Ok(r) => r.flatten(),
            Err(error) => {
                tracing::warn!(%error, "memwatch: cannot open the cgroup usage files");
                None
            }
        };
        let mut source = SystemSource {
            signal,
            degraded: None,
            rss: None,
            cgroup: cgroup_reader,
            #[cfg(feature = "jemalloc")]
            jemalloc: None,
            bound: None,
        };
        if signal == Signal::Auto || signal.is_jemalloc() {
            match Self::jemalloc_reader(&mut source) {
                None => {
                    source.signal = if signal == Signal::Auto {
                        Signal::JemallocResident
                    } else {
                        signal
                    };
                }
                Some(reason) => {
                    tracing::error!(
                        requested = %signal,
                        reason = %reason,
                        "memwatch: jemalloc signal unavailable; watching process RSS instead"
                    );
                    source.degraded = Some(reason);
                    source.signal = Signal::Rss;
                }
            }
        }
        if source.signal == Signal::CgroupWorkingSet && source.cgroup.is_none() {
            let reason = "no cgroup memory controller with usage files was found".to_owned();
            tracing::error!(reason = %reason, "memwatch: cgroup working set unavailable; watching process RSS instead");
            source.degraded = Some(reason);
            source.signal = Signal::Rss;
        }
        match RssReader::open() {
            Ok(r) => source.rss = Some(r),
            Err(e) if source.signal == Signal::Rss => return Err(e),
            Err(error) => tracing::warn!(%error, "memwatch: RSS unavailable for the firing log"),
        }
        Ok(source)
    }

    #[cfg(feature = "jemalloc")]
    fn jemalloc_reader(source: &mut SystemSource) -> Option<String> {
        if let Some(reason) = jemalloc::self_check() {
            return Some(reason);
        }
        match jemalloc::JemallocReader::new() {
            Ok(r) => {
                source.jemalloc = Some(r);
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    #[cfg(not(feature = "jemalloc"))]
    fn jemalloc_reader(_: &mut SystemSource) -> Option<String> {
        Some("memwatch was built without its `jemalloc` feature".into())
    }

    #[cfg(feature = "jemalloc")]
    fn read_jemalloc(&mut self) -> Result<Option<JemallocStats>> {
        self.jemalloc
            .as_ref()
            .map(jemalloc::JemallocReader::read)
            .transpose()
    }

    #[cfg(not(feature = "jemalloc"))]
    fn read_jemalloc(&mut self) -> Result<Option<JemallocStats>> {
        Ok(None)
    }
}

impl MemorySource for SystemSource {
    fn signal(&self) -> Signal {
        self.signal
    }

    fn sample(&mut self) -> Result<Sample> {
        let mut readings = Readings::default();
        let used = match self.signal {
            Signal::Rss => {
                let rss = self.rss.as_mut().map(RssReader::read).transpose()?;
                readings.rss = rss;
                rss.unwrap_or_default()
            }
            Signal::CgroupWorkingSet => {
                let ws = self.cgroup.as_mut().map(CgroupReader::read).transpose()?;
                readings.cgroup_working_set = ws;
                ws.unwrap_or_default()
            }
            sig => {
                self.bound = None;
                let stats = self.read_jemalloc()?.unwrap_or_default();
                readings.jemalloc = Some(stats);
                // RSS is read alongside (about a microsecond) to anchor the
                // bound that lets later ticks skip the `epoch` refresh.
                readings.rss = self.rss.as_mut().and_then(|r| r.read().ok());
                self.bound = readings.rss.map(|rss| RssBound {
                    base: stats.resident,
                    last_rss: rss,
                    growth: 0,
                });
                match sig {
                    Signal::JemallocAllocated => stats.allocated,
                    Signal::JemallocActive => stats.active,
                    _ => stats.resident,
                }
            }
        };
        Ok(Sample { used, readings })
    }

    /// For jemalloc signals, `stats.resident` at the last sample plus every
    /// rise of process RSS since: one `pread` instead of an `epoch` advance
    /// that walks every arena. Other signals are cheap already and have no
    /// bound.
    fn upper_bound(&mut self) -> Result<Option<u64>> {
        let (Some(bound), Some(reader)) = (self.bound.as_mut(), self.rss.as_mut()) else {
            return Ok(None);
        };
        let rss = match reader.read() {
            Ok(rss) => rss,
            Err(e) => {
                // Without the reading the sum of rises has a gap: drop the
                // bound until the next full sample anchors a new one.
                self.bound = None;
                return Err(e);
            }
        };
        bound.growth = bound
            .growth
            .saturating_add(rss.saturating_sub(bound.last_rss));
        bound.last_rss = rss;
        Ok(Some(bound.value()))
    }

    fn can_purge(&self) -> bool {
        #[cfg(feature = "jemalloc")]
        {
            self.signal == Signal::JemallocResident && self.jemalloc.is_some()
        }
        #[cfg(not(feature = "jemalloc"))]
        {
            false
        }
    }

    fn purge(&mut self) -> Result<()> {
        #[cfg(feature = "jemalloc")]
        if let Some(j) = &self.jemalloc {
            return j.purge();
        }
        Ok(())
    }

    fn allocator_report(&mut self) -> Option<String> {
        #[cfg(feature = "jemalloc")]
        if let Some(j) = &self.jemalloc {
            return j.report();
        }
        None
    }

    fn read_all(&mut self) -> Readings {
        Readings {
            jemalloc: self.read_jemalloc().ok().flatten(),
            rss: self.rss.as_mut().and_then(|r| r.read().ok()),
            cgroup_working_set: self.cgroup.as_mut().and_then(|r| r.read().ok()),
        }
    }

    fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::pread_all;
    use crate::error::Error;

    /// Reads `content` through `pread_all` with a buffer of `cap` bytes.
    fn read(content: &[u8], cap: usize) -> Result<Vec<u8>, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("statm");
        std::fs::write(&path, content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0; cap];
        pread_all(&file, &path, &mut buf).map(<[u8]>::to_vec)
    }

    #[test]
    fn whole_file_with_or_without_a_final_newline() {
        assert_eq!(read(b"1 2 3\n", 64).unwrap(), b"1 2 3\n");
        assert_eq!(read(b"1 2 3", 64).unwrap(), b"1 2 3");
        assert_eq!(read(b"", 64).unwrap(), b"");
    }

    #[test]
    fn a_file_that_fills_the_buffer_is_refused_even_at_a_line_end() {
        assert!(matches!(read(b"123\n", 4), Err(Error::Corrupt { .. })));
        assert!(matches!(read(b"123456\n", 4), Err(Error::Corrupt { .. })));
        assert_eq!(read(b"12\n", 4).unwrap(), b"12\n");
    }
}
