//! The device section, `devices` in `summary.json` and the step plot, on the
//! committed synthetic TPU profile.

use std::path::PathBuf;

use trace_analysis::{Analysis, Analyzer};
use trace_device::{DevicePlane, DeviceSink, Peaks};
use trace_model::EventSink;

use crate::{
    ReportInput, RunMetadata, TraceFormat, Truncation, plot_file_name, render_markdown,
    render_summary_json, step_plot,
};

fn fixture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../fixtures/tpu-synth/plugins/profile/2025_11_23_14_00_00/t1v-n-52e6b438-w-0.xplane.pb",
    );
    std::fs::read(path).expect("fixture")
}

fn read() -> (Analysis, Vec<DevicePlane>) {
    let bytes = fixture();
    let mut analyzer = Analyzer::new();
    let mut device = DeviceSink::new();
    for plane in trace_xplane::plane_stats(&bytes).expect("stats") {
        device.set_peaks(
            &plane.plane,
            Peaks {
                device_type: plane.text("device_type_string").map(str::to_owned),
                tflops_per_s: plane.number("peak_teraflops_per_second"),
                hbm_gbytes_per_s: plane.number("peak_hbm_bw_gigabytes_per_second"),
            },
        );
    }
    let mut both = |event: &trace_model::Event<'_>| {
        analyzer.event(event);
        device.event(event);
    };
    trace_xplane::read(&bytes, &mut both).expect("valid");
    (analyzer.finish(), device.finish())
}

fn input<'a>(
    meta: &'a RunMetadata,
    analysis: &'a Analysis,
    devices: &'a [DevicePlane],
) -> ReportInput<'a> {
    ReportInput {
        metadata: meta,
        analysis,
        source: "plugins/profile/run/host.xplane.pb".to_owned(),
        format: TraceFormat::XPlane,
        truncation: Truncation::None,
        planes: vec!["/host:CPU".to_owned(), "/device:TPU:0".to_owned()],
        files: Vec::new(),
        logdir: ".".to_owned(),
        perfetto_file: "plugins/profile/run/host.xplane.pb".to_owned(),
        top_n: 5,
        full_trace: None,
        pyspy: None,
        devices,
        step_plots: vec![plot_file_name(&devices[0].plane)],
        serving: None,
        serving_plot: None,
    }
}

#[test]
fn device_section_and_separate_tables() {
    let (analysis, devices) = read();
    let meta = RunMetadata::default();
    let markdown = render_markdown(&input(&meta, &analysis, &devices));
    let start = markdown.find("### TPU/XLA Operations").expect("ops table");
    let end = markdown
        .find("### Device Definitions")
        .expect("definitions");
    insta::assert_snapshot!(&markdown[start..end]);
    assert!(markdown.contains("[steps-tpu-0.svg](steps-tpu-0.svg)"));
    assert!(markdown.contains("Perfetto cannot open"));
    assert!(!markdown.contains("Drag and drop `plugins/profile/run/host.xplane.pb`"));
}

#[test]
fn summary_devices_have_the_documented_fields() {
    let (analysis, devices) = read();
    let meta = RunMetadata::default();
    let summary: serde_json::Value =
        serde_json::from_str(&render_summary_json(&input(&meta, &analysis, &devices)))
            .expect("JSON");
    let device = &summary["devices"][0];
    let plane = &devices[0];
    for key in [
        "plane",
        "device_type",
        "window_ms",
        "busy_ms",
        "idle_ms",
        "idle_fraction",
        "module_duty_cycle",
        "steps",
        "categories",
        "ops",
        "modules",
    ] {
        assert!(!device[key].is_null(), "{key}");
    }
    assert_eq!(device["plane"], "/device:TPU:0");
    assert_eq!(device["device_type"], "TPU v6 lite");
    let ms = |ps: i64| ps as f64 / 1e9;
    assert_eq!(device["idle_ms"].as_f64(), Some(ms(plane.idle_ps())));
    let sum = device["busy_ms"].as_f64().unwrap() + device["idle_ms"].as_f64().unwrap();
    assert!((sum - device["window_ms"].as_f64().unwrap()).abs() < 1e-9);
    let steps = &device["steps"];
    for key in [
        "count", "mean_ms", "p50_ms", "p90_ms", "min_ms", "max_ms", "stdev_ms",
    ] {
        assert!(steps[key].is_number(), "steps.{key}");
    }
    assert_eq!(steps["count"], 120);
    let per_step = steps["per_step"].as_array().expect("per step");
    assert_eq!(per_step.len(), 120);
    for step in per_step {
        let (c, i, d) = (
            step["compute_ms"].as_f64().unwrap(),
            step["idle_ms"].as_f64().unwrap(),
            step["duration_ms"].as_f64().unwrap(),
        );
        assert!((c + i - d).abs() < 1e-9);
    }
    let op = &device["ops"][0];
    for key in [
        "name",
        "framework_op",
        "program_id",
        "category",
        "count",
        "total_ms",
        "self_ms",
        "flops",
        "bytes_accessed",
        "gflops_per_s",
        "gbytes_per_s",
        "intensity",
        "bound",
    ] {
        assert!(!op[key].is_null(), "ops[0].{key}");
    }
    assert!(!op["framework_op"].as_str().unwrap().ends_with(':'));
    let self_sum: f64 = device["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| it["self_ms"].as_f64().unwrap())
        .sum();
    assert!((self_sum - device["busy_ms"].as_f64().unwrap()).abs() < 1e-6);
}

#[test]
fn step_plot_draws_one_bar_pair_per_step() {
    let (_, devices) = read();
    let svg = step_plot(&devices[0]).expect("steps");
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    // Two bars per step, a background, and a legend entry for each of the
    // two programs and for idle.
    assert_eq!(svg.matches("<rect").count(), 1 + 2 * 120 + 3);
    assert!(svg.contains("compute: jit_jitted_run_model(12)"));
    assert!(svg.contains("compute: jit_jitted_run_model(13)"));
    assert_eq!(plot_file_name("/device:TPU:1"), "steps-tpu-1.svg");
}
