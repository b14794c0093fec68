//! Integration tests of the device view on committed device profiles.

mod clocks;
mod fixtures;
mod gpu;
mod parts;
mod real_tpu;
mod vllm;
mod xprof;
