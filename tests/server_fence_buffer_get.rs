//! A fence whose area is `BUFFER m GET key id` is logged with the object it
//! named then, as `OBJECT <geojson>`, so that the file does not depend on
//! an object that may be gone when it is replayed. The buffer must then be
//! applied to that object once, at every replay as at the first SETCHAN: a
//! point 1.5 km from the zone is outside a 1 km buffer before and after a
//! restart (logging the buffered object made the restart buffer it twice,
//! to 2 km, and the far point entered).

use std::time::Duration;

use e2e::{run, start};

/// A square of about 1.1 km around (33.005, -111.995).
const ZONE: &str = r#"{"type":"Polygon","coordinates":[[[-112,33],[-111.99,33],[-111.99,33.01],[-112,33.01],[-112,33]]]}"#;

/// The id of the first event the channel delivers after `far` (about
/// 1.5 km north of the zone) and then `near` (about 500 m north) are set.
fn first_event(server: &e2e::Server, round: &str) -> String {
    let mut c = server.client();
    let mut sub_conn = server.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    sub.subscribe("c").unwrap();
    let far = format!("far{round}");
    let near = format!("near{round}");
    assert_eq!(
        run(&mut c, &format!("SET fleet {far} POINT 33.0235 -111.995")),
        "OK"
    );
    assert_eq!(
        run(&mut c, &format!("SET fleet {near} POINT 33.0145 -111.995")),
        "OK"
    );
    let body: String = sub.get_message().unwrap().get_payload().unwrap();
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    event["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_buffered_get_area_is_buffered_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let r: String = redis::cmd("SET")
        .arg("zones")
        .arg("z1")
        .arg("OBJECT")
        .arg(ZONE)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, "OK");
    assert_eq!(
        run(
            &mut c,
            "SETCHAN c WITHIN fleet FENCE DETECT enter BUFFER 1000 GET zones z1"
        ),
        "1"
    );
    assert_eq!(first_event(&server, "1"), "near1", "before the restart");
    let server = server.restart().unwrap();
    assert_eq!(first_event(&server, "2"), "near2", "after the restart");
}
