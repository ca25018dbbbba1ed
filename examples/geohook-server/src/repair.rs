//! Start-up check of the append-only file through `wal-repair`.
//!
//! A torn tail (a command cut off by a crash) is cut once, with the removed
//! bytes kept in a sidecar file and one warning logged by `wal-repair`.
//! Damage before the end refuses to start with the file and offset, unless
//! `--accept-data-loss` is given: then everything from the damaged offset on
//! is moved to a `.lost` file beside the log and the log is cut there
//! (`wal_repair::cut_at`, under the same lock as the repair).

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
            // wal-repair's cut takes the same lock as its repair and keeps
            // every removed byte in a `.lost` file beside the log.
            let cut = wal_repair::cut_at(path, offset, &config)
                .with_context(|| format!("cutting {} at offset {offset}", path.display()))?;
            metrics.repairs.inc();
            tracing::warn!(
                path = %path.display(),
                offset,
                %reason,
                saved = ?cut.evidence,
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
