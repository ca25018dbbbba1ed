//! The server's background tasks: the once-a-second fsync, object expiry,
//! hook delivery and hook housekeeping, and the refresh of the gauges that
//! mirror state before a scrape. Each stops when the shutdown token fires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aof_compactor::{bytesize::ByteSize, CompactionOutcome, Compactor, SizeSource};
use tokio_util::task::TaskTracker;

use crate::clock::now_ms;
use crate::cmd::del::expire_due;
use crate::cmd::spec::Cmd;
use crate::hooks::engine::HookEngine;
use crate::hooks::metrics::HookCollector;
use crate::metrics::{self, set_gauge};
use crate::state::{Record, Shared, When, Writer};

/// Fsyncs the file once a second (`appendfsync everysec`).
pub(crate) async fn fsync_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        let (handle, gate) = {
            let mut core = shared.core.write();
            (core.aof.sync_handle(), core.aof.sync_gate())
        };
        let Ok(Some(file)) = handle else { continue };
        // fsync blocks; run it on the blocking pool and without the lock, so
        // writers are never held up by the disk (Redis does the same from a
        // background thread).
        let result = tokio::task::spawn_blocking(move || gate.sync_data(&file)).await;
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
        // The hook journal follows the same policy, also off the lock.
        let Some(engine) = shared.hooks.get().cloned() else {
            continue;
        };
        if engine.journal().is_none() {
            continue;
        }
        let result =
            tokio::task::spawn_blocking(move || engine.journal().map_or(Ok(()), |(j, _)| j.sync()))
                .await;
        let failed = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("hook journal fsync task: {e}")),
        };
        if let Some(e) = failed {
            shared.core.write().aof.poison(e);
        }
    }
}

/// Removes expired objects every 100 ms, logging a `del` for each.
pub(crate) async fn expiry_loop(shared: Arc<Shared>) {
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
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let n = {
            let mut core = shared.core.write();
            // The `del`s are committed deferred, so that the `del` events
            // and lifecycle exits they queue reach the journal before the
            // `del`s reach the log, within this sweep and under the log's
            // fsync policy (not at the next housekeeping tick).
            let deferred = Writer {
                when: When::Deferred,
                ..shared.task_writer()
            };
            let n = expire_due(&mut core, &deferred, now);
            if n > 0 {
                if let Err(e) = shared.flush_task(&mut core) {
                    tracing::error!(error = %e, "could not write a batch of expiries");
                }
            }
            n
        };
        if n > 0 {
            shared.metrics.expired.inc_by(n);
        }
    }
}

/// Updates the gauges that mirror state, before a scrape.
pub(crate) fn refresh_gauges(shared: &Shared) {
    let m = &shared.metrics;
    {
        let core = shared.core.read();
        set_gauge(&m.aof_size, core.aof.size());
        set_gauge(&m.aof_offset, core.aof.offset());
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        set_gauge(&m.objects, core.db.totals(now).totals.num_objects as u64);
    }
    crate::repl::status::refresh_gauges(shared);
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

/// Spawns the hooks' delivery task and their housekeeping (role, EX expiry)
/// under `tracker`, and registers the hooks' metrics.
pub(crate) fn start_hooks(shared: &Arc<Shared>, tracker: &TaskTracker) {
    let Some(engine) = shared.hooks.get().cloned() else {
        return;
    };
    shared
        .metrics
        .add_collector(Box::new(HookCollector(engine.clone())));
    let cancel = shared.shutdown.clone();
    let e = engine.clone();
    tracker.spawn(async move { e.hooks.run(cancel).await });
    if let Some((_, size)) = engine.journal() {
        if let Err(e) = start_journal_compactor(shared, &engine, tracker, size) {
            tracing::error!(error = %e, "hook journal compaction is off");
        }
    }
    tracker.spawn(housekeeping(shared.clone(), engine));
}

/// Spawns the hook journal's compactor: once the journal passes `size`
/// bytes (checked every second, at most one run every ten seconds) it is
/// rewritten as its pending events, so it stays near the size of what is
/// pending rather than of what was sent.
fn start_journal_compactor(
    shared: &Arc<Shared>,
    engine: &Arc<HookEngine>,
    tracker: &TaskTracker,
    size: u64,
) -> Result<(), aof_compactor::Error> {
    let cfg = aof_compactor::Config {
        min_size: ByteSize::b(size),
        check_interval: Duration::from_secs(1),
        cooldown: Duration::from_secs(10),
        ..Default::default()
    };
    let e = engine.clone();
    let source = SizeSource::from_fn(move || Ok(e.journal().map_or(0, |(j, _)| j.len())));
    let e = engine.clone();
    let (compactor, _handle) = Compactor::new(cfg, source, move |_ctx| {
        let e = e.clone();
        async move {
            let compacted = tokio::task::spawn_blocking(move || {
                e.journal().map(|(j, _)| j.compact()).transpose()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let new_size = compacted.unwrap_or(0);
            tracing::info!(new_size, "hook journal compacted");
            Ok::<_, String>(CompactionOutcome::new(new_size))
        }
    })?;
    tracker.spawn(compactor.run(shared.shutdown.clone()));
    Ok(())
}

/// Every 100 ms: follows the node's role, and on the leader removes hooks
/// whose EX passed, logging a DELHOOK for each under the write lock so that
/// the log order matches the registry's.
async fn housekeeping(shared: Arc<Shared>, engine: Arc<HookEngine>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        let leader = shared.is_leader();
        if engine.hooks.is_leader() != leader {
            engine.hooks.set_role(leader);
        }
        // Finished deliveries and expiries reach the file within 100 ms even
        // when no client writes (a lost `done` only means a duplicate).
        if let Err(e) = engine.hooks.outbox().flush_journal(false) {
            shared.core.write().aof.poison(e.to_string());
        }
        if !leader {
            continue;
        }
        let mut core = shared.core.write();
        if core.writable().is_err() {
            continue;
        }
        // Deferred, as for object expiry: the exits of the hooks that
        // expired reach the journal before their DELHOOKs reach the log.
        let w = Writer {
            when: When::Deferred,
            ..shared.task_writer()
        };
        let gone = engine.hooks.expire_due(SystemTime::now());
        let expired = !gone.is_empty();
        for gone in gone {
            let (cmd, verb) = if gone.channel {
                (Cmd::Delchan, b"delchan".as_slice())
            } else {
                (Cmd::Delhook, b"delhook".as_slice())
            };
            let logged = [verb, gone.name.as_bytes()];
            if let Err(e) = core.commit(&w, Record::new(cmd, &logged, "", None)) {
                tracing::error!(error = %e, "could not log a hook expiry");
                break;
            }
        }
        if expired {
            if let Err(e) = shared.flush_task(&mut core) {
                tracing::error!(error = %e, "could not write a hook expiry");
            }
        }
    }
}
