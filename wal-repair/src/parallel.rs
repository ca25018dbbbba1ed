//! The record walk of a file split over several threads, for formats whose headers give record lengths.
//!
//! The file is cut into fixed chunks of [`ScanConfig::read_chunk`](crate::ScanConfig::read_chunk)
//! bytes, dealt out in turn to the threads. Each thread reads its chunk at once (so the reads of all
//! threads overlap), then waits for the offset of the first record that starts in its chunk. It hops
//! from header to header through the chunk, which costs a few loads per record, passes the offset of the
//! first record past the chunk on to the next thread, and only then checks each record (the checksum,
//! which is the expensive part) in the bytes it has just read, while they are still in its core's cache.
//! The reading and the checking of neighbouring chunks thus run side by side, and no chunk crosses from
//! one core to another.
//!
//! The answer is the one a walk on one thread gives: chunk results are taken in file order, and the
//! first chunk that stops (a record that does not check out, or one that runs past the end of the file)
//! decides it. Chunks after that stop may have started from an offset that a damaged length field gave;
//! what they found is discarded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use crate::format::{Frame, RecordFormat};

/// Where the walk of one chunk stopped early.
pub(crate) struct ChunkStop {
    pub(crate) offset: u64,
    pub(crate) reason: Cow<'static, str>,
    /// The format called the bytes invalid (rather than cut short).
    pub(crate) invalid: bool,
}

/// What the parallel walk found, in the terms of the one-thread walk.
pub(crate) enum Walked {
    /// Whole records up to `valid_len`, then either the end of the file or `stop`.
    Done {
        valid_len: u64,
        records: u64,
        stop: Option<ChunkStop>,
    },
    /// A read came back short: the file shrank while it was read. The caller walks it again on one
    /// thread, which handles that case.
    Shrunk,
}

/// The first record offset of a chunk, handed from the thread of one chunk to the thread of the next.
enum Baton {
    Start(u64),
    /// An earlier chunk stopped or failed: nothing after it counts.
    Stop,
}

enum ChunkResult {
    /// `records` whole records from the chunk's first record up to `end`.
    Records {
        records: u64,
        end: u64,
    },
    /// `records` whole records, then a record that stops the walk.
    Stop {
        records: u64,
        stop: ChunkStop,
    },
    Err(io::Error),
    Shrunk,
}

/// Walks whole records from `first` (the end of the file header) to the end of the file on `threads`
/// threads, calling `progress` with the bytes checked so far after each chunk.
///
/// `format.record_len` must answer for this format (see [`RecordFormat::record_len`]).
///
/// # Errors
///
/// The first read error in file order, as a walk on one thread would meet it.
pub(crate) fn walk<F: RecordFormat + ?Sized>(
    file: &File,
    file_len: u64,
    first: u64,
    chunk: usize,
    threads: usize,
    format: &F,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Walked> {
    let chunk_len = chunk as u64;
    let chunks = file_len.div_ceil(chunk_len);
    let cancel = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (results_tx, results_rx) = channel();
        // A ring of batons: thread `t` takes the batons of its chunks from `batons[t]` and gives the
        // next chunk's baton to thread `t + 1`.
        let mut senders = Vec::with_capacity(threads);
        let mut receivers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = sync_channel::<Baton>(1);
            senders.push(tx);
            receivers.push(rx);
        }
        let mut workers: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(t, batons_in)| Worker {
                file,
                file_len,
                chunk_len,
                chunks,
                format,
                cancel: &cancel,
                results: results_tx.clone(),
                batons_in,
                batons_out: senders[(t + 1) % threads].clone(),
                step: threads as u64,
            })
            .collect();
        // The first chunk's records start after the file header. The channel is empty and has room.
        let _ = senders[0].send(Baton::Start(first));
        drop(senders);
        drop(results_tx);
        // This thread is the first worker and also takes the results in order between its chunks, so
        // the scan runs on `threads` threads in all and nobody waits only to collect.
        let main = workers.remove(0);
        for (t, worker) in workers.into_iter().enumerate() {
            scope.spawn(move || worker.run(t as u64 + 1, &mut || false));
        }
        let mut collector = Collector {
            results: &results_rx,
            pending: BTreeMap::new(),
            next: 0,
            chunks,
            records: 0,
            valid_len: first,
            file_len,
            chunk_len,
            progress,
            outcome: None,
        };
        main.run(0, &mut || {
            collector.take(false);
            collector.outcome.is_some()
        });
        collector.take(true);
        // Threads still at work on chunks past a stop have nothing left to contribute.
        cancel.store(true, Ordering::Relaxed);
        collector
            .outcome
            .unwrap_or_else(|| Err(io::Error::other("the scan's threads ended early")))
    })
}

