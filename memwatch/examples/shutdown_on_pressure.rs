//! The `main` pattern in full: jemalloc as the global allocator, the watcher
//! on its own thread, a server that sheds load at the soft level and shuts
//! down in order when the watchdog fires, and exit code 2 afterwards.
//!
//! The "server" fills a cache with 4 MiB blocks until it is stopped, so
//! memory really crosses the threshold:
//!
//! ```text
//! MEMWATCH_THRESHOLD=256MiB MEMWATCH_POLL_INTERVAL=50ms \
//!     cargo run -p memwatch --example shutdown_on_pressure; echo "exit $?"
//! ```
//!
//! Variables: every `MEMWATCH_*` of `memwatch::Config::from_env` (the demo
//! uses 256 MiB and 50 ms when `MEMWATCH_THRESHOLD` is unset),
//! `MEMWATCH_EXAMPLE_MARKER` (the file the orderly shutdown writes; default
//! in the temp directory) and `MEMWATCH_EXAMPLE_HANG_SHUTDOWN=1` (make the
//! shutdown hang, to see `MEMWATCH_EXIT_DEADLINE` end the process).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use memwatch::{Config, Level, Threshold, Watcher, EXIT_CODE_MEMORY_PRESSURE};
// memwatch re-exports tokio-util's token; TaskTracker is the caller's own.
use memwatch::CancellationToken;
use tokio_util::task::TaskTracker;

// The application, not the library, chooses the allocator. With jemalloc as
// the global allocator the watcher reads jemalloc's own statistics.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The cache stops growing here even if no watchdog stops it, so that a
/// misconfigured demo cannot take the machine down.
const CACHE_CAP: usize = 2 << 30;
const BLOCK: usize = 4 << 20;

pub(crate) fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();

    // An invalid MEMWATCH_* value is an error at start, never a silently
    // disabled watchdog.
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "bad memory watchdog configuration");
            return ExitCode::FAILURE;
        }
    };
    if !config.is_enabled() {
        config.threshold = Some(Threshold::Bytes(256 << 20));
        config.soft = Some(Threshold::Bytes(192 << 20));
        config.poll_interval = Duration::from_millis(50);
    }
    let marker = std::env::var_os("MEMWATCH_EXAMPLE_MARKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("memwatch-example.marker"));
    let hang = std::env::var_os("MEMWATCH_EXAMPLE_HANG_SHUTDOWN").is_some_and(|v| v == "1");

    // The root token: the signal handler and the watcher both cancel it, and
    // every part of the server stops on it.
    let token = CancellationToken::new();
    let watcher = match Watcher::new(config, token.clone()) {
        Ok(w) => w,
        Err(error) => {
            tracing::error!(%error, "cannot start the memory watchdog");
            return ExitCode::FAILURE;
        }
    };
    // The watcher samples on its own thread, so it keeps working when the
    // runtime below is saturated.
    let handle = match watcher.as_ref().map(Watcher::spawn).transpose() {
        Ok(h) => h,
        Err(error) => {
            tracing::error!(%error, "cannot start the memory watchdog thread");
            return ExitCode::FAILURE;
        }
    };

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(token.clone(), watcher.clone(), marker, hang));

    // Stop the watcher too when shutdown had another cause.
    token.cancel();
    if let Some(h) = handle {
        h.join();
    }
    if watcher.as_ref().is_some_and(Watcher::fired) {
        // Exit 2 even if the shutdown itself failed: the supervisor must see
        // that this was a memory-pressure restart, and the error is logged.
        if let Err(error) = result {
            tracing::warn!(%error, "shutdown error after memory pressure");
        }
        return ExitCode::from(EXIT_CODE_MEMORY_PRESSURE as u8);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    token: CancellationToken,
    watcher: Option<Watcher>,
    marker: PathBuf,
    hang: bool,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();

    // Ctrl-C takes the same shutdown path as memory pressure.
    tracker.spawn({
        let token = token.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => token.cancel(),
                _ = token.cancelled() => {}
            }
        }
    });

    // Report soft-level changes, as an admission controller would consume them.
    if let Some(mut levels) = watcher.as_ref().map(Watcher::subscribe) {
        let token = token.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    changed = levels.changed() => {
                        if changed.is_err() { break }
                        let level = *levels.borrow_and_update();
                        if level == Level::Elevated {
                            tracing::info!("soft level reached: rejecting new work");
                        }
                    }
                    _ = token.cancelled() => break,
                }
            }
        });
    }

    // The workload: a cache that grows by one touched 4 MiB block every
    // 10 ms until shutdown.
    let cache = tracker.spawn({
        let token = token.clone();
        async move {
            let mut cache: Vec<Box<[u8]>> = Vec::new();
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                if cache.len() * BLOCK < CACHE_CAP {
                    // Filling with a non-zero byte makes every page resident.
                    cache.push(vec![0xA5; BLOCK].into_boxed_slice());
                }
            }
            cache.len() * BLOCK
        }
    });

    if hang {
        // A shutdown step that never finishes, so that the exit deadline acts.
        tracker.spawn(std::future::pending::<()>());
    }

    token.cancelled().await;
    tracker.close();
    tracker.wait().await;
    let held = cache.await.map_err(std::io::Error::other)?;

    // The orderly part of the shutdown: state reaches disk before exit.
    let mut f = std::fs::File::create(&marker)?;
    writeln!(f, "orderly shutdown; cache held {held} bytes")?;
    f.sync_all()?;
    tracing::info!(marker = %marker.display(), held, "shutdown complete");
    Ok(())
}
