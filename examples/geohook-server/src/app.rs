//! Start-up, background tasks and shutdown of the server process.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tokio_util::task::TaskTracker;

use crate::aof::{Aof, Fsync, AOF_NAME};
use crate::metrics::{self, set_gauge, Metrics};
use crate::resp::{self, Limits};
use crate::settings::{self, Settings};
use crate::state::{now_ms, Core, Options, Shared};

/// Exit code when memwatch fired and the server drained and stopped.
pub const EXIT_MEMWATCH: i32 = 2;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "geohook-server",
    version,
    about = "A Tile38-compatible geofencing server"
)]
pub struct Args {
    /// Data directory (append-only file and config file).
    #[arg(long, default_value = "./data")]
    pub dir: PathBuf,
    /// TCP port; 0 picks a free one (the chosen address is logged).
    #[arg(long, default_value_t = 9851)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// When the append-only file is fsynced.
    #[arg(long, value_enum, default_value_t = Fsync::Everysec)]
    pub appendfsync: Fsync,
    /// Password for AUTH (overrides the config file).
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Protected mode, yes or no (overrides the config file).
    #[arg(long, value_parser = parse_yes_no)]
    pub protected_mode: Option<bool>,
    /// Start even when the append-only file is damaged before its end,
    /// dropping everything from the first damaged record on (a copy of the
    /// dropped bytes is kept next to the file).
    #[arg(long)]
    pub accept_data_loss: bool,
    /// Serve Prometheus metrics over HTTP on this address.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Most arguments in one command.
    #[arg(long, default_value_t = 4096)]
    pub max_args: usize,
    /// Largest single argument (bytes, or kb/mb/gb).
    #[arg(long, default_value = "8mb", value_parser = parse_size)]
    pub max_bulk: u64,
    /// Largest request (bytes, or kb/mb/gb).
    #[arg(long, default_value = "16mb", value_parser = parse_size)]
    pub max_request: u64,
    /// Most open connections per client address.
    #[arg(long, default_value_t = 256)]
    pub max_conns_per_addr: usize,
    /// Most open client connections in total; with `--max-request` it bounds
    /// the memory peers can make the server hold in request buffers.
    #[arg(long, default_value_t = 10_000)]
    pub max_clients: usize,
    /// Automatic shrink threshold (overrides the config file; 0 = off).
    #[arg(long, value_parser = parse_size)]
    pub aofshrink_min_size: Option<u64>,
    /// How often the automatic shrink checks the file size, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub aofshrink_check_ms: u64,
    /// Quiet time after a shrink before the next automatic one, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub aofshrink_cooldown_ms: u64,
    /// memwatch threshold, e.g. 2GiB or 80% (overrides MEMWATCH_THRESHOLD).
    #[arg(long)]
    pub memwatch_threshold: Option<String>,
    /// memwatch poll interval, e.g. 500ms (overrides MEMWATCH_POLL_INTERVAL).
    #[arg(long)]
    pub memwatch_interval: Option<String>,
    /// Replication backlog: the stream bytes a leader keeps so that a
    /// follower that reconnects within them resumes without a full sync.
    #[arg(long, default_value = "16mb", value_parser = parse_size)]
    pub repl_backlog_size: u64,
    /// Hook delivery settings.
    #[command(flatten)]
    pub hooks: crate::hooks::HookArgs,
}

fn parse_size(s: &str) -> Result<u64, String> {
    settings::parse_size(s)
        .ok_or_else(|| format!("invalid size {s:?} (bytes, or a kb/mb/gb suffix)"))
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    settings::parse_yes_no(s).ok_or_else(|| format!("expected yes or no, got {s:?}"))
}

/// Replays the append-only file into `core`. Every command goes through the
/// same dispatcher as the network path, with logging off.
///
/// # Errors
///
/// The file cannot be read; a record that is not a valid command, or a
/// command that fails for a reason other than a missing key or id, naming
/// the file and offset.
pub fn load(path: &Path, core: &mut Core) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    load_with(path, &bytes, core, None)
}

/// [`load`] from the file's bytes, already read, handing hook commands to
/// `hooks`. Start-up reads the file once and hands the same bytes to
/// [`crate::replication::start`].
///
/// # Errors
///
/// As [`load`]; `path` only names the file in messages.
pub fn load_with(
    path: &Path,
    bytes: &[u8],
    core: &mut Core,
    hooks: Option<&crate::hooks::HookEngine>,
) -> anyhow::Result<u64> {
    // The file was written by this server, so its commands fit the network
    // caps; use generous ones anyway so an old file with larger records loads.
    let limits = Limits {
        max_args: 1 << 20,
        max_bulk: 512 << 20,
        max_request: 1 << 30,
    };
    let mut start = 0;
    let mut count = 0u64;
    let started = Instant::now();
    core.loading = true;
    loop {
        // Zero runs left by a crash on some file systems are skipped, as
        // Tile38 does.
        while start < bytes.len() && bytes[start] == 0 {
            start += 1;
        }
        match resp::parse(&bytes[start..], &limits) {
            Ok(Some((args, used))) => {
                let at = start;
                start += used;
                if args.is_empty()
                    || args[0].eq_ignore_ascii_case(geohook_repl::HEADER_COMMAND.as_bytes())
                {
                    // The replication header is read by `replication::start`.
                    continue;
                }
                if let Err(e) = crate::hooks::replay(core, hooks, &args) {
                    anyhow::bail!(
                        "{}: command at offset {at} failed while loading: {e}",
                        path.display()
                    );
                }
                count += 1;
            }
            Ok(None) => break,
            Err(e) => anyhow::bail!("{}: damaged record at offset {start}: {e}", path.display()),
        }
    }
    core.loading = false;
    if start < bytes.len() {
        // wal-repair runs first and cuts a torn tail, so leftovers here mean
        // the file changed under us or the two parsers disagree.
        anyhow::bail!(
            "{}: {} bytes of incomplete command at offset {start} after repair",
            path.display(),
            bytes.len() - start
        );
    }
    tracing::info!(
        commands = count,
        bytes = start,
        secs = started.elapsed().as_secs_f64(),
        "AOF loaded"
    );
    Ok(count)
}

