//! Replication lag on loopback at steady write rates.
//!
//! A leader and a follower run in this process, connected over a real TCP
//! socket on 127.0.0.1. A writer appends geohook-like `SET` commands to the
//! leader at a fixed rate, each stamped with the time of its append; the
//! follower's state machine records, for every command it applies, how long
//! ago it was appended. For each rate the harness prints the achieved rate,
//! the lag percentiles, and whether the follower kept up (drained to the
//! leader's offset within one second after the writer stopped, with p99 under
//! 100 ms).
//!
//! With `--redis`, the same schedule is run against a real redis-server
//! master and replica started on free loopback ports: the writer sends
//! `PUBLISH lag <stamp>` to the master (pipelined per 1 ms tick) and a client
//! subscribed on the replica records when each message arrives. That path has
//! two more hops (client to master, replica to subscriber) than ours, so the
//! Redis figures are an upper bound for its replication lag, given as context.
//!
//! ```text
//! cargo run --release -p geohook-repl --example lag -- --rates 10000,50000,100000,200000 --seconds 3 --redis
//! ```

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use geohook_repl::{
    BoxError, Follower, FollowerConfig, Leader, LeaderConfig, ReplId, Replica, Snapshot,
    SnapshotSource,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Leader-to-follower replication lag on loopback")]
struct Args {
    /// Comma-separated write rates, commands per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,50000,100000,200000"
    )]
    rates: Vec<u64>,
    /// Seconds of writing per rate.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Also measure a redis-server master and replica (needs redis-server on PATH).
    #[arg(long)]
    redis: bool,
}

/// The leader's state: nothing to snapshot; the follower starts empty.
struct Empty(Arc<Leader>);

impl SnapshotSource for Empty {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            offset: self.0.offset(),
            commands: Box::new(std::iter::empty()),
            consistent: None,
        }
    }
}

/// Records, for every applied command, nanoseconds since its append.
struct Recorder {
    base: Instant,
    samples: Mutex<Vec<u64>>,
}

impl Replica for Recorder {
    fn apply(&self, args: Vec<Vec<u8>>, _offset: u64) -> Result<(), BoxError> {
        let now = self.base.elapsed().as_nanos() as u64;
        let stamp: u64 = std::str::from_utf8(&args[5])?.parse()?;
        self.samples.lock().push(now.saturating_sub(stamp));
        Ok(())
    }

    fn reset(&self, _: &ReplId, _: u64) -> Result<(), BoxError> {
        Ok(())
    }

