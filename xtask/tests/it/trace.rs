//! `cargo xtask trace` end to end: the real binary writes the small real
//! profile's xplane.pb as Chrome trace JSON, and `trace-chrome` reads it
//! back into the same per-name counts and totals as the XPlane itself.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trace_analysis::{Analysis, Analyzer};
use trace_model::{Event, Phase};

const SMALL: &str = "fixtures/jax-cpu-small";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn trace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("trace")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the xtask binary runs")
}

fn small_xplane() -> PathBuf {
    let dir = repo().join(SMALL).join("plugins/profile");
    let run = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    run.join("vm.xplane.pb")
}

/// Per name: (count, total ps), complete events only.
fn per_name(analysis: &Analysis) -> BTreeMap<String, (u64, i128)> {
    analysis
        .ops
        .iter()
        .map(|op| (op.name.clone(), (op.count, op.total_ps)))
        .collect()
}

fn from_xplane() -> Analysis {
    let bytes = std::fs::read(small_xplane()).unwrap();
    let mut analyzer = Analyzer::buffered();
    trace_xplane::read(&bytes, &mut analyzer).unwrap();
    analyzer.finish()
}

fn from_json(path: &Path) -> Analysis {
    let mut analyzer = Analyzer::buffered();
    let mut file = std::fs::File::open(path).unwrap();
    trace_chrome::read(&mut file, &mut analyzer).unwrap();
    analyzer.finish()
}

#[test]
fn the_whole_xplane_reads_back_the_same() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("session.json.gz");
    let output = trace(&[SMALL, "--out", file.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let want = from_xplane();
    let got = from_json(&file);
    assert!(want.op_events > 10_000, "{}", want.op_events);
    assert_eq!(per_name(&got), per_name(&want));
    assert_eq!(got.total_events, want.total_events);
    assert_eq!(got.processes, want.processes);
    assert_eq!(got.span, want.span);
    // Self time too: same nesting, same threads.
    let self_times = |a: &Analysis| -> BTreeMap<String, i128> {
        a.ops
            .iter()
            .map(|op| (op.name.clone(), op.self_ps))
            .collect()
    };
    assert_eq!(self_times(&got), self_times(&want));
    // Nothing but the output and the folder's record of it is left.
    let mut names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|it| it.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, [".sglprof-outputs.json", "session.json.gz"]);

    // The same as plain JSON, and args survive: every XLA op keeps its
    // `hlo_op` and `long_name`.
    let plain = out.path().join("session.json");
    assert!(
        trace(&[SMALL, "--out", plain.to_str().unwrap()])
            .status
            .success()
    );
    let text = std::fs::read_to_string(&plain).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    assert_eq!(events.len() as u64, want.total_events);
    assert!(events.iter().any(|e| e["args"]["hlo_op"].is_string()));
}

#[test]
fn split_chunks_add_up_and_each_has_the_names() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("s.json.gz");
    let output = trace(&[
        SMALL,
        "--out",
        file.to_str().unwrap(),
        "--split-events",
        "20000",
    ]);
    assert!(output.status.success());
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|it| it.unwrap().path())
        .filter(|it| !it.ends_with(".sglprof-outputs.json"))
        .collect();
    chunks.sort();
    let want = from_xplane();
    let expected_chunks = want.op_events.div_ceil(20_000);
    assert_eq!(chunks.len() as u64, expected_chunks, "{chunks:?}");
    assert_eq!(chunks[0], out.path().join("s.000.json.gz"));
    let mut total: BTreeMap<String, (u64, i128)> = BTreeMap::new();
    for chunk in &chunks {
        let got = from_json(chunk);
        assert_eq!(got.processes, want.processes, "{}", chunk.display());
        assert!(got.op_events <= 20_000);
        for (name, (count, ps)) in per_name(&got) {
            let acc = total.entry(name).or_default();
            acc.0 += count;
            acc.1 += ps;
        }
    }
    assert_eq!(total, per_name(&want));
}

#[test]
fn windows_and_threads_select_events() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("w.json");
    let output = trace(&[
        SMALL,
        "--out",
        file.to_str().unwrap(),
        "--from-ms",
        "100",
        "--to-ms",
        "200",
    ]);
    assert!(output.status.success());
    let mut n = 0;
    let mut sink = |event: &Event<'_>| {
        if event.phase == Phase::Complete {
            n += 1;
            let (ts, dur) = (event.ts.unwrap(), event.dur.unwrap());
            assert!(ts <= 200_000_000_000 && (ts + dur > 100_000_000_000 || ts >= 100_000_000_000));
        }
    };
    trace_chrome::read(&mut std::fs::File::open(&file).unwrap(), &mut sink).unwrap();
    assert!(n > 0 && n < from_xplane().op_events);

    // A pattern no thread has: names only.
    let output = trace(&[
        SMALL,
        "--out",
        file.to_str().unwrap(),
        "--threads",
        "no such thread",
    ]);
    assert!(output.status.success());
    let got = from_json(&file);
    assert_eq!(got.op_events, 0);
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let out = tempfile::tempdir().unwrap();
    let bad = out.path().join("bad.xplane.pb");
    std::fs::write(&bad, b"\x0a\x05ab").unwrap();
    let file = out.path().join("x.json.gz");
    let output = trace(&[bad.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("bad.xplane.pb: truncated protobuf"),
        "{stderr}"
    );
    let names: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "only the input is left");

    let output = trace(&[SMALL, "--out", file.to_str().unwrap(), "--steps", "3..1"]);
    assert!(!output.status.success());
}
