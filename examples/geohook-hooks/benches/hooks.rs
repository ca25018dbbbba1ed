//! Benchmarks: the SET path (store the object, match fences, queue events) with 0, 1,000 and 70,000
//! hooks, long random jumps with 70,000 hooks, and the cost per delivered event with 1,000 against 70,000 hooks to a local HTTP sink.
//!
//! Run with `cargo bench -p geohook-hooks --bench hooks`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use divan::counter::ItemsCount;
use divan::Bencher;
use geohook_db::{Area, Database, Object, Point, SetCondition};
use geohook_hooks::{
    Change, Endpoint, FenceKind, Filter, HookDef, Hooks, Payload, QueueConfig, Scheme,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

fn main() {
    divan::main();
}

/// The fenced region: about 55 km by 55 km, the size of a metro area.
const LAT0: f64 = 33.0;
const LON0: f64 = -112.5;
const SPAN: f64 = 0.5;
const VEHICLES: usize = 10_000;
/// Largest change of latitude or longitude per update, in degrees (about 10 m).
const STEP: f64 = 0.0001;

/// `n` NEARBY fences of 200 m, spread uniformly, with `DETECT enter,exit` (what Tile38 advises at scale).
fn hooks_with(n: usize, endpoint: &str, config: QueueConfig) -> Hooks {
    let hooks = Hooks::new(config).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let endpoints = Endpoint::parse_list(endpoint).unwrap();
    let now = SystemTime::now();
    for i in 0..n {
        let (lat, lon) = (
            LAT0 + rng.random::<f64>() * SPAN,
            LON0 + rng.random::<f64>() * SPAN,
        );
        let def = HookDef {
            name: format!("fence:{i}"),
            endpoints: endpoints.clone(),
            delivery: geohook_hooks::Delivery::Endpoints,
            meta: vec![],
            ex: None,
            kind: FenceKind::Nearby,
            key: "fleet".into(),
            filter: Filter::parse(Some("enter,exit"), None).unwrap(),
            area: Area::circle(Point::new(lat, lon).unwrap(), 200.0).unwrap(),
            options: Default::default(),
            args: vec![
                "NEARBY".into(),
                "fleet".into(),
                "FENCE".into(),
                "DETECT".into(),
                "enter,exit".into(),
            ],
        };
        hooks.set_hook(def, now).unwrap();
    }
    hooks
}

/// One SET as the server performs it: store the object, then report the change with the old object.
/// Returns the number of events queued.
fn set(db: &mut Database, h: &Hooks, id: &str, object: Object) -> usize {
    let old = db
        .set(
            "fleet",
            id,
            object.clone(),
            &[] as &[(&str, f64)],
            None,
            SetCondition::Always,
            0,
        )
        .unwrap();
    h.on_change(&Change::set(
        "fleet",
        id,
        old.as_ref().map(|i| i.object()),
        &object,
        None,
        SystemTime::now(),
    ))
}

/// One SET of a vehicle that moves a few metres (see [`set`]).
#[divan::bench(args = [0, 1_000, 70_000], sample_count = 50, sample_size = 2000)]
fn set_path(bencher: Bencher<'_, '_>, hooks: usize) {
    let h = hooks_with(hooks, "http://127.0.0.1:9/sink", QueueConfig::default());
    let mut db = Database::new();
    let mut rng = StdRng::seed_from_u64(1);
    let mut positions: Vec<(f64, f64)> = (0..VEHICLES)
        .map(|_| {
            (
                LAT0 + rng.random::<f64>() * SPAN,
                LON0 + rng.random::<f64>() * SPAN,
            )
        })
        .collect();
    let ids: Vec<String> = (0..VEHICLES).map(|i| format!("truck{i}")).collect();
    // Place every vehicle once before timing, so that the figures are for moves, not first sightings.
    for (id, (lat, lon)) in ids.iter().zip(&positions) {
        set(
            &mut db,
            &h,
            id,
            Object::Point(Point::new(*lat, *lon).unwrap()),
        );
    }
    h.set_role(false);
    h.set_role(true);
    let before = h.metrics().events;
    let mut n = 0u64;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let v = rng.random_range(0..VEHICLES);
        // A vehicle moves up to about 10 m per update (one update a second at city speed).
        let (lat, lon) = &mut positions[v];
        *lat = (*lat + rng.random_range(-STEP..STEP)).clamp(LAT0, LAT0 + SPAN);
        *lon = (*lon + rng.random_range(-STEP..STEP)).clamp(LON0, LON0 + SPAN);
        let object = Object::Point(Point::new(*lat, *lon).unwrap());
        let events = set(&mut db, &h, &ids[v], object);
        // Nothing delivers here; the queues hold what this run produces (a few MB) within the bounds.
        n += 1;
        events
    });
    let m = h.metrics();
    eprintln!(
        "set_path({hooks}): {:.3} events per SET over {n} SETs",
        (m.events - before) as f64 / n.max(1) as f64
    );
}

