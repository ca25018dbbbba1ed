//! A bounded ring of the most recent replication stream bytes.

/// The most recent stream bytes, addressed by replication offset.
///
/// The byte at offset `o` lives at `buf[o % capacity]`; the ring covers the
/// offsets `start()..end()`, at most `capacity` bytes. Appending past the
/// capacity forgets the oldest bytes, so `start()` may fall inside a command;
/// that is harmless because followers only ever ask for offsets on command
/// boundaries.
#[derive(Debug)]
pub struct Backlog {
    buf: Vec<u8>,
    capacity: usize,
    start: u64,
    end: u64,
}

impl Backlog {
    /// An empty backlog whose next byte will be at `offset`.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0 (the configurations in this crate validate that).
    pub fn new(capacity: usize, offset: u64) -> Backlog {
        assert!(capacity > 0, "backlog capacity must be positive");
        Backlog {
            buf: Vec::new(),
            capacity,
            start: offset,
            end: offset,
        }
    }

    /// A backlog holding the last `capacity` bytes of `stream`, which ends at
    /// offset `end`: what a restarted node loads from the stream bytes of its
    /// own file (see [`crate::Recovered::stream_bytes`]).
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or `stream` is longer than `end`.
    pub fn load(capacity: usize, end: u64, stream: &[u8]) -> Backlog {
        let start = end
            .checked_sub(stream.len() as u64)
            .expect("stream longer than its end offset");
        let mut backlog = Backlog::new(capacity, start);
        backlog.append(stream);
        backlog
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The oldest offset still held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The offset just past the newest byte: the current replication offset.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes held, `end() - start()`.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether a follower at `offset` can be served from here, that is
    /// `start() <= offset <= end()`.
    pub fn contains(&self, offset: u64) -> bool {
        self.start <= offset && offset <= self.end
    }

    /// Appends stream bytes (whole encoded commands) and returns the new end
    /// offset.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        if data.is_empty() {
            return self.end;
        }
        if self.buf.len() < self.capacity {
            // The buffer grows with use up to the capacity, so an idle leader
            // with a large configured backlog costs nothing.
            let want = (self.end - self.start) as usize + data.len();
            if want > self.buf.len() {
                let new_len = want.max(self.buf.len() * 2).min(self.capacity);
                self.grow(new_len);
            }
        }
        let data = if data.len() > self.capacity {
            let skip = data.len() - self.capacity;
            self.end += skip as u64;
            &data[skip..]
        } else {
            data
        };
        let cap = self.buf.len();
        let at = (self.end % cap as u64) as usize;
        let first = data.len().min(cap - at);
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
        self.end += data.len() as u64;
        self.start = self.start.max(self.end.saturating_sub(cap as u64));
        self.end
    }

    /// Re-lays the held bytes into a buffer of `new_len`, since the position of
    /// each byte depends on the buffer length.
    fn grow(&mut self, new_len: usize) {
        let mut held = Vec::with_capacity(self.len());
        self.copy_range(self.start, self.end, &mut held);
        self.buf = vec![0; new_len];
        let at = (self.start % new_len as u64) as usize;
        let first = held.len().min(new_len - at);
        self.buf[at..at + first].copy_from_slice(&held[..first]);
        self.buf[..held.len() - first].copy_from_slice(&held[first..]);
    }

    fn copy_range(&self, from: u64, to: u64, out: &mut Vec<u8>) {
        if from == to {
            return;
        }
        let cap = self.buf.len() as u64;
        let at = (from % cap) as usize;
        let n = (to - from) as usize;
        let first = n.min(self.buf.len() - at);
        out.extend_from_slice(&self.buf[at..at + first]);
        out.extend_from_slice(&self.buf[..n - first]);
    }

    /// Appends to `out` up to `max` bytes starting at `offset`, and returns
    /// how many were copied (0 when `offset == end()`).
    ///
    /// # Errors
    ///
    /// `Err(start())` if `offset` is not servable (see [`Backlog::contains`]).
    pub fn read_from(&self, offset: u64, max: usize, out: &mut Vec<u8>) -> Result<usize, u64> {
        if !self.contains(offset) {
            return Err(self.start);
        }
        let to = self.end.min(offset.saturating_add(max as u64));
        self.copy_range(offset, to, out);
        Ok((to - offset) as usize)
    }

    /// Forgets every byte and restarts at `offset` (a new replication id).
    pub fn reset(&mut self, offset: u64) {
        self.start = offset;
        self.end = offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_forgets_the_oldest_bytes() {
        let mut b = Backlog::new(10, 100);
        assert_eq!(b.append(b"abcdef"), 106);
        assert_eq!(b.append(b"ghijkl"), 112);
        assert_eq!((b.start(), b.end()), (102, 112));
        let mut out = Vec::new();
        assert_eq!(b.read_from(102, 100, &mut out), Ok(10));
        assert_eq!(out, b"cdefghijkl");
        assert_eq!(b.read_from(101, 1, &mut out), Err(102));
        out.clear();
        b.append(b"0123456789ABC");
        assert_eq!((b.start(), b.end()), (115, 125));
        assert_eq!(b.read_from(120, 3, &mut out), Ok(3));
        assert_eq!(out, b"89A");
    }

    #[test]
    fn growing_keeps_every_byte_in_place() {
        let mut b = Backlog::new(1000, 7);
        let mut all = Vec::new();
        for i in 0..300u32 {
            let chunk: Vec<u8> = (0..(i % 13) as u8)
                .map(|j| j.wrapping_mul(31).wrapping_add(i as u8))
                .collect();
            b.append(&chunk);
            all.extend_from_slice(&chunk);
            let mut out = Vec::new();
            let held = b.len();
            assert_eq!(b.read_from(b.start(), usize::MAX, &mut out), Ok(held));
            assert_eq!(out, all[all.len() - held..], "after chunk {i}");
        }
        assert_eq!(b.len(), 1000);
    }
}

#[cfg(test)]
mod stress {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn matches_a_naive_vector() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for cap in [1usize, 7, 100, 1000, 4096] {
            let mut b = Backlog::new(cap, 5);
            let mut all: Vec<u8> = Vec::new();
            let mut cursor = 5u64;
            for _ in 0..2000 {
                let n = rng.random_range(0..cap.min(300) * 2 + 1);
                let chunk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.append(&chunk);
                all.extend_from_slice(&chunk);
                assert_eq!(b.end(), 5 + all.len() as u64);
                if cursor < b.start() {
                    cursor = b.start();
                }
                let mut out = Vec::new();
                let max = rng.random_range(1..cap * 2 + 2);
                let got = b.read_from(cursor, max, &mut out).unwrap();
                let from = (cursor - 5) as usize;
                assert_eq!(out, all[from..from + got], "cap {cap}");
                cursor += got as u64;
            }
        }
    }
}
