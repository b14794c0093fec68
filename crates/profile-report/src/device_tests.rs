//! The report of the real four-chip TPU v6e capture against xprof 2.24.2's
//! outputs for it (`fixtures/real-device/tpu-v6e-4-host-offload`): what
//! `summary.json` says per chip and summed, that the shared args the
//! XPlane reader splits off change nothing, and that the device view read
//! in parts is the one read in one pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use trace_analysis::Analyzer;
use trace_device::DeviceSink;
use trace_model::{Event, EventSink};

use crate::{Request, generate};

fn capture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/real-device/tpu-v6e-4-host-offload")
}

fn capture() -> PathBuf {
    capture_dir().join("tpu_inference_2.xplane.pb")
}

fn xprof(chip: Option<usize>, tool: &str) -> Value {
    let dir = capture_dir().join("xprof-2.24.2");
    let path = match chip {
        Some(chip) => dir.join(format!("tpu-{chip}/{tool}.json")),
        None => dir.join(format!("{tool}.json")),
    };
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[track_caller]
fn agree(what: &str, ours: f64, theirs: f64) {
    let diff = (ours - theirs).abs();
    assert!(
        diff <= theirs.abs() * 1e-3 || diff <= 1e-9,
        "{what}: sglprof {ours} vs xprof {theirs}"
    );
}

/// Column `id` of an xprof data table, per row.
fn column<'a>(table: &'a Value, id: &str) -> Vec<&'a Value> {
    let idx = table["cols"]
        .as_array()
        .unwrap()
        .iter()
        .position(|it| it["id"] == id)
        .unwrap_or_else(|| panic!("no column {id}"));
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row["c"][idx]["v"])
        .collect()
}

/// (count, self ms, total ms) per (program id, op name) of `summary.json`
/// device planes.
fn summary_ops(planes: &[&Value]) -> HashMap<(String, String), (f64, f64, f64)> {
    let mut res: HashMap<(String, String), (f64, f64, f64)> = HashMap::new();
    for op in planes.iter().flat_map(|it| it["ops"].as_array().unwrap()) {
        let key = (
            op["program_id"].as_u64().unwrap().to_string(),
            op["name"].as_str().unwrap().to_owned(),
        );
        let acc = res.entry(key).or_default();
        acc.0 += op["count"].as_f64().unwrap();
        acc.1 += op["self_ms"].as_f64().unwrap();
        acc.2 += op["total_ms"].as_f64().unwrap();
    }
    res
}

/// The summary's planes against one xprof run (`chip`, or all chips).
fn check(what: &str, planes: &[&Value], chip: Option<usize>) {
    let ours = summary_ops(planes);
    let hlo = xprof(chip, "hlo_stats");
    let programs = column(&hlo, "program_id");
    let names = column(&hlo, "hlo_op_name");
    let occurrences = column(&hlo, "occurrences");
    let totals = column(&hlo, "total_time");
    let selfs = column(&hlo, "total_self_time");
    assert_eq!(programs.len(), ours.len(), "{what}");
    for idx in 0..programs.len() {
        let key = (
            programs[idx].as_str().unwrap().to_owned(),
            names[idx].as_str().unwrap().to_owned(),
        );
        let (count, self_ms, total_ms) = ours[&key];
        let label = format!("{what}: {}", key.1);
        assert_eq!(count, occurrences[idx].as_f64().unwrap(), "{label}");
        // xprof's times are microseconds.
        agree(&label, total_ms * 1e3, totals[idx].as_f64().unwrap());
        agree(&label, self_ms * 1e3, selfs[idx].as_f64().unwrap());
    }
    let fos = &xprof(chip, "framework_op_stats")[0];
    let kinds = column(fos, "host_or_device");
    let ops = column(fos, "operation");
    let idle_row = (0..ops.len())
        .find(|&it| ops[it] == "IDLE" && kinds[it] == "Device")
        .unwrap();
    let idle_ms: f64 = planes
        .iter()
        .map(|it| it["idle_ms"].as_f64().unwrap())
        .sum();
    agree(
        &format!("{what}: idle"),
        idle_ms * 1e3,
        column(fos, "total_self_time")[idle_row].as_f64().unwrap(),
    );
    let overview = &xprof(chip, "overview_page")[0]["p"];
    let percent = |key: &str| -> f64 {
        overview[key]
            .as_str()
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap()
    };
    let share = column(fos, "device_total_self_time_percent")[idle_row]
        .as_f64()
        .unwrap();
    if let [plane] = planes {
        agree(
            &format!("{what}: idle share"),
            plane["idle_fraction"].as_f64().unwrap(),
            share,
        );
        let duty = plane["duty_cycle"].as_f64().unwrap() * 100.0;
        assert!(
            (duty - percent("device_duty_cycle_percent")).abs() <= 0.05 + 1e-9,
            "{what}: duty cycle {duty}"
        );
    }
}

