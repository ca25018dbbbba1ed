//! The command line: every flag of the server, parsed by clap. The process
//! entry (`main.rs`) parses it and hands it to [`crate::app::run`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use geohook_hooks::{DeliveryConfig, QueueConfig};

use crate::admission::HeavyPriority;
use crate::aof::Fsync;
use crate::metrics::EndpointLimits;
use crate::output::OutputLimits;
use crate::settings;

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
    pub(crate) dir: PathBuf,
    /// TCP port; 0 picks a free one (the chosen address is logged).
    #[arg(long, default_value_t = 9851)]
    pub(crate) port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: IpAddr,
    /// When the append-only file is fsynced.
    #[arg(long, value_enum, default_value_t = Fsync::Everysec)]
    pub(crate) appendfsync: Fsync,
    /// Password for AUTH (overrides the config file).
    #[arg(long)]
    pub(crate) requirepass: Option<String>,
    /// Protected mode, yes or no (overrides the config file).
    #[arg(long, value_parser = parse_yes_no)]
    pub(crate) protected_mode: Option<bool>,
    /// Start even when the append-only file is damaged before its end,
    /// dropping everything from the first damaged record on (a copy of the
    /// dropped bytes is kept next to the file).
    #[arg(long)]
    pub(crate) accept_data_loss: bool,
    /// Refuse coordinates outside latitude [-90, 90] and longitude
    /// [-180, 180] (points, bounds and areas). Also on when the environment
    /// variable `REQUIREVALID` is set and not empty, as in Tile38. Default:
    /// accepted, as Tile38 accepts them.
    #[arg(long)]
    pub(crate) require_valid: bool,
    /// Import a Tile38 data directory (its `appendonly.aof` and `config`)
    /// into the empty data directory, then start on the result; the Tile38
    /// files are left untouched. Refused when the data directory already
    /// holds data. Commands this server does not support are counted and
    /// refused unless `--accept-data-loss` is given.
    #[arg(long, value_name = "DIR")]
    pub(crate) import_tile38: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address.
    #[arg(long)]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Most arguments in one command.
    #[arg(long, default_value_t = 4096)]
    pub(crate) max_args: usize,
    /// Largest single argument (bytes, or kb/mb/gb).
    #[arg(long, default_value = "8mb", value_parser = parse_size)]
    pub(crate) max_bulk: u64,
    /// Largest request (bytes, or kb/mb/gb).
    #[arg(long, default_value = "16mb", value_parser = parse_size)]
    pub(crate) max_request: u64,
    /// Most open connections per client address.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_conns_per_addr: usize,
    /// Most open client connections in total; with `--max-request` it bounds
    /// the memory peers can make the server hold in request buffers.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) max_clients: usize,
    /// Automatic shrink threshold (overrides the config file; 0 = off).
    #[arg(long, value_parser = parse_size)]
    pub(crate) aofshrink_min_size: Option<u64>,
    /// How often the automatic shrink checks the file size, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) aofshrink_check_ms: u64,
    /// Quiet time after a shrink before the next automatic one, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub(crate) aofshrink_cooldown_ms: u64,
    /// memwatch threshold, e.g. 2GiB or 90% (overrides MEMWATCH_THRESHOLD).
    /// Unset: 90% of the limit when the process has a memory limit, else
    /// off. Empty or 0: off.
    #[arg(long)]
    pub(crate) memwatch_threshold: Option<String>,
    /// memwatch soft level, same syntax (overrides MEMWATCH_SOFT_THRESHOLD):
    /// at or above it commands that add data get the OOM error. Unset: 80%
    /// of the limit when that is below the threshold. Empty or 0: off.
    #[arg(long)]
    pub(crate) memwatch_soft_threshold: Option<String>,
    /// memwatch poll interval, e.g. 500ms (overrides MEMWATCH_POLL_INTERVAL).
    #[arg(long)]
    pub(crate) memwatch_interval: Option<String>,
    /// Most heavy commands (searches of large collections that count,
    /// filter or ask for more than 100 results) running at once; one more
    /// gets `-BUSY` at once. Default: twice the cores. 0 = no pool (heavy
    /// commands run like any other, never refused).
    #[arg(long)]
    pub(crate) heavy_pool_size: Option<usize>,
    /// The scheduling priority of the heavy pool's threads: `idle`
    /// (SCHED_IDLE: only CPU time nothing else wants), `batch`
    /// (SCHED_BATCH) or `normal` (the server's own).
    #[arg(long, value_enum, default_value_t = HeavyPriority::default())]
    pub(crate) heavy_priority: HeavyPriority,
    /// How long one Lua script (EVAL and its kin) may run, in
    /// milliseconds, before it is stopped with an error; the writes it made
    /// before the stop are kept, as in Redis.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) script_time_limit_ms: u64,
    /// The most memory one script's Lua state may allocate (bytes, or
    /// kb/mb/gb); past it the script is stopped with an error.
    #[arg(long, default_value = "64mb", value_parser = parse_size)]
    pub(crate) script_memory: u64,
    /// The most scripts SCRIPT LOAD and EVAL keep; one more is refused
    /// until SCRIPT FLUSH.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) script_cache_max: u64,
    /// The most bytes of script source kept (bytes, or kb/mb/gb).
    #[arg(long, default_value = "16mb", value_parser = parse_size)]
    pub(crate) script_cache_bytes: u64,
    /// The most scripts running at once; one more answers `-BUSY`.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) script_max_running: u64,
    /// Most commands one connection runs from a pipeline before its replies
    /// are written and other clients get a turn (overrides the config
    /// file's `client-pipeline-max`; 0 = no count cap). Default: 1000.
    #[arg(long)]
    pub(crate) client_pipeline_max: Option<u64>,
    /// Replication backlog: the stream bytes a leader keeps so that a
    /// follower that reconnects within them resumes without a full sync.
    #[arg(long, default_value = "16mb", value_parser = parse_size)]
    pub(crate) repl_backlog_size: u64,
    /// Full syncs a leader serves at once; one more PSYNC that needs a
    /// snapshot gets `-BUSY` and the follower retries with back-off.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) max_full_syncs: u64,
    /// Hook delivery settings.
    #[command(flatten)]
    pub(crate) hooks: HookArgs,
    /// Reply bytes one connection builds before it writes them out and waits
    /// for the client to read (bytes, or kb/mb/gb).
    #[arg(long, default_value = "1mb", value_parser = parse_size)]
    pub(crate) client_output_soft: u64,
    /// Largest reply one search may build; a larger page gets an error
    /// (bytes, or kb/mb/gb).
    #[arg(long, default_value = "64mb", value_parser = parse_size)]
    pub(crate) max_reply: u64,
    /// Milliseconds a client may leave written replies unread before it is
    /// closed.
    #[arg(long, default_value_t = 60_000)]
    pub(crate) client_output_timeout_ms: u64,
    /// Milliseconds a client may take to complete a request it has begun.
    #[arg(long, default_value_t = 30_000)]
    pub(crate) request_timeout_ms: u64,
    /// Milliseconds a client may stay idle between requests before it is
    /// closed; 0 keeps idle clients open.
    #[arg(long, default_value_t = 0)]
    pub(crate) idle_timeout_ms: u64,
    /// Most connections open at once on the metrics endpoint.
    #[arg(long, default_value_t = 16)]
    pub(crate) metrics_max_conns: usize,
    /// Milliseconds a metrics connection may stay open.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) metrics_timeout_ms: u64,
    /// Keep queued hook events in `hooks.journal` in the data directory, so
    /// that they survive a crash, yes or no. With no, queues live in memory.
    #[arg(long, default_value = "yes", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub(crate) hook_journal: bool,
    /// Size above which the hook journal is rewritten as its pending events
    /// (bytes, or kb/mb/gb).
    #[arg(long, default_value = "16mb", value_parser = parse_size)]
    pub(crate) hook_journal_compact_size: u64,
}

