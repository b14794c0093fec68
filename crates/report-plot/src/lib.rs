//! The pictures of sglprof's reports, as hand-written SVG: the step plot of
//! a device, its roofline, latency distributions and latency per request,
//! the load-latency curve of a sweep, the compare chart and the py-spy
//! flamegraph of one process.
//!
//! One drawing serves both outputs: the SVG files beside `report.md` and
//! `compare.md`, and the same documents inlined in `report.html`,
//! `compare.html` and a sweep's `index.html`. Every function is pure (data
//! in, an SVG string out); nothing here reads a file or knows a trace
//! format. Each document is a `<svg class="plot KIND">` with a white
//! background, so a page can find it and a screenshot can check that it
//! is not blank.

mod compare;
mod dist;
mod flame;
mod roofline;
mod steps;
mod svg;
mod thin;
mod xy;

pub use compare::{Change, ChangeBar, change_chart};
pub use dist::{bins, histogram};
pub use flame::{MIN_SHARE, flamegraph_svg};
pub use roofline::{ROOFLINE_OPS, roofline_points, roofline_svg};
pub use steps::steps_svg;
pub use svg::escape;
pub use thin::{MAX_POINTS, curve_ranks, envelope};
pub use xy::{Axis, Chart, Mark, Point, Scale, Series, xy_chart};
