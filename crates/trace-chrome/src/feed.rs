//! Where the parser's windows of text come from: plain input read on the
//! calling thread, or gzip inflated on a second thread.
//!
//! Text arrives in fixed-size [`Chunk`]s with free room in front. When the
//! parser stops in the middle of an event at the end of one chunk, the
//! unparsed tail is copied into the room in front of the next chunk, so a
//! window is always contiguous and the common case copies only that tail.
//!
//! The gzip thread never touches the caller's reader (which need not be
//! `Send`): the calling thread reads compressed bytes into buffers and hands
//! them over, and the inflating thread sends back both inflated chunks and
//! emptied input buffers on one channel, so neither side can wait on the
//! other in a cycle. Buffers go round in a fixed pool, which bounds memory.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, Sender};

use trace_model::{EventSink, ReadSummary};

use crate::Error;
use crate::parse::Parser;

/// Free room in front of each chunk, for the tail of the previous one.
const HEAD: usize = 64 * 1024;
/// Text per chunk.
const CHUNK: usize = 256 * 1024;
/// Inflated chunks in circulation between the two threads.
const N_CHUNKS: usize = 4;
/// Compressed bytes per hand-over, and how many buffers go round.
const INPUT_BUF: usize = 64 * 1024;
const N_INPUT_BUFS: usize = 4;

/// A buffer of `HEAD + CHUNK` bytes whose text is `buf[start..end]`.
pub(crate) struct Chunk {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            buf: vec![0; HEAD + CHUNK],
            start: HEAD,
            end: HEAD,
        }
    }

    fn text(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Oversized chunks, built when a tail does not fit in front, are dropped
    /// rather than reused.
    fn is_standard(&self) -> bool {
        self.buf.len() == HEAD + CHUNK
    }
}

pub(crate) trait Feed {
    /// The next chunk of text, or `None` at the end of input.
    fn next(&mut self) -> Result<Option<Chunk>, Error>;
    fn recycle(&mut self, chunk: Chunk);
}

/// How much work a read did, to check that it stays linear in the input:
/// every hostile input the fuzzer and the tests try must keep
/// `bytes_scanned` within a small multiple of the text's length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadWork {
    /// Bytes of JSON text (after decompression).
    pub text_bytes: u64,
    /// Bytes handed to the parser, counting every re-scan of a step that a
    /// window ended inside.
    pub bytes_scanned: u64,
    /// The longest window the parser was given: the largest single step
    /// (one event or top-level member) plus at most a chunk or so.
    pub peak_window: usize,
}

/// Parses everything `feed` yields.
///
/// A step that a window ends inside is run again on a longer window. To keep
/// the total work linear even for one enormous step (a 100 MB name), it is
/// retried only once the window has doubled: the text is then scanned at
/// most about three times over. A step larger than the room in front of a
/// chunk is collected in one growing buffer.
pub(crate) fn drive(
    feed: &mut dyn Feed,
    sink: &mut dyn EventSink,
    work: &mut ReadWork,
) -> Result<ReadSummary, Error> {
    let mut parser = Parser::new(sink);
    // The unparsed tail lives in `cur` (a chunk) or, when `in_big`, in `big`.
    let mut cur: Option<Chunk> = None;
    let mut big: Vec<u8> = Vec::new();
    let mut in_big = false;
    // The parser is not run again before the window is this long.
    let mut need = 0usize;
    let mut base = 0u64;
    while let Some(mut next) = feed.next()? {
        let n_next = next.end - next.start;
        work.text_bytes += n_next as u64;
        let tail_len = if in_big {
            big.len()
        } else {
            cur.as_ref().map_or(0, |it| it.end - it.start)
        };
        let used = if tail_len <= next.start && tail_len + n_next >= need {
            // The common case: the tail goes in front of the next chunk.
            let start = next.start - tail_len;
            if in_big {
                next.buf[start..next.start].copy_from_slice(&big);
                big.clear();
                in_big = false;
            } else if let Some(prev) = cur.take() {
                next.buf[start..next.start].copy_from_slice(prev.text());
                feed.recycle(prev);
            }
            next.start = start;
            let window = next.text();
            work.note(window.len());
            let used = parser.run(window, base, false)?;
            next.start += used;
            cur = Some(next);
            need = 2 * (tail_len + n_next - used);
            used
        } else {
            if !in_big {
                big.clear();
                if let Some(prev) = cur.take() {
                    big.extend_from_slice(prev.text());
                    feed.recycle(prev);
                }
                in_big = true;
            }
            big.extend_from_slice(next.text());
            feed.recycle(next);
            if big.len() < need {
                continue;
            }
            work.note(big.len());
            let used = parser.run(&big, base, false)?;
            big.drain(..used);
            need = 2 * big.len();
            used
        };
        base += used as u64;
    }
    if work.text_bytes == 0 {
        return Err(Error::Empty);
    }
    let rest = if in_big {
        &big[..]
    } else {
        cur.as_ref().map_or(&[][..], |it| it.text())
    };
    work.note(rest.len());
    parser.run(rest, base, true)?;
    Ok(parser.summary())
}

