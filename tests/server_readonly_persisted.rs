//! READONLY and the server id outlive a restart, as Tile38 keeps both in its
//! config file: READONLY writes `read_only` at once, and the id (SERVER's
//! `id`, SERVER EXT's `tile38_id`) is made on the first start, 32 hex digits, and
//! read back on every start after.

use e2e::{run, run_json, start};

fn server_id(c: &mut redis::Connection) -> String {
    run_json(c, "SERVER")["stats"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

#[test]
fn readonly_and_the_server_id_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let id = server_id(&mut server.json_client());
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET k a POINT 33 -112"), "OK");
    assert_eq!(run(&mut c, "READONLY yes"), "OK");
    assert!(run(&mut c, "SET k b POINT 33 -112").contains("read only"));

    // Back in read-only mode, with the same id.
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert!(run(&mut c, "SET k b POINT 33 -112").contains("read only"));
    assert_eq!(server_id(&mut server.json_client()), id);
    // CONFIG REWRITE keeps both.
    assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert!(run(&mut c, "SET k b POINT 33 -112").contains("read only"));
    assert_eq!(server_id(&mut server.json_client()), id);
    assert_eq!(run(&mut c, "READONLY no"), "OK");

    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET k b POINT 33 -112"), "OK");
    assert_eq!(run(&mut c, "SCAN k COUNT"), "2");
    assert_eq!(server_id(&mut server.json_client()), id);
}
