//! Integration tests of tpu-cloud against a fake Cloud TPU v2 API on
//! loopback. Nothing here reaches Google or runs gcloud.

mod client;
mod fake_api;
mod lease;
mod snapshots;
mod support;
mod workers;
