//! The memwatch wiring: configuration from `MEMWATCH_*` variables with flags
//! taking precedence, and the watcher on its own thread.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cli::Args;
use crate::state::Shared;

/// Builds the memwatch configuration: each flag overrides its variable.
/// Diagnostics bundles go to `<dir>/memwatch` unless
/// `MEMWATCH_DIAGNOSTICS_DIR` says otherwise, so that the reason for an
/// exit 2 is found beside the data it protected.
///
/// # Errors
///
/// An invalid value, naming the variable.
fn config(args: &Args) -> anyhow::Result<memwatch::Config> {
    let threshold = args.memwatch_threshold.clone();
    let interval = args.memwatch_interval.clone();
    let mut cfg = memwatch::Config::from_lookup(move |name| match name {
        memwatch::env::THRESHOLD if threshold.is_some() => threshold.clone(),
        memwatch::env::POLL_INTERVAL if interval.is_some() => interval.clone(),
        _ => std::env::var(name).ok(),
    })
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
        return Ok((token, None));
    };
    let handle = watcher.spawn().context("memwatch thread")?;
    let _ = shared.memwatch.set(watcher);
    Ok((token, Some(handle)))
}
