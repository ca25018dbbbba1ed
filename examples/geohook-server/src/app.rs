//! The server process from start to exit: settings, the start-up check and
//! replay of the file, the listener and every background task, then the
//! wait for a signal or memwatch and the orderly stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::task::TaskTracker;

use crate::aof::{Aof, Fsync, AOF_NAME};
use crate::cli::Args;
use crate::hooks::engine::HookEngine;
use crate::metrics::{self, Metrics};
use crate::settings::Settings;
use crate::state::{Core, Options, Shared};
use crate::tasks;
use geohook_resp::Limits;

/// Exit code when memwatch fired and the server drained and stopped.
const EXIT_MEMWATCH: i32 = 2;

/// Runs the server until a signal or memwatch stops it; returns the exit code.
///
/// # Errors
///
/// Start-up failures: the data directory, the config file, a damaged
/// append-only file, binding the port.
pub async fn run(args: Args) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("create data dir {}", args.dir.display()))?;
    crate::cmd::args::set_require_valid(args.require_valid());
    if let Some(src) = &args.import_tile38 {
        // Before anything reads the data directory, which it fills.
        let now = i64::try_from(crate::clock::now_ms()).unwrap_or(i64::MAX);
        crate::import::import_tile38(
            src,
            &args.dir,
            args.accept_data_loss,
            &args.hooks,
            args.hook_journal,
            now,
        )
        .with_context(|| format!("import Tile38 data from {}", src.display()))?;
    }
    let mut settings = Settings::load(&args.dir)?;
    settings
        .ensure_server_id(&args.dir)
        .context("record the server id")?;
    if let Some(p) = &args.requirepass {
        settings.requirepass = p.clone();
    }
    if let Some(p) = args.protected_mode {
        settings.protected_mode = p;
    }
    if let Some(s) = args.aofshrink_min_size {
        settings.aofshrink_min_size = s;
    }
    if let Some(n) = args.client_pipeline_max {
        settings.client_pipeline_max = n;
    }
    let metrics = Arc::new(Metrics::new());
    let aof_path = args.dir.join(AOF_NAME);

    crate::repair::at_start(&aof_path, args.accept_data_loss, &metrics)?;
    crate::repl::leader::prepare_file(&aof_path)?;

    let aof = Aof::open(&aof_path).with_context(|| format!("open {}", aof_path.display()))?;
    let mut core = Core {
        db: geohook_db::Database::new(),
        aof,
        loading: true,
    };
    let hooks = Arc::new(HookEngine::new(&args.hooks).context("hook settings")?);
    // Before the replay: a replayed DELHOOK reads the lifecycle default.
    crate::cmd::hookconf::restore(&args.dir, &hooks)?;
    // Read once: the replay and the replication position both come from
    // these bytes.
    let bytes = std::fs::read(&aof_path).with_context(|| format!("read {}", aof_path.display()))?;
    crate::replay::load(&aof_path, &bytes, &mut core, Some(&hooks))?;
    if args.hook_journal {
        // One disk, one gate: the log's shrink waits for the journal's fsyncs
        // and the journal's compaction for the log's.
        hooks.open_journal(
            &args.dir,
            args.hook_journal_compact_size,
            core.aof.sync_gate(),
        )?;
    }

    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .with_context(|| format!("bind {}:{}", args.bind, args.port))?;
    let local = listener.local_addr()?;
    // A Lua state needs some tens of kilobytes to start; below a megabyte
    // every script would fail, and 0 would mean no limit at all.
    anyhow::ensure!(
        args.script_memory >= 1 << 20,
        "--script-memory must be at least 1mb"
    );
    let opts = Options {
        dir: args.dir.clone(),
        fsync: args.appendfsync,
        limits: Limits {
            max_args: args.max_args,
            max_bulk: usize::try_from(args.max_bulk).unwrap_or(usize::MAX),
            max_request: usize::try_from(args.max_request).unwrap_or(usize::MAX),
        },
        max_conns_per_addr: args.max_conns_per_addr,
        max_clients: args.max_clients,
        listen: local.to_string(),
        output: args.output_limits()?,
        heavy_pool: args
            .heavy_pool_size
            .unwrap_or_else(crate::admission::HeavyPool::default_size),
        heavy_priority: args.heavy_priority,
        scripts: crate::scripts::ScriptLimits {
            time_limit: std::time::Duration::from_millis(args.script_time_limit_ms),
            memory: usize::try_from(args.script_memory).unwrap_or(usize::MAX),
            max_scripts: usize::try_from(args.script_cache_max).unwrap_or(usize::MAX),
            max_bytes: usize::try_from(args.script_cache_bytes).unwrap_or(usize::MAX),
            max_running: usize::try_from(args.script_max_running).unwrap_or(usize::MAX),
        },
    };
    let mut shared = Shared::new(opts, core, settings, metrics.clone());
    shared.changes = Some(hooks.clone());
    let _ = shared.hooks.set(hooks);
    let shared = Arc::new(shared);
    match shared.heavy.size() {
        0 => tracing::info!("heavy command pool off"),
        n => tracing::info!(size = n, "heavy command pool"),
    }
    let tracker = TaskTracker::new();

    match crate::watchdog::allocator_options() {
        Some((background_thread, dirty_decay_ms, muzzy_decay_ms)) => tracing::info!(
            background_thread,
            dirty_decay_ms,
            muzzy_decay_ms,
            "allocator: jemalloc"
        ),
        None => tracing::warn!("allocator: jemalloc options cannot be read"),
    }
    // memwatch: a token it cancels once when the heap crosses the threshold.
    let (mem_fired, mem_thread) = crate::watchdog::start(&args, &shared)?;

    crate::repl::control::start(
        &shared,
        &tracker,
        usize::try_from(args.repl_backlog_size.max(1)).unwrap_or(usize::MAX),
        usize::try_from(args.max_full_syncs).unwrap_or(usize::MAX),
        &bytes,
    )?;
    drop(bytes);
    tracker.spawn(crate::net::listener::accept_loop(
        shared.clone(),
        listener,
        tracker.clone(),
    ));
    if shared.opts.fsync == Fsync::Everysec {
        tracker.spawn(tasks::fsync_loop(shared.clone()));
    }
    tracker.spawn(tasks::expiry_loop(shared.clone()));
    tracker.spawn(crate::watchdog::memory_loop(shared.clone()));
    tasks::start_hooks(&shared, &tracker);
    crate::shrink::start(
        &shared,
        &tracker,
        Duration::from_millis(args.aofshrink_check_ms.max(1)),
        Duration::from_millis(args.aofshrink_cooldown_ms),
    )?;
    if let Some(addr) = args.metrics_addr {
        let s = shared.clone();
        let refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(move || tasks::refresh_gauges(&s));
        let m = metrics.clone();
        let cancel = shared.shutdown.clone();
        let endpoint = args.metrics_limits();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind metrics {addr}"))?;
        tracker.spawn(async move {
            if let Err(e) = metrics::serve(listener, m, refresh, cancel, endpoint).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    // Installed before "listening" is logged, so that a SIGTERM sent as soon
    // as a supervisor sees that line stops the server cleanly.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!(addr = %local, dir = %args.dir.display(), appendfsync = args.appendfsync.as_str(), "listening");

    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); 0 }
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); 0 }
        () = mem_fired.cancelled() => { tracing::warn!("memwatch fired: draining and exiting"); EXIT_MEMWATCH }
    };
    shared.shutdown.cancel();
    // Stops the watcher thread when it did not fire; harmless when it did.
    mem_fired.cancel();
    if let Some(t) = mem_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not finish within 10 s");
    }
    let mut core = shared.core.write();
    if let Err(e) = core.aof.sync() {
        tracing::error!(error = %e, "final fsync failed");
        return Ok(1);
    }
    tracing::info!(code, "stopped");
    Ok(code)
}