/// Takes the chunk results in file order until the end of the file or the first stop.
struct Collector<'a> {
    results: &'a Receiver<(u64, ChunkResult)>,
    /// Results that arrived before a result for an earlier chunk.
    pending: BTreeMap<u64, ChunkResult>,
    /// The next chunk in file order.
    next: u64,
    chunks: u64,
    records: u64,
    valid_len: u64,
    file_len: u64,
    chunk_len: u64,
    progress: &'a mut dyn FnMut(u64),
    /// Set once the walk's answer is known.
    outcome: Option<io::Result<Walked>>,
}

impl Collector<'_> {
    /// Takes the results that have arrived (and, if `wait`, waits for the rest) until the answer is
    /// known.
    fn take(&mut self, wait: bool) {
        while self.outcome.is_none() {
            if self.next == self.chunks {
                self.outcome = Some(Ok(Walked::Done {
                    valid_len: self.valid_len,
                    records: self.records,
                    stop: None,
                }));
                return;
            }
            let result = match self.pending.remove(&self.next) {
                Some(result) => result,
                None => {
                    let received = if wait {
                        self.results.recv().ok()
                    } else {
                        self.results.try_recv().ok()
                    };
                    match received {
                        Some((k, result)) => {
                            self.pending.insert(k, result);
                            continue;
                        }
                        // Nothing yet, or (waiting) every thread has ended, which the caller reports.
                        None => return,
                    }
                }
            };
            match result {
                ChunkResult::Records { records, end } => {
                    self.records += records;
                    self.valid_len = end;
                    self.next += 1;
                    (self.progress)((self.next * self.chunk_len).min(self.file_len));
                }
                ChunkResult::Stop { records, stop } => {
                    self.outcome = Some(Ok(Walked::Done {
                        valid_len: stop.offset,
                        records: self.records + records,
                        stop: Some(stop),
                    }));
                }
                ChunkResult::Err(e) => self.outcome = Some(Err(e)),
                ChunkResult::Shrunk => self.outcome = Some(Ok(Walked::Shrunk)),
            }
        }
    }
}

/// Bytes of the file from `base`: `buf[..len]`. The vector only grows (to the longest record met), so
/// reading a chunk never pays for zeroing its buffer again.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
    base: u64,
}

impl Chunk {
    fn bytes(&self, offset: u64) -> &[u8] {
        // Offsets passed in are at or after `base` and at most one record past the bytes held.
        let at = usize::try_from(offset - self.base).unwrap_or(usize::MAX);
        self.buf[..self.len].get(at..).unwrap_or_default()
    }

    /// Reads the chunk of the file at `base` up to `upto`, reusing the buffer.
    fn read(&mut self, file: &File, base: u64, upto: u64) -> io::Result<bool> {
        self.base = base;
        self.len = 0;
        self.extend_to(file, upto)
    }

