//! The real two-chip vLLM TPU capture (JSON export): device clock stats, no
//! `Steps` line, against an independent computation from the JSON itself.

use std::collections::HashMap;
use std::io::Read;

use serde_json::Value;
use trace_device::{DevicePlane, DeviceSink};

use crate::fixtures::root;

fn json_bytes() -> Vec<u8> {
    let path = root().join("real-device/vllm-tpu-2026_01_11_21_26_41.trace.json.gz");
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture"))
        .read_to_end(&mut text)
        .expect("gzip");
    text
}

fn planes() -> Vec<DevicePlane> {
    let mut sink = DeviceSink::new();
    trace_chrome::read_slice(&json_bytes(), &mut sink).expect("valid trace");
    sink.finish()
}

fn num(value: &Value) -> i64 {
    value.as_str().expect("string").parse().expect("integer")
}

/// One op execution on the device clock: (name, start, duration).
fn device_ops(doc: &Value, pid: i64) -> Vec<(String, i64, i64)> {
    doc["traceEvents"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["ph"] == "X" && e["pid"] == pid && e["tid"] == 3)
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                num(&e["args"]["device_offset_ps"]),
                num(&e["args"]["device_duration_ps"]),
            )
        })
        .collect()
}

/// Self time by brute force: each op's parent is the shortest other op that
/// contains it.
fn self_times(ops: &[(String, i64, i64)]) -> HashMap<String, i64> {
    let mut own: Vec<i64> = ops.iter().map(|it| it.2).collect();
    for (idx, (_, start, dur)) in ops.iter().enumerate() {
        let parent = ops
            .iter()
            .enumerate()
            .filter(|(other, (_, s, d))| {
                *other != idx && *s <= *start && start + dur <= s + d && (d > dur || *other < idx)
            })
            .min_by_key(|(_, (_, _, d))| *d)
            .map(|(other, _)| other);
        if let Some(parent) = parent {
            own[parent] -= dur;
        }
    }
    let mut res = HashMap::new();
    for ((name, _, _), own) in ops.iter().zip(own) {
        *res.entry(name.clone()).or_insert(0) += own;
    }
    res
}

#[test]
fn two_chips_use_the_device_clock_and_agree_with_a_brute_force_count() {
    let doc: Value = serde_json::from_slice(&json_bytes()).expect("JSON");
    let planes = planes();
    let names: Vec<&str> = planes.iter().map(|it| it.plane.as_str()).collect();
    assert_eq!(names, ["/device:TPU:0", "/device:TPU:1"]);
    for (plane, pid) in planes.iter().zip([3, 4]) {
        assert!(plane.device_clock);
        assert_eq!(plane.out_of_order, 0, "{}", plane.plane);
        let ops = device_ops(&doc, pid);
        let expected = self_times(&ops);
        let mut ours: HashMap<&str, i64> = HashMap::new();
        for op in &plane.ops {
            *ours.entry(op.name.as_str()).or_default() += op.self_ps;
        }
        assert_eq!(ours.len(), expected.len(), "{}", plane.plane);
        for (name, self_ps) in &expected {
            assert_eq!(ours[name.as_str()], *self_ps, "{name} on {}", plane.plane);
        }
        let busy: i64 = expected.values().sum();
        assert_eq!(plane.busy_ps, busy);
        let start = ops.iter().map(|it| it.1).min().expect("ops");
        let end = ops.iter().map(|it| it.1 + it.2).max().expect("ops");
        assert_eq!(plane.window_ps, end - start, "no Steps line: the ops' span");
        assert!(!plane.steps_from_line);
        let modules = doc["traceEvents"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["ph"] == "X" && e["pid"] == pid && e["tid"] == 2)
            .count();
        assert_eq!(plane.steps.len(), modules, "one step per module execution");
        assert_eq!(
            plane.modules.iter().map(|it| it.count).sum::<u64>(),
            modules as u64
        );
    }
}

#[test]
fn host_threads_explain_the_gaps_between_programs() {
    let planes = planes();
    let idle = &planes[0].idle;
    assert!(idle.gaps > 0);
    let covered: i64 = idle.rows.iter().map(|it| it.overlap_ps).sum();
    assert!(covered > 0);
    // Each thread's rows never claim more than the gaps' time.
    let mut per_thread: HashMap<u64, i64> = HashMap::new();
    for row in &idle.rows {
        *per_thread.entry(row.tid).or_default() += row.overlap_ps;
        assert!(row.gaps <= idle.gaps);
    }
    for (thread, overlap) in per_thread {
        assert!(
            overlap <= idle.gap_ps,
            "{thread}: {overlap} > {}",
            idle.gap_ps
        );
    }
}
