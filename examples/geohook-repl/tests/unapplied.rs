//! `Follower::unapplied` tells a server that stream bytes reached the
//! follower and are not applied yet: while the replica is held in the middle
//! of applying a batch, and while bytes wait in the link's socket behind it.
//! Once everything that arrived is applied it says none, and a follower
//! whose session ended says none.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, follower_config, listen, wait_offset, Kv, RunningFollower};
use geohook_repl::{BatchError, BoxError, Command, LeaderConfig, ReplId, Replica, Unapplied};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// A [`Kv`] whose batches wait for `gate` (held by the test to stop them).
#[derive(Default)]
struct Held {
    kv: Kv,
    gate: Mutex<()>,
}

impl Replica for Held {
    fn apply(&self, args: Vec<Vec<u8>>, offset: u64) -> Result<(), BoxError> {
        self.kv.apply(args, offset)
    }

    fn apply_batch(&self, cmds: Vec<(Command, u64)>) -> Result<(), BatchError> {
        // Waits off the runtime's workers, which must go on driving the
        // timers and sockets the test waits on.
        let _pass = tokio::task::block_in_place(|| self.gate.lock());
        for (applied, (args, offset)) in cmds.into_iter().enumerate() {
            self.apply(args, offset)
                .map_err(|source| BatchError { applied, source })?;
        }
        Ok(())
    }

    fn reset(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        self.kv.reset(replid, offset)
    }

    fn apply_snapshot(&self, args: Vec<Vec<u8>>) -> Result<(), BoxError> {
        self.kv.apply_snapshot(args)
    }

    fn finish_snapshot(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        self.kv.finish_snapshot(replid, offset)
    }
}

/// A leader that sends no heartbeat during a test: only writes reach the
/// link.
fn quiet_leader() -> (Arc<Kv>, Arc<geohook_repl::Leader>) {
    Kv::new_leader(LeaderConfig {
        heartbeat_interval: Duration::from_secs(600),
        ..LeaderConfig::default()
    })
}

/// Waits until nothing is unapplied. The leader may send more than a write
/// (an offset it announces): the socket empties once the follower has read
/// it all.
async fn settles(unapplied: &Unapplied, what: &str) {
    eventually(what, || {
        let u = unapplied.clone();
        async move { !u.any() }
    })
    .await;
}

/// Starts a follower of the leader on `port` for `replica`, writes one
/// command through `kv` and waits until the follower applied it and nothing
/// is unapplied.
async fn started<R: Replica + 'static>(
    kv: &Kv,
    port: u16,
    replica: Arc<R>,
) -> (Unapplied, RunningFollower) {
    let follower = geohook_repl::Follower::new(follower_config(port), replica, None).unwrap();
    let unapplied = follower.unapplied();
    assert!(!unapplied.any(), "not connected");
    let cancel = CancellationToken::new();
    let mut f = RunningFollower {
        status: follower.status(),
        cancel: cancel.clone(),
        handle: tokio::spawn(follower.run(cancel)),
    };
    let first = kv.write(&[b"SET", b"a", b"1"]);
    wait_offset(&mut f, first).await;
    settles(&unapplied, "everything that arrived applied").await;
    (unapplied, f)
}

// The test holds the replica's gate across awaits on purpose: the replica
// waits for it off the runtime's workers (`block_in_place`), and this body
// runs on the thread of `block_on`, which no task needs.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn says_what_arrived_and_is_not_applied() {
    let (kv, leader) = quiet_leader();
    let listener = listen(leader.clone(), kv.clone(), 0).await;
    let replica = Arc::new(Held::default());
    let (unapplied, mut f) = started(&kv, listener.port, replica.clone()).await;

    // The replica is held: the next write arrives and waits to be applied.
    let held = replica.gate.lock();
    let second = kv.write(&[b"SET", b"b", b"2"]);
    eventually("the second write seen as unapplied", || {
        let u = unapplied.clone();
        async move { u.any() }
    })
    .await;
    // A third write lands in the socket behind the held batch.
    let third = kv.write(&[b"SET", b"c", b"3"]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(unapplied.any(), "held in the middle of a batch");
    assert!(!replica.kv.map().contains_key(b"b".as_slice()));
    drop(held);
    wait_offset(&mut f, third).await;
    assert!(third > second);
    settles(&unapplied, "all applied").await;
    assert_eq!(replica.kv.map().len(), 3);

    // A follower that stopped has no link to wait for.
    f.stop().await;
    listener.shutdown().await;
    assert!(!unapplied.any(), "stopped");
}

#[test]
fn bytes_waiting_in_the_link_socket_count() {
    // The leader runs on a runtime of its own; the follower on this
    // thread's, so that it runs only while this thread awaits.
    let leader_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (kv, leader) = quiet_leader();
    let listener = leader_rt.block_on(listen(leader.clone(), kv.clone(), 0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let replica = Arc::new(Kv::default());
        let (unapplied, mut f) = started(&kv, listener.port, replica.clone()).await;
        let second = kv.write(&[b"SET", b"b", b"2"]);
        // The follower's task cannot run while this thread sleeps: the
        // write waits in its socket, and only the socket can tell.
        let mut slept = 0;
        while !unapplied.any() && slept < 5000 {
            std::thread::sleep(Duration::from_millis(1));
            slept += 1;
        }
        assert!(unapplied.any(), "the write waits in the link's socket");
        assert!(!replica.map().contains_key(b"b".as_slice()));
        wait_offset(&mut f, second).await;
        settles(&unapplied, "applied").await;
        f.stop().await;
        assert!(!unapplied.any(), "stopped");
    });
    leader_rt.block_on(listener.shutdown());
}
