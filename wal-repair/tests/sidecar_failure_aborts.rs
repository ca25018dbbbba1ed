//! If the evidence cannot be written, repair aborts before truncating: the log is byte-identical. The
//! failures are real even for root: the sidecar directory is a regular file (ENOTDIR), or the file
//! system seam reports a full disk.

mod common;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use common::{log, scratch, Fmt};
use wal_repair::{repair, repair_with, Config, Error, RepairFs, StdFs};

#[derive(Debug)]
struct DiskFull;

impl RepairFs for DiskFull {
    fn write_sidecar(&self, path: &Path, report: &[u8], data: &mut dyn Read) -> io::Result<()> {
        // Create the file and write part of it, as a real ENOSPC would, then fail.
        std::fs::write(path, &report[..report.len() / 2])?;
        let _ = data;
        Err(io::Error::from_raw_os_error(28))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn truncate(&self, _: &File, _: u64) -> io::Result<()> {
        panic!("truncate must not be reached after a failed sidecar write");
    }
}

#[test]
fn unwritable_sidecar_leaves_log_untouched() {
    for fmt in [Fmt::Frames, Fmt::Resp] {
        let dir = scratch();
        let (bytes, _) = log(fmt, 4);
        let torn = &bytes[..bytes.len() - 9];
        let path = common::write(dir.path(), "log", torn);
        let not_a_dir = common::write(dir.path(), "plain-file", b"");
        let config = Config {
            sidecar_dir: Some(not_a_dir.clone()),
            ..Config::default()
        };
        match repair(&path, fmt.format(), &config) {
            Err(Error::Io { path: p, .. }) => assert!(p.starts_with(&not_a_dir)),
            other => panic!("{fmt:?}: expected an I/O error, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), torn);

        match repair_with(
            &path,
            fmt.format(),
            &Config::default(),
            &DiskFull,
            &mut |_| {},
        ) {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(28)),
            other => panic!("{fmt:?}: expected ENOSPC, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), torn);
        // The half-written sidecar was removed, so no incomplete evidence is left behind.
        assert!(common::sidecars(dir.path()).is_empty());
    }
}