impl ReadWork {
    fn note(&mut self, window: usize) {
        self.bytes_scanned += window as u64;
        self.peak_window = self.peak_window.max(window);
    }
}

/// Plain text, read on the calling thread straight into the chunks.
pub(crate) struct PlainFeed<'r> {
    input: &'r mut dyn Read,
    pool: Vec<Chunk>,
}

impl<'r> PlainFeed<'r> {
    pub(crate) fn new(input: &'r mut dyn Read) -> PlainFeed<'r> {
        PlainFeed {
            input,
            pool: Vec::new(),
        }
    }
}

impl Feed for PlainFeed<'_> {
    fn next(&mut self) -> Result<Option<Chunk>, Error> {
        let mut chunk = self.pool.pop().unwrap_or_else(Chunk::new);
        loop {
            match self.input.read(&mut chunk.buf[HEAD..]) {
                Ok(0) => {
                    self.pool.push(chunk);
                    return Ok(None);
                }
                Ok(n) => {
                    chunk.start = HEAD;
                    chunk.end = HEAD + n.min(CHUNK);
                    return Ok(Some(chunk));
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(Error::Io(err)),
            }
        }
    }

    fn recycle(&mut self, chunk: Chunk) {
        if chunk.is_standard() {
            self.pool.push(chunk)
        }
    }
}

/// What the inflating thread tells the calling thread.
enum ToMain {
    Text(Chunk),
    /// An emptied input buffer, to be refilled with compressed bytes.
    NeedInput(Vec<u8>),
    Failed(io::Error),
    End,
}

/// Compressed bytes for the inflating thread; `None` marks the end of input.
type Input = Option<(Vec<u8>, usize)>;

/// Gzip text inflated on a second thread.
pub(crate) struct GzipFeed<'r> {
    input: &'r mut dyn Read,
    input_done: bool,
    from_worker: Receiver<ToMain>,
    to_worker: Sender<Input>,
    free_chunks: Sender<Chunk>,
}

/// Runs `f` with a gzip feed over `input`; the inflating thread lives as
/// long as the call.
pub(crate) fn with_gzip<T>(
    input: &mut dyn Read,
    f: impl FnOnce(&mut GzipFeed<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let (to_main, from_worker) = mpsc::channel();
    let (to_worker, inputs) = mpsc::channel();
    let (free_chunks, chunks) = mpsc::channel();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || inflate(inputs, chunks, to_main));
        let mut feed = GzipFeed {
            input,
            input_done: false,
            from_worker,
            to_worker,
            free_chunks,
        };
        let res = feed.start().and_then(|()| f(&mut feed));
        // Dropping the channels stops the worker wherever it waits.
        drop(feed);
        let joined = worker.join();
        match (res, joined) {
            (Ok(_), Err(_)) => Err(Error::GzipCorrupt(
                "the inflating thread panicked".to_owned(),
            )),
            (res, _) => res,
        }
    })
}

