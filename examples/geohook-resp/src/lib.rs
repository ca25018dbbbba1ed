//! The one RESP codec of the geohook examples: the bounded, incremental
//! parser of client requests (multibulk and inline), the command encoder that
//! the wire, the append-only file and the replication stream share, the
//! [`Reply`] encoder, and the decoder of replication frames (commands, status
//! and error lines). Every reader is built on one set of line and length
//! readers that never trust a peer's length.
//!
//! # Example
//!
//! ```
//! use geohook_resp::{encode_command, parse, parse_frame, Frame, FrameLimits, Limits, ProtoError, Reply};
//!
//! let limits = Limits::default();
//! let (args, used) = parse(b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n", &limits).unwrap().unwrap();
//! assert_eq!((args.len(), used), (2, 22));
//! // Inline commands work as in Redis.
//! let (args, _) = parse(b"SET fleet truck1 POINT 33 -115\r\n", &limits).unwrap().unwrap();
//! assert_eq!(args[0], b"SET");
//! // A count beyond the cap is refused before anything is allocated.
//! assert_eq!(parse(b"*99999999999\r\n", &limits), Err(ProtoError::InvalidMultibulkLength));
//!
//! // What one side encodes, the other parses back, byte for byte.
//! let mut wire = Vec::new();
//! encode_command(&mut wire, &["SET", "fleet", "truck1", "POINT", "33", "-115"]);
//! wire.extend_from_slice(b"+OFFSET 65\r\n");
//! let Some(Frame::Command(args, n)) = parse_frame(&wire, &FrameLimits::default()).unwrap() else {
//!     panic!("expected a command");
//! };
//! assert_eq!((args[5].as_slice(), n), (b"-115".as_slice(), 65));
//! let status = parse_frame(&wire[n..], &FrameLimits::default()).unwrap();
//! assert_eq!(status, Some(Frame::Status("OFFSET 65".into(), 12)));
//!
//! let mut out = Vec::new();
//! Reply::Error("key not found".into()).encode(&mut out);
//! assert_eq!(out, b"-ERR key not found\r\n");
//! ```
//!
//! # Semantics
//!
//! - **Bounds.** Every count and length is checked against the caller's caps
//!   ([`Limits`] for requests, [`FrameLimits`] for replication frames) as its
//!   digits arrive, before anything is allocated for it; vectors grow with the
//!   bytes that arrived, never with the lengths the peer announced. A peer's
//!   bytes never panic a reader.
//! - **Incremental.** Every reader takes the bytes received so far: `Ok(None)`
//!   means a proper prefix of something that may still be valid, so a caller
//!   reads more and tries again; an error means no continuation can be valid.
//! - **Two readings of one format.** Requests are read as Redis serves
//!   clients ([`parse`], [`parse_into`]): a bare LF ends a line, a count of
//!   zero or less is an empty command, a line not starting with `*` is an
//!   inline command, and errors carry Redis's protocol error texts
//!   ([`ProtoError`]). Replication frames are read canonically
//!   ([`scan_command`], [`parse_command`], [`parse_frame`]): CRLF, digits
//!   without a sign or a leading zero, no empty command, so that accepted
//!   bytes are exactly what [`encode_command`] writes, and a [`Malformed`]
//!   names the first bad byte.
//! - **Both protocols.** A [`Reply`] encodes as RESP2 ([`Reply::encode`]) or
//!   as RESP3 ([`Reply::encode_as`] with [`Proto::Resp3`]): a [`Reply::Map`]
//!   is a `%` map in RESP3 and a flat array of pairs in RESP2, a null is `_`
//!   in RESP3 and `$-1` in RESP2; everything else is written the same.
//! - **Errors as Redis writes them.** [`Reply::Error`] prefixes `ERR ` unless
//!   the text starts with an upper-case code ([`starts_with_code`]) and
//!   replaces line breaks with spaces.
//!
//! # Crate features
//!
//! None. The crate depends on itoa only.

mod encode;
mod read;
mod request;
mod stream;

pub use encode::{
    encode_array_header, encode_bulk, encode_command, encoded_len, starts_with_code, Proto, Reply,
};
pub use request::{parse, parse_into, parse_resume, ArgBufs, Limits, Parsed, ProtoError};
pub use stream::{parse_command, parse_frame, scan_command, Frame, FrameLimits, Malformed};
