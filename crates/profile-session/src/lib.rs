//! The profiling session as a library, the same for every host the server
//! runs on: the [`plan`] (what a run will do, plain data, printed by a dry
//! run, with the one reproduction line), the [`run_folder`] (layout, the one
//! guard against reusing a folder, atomic writes, checksums), [`redact`]ion
//! of secrets at the places where commands and logs are rendered, and the
//! [`session`] steps once a server answers (readiness, warmup, profile
//! start and stop, workload, hooks for py-spy, collection), and [`pyspy`]
//! around the workload, on this machine or on every host of a slice; the
//! traces of every host [`collect`]ed into one JAX run.
//!
//! It is not a command line (no clap types, no printing of its own except
//! the `[session]` progress lines) and it does not start servers or VMs:
//! drivers for each host do, through `sglang-server` and `tpu-cloud`.

pub mod collect;
pub mod load;
pub mod machine;
pub mod manual;
pub mod plan;
pub mod pyspy;
pub mod redact;
pub mod run_folder;
pub mod session;
pub mod sweep;

pub use load::LoadSpec;
pub use plan::{Endpoint, Plan, PlanError};
pub use run_folder::{RunFolder, RunFolderError};
