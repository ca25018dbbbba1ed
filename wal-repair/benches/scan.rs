//! Scan throughput over in-memory logs of mixed record sizes.

use divan::counter::BytesCount;
use divan::Bencher;
use wal_repair::{frames, resp, scan_bytes, Tail};

fn main() {
    divan::main();
}

const LOG_BYTES: usize = 16 << 20;

fn payload(n: usize) -> Vec<u8> {
    vec![b'a' + (n % 26) as u8; [40usize, 200, 530, 1500, 4100][n % 5]]
}

fn frames_log() -> Vec<u8> {
    let mut buf = frames::MAGIC.to_vec();
    let mut n = 0;
    while buf.len() < LOG_BYTES {
        frames::encode(&payload(n), &mut buf);
        n += 1;
    }
    buf
}

fn resp_log() -> Vec<u8> {
    let mut buf = Vec::new();
    let mut n = 0;
    while buf.len() < LOG_BYTES {
        let key = format!("key:{n}");
        resp::encode(&[b"SET".as_slice(), key.as_bytes(), &payload(n)], &mut buf);
        n += 1;
    }
    buf
}

#[divan::bench]
fn scan_frames(bencher: Bencher<'_, '_>) {
    let log = frames_log();
    bencher.counter(BytesCount::of_slice(&log)).bench(|| {
        assert_eq!(
            scan_bytes(&frames::Frames, divan::black_box(&log)).tail,
            Tail::Clean
        )
    });
}

#[divan::bench]
fn scan_resp(bencher: Bencher<'_, '_>) {
    let log = resp_log();
    bencher.counter(BytesCount::of_slice(&log)).bench(|| {
        assert_eq!(
            scan_bytes(&resp::Resp, divan::black_box(&log)).tail,
            Tail::Clean
        )
    });
}

#[divan::bench]
fn replay_resp_commands(bencher: Bencher<'_, '_>) {
    let log = resp_log();
    bencher.counter(BytesCount::of_slice(&log)).bench(|| {
        let mut args = 0;
        for cmd in resp::Commands::new(divan::black_box(&log)) {
            args += cmd.map_or(0, |c| c.args().count());
        }
        args
    });
}

#[divan::bench]
fn classify_torn_resp_tail(bencher: Bencher<'_, '_>) {
    // The resync search over a 1 MiB torn record: the cost paid once per repair.
    let mut log = resp_log();
    let big = vec![b'x'; 1 << 20];
    let start = log.len();
    resp::encode(&[b"SET".as_slice(), b"big", &big], &mut log);
    log.truncate(start + (1 << 20) - 100);
    bencher.counter(BytesCount::of_slice(&log)).bench(|| {
        assert!(matches!(
            scan_bytes(&resp::Resp, divan::black_box(&log)).tail,
            Tail::Torn { .. }
        ))
    });
}

/// The ceiling for the frames format: CRC32C alone over the same bytes, which every frames scan must
/// compute.
#[divan::bench]
fn crc32c_ceiling(bencher: Bencher<'_, '_>) {
    let log = frames_log();
    bencher
        .counter(BytesCount::of_slice(&log))
        .bench(|| crc32c::crc32c(divan::black_box(&log)));
}

/// The same ceiling with `crc-fast`, which the frames format uses for payloads of 1 KiB and more.
#[divan::bench]
fn crc_fast_ceiling(bencher: Bencher<'_, '_>) {
    let log = frames_log();
    bencher
        .counter(BytesCount::of_slice(&log))
        .bench(|| crc_fast::crc32_iscsi(divan::black_box(&log)));
}
