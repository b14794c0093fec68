//! The integration tests of trace-xplane, in one binary.

mod codegen;
