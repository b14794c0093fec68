//! Control of one sglang-jax server: launch it, know when it is ready, drive
//! its HTTP API, profile it and stop it without leaving processes behind.
//!
//! The pieces are independent so other tools can take only what they need:
//! [`Client`] speaks every endpoint a profiling session uses (plain-text
//! answers of the profiler endpoints included), [`LaunchSpec`] renders the
//! `python -m sgl_jax.launch_server` command line, [`Supervised`] runs a
//! local process in its own process group with its output in a log file, and
//! [`workload`] sends timed request mixes and summarises their latencies.
//!
//! With the `stub` cargo feature, [`stub`] serves the same HTTP API on
//! loopback without a model, for tests that need a server but not a real
//! one.
//!
//! This crate is not a session driver: it does not install Python, build
//! models, choose run folders or write reports (the xtask does), and it knows
//! nothing of trace formats beyond the names of the files the JAX profiler
//! writes. It is asynchronous and expects a tokio runtime.

mod client;
mod error;
mod h1;
mod launch;
mod load;
mod logtail;
mod profile;
mod readiness;
mod stamped;
#[cfg(feature = "stub")]
pub mod stub;
mod supervisor;
pub mod workload;

pub use client::{
    Client, ClientConfig, GenerateRequest, GenerateResponse, ModelInfo, ProfileStatus,
    SamplingParams, ScoreRequest, ScoreResponse, StreamedGenerate,
};
pub use error::Error;
pub use launch::{LaunchSpec, MultiNode, Precompile, PrecompileFlags};
pub use load::{
    AnswerMeta, Clock, LoadOptions, LoadRequest, Requests, Sent, send_load, send_load_each,
};
pub use logtail::log_tail;
pub use profile::{
    ProfilerFeatures, StartProfile, StopOutcome, TraceRun, check_capture, find_trace_runs,
    wait_for_trace_files,
};
pub use readiness::{ReadyOptions, wait_until_ready};
pub use supervisor::{
    Liveness, NoLiveness, SpawnSpec, StopReport, Supervised, kill_all_supervised,
};

/// The line sglang-jax logs once its own warmup request has finished.
pub const READY_LOG_LINE: &str = "The server is fired up and ready to roll!";
