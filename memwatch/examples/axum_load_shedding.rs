//! An axum service whose load shedding follows memwatch's soft level: while
//! the level is elevated (or the watchdog has fired and the server is
//! draining), requests get `503 Service Unavailable` with `Retry-After`
//! instead of allocating more; below the soft level (after the hysteresis)
//! they are served again. The watchdog's token also stops the server, and
//! the process then exits with code 2.
//!
//! ```sh
//! MEMWATCH_THRESHOLD=80% MEMWATCH_SOFT_THRESHOLD=70% \
//!     cargo run -p memwatch --example axum_load_shedding
//! curl -i http://127.0.0.1:3000/
//! ```
//!
//! `tests/axum_load_shedding.rs` starts [`app`] on loopback over a source
//! whose figure the test sets, and sees 200, then 503 with `Retry-After`
//! while elevated, then 200 again.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use memwatch::{CancellationToken, Config, Watcher, EXIT_CODE_MEMORY_PRESSURE};

/// The service: every route behind [`shed_load`].
pub(crate) fn app(watcher: Watcher) -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(middleware::from_fn_with_state(watcher, shed_load))
}

/// Answers 503 with `Retry-After` while memwatch reports pressure, and
/// passes the request on otherwise. `is_under_pressure` is one atomic load,
/// so the check costs nothing next to the request.
pub(crate) async fn shed_load(
    State(watcher): State<Watcher>,
    request: Request,
    next: Next,
) -> Response {
    if watcher.is_under_pressure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, retry_after(&watcher).to_string())],
            "memory pressure: retry later\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Whole seconds a shed client should wait: the level is re-evaluated once
/// per poll interval, so asking sooner than that cannot see a change.
pub(crate) fn retry_after(watcher: &Watcher) -> u64 {
    watcher.poll_interval().as_secs_f64().ceil().max(1.0) as u64
}

// An example's `main` is what a server author copies; the tests include
// this file for `app` alone.
#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let token = CancellationToken::new();
    let mut config = Config::from_env()?;
    if config.threshold.is_none() {
        // Keep the example useful without any variable set.
        config.threshold = Some(memwatch::Threshold::Fraction(0.8));
        config.soft = Some(memwatch::Threshold::Fraction(0.7));
    }
    let watcher = Watcher::new(config, token.clone())?.expect("a threshold is set");
    let handle = watcher.spawn()?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("listening on http://{}", listener.local_addr()?);
        let stop = token.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
        axum::serve(listener, app(watcher.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await
    })?;
    // Do not wait forever for connections that will not close.
    runtime.shutdown_timeout(Duration::from_secs(5));
    token.cancel();
    handle.join();
    if watcher.fired() {
        std::process::exit(EXIT_CODE_MEMORY_PRESSURE);
    }
    Ok(())
}
