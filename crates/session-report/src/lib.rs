//! The session report: `report.md` in the shape of the seed profiling
//! session document, and the machine-readable `summary.json`.
//!
//! Rendering is a pure function of the analysis and the run metadata; this
//! crate reads no files and knows nothing of HTTP or the cloud. The run
//! metadata file format ([`RunMetadata`]) is defined here because the report is
//! its reader; the session drivers in the xtask write it.

mod device;
mod format;
mod metadata;
mod render;
mod summary;

pub use device::{plot_file_name, step_plot};
pub use metadata::{
    CostRow, LatencyStats, MetadataError, ProfileConfig, RUN_METADATA_SCHEMA, RunMetadata,
    TraceFileInfo, WorkloadSummary,
};
pub use render::{
    FullTrace, PySpyProcess, PySpySection, ReportInput, TraceFormat, Truncation, render_markdown,
};
pub use summary::{SUMMARY_SCHEMA, render_summary_json};

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod pyspy_tests;
#[cfg(test)]
mod tests;
