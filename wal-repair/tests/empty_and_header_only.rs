//! Defined outcomes for the smallest files: empty and header-only logs are clean, a cut-short header is
//! torn back to zero bytes, and a wrong header is corruption (this is not a log of that format).

mod common;

use common::{check, Expect, Fmt};
use wal_repair::frames;

#[test]
fn tiny_files() {
    let table: Vec<(&str, Fmt, Vec<u8>, Expect)> = vec![
        ("empty frames", Fmt::Frames, vec![], Expect::Clean),
        ("empty resp", Fmt::Resp, vec![], Expect::Clean),
        (
            "header only",
            Fmt::Frames,
            frames::MAGIC.to_vec(),
            Expect::Clean,
        ),
        (
            "header cut short",
            Fmt::Frames,
            frames::MAGIC[..5].to_vec(),
            Expect::Torn(0),
        ),
        (
            "header then a partial record header",
            Fmt::Frames,
            [&frames::MAGIC[..], &[3, 0]].concat(),
            Expect::Torn(8),
        ),
        (
            "wrong magic",
            Fmt::Frames,
            b"NOTALOG!\x01\x00\x00\x00".to_vec(),
            Expect::Corrupt(0),
        ),
        ("one byte resp", Fmt::Resp, b"*".to_vec(), Expect::Torn(0)),
        (
            "resp starting with garbage then a record",
            Fmt::Resp,
            b"xx*1\r\n$4\r\nPING\r\n".to_vec(),
            Expect::Corrupt(0),
        ),
        (
            "RDB preamble is another format, not a torn tail",
            Fmt::Resp,
            b"REDIS0011\xfa\x09redis-ver".to_vec(),
            Expect::Corrupt(0),
        ),
        (
            "resp annotation only",
            Fmt::Resp,
            b"#TS:1700000000\r\n".to_vec(),
            Expect::Clean,
        ),
        (
            "zeros only (preallocated, empty)",
            Fmt::Resp,
            vec![0; 4096],
            Expect::Zero(0),
        ),
        (
            "header then zeros",
            Fmt::Frames,
            [&frames::MAGIC[..], &[0; 4096]].concat(),
            Expect::Zero(8),
        ),
    ];
    for (name, fmt, input, expect) in table {
        check(name, fmt, &input, expect);
    }
}

#[test]
fn writer_creates_the_header_and_refuses_a_torn_log() {
    let dir = common::scratch();
    let path = dir.path().join("w.log");
    let w = frames::Writer::open(&path).unwrap();
    assert!(w.is_empty());
    drop(w);
    assert_eq!(std::fs::read(&path).unwrap(), frames::MAGIC);
    let mut bytes = frames::MAGIC.to_vec();
    bytes.extend_from_slice(&[5, 0, 0]);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        frames::Writer::open(&path),
        Err(wal_repair::Error::TornTail {
            offset: 8,
            discarded: 3,
            ..
        })
    ));
}
