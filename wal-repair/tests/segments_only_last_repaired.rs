//! In a segmented log only the last segment may be repaired; damage of any kind in an earlier segment
//! is corruption, and nothing is modified.

mod common;

use common::{log, scratch, sidecars, FORMATS};
use wal_repair::{list_segments, repair_segments, Config, Error, Outcome};

/// (name, three segments, expected: `Ok(repaired?)` or `Err(index of the corrupt segment)`)
type Case<'a> = (&'a str, [&'a [u8]; 3], Result<bool, usize>);

#[test]
fn segments() {
    for fmt in FORMATS {
        let (bytes, ends) = log(fmt, 4);
        let whole = bytes.clone();
        let torn = bytes[..ends[2] + 5].to_vec();
        let zero_tail = [bytes.as_slice(), &[0; 512]].concat();
        let table: Vec<Case<'_>> = vec![
            ("all clean", [&whole, &whole, &whole], Ok(false)),
            ("torn last", [&whole, &whole, &torn], Ok(true)),
            ("torn first", [&torn, &whole, &whole], Err(0)),
            ("torn middle and last", [&whole, &torn, &torn], Err(1)),
            (
                "zero tail in a middle segment",
                [&whole, &zero_tail, &whole],
                Err(1),
            ),
        ];
        for (name, segs, expect) in table {
            let dir = scratch();
            for (i, seg) in segs.iter().enumerate() {
                common::write(dir.path(), &format!("{i:016}.wal"), seg);
            }
            common::write(dir.path(), "ignored.txt", b"not a segment");
            let paths = list_segments(dir.path(), ".wal").unwrap();
            assert_eq!(paths.len(), 3);
            let result = repair_segments(&paths, fmt.format(), &Config::default());
            match (expect, result) {
                (Ok(false), Ok(Outcome::Clean(_))) => {}
                (Ok(true), Ok(Outcome::Repaired(r))) => {
                    assert_eq!(r.path, paths[2]);
                    assert_eq!(std::fs::read(&paths[2]).unwrap(), &bytes[..ends[2]]);
                }
                (Err(i), Err(Error::Corrupt { path, .. })) => {
                    assert_eq!(path, paths[i], "{fmt:?}: {name}");
                    for (p, seg) in paths.iter().zip(segs) {
                        assert_eq!(&std::fs::read(p).unwrap(), seg, "{fmt:?}: {name}: modified");
                    }
                    assert!(sidecars(dir.path()).is_empty());
                }
                (expect, got) => panic!("{fmt:?}: {name}: expected {expect:?}, got {got:?}"),
            }
        }
    }
}
