//! A framed log scanned on several threads gives exactly the scan of one thread and of the bytes in
//! memory: clean, cut at offsets around chunk boundaries, with a flipped byte (payload, CRC or length
//! field) anywhere, with a length that runs past the end of the file, with a zero tail, and with records
//! longer than a chunk. Progress reaches the file length and never goes back.

mod common;

use wal_repair::{frames, scan_bytes, scan_file, scan_open_file, ScanConfig, Tail};

const CHUNK: usize = 4096;

/// Payload sizes: mostly shorter than a chunk, some several chunks long, so that records straddle
/// chunk boundaries and some chunks hold no record start at all.
const SIZES: [usize; 8] = [0, 30, 500, 4000, 4090, 9000, 700, 20_000];

fn log(records: usize) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = frames::MAGIC.to_vec();
    let mut ends = Vec::new();
    for i in 0..records {
        let payload = vec![b'a' + (i % 26) as u8; SIZES[i % SIZES.len()]];
        frames::encode(&payload, &mut bytes);
        ends.push(bytes.len());
    }
    (bytes, ends)
}

/// Scans `bytes` in memory, then from a file on 1 to 4 threads, and checks that all agree.
fn agree(name: &str, bytes: &[u8]) -> wal_repair::Scan {
    let memory = scan_bytes(&frames::Frames, bytes);
    let dir = common::scratch();
    let path = common::write(dir.path(), "p.log", bytes);
    for threads in 1..=4 {
        let config = ScanConfig {
            read_chunk: CHUNK,
            threads,
            ..ScanConfig::default()
        };
        let disk = scan_file(&path, &frames::Frames, &config).expect("scan");
        assert_eq!(disk, memory, "{name}: {threads} threads");
    }
    memory
}

#[test]
fn clean_logs_and_cuts_around_chunk_boundaries() {
    let (bytes, ends) = log(200);
    let scan = agree("clean", &bytes);
    assert_eq!(scan.tail, Tail::Clean);
    assert_eq!(scan.records, 200);
    // Cuts just before, at and after every chunk boundary and every record end in the first 40 KiB,
    // and a few far ones.
    let mut cuts: Vec<usize> = (1..=10)
        .flat_map(|k| [k * CHUNK - 1, k * CHUNK, k * CHUNK + 1, k * CHUNK + 9])
        .collect();
    cuts.extend(ends.iter().take(30).flat_map(|&e| [e - 1, e + 1, e + 5]));
    cuts.extend([bytes.len() / 2, bytes.len() - 3]);
    for cut in cuts {
        let scan = agree(&format!("cut at {cut}"), &bytes[..cut]);
        let kept = ends.iter().take_while(|&&e| e <= cut).count();
        assert_eq!(scan.records, kept as u64, "cut at {cut}");
    }
}

#[test]
fn a_flipped_byte_anywhere_is_found_where_one_thread_finds_it() {
    let (bytes, ends) = log(60);
    let mut offsets: Vec<usize> = (8..bytes.len()).step_by(1013).collect();
    // The length and CRC fields of records near chunk boundaries.
    offsets.extend(ends.iter().take(40).flat_map(|&e| [e, e + 3, e + 4, e + 7]));
    offsets.retain(|&o| o < bytes.len());
    for offset in offsets {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0x5a;
        let scan = agree(&format!("flip at {offset}"), &damaged);
        assert_ne!(scan.tail, Tail::Clean, "flip at {offset}");
    }
}

#[test]
fn lengths_past_the_end_zero_tails_and_long_records() {
    let (bytes, ends) = log(40);
    // A length field that claims 4 GiB in the middle of the log, and in the last record.
    for &record_start in [ends[10], ends[38]].iter() {
        let mut damaged = bytes.clone();
        damaged[record_start..record_start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let scan = agree(&format!("huge length at {record_start}"), &damaged);
        assert_eq!(scan.valid_len, record_start as u64);
    }
    // A zero tail several chunks long.
    let mut zeros = bytes.clone();
    zeros.resize(bytes.len() + 5 * CHUNK + 17, 0);
    assert_eq!(agree("zero tail", &zeros).tail, Tail::Zero);
    // One record longer than several chunks, between short ones.
    let mut long = frames::MAGIC.to_vec();
    for size in [10, 50_000, 10, 10, 70_000, 3] {
        frames::encode(&vec![b'x'; size], &mut long);
    }
    let scan = agree("long records", &long);
    assert_eq!((scan.records, scan.tail), (6, Tail::Clean));
}

#[test]
fn progress_reaches_the_end_in_order() {
    let (bytes, _) = log(100);
    let dir = common::scratch();
    let path = common::write(dir.path(), "p.log", &bytes);
    let mut file = std::fs::File::open(&path).expect("open");
    let config = ScanConfig {
        read_chunk: CHUNK,
        threads: 2,
        ..ScanConfig::default()
    };
    let mut seen = Vec::new();
    let scan = scan_open_file(&mut file, &path, &frames::Frames, &config, &mut |n| {
        seen.push(n);
    })
    .expect("scan");
    assert_eq!(scan.tail, Tail::Clean);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last().copied(), Some(bytes.len() as u64));
    assert!(seen.len() > 2, "progress after each chunk: {seen:?}");
}

#[test]
fn zero_threads_is_refused() {
    let config = ScanConfig {
        threads: 0,
        ..ScanConfig::default()
    };
    assert!(config.validate().is_err());
}
