//! The Lua scripts clients load (SCRIPT LOAD, EVAL), kept by their SHA-1,
//! and the budgets every script runs under.
//!
//! The cache holds source text, not compiled functions: each run compiles
//! its script in a fresh Lua state (see `cmd::lua`), so that no state, and
//! nothing a script left in one, outlives the run. The cache is bounded in
//! scripts and in bytes; past either bound a new script is refused rather
//! than an old one evicted, so that an EVALSHA that worked keeps working
//! until SCRIPT FLUSH.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha1::{Digest, Sha1};

/// What a script may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScriptLimits {
    /// How long one script may run before it is stopped. Default: 5 s
    /// (Redis's `lua-time-limit`).
    pub(crate) time_limit: Duration,
    /// The most memory one script's Lua state may allocate. Default: 64 MiB.
    pub(crate) memory: usize,
    /// The most scripts the cache holds. Default: 1,000.
    pub(crate) max_scripts: usize,
    /// The most bytes of source the cache holds. Default: 16 MiB.
    pub(crate) max_bytes: usize,
    /// The most scripts running at once; one more answers BUSY. Each may
    /// take `memory`, so this bounds what scripts take together. Default: 16.
    pub(crate) max_running: usize,
}

impl Default for ScriptLimits {
    fn default() -> ScriptLimits {
        ScriptLimits {
            time_limit: Duration::from_secs(5),
            memory: 64 << 20,
            max_scripts: 1_000,
            max_bytes: 16 << 20,
            max_running: 16,
        }
    }
}

/// Why a script was not cached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CacheError {
    #[error("script cache is full ({0} scripts); SCRIPT FLUSH empties it")]
    TooMany(usize),
    #[error("script cache is full ({0} bytes of scripts); SCRIPT FLUSH empties it")]
    TooBig(usize),
}

/// The loaded scripts, by the lower-case hex SHA-1 of their text.
#[derive(Debug)]
pub(crate) struct ScriptCache {
    limits: ScriptLimits,
    inner: Mutex<Cached>,
    running: AtomicUsize,
}

/// A place among the scripts running at once, given back on drop.
#[derive(Debug)]
pub(crate) struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Default)]
struct Cached {
    by_sha: HashMap<String, Arc<[u8]>>,
    bytes: usize,
}

impl ScriptCache {
    pub(crate) fn new(limits: ScriptLimits) -> ScriptCache {
        ScriptCache {
            limits,
            inner: Mutex::new(Cached::default()),
            running: AtomicUsize::new(0),
        }
    }

    /// Takes a place among the scripts running at once.
    ///
    /// # Errors
    ///
    /// All `max_running` places are taken; the error is the bound.
    pub(crate) fn enter(&self) -> Result<Running<'_>, usize> {
        let max = self.limits.max_running;
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| Running(&self.running))
            .map_err(|_| max)
    }

    /// The budgets scripts run under.
    pub(crate) fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    /// Keeps `source` under `sha` (its SHA-1, see [`sha1_hex`]); a script
    /// already cached is kept once.
    ///
    /// # Errors
    ///
    /// The cache would pass its bound in scripts or in bytes.
    pub(crate) fn insert(&self, sha: &str, source: &[u8]) -> Result<(), CacheError> {
        let mut c = self.inner.lock();
        if c.by_sha.contains_key(sha) {
            return Ok(());
        }
        if c.by_sha.len() >= self.limits.max_scripts {
            return Err(CacheError::TooMany(self.limits.max_scripts));
        }
        if c.bytes.saturating_add(source.len()) > self.limits.max_bytes {
            return Err(CacheError::TooBig(self.limits.max_bytes));
        }
        c.bytes += source.len();
        c.by_sha.insert(sha.to_owned(), Arc::from(source));
        Ok(())
    }

    /// The source of a cached script; SHA-1s are matched case-insensitively,
    /// as Redis matches them.
    pub(crate) fn get(&self, sha: &str) -> Option<Arc<[u8]>> {
        self.inner
            .lock()
            .by_sha
            .get(&sha.to_ascii_lowercase())
            .cloned()
    }

    /// Empties the cache.
    pub(crate) fn flush(&self) {
        let mut c = self.inner.lock();
        c.by_sha.clear();
        c.bytes = 0;
    }
}

/// The lower-case hex SHA-1 of `data`, the name a script is cached under.
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    let digest = Sha1::digest(data);
    let mut out = String::with_capacity(40);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_is_redis_and_tile38s_script_name() {
        assert_eq!(
            sha1_hex(b"return 2 + 2"),
            "2dd1b44209ecb49617af05caf0491390a03c1cc4"
        );
        assert_eq!(
            sha1_hex(b"asdf"),
            "3da541559918a808c2402bba5012f6c60b27661c"
        );
    }

    #[test]
    fn the_cache_refuses_past_its_bounds_and_flush_empties_it() {
        let cache = ScriptCache::new(ScriptLimits {
            max_scripts: 2,
            max_bytes: 10,
            ..ScriptLimits::default()
        });
        assert_eq!(cache.insert("a", b"12345"), Ok(()));
        // The same script again takes no more room.
        assert_eq!(cache.insert("a", b"12345"), Ok(()));
        assert_eq!(cache.insert("b", b"123456"), Err(CacheError::TooBig(10)));
        assert_eq!(cache.insert("b", b"12345"), Ok(()));
        assert_eq!(cache.insert("c", b"1"), Err(CacheError::TooMany(2)));
        assert_eq!(cache.get("A").as_deref(), Some(&b"12345"[..]));
        cache.flush();
        assert!(cache.get("a").is_none());
        assert_eq!(cache.insert("c", b"1234567890"), Ok(()));
    }

    #[test]
    fn at_most_max_running_scripts_run_at_once() {
        let cache = ScriptCache::new(ScriptLimits {
            max_running: 2,
            ..ScriptLimits::default()
        });
        let a = cache.enter().unwrap();
        let _b = cache.enter().unwrap();
        assert_eq!(cache.enter().unwrap_err(), 2);
        drop(a);
        assert!(cache.enter().is_ok());
    }
}
