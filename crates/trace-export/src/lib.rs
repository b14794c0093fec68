//! Writes [`trace_model::Event`]s as Chrome trace-event JSON, the format
//! Perfetto's UI and `chrome://tracing` open, one event at a time.
//!
//! [`ChromeJson`] is an [`EventSink`](trace_model::EventSink) that formats
//! each event into a small buffer and hands full buffers to any
//! [`std::io::Write`]; it keeps nothing per event, so memory does not grow
//! with the length of the trace. [`Exporter`] puts a selection in front of
//! it: a time window, a thread-name pattern, and a split of the output into
//! numbered chunks of at most N events, each of which repeats the process
//! and thread names so that it opens on its own.
//!
//! What is written, per event: `ph`, `name`, `cat` (when not empty), `pid`,
//! `tid`, `ts` and `dur` in microseconds written exactly (picoseconds are
//! six decimals, trailing zeros dropped), and `args` in the order given.
//! Text is escaped as JSON requires; a non-finite float becomes a string;
//! a raw arg is written as it is when it is a JSON object or array (what
//! `trace-chrome` gives) and as a string otherwise (XPlane's `<N bytes>`).
//! Reading the output back with `trace-chrome` gives the same events.
//!
//! This crate opens no file and compresses nothing: callers give it writers
//! (a gzip encoder, a file) and name the chunks. It reads no trace either.

mod json;
mod select;

pub use json::ChromeJson;
pub use select::{Exporter, Selection, Summary};

/// Why an export failed: the writer's error, with what was being written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write chunk {chunk}")]
    Write {
        chunk: u32,
        #[source]
        source: std::io::Error,
    },
}
