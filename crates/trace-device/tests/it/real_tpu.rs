//! The real four-chip TPU v6e capture (`tpu-v6e-4-host-offload`, from
//! openxla/xprof's test data) against xprof 2.24.2's own outputs for it,
//! per chip (xprof run on a copy of the capture holding that chip alone)
//! and summed over the chips: per-op occurrences, total and self time,
//! device idle, idle share and duty cycle.
//!
//! The capture is a JAX host-offload stress test: async `copy-start` /
//! `copy-done` pairs whose host-synchronised times nest where their device
//! clock times do not.

use std::collections::HashMap;

use serde_json::Value;
use trace_device::DevicePlane;

use crate::fixtures::{Table, agree, device_view, root};

const PS_PER_US: f64 = 1e6;
const PS_PER_MS: f64 = 1e9;

fn dir() -> std::path::PathBuf {
    root().join("real-device/tpu-v6e-4-host-offload")
}

fn planes() -> Vec<DevicePlane> {
    let bytes = std::fs::read(dir().join("tpu_inference_2.xplane.pb")).expect("fixture");
    device_view(&bytes)
}

/// xprof's output `tool` for chip `chip`, or for all chips.
fn xprof(chip: Option<usize>, tool: &str) -> Value {
    let base = dir().join("xprof-2.24.2");
    let path = match chip {
        Some(chip) => base.join(format!("tpu-{chip}/{tool}.json")),
        None => base.join(format!("{tool}.json")),
    };
    serde_json::from_slice(&std::fs::read(path).expect("xprof output")).expect("JSON")
}

/// (count, total, self) per (program id, HLO op name), over `planes`.
fn our_ops(planes: &[&DevicePlane]) -> HashMap<(u64, String), (u64, i64, i64)> {
    let mut res: HashMap<(u64, String), (u64, i64, i64)> = HashMap::new();
    for op in planes.iter().flat_map(|it| &it.ops) {
        let key = (op.program_id.expect("program id"), op.name.clone());
        let acc = res.entry(key).or_default();
        acc.0 += op.count;
        acc.1 += op.total_ps;
        acc.2 += op.self_ps;
    }
    res
}

/// Every HLO op of `hlo_stats` against ours: the same occurrences, total
/// and self time within 0.1 %. Returns how many ops ran at least 1 ms.
fn check_ops(what: &str, planes: &[&DevicePlane], hlo_stats: &Value) -> usize {
    let ours = our_ops(planes);
    let table = Table::parse(hlo_stats);
    let (prog, name, occ, total, selft) = (
        table.col("program_id"),
        table.col("hlo_op_name"),
        table.col("occurrences"),
        table.col("total_time"),
        table.col("total_self_time"),
    );
    assert_eq!(table.rows.len(), ours.len(), "{what}: one row per op");
    let mut heavy = 0;
    for row in &table.rows {
        let program: u64 = row[prog].as_str().expect("id").parse().expect("number");
        let op = row[name].as_str().expect("name");
        let (count, total_ps, self_ps) = ours[&(program, op.to_owned())];
        let label = format!("{what}: {op}");
        assert_eq!(count as f64, row[occ].as_f64().expect("occ"), "{label}");
        let theirs_total = row[total].as_f64().expect("total");
        agree(&label, total_ps as f64 / PS_PER_US, theirs_total, 1e-6);
        agree(
            &label,
            self_ps as f64 / PS_PER_US,
            row[selft].as_f64().expect("self"),
            1e-6,
        );
        heavy += usize::from(theirs_total >= 1e3);
    }
    heavy
}

/// The device IDLE row of `framework_op_stats`: its time (µs) and its
/// share of the device time.
fn idle_row(framework_op_stats: &Value) -> (f64, f64) {
    let table = Table::parse(&framework_op_stats[0]);
    let (kind, op, selft, share) = (
        table.col("host_or_device"),
        table.col("operation"),
        table.col("total_self_time"),
        table.col("device_total_self_time_percent"),
    );
    let row = table
        .rows
        .iter()
        .find(|row| row[op] == "IDLE" && row[kind] == "Device")
        .expect("IDLE row");
    (
        row[selft].as_f64().expect("idle"),
        row[share].as_f64().expect("share"),
    )
}

/// The overview's duty cycle idle time (`idle_time_high_confidence_ps`,
/// six significant digits) and its rounded percentages.
fn overview(overview_page: &Value) -> (f64, f64, f64) {
    let p = &overview_page[0]["p"];
    let percent = |key: &str| -> f64 {
        p[key]
            .as_str()
            .expect("text")
            .trim_end_matches('%')
            .parse()
            .expect("number")
    };
    let idle_ps: f64 = p["idle_time_high_confidence_ps"]
        .as_str()
        .expect("text")
        .parse()
        .expect("number");
    // The "high confidence" duty cycle is the plain one on this capture, so
    // its idle time, printed with six digits, is the plain one's too.
    let duty = percent("device_duty_cycle_percent");
    assert_eq!(duty, percent("device_duty_cycle_high_confidence_percent"));
    (idle_ps, duty, percent("device_idle_time_percent"))
}

