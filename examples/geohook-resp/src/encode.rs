//! The encoders: commands (the wire form, the append-only file and the
//! replication stream all use it) and replies.

/// Appends `prefix`, the decimal `n` and CRLF: every header line in RESP.
fn push_header(out: &mut Vec<u8>, prefix: u8, n: usize) {
    out.push(prefix);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends one command as a RESP array of bulk strings, the form used on the
/// wire, in the append-only file and in the replication stream, so that the
/// bytes of all three come from one place.
///
/// # Example
///
/// ```
/// let mut out = Vec::new();
/// geohook_resp::encode_command(&mut out, &["GET", "fleet", "truck1"]);
/// assert_eq!(out, b"*3\r\n$3\r\nGET\r\n$5\r\nfleet\r\n$6\r\ntruck1\r\n");
/// assert_eq!(out.len(), geohook_resp::encoded_len(&["GET", "fleet", "truck1"]));
/// ```
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.reserve(encoded_len(args));
    push_header(out, b'*', args.len());
    for arg in args {
        encode_bulk(arg.as_ref(), out);
    }
}

/// The number of bytes [`encode_command`] appends for `args`.
pub fn encoded_len<A: AsRef<[u8]>>(args: &[A]) -> usize {
    let mut n = 1 + digits(args.len()) + 2;
    for arg in args {
        let len = arg.as_ref().len();
        n += 1 + digits(len) + 2 + len + 2;
    }
    n
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The protocol a connection speaks: RESP2 (the default) or RESP3, chosen by
/// the client with `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// RESP2: maps are flat arrays of pairs, null is `$-1`.
    #[default]
    Resp2,
    /// RESP3: maps are `%`, null is `_`.
    Resp3,
}

/// A reply in RESP terms, encoded for either protocol.
///
/// The enum is `#[non_exhaustive]`: more RESP3 types (sets, doubles)
/// may join it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-ERR text`, or the text as is when it starts with an upper-case word.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$len` followed by the bytes.
    Bulk(Vec<u8>),
    /// `$-1`.
    Null,
    /// `*n` followed by the items.
    Array(Vec<Reply>),
    /// Field/value pairs: `%n` in RESP3, a flat array of `2n` items in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A reply already in RESP form, written as is: a search writes its hits
    /// straight into one buffer instead of building a tree of replies.
    Encoded(Vec<u8>),
    /// Out-of-band data (pub/sub messages and confirmations): `>n` in RESP3,
    /// so that a client tells it from the reply to a request, and a plain
    /// `*n` array in RESP2, where pub/sub connections read nothing else.
    Push(Vec<Reply>),
}

impl Reply {
    /// A bulk reply from text.
    pub fn bulk(s: impl Into<String>) -> Reply {
        Reply::Bulk(s.into().into_bytes())
    }

    /// The `+OK` reply.
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    /// Appends the RESP2 encoding of this reply to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(Proto::Resp2, out);
    }

    /// Appends the encoding of this reply in `proto` to `out`.
    pub fn encode_as(&self, proto: Proto, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Error(s) => {
                out.push(b'-');
                if !starts_with_code(s) {
                    out.extend_from_slice(b"ERR ");
                }
                // A newline inside an error would break the framing.
                out.extend(
                    s.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.extend_from_slice(b"\r\n");
            }
            Reply::Int(n) => {
                out.push(b':');
                out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Bulk(b) => encode_bulk(b, out),
            Reply::Null if proto == Proto::Resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::Encoded(b) => out.extend_from_slice(b),
            Reply::Push(items) if proto == Proto::Resp3 => {
                push_header(out, b'>', items.len());
                for i in items {
                    i.encode_as(proto, out);
                }
            }
            Reply::Array(items) | Reply::Push(items) => {
                encode_array_header(items.len(), out);
                for i in items {
                    i.encode_as(proto, out);
                }
            }
            Reply::Map(pairs) => {
                match proto {
                    Proto::Resp3 => push_header(out, b'%', pairs.len()),
                    Proto::Resp2 => encode_array_header(2 * pairs.len(), out),
                }
                for (k, v) in pairs {
                    k.encode_as(proto, out);
                    v.encode_as(proto, out);
                }
            }
        }
    }
}

/// Appends a RESP array header `*n`.
pub fn encode_array_header(n: usize, out: &mut Vec<u8>) {
    push_header(out, b'*', n);
}

/// Appends a RESP bulk string.
pub fn encode_bulk(b: &[u8], out: &mut Vec<u8>) {
    push_header(out, b'$', b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// True when the message starts with an all upper-case word such as `OOM`,
/// `LOADING` or `NOAUTH`; Redis clients read that word as the error code, and
/// [`Reply::Error`] adds no `ERR` before it.
pub fn starts_with_code(s: &str) -> bool {
    let word = s.split(' ').next().unwrap_or("");
    word.len() >= 2 && word.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_nulls_take_each_protocol_s_form() {
        let reply = Reply::Array(vec![
            Reply::Map(vec![(Reply::bulk("proto"), Reply::Int(3))]),
            Reply::Null,
        ]);
        let (mut two, mut three) = (Vec::new(), Vec::new());
        reply.encode_as(Proto::Resp2, &mut two);
        reply.encode_as(Proto::Resp3, &mut three);
        assert_eq!(two, b"*2\r\n*2\r\n$5\r\nproto\r\n:3\r\n$-1\r\n");
        assert_eq!(three, b"*2\r\n%1\r\n$5\r\nproto\r\n:3\r\n_\r\n");
    }

    #[test]
    fn pushes_are_push_frames_in_resp3_and_arrays_in_resp2() {
        let reply = Reply::Push(vec![Reply::bulk("message"), Reply::bulk("ch"), Reply::Null]);
        let (mut two, mut three) = (Vec::new(), Vec::new());
        reply.encode_as(Proto::Resp2, &mut two);
        reply.encode_as(Proto::Resp3, &mut three);
        assert_eq!(two, b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n");
        assert_eq!(three, b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n_\r\n");
    }

    #[test]
    fn errors_get_an_err_prefix_unless_coded() {
        let mut out = Vec::new();
        Reply::Error("key not found".into()).encode(&mut out);
        Reply::Error("OOM command not allowed".into()).encode(&mut out);
        assert_eq!(out, b"-ERR key not found\r\n-OOM command not allowed\r\n");
    }

    #[test]
    fn encoded_len_matches_encoding() {
        for args in [
            vec![],
            vec![b"SET".to_vec(), vec![b'x'; 1234], Vec::new()],
            vec![vec![b'y'; 9], vec![b'z'; 10], vec![b'w'; 99_999]],
        ] {
            let mut out = b"kept".to_vec();
            encode_command(&mut out, &args);
            assert_eq!(&out[..4], b"kept", "the encoder appends");
            assert_eq!(out.len() - 4, encoded_len(&args));
        }
    }

    #[test]
    fn replies_encode_as_redis_writes_them() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::ok(),
            Reply::Int(-42),
            Reply::bulk("hi"),
            Reply::Null,
            Reply::Error("two\r\nlines".into()),
            Reply::Encoded(b":7\r\n".to_vec()),
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"*6\r\n+OK\r\n:-42\r\n$2\r\nhi\r\n$-1\r\n-ERR two  lines\r\n:7\r\n"
        );
        assert!(starts_with_code("NOAUTH Authentication required."));
        assert!(!starts_with_code("A lone capital"));
        assert!(!starts_with_code("invalid password"));
    }
}
