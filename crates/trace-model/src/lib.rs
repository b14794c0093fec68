//! The vocabulary of a profiling session: trace events, their times, and where a
//! JAX profiler run puts its files.
//!
//! Every trace reader (`trace-chrome`, `trace-xplane`) turns its format into a
//! stream of [`Event`]s pushed into an [`EventSink`]; the analysis is one such
//! sink. Events borrow their strings from the reader's buffers, so a reader can
//! stream a million events without allocating per event.
//!
//! This crate does no IO, no parsing and no serialisation: it is plain data.

mod event;
mod name;
mod session;
mod time;

pub use event::{Arg, ArgValue, Event, EventSink, Phase, ReadSummary, SharedArgs};
pub use name::{SHOWN_NAME_LIMIT, fnv1a64, shown_name};
pub use session::{HostTraces, TraceFileKind, TraceRun, classify, locate};
pub use time::{PS_PER_MS, PS_PER_NS, PS_PER_US, Ps, ms_to_ps, ps_to_ms};
