//! Property test: for random logs, random cuts and random garbage, the scanner (in memory, and on disk
//! through small read chunks) agrees with a naive oracle that knows where every record ends.

mod common;

use common::{Fmt, FORMATS};
use proptest::prelude::*;
use wal_repair::{scan_bytes, scan_file, ScanConfig, Tail};

/// The naive oracle: given the record boundaries and a cut, the longest whole prefix.
fn oracle(header: usize, ends: &[usize], cut: usize) -> (u64, u64) {
    let kept = ends.iter().take_while(|&&e| e <= cut).count();
    let valid = if cut < header {
        0
    } else if kept == 0 {
        header
    } else {
        ends[kept - 1]
    };
    (valid as u64, kept as u64)
}

fn build(fmt: Fmt, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = fmt.header();
    let mut ends = Vec::new();
    for p in payloads {
        bytes.extend_from_slice(&fmt.record(p));
        ends.push(bytes.len());
    }
    (bytes, ends)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn cut_logs_match_oracle(
        fmt_idx in 0usize..2,
        payloads in prop::collection::vec(prop::collection::vec(b'a'..=b'z', 0..5000), 0..12),
        cut_frac in 0.0f64..=1.0,
    ) {
        let fmt = FORMATS[fmt_idx];
        let (bytes, ends) = build(fmt, &payloads);
        let cut = ((bytes.len() as f64) * cut_frac) as usize;
        let (valid, kept) = oracle(fmt.header().len(), &ends, cut);
        let scan = scan_bytes(fmt.format(), &bytes[..cut]);
        prop_assert_eq!(scan.valid_len, valid);
        prop_assert_eq!(scan.records, kept);
        if cut as u64 == valid {
            prop_assert_eq!(&scan.tail, &Tail::Clean);
        } else {
            prop_assert!(matches!(scan.tail, Tail::Torn { .. }), "{:?}", scan.tail);
        }

        // The chunked file walker must agree with the in-memory scan.
        let dir = common::scratch();
        let path = common::write(dir.path(), "p.log", &bytes[..cut]);
        for threads in [1, 2, 3] {
            let config = ScanConfig { read_chunk: 4096, resync_window: 64 << 20, threads };
            prop_assert_eq!(&scan_file(&path, fmt.format(), &config).unwrap(), &scan);
        }
    }

    #[test]
    fn garbage_after_whole_records_is_never_kept(
        fmt_idx in 0usize..2,
        payloads in prop::collection::vec(prop::collection::vec(b'a'..=b'z', 0..600), 1..8),
        garbage in prop::collection::vec(any::<u8>(), 1..3000),
        window in prop::sample::select(vec![256u64, 1 << 20]),
    ) {
        let fmt = FORMATS[fmt_idx];
        let (mut bytes, ends) = build(fmt, &payloads);
        let end = *ends.last().unwrap();
        bytes.extend_from_slice(&garbage);
        let memory = scan_bytes(fmt.format(), &bytes);
        let dir = common::scratch();
        let path = common::write(dir.path(), "g.log", &bytes);
        let config = ScanConfig { read_chunk: 4096, resync_window: window, ..ScanConfig::default() };
        let file = scan_file(&path, fmt.format(), &config).unwrap();
        let parallel = ScanConfig { threads: 2, ..config.clone() };
        prop_assert_eq!(&scan_file(&path, fmt.format(), &parallel).unwrap(), &file);
        for scan in [&memory, &file] {
            // Whole records before the garbage are always kept; the garbage is never reported clean.
            prop_assert!(scan.valid_len >= end as u64);
            prop_assert!(scan.tail != Tail::Clean || scan.valid_len == bytes.len() as u64);
        }
        // With a window that covers the garbage, disk and memory agree exactly.
        if window >= garbage.len() as u64 {
            prop_assert_eq!(&file, &memory);
        } else if matches!(memory.tail, Tail::Torn { .. }) {
            // A torn tail longer than the window cannot be proven torn: the file scan refuses instead.
            prop_assert!(matches!(file.tail, Tail::Torn { .. } | Tail::Corrupt { .. }), "{:?}", file.tail);
        }
    }
}
