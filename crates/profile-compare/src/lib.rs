//! Regression verdicts between two profiles of sglang-jax.
//!
//! [`Collector`] is an [`trace_model::EventSink`] that keeps every duration
//! of every operation (and feeds the analyzer for the operation kinds).
//! [`compare`] tests each operation present on both sides with a two-sided
//! Mann-Whitney U test, adjusts the p-values for the number of operations
//! (Benjamini-Hochberg), bootstraps intervals of the change in median and
//! total, and applies the threshold. [`render_markdown`] and
//! [`render_chart`] write `compare.md` and its SVG; [`Comparison`] is
//! `compare.json`. [`judge_history`] applies the nightly rule against the
//! last N runs instead of one baseline.
//!
//! This crate does no IO and reads no trace format: the caller reads the
//! traces into a [`Collector`] and the session numbers out of the run
//! folders. The definitions are in `docs/metrics.md`.

mod compare;
mod history;
mod latency;
mod machine;
mod numbers;
pub mod render;
mod samples;
pub mod stats;

pub use compare::{
    COMPARE_SCHEMA, Comparison, Interval, OpComparison, OpVerdict, Profile, SessionRow, Settings,
    Verdict, compare,
};
pub use history::judge_history;
pub use latency::{Latencies, LatencyComparison, compare_latencies};
pub use machine::{Compilation, MachineState, SideShift, compilation, side_shifts};
pub use numbers::{device_numbers, serving_numbers, workload_numbers};
pub use render::{CHART_ROWS, SAME_ROWS, chart_bars, render_chart, render_markdown};
pub use samples::{Collector, OpSamples, Side};

#[cfg(test)]
mod tests;
