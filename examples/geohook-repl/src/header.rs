//! The replication id and the `REPLSTATE` header that persists the offset
//! inside a node's own append-only file.

use std::fmt;

use crate::limits::Limits;
use crate::Error;

/// The name of the header pseudo-command.
pub const HEADER_COMMAND: &str = "REPLSTATE";

/// A replication id: 40 lowercase hexadecimal characters, as in Redis.
///
/// A new id starts a new history; offsets are only comparable between nodes
/// that share an id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplId([u8; 40]);

impl ReplId {
    /// A fresh random id.
    pub fn random() -> ReplId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut raw = [0u8; 20];
        rand::fill(&mut raw);
        let mut id = [0u8; 40];
        for (i, b) in raw.iter().enumerate() {
            id[2 * i] = HEX[usize::from(b >> 4)];
            id[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        ReplId(id)
    }

    /// Parses an id; `None` unless it is exactly 40 lowercase hex characters.
    pub fn parse(bytes: &[u8]) -> Option<ReplId> {
        let id: [u8; 40] = bytes.try_into().ok()?;
        id.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(ReplId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for ReplId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ReplId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplId({})", self.as_str())
    }
}

/// The decoded `REPLSTATE` header of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The replication id the file's stream bytes belong to.
    pub replid: ReplId,
    /// The replication offset reached at the end of the base section.
    pub offset: u64,
    /// Length in bytes of the base section (a snapshot written by a shrink or
    /// a full sync) that follows the header. Base bytes are commands but not
    /// stream bytes, so they do not count towards the offset.
    pub base_len: u64,
}

/// The length in bytes of every header [`encode_header`] writes.
pub const HEADER_LEN: usize = 120;

/// Encodes the header pseudo-command
/// `REPLSTATE <replid> <offset> <base_len>` as a RESP array.
///
/// A node writes it as the first command of every new file (at first start,
/// after a shrink, after a full sync); `base_len` is the length of the
/// snapshot commands written right after it, 0 when there are none. Numbers
/// are zero-padded to 20 digits, so every header is [`HEADER_LEN`] bytes: a
/// writer that learns `base_len` only after streaming the snapshot can write
/// a placeholder first and overwrite it in place before the file is renamed
/// into service.
pub fn encode_header(replid: &ReplId, offset: u64, base_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    geohook_resp::encode_command(
        &mut out,
        &[
            HEADER_COMMAND.as_bytes(),
            replid.as_str().as_bytes(),
            format!("{offset:020}").as_bytes(),
            format!("{base_len:020}").as_bytes(),
        ],
    );
    debug_assert_eq!(out.len(), HEADER_LEN);
    out
}

/// What [`recover`] found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The header, if the file starts with a complete one.
    pub header: Option<Header>,
    /// Length of the header command in bytes (0 without a header).
    pub header_len: u64,
    /// File position where the stream bytes start (after header and base).
    pub stream_start: u64,
    /// File position just past the last complete command.
    pub complete_len: u64,
    /// Bytes after `complete_len`: an incomplete (torn) last command.
    pub torn_len: u64,
}

impl Recovered {
    /// The replication offset the file reaches: the header's offset plus the
    /// stream bytes of complete commands. Without a header, every complete
    /// byte counts from 0.
    pub fn offset(&self) -> u64 {
        self.header.map_or(0, |h| h.offset) + (self.complete_len - self.stream_start)
    }

    /// The replication id, if the file has a header.
    pub fn replid(&self) -> Option<ReplId> {
        self.header.map(|h| h.replid)
    }

    /// The stream bytes of `file` (the slice this was recovered from): what
    /// [`crate::Backlog::load`] takes to serve partial resyncs after a restart.
    ///
    /// # Panics
    ///
    /// If `file` is shorter than the file this was recovered from.
    pub fn stream_bytes<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        &file[self.stream_start as usize..self.complete_len as usize]
    }
}

/// Recovers the replication position from the bytes of a node's file.
///
/// The file is `[REPLSTATE header][base: base_len bytes of commands][stream
/// commands][torn tail]`. The returned offset counts only complete stream
/// commands, so a torn tail (which start-up repair removes) is not counted.
///
/// # Errors
///
/// [`Error::Corrupt`] if a complete command is malformed or exceeds `limits`,
/// if the header's arguments are invalid, or if the base section is cut short
/// or does not end on a command boundary (the base is written whole, by a
/// rename, so a short one means damage, not a torn write).
pub fn recover(file: &[u8], limits: &Limits) -> Result<Recovered, Error> {
    let corrupt = |position: usize, reason: String| Error::Corrupt {
        position: position as u64,
        reason,
    };
    let frame = limits.frame();
    let mut header = None;
    let mut header_len = 0usize;
    match geohook_resp::parse_command(file, &frame) {
        Ok(Some((args, len))) if args[0].eq_ignore_ascii_case(HEADER_COMMAND.as_bytes()) => {
            header = Some(parse_header(&args).map_err(|r| corrupt(0, r))?);
            header_len = len;
        }
        Ok(_) => {}
        Err(m) => return Err(corrupt(m.at, m.reason.to_owned())),
    }
    let base_len = header.map_or(0, |h| h.base_len);
    let stream_start = usize::try_from(base_len)
        .ok()
        .and_then(|b| b.checked_add(header_len))
        .filter(|&s| s <= file.len())
        .ok_or_else(|| {
            corrupt(
                file.len(),
                format!("the header announces a {base_len}-byte base but the file ends first"),
            )
        })?;
    let mut pos = header_len;
    while pos < file.len() {
        match geohook_resp::scan_command(&file[pos..], &frame) {
            Ok(Some(len)) => {
                if pos < stream_start && pos + len > stream_start {
                    return Err(corrupt(
                        stream_start,
                        "a command straddles the end of the base".into(),
                    ));
                }
                pos += len;
            }
            Ok(None) => break,
            Err(m) => return Err(corrupt(pos + m.at, m.reason.to_owned())),
        }
    }
    let complete = pos;
    if complete < stream_start {
        return Err(corrupt(complete, "the base section is incomplete".into()));
    }
    if let Some(h) = header {
        if h.offset
            .checked_add((complete - stream_start) as u64)
            .is_none()
        {
            return Err(corrupt(
                0,
                "the header's offset plus the stream overflows".into(),
            ));
        }
    }
    Ok(Recovered {
        header,
        header_len: header_len as u64,
        stream_start: stream_start as u64,
        complete_len: complete as u64,
        torn_len: (file.len() - complete) as u64,
    })
}

fn parse_header(args: &[Vec<u8>]) -> Result<Header, String> {
    if args.len() != 3 && args.len() != 4 {
        return Err(format!(
            "REPLSTATE takes 2 or 3 arguments, got {}",
            args.len() - 1
        ));
    }
    let replid = ReplId::parse(&args[1]).ok_or("invalid replication id in REPLSTATE")?;
    let num = |b: &[u8], what: &str| {
        std::str::from_utf8(b)
            .ok()
            .filter(|s| !s.starts_with('+'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("invalid {what} in REPLSTATE"))
    };
    let offset = num(&args[2], "offset")?;
    let base_len = match args.get(3) {
        Some(b) => num(b, "base length")?,
        None => 0,
    };
    Ok(Header {
        replid,
        offset,
        base_len,
    })
}
