//! The xtask's integration tests, one binary: the real `xtask` executable
//! against real traces (`report`), against a real sglang-jax server
//! (`profile_local`), the whole TPU path against the simulated Cloud TPU
//! API and local workers (`rehearsal`), `trace` against the reader it
//! exports, and checks on the repository itself (`tidy`).

mod compare;
mod profile_local;
mod rehearsal;
mod report;
mod report_device;
mod tidy;
mod trace;
