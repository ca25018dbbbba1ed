//! Damage that whole, valid records follow is corruption: refused, file byte-identical, no sidecar.
//! The same damage in the very last record, with nothing after it, is a torn tail (both sides of the
//! rule are tested).

mod common;

use common::{check, log, Expect, Fmt, FORMATS};

/// Damages record `i` the way bit rot would be detected: a payload byte for frames (CRC mismatch), the
/// final CRLF for RESP, which has no checksum, so a flipped payload byte there is undetectable.
fn flip_payload(fmt: Fmt, bytes: &mut [u8], ends: &[usize], i: usize) {
    let at = match fmt {
        Fmt::Frames => ends[i] - 3,
        Fmt::Resp => ends[i] - 2,
    };
    bytes[at] ^= 0x20;
}

#[test]
fn corruption_versus_torn_last_record() {
    for fmt in FORMATS {
        let (bytes, ends) = log(fmt, 8);
        let n = ends.len();

        let mut crc_middle = bytes.clone();
        flip_payload(fmt, &mut crc_middle, &ends, 3);
        let mut crc_last = bytes.clone();
        flip_payload(fmt, &mut crc_last, &ends, n - 1);
        let mut crc_last_then_append = crc_last.clone();
        crc_last_then_append.extend_from_slice(&fmt.record(b"written after"));

        // A length field flipped so it runs past EOF while whole records follow (etcd #14098).
        let mut length_flip = bytes.clone();
        match fmt {
            Fmt::Frames => length_flip[ends[2] + 3] = 0x40,
            // Record 3's last bulk length "$<len>" gets an extra leading digit.
            Fmt::Resp => {
                let rec = &bytes[ends[2]..ends[3]];
                let pos = rec.windows(2).rposition(|w| w == b"\n$").unwrap() + 2;
                length_flip[ends[2] + pos] = b'9';
            }
        }
        // Inside the header or record-start byte of a middle record.
        let mut header_flip = bytes.clone();
        header_flip[ends[4]] ^= 0xFF;

        let fmt_name = format!("{fmt:?}");
        let n_start = ends[n - 2];
        let table: Vec<(&str, Vec<u8>, Expect)> = vec![
            (
                "CRC/payload flip in a middle record",
                crc_middle,
                Expect::Corrupt(ends[2]),
            ),
            (
                "length flip with valid records after",
                length_flip,
                Expect::Corrupt(ends[2]),
            ),
            (
                "record-start flip in a middle record",
                header_flip,
                Expect::Corrupt(ends[4]),
            ),
            (
                "flip in the last record, nothing after",
                crc_last,
                Expect::Torn(n_start),
            ),
            (
                "flip in the last record, a record after",
                crc_last_then_append,
                Expect::Corrupt(n_start),
            ),
        ];
        for (name, input, expect) in table {
            check(&format!("{fmt_name}: {name}"), fmt, &input, expect);
        }
    }
}
