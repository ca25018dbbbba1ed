//! `--import-tile38 DIR`: turns a Tile38 data directory into this server's
//! own data file, once, leaving the Tile38 files untouched.
//!
//! Tile38's `appendonly.aof` is RESP (or inline) commands as clients sent
//! them, with relative TTLs (`SET … EX seconds`, `EXPIRE key id seconds`,
//! `SETHOOK … EX seconds`) and the lowercase `del` / `delhook` / `delchan`
//! records its expiry writes. Each command is rewritten into the form this
//! server logs (an absolute `PXAT` / `PEXPIREAT`), checked by applying it
//! to a scratch copy of the data through the same write path as a replay,
//! and written to a new `appendonly.aof` behind a fresh replication header.
//!
//! Relative TTLs: the file carries no time of writing, so the true deadline
//! of `EX 60` is unknown. Tile38 itself re-applies `EX` relative to the time
//! it loads the file (every load gives the full TTL again); the import does
//! the same once, relative to the moment of the import, which is exactly
//! what Tile38 would answer if it were started now, and then writes the
//! deadline as an absolute time, so that no later restart extends it
//! again. Objects that already expired under Tile38 have a logged `del`
//! and stay deleted.
//!
//! Commands this server does not know (a newer Tile38's) are counted by
//! name; the import refuses with that count unless
//! `--accept-data-loss` says to skip them. The same holds for commands it
//! supports but that fail when applied. A torn last record is dropped, as
//! Tile38 drops it when it loads the file. Tile38's `config` file is
//! carried over for the properties this server has (`requirepass`,
//! `leaderauth`, `protected-mode`, `maxmemory`); the others are named in
//! the log. The events still queued in Tile38's hook queue (`queue.db`)
//! go into the hook journal (see [`crate::import_queue`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};

use crate::aof::{Aof, AOF_NAME};
use crate::cli::HookArgs;
use crate::cmd::args::lower;
use crate::cmd::spec::{self, Kind};
use crate::hooks::engine::HookEngine;
use crate::import_queue::file_limits;
use crate::settings::{Settings, CONFIG_NAME};
use crate::state::Core;

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Commands written to the new file.
    pub(crate) imported: u64,
    /// Commands skipped because this server does not have them, by name.
    pub(crate) unsupported: BTreeMap<String, u64>,
    /// Commands skipped because applying them failed, by name.
    pub(crate) failed: BTreeMap<String, u64>,
    /// Bytes of an incomplete last record that were dropped.
    pub(crate) torn_tail: u64,
    /// Relative TTLs turned into absolute deadlines.
    pub(crate) ttls: u64,
    /// Hook events still queued in Tile38's `queue.db`, written to the hook
    /// journal.
    pub(crate) events: u64,
    /// Queued events whose time-to-live had passed (BuntDB's rule).
    pub(crate) events_expired: u64,
    /// Queued events that were not imported: unreadable values, or the
    /// hook journal is off.
    pub(crate) events_dropped: u64,
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when the data file in `dir` holds any command besides the
/// replication header.
fn has_data(path: &Path) -> anyhow::Result<bool> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let mut at = 0;
    while at < bytes.len() {
        match geohook_resp::parse(&bytes[at..], &file_limits()) {
            Ok(Some((args, used))) => {
                if !args.is_empty()
                    && !args[0].eq_ignore_ascii_case(geohook_repl::HEADER_COMMAND.as_bytes())
                {
                    return Ok(true);
                }
                at += used;
            }
            // Anything unreadable counts as data: never write over it.
            _ => return Ok(true),
        }
    }
    Ok(false)
}

/// An absolute deadline in ms for `secs` seconds after `now_ms`.
fn deadline(secs: &[u8], now_ms: i64) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(secs).unwrap_or("");
    let s: f64 = geohook_db::parse_number(text)
        .filter(|v| v.is_finite())
        .with_context(|| format!("bad TTL {text:?}"))?;
    Ok(now_ms
        .saturating_add((s * 1000.0) as i64)
        .to_string()
        .into_bytes())
}

/// Rewrites one Tile38 command into the form this server logs: relative
/// TTLs become absolute deadlines. Returns the command and whether a TTL
/// was rewritten.
fn translate(mut args: Vec<Vec<u8>>, now_ms: i64) -> anyhow::Result<(Vec<Vec<u8>>, bool)> {
    let name = lower(&args[0]);
    let mut ttl = false;
    match name.as_str() {
        // SET key id [FIELD name value]… [EX s] [NX|XX] <object>, and
        // SETHOOK name endpoint [META k v]… [EX s] <search>.
        "set" | "sethook" => {
            let mut i = 3;
            while i < args.len() {
                match lower(&args[i]).as_str() {
                    "field" | "meta" => i += 3,
                    "nx" | "xx" => i += 1,
                    "ex" if i + 1 < args.len() => {
                        let at = deadline(&args[i + 1], now_ms)?;
                        args[i] = b"pxat".to_vec();
                        args[i + 1] = at;
                        ttl = true;
                        i += 2;
                    }
                    _ => break,
                }
            }
        }
        // EXPIRE key id seconds.
        "expire" if args.len() == 4 => {
            let at = deadline(&args[3], now_ms)?;
            args = vec![b"pexpireat".to_vec(), args[1].clone(), args[2].clone(), at];
            ttl = true;
        }
        _ => {}
    }
    Ok((args, ttl))
}

