//! `cargo xtask report` end to end: the real binary on real traces made by a
//! real sglang-jax server, checked against an independent computation, the
//! XPlane of the same run, committed snapshots, and bad inputs.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary, git and cargo.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const SMALL: &str = "fixtures/jax-cpu-small";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("report")
        .args(args)
        .arg("--out")
        .arg(out)
        .current_dir(repo())
        .output()
        .expect("the xtask binary runs")
}

fn report(args: &[&str]) -> (tempfile::TempDir, Value, String) {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(args, out.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = std::fs::read_to_string(out.path().join("summary.json")).unwrap();
    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    (out, serde_json::from_str(&summary).unwrap(), markdown)
}

fn small_json() -> PathBuf {
    let dir = repo().join(SMALL).join("plugins/profile");
    let run = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    run.join("vm.trace.json.gz")
}

/// The numbers recomputed with serde_json's DOM and f64 microseconds: no
/// code shared with the streaming reader or the analyzer.
#[test]
fn numbers_match_an_independent_computation() {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(small_json()).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    let mut phases: BTreeMap<String, u64> = BTreeMap::new();
    let mut ops: BTreeMap<String, (u64, f64, f64)> = BTreeMap::new();
    let (mut first, mut last) = (f64::MAX, f64::MIN);
    for event in events {
        let ph = event
            .get("ph")
            .and_then(Value::as_str)
            .unwrap_or("(none)")
            .to_owned();
        *phases.entry(ph.clone()).or_default() += 1;
        let Some(ts) = event.get("ts").and_then(Value::as_f64) else {
            continue;
        };
        let dur = event.get("dur").and_then(Value::as_f64).unwrap_or(0.0);
        first = first.min(ts);
        last = last.max(ts + dur);
        if ph == "X" {
            let entry = ops
                .entry(event["name"].as_str().unwrap().to_owned())
                .or_default();
            entry.0 += 1;
            entry.1 += dur;
            entry.2 = entry.2.max(dur);
        }
    }

    let (_out, summary, _) = report(&[SMALL, "--top", "100000"]);
    assert_eq!(summary["total_events"], events.len() as u64);
    assert_eq!(summary["unique_operations"], ops.len() as u64);
    let phases_json: BTreeMap<String, u64> =
        serde_json::from_value(summary["phases"].clone()).unwrap();
    assert_eq!(phases_json, phases);
    let traced = summary["traced_time_ms"].as_f64().unwrap();
    assert!(
        (traced - (last - first) / 1e3).abs() < 1e-6,
        "{traced} vs {}",
        (last - first) / 1e3
    );
    let top = summary["top_operations"].as_array().unwrap();
    assert_eq!(top.len(), ops.len());
    for op in top {
        let name = op["trace_name"].as_str().unwrap();
        let (count, total_us, max_us) = ops[name];
        assert_eq!(op["count"], count, "{name}");
        assert!(
            (op["total_ms"].as_f64().unwrap() - total_us / 1e3).abs() < 1e-6,
            "{name}"
        );
        assert!(
            (op["max_ms"].as_f64().unwrap() - max_us / 1e3).abs() < 1e-6,
            "{name}"
        );
        assert_eq!(
            op["name"].as_str().unwrap(),
            name.strip_prefix('$').unwrap_or(name)
        );
    }
    // Sorted by total descending, then name.
    for pair in top.windows(2) {
        let (a, b) = (
            pair[0]["total_ms"].as_f64().unwrap(),
            pair[1]["total_ms"].as_f64().unwrap(),
        );
        assert!(
            a > b || (a == b && pair[0]["trace_name"].as_str() < pair[1]["trace_name"].as_str())
        );
    }
}

/// The JSON and the XPlane of one run give the same operations.
#[test]
fn json_and_xplane_of_one_run_agree() {
    let (_a, json, _) = report(&[SMALL, "--top", "100000"]);
    let (_b, xplane, markdown) = report(&[SMALL, "--top", "100000", "--prefer-xplane"]);
    assert_eq!(json["format"], "chrome-json");
    assert_eq!(xplane["format"], "xplane");
    assert!(
        markdown.contains("XPlane planes: `/host:metadata`, `/host:CPU`"),
        "{markdown}"
    );
    assert!(markdown.contains("There is no device plane"), "{markdown}");
    let by_name = |summary: &Value| -> BTreeMap<String, (u64, f64)> {
        summary["top_operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| {
                let name = op["trace_name"].as_str().unwrap().to_owned();
                (
                    name,
                    (
                        op["count"].as_u64().unwrap(),
                        op["total_ms"].as_f64().unwrap(),
                    ),
                )
            })
            .collect()
    };
    let (json_ops, xplane_ops) = (by_name(&json), by_name(&xplane));
    assert_eq!(
        json_ops.keys().collect::<Vec<_>>(),
        xplane_ops.keys().collect::<Vec<_>>()
    );
    for (name, (count, total)) in &json_ops {
        let (x_count, x_total) = xplane_ops[name];
        assert_eq!(*count, x_count, "{name}");
        assert!(
            (total - x_total).abs() < 0.01,
            "{name}: {total} vs {x_total}"
        );
    }
}

