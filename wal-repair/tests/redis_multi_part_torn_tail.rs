//! A Redis 7 multi-part AOF written by a real `redis-server` (base + two incremental files), its last
//! incremental file torn at every offset of its last record: `repair_parts` leaves the directory
//! byte-identical to what `redis-check-aof --fix` makes of a copy. An RDB base is left alone.

mod common;

use common::redis;
use wal_repair::dir::{check_parts, dir_parts, repair_parts, Layout, Role};
use wal_repair::{resp, Config, Outcome};

fn torn_at_every_offset(rdb_preamble: bool) {
    let root = common::scratch();
    let dir = redis::aof_dir(root.path(), rdb_preamble, 150);
    let (layout, parts) = dir_parts(&dir).expect("read the manifest");
    assert!(matches!(layout, Layout::RedisMultiPart { .. }));
    let roles: Vec<Role> = parts.iter().map(|p| p.role).collect();
    let base = if rdb_preamble {
        Role::RdbBase
    } else {
        Role::Base
    };
    assert_eq!(roles, [base, Role::Incr, Role::Incr], "{parts:?}");
    let scans = check_parts(&parts, &resp::Resp, &Config::default()).unwrap();
    assert!(scans.iter().all(|s| s.is_clean()), "{scans:?}");
    assert_eq!(
        scans[0].scan.is_none(),
        rdb_preamble,
        "an RDB base is not scanned"
    );

    let last = parts.last().unwrap().path.clone();
    let last_name = last.file_name().unwrap().to_owned();
    let bytes = std::fs::read(&last).unwrap();
    let mut commands = resp::Commands::new(&bytes);
    let mut start = 0;
    while commands.next().is_some() {
        if commands.offset() < bytes.len() {
            start = commands.offset();
        }
    }
    assert!(bytes.len() - start > 150, "the last record is the long SET");

    let scratch = common::scratch();
    for cut in start..=bytes.len() {
        let ours = scratch.path().join(format!("ours-{cut}"));
        let peer = scratch.path().join(format!("peer-{cut}"));
        for d in [&ours, &peer] {
            redis::copy_dir(&dir, d);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join(&last_name))
                .unwrap();
            f.set_len(cut as u64).unwrap();
        }
        let (_, parts) = dir_parts(&ours).unwrap();
        let outcome = repair_parts(&parts, &resp::Resp, &Config::default())
            .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert!(
            redis::check_aof_fix(&peer),
            "cut {cut}: redis-check-aof --fix failed"
        );
        assert_eq!(
            redis::snapshot(&ours),
            redis::snapshot(&peer),
            "cut {cut}: directories differ after repair"
        );
        let repaired = std::fs::read(ours.join(&last_name)).unwrap();
        if cut == start || cut == bytes.len() {
            assert!(
                matches!(outcome, Outcome::Clean(_)),
                "cut {cut}: {outcome:?}"
            );
            assert_eq!(repaired, &bytes[..cut]);
        } else {
            let Outcome::Repaired(report) = outcome else {
                panic!("cut {cut}: expected a repair, got {outcome:?}");
            };
            assert_eq!(repaired, &bytes[..start], "cut {cut}");
            assert_eq!(report.path, ours.join(&last_name));
            let (_, saved) = common::read_sidecar(&report.sidecar);
            assert_eq!(saved, &bytes[start..cut], "cut {cut}: evidence");
        }
        std::fs::remove_dir_all(&ours).unwrap();
        std::fs::remove_dir_all(&peer).unwrap();
    }
}

#[test]
fn resp_base() {
    if redis::available("resp_base") {
        torn_at_every_offset(false);
    }
}

#[test]
fn rdb_base_is_left_alone() {
    if redis::available("rdb_base_is_left_alone") {
        torn_at_every_offset(true);
    }
}
