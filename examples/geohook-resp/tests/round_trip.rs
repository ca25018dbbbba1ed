//! Whatever `encode_command` writes, every reader of the crate parses back to
//! the same arguments, and every proper prefix of it is "incomplete", never an
//! error.

use geohook_resp::{
    encode_command, encoded_len, parse, parse_frame, parse_into, scan_command, ArgBufs, Frame,
    FrameLimits, Limits,
};
use proptest::prelude::*;

fn args_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    // Framing bytes are over-represented so that arguments look like RESP.
    let byte = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b'*'),
        Just(b'$'),
        Just(b'0'),
        any::<u8>()
    ];
    prop::collection::vec(prop::collection::vec(byte, 0..24), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn encoded_commands_parse_back_at_every_split(args in args_strategy(), next in args_strategy()) {
        let mut wire = Vec::new();
        encode_command(&mut wire, &args);
        let len = wire.len();
        prop_assert_eq!(len, encoded_len(&args));
        // A pipelined command behind it must not change what is read.
        encode_command(&mut wire, &next);

        let limits = Limits::default();
        let frames = FrameLimits::default();
        let mut bufs = ArgBufs::default();
        for cut in 0..len {
            let part = &wire[..cut];
            prop_assert_eq!(parse(part, &limits), Ok(None), "parse, cut {}", cut);
            prop_assert_eq!(parse_into(part, &limits, &mut bufs), Ok(None), "parse_into, cut {}", cut);
            prop_assert_eq!(scan_command(part, &frames), Ok(None), "scan_command, cut {}", cut);
            prop_assert_eq!(parse_frame(part, &frames), Ok(None), "parse_frame, cut {}", cut);
        }
        for end in [len, wire.len()] {
            let buf = &wire[..end];
            prop_assert_eq!(parse(buf, &limits), Ok(Some((args.clone(), len))));
            prop_assert_eq!(parse_into(buf, &limits, &mut bufs), Ok(Some(len)));
            prop_assert_eq!(bufs.args(), &args[..]);
            prop_assert_eq!(scan_command(buf, &frames), Ok(Some(len)));
            prop_assert_eq!(parse_frame(buf, &frames), Ok(Some(Frame::Command(args.clone(), len))));
        }
        prop_assert_eq!(parse(&wire[len..], &limits), Ok(Some((next.clone(), wire.len() - len))));
    }

    /// Arbitrary bytes never panic a reader, and whatever the frame decoder
    /// accepts is exactly the encoding of what it returns.
    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_frames_round_trip(
        bytes in prop::collection::vec(
            prop_oneof![Just(b'*'), Just(b'$'), Just(b'+'), Just(b'-'), Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'1'), Just(b'3'), any::<u8>()],
            0..64,
        )
    ) {
        let small = Limits { max_args: 8, max_bulk: 64, max_request: 48 };
        let _ = parse(&bytes, &small);
        let frames = FrameLimits { max_args: 8, max_bulk: 64, max_line: 64 };
        if let Ok(Some(Frame::Command(args, n))) = parse_frame(&bytes, &frames) {
            let mut again = Vec::new();
            encode_command(&mut again, &args);
            prop_assert_eq!(&again[..], &bytes[..n]);
        }
    }
}
