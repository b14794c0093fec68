//! The device view of a profile: what each accelerator plane (`/device:TPU:N`,
//! `/device:GPU:N`) did, measured the way xprof measures it.
//!
//! [`DeviceSink`] is a [`trace_model::EventSink`]. Feed it the events of one
//! trace from any reader and call [`DeviceSink::finish`]; it returns one
//! [`DevicePlane`] per device plane (window, busy and idle time, steps, HLO
//! categories, operations with their roofline numbers, XLA modules) and, for
//! each plane, which host thread and function ran while the device sat idle
//! between programs. It is a single pass: device operations are folded into
//! per-operation totals as they close, and only host events (needed to explain
//! idle gaps found later) are kept, as 24-byte records.
//!
//! Every number is defined in `docs/metrics.md`; in short:
//! - *self time* of an op: its duration minus its direct children's on the
//!   same line (a `while` op keeps only its loop overhead);
//! - *busy*: Σ op self time; *window*: first start .. last end over the `Steps`
//!   and `XLA Ops` lines; *idle* = window − busy (xprof's IDLE row);
//! - times come from the device clock (`device_offset_ps`,
//!   `device_duration_ps`) when the events carry it, else from `ts`/`dur`.
//!
//! The peaks of a plane (FLOP/s, HBM bandwidth) live in plane-level stats that
//! are not events; the caller reads them (`trace_xplane::plane_stats`) and
//! passes them in [`DeviceSink::set_peaks`].
//!
//! This crate does no IO, knows no file format and renders nothing: the
//! session report turns its output into Markdown, JSON and a plot.

mod host;
mod model;
mod rules;
mod sink;
mod stats;

pub use host::IdleExplainer;
pub use model::{
    Category, Component, DeviceOp, DevicePlane, HostIdleRow, IdleAttribution, Module, Peaks, Step,
    StepStats,
};
pub use rules::{COMPONENT_RULES, ComponentRule, component_of};
pub use sink::DeviceSink;
pub use stats::step_stats;

#[cfg(test)]
mod tests;
