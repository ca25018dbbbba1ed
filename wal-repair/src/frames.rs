//! The crate's own framed format, for logs that have no format yet.
//!
//! A file starts with the 8-byte magic [`MAGIC`]. Each record is a 4-byte little-endian payload length,
//! a 4-byte little-endian CRC32C of the length bytes followed by the payload, then the payload. The CRC
//! covers the length so that an all-zero header (preallocated space) never checks out as an empty record.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::format::{Frame, RecordFormat};
use crate::scan::{scan_open_file, ScanConfig, Tail};
use crate::Error;

/// The file header every framed log starts with.
pub const MAGIC: &[u8; 8] = b"WALRPR\x00\x01";

/// Bytes in a record header (length + CRC).
pub const HEADER_LEN: usize = 8;

/// The framed format as a [`RecordFormat`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Frames;

/// Payloads at least this long are checksummed with `crc-fast`, shorter ones with `crc32c`.
///
/// `crc-fast` folds with VPCLMULQDQ/AVX-512 where the CPU has them and runs two to three times as fast
/// as `crc32c` from 1 KiB up, but its per-call set-up costs more than a payload of a few hundred bytes
/// takes to checksum; measured on record-sized inputs, the two cross near 512 bytes.
const CRC_FAST_MIN: usize = 512;

/// CRC32C (reflected polynomial) lookup tables for slicing by four: `TABLES[k][b]` is the register
/// change for byte `b` followed by `k` zero bytes. Built at compile time.
static TABLES: [[u32; 256]; 4] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 4] {
    let mut t = [[0u32; 256]; 4];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        t[1][i] = (t[0][i] >> 8) ^ t[0][(t[0][i] & 0xff) as usize];
        t[2][i] = (t[1][i] >> 8) ^ t[0][(t[1][i] & 0xff) as usize];
        t[3][i] = (t[2][i] >> 8) ^ t[0][(t[2][i] & 0xff) as usize];
        i += 1;
    }
    t
}

/// The CRC32C register (before the final inversion) after the four length bytes, from the standard
/// initial value: four table lookups instead of a call into a checksum library, which costs more than
/// the lookups for four bytes. Every record pays it, so it shows at small record sizes.
fn register_after_len(len_bytes: [u8; 4]) -> u32 {
    let c = u32::from_le_bytes(len_bytes) ^ u32::MAX;
    TABLES[3][(c & 0xff) as usize]
        ^ TABLES[2][((c >> 8) & 0xff) as usize]
        ^ TABLES[1][((c >> 16) & 0xff) as usize]
        ^ TABLES[0][(c >> 24) as usize]
}

/// CRC32C of the length bytes followed by the payload.
pub(crate) fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let register = register_after_len(len_bytes);
    if payload.len() < CRC_FAST_MIN {
        // `crc32c_append` continues from a finished CRC, which is the register inverted.
        return crc32c::crc32c_append(register ^ u32::MAX, payload);
    }
    // A digest's state is the CRC register before the final inversion.
    let mut digest = crc_fast::Digest::new_with_init_state(
        crc_fast::CrcAlgorithm::Crc32Iscsi,
        u64::from(register),
    );
    digest.update(payload);
    // CRC-32/ISCSI results fit in 32 bits; the upper half of the u64 is always zero.
    digest.finalize() as u32
}

impl RecordFormat for Frames {
    fn name(&self) -> &'static str {
        "frames"
    }

    fn decode_header(&self, buf: &[u8]) -> Frame {
        let n = buf.len().min(MAGIC.len());
        if buf[..n] != MAGIC[..n] {
            Frame::invalid("file does not start with the wal-repair frames magic")
        } else if n < MAGIC.len() {
            Frame::Incomplete {
                needed: MAGIC.len(),
            }
        } else {
            Frame::Complete(MAGIC.len())
        }
    }

    fn decode(&self, buf: &[u8]) -> Frame {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Frame::Incomplete { needed: HEADER_LEN };
        };
        let len_bytes = [header[0], header[1], header[2], header[3]];
        let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        // A u32 length always fits in usize on the 32- and 64-bit targets this crate supports.
        let total = HEADER_LEN + u32::from_le_bytes(len_bytes) as usize;
        let Some(payload) = buf.get(HEADER_LEN..total) else {
            return Frame::Incomplete { needed: total };
        };
        if checksum(len_bytes, payload) == stored {
            Frame::Complete(total)
        } else {
            Frame::invalid("record CRC32C mismatch")
        }
    }

    fn record_len(&self, buf: &[u8]) -> Option<Frame> {
        Some(match buf.get(..4) {
            // A u32 length always fits in usize on the 32- and 64-bit targets this crate supports.
            Some(len) => Frame::Complete(
                HEADER_LEN + u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
            ),
            None => Frame::Incomplete { needed: HEADER_LEN },
        })
    }
}

