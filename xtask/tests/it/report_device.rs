//! `cargo xtask report` on device profiles: the synthetic TPU profile (its
//! idle time against xprof's committed output) and the real two-chip vLLM
//! TPU JSON export.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn report(input: &str) -> (tempfile::TempDir, Value, String, String) {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["report", input, "--out"])
        .arg(out.path())
        .current_dir(repo())
        .output()
        .expect("the xtask binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
    let summary = serde_json::from_str(&read("summary.json")).unwrap();
    let markdown = read("report.md");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (out, summary, markdown, stdout)
}

#[test]
fn synthetic_tpu_profile_gets_a_device_section_and_plot() {
    let (out, summary, markdown, stdout) = report("fixtures/tpu-synth");
    assert!(markdown.contains("## Device Activity"));
    assert!(markdown.contains("### Host Runtime Calls"));
    assert!(markdown.contains("### XLA Modules"));
    assert!(markdown.contains("Perfetto cannot open"));
    assert!(markdown.contains("[steps-tpu-0.svg](steps-tpu-0.svg)"));
    let svg = std::fs::read_to_string(out.path().join("steps-tpu-0.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(stdout.contains("steps-tpu-0.svg"));
    let device = &summary["devices"][0];
    assert_eq!(device["device_type"], "TPU v6 lite");
    assert!(device["peak_teraflops_per_second"].as_f64().unwrap() > 0.0);
    // xprof's device IDLE row for the same file, in microseconds.
    let xprof: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("fixtures/tpu-synth/xprof/framework_op_stats.json"))
            .unwrap(),
    )
    .unwrap();
    let idle_us = xprof[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["c"][3]["v"] == "IDLE")
        .unwrap()["c"][7]["v"]
        .as_f64()
        .unwrap();
    let ours = device["idle_ms"].as_f64().unwrap() * 1e3;
    assert!(
        (ours - idle_us).abs() <= idle_us * 1e-3,
        "{ours} vs {idle_us}"
    );
}

#[test]
fn two_chip_json_export_gets_one_device_each() {
    let (_out, summary, markdown, _) =
        report("fixtures/real-device/vllm-tpu-2026_01_11_21_26_41.trace.json.gz");
    let planes: Vec<&str> = summary["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| it["plane"].as_str().unwrap())
        .collect();
    assert_eq!(planes, ["/device:TPU:0", "/device:TPU:1"]);
    assert_eq!(summary["devices"][0]["device_clock"], true);
    assert!(markdown.contains("**All devices**"));
    assert!(markdown.contains("### All Devices: HLO Categories"));
}