    fn apply_snapshot(&self, _: Vec<Vec<u8>>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Runs `write(n)` every millisecond so that `rate` commands per second are
/// issued in total over `seconds`; returns the achieved rate.
async fn steady<F: FnMut(u64, u64)>(rate: u64, seconds: u64, mut write: F) -> f64 {
    let total = rate * seconds;
    let start = Instant::now();
    let mut done = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while done < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        if due > done {
            write(done, due - done);
            done = due;
        }
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e6
}

fn report(name: &str, rate: u64, achieved: f64, samples: &mut [u64], expected: u64, drained: bool) {
    samples.sort_unstable();
    let (p50, p99, max) = (
        percentile(samples, 0.50),
        percentile(samples, 0.99),
        percentile(samples, 1.0),
    );
    let kept_up = drained && samples.len() as u64 == expected && p99 < 100.0;
    println!(
        "{name:<12} target {rate:>7}/s  achieved {achieved:>9.0}/s  p50 {p50:>7.3} ms  p99 {p99:>7.3} ms  max {max:>8.3} ms  received {}/{expected}  kept up: {}",
        samples.len(),
        if kept_up { "yes" } else { "no" }
    );
}

async fn run_ours(args: &Args) -> anyhow::Result<()> {
    let base = Instant::now();
    let leader = Arc::new(Leader::new(LeaderConfig::default(), ReplId::random(), 0)?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let cancel = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    {
        let (leader, cancel, t) = (leader.clone(), cancel.clone(), tracker.clone());
        tracker.spawn(async move {
            while let Ok((sock, addr)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                let (leader, cancel) = (leader.clone(), cancel.clone());
                t.spawn(async move {
                    let source = Empty(leader.clone());
                    let _ = leader
                        .handle_connection(sock, &addr.to_string(), &source, &cancel)
                        .await;
                });
            }
        });
    }
    let recorder = Arc::new(Recorder {
        base,
        samples: Mutex::new(Vec::new()),
    });
    let follower = Follower::new(
        FollowerConfig {
            port,
            ..Default::default()
        },
        recorder.clone(),
        None,
    )?;
    let mut status = follower.status();
    tracker.spawn(follower.run(cancel.clone()));
    status.wait_for(|s| s.caught_up).await?;

    for &rate in &args.rates {
        recorder.samples.lock().clear();
        let leader2 = leader.clone();
        let achieved = steady(rate, args.seconds, move |first, n| {
            for seq in first..first + n {
                let id = format!("truck{}", seq % 10_000);
                let stamp = base.elapsed().as_nanos().to_string();
                leader2.append(&[
                    "SET", "fleet", &id, "FIELD", "speed", &stamp, "POINT", "33.462", "-112.268",
                ]);
            }
        })
        .await;
        let end = leader.offset();
        let drained =
            tokio::time::timeout(Duration::from_secs(1), status.wait_for(|s| s.offset >= end))
                .await
                .is_ok();
        // Give a follower that is far behind the chance to finish before the
        // next rate, so one overload does not spill into the next figure.
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            status.wait_for(|s| s.offset >= end),
        )
        .await;
        let mut samples = std::mem::take(&mut *recorder.samples.lock());
        report(
            "geohook-repl",
            rate,
            achieved,
            &mut samples,
            rate * args.seconds,
            drained,
        );
        let s = status.borrow().clone();
        let stats = leader.stats();
        if s.sessions != 1 || stats.backlog_overruns != 0 {
            println!(
                "             sessions {} full syncs {} backlog overruns {} last error {:?}",
                s.sessions, s.full_syncs, stats.backlog_overruns, s.last_error
            );
        }
    }
    cancel.cancel();
    tracker.close();
    Ok(())
}

/// A redis-server process, killed on drop.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_redis(port: u16, replicaof: Option<u16>) -> anyhow::Result<Redis> {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    if let Some(p) = replicaof {
        cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
    }
    Ok(Redis(cmd.stdout(Stdio::null()).spawn()?))
}

async fn run_redis(args: &Args) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let (mp, rp) = (free_port()?, free_port()?);
    let _master = start_redis(mp, None)?;
    let _replica = start_redis(rp, Some(mp))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let open = |port: u16| redis::Client::open(format!("redis://127.0.0.1:{port}/"));
    let (master, replica) = (open(mp)?, open(rp)?);
    // Wait until the replica's link to the master is up.
    loop {
        if let Ok(mut c) = replica.get_multiplexed_async_connection().await {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await?;
            if info.contains("master_link_status:up") {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "redis replica did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut pubsub = replica.get_async_pubsub().await?;
    pubsub.subscribe("lag").await?;
    let base = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut stream = pubsub.into_on_message();
    let s2 = samples.clone();
    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let now = base.elapsed().as_nanos() as u64;
            let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
            let stamp: u64 = std::str::from_utf8(&payload)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(now);
            s2.lock().push(now.saturating_sub(stamp));
        }
    });
    let mut conn = master.get_multiplexed_async_connection().await?;
    for &rate in &args.rates {
        samples.lock().clear();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<redis::Pipeline>();
        let mut c = conn.clone();
        let sender = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let _: () = p.query_async(&mut c).await.unwrap_or(());
            }
        });
        let achieved = steady(rate, args.seconds, |_, n| {
            let mut p = redis::pipe();
            for _ in 0..n {
                p.cmd("PUBLISH")
                    .arg("lag")
                    .arg(base.elapsed().as_nanos().to_string())
                    .ignore();
            }
            let _ = tx.send(p);
        })
        .await;
        drop(tx);
        sender.await?;
        let expected = rate * args.seconds;
        let all_arrived = || async {
            while (samples.lock().len() as u64) < expected {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let drained = tokio::time::timeout(Duration::from_secs(1), all_arrived())
            .await
            .is_ok();
        // As for ours: let a backlog drain before the next rate starts, so
        // that one overload does not spill into the next figure.
        let _ = tokio::time::timeout(Duration::from_secs(30), all_arrived()).await;
        let mut got = std::mem::take(&mut *samples.lock());
        report("redis 7", rate, achieved, &mut got, expected, drained);
        let _: () = redis::cmd("PING").query_async(&mut conn).await?;
    }
    reader.abort();
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    run_ours(&args).await?;
    if args.redis {
        run_redis(&args).await?;
    }
    Ok(())
}