/// Appends one framed record for `payload` to `out`.
///
/// # Panics
///
/// Panics if `payload` is longer than `u32::MAX` bytes.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("frame payload longer than u32::MAX");
    let len_bytes = len.to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&checksum(len_bytes, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends framed records to a log file.
///
/// Opening refuses a log whose tail is not clean, so a writer never appends after a torn record (the
/// classic "resume at the wrong offset" bug): run [`repair`](crate::repair) first.
#[derive(Debug)]
pub struct Writer {
    file: File,
    path: PathBuf,
    len: u64,
    buf: Vec<u8>,
}

impl Writer {
    /// Opens `path` for appending, creating it (with its header, synced with its directory) if missing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be opened, read or created; [`Error::TornTail`] or
    /// [`Error::Corrupt`] if the existing log does not end cleanly.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len == 0 {
            file.write_all(MAGIC)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            crate::repair::sync_parent_dir(&path)?;
            len = MAGIC.len() as u64;
        } else {
            // Scan through the handle just opened: no second open, and the scan sees the file that
            // will be appended to even if `path` is replaced meanwhile.
            let scan = scan_open_file(
                &mut file,
                &path,
                &Frames,
                &ScanConfig::default(),
                &mut |_| {},
            )?;
            match scan.tail {
                Tail::Clean => {}
                Tail::Corrupt { offset, reason, .. } => {
                    return Err(Error::Corrupt {
                        path,
                        offset,
                        reason,
                    })
                }
                Tail::Torn { .. } | Tail::Zero => {
                    return Err(Error::TornTail {
                        path,
                        offset: scan.valid_len,
                        discarded: scan.discarded(),
                    })
                }
            }
        }
        Ok(Self {
            file,
            path,
            len,
            buf: Vec::new(),
        })
    }

    /// Appends one record with a single `write` call and returns the log length after it. The record is
    /// durable only after [`sync`](Self::sync).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the write fails.
    ///
    /// # Panics
    ///
    /// Panics if `payload` is longer than `u32::MAX` bytes.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, Error> {
        self.buf.clear();
        encode(payload, &mut self.buf);
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        self.len += self.buf.len() as u64;
        Ok(self.len)
    }

    /// Makes every appended record durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the sync fails.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// The log length in bytes, header included.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the log holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }
}

/// Reads framed records from a log file in order.
///
/// A payload is read with a bounded `take`, so a damaged length field never allocates more than the bytes
/// actually present. The reader does not tell a torn tail from corruption: any bad record is an error,
/// and [`read_with_repair`](crate::read_with_repair) asks the scanner to classify it.
#[derive(Debug)]
pub struct Reader {
    inner: io::BufReader<File>,
    path: PathBuf,
    offset: u64,
    len: u64,
    done: bool,
}

impl Reader {
    /// Opens `path` and checks its header.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if it cannot be opened; [`Error::TornTail`] or [`Error::Corrupt`] for a bad header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut inner = io::BufReader::with_capacity(64 * 1024, file);
        let mut header = Vec::with_capacity(MAGIC.len());
        (&mut inner)
            .take(MAGIC.len() as u64)
            .read_to_end(&mut header)
            .map_err(|e| Error::io(&path, e))?;
        let offset = header.len() as u64;
        match Frames.decode_header(&header) {
            Frame::Complete(_) => {}
            _ if header.is_empty() => {}
            Frame::Incomplete { .. } => {
                return Err(Error::TornTail {
                    path,
                    offset: 0,
                    discarded: len,
                })
            }
            Frame::Invalid(reason) => {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    reason,
                })
            }
        }
        Ok(Self {
            inner,
            path,
            offset,
            len,
            done: false,
        })
    }

    /// File offset of the next record.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn next_record(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.inner.read(&mut header[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        let torn = |this: &Self| Error::TornTail {
            path: this.path.clone(),
            offset: this.offset,
            discarded: this.len.saturating_sub(this.offset),
        };
        if got < HEADER_LEN {
            return Err(torn(self));
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut record = header.to_vec();
        (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut record)
            .map_err(|e| Error::io(&self.path, e))?;
        match Frames.decode(&record) {
            Frame::Complete(n) => {
                self.offset += n as u64;
                record.drain(..HEADER_LEN);
                Ok(Some(record))
            }
            Frame::Incomplete { .. } => Err(torn(self)),
            Frame::Invalid(reason) => Err(Error::Corrupt {
                path: self.path.clone(),
                offset: self.offset,
                reason,
            }),
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_record().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Reads every record payload of a framed log.
///
/// # Errors
///
/// As [`Reader`]: [`Error::Io`], [`Error::TornTail`] or [`Error::Corrupt`] at the first bad record.
pub fn read_all(path: impl AsRef<Path>) -> Result<Vec<Vec<u8>>, Error> {
    Reader::open(path)?.collect()
}

#[cfg(test)]
mod tests {
    use super::{checksum, register_after_len};

    /// The table lookup for the length bytes against the `crc32c` crate, over length values that set
    /// every byte (a stride coprime with 2^32 visits all four bytes' ranges).
    #[test]
    fn register_after_len_matches_crc32c() {
        let mut len = 0u32;
        for _ in 0..200_000 {
            let bytes = len.to_le_bytes();
            assert_eq!(
                register_after_len(bytes) ^ u32::MAX,
                crc32c::crc32c(&bytes),
                "{len:#x}"
            );
            len = len.wrapping_add(0x9E37_79B1);
        }
        for len in [0, 1, 0xff, 0x100, 0xffff_ffff, 0x8000_0000, 0x00ff_0000] {
            let bytes = u32::to_le_bytes(len);
            assert_eq!(register_after_len(bytes) ^ u32::MAX, crc32c::crc32c(&bytes));
        }
    }

    /// The plain `crc32c` crate over the same bytes is the oracle: switching implementations at
    /// `CRC_FAST_MIN` must never change a record's checksum, or old logs would read as corrupt.
    #[test]
    fn checksum_matches_crc32c_on_both_sides_of_the_crossover() {
        let data: Vec<u8> = (0..(3 << 20) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let lens = (0..2100).chain([4095, 4096, 65_537, 1 << 20, 3 << 20]);
        for len in lens {
            let payload = &data[..len];
            let len_bytes = u32::try_from(len).unwrap().to_le_bytes();
            let mut whole = len_bytes.to_vec();
            whole.extend_from_slice(payload);
            assert_eq!(
                checksum(len_bytes, payload),
                crc32c::crc32c(&whole),
                "len {len}"
            );
        }
    }
}
