//! The hooks' server-wide retry policy as CONFIG properties, changed at run
//! time: `hook-message-ttl` (seconds; 0 keeps events until delivered),
//! `hook-retries` (attempts before an event becomes a dead letter; 0 for no
//! limit), `hook-timeout` (seconds per attempt), `hook-backoff-min` and
//! `hook-backoff-max` (seconds). They apply to hooks without a policy of
//! their own (SETHOOK's TTL, RETRIES, TIMEOUT, BACKOFF) and to events queued
//! from then on; the start-time flags give their values at start, and CONFIG
//! REWRITE does not store them.

use std::time::Duration;

use geohook_hooks::RetryPolicy;

use crate::cmd::ctx::CmdError;
use crate::state::Shared;

/// The properties, sorted.
pub(crate) const PROPERTIES: &[&str] = &[
    "hook-backoff-max",
    "hook-backoff-min",
    "hook-message-ttl",
    "hook-retries",
    "hook-timeout",
];

fn secs(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// A property's value, or `None` for another name (or without hooks).
pub(crate) fn get(shared: &Shared, name: &str) -> Option<String> {
    let p = shared.hooks.get()?.hooks.outbox().default_policy();
    Some(match name {
        "hook-message-ttl" => secs(p.ttl),
        "hook-retries" => p.max_attempts.to_string(),
        "hook-timeout" => secs(p.timeout),
        "hook-backoff-min" => secs(p.retry_initial),
        "hook-backoff-max" => secs(p.retry_max),
        _ => return None,
    })
}

/// Sets a property.
///
/// # Errors
///
/// An unknown name, a value that is not a number of the right kind, or a
/// policy that does not validate (a minimum back-off above the maximum).
pub(crate) fn set(shared: &Shared, name: &str, value: &str) -> Result<(), CmdError> {
    let Some(engine) = shared.hooks.get() else {
        return Err(CmdError::Msg("hooks are not enabled".into()));
    };
    let invalid = || CmdError::Msg(format!("invalid value '{value}' for '{name}'"));
    let seconds = || -> Result<Duration, CmdError> {
        let s: f64 = value.parse().map_err(|_| invalid())?;
        Duration::try_from_secs_f64(s).map_err(|_| invalid())
    };
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
