//! Loading the committed device fixtures.

use std::path::PathBuf;

use trace_device::{DevicePlane, DeviceSink, Peaks};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The synthetic TPU profile's XSpace.
pub fn synth_xplane() -> Vec<u8> {
    let dir = root().join("tpu-synth/plugins/profile/2025_11_23_14_00_00");
    std::fs::read(dir.join("t1v-n-52e6b438-w-0.xplane.pb")).expect("fixture")
}

/// The device view of an XSpace, with the peaks from its plane stats.
pub fn device_view(bytes: &[u8]) -> Vec<DevicePlane> {
    let mut sink = DeviceSink::new();
    for plane in trace_xplane::plane_stats(bytes).expect("plane stats") {
        sink.set_peaks(
            &plane.plane,
            Peaks {
                device_type: plane.text("device_type_string").map(str::to_owned),
                tflops_per_s: plane.number("peak_teraflops_per_second"),
                hbm_gbytes_per_s: plane.number("peak_hbm_bw_gigabytes_per_second"),
            },
        );
    }
    trace_xplane::read(bytes, &mut sink).expect("valid XSpace");
    sink.finish()
}

/// One xprof data table: `cols` ids and `rows` of values.
pub struct Table {
    pub cols: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub p: serde_json::Value,
}

impl Table {
    pub fn parse(value: &serde_json::Value) -> Table {
        let cols = value["cols"]
            .as_array()
            .expect("cols")
            .iter()
            .map(|it| it["id"].as_str().expect("col id").to_owned())
            .collect();
        let rows = value["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row["c"]
                            .as_array()
                            .expect("cells")
                            .iter()
                            .map(|cell| cell["v"].clone())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Table {
            cols,
            rows,
            p: value["p"].clone(),
        }
    }

    pub fn col(&self, id: &str) -> usize {
        self.cols
            .iter()
            .position(|it| it == id)
            .unwrap_or_else(|| panic!("no column {id}"))
    }
}

/// An xprof output file of the synthetic fixture.
pub fn xprof_json(tool: &str) -> serde_json::Value {
    let path = root().join(format!("tpu-synth/xprof/{tool}.json"));
    serde_json::from_slice(&std::fs::read(path).expect("xprof output")).expect("JSON")
}

/// Asserts `ours` is within 0.1 % of xprof's `theirs` (or within `floor`
/// absolute, for values near zero).
#[track_caller]
pub fn agree(what: &str, ours: f64, theirs: f64, floor: f64) {
    let diff = (ours - theirs).abs();
    assert!(
        diff <= theirs.abs() * 1e-3 || diff <= floor,
        "{what}: sglprof {ours} vs xprof {theirs}"
    );
}
