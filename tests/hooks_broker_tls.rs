//! Broker endpoints over TLS: Debian's `mosquitto`, `nats-server` and
//! `rabbitmq-server` each serve TLS with a certificate for 127.0.0.1 signed
//! by a CA made for the test (`openssl`). For each, a hook given that CA
//! through its endpoint's `cacert` option delivers over TLS; a hook given
//! another CA fails with a certificate error in the log, keeps its event
//! queued (not a dead letter), and retries.

#[path = "common/peers_brokers.rs"]
mod brokers;
#[path = "hooks_peers.rs"]
mod peers;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brokers::{AmqpPeer, MqttPeer, NatsPeer, Received};
use e2e::{run, start, wait_until};
use peers::{free_port, metric, scrape, sethook_enter};

const FLAGS: [&str; 4] = [
    "--hook-message-ttl-ms",
    "600000",
    "--metrics-addr",
    "127.0.0.1:0",
];

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `<name>.pem` with its key `<name>.key`.
fn make_ca(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `server.pem`/`server.key` for 127.0.0.1, signed by the CA `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// The test's certificates: the CA `ca`, another CA `other`, and the
/// broker's certificate signed by `ca`.
fn certificates() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path(), "ca");
    make_ca(certs.path(), "other");
    make_server_cert(certs.path(), "ca");
    certs
}

/// Sets the hooks `good` (the broker's CA) and `bad` (another CA) on
/// `url(ca file)`, writes one object into both fences, and checks that
/// `good` delivers its event over TLS while `bad` logs a certificate error
/// once, retries, and keeps its event queued, not a dead letter.
fn check_good_and_bad(
    certs: &Path,
    scheme: &str,
    url: impl Fn(&str) -> String,
    received: &Received,
    wait_events: impl Fn(usize) -> Vec<serde_json::Value>,
) {
    let p = |f: &str| certs.join(f).display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    sethook_enter(&mut c, "good", &url(&p("ca.pem")));
    sethook_enter(&mut c, "bad", &url(&p("other.pem")));
    assert_eq!(run(&mut c, "SET fleet t1 POINT 33.001 -112.001"), "OK");

    // The hook with the broker's CA delivers over TLS.
    let events = wait_events(1);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["hook"], "good");
    assert_eq!(events[0]["id"], "t1");
    assert_eq!(events[0]["detect"], "enter");

    // The other fails on the certificate, says so once, and keeps retrying
    // its event, which is neither delivered nor a dead letter.
    assert!(
        server.wait_log("hook delivery failed; retrying", Duration::from_secs(30)),
        "{}",
        server.log()
    );
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("hook delivery failed") && l.contains("hook=bad"))
        .unwrap_or_else(|| panic!("no failure line for the hook bad:\n{log}"));
    assert!(
        line.to_lowercase().contains("certificate") || line.contains("UnknownIssuer"),
        "the error names the certificate: {line}"
    );
    let retries = format!("geohook_hook_retries_total{{scheme=\"{scheme}\"}}");
    assert!(
        wait_until(Duration::from_secs(30), || metric(
            &scrape(&server),
            &retries
        ) >= 3.0),
        "{}",
        scrape(&server)
    );
    let page = scrape(&server);
    assert_eq!(metric(&page, "geohook_hook_queued_messages"), 1.0, "{page}");
    assert_eq!(
        metric(&page, "geohook_hook_dead_letters_held"),
        0.0,
        "{page}"
    );
    assert_eq!(run(&mut c, "HOOKDLQ bad"), "[]");
    assert_eq!(received.len(), 1, "{:?}", received.bodies());
    drop(server);
}

#[test]
fn an_mqtt_hook_delivers_over_tls_with_its_ca_and_a_wrong_ca_keeps_the_event_queued() {
    let certs = certificates();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let tls_port = free_port();
    // The subscriber reads the plain listener; the hooks publish on the TLS one.
    let peer = MqttPeer::start_with(
        "geo/tls",
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            p("ca.pem"),
            p("server.pem"),
            p("server.key")
        ),
    )
    .unwrap();
    check_good_and_bad(
        certs.path(),
        "mqtt",
        |ca| format!("mqtt://127.0.0.1:{tls_port}/geo/tls?qos=1&cacert={ca}"),
        &peer.received,
        |n| peer.wait_events(n),
    );
}

#[test]
fn a_nats_hook_delivers_over_tls_with_its_ca_and_a_wrong_ca_keeps_the_event_queued() {
    let certs = certificates();
    let p = |f: &str| certs.path().join(f);
    // nats-server requires TLS of every client; the test's subscriber too
    // verifies it with the CA.
    let peer =
        NatsPeer::start_tls("geo.tls", &p("ca.pem"), &p("server.pem"), &p("server.key")).unwrap();
    check_good_and_bad(
        certs.path(),
        "nats",
        |ca| peer.url(&format!("?cacert={ca}")),
        &peer.received,
        |n| peer.wait_events(n),
    );
}

#[test]
fn an_amqp_hook_delivers_over_tls_with_its_ca_and_a_wrong_ca_keeps_the_event_queued() {
    let certs = certificates();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let tls_port = free_port();
    // RabbitMQ's TLS listener beside its plain one, which the consumer reads;
    // it asks no client certificate.
    let peer = AmqpPeer::start_with(
        "geotls",
        &format!(
            "listeners.ssl.1 = 127.0.0.1:{tls_port}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n",
            p("ca.pem"),
            p("server.pem"),
            p("server.key")
        ),
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(90), || std::net::TcpStream::connect((
            "127.0.0.1",
            tls_port
        ))
        .is_ok()),
        "RabbitMQ's TLS listener never opened"
    );
    check_good_and_bad(
        certs.path(),
        "amqp",
        |ca| format!("amqps://guest:guest@127.0.0.1:{tls_port}/geotls?cacert={ca}"),
        &peer.received,
        |n| peer.wait_events(n),
    );
}
