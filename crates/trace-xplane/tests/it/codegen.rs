//! Keeps `src/generated.rs` in step with `proto/xplane.proto`.
//!
//! The bindings are compiled with protox (a protobuf compiler written in
//! Rust) and prost-build, so neither this test nor a normal build needs
//! `protoc`. `UPDATE_GENERATED=1 cargo test -p trace-xplane` rewrites the
//! file instead of failing.

use std::path::Path;

const HEADER: &str = "\
//! Prost types for the XPlane format (`proto/xplane.proto`).
//!
//! Generated from `proto/xplane.proto` by protox and prost-build in the
//! `generated_code_is_fresh` test (`tests/it/codegen.rs`); do not edit by hand.
//! Regenerate with `UPDATE_GENERATED=1 cargo test -p trace-xplane`.
//! Maps are `BTreeMap`s so that encoding is deterministic.

";

fn generate() -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = manifest.join("../../proto");
    let fds = protox::compile(["xplane.proto"], [&proto_dir]).expect("compile xplane.proto");
    let out = tempfile::tempdir().expect("temp dir");
    prost_build::Config::new()
        .btree_map(["."])
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("generate prost code");
    let code = std::fs::read_to_string(out.path().join("tensorflow.profiler.rs"))
        .expect("read generated code");
    format!("{HEADER}{code}")
}

#[test]
fn generated_code_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/generated.rs");
    let fresh = generate();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == fresh {
        return;
    }
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &fresh).expect("write src/generated.rs");
        return;
    }
    panic!(
        "src/generated.rs is stale; run `UPDATE_GENERATED=1 cargo test -p trace-xplane` \
         and commit the result"
    );
}
