//! Start-up check of the append-only file through `wal-repair`.
//!
//! A torn tail (a command cut off by a crash) is cut once, with the removed
//! bytes kept in a sidecar file and one warning logged by `wal-repair`.
//! Damage before the end refuses to start with the file and offset, unless
//! `--accept-data-loss` is given: then everything from the damaged offset on
//! is moved to a `.lost` file beside the log and the log is cut there.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context as _;
use wal_repair::{resp::Resp, Config, Outcome};

use crate::metrics::{set_gauge, Metrics};

/// Checks and, where allowed, repairs the file at `path` (a missing file is
/// fine: the server starts empty).
///
/// # Errors
///
/// Corruption before the end without `accept_loss`, naming the file and
/// offset; any I/O failure.
pub(crate) fn at_start(path: &Path, accept_loss: bool, metrics: &Metrics) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let config = Config::default();
    match wal_repair::repair(path, &Resp, &config) {
        Ok(Outcome::Clean(_)) => Ok(()),
        Ok(Outcome::Repaired(report)) => {
            metrics.repairs.inc();
            set_gauge(&metrics.repaired_bytes, report.discarded);
            Ok(())
        }
        Err(wal_repair::Error::Corrupt {
            path: p,
            offset,
            reason,
        }) => {
            if !accept_loss {
                anyhow::bail!(
                    "{} is damaged at offset {offset} ({reason}); valid commands may follow the damage, so \
                     the server will not start. Inspect the file, or start with --accept-data-loss to keep \
                     only the commands before offset {offset} (the rest is saved beside the file)",
                    p.display()
                );
            }
            let lost = cut_at(path, offset)?;
            metrics.repairs.inc();
            tracing::warn!(
                path = %path.display(),
                offset,
                %reason,
                saved = %lost.display(),
                "--accept-data-loss: dropped everything from the damaged offset on"
            );
            // The cut file must now end cleanly; anything else is a bug worth stopping for.
            match wal_repair::repair(path, &Resp, &config)? {
                Outcome::Clean(_) => Ok(()),
                Outcome::Repaired(r) => {
                    set_gauge(&metrics.repaired_bytes, r.discarded);
                    Ok(())
                }
            }
        }
        Err(e) => Err(e).with_context(|| format!("checking {}", path.display())),
    }
}

/// Copies `[offset, EOF)` to `<path>.<unix secs>.lost`, fsyncs it, then
/// truncates the log to `offset` and fsyncs it. Returns the copy's path.
fn cut_at(path: &Path, offset: u64) -> anyhow::Result<std::path::PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let lost = path.with_extension(format!("aof.{secs}.{}.lost", std::process::id()));
    let mut src = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    src.seek(SeekFrom::Start(offset))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lost)
        .with_context(|| format!("create {}", lost.display()))?;
    std::io::copy(&mut (&mut src).take(u64::MAX), &mut out)?;
    out.flush()?;
    out.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    src.set_len(offset)?;
    src.sync_all()?;
    Ok(lost)
}
