//! The axum example's service on loopback: 200 while the level is normal,
//! 503 with `Retry-After` while it is elevated (hysteresis included) and
//! after firing, 200 again once the level is back to normal.

mod common;
#[path = "../examples/axum_load_shedding.rs"]
mod example;

use std::net::SocketAddr;
use std::time::Duration;

use common::settable_watcher;
use memwatch::{CancellationToken, Config, Level, Threshold};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `GET /` on a fresh connection: the status code and `Retry-After`.
async fn get(addr: SocketAddr) -> (u16, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("a response within 10 s")
    .unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let retry_after = response
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: ").map(str::to_owned));
    (status, retry_after)
}

#[tokio::test]
async fn sheds_while_elevated_and_serves_again_below() {
    let (watcher, used) = settable_watcher(Config {
        threshold: Some(Threshold::Bytes(1000)),
        soft: Some(Threshold::Bytes(600)),
        // Returns to normal below 600 - 5 % of 1000 = 550.
        hysteresis: 0.05,
        poll_interval: Duration::from_millis(2500),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let app = example::app(watcher.clone());
    let shutdown = stop.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });

    // (figure set, level after the check, expected status, Retry-After)
    let steps: [(u64, Level, u16, Option<&str>); 6] = [
        (100, Level::Normal, 200, None),
        (700, Level::Elevated, 503, Some("3")),
        (580, Level::Elevated, 503, Some("3")),
        (500, Level::Normal, 200, None),
        (650, Level::Elevated, 503, Some("3")),
        (2000, Level::Critical, 503, Some("3")),
    ];
    for (figure, level, status, retry_after) in steps {
        used.set(figure);
        assert_eq!(watcher.check().unwrap().level, level, "at {figure}");
        assert_eq!(
            get(addr).await,
            (status, retry_after.map(str::to_owned)),
            "at {figure}"
        );
    }
    assert!(watcher.fired());

    stop.cancel();
    server.await.unwrap().unwrap();
}