#[test]
fn the_report_of_the_real_capture_agrees_with_xprof_per_chip_and_summed() {
    let out = tempfile::tempdir().unwrap();
    let mut request = Request::for_run_folder(&capture());
    request.out_dir = out.path().to_path_buf();
    request.full_trace = false;
    generate(&request).unwrap();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    let devices: Vec<&Value> = summary["devices"].as_array().unwrap().iter().collect();
    assert_eq!(devices.len(), 4);
    for (chip, plane) in devices.iter().enumerate() {
        assert_eq!(plane["plane"], format!("/device:TPU:{chip}"));
        check(&format!("TPU:{chip}"), &[plane], Some(chip));
        // The host plane, read a second time, explains the gaps.
        assert!(plane["idle_attribution"]["gaps"].as_u64().unwrap() > 0);
        assert!(
            !plane["idle_attribution"]["rows"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
    check("all chips", &devices, None);
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    // The summed row: idle 48,611.80 ms, 13.4 % of the device time, duty
    // cycle 86.5 %, as xprof's overview says.
    assert!(
        report.contains(
            "| **All devices** |  | 363,729.70 | 315,117.90 | 48,611.80 | 13.4% | 86.5% |"
        ),
        "{report}"
    );
}

/// A sink that does not take split args, for either sink below: it gets
/// the reader's merged args.
struct Merged<'a>(&'a mut dyn EventSink);

impl EventSink for Merged<'_> {
    fn event(&mut self, event: &Event<'_>) {
        self.0.event(event);
    }

    fn stable_names(&mut self, stable: bool) {
        self.0.stable_names(stable);
    }
}

#[test]
fn split_args_give_what_merged_args_give() {
    let bytes = std::fs::read(capture()).unwrap();
    let (mut split, mut merged) = (Analyzer::new(), Analyzer::new());
    trace_xplane::read(&bytes, &mut split).unwrap();
    trace_xplane::read(&bytes, &mut Merged(&mut merged)).unwrap();
    assert_eq!(split.finish(), merged.finish());
    let (mut split, mut merged) = (DeviceSink::new(), DeviceSink::new());
    trace_xplane::read(&bytes, &mut split).unwrap();
    trace_xplane::read(&bytes, &mut Merged(&mut merged)).unwrap();
    assert_eq!(split.finish(), merged.finish());
}

/// The device view as the bench and the report read it (the step
/// boundaries first, then the lines in parts while another thread explains
/// the idle gaps with the host plane) is the view of one pass that keeps
/// the host events and explains the gaps at the end.
#[test]
fn device_views_read_in_parts_are_the_one_pass_view() {
    let path = capture();
    let bytes = std::fs::read(&path).unwrap();
    let mut one_pass = DeviceSink::new();
    crate::analyse::set_peaks(&bytes, &mut one_pass).unwrap();
    trace_xplane::read(&bytes, &mut one_pass).unwrap();
    let one_pass = one_pass.finish();
    assert_eq!(one_pass.len(), 4);
    assert!(one_pass.iter().all(|it| !it.idle.rows.is_empty()));
    assert_eq!(crate::device_view(&path).unwrap(), one_pass);
    let (_, _, in_report) = crate::analyse::analyse_xplane_with_devices(&path, true).unwrap();
    assert_eq!(in_report, one_pass);
}
