//! Damage in a Redis multi-part AOF anywhere but the tail of the last incremental file (an earlier file
//! cut short or damaged, a RESP base damaged, a damaged manifest) is corruption: refused, every file
//! byte-identical, no evidence written. `redis-check-aof --fix` refuses the same directories, except an
//! empty manifest, which it takes for an empty single-file AOF (Redis itself refuses to load it).

mod common;

use std::path::{Path, PathBuf};

use common::redis;
use wal_repair::dir::{dir_parts, repair_parts};
use wal_repair::{resp, Config, Error};

/// A change to make to a copy of the directory; the file named is the one the error must name.
type Damage = fn(&Path) -> PathBuf;

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// Replaces the `*` that starts the third record of `file` (valid records follow it).
fn break_third_record(path: &Path) {
    edit(path, |b| {
        let mut commands = resp::Commands::new(b);
        commands.next();
        commands.next();
        let at = commands.offset();
        assert_eq!(b[at], b'*');
        b[at] = b'x';
    });
}

fn manifest(dir: &Path) -> PathBuf {
    dir.join("appendonly.aof.manifest")
}

fn manifest_edit(dir: &Path, f: impl FnOnce(String) -> String) -> PathBuf {
    let path = manifest(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(text)).unwrap();
    path
}

fn file(dir: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} in {}", dir.display()))
}

/// The first incremental file (not the last).
fn first_incr(dir: &Path) -> PathBuf {
    let (_, parts) = dir_parts(dir).unwrap();
    parts[1].path.clone()
}

#[test]
fn damage_is_refused_and_nothing_changes() {
    if !redis::available("damage_is_refused_and_nothing_changes") {
        return;
    }
    let root = common::scratch();
    let dir = redis::aof_dir(root.path(), false, 20);
    // (name, damage, whether redis-check-aof --fix refuses it too)
    let table: Vec<(&str, Damage, bool)> = vec![
        (
            "earlier incremental file cut short",
            |d| {
                let p = first_incr(d);
                edit(&p, |b| b.truncate(b.len() - 3));
                p
            },
            true,
        ),
        (
            "earlier incremental file damaged mid-file",
            |d| {
                let p = first_incr(d);
                break_third_record(&p);
                p
            },
            true,
        ),
        (
            "RESP base damaged",
            |d| {
                let p = file(d, ".base.aof");
                break_third_record(&p);
                p
            },
            true,
        ),
        (
            "RESP base cut short",
            |d| {
                let p = file(d, ".base.aof");
                edit(&p, |b| b.truncate(b.len() - 1));
                p
            },
            true,
        ),
        (
            "manifest without its last newline",
            |d| manifest_edit(d, |t| t.trim_end().to_string()),
            true,
        ),
        (
            "manifest cut mid-line",
            |d| manifest_edit(d, |t| t[..t.len() - 12].to_string()),
            true,
        ),
        (
            "manifest empty",
            |d| manifest_edit(d, |_| String::new()),
            false,
        ),
        (
            "manifest with a garbage line",
            |d| manifest_edit(d, |t| format!("{t}hello world\n")),
            true,
        ),
        (
            "manifest with an unknown type",
            |d| manifest_edit(d, |t| t.replacen("type i", "type x", 1)),
            true,
        ),
        (
            "manifest with two base files",
            |d| {
                manifest_edit(d, |t| {
                    let first = t.lines().next().unwrap().to_string();
                    format!("{first}\n{t}")
                })
            },
            true,
        ),
        (
            "manifest with decreasing incremental sequence numbers",
            |d| {
                manifest_edit(d, |t| {
                    let lines: Vec<&str> = t.lines().collect();
                    format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1])
                })
            },
            true,
        ),
        (
            "manifest naming a path",
            |d| {
                manifest_edit(d, |t| {
                    t.replacen("file appendonly", "file ../appendonly", 1)
                })
            },
            true,
        ),
    ];
    let scratch = common::scratch();
    for (i, (name, damage, peer_refuses)) in table.into_iter().enumerate() {
        let ours = scratch.path().join(format!("ours-{i}"));
        let peer = scratch.path().join(format!("peer-{i}"));
        redis::copy_dir(&dir, &ours);
        redis::copy_dir(&dir, &peer);
        let named = damage(&ours);
        damage(&peer);
        let before = redis::snapshot(&ours);
        let result = dir_parts(&ours)
            .and_then(|(_, parts)| repair_parts(&parts, &resp::Resp, &Config::default()));
        match result {
            Err(Error::Corrupt { path, .. }) => assert_eq!(path, named, "{name}"),
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
        let after_files = std::fs::read_dir(&ours).unwrap().count();
        assert_eq!(redis::snapshot(&ours), before, "{name}: a file changed");
        assert_eq!(after_files, before.len(), "{name}: evidence written");
        let peer_before = redis::snapshot(&peer);
        let peer_ok = redis::check_aof_fix(&peer);
        assert_eq!(!peer_ok, peer_refuses, "{name}: redis-check-aof --fix");
        assert_eq!(
            redis::snapshot(&peer),
            peer_before,
            "{name}: redis-check-aof changed it"
        );
    }
}
