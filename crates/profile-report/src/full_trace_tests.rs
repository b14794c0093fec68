//! The full session trace beside the report: written for an xplane-only
//! profile and for a JSON cut at the cap, never for a complete JSON, in one
//! file or in chunks, and holding every event of the `xplane.pb`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trace_model::{Event, Phase};

use crate::{Request, generate};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

/// A profile folder holding copies of `files` (fixture paths) in one run.
fn profile(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("plugins/profile/2026_11_23_14_34_24");
    std::fs::create_dir_all(&run).unwrap();
    for file in files {
        let src = fixture(file);
        std::fs::copy(&src, run.join(src.file_name().unwrap())).unwrap();
    }
    dir
}

/// Events other than metadata, counted by name.
type Counts = BTreeMap<String, u64>;

fn count_into(counts: &mut Counts) -> impl FnMut(&Event<'_>) + '_ {
    |event: &Event<'_>| {
        if event.phase != Phase::Metadata {
            *counts.entry(event.name.to_owned()).or_default() += 1;
        }
    }
}

fn xplane_counts(path: &Path) -> Counts {
    let mut counts = Counts::new();
    let bytes = std::fs::read(path).unwrap();
    trace_xplane::read(&bytes, &mut count_into(&mut counts)).unwrap();
    counts
}

fn json_counts(paths: &[PathBuf]) -> Counts {
    let mut counts = Counts::new();
    for path in paths {
        let mut file = std::fs::File::open(path).unwrap();
        trace_chrome::read(&mut file, &mut count_into(&mut counts)).unwrap();
    }
    counts
}

fn full_trace_files(dir: &Path) -> Vec<PathBuf> {
    let mut res: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|it| it.unwrap().path())
        .filter(|it| {
            it.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("trace-full")
        })
        .collect();
    res.sort();
    res
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn an_xplane_only_profile_gets_the_whole_session_in_one_file_or_chunks() {
    const XPLANE: &str =
        "tpu-synth/plugins/profile/2025_11_23_14_00_00/t1v-n-52e6b438-w-0.xplane.pb";
    let dir = profile(&[XPLANE]);
    let expected = xplane_counts(&fixture(XPLANE));
    let total: u64 = expected.values().sum();
    assert!(total > 100, "{total}");

    let outcome = generate(&Request::for_run_folder(dir.path())).unwrap();
    let files = full_trace_files(dir.path());
    assert_eq!(files, [dir.path().join("trace-full.json.gz")]);
    assert!(outcome.written.starts_with(&files));
    assert_eq!(json_counts(&files), expected);
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        report.contains("wrote the whole session (") && report.contains("as `trace-full.json.gz`"),
        "{report}"
    );
    assert!(report.contains("--split-events 1000000"), "{report}");
    assert_eq!(summary(dir.path())["full_trace"]["events"], total);

    // Smaller chunks: three numbered files replace the single one.
    let mut request = Request::for_run_folder(dir.path());
    request.full_trace_chunk_events = total / 3 + 1;
    generate(&request).unwrap();
    let files = full_trace_files(dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|it| it.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "trace-full.000.json.gz",
            "trace-full.001.json.gz",
            "trace-full.002.json.gz"
        ]
    );
    assert_eq!(json_counts(&files), expected);
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("as 3 files of at most"), "{report}");

    // Asked not to, it writes none and leaves the existing ones alone.
    request.full_trace = false;
    generate(&request).unwrap();
    assert_eq!(full_trace_files(dir.path()), files);
    assert!(summary(dir.path()).get("full_trace").is_none());
}

#[test]
fn a_json_cut_at_the_cap_gets_the_whole_session_from_the_xplane() {
    const RUN: &str = "jax-cpu-small/plugins/profile/2026_11_23_14_34_24";
    let json = format!("{RUN}/vm.trace.json.gz");
    let xplane = format!("{RUN}/vm.xplane.pb");
    let dir = profile(&[&json, &xplane]);
    let complete = json_counts(&[fixture(&json)]);
    let mut json_complete = 0;
    let mut file = std::fs::File::open(fixture(&json)).unwrap();
    trace_chrome::read(&mut file, &mut |event: &Event<'_>| {
        json_complete += u64::from(event.phase == Phase::Complete);
    })
    .unwrap();
    assert!(!complete.is_empty());

    // The JSON holds one event fewer than the cap: complete, nothing more.
    let mut request = Request::for_run_folder(dir.path());
    request.json_event_cap = json_complete + 1;
    generate(&request).unwrap();
    assert!(full_trace_files(dir.path()).is_empty());
    assert_eq!(summary(dir.path())["truncated"], false);

    // Exactly the cap: cut short, so the report reads the xplane.pb and the
    // whole session is written from it.
    request.json_event_cap = json_complete;
    generate(&request).unwrap();
    let files = full_trace_files(dir.path());
    assert_eq!(files, [dir.path().join("trace-full.json.gz")]);
    assert_eq!(json_counts(&files), xplane_counts(&fixture(&xplane)));
    let summary = summary(dir.path());
    assert_eq!(summary["truncated"], true);
    assert_eq!(summary["format"], "xplane");
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        report.contains("JAX's `trace.json.gz` stops at 1,000,000 events"),
        "{report}"
    );
}
