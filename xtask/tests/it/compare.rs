//! `cargo xtask compare` end to end: the real binary on the real CPU
//! profile of `fixtures/jax-cpu-small`, against itself, against a copy in
//! which one operation was made 1.5 times slower, on bad input, and two real
//! sessions of the same configuration on this machine's shared server.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn small() -> PathBuf {
    repo().join("fixtures/jax-cpu-small")
}

fn compare(args: &[&Path], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("compare")
        .args(args)
        .arg("--out")
        .arg(out)
        .current_dir(repo())
        .output()
        .expect("the xtask binary runs")
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's trace as a JSON document.
pub(crate) fn fixture_trace() -> Value {
    let run = small().join("plugins/profile/2026_11_23_14_34_24");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(run.join("vm.trace.json.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_profile_against_itself_changes_nothing() {
    let out = tempfile::tempdir().unwrap();
    let output = compare(&[&small(), &small()], out.path());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = read_json(&out.path().join("compare.json"));
    assert_eq!(json["verdict"], "no_change");
    let ops = json["operations"].as_array().unwrap();
    assert!(ops.len() > 50, "{} operations", ops.len());
    for op in ops {
        assert_eq!(op["verdict"], "same", "{op}");
        assert_eq!(op["change"].as_f64(), Some(0.0), "{op}");
    }
    let md = std::fs::read_to_string(out.path().join("compare.md")).unwrap();
    assert!(md.starts_with("# Profile comparison\n\nVerdict: **No change**"));
    assert!(md.contains("No operation changed significantly"));
    // A bare profile folder has no session numbers, and the report says so.
    assert!(md.contains("request latency and throughput not compared"));
    assert!(out.path().join("compare.svg").is_file());
}

/// Writes into `dest` a copy of the fixture's profile in which one
/// operation's durations are 1.5 times longer; returns its name.
pub(crate) fn slowed_copy(dest: &Path) -> String {
    let mut doc = fixture_trace();
    // The operation with the largest total time among those with at least
    // 200 occurrences, each lasting at least a microsecond: 1.5 times its
    // durations is a real change, well beyond the tracer's resolution, and
    // enough occurrences for the test to tell it after adjusting for the
    // ~1,250 operations compared (with 50 heavy-tailed occurrences a 1.5x
    // change gives p = 0.013, which no adjustment for 1,250 tests keeps).
    let mut per_name: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
    for event in doc["traceEvents"].as_array().unwrap() {
        if event["ph"] == "X" {
            let dur = event["dur"].as_f64().unwrap();
            let entry = per_name
                .entry(event["name"].as_str().unwrap().to_owned())
                .or_insert((0, f64::MAX, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.min(dur);
            entry.2 += dur;
        }
    }
    let (target, (count, _, _)) = per_name
        .iter()
        .filter(|(_, (count, min, _))| *count >= 200 && *min >= 1.0)
        .max_by(|a, b| a.1.2.total_cmp(&b.1.2))
        .unwrap();
    let (target, count) = (target.clone(), *count);
    assert!(count >= 200, "{target}: {count}");
    for event in doc["traceEvents"].as_array_mut().unwrap() {
        if event["ph"] == "X" && event["name"] == target.as_str() {
            let dur = event["dur"].as_f64().unwrap();
            // Three decimals, as JAX writes them.
            let slower = (dur * 1.5 * 1000.0).round() / 1000.0;
            event["dur"] = serde_json::json!(slower);
        }
    }
    let run = dest.join("plugins/profile/2026_11_23_14_34_24");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("vm.trace.json"),
        serde_json::to_string(&doc).unwrap(),
    )
    .unwrap();
    target
}

#[test]
fn one_operation_made_slower_is_the_only_one_flagged() {
    let copy = tempfile::tempdir().unwrap();
    let target = slowed_copy(copy.path());
    let out = tempfile::tempdir().unwrap();
    let output = compare(&[&small(), copy.path()], out.path());
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = read_json(&out.path().join("compare.json"));
    assert_eq!(json["verdict"], "regression");
    let flagged: Vec<(&str, &str)> = json["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["verdict"] != "same")
        .map(|op| {
            (
                op["name"].as_str().unwrap(),
                op["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(flagged, [(target.as_str(), "slower")]);
    let op = &json["operations"][0];
    assert_eq!(op["name"], target.as_str());
    let change = op["change"].as_f64().unwrap();
    assert!((change - 0.5).abs() < 0.01, "{change}");
    let [lo, hi] = [
        op["ci"]["median"][0].as_f64(),
        op["ci"]["median"][1].as_f64(),
    ];
    assert!(lo.unwrap() <= change && change <= hi.unwrap(), "{op}");
    assert!(op["p_adjusted"].as_f64().unwrap() < 0.05);
    let md = std::fs::read_to_string(out.path().join("compare.md")).unwrap();
    assert!(md.starts_with("# Profile comparison\n\nVerdict: **Regression**"));
    assert!(md.contains("1 slower, 0 faster"));
    let svg = std::fs::read_to_string(out.path().join("compare.svg")).unwrap();
    assert!(svg.contains("+50.0%"));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("missing");
    let output = compare(&[&small(), &missing], out.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no such file or folder"),
        "{stderr}"
    );
    // No traces at all.
    let empty = tempfile::tempdir().unwrap();
    let output = compare(&[&small(), empty.path()], out.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no JAX traces found"));
    // Nothing was written.
    assert!(!out.path().join("compare.json").exists());
    assert!(!out.path().join("compare.md").exists());
    // A malformed threshold.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["compare", "a", "b", "--threshold", "five"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Two real sessions of one configuration on this machine's CPU, one after
/// the other on the test binary's shared server: whatever else the machine
/// does meanwhile (on a 2-core CI runner, other jobs; here, other tests),
/// the pair must not read as a regression. Changes that a busy machine or
/// a shift of the whole session explains come out `inconclusive` (exit 0,
/// said on stderr), with the reason recorded.
#[test]
fn two_local_sessions_of_one_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--endpoint",
        "generate",
        "--requests",
        "8",
        "--concurrency",
        "2",
        "--max-new-tokens",
        "4",
    ];
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let server = crate::support::shared();
    for run in [&a, &b] {
        let output = server.attach(run, &args);
        assert!(output.status.success(), "profile --attach failed");
        // What compare needs beyond the traces: per-request latencies and
        // the machine's state during the profiled window.
        let latencies = read_json(&run.join("inputs/latencies.json"));
        assert_eq!(latencies["latencies_ms"].as_array().unwrap().len(), 8);
        let machine = read_json(&run.join("inputs/machine.json"));
        assert!(machine["profiled"]["others_cores"].as_f64().unwrap() >= 0.0);
        assert!(machine["profiled"]["seconds"].as_f64().unwrap() > 0.0);
    }
    drop(server);
    let out = tempfile::tempdir().unwrap();
    let output = compare(&[&a, &b], out.path());
    let json = read_json(&out.path().join("compare.json"));
    let slower: Vec<&Value> = json["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["verdict"] == "slower")
        .collect();
    eprintln!(
        "two sessions: verdict {} (changes alone: {}), {} slower, shifts {}, caveats {}, machine {} / {}",
        json["verdict"],
        json["changes_verdict"],
        slower.len(),
        json["shifts"],
        json["caveats"],
        json["baseline_machine"],
        json["candidate_machine"]
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "false regression: {slower:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(json["verdict"], "regression");
    if json["verdict"] == "inconclusive" {
        assert!(!json["caveats"].as_array().unwrap().is_empty());
        assert!(String::from_utf8_lossy(&output.stderr).contains("WARNING: inconclusive"));
    }
    // Latency is tested per request; throughput is set side by side.
    assert_eq!(json["latency"][0]["name"], "request latency");
    assert_eq!(json["latency"][0]["baseline_count"], 8);
    let metrics: Vec<&str> = json["session"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["metric"].as_str().unwrap())
        .collect();
    assert!(metrics.contains(&"workload throughput_rps"), "{metrics:?}");
    assert!(!metrics.contains(&"request latency p50 ms"), "{metrics:?}");
    // The serving latencies of the records, tested per request too (the
    // answers were not streamed, so there is no TTFT, ITL or TPOT), and
    // the serving throughputs side by side.
    let e2e = json["latency"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == "E2E")
        .expect("an E2E row");
    assert_eq!(e2e["baseline_count"], 8);
    assert!(e2e["p_value"].as_f64().is_some() && e2e["p_adjusted"].as_f64().is_some());
    assert!(
        metrics.contains(&"serving request throughput req/s"),
        "{metrics:?}"
    );
}
