//! Property: any prefix of a file (header, base, stream) recovers the offset
//! of the longest complete command prefix, against a naive oracle that knows
//! where each command ends.

use geohook_repl::{encode_command, encode_header, recover, Error, Limits, ReplId};
use proptest::prelude::*;

fn arb_command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_prefix_recovers_the_longest_complete_prefix(
        base in prop::collection::vec(arb_command(), 0..4),
        stream in prop::collection::vec(arb_command(), 0..12),
        start in 0u64..1_000_000,
    ) {
        let id = ReplId::random();
        let mut base_bytes = Vec::new();
        for c in &base {
            encode_command(&mut base_bytes, c);
        }
        let mut file = encode_header(&id, start, base_bytes.len() as u64);
        let header_len = file.len();
        file.extend_from_slice(&base_bytes);
        let stream_start = file.len();
        // The oracle: file positions where a stream command ends.
        let mut ends = vec![stream_start];
        for c in &stream {
            encode_command(&mut file, c);
            ends.push(file.len());
        }
        for cut in 0..=file.len() {
            let got = recover(&file[..cut], &Limits::default());
            if cut < header_len {
                // A torn header: nothing is complete, nothing is counted.
                let r = got.unwrap();
                prop_assert_eq!(r.header, None);
                prop_assert_eq!(r.offset(), 0);
            } else if cut < stream_start {
                prop_assert!(matches!(got, Err(Error::Corrupt { .. })), "cut {} in base: {:?}", cut, got);
            } else {
                let r = got.unwrap();
                let complete = *ends.iter().rev().find(|&&e| e <= cut).unwrap();
                prop_assert_eq!(r.offset(), start + (complete - stream_start) as u64);
                prop_assert_eq!(r.torn_len, (cut - complete) as u64);
                prop_assert_eq!(r.replid(), Some(id));
                prop_assert_eq!(r.stream_bytes(&file[..cut]), &file[stream_start..complete]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary bytes never panic the decoder, and whatever it accepts is
    /// exactly the encoding of the arguments it returns.
    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_round_trips(
        bytes in prop::collection::vec(
            prop_oneof![Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'1'), Just(b'3'), any::<u8>()],
            0..64,
        )
    ) {
        let limits = Limits { max_args: 8, max_bulk: 64, max_line: 64 };
        if let Ok(Some((args, n))) = geohook_repl::decode_command(&bytes, &limits) {
            let mut again = Vec::new();
            encode_command(&mut again, &args);
            prop_assert_eq!(&again[..], &bytes[..n]);
        }
        let _ = recover(&bytes, &limits);
    }
}