/// Runs the server until a signal or memwatch stops it; returns the exit code.
///
/// # Errors
///
/// Start-up failures: the data directory, the config file, a damaged
/// append-only file, binding the port.
pub async fn run(args: Args) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("create data dir {}", args.dir.display()))?;
    let mut settings = Settings::load(&args.dir)?;
    if let Some(p) = &args.requirepass {
        settings.requirepass = p.clone();
    }
    if let Some(p) = args.protected_mode {
        settings.protected_mode = p;
    }
    if let Some(s) = args.aofshrink_min_size {
        settings.aofshrink_min_size = s;
    }
    let metrics = Arc::new(Metrics::new());
    let aof_path = args.dir.join(AOF_NAME);

    crate::repair::at_start(&aof_path, args.accept_data_loss, &metrics)?;
    crate::replication::prepare_file(&aof_path)?;

    let aof = Aof::open(&aof_path).with_context(|| format!("open {}", aof_path.display()))?;
    let mut core = Core {
        db: geohook_db::Database::new(),
        aof,
        loading: true,
    };
    let hooks = Arc::new(crate::hooks::HookEngine::new(&args.hooks)?);
    // Read once: the replay and the replication position both come from
    // these bytes.
    let bytes = std::fs::read(&aof_path).with_context(|| format!("read {}", aof_path.display()))?;
    load_with(&aof_path, &bytes, &mut core, Some(&hooks))?;

    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .with_context(|| format!("bind {}:{}", args.bind, args.port))?;
    let local = listener.local_addr()?;
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
    };
    let mut shared = Shared::new(opts, core, settings, metrics.clone());
    shared.changes = Some(hooks.clone());
    let _ = shared.hooks.set(hooks);
    let shared = Arc::new(shared);
    let tracker = TaskTracker::new();

    // memwatch: a token it cancels once when the heap crosses the threshold.
    let (mem_fired, mem_thread) = crate::watch::start(&args, &shared)?;

    crate::replication::start(
        &shared,
        &tracker,
        usize::try_from(args.repl_backlog_size.max(1)).unwrap_or(usize::MAX),
        &bytes,
    )?;
    drop(bytes);
    tracker.spawn(crate::server::accept_loop(
        shared.clone(),
        listener,
        tracker.clone(),
    ));
    if shared.opts.fsync == Fsync::Everysec {
        tracker.spawn(fsync_loop(shared.clone()));
    }
    tracker.spawn(expiry_loop(shared.clone()));
    crate::hooks::start(&shared, &tracker);
    crate::shrink::start(
        &shared,
        &tracker,
        Duration::from_millis(args.aofshrink_check_ms.max(1)),
        Duration::from_millis(args.aofshrink_cooldown_ms),
    )?;
    if let Some(addr) = args.metrics_addr {
        let s = shared.clone();
        let refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(move || refresh_gauges(&s));
        let m = metrics.clone();
        let cancel = shared.shutdown.clone();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind metrics {addr}"))?;
        tracker.spawn(async move {
            if let Err(e) = metrics::serve(listener, m, refresh, cancel).await {
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

/// Fsyncs the file once a second (`appendfsync everysec`).
async fn fsync_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        let handle = shared.core.write().aof.sync_handle();
        let Ok(Some(file)) = handle else { continue };
        // fsync blocks; run it on the blocking pool and without the lock, so
        // writers are never held up by the disk (Redis does the same from a
        // background thread).
        let result = tokio::task::spawn_blocking(move || file.sync_data()).await;
        let failed = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("fsync task: {e}")),
        };
        if let Some(e) = failed {
            let mut core = shared.core.write();
            let path = core.aof.path().display().to_string();
            core.aof.poison(format!("fsync {path}: {e}"));
        }
    }
}

/// Removes expired objects every 100 ms, logging a `del` for each.
async fn expiry_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        // A follower never logs expirations of its own: reads hide expired
        // objects and the leader's `del` arrives through the stream.
        if !shared.is_leader() {
            continue;
        }
        let n = crate::geo::expire_due(&shared, now_ms());
        if n > 0 {
            shared.metrics.expired.inc_by(n);
        }
    }
}

/// Updates the gauges that mirror state, before a scrape.
pub fn refresh_gauges(shared: &Shared) {
    let m = &shared.metrics;
    {
        let core = shared.core.read();
        set_gauge(&m.aof_size, core.aof.size());
        set_gauge(&m.aof_offset, core.aof.offset());
        set_gauge(&m.objects, crate::geo::num_objects(&core.db));
    }
    crate::replication::refresh_gauges(shared);
    match shared.memwatch.get().map(|w| w.metrics()) {
        Some(w) => {
            let _ = m.memwatch_level.set(w.level as i64);
            set_gauge(&m.memwatch_headroom, w.headroom_bytes.unwrap_or(0));
        }
        // -1 tells a dashboard that the watchdog is off, not at level 0.
        None => {
            let _ = m.memwatch_level.set(-1);
        }
    }
    if let Some((allocated, resident)) = metrics::jemalloc_stats() {
        set_gauge(&m.jemalloc_allocated, allocated);
        set_gauge(&m.jemalloc_resident, resident);
    }
}
