//! Helpers shared by the replication tests.
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::time::Duration;

use e2e::{wait_until, Server};

/// A free loopback port for a leader, which must keep its port across
/// restarts so that its followers find it again.
pub(crate) use e2e::free_port;

/// One numeric SERVER stat, or `u64::MAX` while the server does not answer.
pub(crate) fn stat_u64(server: &Server, name: &str) -> u64 {
    stat_auth(server, "", name)
}

/// [`stat_u64`] on a server with a password.
pub(crate) fn stat_auth(server: &Server, password: &str, name: &str) -> u64 {
    let auth = if password.is_empty() {
        String::new()
    } else {
        format!(":{password}@")
    };
    let Ok(client) = redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", server.port))
    else {
        return u64::MAX;
    };
    let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return u64::MAX;
    };
    let v: Vec<String> = match redis::cmd("SERVER").query(&mut c) {
        Ok(v) => v,
        Err(_) => return u64::MAX,
    };
    v.chunks(2)
        .find(|c| c[0] == name)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or(u64::MAX)
}

/// Waits until `follower` is caught up at the leader's current offset.
pub(crate) fn caught_up(leader: &Server, follower: &Server, timeout: Duration) -> bool {
    caught_up_auth(leader, "", follower, timeout)
}

/// Waits until a follower on `conn` answers reads: it does once it reports
/// itself caught up, which follows the offsets' meeting by a status update.
pub(crate) fn answers_reads(conn: &mut redis::Connection, timeout: Duration) -> bool {
    wait_until(timeout, || {
        redis::cmd("KEYS")
            .arg("*")
            .query::<Vec<String>>(conn)
            .is_ok()
    })
}

/// [`caught_up`] with a leader that has a password.
pub(crate) fn caught_up_auth(
    leader: &Server,
    password: &str,
    follower: &Server,
    timeout: Duration,
) -> bool {
    wait_until(timeout, || {
        let want = stat_auth(leader, password, "repl_offset");
        want != u64::MAX
            && stat_u64(follower, "repl_offset") == want
            && stat_auth(leader, password, "repl_offset") == want
    })
}

/// The replication offset a file's REPLSTATE header names and the stream
/// bytes after its header and base section.
pub(crate) fn file_stream(path: &Path) -> (u64, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let text = std::str::from_utf8(&bytes[..120]).expect("header");
    let parts: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(parts[2], "REPLSTATE", "{text:?}");
    let offset: u64 = parts[6].parse().unwrap();
    let base: usize = parts[8].parse().unwrap();
    (offset, bytes[120 + base..].to_vec())
}

/// Compares two dumps and reports the first difference, not both dumps.
pub(crate) fn assert_same_state(follower: &[String], leader: &[String]) {
    if follower == leader {
        return;
    }
    let at = follower
        .iter()
        .zip(leader)
        .position(|(a, b)| a != b)
        .unwrap_or(follower.len().min(leader.len()));
    let cut = |v: &[String]| -> String {
        v.get(at)
            .map(|s| s.chars().take(400).collect())
            .unwrap_or_else(|| "<missing>".into())
    };
    panic!(
        "state differs at key {at}: follower {} vs leader {}",
        cut(follower),
        cut(leader)
    );
}

/// One sample from the server's Prometheus page (`--metrics-addr`).
pub(crate) fn metric(server: &Server, name: &str) -> f64 {
    let page = server.metrics_page();
    e2e::metric_value(&page, name).unwrap_or_else(|| panic!("no metric {name} in\n{page}"))
}

/// Asserts that two nodes' files hold the same stream bytes where their
/// offsets overlap (each may have shrunk, so either may start later).
pub(crate) fn assert_streams_agree(a: &Path, b: &Path) {
    let (ao, astream) = file_stream(a);
    let (bo, bstream) = file_stream(b);
    let (early, eo, late, lo) = if ao <= bo {
        (&astream, ao, &bstream, bo)
    } else {
        (&bstream, bo, &astream, ao)
    };
    let skip = (lo - eo) as usize;
    assert!(
        skip <= early.len(),
        "no overlap: {} starts at {eo} with {} bytes, {} at {lo}",
        a.display(),
        early.len(),
        b.display()
    );
    let n = (early.len() - skip).min(late.len());
    assert!(
        early[skip..skip + n] == late[..n],
        "the streams of {} and {} differ",
        a.display(),
        b.display()
    );
}
