//! Zeros after the last whole record are preallocated space: truncated, described in the sidecar,
//! never copied. Zeros inside the last record are a torn write; zeros with valid records after them are
//! corruption (etcd's TestRepairWriteTearMiddle drops those records; this crate refuses).

mod common;

use common::{check, log, Expect, FORMATS};

#[test]
fn zero_tails() {
    for fmt in FORMATS {
        let (bytes, ends) = log(fmt, 8);
        let end = bytes.len();
        let with = |extra: &[u8]| [bytes.as_slice(), extra].concat();

        let mut last_sector_zeroed = bytes.clone();
        let last_start = ends[6];
        last_sector_zeroed[end - 3..].fill(0);

        let mut middle_zeroed = bytes.clone();
        // A whole 512-byte sector inside record 3 (which is 510 or more bytes long) zeroed, records 4+
        // intact after it.
        let sector = (ends[2] / 512 + 1) * 512;
        assert!(sector + 16 < ends[5]);
        middle_zeroed[ends[2]..ends[3].min(sector + 512)].fill(0);

        let table: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("4 KiB of zeros", with(&[0; 4096]), Expect::Zero(end)),
            ("1 MiB of zeros", with(&vec![0; 1 << 20]), Expect::Zero(end)),
            ("one zero byte", with(&[0]), Expect::Zero(end)),
            (
                "last record's final bytes zeroed",
                last_sector_zeroed,
                Expect::Torn(last_start),
            ),
            (
                "torn record then zeros",
                {
                    let mut b = bytes[..end - 100].to_vec();
                    b.extend_from_slice(&[0; 8192]);
                    b
                },
                Expect::Torn(last_start),
            ),
            (
                "zeroed sector mid-log",
                middle_zeroed,
                Expect::Corrupt(ends[2]),
            ),
        ];
        for (name, input, expect) in table {
            check(&format!("{fmt:?}: {name}"), fmt, &input, expect);
        }
    }
}

#[test]
fn zero_tail_longer_than_the_resync_window() {
    // The file scan finds the last non-zero byte from the end rather than loading the tail.
    for fmt in FORMATS {
        let (mut bytes, _) = log(fmt, 3);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&vec![0; 3 << 20]);
        let dir = common::scratch();
        let path = common::write(dir.path(), "z.log", &bytes);
        let config = wal_repair::ScanConfig {
            read_chunk: 4096,
            resync_window: 1 << 20,
            ..wal_repair::ScanConfig::default()
        };
        let scan = wal_repair::scan_file(&path, fmt.format(), &config).unwrap();
        assert_eq!(scan.tail, wal_repair::Tail::Zero, "{fmt:?}");
        assert_eq!(scan.valid_len, end);
    }
}
