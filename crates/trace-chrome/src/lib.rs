//! A streaming reader for Chrome trace-event JSON, the `*.trace.json(.gz)`
//! files the JAX profiler writes, turning them into [`trace_model::Event`]s.
//!
//! [`read`] takes any byte stream, sniffs the gzip magic (`1f 8b`) and pushes
//! every event, in file order, into an [`EventSink`]. It never holds the whole
//! document: the text is parsed in windows of a few hundred KiB, and gzip is
//! inflated on a second thread so that inflating and parsing overlap. The JSON
//! parser is hand-written and byte-level; it validates everything it reads or
//! skips and does not allocate per event (events borrow the reader's buffers).
//!
//! What the reader does with the Chrome format:
//! - the top level is an object with a `traceEvents` array (other members are
//!   validated and skipped) or a bare array of events;
//! - `ph` becomes a [`trace_model::Phase`], an event without `ph` is
//!   [`trace_model::Phase::Missing`]; `B`/`E` are passed through unpaired;
//! - `ts` and `dur` (microseconds) become picoseconds exactly, by decimal
//!   arithmetic on the digits, rounded half away from zero; `dur` is kept
//!   for complete (`X`) events only, as the model documents;
//! - the origin: when the first event that has a `ts` lies 10^12 us (about
//!   11.6 days) or more away from zero, that `ts` floored to a whole
//!   microsecond becomes the origin and is subtracted from every `ts`;
//!   otherwise the origin is 0. It is reported in
//!   [`ReadSummary::origin_ps`];
//! - `pid`/`tid` may be integers or strings: a string of decimal digits is
//!   that number, any other string gets an id of `2^63 + n`, where `n` counts
//!   the distinct such strings in order of first appearance (`pid` and `tid`
//!   share one table), so the same string always maps to the same id;
//! - `args` values map to [`trace_model::ArgValue`]s, nested objects and
//!   arrays to their raw JSON text; unknown event members are skipped; a
//!   member that is `null` counts as absent.
//!
//! Byte offsets in errors count bytes of JSON text, after decompression.
//!
//! This crate does no file IO: it reads the bytes it is given, and the caller
//! adds the file name to errors. It knows nothing of XPlane (`trace-xplane`)
//! nor of what the events mean (`trace-analysis`).

mod feed;
mod lex;
mod number;
mod parse;

use std::io::Read;

use trace_model::{EventSink, ReadSummary};

pub use crate::feed::ReadWork;
use crate::feed::{GzipFeed, PlainFeed};

/// Why a trace could not be read. Messages are one line and say where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("empty input")]
    Empty,
    #[error("unexpected end of input at byte {offset} (truncated file?)")]
    Truncated { offset: u64 },
    #[error("invalid JSON at byte {offset}: {message}")]
    Json { offset: u64, message: String },
    #[error("invalid trace event at byte {offset}: {message}")]
    Event { offset: u64, message: String },
    #[error("not a Chrome trace: {0}")]
    NotATrace(&'static str),
    #[error("gzip stream is corrupt: {0}")]
    GzipCorrupt(String),
    #[error("gzip stream is truncated")]
    GzipTruncated,
    #[error("failed to read input")]
    Io(#[source] std::io::Error),
}

/// Reads a Chrome trace, plain or gzip-compressed, from `input` and pushes
/// its events into `sink` in file order.
///
/// The sink may have seen some events when an error is returned.
pub fn read(input: &mut dyn Read, sink: &mut dyn EventSink) -> Result<ReadSummary, Error> {
    read_with_work(input, sink).0
}

/// Like [`read`], and says how much work the read did (also when it
/// failed), so that callers such as the fuzzer can check it stays linear.
pub fn read_with_work(
    input: &mut dyn Read,
    sink: &mut dyn EventSink,
) -> (Result<ReadSummary, Error>, ReadWork) {
    let mut work = ReadWork::default();
    let res = read_inner(input, sink, &mut work);
    (res, work)
}

fn read_inner(
    input: &mut dyn Read,
    sink: &mut dyn EventSink,
    work: &mut ReadWork,
) -> Result<ReadSummary, Error> {
    let mut head = [0u8; 2];
    let n_head = read_head(input, &mut head)?;
    if n_head == 0 {
        return Err(Error::Empty);
    }
    let mut input = (&head[..n_head]).chain(input);
    if head[..n_head] == GZIP_MAGIC {
        feed::with_gzip(&mut input, |feed: &mut GzipFeed<'_>| {
            feed::drive(feed, sink, work)
        })
    } else {
        feed::drive(&mut PlainFeed::new(&mut input), sink, work)
    }
}

/// Like [`read`], for a trace already in memory. Plain JSON is parsed in
/// place, without copying.
pub fn read_slice(bytes: &[u8], sink: &mut dyn EventSink) -> Result<ReadSummary, Error> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return read(&mut &bytes[..], sink);
    }
    if bytes.is_empty() {
        return Err(Error::Empty);
    }
    let mut parser = parse::Parser::new(sink);
    parser.run(bytes, 0, true)?;
    Ok(parser.summary())
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads up to `head.len()` bytes, fewer only at the end of input.
fn read_head(input: &mut dyn Read, head: &mut [u8]) -> Result<usize, Error> {
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k.min(head.len() - n),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Error::Io(err)),
        }
    }
    Ok(n)
}
