//! SIGKILL during a stream of writes, 20 times: every restart succeeds, and
//! with `--appendfsync always` no acknowledged write is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{run, start};
use rand::Rng;

/// What the test knows about one id: present with this latitude, or deleted.
type Expected = HashMap<String, Option<i64>>;

/// Writes the writer thread saw acknowledged, in order.
type Acked = Arc<Mutex<Vec<(String, Option<i64>)>>>;

#[test]
fn no_acknowledged_write_is_lost_across_20_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected: Expected = HashMap::new();
    let mut next_id = 0u64;
    let mut rng = rand::rng();
    let mut repairs = 0;
    for cycle in 0..20 {
        let server = start(dir.path(), &["--appendfsync", "always"]).unwrap();
        if server.log().contains("repair") || server.log().contains("torn") {
            repairs += 1;
        }
        // Everything acknowledged before the last kill is there, with its value.
        let mut c = server.client();
        for (id, want) in &expected {
            let got = run(&mut c, &format!("GET fleet {id} POINT"));
            match want {
                Some(lat) => assert_eq!(got, format!("[{lat} -115]"), "cycle {cycle}: {id}"),
                None => assert_eq!(got, "nil", "cycle {cycle}: deleted {id} came back"),
            }
        }
        // Writes from another thread; the kill lands at a random point.
        let acked: Acked = Arc::default();
        let in_flight: Arc<Mutex<Option<String>>> = Arc::default();
        let mut wc = server.client();
        let (a, f) = (acked.clone(), in_flight.clone());
        let known: Vec<String> = expected
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let start_id = next_id;
        let writer = std::thread::spawn(move || {
            let mut n = start_id;
            loop {
                // Every fifth operation deletes an id written earlier.
                let (id, op) = if n % 5 == 4 && !known.is_empty() {
                    let id = known[(n as usize) % known.len()].clone();
                    (id.clone(), (format!("DEL fleet {id}"), None))
                } else {
                    let id = format!("t{n}");
                    let lat = (n % 80) as i64;
                    (
                        id.clone(),
                        (format!("SET fleet {id} POINT {lat} -115"), Some(lat)),
                    )
                };
                *f.lock().unwrap() = Some(id.clone());
                let r = run(&mut wc, &op.0);
                if r.starts_with("ERR") || r.contains("Broken") || r.contains("Io") {
                    return n;
                }
                a.lock().unwrap().push((id, op.1));
                *f.lock().unwrap() = None;
                n += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(20..150)));
        server.kill9();
        next_id = writer.join().unwrap() + 1;
        for (id, v) in acked.lock().unwrap().drain(..) {
            expected.insert(id, v);
        }
        // The write in flight at the kill may or may not have landed.
        let maybe = in_flight.lock().unwrap().take();
        if let Some(id) = maybe {
            expected.remove(&id);
        }
    }
    assert!(
        expected.len() > 20,
        "too few writes were made: {}",
        expected.len()
    );
    let server = start(dir.path(), &["--appendfsync", "always"]).unwrap();
    let mut c = server.client();
    let live = expected.values().filter(|v| v.is_some()).count() as i64;
    let count: i64 = run(&mut c, "SCAN fleet COUNT").parse().unwrap();
    // Unacknowledged in-flight SETs may have landed too, so at least.
    assert!(count >= live, "{count} < {live}");
    eprintln!(
        "writes checked: {}, starts that repaired a torn tail: {repairs}",
        expected.len()
    );
}
