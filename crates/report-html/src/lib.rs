//! The report pages: `report.html` beside `report.md`, `compare.html`
//! beside `compare.md`, and a sweep's `index.html` beside its `index.md`.
//!
//! Each page is one self-contained file: the style and the scripts are
//! inline, the pictures are inline SVG from `report-plot` (the same
//! drawings as the SVG files beside the Markdown), and a
//! Content-Security-Policy forbids every request, so the page opens from
//! `file://`, a downloaded artifact or a storage bucket and fetches
//! nothing. Without JavaScript every table (all its rows) and picture is
//! there; the script only sorts, filters and pages tables, zooms
//! flamegraphs and copies the reproduction line.
//!
//! The pages are rendered from the same data as the Markdown (a
//! [`session_report::ReportInput`], a [`profile_compare::Comparison`], a
//! list of [`SweepVariant`]s), never parsed back from it. Templates are
//! `maud` macros, checked and escaped at compile time. This crate does no
//! IO.

mod compare;
mod index;
mod page;
mod report;
mod serving;

pub use compare::render_compare;
pub use index::{SweepVariant, VariantWorkload, render_index};
pub use page::{FIRST_ROWS, content_security_policy};
pub use report::{ProcessFlame, ReportPage, render_report};

#[cfg(test)]
mod tests;
