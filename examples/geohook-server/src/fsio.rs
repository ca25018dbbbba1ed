//! Durable file replacement: the one place the server writes a file so that
//! a crash leaves either the old content or the new, never a mix.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

/// Fsyncs the directory that holds `path`, so that a rename or a creation
/// in it survives a crash.
///
/// # Errors
///
/// Opening or syncing the directory failed.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Renames `from` over `to` and fsyncs the directory: `from` must already be
/// complete and fsynced.
///
/// # Errors
///
/// The rename or the directory sync failed.
pub(crate) fn replace(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_parent(to)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync,
/// rename, fsync of the directory.
///
/// # Errors
///
/// Any I/O error; `path` is then unchanged (a temporary file may be left).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    replace(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        super::write(&path, b"first, longer content").unwrap();
        super::write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
