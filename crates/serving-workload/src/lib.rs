//! Serving workloads as data: the datasets a load is drawn from, when each
//! request is due, the record of each request, and the metrics of a
//! measured phase, all with `bench_serving`'s definitions.
//!
//! The crate is pure: it does no IO (files come in as text, the tokenizer
//! as a [`dataset::Tokenizer`]), sends nothing and keeps no clock. The
//! sender is `sglang-server`'s `workload` module; `profile-session` reads
//! the files, turns the sender's outcomes into [`RequestRecord`]s and
//! writes them; `profile-report` computes the [`metrics`] from them.
//!
//! The random streams are `bench_serving`'s own ([`pyrand`]), so the same
//! seed gives the same requests and the same arrival gaps as there.

pub mod arrivals;
pub mod dataset;
pub mod metrics;
pub mod pyrand;
pub mod record;

pub use record::{REQUEST_SCHEMA, RequestRecord};

#[cfg(test)]
mod tests;