/// Idle, idle share, duty cycle and its idle time of `planes`, summed.
fn check_idle_and_duty(what: &str, planes: &[&DevicePlane], chip: Option<usize>) {
    let idle: i64 = planes.iter().map(|it| it.idle_ps()).sum();
    let total: i64 = planes.iter().map(|it| it.total_ps()).sum();
    let (their_idle, their_share) = idle_row(&xprof(chip, "framework_op_stats"));
    agree(
        &format!("{what}: idle"),
        idle as f64 / PS_PER_US,
        their_idle,
        0.0,
    );
    agree(
        &format!("{what}: idle share"),
        idle as f64 / total as f64,
        their_share,
        0.0,
    );
    let active: i64 = planes.iter().map(|it| it.duty_active_ps).sum();
    let span: i64 = planes.iter().map(|it| it.duty_span_ps).sum();
    let (duty_idle, duty_percent, idle_percent) = overview(&xprof(chip, "overview_page"));
    // Six significant digits: within 0.1 % is well within their rounding.
    agree(
        &format!("{what}: duty cycle idle"),
        (span - active) as f64,
        duty_idle,
        0.0,
    );
    let duty = active as f64 / span as f64 * 100.0;
    assert!(
        (duty - duty_percent).abs() <= 0.05 + 1e-9,
        "{what}: duty cycle {duty} vs xprof {duty_percent}%"
    );
    let share = idle as f64 / total as f64 * 100.0;
    assert!(
        (share - idle_percent).abs() <= 0.05 + 1e-9,
        "{what}: idle share {share} vs xprof {idle_percent}%"
    );
}

#[test]
fn every_chip_agrees_with_xprof() {
    let planes = planes();
    let names: Vec<&str> = planes.iter().map(|it| it.plane.as_str()).collect();
    assert_eq!(
        names,
        [
            "/device:TPU:0",
            "/device:TPU:1",
            "/device:TPU:2",
            "/device:TPU:3"
        ]
    );
    for (chip, plane) in planes.iter().enumerate() {
        let what = plane.plane.as_str();
        assert!(plane.device_clock, "{what}");
        assert_eq!(plane.out_of_order, 0, "{what}: lines in host order");
        let heavy = check_ops(what, &[plane], &xprof(Some(chip), "hlo_stats"));
        assert!(heavy >= 7, "{what}: the ops of at least 1 ms are checked");
        check_idle_and_duty(what, &[plane], Some(chip));
    }
}

#[test]
fn the_sum_over_chips_agrees_with_xprof() {
    let planes = planes();
    let all: Vec<&DevicePlane> = planes.iter().collect();
    check_ops("all chips", &all, &xprof(None, "hlo_stats"));
    check_idle_and_duty("all chips", &all, None);
    // The figures the issue started from: copy-done.4's self time is its
    // total (nothing nests inside it on the device clock), and device idle
    // is 48,611.8 ms.
    let copy_done: Vec<_> = planes
        .iter()
        .flat_map(|it| &it.ops)
        .filter(|it| it.name == "copy-done.4")
        .collect();
    let total: i64 = copy_done.iter().map(|it| it.total_ps).sum();
    let self_ps: i64 = copy_done.iter().map(|it| it.self_ps).sum();
    assert_eq!(total, self_ps);
    assert_eq!((self_ps as f64 / PS_PER_MS * 10.0).round(), 777_732.0);
    let idle: i64 = planes.iter().map(|it| it.idle_ps()).sum();
    assert_eq!((idle as f64 / PS_PER_MS * 10.0).round(), 486_118.0);
}

#[test]
fn framework_ops_agree_with_framework_op_stats() {
    let planes = planes();
    let table = Table::parse(&xprof(None, "framework_op_stats")[0]);
    let (kind, op, occ, selft) = (
        table.col("host_or_device"),
        table.col("operation"),
        table.col("occurrences"),
        table.col("total_self_time"),
    );
    for row in table
        .rows
        .iter()
        .filter(|row| row[kind] == "Device" && row[op] != "IDLE")
    {
        let framework_op = row[op].as_str().expect("op");
        // An HLO op without a framework op is its own row, by name.
        let members: Vec<_> = planes
            .iter()
            .flat_map(|it| &it.ops)
            .filter(|it| {
                it.framework_op == framework_op
                    || it.framework_op.is_empty() && it.name == framework_op
            })
            .collect();
        assert!(!members.is_empty(), "{framework_op}");
        let self_ps: i64 = members.iter().map(|it| it.self_ps).sum();
        agree(
            framework_op,
            self_ps as f64 / PS_PER_US,
            row[selft].as_f64().expect("self"),
            1e-6,
        );
        // xprof counts a framework op's occurrences as the maximum over its
        // HLO ops (summed over chips); sglprof reports each op's own count.
        let mut per_name: HashMap<&str, u64> = HashMap::new();
        for it in &members {
            *per_name.entry(it.name.as_str()).or_default() += it.count;
        }
        let max = per_name.values().max().expect("members");
        assert_eq!(
            *max as f64,
            row[occ].as_f64().expect("occ"),
            "{framework_op}"
        );
    }
}
