//! Tile38's hook queue (`queue.db`), read for `--import-tile38`: the events
//! Tile38 had queued for its hooks and not yet delivered, written into this
//! server's hook journal so that they are delivered after the switch.
//!
//! `queue.db` is a BuntDB file: RESP arrays of `set key value`, `set key
//! value ex seconds` (or `ae unix-seconds`), `del key` and `flushdb`. Tile38
//! keeps each event it queues for an endpoint under `hook:log:<n>`, `n`
//! growing by one per event, with a 30-second time-to-live, and deletes it
//! once an endpoint took it. BuntDB counts a relative `ex` from the file's
//! modification time when it loads and drops what has expired by then; an
//! incomplete last command is cut. The import reads the file by the same
//! rules, so the events imported are exactly those Tile38 would still send
//! if it were started now, in its order.
//!
//! Each event keeps Tile38's JSON and gets this server's `event_id` member
//! (receivers drop duplicates by it); from the import on, this server's
//! retry policy and time-to-live apply, counted from the import. An event
//! whose hook does not exist after the data import is dropped when the
//! journal is opened, as for any event whose hook was deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use geohook_hooks::{Journal, Payload};
use geohook_resp::Limits;

use crate::hooks::engine::JOURNAL_NAME;

/// Tile38's key prefix for a queued event.
const EVENT_PREFIX: &str = "hook:log:";

/// Generous request limits for reading a file a server wrote (Tile38's
/// `appendonly.aof` and `queue.db`).
pub(crate) fn file_limits() -> Limits {
    Limits {
        max_args: 1 << 20,
        max_bulk: 512 << 20,
        max_request: 1 << 30,
    }
}

/// What reading `queue.db` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Queue {
    /// The events still queued, in Tile38's order.
    pub(crate) events: Vec<Event>,
    /// Queued events whose time-to-live had passed.
    pub(crate) expired: u64,
    /// Queued events whose value is not an event (no JSON object with a
    /// `hook` member).
    pub(crate) unreadable: u64,
    /// Bytes of an incomplete last command, dropped as BuntDB drops them.
    pub(crate) torn_tail: u64,
}

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The hook it is for.
    pub(crate) hook: String,
    /// The Kafka record key this server gives the event: `key-id`.
    pub(crate) key: String,
    /// Tile38's JSON.
    pub(crate) json: String,
}

/// Reads BuntDB's `bytes`, written by a file last modified at `mod_ms`, as
/// BuntDB would load it at `now_ms`.
///
/// # Errors
///
/// A command BuntDB would refuse (it then refuses to open the file, and
/// Tile38 to start): not an array of bulk strings, an unknown command, a
/// `set` of the wrong length or with an expiry that is not a number.
pub(crate) fn read(bytes: &[u8], mod_ms: i64, now_ms: i64) -> anyhow::Result<Queue> {
    let limits = file_limits();
    let mut live: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut expired: BTreeSet<u64> = BTreeSet::new();
    let mut queue = Queue::default();
    let mut at = 0;
    while at < bytes.len() {
        // BuntDB skips zero bytes between commands.
        if bytes[at] == 0 {
            at += 1;
            continue;
        }
        if bytes[at] != b'*' {
            bail!("damaged command at offset {at}: not a RESP array");
        }
        let (args, used) = match geohook_resp::parse(&bytes[at..], &limits) {
            Ok(Some(x)) => x,
            Ok(None) => {
                queue.torn_tail = (bytes.len() - at) as u64;
                break;
            }
            Err(e) => bail!("damaged command at offset {at}: {e}"),
        };
        let offset = at;
        at += used;
        let Some(name) = args.first() else { continue };
        let event_idx = |key: &[u8]| {
            std::str::from_utf8(key)
                .ok()
                .and_then(|k| k.strip_prefix(EVENT_PREFIX))
                .and_then(|n| n.parse::<u64>().ok())
        };
        match name.to_ascii_lowercase().as_slice() {
            b"set" => {
                let expires_ms = match args.len() {
                    3 => None,
                    5 => Some(expiry(&args[3], &args[4], mod_ms).with_context(|| {
                        format!("damaged command at offset {offset}: bad expiry")
                    })?),
                    n => bail!("damaged command at offset {offset}: set with {n} arguments"),
                };
                let Some(idx) = event_idx(&args[1]) else {
                    continue;
                };
                match expires_ms {
                    Some(ms) if ms <= now_ms => {
                        live.remove(&idx);
                        expired.insert(idx);
                    }
                    _ => {
                        expired.remove(&idx);
                        live.insert(idx, args[2].clone());
                    }
                }
            }
            b"del" if args.len() == 2 => {
                if let Some(idx) = event_idx(&args[1]) {
                    // Sent: neither queued nor expired.
                    live.remove(&idx);
                    expired.remove(&idx);
                }
            }
            b"flushdb" => {
                live.clear();
                expired.clear();
            }
            _ => bail!(
                "damaged command at offset {offset}: BuntDB has no `{}` command of {} arguments",
                String::from_utf8_lossy(name),
                args.len()
            ),
        }
    }
    queue.expired = expired.len() as u64;
    for value in live.into_values() {
        match event(&value) {
            Some(e) => queue.events.push(e),
            None => queue.unreadable += 1,
        }
    }
    Ok(queue)
}

