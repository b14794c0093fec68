//! The session report: `report.md` in the shape of the seed profiling
//! session document, and the machine-readable `summary.json`.
//!
//! Rendering is a pure function of the analysis and the run metadata; this
//! crate reads no files and knows nothing of HTTP or the cloud. The run
//! metadata file format ([`RunMetadata`]) is defined here because the report is
//! its reader; the session drivers in the xtask write it.

mod device;
pub mod format;
mod metadata;
mod render;
mod serving;
mod summary;

pub use device::{DEVICE_DEFINITIONS, plot_file_name, step_plot};
pub use metadata::{
    CostRow, LatencyStats, MetadataError, ProfileConfig, RUN_METADATA_SCHEMA, RunMetadata,
    TraceFileInfo, WorkloadSummary,
};
pub use render::{
    FullTrace, METRIC_DEFINITIONS, PySpyProcess, PySpySection, ReportInput, RequestWait,
    RequestsOnTrace, Span, TraceFormat, Truncation, WaitOp, file_purpose, observation_spans,
    render_markdown, spans_markdown, summary_spans,
};
pub use serving::{
    Distribution, Goodput, LOAD_LATENCY_PLOT, LoadPoint, Overlap, ProfilerCalls, RequestPoint,
    SERVING_PLOT, ServingMetadata, ServingReport, ServingSection, Slo, Window, load_latency_plot,
    render_serving, serving_plot, serving_section,
};
pub use summary::{Compilation, SUMMARY_SCHEMA, compilation, render_summary_json};

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod pyspy_tests;
#[cfg(test)]
mod tests;
