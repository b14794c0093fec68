//! The xtask's integration tests, one binary: the real `xtask` executable
//! against real traces (`report`), against a real sglang-jax server
//! (`profile_local`), `trace` against the reader it exports, and checks on the repository itself (`tidy`).

mod compare;
mod profile_local;
mod report;
mod report_device;
mod tidy;
mod trace;
