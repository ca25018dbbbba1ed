//! Bad input gets an error reply or a clean close, never a crash or an
//! unbounded allocation, and the server keeps serving other clients.

use e2e::{exchange, resp, run, start};

/// What a connection must see after sending some bytes.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An error reply starting with this text, connection left open.
    Error(&'static str),
    /// An error reply starting with this text, then the server closes.
    ErrorThenClose(&'static str),
    /// No reply (Redis skips empty multibulks); the connection still works.
    Nothing,
}

fn check(server: &e2e::Server, input: &[u8], expect: Expect) {
    let mut s = server.raw();
    let want = if matches!(expect, Expect::Error(_)) {
        1
    } else {
        usize::MAX
    };
    let (reply, closed) = exchange(&mut s, input, want);
    let text = String::from_utf8_lossy(&reply);
    match expect {
        Expect::Error(prefix) => {
            assert!(
                text.starts_with(prefix),
                "{:?}: got {text:?}",
                String::from_utf8_lossy(input)
            );
            assert!(!closed, "{:?}: closed", String::from_utf8_lossy(input));
            // The same connection still works.
            let (pong, _) = exchange(&mut s, b"PING\r\n", 7);
            assert_eq!(pong, b"+PONG\r\n");
        }
        Expect::Nothing => {
            let (pong, closed) = exchange(&mut s, b"PING\r\n", 7);
            assert_eq!(
                [reply, pong].concat(),
                b"+PONG\r\n",
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert!(!closed);
        }
        Expect::ErrorThenClose(prefix) => {
            assert!(
                text.starts_with(prefix),
                "{:?}: got {text:?}",
                String::from_utf8_lossy(input)
            );
            assert!(
                closed,
                "{:?}: connection left open",
                String::from_utf8_lossy(input)
            );
        }
    }
    // Another client is served all along.
    assert_eq!(run(&mut server.client(), "PING"), "PONG");
}

#[test]
fn malformed_requests_get_errors_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--max-request",
            "1mb",
            "--max-bulk",
            "512kb",
            "--max-args",
            "64",
            // Out-of-range coordinates are accepted by default, as in
            // Tile38; the rows below check the strict mode.
            "--require-valid",
        ],
    )
    .unwrap();
    let mut keep = server.client();
    assert_eq!(run(&mut keep, "SET fleet a POINT 1 1"), "OK");
    use Expect::*;
    let huge_inline = vec![b'a'; 2 << 20];
    let mut binary = vec![b'*'];
    binary.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let many_args = {
        let mut v = b"*65\r\n".to_vec();
        for _ in 0..65 {
            v.extend_from_slice(b"$1\r\na\r\n");
        }
        v
    };
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (
            b"*99999999999\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: invalid multibulk length"),
        ),
        (b"*-5\r\n".to_vec(), Nothing),
        (b"*0\r\n".to_vec(), Nothing),
        (
            b"*1\r\n$99999999999\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: invalid bulk length"),
        ),
        (
            b"*1\r\n$600000\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: invalid bulk length"),
        ),
        (
            b"*1\r\n$-1\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: invalid bulk length"),
        ),
        (
            b"*2\r\n$1\r\nh\r\n+OK\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: expected '$', got '+'"),
        ),
        (
            b"*1\r\n$4\r\nPINGxx\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: invalid bulk line ending"),
        ),
        (
            b"*abc\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: invalid multibulk length"),
        ),
        (
            many_args,
            ErrorThenClose("-ERR Protocol error: invalid multibulk length"),
        ),
        (
            huge_inline,
            ErrorThenClose("-ERR Protocol error: request too big"),
        ),
        (binary, ErrorThenClose("-ERR Protocol error")),
        (
            b"SET a b \"unterminated\r\n".to_vec(),
            ErrorThenClose("-ERR Protocol error: unbalanced quotes"),
        ),
        (
            resp(&[b"SET", b"fleet", b"b", b"POINT", b"91", b"0"]),
            Error("-ERR invalid coordinates"),
        ),
        (
            resp(&[b"SET", b"fleet", b"b", b"POINT", b"1", b"181"]),
            Error("-ERR invalid coordinates"),
        ),
        (
            resp(&[b"SET", b"fleet", b"b", b"POINT", b"NaN", b"0"]),
            Error("-ERR invalid argument 'NaN'"),
        ),
        (
            resp(&[b"SET", b"fleet", b"b", b"BOUNDS", b"10", b"10", b"0", b"0"]),
            Error("-ERR invalid bounds"),
        ),
        (
            resp(&[b"SET", b"fleet", b"b", b"OBJECT", b"{\"type\":\"Point\"}"]),
            Error("-ERR invalid data"),
        ),
        (
            resp(&[b"SET", b"fleet", b"b", b"OBJECT", b"\xff\xfe"]),
            Error("-ERR invalid data"),
        ),
        (
            resp(&[b"NEARBY", b"fleet", b"POINT", b"1", b"1", b"-5"]),
            Error("-ERR invalid argument '-5'"),
        ),
        (
            resp(&[b"WITHIN", b"fleet", b"CIRCLE", b"1", b"1"]),
            Error("-ERR wrong number of arguments for 'within' command"),
        ),
        (
            resp(&[b"GET", b"fleet"]),
            Error("-ERR wrong number of arguments for 'get' command"),
        ),
        (
            resp(&[b"FSET", b"fleet", b"a", b"f"]),
            Error("-ERR wrong number of arguments for 'fset' command"),
        ),
        (resp(&[b"NOPE", b"x"]), Error("-ERR unknown command 'NOPE'")),
        (resp(&[b"\x00\x01\x02"]), Error("-ERR unknown command")),
        (
            resp(&[b"SCAN", b"fleet", b"LIMIT", b"-1"]),
            Error("-ERR invalid argument '-1'"),
        ),
        (
            resp(&[b"SET", b"fleet", b"b", b"EX", b"inf", b"POINT", b"1", b"1"]),
            Error("-ERR invalid argument 'inf'"),
        ),
    ];
    for (input, expect) in cases {
        check(&server, &input, expect);
    }
    // A client that announces a large bulk and disconnects half-way leaves
    // nothing behind.
    let mut s = server.raw();
    let _ = exchange(&mut s, b"*1\r\n$400000\r\nabc", 1);
    drop(s);
    // Nothing bad input did reached the data.
    assert_eq!(run(&mut keep, "SCAN fleet IDS"), "[0 [a]]");
    assert_eq!(run(&mut keep, "PING"), "PONG");
}
