//! Fast tests of sglang-server against local stubs: wiremock for the HTTP
//! client and small shell scripts for the supervisor. The real server is
//! exercised by the end-to-end tests of the xtask.

mod client;
mod later_api;
mod launch;
mod stats;
mod supervisor;
