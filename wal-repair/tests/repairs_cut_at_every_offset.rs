//! Cut a multi-record log at every byte offset, in both formats: repair keeps exactly the longest prefix
//! of whole records, saves the rest in a sidecar, and records appended afterwards survive a reopen.

mod common;

use std::io::Write;

use common::{log, payload, scratch, sidecars, Fmt, FORMATS};
use wal_repair::{repair, scan_bytes, Config, Outcome, Tail};

/// The oracle: the end of the last record that fits entirely in `cut` bytes.
fn longest_prefix(header: usize, ends: &[usize], cut: usize) -> (usize, usize) {
    let kept = ends.iter().take_while(|&&e| e <= cut).count();
    (
        kept.checked_sub(1).map_or(header.min(cut), |i| ends[i]),
        kept,
    )
}

fn check(fmt: Fmt, bytes: &[u8], ends: &[usize], cut: usize, dir: &std::path::Path) {
    let header = fmt.header().len();
    let (valid, kept) = longest_prefix(header, ends, cut);
    let expect_valid = if cut < header { 0 } else { valid };
    let path = common::write(dir, "cut.log", &bytes[..cut]);

    // In memory and on disk, the scan agrees with the oracle.
    let scan = scan_bytes(fmt.format(), &bytes[..cut]);
    assert_eq!(
        scan.valid_len as usize, expect_valid,
        "{fmt:?} cut at {cut}"
    );
    assert_eq!(scan.records as usize, kept, "{fmt:?} cut at {cut}");
    let expect_clean = cut == expect_valid;
    assert_eq!(
        scan.tail == Tail::Clean,
        expect_clean,
        "{fmt:?} cut at {cut}: {:?}",
        scan.tail
    );
    assert!(
        matches!(scan.tail, Tail::Clean | Tail::Torn { .. }),
        "{fmt:?} cut at {cut}: {:?}",
        scan.tail
    );

    match repair(&path, fmt.format(), &Config::default()).expect("repair") {
        Outcome::Clean(_) => assert!(expect_clean, "{fmt:?} cut at {cut} not repaired"),
        Outcome::Repaired(report) => {
            assert!(!expect_clean);
            assert_eq!(report.valid_len as usize, expect_valid);
            assert_eq!(report.discarded as usize, cut - expect_valid);
            let (_, saved) = common::read_sidecar(&report.sidecar);
            assert_eq!(
                saved,
                &bytes[expect_valid..cut],
                "sidecar holds the cut bytes"
            );
            std::fs::remove_file(&report.sidecar).expect("remove sidecar");
        }
    }
    assert_eq!(std::fs::read(&path).expect("read"), &bytes[..expect_valid]);
    assert!(sidecars(dir).is_empty());
}

#[test]
fn every_offset_both_formats() {
    let dir = scratch();
    for fmt in FORMATS {
        let (bytes, ends) = log(fmt, common::SIZES.len() + 2);
        for cut in 0..=bytes.len() {
            check(fmt, &bytes, &ends, cut, dir.path());
        }
    }
}

#[test]
fn appends_after_repair_survive_reopen() {
    let dir = scratch();
    for fmt in FORMATS {
        let (bytes, ends) = log(fmt, 6);
        // Cut inside each record in turn, including right at sector and page boundaries.
        let mut cuts: Vec<usize> = ends.windows(2).map(|w| (w[0] + w[1]) / 2).collect();
        cuts.extend(
            [512, 4096, 4097, 8192]
                .into_iter()
                .filter(|&c| c < bytes.len()),
        );
        for cut in cuts {
            let path = common::write(dir.path(), "append.log", &bytes[..cut]);
            repair(&path, fmt.format(), &Config::default()).expect("repair");
            let kept = ends.iter().take_while(|&&e| e <= cut).count();
            match fmt {
                Fmt::Frames => {
                    let mut w = wal_repair::frames::Writer::open(&path)
                        .expect("writer opens a repaired log");
                    w.append(&payload(100)).expect("append");
                    w.sync().expect("sync");
                }
                Fmt::Resp => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .expect("open");
                    f.write_all(&fmt.record(&payload(100))).expect("append");
                    f.sync_all().expect("sync");
                }
            }
            let mut expected: Vec<Vec<u8>> = (0..kept).map(payload).collect();
            expected.push(payload(100));
            assert_eq!(fmt.read(&path), expected, "{fmt:?} cut at {cut}");
            assert!(matches!(
                repair(&path, fmt.format(), &Config::default()).expect("repair"),
                Outcome::Clean(_)
            ));
            for s in sidecars(dir.path()) {
                std::fs::remove_file(s).expect("remove sidecar");
            }
        }
    }
}
