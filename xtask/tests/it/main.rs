//! The xtask's integration tests, one binary: the real `xtask` executable
//! against real traces (`report`), against a real sglang-jax server
//! (`profile_local`), the whole TPU path against the simulated Cloud TPU
//! API and local workers (`rehearsal`) and its fault matrix
//! (`tpu_faults`), `trace` against the reader it exports, `compare` on
//! local and archived runs (against the GCS emulator), and checks on the
//! repository itself (`tidy`). `support` is what they share: the lock of
//! real servers, the binary's shared real server, the stub server.

mod compare;
mod compare_gcs;
mod profile_local;
mod rehearsal;
mod report;
mod report_device;
mod support;
mod tidy;
mod tpu_faults;
mod trace;