impl Args {
    /// Whether coordinates out of range are refused: the flag, or a
    /// non-empty `REQUIREVALID` in the environment (Tile38's switch).
    pub(crate) fn require_valid(&self) -> bool {
        self.require_valid || std::env::var_os("REQUIREVALID").is_some_and(|v| !v.is_empty())
    }

    /// The output budget these flags describe.
    ///
    /// # Errors
    ///
    /// A bound that is zero.
    pub(crate) fn output_limits(&self) -> anyhow::Result<OutputLimits> {
        let limits = OutputLimits {
            soft: usize::try_from(self.client_output_soft).unwrap_or(usize::MAX),
            max_reply: usize::try_from(self.max_reply).unwrap_or(usize::MAX),
            stall: Duration::from_millis(self.client_output_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            idle: (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms)),
        };
        limits.validate().map_err(anyhow::Error::msg)?;
        Ok(limits)
    }

    /// The metrics endpoint's bounds these flags describe (a zero count or
    /// time is taken as one connection, one millisecond).
    pub(crate) fn metrics_limits(&self) -> EndpointLimits {
        EndpointLimits {
            max_conns: self.metrics_max_conns.max(1),
            timeout: Duration::from_millis(self.metrics_timeout_ms.max(1)),
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    settings::parse_size(s)
        .ok_or_else(|| format!("invalid size {s:?} (bytes, or a kb/mb/gb suffix)"))
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    settings::parse_yes_no(s).ok_or_else(|| format!("expected yes or no, got {s:?}"))
}

/// Command-line flags for hook delivery.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HookArgs {
    /// Age after which a pooled endpoint connection is replaced even under
    /// constant traffic, in milliseconds.
    #[arg(long, default_value_t = 30 * 60 * 1000)]
    pub(crate) hook_max_connection_lifetime_ms: u64,
    /// How long an event may wait for delivery before it is dropped and
    /// counted, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub(crate) hook_message_ttl_ms: u64,
    /// Bound on the event bytes queued across all hooks (bytes, or kb/mb/gb).
    #[arg(long, default_value = "256mb", value_parser = parse_size)]
    pub(crate) hook_max_queued_bytes: u64,
    /// Bound on the event bytes queued for one hook (bytes, or kb/mb/gb).
    #[arg(long, default_value = "4mb", value_parser = parse_size)]
    pub(crate) hook_max_hook_queued_bytes: u64,
    /// Bound on the dead letters held across all hooks (events past their
    /// time-to-live or attempts, listed by HOOKDLQ, queued again by
    /// REDELIVER); 0 drops such events, counted, as Tile38 does.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) hook_max_dead_letters: usize,
    /// How many hooks get a `hook` label of their own in
    /// `geohook_hook_dead_letters_total`: the first ones to make a dead
    /// letter since start. The others are counted together, by reason, in
    /// `geohook_hook_dead_letters_unlabelled_total`, so that 70,000 hooks do
    /// not put 140,000 series on the metrics page.
    #[arg(long, default_value_t = 100)]
    pub(crate) hook_metrics_max_hooks: usize,
}

impl HookArgs {
    /// The queue settings these flags describe.
    pub(crate) fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            message_ttl: Duration::from_millis(self.hook_message_ttl_ms),
            max_queued_bytes: self.hook_max_queued_bytes,
            max_hook_queued_bytes: self.hook_max_hook_queued_bytes,
            max_dead_letters: self.hook_max_dead_letters,
            max_labelled_hooks: self.hook_metrics_max_hooks,
            delivery: DeliveryConfig {
                max_connection_lifetime: Duration::from_millis(
                    self.hook_max_connection_lifetime_ms,
                ),
                ..DeliveryConfig::default()
            },
            ..QueueConfig::default()
        }
    }
}
