//! `geohook-server`: see `--help` and the README.

use clap::Parser;

// jemalloc as the global allocator, so that memwatch and the metrics read the
// allocator's own numbers rather than RSS alone.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The server's jemalloc options, which jemalloc reads at its first
/// allocation: background threads return freed pages to the system without
/// waiting for the next allocation in the same arena, dirty pages are
/// purged after a second rather than jemalloc's ten, and muzzy pages at
/// once, so that resident memory follows live data within seconds of a
/// delete (`benches/memory-after-delete.sh` has the measurement). The
/// `_RJEM_MALLOC_CONF` environment variable (the name `MALLOC_CONF` takes in
/// this prefixed jemalloc build) overrides any option it names.
const JEMALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: Option<&'static u8> = Some(&JEMALLOC_CONF[0]);

fn main() {
    let args = geohook_server::cli::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("geohook-server: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(geohook_server::app::run(args)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("geohook-server: {e:#}");
            1
        }
    };
    // Dropping the runtime waits for blocking tasks; everything that matters
    // (the final fsync) has already happened.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
