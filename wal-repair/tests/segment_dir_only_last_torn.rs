//! A segment directory in the crate's own framing, tested like the Redis multi-part AOF: the last
//! segment torn at every offset of its last record is cut to its longest whole prefix with the cut
//! bytes kept; damage in an earlier segment is refused with every file untouched. Evidence files of an
//! earlier repair and hidden files are not segments.

mod common;

use common::{log, redis, scratch, Fmt};
use wal_repair::dir::{dir_parts, repair_parts, segment_parts, Layout, Role};
use wal_repair::{frames, Config, Error, Outcome};

/// Writes three framed segments to `dir`; returns the bytes of each.
fn segments(dir: &std::path::Path) -> Vec<Vec<u8>> {
    (0..3)
        .map(|i| {
            let (bytes, _) = log(Fmt::Frames, 5 + i);
            common::write(dir, &format!("seg-{i:05}.wal"), &bytes);
            bytes
        })
        .collect()
}

#[test]
fn last_segment_torn_at_every_offset() {
    let root = scratch();
    let src = root.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let segs = segments(&src);
    common::write(&src, ".lock", b"not a segment");
    let last = &segs[2];
    let (_, ends) = log(Fmt::Frames, 7);
    let start = ends[5];
    assert_eq!(ends[6], last.len());
    for cut in start..=last.len() {
        let dir = root.path().join(format!("cut-{cut}"));
        redis::copy_dir(&src, &dir);
        common::write(&dir, "seg-00002.wal", &last[..cut]);
        let (layout, parts) = dir_parts(&dir).unwrap();
        assert_eq!(layout, Layout::Segments);
        assert!(parts.iter().all(|p| p.role == Role::Segment));
        assert_eq!(parts.len(), 3);
        let outcome = repair_parts(&parts, &frames::Frames, &Config::default()).unwrap();
        let after = std::fs::read(dir.join("seg-00002.wal")).unwrap();
        if cut == start || cut == last.len() {
            assert!(
                matches!(outcome, Outcome::Clean(_)),
                "cut {cut}: {outcome:?}"
            );
            assert_eq!(after, &last[..cut]);
        } else {
            let Outcome::Repaired(report) = outcome else {
                panic!("cut {cut}: {outcome:?}");
            };
            assert_eq!(after, &last[..start], "cut {cut}");
            assert_eq!(common::read_sidecar(&report.sidecar).1, &last[start..cut]);
            // The evidence file now in the directory is not a segment.
            assert_eq!(segment_parts(&dir).unwrap().len(), 3);
        }
        for (i, seg) in segs.iter().take(2).enumerate() {
            let name = format!("seg-{i:05}.wal");
            assert_eq!(&std::fs::read(dir.join(name)).unwrap(), seg, "cut {cut}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Damages a segment's bytes, given the end offsets of its records.
type Damage = fn(&mut Vec<u8>, &[usize]);

#[test]
fn damage_in_an_earlier_segment_is_refused() {
    let root = scratch();
    let (_, ends) = log(Fmt::Frames, 5);
    // (name, segment to damage, change)
    let table: Vec<(&str, usize, Damage)> = vec![
        ("first segment cut short", 0, |b, _| b.truncate(b.len() - 2)),
        ("middle segment CRC flip", 1, |b, e| b[e[1] + 5] ^= 1),
        ("middle segment zero tail", 1, |b, _| b.extend([0; 100])),
        ("first segment payload flip", 0, |b, e| b[e[2] + 9] ^= 0x40),
    ];
    for (name, victim, damage) in table {
        let dir = root.path().join(name.replace(' ', "-"));
        std::fs::create_dir(&dir).unwrap();
        let mut segs = segments(&dir);
        damage(&mut segs[victim], &ends);
        let victim_path = common::write(&dir, &format!("seg-{victim:05}.wal"), &segs[victim]);
        // The last segment is torn too: it must not be repaired either.
        common::write(&dir, "seg-00002.wal", &segs[2][..segs[2].len() - 3]);
        let before = redis::snapshot(&dir);
        let (_, parts) = dir_parts(&dir).unwrap();
        match repair_parts(&parts, &frames::Frames, &Config::default()) {
            Err(Error::Corrupt { path, .. }) => assert_eq!(path, victim_path, "{name}"),
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(redis::snapshot(&dir), before, "{name}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            3,
            "{name}: evidence written"
        );
    }
}