/// One SET whose object jumps to a random point anywhere in the fenced square (a long move across
/// thousands of fences), with 70,000 hooks: the spanning box of such a move meets a large share of
/// the fences, and only hooks that detect `cross` should pay for it.
#[divan::bench(args = [70_000], sample_count = 20, sample_size = 50)]
fn set_path_long_jumps(bencher: Bencher<'_, '_>, hooks: usize) {
    let h = hooks_with(hooks, "http://127.0.0.1:9/sink", QueueConfig::default());
    let mut db = Database::new();
    let mut rng = StdRng::seed_from_u64(5);
    let ids: Vec<String> = (0..VEHICLES).map(|i| format!("truck{i}")).collect();
    let random_point = |rng: &mut StdRng| {
        Object::Point(
            Point::new(
                LAT0 + rng.random::<f64>() * SPAN,
                LON0 + rng.random::<f64>() * SPAN,
            )
            .unwrap(),
        )
    };
    // Place every vehicle once before timing, so that every timed SET is a move with an old position.
    for id in &ids {
        set(&mut db, &h, id, random_point(&mut rng));
    }
    h.set_role(false);
    h.set_role(true);
    let before = h.metrics().events;
    let mut n = 0u64;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let v = rng.random_range(0..VEHICLES);
        let object = random_point(&mut rng);
        let events = set(&mut db, &h, &ids[v], object);
        n += 1;
        events
    });
    let m = h.metrics();
    eprintln!(
        "set_path_long_jumps({hooks}): {:.3} events per SET over {n} SETs",
        (m.events - before) as f64 / n.max(1) as f64
    );
}

/// A local HTTP sink on its own thread and runtime, counting the POSTs it accepts.
fn start_sink() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/sink", listener.local_addr().unwrap());
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(axum::routing::post(
                move |_body: axum::body::Bytes| {
                    let c = Arc::clone(&c);
                    async move {
                        c.fetch_add(1, Ordering::Relaxed);
                        "ok"
                    }
                },
            ));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (url, count)
}

/// Events queued to random hooks and delivered to the sink; one iteration is 1,000 events, counted
/// until the sink has them all.
#[divan::bench(args = [1_000, 70_000], sample_count = 60)]
fn delivered_event(bencher: Bencher<'_, '_>, hooks: usize) {
    const BATCH: usize = 1_000;
    let (url, received) = start_sink();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = QueueConfig {
        max_concurrent_deliveries: 32,
        ..Default::default()
    };
    let h = Arc::new(hooks_with(hooks, &url, config));
    let cancel = CancellationToken::new();
    rt.spawn({
        let (h, c) = (Arc::clone(&h), cancel.clone());
        async move { h.run(c).await }
    });
    let body = bytes::Bytes::from(format!(
        r#"{{"command":"set","group":"{:024x}","detect":"enter","hook":"fence:1","key":"fleet","time":"2026-11-21T05:00:00.000000000+00:00","id":"truck1","object":{{"type":"Point","coordinates":[-112.2,33.2]}}}}"#,
        1
    ));
    let mut rng = StdRng::seed_from_u64(3);
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        let target = received.load(Ordering::Relaxed) + BATCH as u64;
        for _ in 0..BATCH {
            let hook = format!("fence:{}", rng.random_range(0..hooks));
            h.outbox().push(
                &hook,
                Payload {
                    key: "fleet-truck1".into(),
                    body: body.clone(),
                },
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "sink stalled: {:?}",
                h.metrics().scheme(Scheme::Http)
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    cancel.cancel();
    assert_eq!(h.metrics().dropped(), 0);
}
