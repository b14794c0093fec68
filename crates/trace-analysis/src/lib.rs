//! Aggregates a stream of trace events into the numbers of the session report.
//!
//! [`Analyzer`] is an [`trace_model::EventSink`]: feed it the events of one
//! trace (from any reader) and call [`Analyzer::finish`]. It keeps one entry
//! per distinct name and per open operation; only [`Analyzer::buffered`],
//! the fallback for threads out of start order, keeps a 24-byte record per
//! complete event. Consecutive parts of one stream can be analysed
//! separately (on separate cores) and joined with [`Analyzer::merge`].
//!
//! Every metric is defined in `docs/metrics.md`, and the same definitions are
//! printed in the report. In short:
//! - *total events*: every event of the file, whatever its phase, including
//!   entries with no `ph` (JAX's trailing `{}`);
//! - *operations*: complete events (`X`) and `B`/`E` pairs matched on the same
//!   thread, grouped by exact name;
//! - *traced time*: latest end minus earliest start over all events that have
//!   a timestamp, metadata events excluded;
//! - *self time*: an operation's duration minus the durations of its direct
//!   children, the operations on the same thread that lie entirely within it.
//!
//! This crate does no IO and knows no file format.

mod analyzer;
mod classify;

pub use analyzer::{Analysis, Analyzer, OpStats, PhaseCount};
pub use classify::{OpKind, is_compilation, is_wait, note_for, runtime_event};

/// JAX writes at most this many events into `trace.json.gz`; a file with
/// exactly this many complete events has almost certainly been cut short.
pub const JSON_EVENT_CAP: u64 = 1_000_000;

#[cfg(test)]
mod tests;
