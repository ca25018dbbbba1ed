//! The hooks' server-wide settings as CONFIG properties, changed at run
//! time: the retry policy, `hook-message-ttl` (seconds; 0 keeps events
//! until delivered), `hook-retries` (attempts before an event becomes a dead
//! letter; 0 for no limit), `hook-timeout` (seconds per attempt),
//! `hook-backoff-min` and `hook-backoff-max` (seconds), and
//! `hook-lifecycle` (`yes`/`no`: lifecycle exit events for hooks and
//! channels set without `LIFECYCLE`). They apply to hooks without a setting
//! of their own and, for the retry policy, to events queued from then on.
//!
//! CONFIG REWRITE stores them in the `config` file beside the other
//! properties, and [`restore`] reads them back at start, before the log is
//! replayed (a replayed DELHOOK must know whether the hook kept its queue
//! for lifecycle exits); stored values take the place of the start-time
//! flags' values, which give the settings of a server that never stored
//! them.

use std::path::Path;
use std::time::Duration;

use geohook_hooks::RetryPolicy;

use crate::cmd::ctx::CmdError;
use crate::hooks::engine::HookEngine;
use crate::settings::{Settings, CONFIG_NAME};
use crate::state::Shared;

/// The properties, sorted.
pub(crate) const PROPERTIES: &[&str] = &[
    "hook-backoff-max",
    "hook-backoff-min",
    "hook-lifecycle",
    "hook-message-ttl",
    "hook-retries",
    "hook-timeout",
];

fn secs(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// A property's value, or `None` for another name (or without hooks).
pub(crate) fn get(shared: &Shared, name: &str) -> Option<String> {
    get_on(shared.hooks.get()?, name)
}

fn get_on(engine: &HookEngine, name: &str) -> Option<String> {
    let p = engine.hooks.outbox().default_policy();
    Some(match name {
        "hook-message-ttl" => secs(p.ttl),
        "hook-retries" => p.max_attempts.to_string(),
        "hook-timeout" => secs(p.timeout),
        "hook-backoff-min" => secs(p.retry_initial),
        "hook-backoff-max" => secs(p.retry_max),
        "hook-lifecycle" => if engine.hooks.lifecycle_default() {
            "yes"
        } else {
            "no"
        }
        .to_owned(),
        _ => return None,
    })
}

/// Sets a property.
///
/// # Errors
///
/// An unknown name, a value that is not a number (or yes/no) of the right
/// kind, or a policy that does not validate (a minimum back-off above the
/// maximum).
pub(crate) fn set(shared: &Shared, name: &str, value: &str) -> Result<(), CmdError> {
    let Some(engine) = shared.hooks.get() else {
        return Err(CmdError::Msg("hooks are not enabled".into()));
    };
    set_on(engine, name, value)
}

fn set_on(engine: &HookEngine, name: &str, value: &str) -> Result<(), CmdError> {
    let invalid = || CmdError::Msg(format!("invalid value '{value}' for '{name}'"));
    let seconds = || -> Result<Duration, CmdError> {
        let s: f64 = value.parse().map_err(|_| invalid())?;
        Duration::try_from_secs_f64(s).map_err(|_| invalid())
    };
    if name == "hook-lifecycle" {
        let on = crate::settings::parse_yes_no(value).ok_or_else(invalid)?;
        engine.hooks.set_lifecycle_default(on);
        return Ok(());
    }
    let outbox = engine.hooks.outbox();
    let mut p: RetryPolicy = outbox.default_policy();
    match name {
        "hook-message-ttl" => p.ttl = seconds()?,
        "hook-retries" => p.max_attempts = value.parse().map_err(|_| invalid())?,
        "hook-timeout" => p.timeout = seconds()?,
        "hook-backoff-min" => p.retry_initial = seconds()?,
        "hook-backoff-max" => p.retry_max = seconds()?,
        _ => return Err(CmdError::Msg(format!("unknown property '{name}'"))),
    }
    outbox
        .set_default_policy(p)
        .map_err(|e| CmdError::Msg(e.to_string()))
}

/// CONFIG REWRITE: writes `settings` and, with hooks, the `hook-*`
/// properties into the `config` file in `dir`, atomically.
///
/// # Errors
///
/// The file could not be written.
pub(crate) fn rewrite(shared: &Shared, settings: &Settings, dir: &Path) -> std::io::Result<()> {
    let mut doc = serde_json::to_value(settings).map_err(std::io::Error::other)?;
    if let (Some(engine), Some(map)) = (shared.hooks.get(), doc.as_object_mut()) {
        for p in PROPERTIES {
            if let Some(v) = get_on(engine, p) {
                map.insert((*p).to_owned(), serde_json::Value::String(v));
            }
        }
    }
    let mut text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    text.push(b'\n');
    crate::fsio::write(&dir.join(CONFIG_NAME), &text)
}

/// Applies the `hook-*` properties stored in the `config` file in `dir` (by
/// CONFIG REWRITE) to `engine`. Call it at start, before the log is
/// replayed. A missing file or property leaves the flags' values.
///
/// # Errors
///
/// The file cannot be read or parsed, or a stored value is refused, naming
/// the property.
pub(crate) fn restore(dir: &Path, engine: &HookEngine) -> anyhow::Result<()> {
    let path = dir.join(CONFIG_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => anyhow::bail!("cannot read config file {}: {e}", path.display()),
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
    let stored = |p: &str| {
        doc.get(p)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    let refused =
        |p: &str, e: CmdError| anyhow::anyhow!("config file {}: {p}: {e}", path.display());
    for p in PROPERTIES.iter().filter(|p| !p.starts_with("hook-backoff")) {
        if let Some(v) = stored(p) {
            set_on(engine, p, &v).map_err(|e| refused(p, e))?;
        }
    }
    // The back-off bounds are checked as a pair (minimum not above maximum),
    // so the stored pair is applied in whichever order passes the check.
    let pair: Vec<(&str, String)> = ["hook-backoff-max", "hook-backoff-min"]
        .into_iter()
        .filter_map(|p| Some((p, stored(p)?)))
        .collect();
    let apply = |pairs: &[&(&str, String)]| {
        pairs
            .iter()
            .try_for_each(|(p, v)| set_on(engine, p, v).map_err(|e| refused(p, e)))
    };
    let forward: Vec<&(&str, String)> = pair.iter().collect();
    if apply(&forward).is_err() {
        let backward: Vec<&(&str, String)> = pair.iter().rev().collect();
        apply(&backward)?;
    }
    Ok(())
}
