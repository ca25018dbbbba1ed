//! A crash after the sidecar is durable but before the truncate: the log still ends in the same torn
//! tail, a re-run repairs it with a new sidecar, the first sidecar is kept, and a third run is clean.

mod common;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use common::{log, scratch, sidecars, FORMATS};
use wal_repair::{repair, repair_with, Config, Error, Outcome, RepairFs, StdFs};

/// Writes real sidecars, then "crashes" instead of truncating.
#[derive(Debug)]
struct CrashBeforeTruncate;

impl RepairFs for CrashBeforeTruncate {
    fn write_sidecar(&self, path: &Path, report: &[u8], data: &mut dyn Read) -> io::Result<()> {
        StdFs.write_sidecar(path, report, data)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn truncate(&self, _: &File, _: u64) -> io::Result<()> {
        Err(io::Error::other("simulated crash before truncate"))
    }
}

#[test]
fn rerun_converges() {
    for fmt in FORMATS {
        let dir = scratch();
        let (bytes, ends) = log(fmt, 6);
        let torn = &bytes[..ends[4] + 100];
        let path = common::write(dir.path(), "crash.log", torn);
        let err = repair_with(
            &path,
            fmt.format(),
            &Config::default(),
            &CrashBeforeTruncate,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), torn, "log must be untouched");
        let first = sidecars(dir.path());
        assert_eq!(first.len(), 1);
        let first_contents = std::fs::read(&first[0]).unwrap();

        let Outcome::Repaired(report) = repair(&path, fmt.format(), &Config::default()).unwrap()
        else {
            panic!("{fmt:?}: re-run did not repair");
        };
        assert_eq!(report.valid_len as usize, ends[4]);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..ends[4]]);
        let all = sidecars(dir.path());
        assert_eq!(all.len(), 2);
        assert_eq!(
            std::fs::read(&first[0]).unwrap(),
            first_contents,
            "first sidecar clobbered"
        );
        let (_, a) = common::read_sidecar(&all[0]);
        let (_, b) = common::read_sidecar(&all[1]);
        assert_eq!(a, b, "both sidecars hold the same cut bytes");

        assert!(matches!(
            repair(&path, fmt.format(), &Config::default()).unwrap(),
            Outcome::Clean(_)
        ));
        assert_eq!(sidecars(dir.path()).len(), 2);
    }
}