#[test]
fn report_snapshot_on_a_real_profile() {
    let (_out, summary, markdown) = report(&[SMALL, "--top", "12"]);
    insta::assert_snapshot!("small_report_md", markdown);
    insta::assert_snapshot!(
        "small_summary_json",
        serde_json::to_string_pretty(&summary).unwrap()
    );
}

/// Runs the report on `input` and expects a one-line error containing
/// `expect`, a failure exit code and no output files.
#[track_caller]
fn check_bad(input: &Path, expect: &str) {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&[input.to_str().unwrap()], out.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(expect), "expected `{expect}` in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "outputs were written"
    );
}

fn profile_dir_with(file: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("plugins/profile/2026_01_01_00_00_00");
    std::fs::create_dir_all(&run).unwrap();
    let path = run.join(file);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let real_gz = std::fs::read(small_json()).unwrap();

    let (dir, path) = profile_dir_with("vm.trace.json.gz", b"");
    check_bad(dir.path(), &format!("{}: empty input", path.display()));

    let (dir, path) = profile_dir_with("vm.trace.json.gz", &real_gz[..real_gz.len() / 2]);
    check_bad(
        dir.path(),
        &format!("{}: gzip stream is truncated", path.display()),
    );

    let mut corrupt = real_gz.clone();
    for byte in &mut corrupt[100..200] {
        *byte ^= 0x5a;
    }
    let (dir, path) = profile_dir_with("vm.trace.json.gz", &corrupt);
    check_bad(
        dir.path(),
        &format!("{}: gzip stream is corrupt", path.display()),
    );

    let (dir, path) = profile_dir_with("vm.trace.json", b"{\"traceEvents\": [{\"ph\": \"X\",]}");
    check_bad(
        dir.path(),
        &format!("{}: invalid JSON at byte", path.display()),
    );

    let (dir, path) = profile_dir_with("vm.trace.json", b"[1, 2");
    check_bad(dir.path(), &path.display().to_string());

    let (dir, path) = profile_dir_with("vm.xplane.pb", b"{\"traceEvents\": []}");
    check_bad(dir.path(), &format!("{}: not an XSpace", path.display()));

    let (dir, _) = profile_dir_with("notes.txt", b"hello");
    check_bad(dir.path(), "no JAX traces found");

    check_bad(Path::new("/nonexistent/sglprof"), "no such file or folder");
}

#[test]
fn capped_json_without_xplane_warns() {
    // Exactly JAX's 1,000,000 complete events.
    let mut text = String::with_capacity(60_000_000);
    text.push_str("{\"traceEvents\":[");
    for idx in 0..1_000_000u32 {
        if idx > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            "{{\"ph\":\"X\",\"pid\":1,\"tid\":1,\"ts\":{idx},\"dur\":1,\"name\":\"op\"}}"
        ));
    }
    text.push_str("]}");
    let (dir, _) = profile_dir_with("vm.trace.json", text.as_bytes());
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&[dir.path().to_str().unwrap()], out.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("JAX's export cap"), "{stderr}");
    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        markdown.contains("> **Warning:** the `trace.json.gz` holds 1,000,000 complete events")
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["truncated"], true);

    // With an xplane.pb beside it, that file is analysed instead.
    let run = dir.path().join("plugins/profile/2026_01_01_00_00_00");
    let small_xplane = small_json().with_file_name("vm.xplane.pb");
    std::fs::copy(small_xplane, run.join("vm.xplane.pb")).unwrap();
    let (_o, summary, markdown) = report(&[dir.path().to_str().unwrap()]);
    assert_eq!(summary["format"], "xplane");
    assert_eq!(summary["truncated"], true);
    assert!(summary["json_share_of_session"].as_f64().unwrap() > 0.0);
    assert!(
        markdown.contains("The numbers below come from the `xplane.pb`"),
        "{markdown}"
    );
}

#[test]
fn a_line_break_in_a_name_keeps_the_error_on_one_line() {
    let (dir, path) = profile_dir_with("vm\n\u{1b}[2Jx.trace.json.gz", b"");
    let shown = path
        .display()
        .to_string()
        .replace('\n', "\\n")
        .replace('\u{1b}', "\\u{1b}");
    check_bad(dir.path(), &format!("{shown}: empty input"));
}
