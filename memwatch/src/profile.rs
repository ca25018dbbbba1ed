//! Heap profiles: jemalloc's own `prof.dump`, written beside the diagnostics
//! bundles when the level turns elevated and when the watchdog fires, so that
//! an operator sees which call sites hold the memory (`jeprof`, pprof tools).

use std::fs::{self, File};
use std::path::PathBuf;

use crate::diagnostics::{prune, DIAGNOSTICS_KEEP};
use crate::growth::unix_ms;

/// Writes heap profiles into one directory, when this process can.
#[derive(Debug)]
pub(crate) struct HeapProfiler {
    dir: PathBuf,
    /// Why no profile can be written, found once when the watcher is built:
    /// jemalloc's build options, its start-up options and the global
    /// allocator cannot change while the process runs.
    unavailable: Option<String>,
}

impl HeapProfiler {
    /// A profiler writing into `dir`. Logs at error level, once, when this
    /// process cannot write heap profiles, and why.
    pub(crate) fn new(dir: PathBuf) -> HeapProfiler {
        let unavailable = imp::availability().err();
        match &unavailable {
            Some(reason) => tracing::error!(
                reason = reason.as_str(),
                "memwatch: heap profiles were requested but cannot be written"
            ),
            None => tracing::info!(
                dir = %dir.display(),
                "memwatch: heap profiles will be written when the level turns elevated and when firing"
            ),
        }
        HeapProfiler { dir, unavailable }
    }

    /// Writes `memwatch-<unix ms>-<pid>-<event>.heap` durably (jemalloc
    /// writes a temporary file, which is fsynced and renamed), then removes
    /// all but the newest [`DIAGNOSTICS_KEEP`] profiles. Returns the path,
    /// or why no profile was written.
    pub(crate) fn write(&self, event: &str) -> Result<PathBuf, String> {
        if let Some(reason) = &self.unavailable {
            return Err(reason.clone());
        }
        imp::active()?;
        let now = unix_ms();
        let dir = &self.dir;
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
        fs::create_dir_all(dir).map_err(|e| io("cannot create", e))?;
        // Thirteen digits of milliseconds sort by time, as the bundles do.
        let name = format!("memwatch-{now:013}-{}-{event}.heap", std::process::id());
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        imp::dump(&tmp)?;
        let durable = || -> std::io::Result<()> {
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()?;
            prune(dir, DIAGNOSTICS_KEEP, ".heap")
        };
        durable().map_err(|e| io("cannot keep the heap profile in", e))?;
        Ok(path)
    }
}

#[cfg(feature = "jemalloc")]
mod imp {
    use std::ffi::{c_char, c_void, CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    /// Reads a boolean control; the error is mallctl's code.
    fn read_bool(name: &CStr) -> Result<bool, i32> {
        let mut value = false;
        let mut len = std::mem::size_of::<bool>();
        // SAFETY: the name is NUL-terminated, `value` and `len` describe a
        // writable `bool`, which is the C type of the boolean controls read
        // here, and no new value is passed.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast::<c_void>(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc == 0 {
            Ok(value)
        } else {
            Err(rc)
        }
    }

    fn os_error(rc: i32) -> String {
        std::io::Error::from_raw_os_error(rc).to_string()
    }

    /// Whether jemalloc can write heap profiles of this process's Rust
    /// heap, and why not.
    pub(super) fn availability() -> Result<(), String> {
        if let Some(reason) = crate::source::jemalloc::self_check() {
            return Err(format!(
                "a heap profile would not show the Rust heap: {reason}"
            ));
        }
        match read_bool(c"opt.prof") {
            Ok(true) => Ok(()),
            Ok(false) => Err("jemalloc profiling is off: start the process with \
                 _RJEM_MALLOC_CONF=prof:true (or a `_rjem_malloc_conf` symbol)"
                .into()),
            Err(libc::ENOENT) => Err("jemalloc was built without profiling: enable \
                 memwatch's `heap-profile` feature"
                .into()),
            Err(rc) => Err(format!("cannot read opt.prof: {}", os_error(rc))),
        }
    }

    /// Fails when sampling is switched off at run time (`prof.active`).
    pub(super) fn active() -> Result<(), String> {
        match read_bool(c"prof.active") {
            Ok(true) => Ok(()),
            Ok(false) => Err("jemalloc profiling is inactive (prof.active is false)".into()),
            Err(rc) => Err(format!("cannot read prof.active: {}", os_error(rc))),
        }
    }

    /// `prof.dump` into `path`.
    pub(super) fn dump(path: &Path) -> Result<(), String> {
        let name = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
        let mut ptr: *const c_char = name.as_ptr();
        // SAFETY: `prof.dump` takes a `const char *` file name as its new
        // value; `ptr` points to a NUL-terminated string that outlives the
        // call, and no old value is requested.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"prof.dump".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                (&raw mut ptr).cast::<c_void>(),
                std::mem::size_of::<*const c_char>(),
            )
        };
        if rc != 0 {
            // jemalloc answers EFAULT when it cannot open or write the file.
            return Err(format!(
                "prof.dump into {} failed: {}",
                path.display(),
                os_error(rc)
            ));
        }
        Ok(())
    }
}

#[cfg(not(feature = "jemalloc"))]
mod imp {
    use std::path::Path;

    const NO_JEMALLOC: &str =
        "memwatch was built without its `jemalloc` feature (heap profiles come from jemalloc)";

    pub(super) fn availability() -> Result<(), String> {
        Err(NO_JEMALLOC.into())
    }

    pub(super) fn active() -> Result<(), String> {
        Err(NO_JEMALLOC.into())
    }

    pub(super) fn dump(_: &Path) -> Result<(), String> {
        Err(NO_JEMALLOC.into())
    }
}