impl GzipFeed<'_> {
    fn start(&mut self) -> Result<(), Error> {
        for _ in 0..N_CHUNKS {
            let _ = self.free_chunks.send(Chunk::new());
        }
        for _ in 0..N_INPUT_BUFS {
            self.refill(vec![0; INPUT_BUF])?;
        }
        Ok(())
    }

    fn refill(&mut self, mut buf: Vec<u8>) -> Result<(), Error> {
        if self.input_done {
            return Ok(());
        }
        let mut n = 0;
        while n < buf.len() {
            match self.input.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n = (n + k).min(buf.len()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(Error::Io(err)),
            }
        }
        // A send fails only when the worker has stopped, which the next
        // receive reports.
        if n == 0 {
            self.input_done = true;
            let _ = self.to_worker.send(None);
        } else {
            let _ = self.to_worker.send(Some((buf, n)));
        }
        Ok(())
    }
}

impl Feed for GzipFeed<'_> {
    fn next(&mut self) -> Result<Option<Chunk>, Error> {
        loop {
            match self.from_worker.recv() {
                Ok(ToMain::Text(chunk)) => return Ok(Some(chunk)),
                Ok(ToMain::NeedInput(buf)) => self.refill(buf)?,
                Ok(ToMain::End) => return Ok(None),
                Ok(ToMain::Failed(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(Error::GzipTruncated);
                }
                Ok(ToMain::Failed(err)) => return Err(Error::GzipCorrupt(err.to_string())),
                Err(_) => {
                    return Err(Error::GzipCorrupt(
                        "the inflating thread stopped".to_owned(),
                    ));
                }
            }
        }
    }

    fn recycle(&mut self, chunk: Chunk) {
        if chunk.is_standard() {
            let _ = self.free_chunks.send(chunk);
        }
    }
}

/// The inflating thread: fills free chunks until the stream ends or fails.
fn inflate(inputs: Receiver<Input>, chunks: Receiver<Chunk>, to_main: Sender<ToMain>) {
    let reader = ChannelReader {
        inputs,
        to_main: to_main.clone(),
        buf: Vec::new(),
        pos: 0,
        len: 0,
        ended: false,
    };
    let mut decoder = flate2::bufread::MultiGzDecoder::new(reader);
    loop {
        let Ok(mut chunk) = chunks.recv() else { return };
        let mut n = 0;
        let ended = loop {
            if n == CHUNK {
                break false;
            }
            match decoder.read(&mut chunk.buf[HEAD + n..HEAD + CHUNK]) {
                Ok(0) => break true,
                Ok(k) => n = (n + k).min(CHUNK),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    let _ = to_main.send(ToMain::Failed(err));
                    return;
                }
            }
        };
        if n > 0 {
            chunk.start = HEAD;
            chunk.end = HEAD + n;
            if to_main.send(ToMain::Text(chunk)).is_err() {
                return;
            }
        }
        if ended {
            let _ = to_main.send(ToMain::End);
            return;
        }
    }
}

/// Compressed input as the calling thread hands it over.
struct ChannelReader {
    inputs: Receiver<Input>,
    to_main: Sender<ToMain>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Set at the end of input, or when the calling thread has gone.
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.len && !self.ended {
            let emptied = std::mem::take(&mut self.buf);
            if !emptied.is_empty() {
                let _ = self.to_main.send(ToMain::NeedInput(emptied));
            }
            self.pos = 0;
            self.len = 0;
            match self.inputs.recv() {
                Ok(Some((buf, len))) => {
                    self.len = len.min(buf.len());
                    self.buf = buf;
                }
                Ok(None) | Err(_) => self.ended = true,
            }
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}
