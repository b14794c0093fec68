//! Prints the device view's headline numbers for one `.xplane.pb`: a way to
//! time the device pass alone, whole process (`/usr/bin/time`).
//!
//! `cargo run -p trace-device --example device_stats -- FILE` (the dev profile
//! optimises this crate and the reader)

use trace_device::{DeviceSink, Peaks};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("error: usage: device_stats FILE.xplane.pb");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("error: {path}: {err}");
            std::process::exit(1);
        }
    };
    let mut sink = DeviceSink::new();
    let result = trace_xplane::plane_stats(&bytes).and_then(|planes| {
        for plane in planes {
            sink.set_peaks(
                &plane.plane,
                Peaks {
                    device_type: plane.text("device_type_string").map(str::to_owned),
                    tflops_per_s: plane.number("peak_teraflops_per_second"),
                    hbm_gbytes_per_s: plane.number("peak_hbm_bw_gigabytes_per_second"),
                },
            );
        }
        trace_xplane::read(&bytes, &mut sink)
    });
    if let Err(err) = result {
        eprintln!("error: {path}: {err}");
        std::process::exit(1);
    }
    for plane in sink.finish() {
        println!(
            "{}: window {} ps, busy {} ps, {} ops, {} steps, {} idle gaps",
            plane.plane,
            plane.window_ps,
            plane.busy_ps,
            plane.ops.len(),
            plane.steps.len(),
            plane.idle.gaps
        );
    }
}
