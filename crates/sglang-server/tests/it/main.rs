//! Fast tests of sglang-server against local stubs: wiremock for the HTTP
//! client, small shell scripts for the supervisor, and the crate's own
//! stub server (`stub` feature) driven like a real one, and a tiny
//! loopback server for the load sender's connections. The real server is
//! exercised by the end-to-end tests of the xtask.

mod client;
mod later_api;
mod launch;
mod load;
mod stats;
mod stub;
mod supervisor;
