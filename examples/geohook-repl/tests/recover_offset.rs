//! Recovering (replid, offset) from a node's file: header, base, stream and
//! torn tail, table-driven through one `check` helper.

use geohook_repl::{encode_command, encode_header, recover, Error, Limits, ReplId};

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(&mut out, args);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `Ok((offset, torn_len))` or `Err(substring of the Corrupt reason, position)`.
fn check(name: &str, file: &[u8], expected: Result<(u64, u64), (&str, u64)>) {
    let got = recover(file, &Limits::default());
    match (got, expected) {
        (Ok(r), Ok((offset, torn))) => {
            assert_eq!((r.offset(), r.torn_len), (offset, torn), "{name}: {r:?}");
            assert_eq!(r.complete_len + r.torn_len, file.len() as u64, "{name}");
        }
        (Err(Error::Corrupt { position, reason }), Err((want, at))) => {
            assert!(
                reason.contains(want),
                "{name}: reason {reason:?} lacks {want:?}"
            );
            assert_eq!(position, at, "{name}: {reason}");
        }
        (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn recovers_offsets_and_rejects_damage() {
    let id = ReplId::random();
    let set = cmd(&["SET", "fleet", "truck1", "POINT", "33", "-115"]);
    let del = cmd(&["DEL", "fleet", "truck1"]);
    let s = set.len() as u64;
    let d = del.len() as u64;
    let h0 = encode_header(&id, 5000, 0);
    let base = cat(&[&set, &set]);
    let hb = encode_header(&id, 5000, base.len() as u64);
    let torn = &del[..7];

    check("empty file", b"", Ok((0, 0)));
    check("header only", &h0, Ok((5000, 0)));
    check(
        "header + stream",
        &cat(&[&h0, &set, &del]),
        Ok((5000 + s + d, 0)),
    );
    check(
        "header + stream + torn tail",
        &cat(&[&h0, &set, &del, torn]),
        Ok((5000 + s + d, 7)),
    );
    check(
        "torn header",
        &h0[..h0.len() - 3],
        Ok((0, h0.len() as u64 - 3)),
    );
    check("base does not count", &cat(&[&hb, &base]), Ok((5000, 0)));
    check(
        "base + stream + torn",
        &cat(&[&hb, &base, &del, torn]),
        Ok((5000 + d, 7)),
    );
    check(
        "no header: every complete byte counts",
        &cat(&[&set, &del, torn]),
        Ok((s + d, 7)),
    );

    let hl = h0.len() as u64;
    check(
        "garbage in the middle",
        &cat(&[&h0, &set, b"hello\r\n", &del]),
        Err(("expected '*'", hl + s)),
    );
    let mut bad_crlf = cat(&[&h0, &set]);
    let last = bad_crlf.len() - 1;
    bad_crlf[last] = b'X';
    check("bulk without CRLF", &bad_crlf, Err(("CRLF", last as u64)));
    check(
        "base cut short",
        &cat(&[&hb, &set]),
        Err(("ends first", (hb.len() + set.len()) as u64)),
    );
    let odd = encode_header(&id, 1, s + 3);
    check(
        "command straddles the base end",
        &cat(&[&odd, &set, &set]),
        Err(("straddles", odd.len() as u64 + s + 3)),
    );
    check(
        "bad replication id",
        &cmd(&["REPLSTATE", "xyz", "1", "0"]),
        Err(("replication id", 0)),
    );
    check(
        "bad offset",
        &cmd(&["REPLSTATE", id.as_str(), "-1", "0"]),
        Err(("offset", 0)),
    );
    let short_base = encode_header(&id, 1, 5);
    check(
        "torn command inside the base",
        &cat(&[&short_base, &set[..10]]),
        Err(("base section is incomplete", short_base.len() as u64)),
    );
    check(
        "offset overflow",
        &cat(&[&encode_header(&id, u64::MAX, 0), &set]),
        Err(("overflows", 0)),
    );
    check(
        "bulk length beyond the limit",
        b"*1\r\n$999999999999\r\n",
        Err(("limit", 5)),
    );
}

#[test]
fn header_round_trips_with_three_or_four_fields() {
    let id = ReplId::random();
    let r = recover(&encode_header(&id, 42, 0), &Limits::default()).unwrap();
    assert_eq!(r.replid(), Some(id));
    assert_eq!(r.offset(), 42);
    let short = cmd(&["REPLSTATE", id.as_str(), "42"]);
    assert_eq!(recover(&short, &Limits::default()).unwrap().offset(), 42);
    assert_eq!(ReplId::parse(id.as_str().as_bytes()), Some(id));
    assert_eq!(ReplId::parse(b"ABCDEF"), None);
}

#[test]
fn headers_have_one_length_so_they_can_be_patched_in_place() {
    let id = ReplId::random();
    let set = cmd(&["SET", "a", "b"]);
    for (offset, base) in [
        (0, 0),
        (1, 0),
        (123_456_789, 0),
        (u64::MAX - 100, 0),
        (7, 3),
        (7, u64::MAX),
    ] {
        let h = encode_header(&id, offset, base);
        assert_eq!(h.len(), geohook_repl::HEADER_LEN);
        let r = recover(&[h.as_slice(), &set].concat(), &Limits::default());
        if base == 0 {
            assert_eq!(r.unwrap().offset(), offset + set.len() as u64);
        } else {
            // The base would end inside (or beyond) the one command.
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
        }
    }
}
