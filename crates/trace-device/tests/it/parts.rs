//! The device view read in parts on several threads and merged
//! (`DeviceSink::for_part`, `DeviceSink::merge`) against one pass, on every
//! committed XPlane with device planes, cut into 2 to 7 parts.

use trace_device::{DevicePlane, DeviceSink};
use trace_xplane::LineInfo;

use crate::fixtures::{root, synth_xplane};

fn one_pass(bytes: &[u8]) -> Vec<DevicePlane> {
    let mut sink = DeviceSink::without_host_events();
    trace_xplane::read(bytes, &mut sink).expect("valid XSpace");
    sink.finish()
}

fn in_parts(bytes: &[u8], n: usize) -> (Vec<DevicePlane>, bool) {
    let mut seed = DeviceSink::without_host_events();
    let bounds = |line: &LineInfo<'_>| {
        line.plane.starts_with("/device:") && matches!(line.line, "Steps" | "XLA Modules")
    };
    trace_xplane::read_lines(bytes, &bounds, &mut seed).expect("valid XSpace");
    let mut parts: Vec<DeviceSink> = (0..n).map(|_| seed.for_part()).collect();
    trace_xplane::read_parts(bytes, &mut parts).expect("valid XSpace");
    for part in parts {
        seed.merge(part);
    }
    let exact = seed.merged_exactly();
    (seed.finish(), exact)
}

fn check(what: &str, bytes: &[u8]) {
    let whole = one_pass(bytes);
    assert!(!whole.is_empty(), "{what}");
    for n in 1..=7 {
        let (merged, exact) = in_parts(bytes, n);
        assert!(exact, "{what}: {n} parts");
        assert_eq!(merged, whole, "{what}: {n} parts");
    }
}

#[test]
fn the_real_four_chip_capture() {
    let path = root().join("real-device/tpu-v6e-4-host-offload/tpu_inference_2.xplane.pb");
    check("tpu-v6e-4", &std::fs::read(path).expect("fixture"));
}

#[test]
fn the_synthetic_tpu_profile() {
    check("tpu-synth", &synth_xplane());
}

#[test]
fn the_gpu_capture() {
    let path = root().join("real-device/amd-mi300-jax-gemm.xplane.pb");
    check("mi300", &std::fs::read(path).expect("fixture"));
}