/// Carries Tile38's `config` over to this server's settings file in `dir`
/// (when `dir` has none), for the properties both have.
fn import_config(src: &Path, dir: &Path) -> anyhow::Result<()> {
    let from = src.join("config");
    let text = match std::fs::read(&from) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", from.display())),
    };
    if dir.join(CONFIG_NAME).exists() {
        tracing::warn!(
            "{} exists: Tile38's config file is not carried over",
            dir.join(CONFIG_NAME).display()
        );
        return Ok(());
    }
    let json: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a JSON config file", from.display()))?;
    let Some(map) = json.as_object() else {
        bail!("{}: not a JSON object", from.display());
    };
    let mut settings = Settings::default();
    let mut skipped = Vec::new();
    for (k, v) in map {
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match k.as_str() {
            "requirepass" | "leaderauth" | "protected-mode" | "maxmemory" => {
                if !value.is_empty() {
                    settings
                        .set(k, &value)
                        .with_context(|| format!("{}: property {k}", from.display()))?;
                }
            }
            // The node keeps its identity and its READONLY mode.
            "server_id" if !value.is_empty() => settings.server_id = value,
            "read_only" => settings.read_only = v.as_bool().unwrap_or(false),
            _ => skipped.push(k.as_str()),
        }
    }
    if !skipped.is_empty() {
        tracing::warn!(properties = ?skipped, "Tile38 config properties not carried over");
    }
    settings
        .save(dir)
        .with_context(|| format!("write {}", dir.join(CONFIG_NAME).display()))
}

/// Imports the Tile38 data directory `src` into `dir` at `now_ms`.
///
/// # Errors
///
/// `dir` already holds data; `src` has no `appendonly.aof` or is damaged
/// before its last record; commands were unsupported or failed and
/// `accept_data_loss` is off (nothing is written then); any I/O error.
pub(crate) fn import_tile38(
    src: &Path,
    dir: &Path,
    accept_data_loss: bool,
    hook_args: &HookArgs,
    journal: bool,
    now_ms: i64,
) -> anyhow::Result<Report> {
    let target = dir.join(AOF_NAME);
    if has_data(&target)? {
        bail!(
            "{} already holds data: --import-tile38 imports into an empty data directory only \
             (start without --import-tile38 to use it)",
            target.display()
        );
    }
    let from = src.join("appendonly.aof");
    let bytes = std::fs::read(&from).with_context(|| format!("read {}", from.display()))?;

    // A scratch core checks every command through the write path, with
    // logging off, so the file written replays at start.
    let scratch_path = dir.join(format!("{AOF_NAME}.import-check"));
    let mut core = Core {
        db: geohook_db::Database::new(),
        aof: Aof::open(&scratch_path)
            .with_context(|| format!("open {}", scratch_path.display()))?,
        loading: true,
    };
    let hooks = HookEngine::new(hook_args).context("hook settings")?;
    let mut report = Report::default();
    let mut out = geohook_repl::encode_header(&geohook_repl::ReplId::random(), 0, 0);
    let mut at = 0;
    let result = (|| -> anyhow::Result<()> {
        loop {
            // Tile38 skips zero runs left by a crash.
            while at < bytes.len() && bytes[at] == 0 {
                at += 1;
            }
            if at >= bytes.len() {
                break;
            }
            let (args, used) = match geohook_resp::parse(&bytes[at..], &file_limits()) {
                Ok(Some(x)) => x,
                Ok(None) => {
                    report.torn_tail = (bytes.len() - at) as u64;
                    tracing::warn!(
                        bytes = report.torn_tail,
                        "{}: dropping an incomplete last command, as Tile38 does",
                        from.display()
                    );
                    break;
                }
                Err(e) => bail!("{}: damaged record at offset {at}: {e}", from.display()),
            };
            let offset = at;
            at += used;
            if args.is_empty() {
                continue;
            }
            let name = lower(&args[0]).to_string();
            if !spec::lookup(&name).is_some_and(|s| s.kind == Kind::Write) {
                *report.unsupported.entry(name).or_default() += 1;
                continue;
            }
            let (args, ttl) = match translate(args, now_ms) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(offset, error = %e, command = %name, "command not imported");
                    *report.failed.entry(name).or_default() += 1;
                    continue;
                }
            };
            if let Err(e) = crate::replay::apply(&mut core, Some(&hooks), &args) {
                tracing::warn!(offset, error = %e, command = %name, "command not imported");
                *report.failed.entry(name).or_default() += 1;
                continue;
            }
            report.ttls += u64::from(ttl);
            report.imported += 1;
            geohook_resp::encode_command(&mut out, &args);
        }
        Ok(())
    })();
    drop(core);
    let _ = std::fs::remove_file(&scratch_path);
    result?;
    let lossy = !report.unsupported.is_empty() || !report.failed.is_empty();
    if lossy && !accept_data_loss {
        let mut why = Vec::new();
        if !report.unsupported.is_empty() {
            why.push(format!(
                "commands this server does not support: {}",
                counts(&report.unsupported)
            ));
        }
        if !report.failed.is_empty() {
            why.push(format!(
                "commands that failed to apply (see the log): {}",
                counts(&report.failed)
            ));
        }
        bail!(
            "{}: {}; nothing was imported (add --accept-data-loss to import without them)",
            from.display(),
            why.join("; ")
        );
    }
    // The journal before the data file: the data file's presence is what
    // makes a second import refuse, so every event is in place by then.
    import_queue(src, dir, accept_data_loss, journal, now_ms, &mut report)?;
    crate::fsio::write(&target, &out).with_context(|| format!("write {}", target.display()))?;
    import_config(src, dir)?;
    tracing::info!(
        imported = report.imported,
        ttls = report.ttls,
        unsupported = %counts(&report.unsupported),
        failed = %counts(&report.failed),
        torn_tail = report.torn_tail,
        hook_events = report.events,
        hook_events_expired = report.events_expired,
        hook_events_dropped = report.events_dropped,
        "Tile38 data imported from {}",
        src.display()
    );
    Ok(report)
}