    /// Reads on from the bytes held up to the file offset `upto`. Returns false if the file ended first:
    /// it shrank after its length was taken.
    fn extend_to(&mut self, file: &File, upto: u64) -> io::Result<bool> {
        // The caller never asks past the end of the file, and a chunk or one record fits in memory.
        let want = usize::try_from(upto - self.base).map_err(io::Error::other)?;
        if want <= self.len {
            return Ok(true);
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.len < want {
            match file.read_at(&mut self.buf[self.len..want], self.base + self.len as u64) {
                Ok(0) => return Ok(false),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Gives back memory that a long record took, keeping one chunk's worth.
    fn trim(&mut self, chunk_len: usize) {
        if self.buf.len() > 2 * chunk_len {
            self.buf.truncate(chunk_len);
            self.buf.shrink_to_fit();
        }
    }
}

/// One of the scan's threads: it walks chunks `t`, `t + step`, `t + 2 step`, ...
struct Worker<'a, F: ?Sized> {
    file: &'a File,
    file_len: u64,
    chunk_len: u64,
    chunks: u64,
    format: &'a F,
    cancel: &'a AtomicBool,
    results: Sender<(u64, ChunkResult)>,
    batons_in: Receiver<Baton>,
    batons_out: SyncSender<Baton>,
    step: u64,
}

impl<F: RecordFormat + ?Sized> Worker<'_, F> {
    fn chunk_end(&self, k: u64) -> u64 {
        (k * self.chunk_len + self.chunk_len).min(self.file_len)
    }

    /// Walks this thread's chunks, calling `after_chunk` after each; it returns true to stop early.
    fn run(self, first_chunk: u64, after_chunk: &mut dyn FnMut() -> bool) {
        let empty = || Chunk {
            buf: Vec::new(),
            len: 0,
            base: 0,
        };
        let (mut current, mut next) = (empty(), empty());
        let mut k = first_chunk;
        // Read before waiting for the baton: this is what lets the reads of the threads overlap.
        let mut read = current.read(self.file, k * self.chunk_len, self.chunk_end(k));
        while k < self.chunks && !self.cancel.load(Ordering::Relaxed) {
            let Ok(Baton::Start(start)) = self.batons_in.recv() else {
                let _ = self.batons_out.send(Baton::Stop);
                return;
            };
            let result = match std::mem::replace(&mut read, Ok(true)) {
                Ok(true) => match self.hop(&mut current, start) {
                    Ok(hop) => {
                        // This thread's next chunk is read before this one is checked, so that its
                        // baton has a whole check's time to arrive and the thread seldom waits.
                        let after = k + self.step;
                        read = if after < self.chunks {
                            next.read(self.file, after * self.chunk_len, self.chunk_end(after))
                        } else {
                            Ok(true)
                        };
                        self.check(&mut current, start, hop)
                    }
                    Err(result) => result,
                },
                Ok(false) => self.stop_next(ChunkResult::Shrunk),
                Err(e) => self.stop_next(ChunkResult::Err(e)),
            };
            let last = !matches!(result, ChunkResult::Records { .. });
            if self.results.send((k, result)).is_err() || last || after_chunk() {
                return;
            }
            current.trim(self.chunk_len as usize);
            std::mem::swap(&mut current, &mut next);
            k += self.step;
        }
    }

    /// Hops over the headers of the records that start in `chunk` from `start` to the first record past
    /// it, and hands that offset to the next thread at once. A header cut by the end of the chunk is
    /// completed by reading on; a length that runs past the end of the file, or a header the format
    /// calls invalid, ends the hop (`stopped`), and the check finds why.
    fn hop(&self, chunk: &mut Chunk, start: u64) -> Result<Hop, ChunkResult> {
        let limit = (chunk.base + self.chunk_len).min(self.file_len);
        let mut end = start;
        let mut stopped = false;
        while end < limit {
            let bytes = chunk.bytes(end);
            match self.format.record_len(bytes) {
                Some(Frame::Complete(n))
                    if n > 0 && end.saturating_add(n as u64) <= self.file_len =>
                {
                    end += n as u64;
                }
                Some(Frame::Incomplete { needed })
                    if needed > bytes.len()
                        && end.saturating_add(needed as u64) <= self.file_len =>
                {
                    match chunk.extend_to(self.file, end + needed as u64) {
                        Ok(true) => {}
                        Ok(false) => return Err(self.stop_next(ChunkResult::Shrunk)),
                        Err(e) => return Err(self.stop_next(ChunkResult::Err(e))),
                    }
                }
                _ => {
                    stopped = true;
                    break;
                }
            }
        }
        let baton = if stopped {
            Baton::Stop
        } else {
            Baton::Start(end)
        };
        // The next thread may have ended already after a stop of its own; then nobody needs the baton.
        let _ = self.batons_out.send(baton);
        Ok(Hop { end, stopped })
    }

    /// Checks each record from `start` as a walk on one thread would, up to where the hop ended (and, if
    /// the hop stopped, the record there too, which then stops the walk).
    fn check(&self, chunk: &mut Chunk, start: u64, hop: Hop) -> ChunkResult {
        let mut pos = start;
        let mut records = 0;
        while pos < hop.end || (hop.stopped && pos == hop.end) {
            if self.cancel.load(Ordering::Relaxed) {
                // The collector has what it needs; this result will not be read.
                return ChunkResult::Records { records, end: pos };
            }
            let bytes = chunk.bytes(pos);
            let have = bytes.len();
            let (reason, invalid) = match self.format.decode(bytes) {
                Frame::Complete(n) if n > 0 && n <= have => {
                    pos += n as u64;
                    records += 1;
                    continue;
                }
                Frame::Incomplete { needed } if needed <= have => (
                    Cow::Borrowed("format asked for bytes it already had"),
                    false,
                ),
                Frame::Incomplete { needed } if pos + (have as u64) < self.file_len => {
                    // As in the one-thread walk: ask for at least twice what is there, so that a format
                    // that asks for a few bytes at a time costs linear time in a long record.
                    let want = (needed.max(have.saturating_mul(2)) as u64).min(self.file_len - pos);
                    match chunk.extend_to(self.file, pos + want) {
                        Ok(true) => continue,
                        Ok(false) => return ChunkResult::Shrunk,
                        Err(e) => return ChunkResult::Err(e),
                    }
                }
                frame => crate::format::stop_reason(frame),
            };
            return ChunkResult::Stop {
                records,
                stop: ChunkStop {
                    offset: pos,
                    reason,
                    invalid,
                },
            };
        }
        if pos == hop.end {
            ChunkResult::Records { records, end: pos }
        } else {
            // The headers and the checks disagree on where a record ends; the next chunk started from
            // the headers' answer, so nothing after this record can be trusted.
            ChunkResult::Stop {
                records,
                stop: ChunkStop {
                    offset: pos,
                    reason: Cow::Borrowed("the format's record length and its decoding disagree"),
                    invalid: true,
                },
            }
        }
    }

    /// Tells the next thread to stop, and returns `result` for this chunk.
    fn stop_next(&self, result: ChunkResult) -> ChunkResult {
        let _ = self.batons_out.send(Baton::Stop);
        result
    }
}

/// Where the header hop through a chunk ended.
struct Hop {
    /// The first record offset past the chunk (or where the hop stopped).
    end: u64,
    /// The hop stopped at a header that cannot be followed.
    stopped: bool,
}
