//! Repairing twice: the second run is clean and writes no sidecar. A log locked by another holder is not
//! touched.

mod common;

use common::{log, scratch, sidecars, FORMATS};
use wal_repair::{repair, Config, Error, Outcome};

#[test]
fn second_run_is_clean() {
    for fmt in FORMATS {
        let dir = scratch();
        let (bytes, ends) = log(fmt, 5);
        let path = common::write(dir.path(), "twice.log", &bytes[..bytes.len() - 7]);
        let first = repair(&path, fmt.format(), &Config::default()).unwrap();
        assert!(matches!(first, Outcome::Repaired(ref r) if r.valid_len as usize == ends[3]));
        let repaired = std::fs::read(&path).unwrap();
        for _ in 0..2 {
            let again = repair(&path, fmt.format(), &Config::default()).unwrap();
            let Outcome::Clean(scan) = again else {
                panic!("{fmt:?}: second repair did something: {again:?}");
            };
            assert_eq!(scan.records, 4);
            assert_eq!(std::fs::read(&path).unwrap(), repaired);
            assert_eq!(sidecars(dir.path()).len(), 1);
        }
    }
}

#[test]
fn locked_log_is_left_alone() {
    let dir = scratch();
    let fmt = common::Fmt::Resp;
    let (bytes, _) = log(fmt, 3);
    let path = common::write(dir.path(), "locked.log", &bytes[..bytes.len() - 1]);
    let holder = std::fs::File::open(&path).unwrap();
    holder.lock().unwrap();
    assert!(matches!(
        repair(&path, fmt.format(), &Config::default()),
        Err(Error::Locked { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..bytes.len() - 1]);
    holder.unlock().unwrap();
    assert!(matches!(
        repair(&path, fmt.format(), &Config::default()),
        Ok(Outcome::Repaired(_))
    ));
}

#[test]
fn strict_policy_never_modifies() {
    let dir = scratch();
    let fmt = common::Fmt::Frames;
    let (bytes, ends) = log(fmt, 3);
    let path = common::write(dir.path(), "strict.log", &bytes[..bytes.len() - 1]);
    let strict = Config {
        policy: wal_repair::Policy::Strict,
        ..Config::default()
    };
    match repair(&path, fmt.format(), &strict) {
        Err(Error::TornTail {
            offset, discarded, ..
        }) => {
            assert_eq!(offset as usize, ends[1]);
            assert_eq!(discarded as usize, bytes.len() - 1 - ends[1]);
        }
        other => panic!("expected TornTail, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..bytes.len() - 1]);
    assert!(sidecars(dir.path()).is_empty());
}