/// Carries the events still queued in `src/queue.db` (if there is one)
/// into the hook journal of `dir`. A `queue.db` BuntDB would refuse stops
/// the import unless `accept_data_loss`; with the journal off
/// (`--hook-journal no`) the events cannot be kept and are counted as
/// dropped.
fn import_queue(
    src: &Path,
    dir: &Path,
    accept_data_loss: bool,
    journal: bool,
    now_ms: i64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let from = src.join("queue.db");
    let bytes = match std::fs::read(&from) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", from.display())),
    };
    let mod_ms = std::fs::metadata(&from)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(now_ms, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let queue = match crate::import_queue::read(&bytes, mod_ms, now_ms) {
        Ok(q) => q,
        Err(e) if accept_data_loss => {
            tracing::warn!(error = %e, "{}: hook queue not imported", from.display());
            return Ok(());
        }
        Err(e) => bail!(
            "{}: {e:#}; nothing was imported (add --accept-data-loss to import without \
             the queued hook events)",
            from.display()
        ),
    };
    if queue.torn_tail > 0 {
        tracing::warn!(
            bytes = queue.torn_tail,
            "{}: dropping an incomplete last command, as BuntDB does",
            from.display()
        );
    }
    report.events_expired = queue.expired;
    report.events_dropped = queue.unreadable;
    if queue.events.is_empty() {
        return Ok(());
    }
    if !journal {
        tracing::warn!(
            events = queue.events.len(),
            "{}: queued hook events not imported: the hook journal is off (--hook-journal no)",
            from.display()
        );
        report.events_dropped += queue.events.len() as u64;
        return Ok(());
    }
    crate::import_queue::write_journal(dir, &queue.events, now_ms)?;
    report.events = queue.events.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<Vec<u8>> {
        xs.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    #[test]
    fn relative_ttls_become_absolute_deadlines() {
        let now = 1_000_000;
        let (a, ttl) = translate(
            v(&[
                "SET", "fleet", "t1", "FIELD", "ex", "1", "EX", "2.5", "POINT", "1", "2",
            ]),
            now,
        )
        .unwrap();
        assert!(ttl);
        assert_eq!(
            a,
            v(&["SET", "fleet", "t1", "FIELD", "ex", "1", "pxat", "1002500", "POINT", "1", "2"])
        );
        let (a, _) = translate(v(&["expire", "fleet", "t1", "10"]), now).unwrap();
        assert_eq!(a, v(&["pexpireat", "fleet", "t1", "1010000"]));
        let (a, ttl) = translate(
            v(&[
                "SETHOOK", "h", "http://x", "META", "a", "b", "EX", "1", "NEARBY", "k",
            ]),
            now,
        )
        .unwrap();
        assert!(ttl);
        assert_eq!(a[6..8], v(&["pxat", "1001000"]));
        let (a, ttl) = translate(v(&["del", "fleet", "t1"]), now).unwrap();
        assert!(!ttl);
        assert_eq!(a, v(&["del", "fleet", "t1"]));
        assert!(translate(v(&["SET", "k", "i", "EX", "soon", "POINT", "1", "2"]), now).is_err());
    }
}
