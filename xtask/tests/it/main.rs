//! The xtask's integration tests, one binary: the real `xtask` executable
//! against real traces (`report`), against a real sglang-jax server
//! (`profile_local`), the whole TPU path against the simulated Cloud TPU
//! API and local workers (`rehearsal`) and its fault matrix
//! (`tpu_faults`), `trace` against the reader it exports, `compare` on
//! local and archived runs (against the GCS emulator), the HTML pages in
//! headless Chromium (`html`, `browser`), and checks on the repository
//! itself (`tidy`).

mod browser;
mod compare;
mod compare_gcs;
mod html;
mod profile_local;
mod rehearsal;
mod report;
mod report_device;
mod tidy;
mod tpu_faults;
mod trace;
