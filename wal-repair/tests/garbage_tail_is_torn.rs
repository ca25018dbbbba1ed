//! Garbage after the last whole record that no valid record follows is a torn tail, whatever it looks
//! like, including a plausible header with a bad CRC; the discard cap refuses large cuts.

mod common;

use common::{check, log, Expect, Fmt, FORMATS};
use wal_repair::{repair, Config, Error};

#[test]
fn garbage_tails() {
    for fmt in FORMATS {
        let (bytes, ends) = log(fmt, 6);
        let end = bytes.len();
        let with = |extra: &[u8]| [bytes.as_slice(), extra].concat();
        let noise: Vec<u8> = (0..6000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let fake_header = match fmt {
            // A length that fits in the file, with a CRC that does not match.
            Fmt::Frames => [&16u32.to_le_bytes()[..], &[1, 2, 3, 4], &[b'x'; 16]].concat(),
            Fmt::Resp => b"*2\r\n$3\r\nSET\r\n$4\r\nabcdXY".to_vec(),
        };
        let huge_length = match fmt {
            Fmt::Frames => [&u32::MAX.to_le_bytes()[..], &[9, 9, 9, 9], b"partial"].concat(),
            Fmt::Resp => b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999999\r\nab".to_vec(),
        };
        let table: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("short garbage", with(b"\x07zz"), Expect::Torn(end)),
            (
                "garbage longer than a record",
                with(&noise),
                Expect::Torn(end),
            ),
            (
                "plausible header, bad CRC or terminator",
                with(&fake_header),
                Expect::Torn(end),
            ),
            (
                "length far past EOF, nothing after",
                with(&huge_length),
                Expect::Torn(end),
            ),
            ("clean", bytes.clone(), Expect::Clean),
            (
                "cut inside the last record",
                bytes[..end - 1].to_vec(),
                Expect::Torn(ends[4]),
            ),
        ];
        for (name, input, expect) in table {
            check(&format!("{fmt:?}: {name}"), fmt, &input, expect);
        }
    }
}

#[test]
fn discard_cap_refuses_and_leaves_the_file() {
    for fmt in FORMATS {
        let (mut bytes, _) = log(fmt, 3);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0xAB; 100]);
        let dir = common::scratch();
        let path = common::write(dir.path(), "cap.log", &bytes);
        let capped = Config {
            max_discard: Some(99),
            ..Config::default()
        };
        match repair(&path, fmt.format(), &capped) {
            Err(Error::DiscardCapExceeded {
                offset,
                discarded,
                cap,
                ..
            }) => assert_eq!((offset, discarded, cap), (end, 100, 99)),
            other => panic!("{fmt:?}: expected the cap to refuse, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(common::sidecars(dir.path()).is_empty());
        let enough = Config {
            max_discard: Some(100),
            ..Config::default()
        };
        assert!(repair(&path, fmt.format(), &enough).is_ok());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
    }
}

#[test]
fn tail_longer_than_the_resync_window_is_refused() {
    // A torn record whose non-zero bytes extend past the resync window cannot be proven torn: repair
    // refuses rather than guess, and a larger window (the CLI's --resync-window) repairs it.
    for fmt in FORMATS {
        let (mut bytes, ends) = log(fmt, 3);
        let big = fmt.record(&vec![b'q'; 200_000]);
        bytes.extend_from_slice(&big[..150_000]);
        let dir = common::scratch();
        let path = common::write(dir.path(), "window.log", &bytes);
        let narrow = Config {
            scan: wal_repair::ScanConfig {
                resync_window: 100_000,
                ..wal_repair::ScanConfig::default()
            },
            ..Config::default()
        };
        match repair(&path, fmt.format(), &narrow) {
            Err(Error::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset as usize, ends[2], "{fmt:?}");
                assert!(reason.contains("resync window"), "{fmt:?}: {reason}");
            }
            other => panic!("{fmt:?}: expected a refusal, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(common::sidecars(dir.path()).is_empty());
        assert!(repair(&path, fmt.format(), &Config::default()).is_ok());
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, ends[2]);
    }
}