/// When a `set … ex|ae n` expires, in Unix milliseconds: `ex` counts from
/// the file's modification time, as BuntDB counts it at load; `ae` is an
/// absolute Unix second.
fn expiry(kind: &[u8], n: &[u8], mod_ms: i64) -> anyhow::Result<i64> {
    let n: i64 = std::str::from_utf8(n)?.parse()?;
    let ms = n.saturating_mul(1000);
    match kind.to_ascii_lowercase().as_slice() {
        b"ex" => Ok(mod_ms.saturating_add(ms)),
        b"ae" => Ok(ms),
        _ => bail!("`{}` is neither ex nor ae", String::from_utf8_lossy(kind)),
    }
}

/// One of Tile38's queued event values: a JSON object naming its hook.
fn event(value: &[u8]) -> Option<Event> {
    let json = std::str::from_utf8(value).ok()?.trim();
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object()?;
    let hook = obj.get("hook")?.as_str()?.to_owned();
    let key = obj.get("key").and_then(|k| k.as_str()).unwrap_or_default();
    let id = obj.get("id").and_then(|k| k.as_str()).unwrap_or_default();
    let key = if id.is_empty() {
        key.to_owned()
    } else {
        format!("{key}-{id}")
    };
    Some(Event {
        hook,
        key,
        json: json.to_owned(),
    })
}

