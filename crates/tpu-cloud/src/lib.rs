//! Cloud TPU VMs for profiling sessions: create, watch, reach and delete them.
//!
//! This crate talks to the Cloud TPU v2 REST API (`tpu.googleapis.com/v2`)
//! with `reqwest` and bearer tokens from an injected
//! [`gcp_auth::TokenProvider`], so the same code runs against Google and
//! against a fake API on loopback.
//! It covers nodes (create, get, list, delete, stop, start), queued
//! resources (create, get, delete) and long-running operations, which are
//! polled with backoff up to a deadline.
//! Failures become [`Error`] values whose message says what to do next.
//!
//! [`lease`] is the "never leak a VM" part: a run state file is written
//! before the create call, and [`lease::with_node`] deletes the node on
//! every exit path, including cancellation.
//! [`lease::Signals`] catches INT, TERM, HUP and QUIT for the cancel future.
//! [`gcloud`] runs `gcloud compute tpus tpu-vm ssh/scp` with argv built by
//! `xshell`, never through a shell string.
//! [`workers`] abstracts the hosts of a slice ([`workers::Workers`]: run a
//! script on worker i or all of them, copy files) with the gcloud
//! implementation and [`workers::LocalWorkers`], a stand-in in which each
//! worker is a folder on this machine (HOME and working directory) and the
//! same scripts run with bash. [`remote::Slice`] installs, launches, checks
//! and fetches per worker over either. These two modules are the only ones
//! that start processes, each in its own process group, killed whole when
//! the caller stops waiting.
//! [`script`] renders the remote install, launch and wait scripts (secrets
//! are read from files on the VM, see [`redact`] for what is shown), and
//! [`cost`] turns billed time into dollars, and [`runtime`] gives the VM
//! image (runtime version) of each accelerator family.
//! With the `fake` feature, `fake` is a faithful fake of the API on
//! loopback (tests and rehearsals): `FakeTpu::start_with(FakeConfig {
//! project, log: Some(path), .. })`, then `TpuClient::new` with its URL and
//! `fake.tokens()`; `on_node_deleted(hook)` can call
//! [`workers::LocalWorkers::terminate`], as deleting a VM ends its
//! processes.
//!
//! A rehearsal on this machine: start the fake, lease a node with
//! [`lease::with_node`], build `LocalWorkers::create(dir, hosts)` with one
//! worker per `node.network_endpoints`, `seed_venv` with a CPU environment,
//! and drive a [`remote::Slice`] with a CPU [`script::InstallSpec`]
//! (`cpu: Some(..)`). Multi-host slices get one server per worker there;
//! whether sglang-jax's multi-node mode (`jax.distributed` over
//! `--dist-init-addr`) runs on CPU was not established.
//!
//! What this crate is not: it knows nothing about sglang-jax's HTTP API
//! (see `sglang-server`), the report (see `session-report`) or GCS
//! (see `gcs-artifacts`). It does not find credentials on its own unless
//! asked to through [`auth::default_token_provider`].

pub mod api;
pub mod auth;
pub mod client;
pub mod clock;
pub mod cost;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod gcloud;
pub mod lease;
mod process;
pub mod redact;
pub mod remote;
pub mod runtime;
pub mod script;
pub mod state;
pub mod time;
pub mod workers;

pub use api::{Node, NodeState, Operation, Provisioning, QueuedResource};
pub use client::{ClientConfig, Location, Timing, TpuClient, Transcript};
pub use clock::{Backoff, Clock, SystemClock};
pub use error::Error;

/// The OAuth scope every call of this crate asks for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The production endpoint of the Cloud TPU API.
pub const GOOGLE_API_URL: &str = "https://tpu.googleapis.com";

/// The label every sglprof-created resource carries (`created-by=sglprof`).
pub const CREATED_BY_LABEL: (&str, &str) = ("created-by", "sglprof");

/// The label that names the run a resource belongs to.
pub const RUN_LABEL: &str = "sglprof-run";
