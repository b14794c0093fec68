//! The xtask's integration tests, one binary: the real `xtask` executable
//! against real traces (`report`), against a real sglang-jax server
//! (`profile_local`), the whole TPU path against the simulated Cloud TPU
//! API and local workers (`rehearsal`) and its fault matrix
//! (`tpu_faults`), `trace` against the reader it exports, `compare` on
//! local and archived runs (against the GCS emulator), the outputs of
//! `report`, `compare` and `trace` under hostile paths, crashes and a full
//! disk (`outputs`), the hostile probe's cases that need no server
//! (`probe`: secrets in URLs, config files, VM images), every generated
//! script and command block under shellcheck (`shellcheck`), the HTML pages
//! in headless Chromium (`html`, `browser`), and checks on the repository
//! itself (`tidy`). `support` is what they share: the slots of real
//! servers, the binary's shared real server, the stub server.

mod browser;
mod compare;
mod compare_gcs;
mod html;
mod outputs;
mod probe;
mod profile_local;
mod rehearsal;
mod report;
mod report_device;
mod shellcheck;
mod support;
mod tidy;
mod timeline;
mod tpu_faults;
mod trace;