/// Writes `events` as the hook journal of `dir`, queued at `now_ms`, with
/// ids counted up from the import's time in microseconds (this server's
/// ids are times, so later events get larger ones). The journal is written
/// beside its place, fsynced and renamed over it, so that a crash leaves
/// either no journal or all of it; a journal already there is from an
/// import that did not finish (the data directory had no data) and is
/// replaced.
///
/// # Errors
///
/// Any I/O error.
pub(crate) fn write_journal(dir: &Path, events: &[Event], now_ms: i64) -> anyhow::Result<()> {
    let target = dir.join(JOURNAL_NAME);
    let tmp = dir.join(format!("{JOURNAL_NAME}.import"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove {}", tmp.display()))
        }
        _ => {}
    }
    let opened = Journal::open(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let journal = opened.journal;
    let queued_ms = u64::try_from(now_ms).unwrap_or(0);
    let base = queued_ms.saturating_mul(1000);
    for (n, e) in events.iter().enumerate() {
        let id = base.saturating_add(n as u64);
        // The event id goes last, after Tile38's members, as in the events
        // this server makes.
        let body = match e.json.strip_suffix('}') {
            Some(head) if head.trim_end().ends_with('{') => format!("{head}\"event_id\":{id}}}"),
            Some(head) => format!("{head},\"event_id\":{id}}}"),
            None => e.json.clone(),
        };
        let hook: Arc<str> = Arc::from(e.hook.as_str());
        let payload = Payload {
            key: e.key.clone().into(),
            body: body.into(),
        };
        journal.enqueue(id, &hook, queued_ms, &payload);
    }
    journal
        .flush(true)
        .with_context(|| format!("write {}", tmp.display()))?;
    drop(journal);
    crate::fsio::replace(&tmp, &target).with_context(|| format!("rename to {}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str, ex: Option<(&str, i64)>) -> Vec<u8> {
        let mut out = Vec::new();
        let ex = ex.map(|(k, n)| (k.to_owned(), n.to_string()));
        let mut args: Vec<&[u8]> = vec![b"set", key.as_bytes(), value.as_bytes()];
        if let Some((k, n)) = &ex {
            args.push(k.as_bytes());
            args.push(n.as_bytes());
        }
        geohook_resp::encode_command(&mut out, &args);
        out
    }

    fn ev(hook: &str, id: &str) -> String {
        format!(r#"{{"command":"set","hook":"{hook}","key":"fleet","id":"{id}"}}"#)
    }

    #[test]
    fn buntdb_rules_decide_what_is_still_queued() {
        let m = 1_000_000_000; // the file's modification time, ms
        let mut f = Vec::new();
        f.extend(set("hook:idx", "4", None));
        f.extend(set("hook:log:1", &ev("a", "x"), Some(("ex", 30))));
        f.extend(set("hook:log:2", &ev("a", "y"), Some(("ex", 5))));
        f.extend(set("hook:log:3", &ev("b", "z"), Some(("ex", 30))));
        f.extend(set(
            "hook:log:4",
            "not json",
            Some(("ae", (m + 60_000) / 1000)),
        ));
        f.extend(set("hook:log:10", &ev("a", "w"), None));
        geohook_resp::encode_command(&mut f, &[&b"del"[..], b"hook:log:3"]);
        f.push(0);
        // Ten seconds after the file was last written: `ex 5` is gone.
        let q = read(&f, m, m + 10_000).unwrap();
        let got: Vec<(&str, &str)> = q
            .events
            .iter()
            .map(|e| (e.hook.as_str(), e.key.as_str()))
            .collect();
        assert_eq!(
            got,
            [("a", "fleet-x"), ("a", "fleet-w")],
            "in Tile38's order"
        );
        assert_eq!(q.expired, 1);
        assert_eq!(q.unreadable, 1);
        assert_eq!(q.torn_tail, 0);
        // A minute later only the event without a time-to-live is left.
        let q = read(&f, m, m + 61_000).unwrap();
        assert_eq!(q.events.len(), 1);
        assert_eq!(q.expired, 3, "1, 2 and 4; 3 was sent");
    }

    #[test]
    fn flushdb_empties_and_a_torn_tail_is_dropped() {
        let mut f = set("hook:log:1", &ev("a", "x"), None);
        f.extend(b"*1\r\n$7\r\nflushdb\r\n");
        let whole = set("hook:log:2", &ev("a", "y"), None);
        f.extend(&whole);
        f.extend(&whole[..whole.len() - 3]);
        let q = read(&f, 0, 0).unwrap();
        assert_eq!(q.events.len(), 1);
        assert_eq!(q.events[0].key, "fleet-y");
        assert_eq!(q.torn_tail, whole.len() as u64 - 3);
    }

    #[test]
    fn what_buntdb_refuses_is_refused() {
        for bad in [
            &b"set a b\r\n"[..],
            b"*2\r\n$3\r\nset\r\n$1\r\na\r\n",
            b"*5\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\nex\r\n$4\r\nsoon\r\n",
            b"*5\r\n$3\r\nset\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\npx\r\n$1\r\n1\r\n",
            b"*2\r\n$4\r\nincr\r\n$1\r\na\r\n",
        ] {
            assert!(read(bad, 0, 0).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_journal_written_replays_every_event_with_its_id_in_the_json() {
        let dir = tempfile::tempdir().unwrap();
        let events = vec![
            Event {
                hook: "a".into(),
                key: "fleet-x".into(),
                json: ev("a", "x"),
            },
            Event {
                hook: "b".into(),
                key: "fleet".into(),
                json: "{}".into(),
            },
        ];
        write_journal(dir.path(), &events, 5_000).unwrap();
        let opened = Journal::open(dir.path().join(JOURNAL_NAME)).unwrap();
        let got: Vec<(u64, String, String)> = opened
            .pending
            .iter()
            .map(|r| {
                (
                    r.id,
                    r.hook.to_string(),
                    String::from_utf8(r.payload.body.to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    5_000_000,
                    "a".to_owned(),
                    r#"{"command":"set","hook":"a","key":"fleet","id":"x","event_id":5000000}"#
                        .to_owned()
                ),
                (
                    5_000_001,
                    "b".to_owned(),
                    r#"{"event_id":5000001}"#.to_owned()
                ),
            ]
        );
        assert!(opened.pending.iter().all(|r| r.queued_ms == 5_000));
        assert!(!dir.path().join(format!("{JOURNAL_NAME}.import")).exists());
    }
}
