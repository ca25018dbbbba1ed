//! Issue 15, a server that will not start on its own file: a hook whose
//! area is `GET key id` is logged with the shape resolved, so deleting or
//! expiring that object, restarting and shrinking all keep the server
//! starting and the hook in place.

use std::time::Duration;

use e2e::{run, start, wait_until};

#[test]
fn a_hook_on_a_get_area_survives_its_object_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--appendfsync", "always"]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET zones z1 BOUNDS 33 -116 34 -115"), "OK");
    assert_eq!(
        run(&mut c, "SET zones z2 EX 1 BOUNDS 33 -116 34 -115"),
        "OK"
    );
    assert_eq!(
        run(
            &mut c,
            "SETHOOK h1 http://127.0.0.1:9/x WITHIN fleet FENCE GET zones z1"
        ),
        "1"
    );
    assert_eq!(
        run(
            &mut c,
            "SETHOOK h2 http://127.0.0.1:9/x INTERSECTS fleet FENCE GET zones z2"
        ),
        "1"
    );
    let hooks = run(&mut c, "HOOKS *");
    assert!(
        hooks.contains("OBJECT"),
        "listed with the resolved shape: {hooks}"
    );
    // One object deleted, the other expires.
    assert_eq!(run(&mut c, "DEL zones z1"), "1");
    assert!(wait_until(Duration::from_secs(30), || run(
        &mut c,
        "EXISTS zones z2"
    ) == "0"));
    let listed = |c: &mut redis::Connection| {
        let hooks = run(c, "HOOKS *");
        hooks.contains("h1") && hooks.contains("h2")
    };
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert!(listed(&mut c), "{}", run(&mut c, "HOOKS *"));
    // The fence still works: a point inside the area is inside.
    assert_eq!(run(&mut c, "SET fleet t POINT 33.5 -115.5"), "OK");
    // A snapshot holds the hooks without the objects; it loads too.
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert!(wait_until(Duration::from_secs(30), || {
        server.stat(&mut c, "aof_rewrites") != "0"
    }));
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert!(listed(&mut c), "{}", run(&mut c, "HOOKS *"));
    assert_eq!(run(&mut c, "GET fleet t POINT"), "[33.5 -115.5]");
}

#[test]
fn a_file_from_before_resolved_areas_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET fleet a POINT 1 1"), "OK");
    drop(c);
    let aof = server.aof();
    let mut server = server;
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    // What an older server logged: an object with a deadline (long past
    // by the time the file is replayed, so replay does not load it), then a
    // hook whose area refers to it.
    let mut tail = Vec::new();
    for args in [
        &[
            "set", "zones", "z1", "pxat", "1", "bounds", "33", "-116", "34", "-115",
        ][..],
        &[
            "sethook",
            "old",
            "http://127.0.0.1:9/x",
            "within",
            "fleet",
            "fence",
            "get",
            "zones",
            "z1",
        ],
    ] {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        tail.extend(e2e::resp(&a));
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(&aof).unwrap();
    std::io::Write::write_all(&mut f, &tail).unwrap();
    drop(f);
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "GET fleet a POINT"), "[1 1]");
    assert!(!run(&mut c, "HOOKS *").contains("old"));
    assert!(server
        .log()
        .contains("dropping a hook whose GET area no longer exists"));
}
