//! Integration tests of the device view on committed device profiles.

mod fixtures;
mod gpu;
mod vllm;
mod xprof;
