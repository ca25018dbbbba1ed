//! Every repair emits exactly one structured warning with the documented fields; a clean run emits none.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{log, scratch, Fmt};
use wal_repair::{repair, Config, Outcome};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn one_warning_per_repair() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = scratch();
    let (bytes, ends) = log(Fmt::Resp, 4);
    let path = common::write(dir.path(), "warn.aof", &bytes[..bytes.len() - 4]);
    let Outcome::Repaired(report) =
        repair(&path, &wal_repair::resp::Resp, &Config::default()).unwrap()
    else {
        panic!("expected a repair");
    };
    assert!(matches!(
        repair(&path, &wal_repair::resp::Resp, &Config::default()).unwrap(),
        Outcome::Clean(_)
    ));

    let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    let line = &lines[0];
    assert_eq!(line["level"], "WARN");
    let f = &line["fields"];
    assert_eq!(f["path"], path.display().to_string());
    assert_eq!(f["valid_len"], ends[2] as u64);
    assert_eq!(f["discarded"], (bytes.len() - 4 - ends[2]) as u64);
    assert_eq!(f["sidecar"], report.sidecar.display().to_string());
    assert_eq!(f["reason"], "record runs past the end of the file");
}
