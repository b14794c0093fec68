//! The session numbers of a run folder, out of documents the caller read:
//! `summary.json`'s device section and the run metadata's workload. One
//! value per side; shown, not tested.

use std::collections::BTreeMap;

/// `devices[]` of summary.json (the device section): per plane, the step
/// time and each category's self time.
pub fn device_numbers(devices: &[serde_json::Value], out: &mut BTreeMap<String, f64>) {
    for device in devices {
        let plane = device
            .get("plane")
            .and_then(|it| it.as_str())
            .unwrap_or("device");
        if let Some(steps) = device.get("steps") {
            for key in ["mean_ms", "p50_ms", "p90_ms"] {
                if let Some(v) = steps.get(key).and_then(|it| it.as_f64()) {
                    out.insert(format!("{plane} step time {key}"), v);
                }
            }
        }
        for key in ["busy_ms", "idle_ms"] {
            if let Some(v) = device.get(key).and_then(|it| it.as_f64()) {
                out.insert(format!("{plane} {key}"), v);
            }
        }
        for cat in device
            .get("categories")
            .and_then(|it| it.as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(v)) = (
                cat.get("name").and_then(|it| it.as_str()),
                cat.get("self_ms").and_then(|it| it.as_f64()),
            ) {
                out.insert(format!("{plane} category {name} self_ms"), v);
            }
        }
    }
}

/// The workload of the run metadata: latency percentiles and throughput.
pub fn workload_numbers(workload: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    if let Some(latency) = workload.get("latency_ms") {
        for key in ["p50", "p90", "p99"] {
            if let Some(v) = latency.get(key).and_then(|it| it.as_f64()) {
                out.insert(format!("request latency {key} ms"), v);
            }
        }
    }
    for key in ["throughput_rps", "output_tokens_per_s"] {
        if let Some(v) = workload.get(key).and_then(|it| it.as_f64()) {
            out.insert(format!("workload {key}"), v);
        }
    }
}

/// The serving object of `summary.json`: throughputs and goodput, one
/// value per side (shown, not tested: each is one number per session).
pub fn serving_numbers(serving: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    let keys = [
        ("request_throughput", "serving request throughput req/s"),
        ("input_throughput", "serving input throughput tok/s"),
        ("output_throughput", "serving output throughput tok/s"),
        ("total_throughput", "serving total throughput tok/s"),
    ];
    for (key, name) in keys {
        if let Some(v) = serving.get(key).and_then(|it| it.as_f64()) {
            out.insert(name.to_owned(), v);
        }
    }
    if let Some(goodput) = serving.get("goodput") {
        if let Some(v) = goodput.get("requests_per_s").and_then(|it| it.as_f64()) {
            out.insert("serving goodput req/s".to_owned(), v);
        }
        if let Some(v) = goodput.get("share").and_then(|it| it.as_f64()) {
            out.insert("serving goodput share".to_owned(), v);
        }
    }
}
