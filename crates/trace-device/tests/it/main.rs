//! Integration tests of the device view on committed device profiles.

mod fixtures;
mod vllm;
mod xprof;
