//! The library on a copy of the small real fixture: what it refuses, what it
//! never overwrites, and that its outputs come as a pair.

use std::path::{Path, PathBuf};

use session_report::RunMetadata;

use crate::{Error, Request, generate, publish};

const RUN: &str = "2026_11_23_14_34_24";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A run folder holding the small JAX profile, the raw py-spy fixture, and
/// run metadata naming `pyspy` as its py-spy input.
fn run_folder(pyspy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir
        .path()
        .join("artifacts/jax-profile/plugins/profile")
        .join(RUN);
    std::fs::create_dir_all(&traces).unwrap();
    let src = fixture().join("jax-cpu-small/plugins/profile").join(RUN);
    std::fs::copy(
        src.join("vm.trace.json.gz"),
        traces.join("vm.trace.json.gz"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("artifacts/pyspy")).unwrap();
    std::fs::copy(
        fixture().join("pyspy/scheduler.raw.txt"),
        dir.path().join("artifacts/pyspy/raw.txt"),
    )
    .unwrap();
    let mut meta = RunMetadata::new();
    meta.pyspy_raw = Some(pyspy.to_owned());
    std::fs::create_dir_all(dir.path().join("inputs")).unwrap();
    std::fs::write(dir.path().join("inputs/run_metadata.json"), meta.to_json()).unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut res: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|it| it.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    res.sort();
    res
}

#[test]
fn a_run_folder_gets_its_outputs_with_its_pyspy_section() {
    let dir = run_folder("artifacts/pyspy/raw.txt");
    let outcome = generate(&Request::for_run_folder(dir.path())).unwrap();
    // The raw py-spy output also gives the flamegraph, published with the
    // report and the summary.
    assert_eq!(outcome.written.len(), 4);
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("artifacts/pyspy/raw.txt"), "{report}");
    assert!(report.contains("pyspy-flamegraph.svg"), "{report}");
    assert!(dir.path().join("summary.json").is_file());
    let svg = std::fs::read_to_string(dir.path().join("pyspy-flamegraph.svg")).unwrap();
    assert!(svg.starts_with("<?xml") || svg.contains("<svg"), "{svg}");
    assert_eq!(
        names(dir.path()),
        [
            ".sglprof-outputs.json",
            "artifacts",
            "inputs",
            "pyspy-flamegraph.svg",
            "report.html",
            "report.md",
            "summary.json"
        ]
    );
    // The page draws one flamegraph per sampled process.
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.matches(r#"class="plot flamegraph""#).count() >= 2);
}

#[test]
fn pyspy_inputs_outside_the_run_folder_are_refused() {
    let outside = tempfile::NamedTempFile::new().unwrap();
    for name in [
        "/dev/zero".to_owned(),
        outside.path().display().to_string(),
        "../raw.txt".to_owned(),
        "artifacts/../../raw.txt".to_owned(),
        "artifacts/link.txt".to_owned(),
        "linkdir/raw.txt".to_owned(),
        "artifacts/pyspy".to_owned(),
        String::new(),
    ] {
        let dir = run_folder(&name);
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("artifacts/link.txt")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("artifacts/pyspy"),
            dir.path().join("linkdir"),
        )
        .unwrap();
        let err = generate(&Request::for_run_folder(dir.path())).unwrap_err();
        assert!(matches!(err, Error::PySpyOutside { .. }), "{name}: {err}");
        assert!(err.to_string().contains("not a regular file inside"));
        assert!(!dir.path().join("report.md").exists());
    }
}

#[test]
fn planted_symlinks_are_refused_not_followed() {
    let victim = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(victim.path(), "precious").unwrap();
    // A link at a target is not an earlier output: refused, and nothing is
    // written through it. A link with a temporary file's name is stray and
    // removed.
    for name in ["report.md", "summary.json"] {
        let dir = run_folder("artifacts/pyspy/raw.txt");
        std::os::unix::fs::symlink(victim.path(), dir.path().join(name)).unwrap();
        std::os::unix::fs::symlink(victim.path(), dir.path().join(".sglprof.report.md.x.tmp"))
            .unwrap();
        let err = generate(&Request::for_run_folder(dir.path())).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    why: crate::outputs::Refusal::NotOurs,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(victim.path()).unwrap(), "precious");
        assert!(!dir.path().join(".sglprof.report.md.x.tmp").exists());
        let meta = std::fs::symlink_metadata(dir.path().join(name)).unwrap();
        assert!(meta.file_type().is_symlink(), "{name}");
    }
}

#[test]
fn only_earlier_outputs_are_replaced() {
    let dir = run_folder("artifacts/pyspy/raw.txt");
    generate(&Request::for_run_folder(dir.path())).unwrap();
    // Ours, unchanged: replaced.
    generate(&Request::for_run_folder(dir.path())).unwrap();
    // Someone else's file under the name: refused, left as it is.
    std::fs::write(dir.path().join("summary.json"), "{}").unwrap();
    let err = generate(&Request::for_run_folder(dir.path())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: {}",
            dir.path().join("summary.json").display(),
            crate::outputs::Refusal::NotOurs
        )
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        "{}"
    );
}

#[test]
fn an_input_is_never_an_output() {
    // An input under an output's name (or a hard link to one) is refused,
    // even when it is an earlier output.
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), &[("a.json", b"1")]).unwrap();
    std::fs::hard_link(dir.path().join("a.json"), dir.path().join("b.json")).unwrap();
    for input in ["a.json", "b.json"] {
        let inputs = [dir.path().join(input)];
        let set = crate::OutputSet::begin(crate::Destination {
            dir: dir.path(),
            inputs: &inputs,
            files_named: true,
        })
        .unwrap();
        let err = set.claim("a.json").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    why: crate::outputs::Refusal::Input,
                    ..
                }
            ),
            "{err}"
        );
    }
    // Written into a JAX run folder: refused before anything is written.
    let src = fixture().join("jax-cpu-small/plugins/profile").join(RUN);
    let traces = dir.path().join("plugins/profile").join(RUN);
    std::fs::create_dir_all(&traces).unwrap();
    std::fs::copy(
        src.join("vm.trace.json.gz"),
        traces.join("vm.trace.json.gz"),
    )
    .unwrap();
    let mut request = Request::for_run_folder(&traces);
    let err = generate(&request).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("beside the profiler's own files; choose another --out"),
        "{err}"
    );
    assert_eq!(names(&traces), ["vm.trace.json.gz"]);
    // The default folder for such an input is the profile's logdir.
    request.out_dir = Request::default_out_dir(&traces);
    assert_eq!(request.out_dir, dir.path());
    generate(&request).unwrap();
    assert_eq!(names(&traces), ["vm.trace.json.gz"]);
}

#[test]
fn concurrent_writers_publish_whole_pairs() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..100 {
        std::thread::scope(|scope| {
            for id in ["first", "second", "third"] {
                let dir = dir.path();
                scope.spawn(move || {
                    publish(dir, &[("a", id.as_bytes()), ("b", id.as_bytes())]).unwrap();
                });
            }
        });
        let a = std::fs::read(dir.path().join("a")).unwrap();
        let b = std::fs::read(dir.path().join("b")).unwrap();
        assert_eq!(a, b);
    }
    assert_eq!(names(dir.path()), [".sglprof-outputs.json", "a", "b"]);
}

#[test]
fn missing_inputs_and_choices_are_named() {
    let err = generate(&Request::for_run_folder(Path::new("/nonexistent/run"))).unwrap_err();
    assert_eq!(err.to_string(), "/nonexistent/run: no such file or folder");
    let dir = run_folder("artifacts/pyspy/raw.txt");
    let mut request = Request::for_run_folder(dir.path());
    request.run = Some("2020".into());
    let err = generate(&request).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(&format!("no run named 2020 (found: {RUN})"))
    );
    request.run = None;
    request.host = Some("tpu".into());
    let err = generate(&request).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(&format!("run {RUN} has no host named tpu"))
    );
    let empty = tempfile::tempdir().unwrap();
    let err = generate(&Request::for_run_folder(empty.path())).unwrap_err();
    assert!(matches!(err, Error::NoTraces(_)), "{err}");
}

#[test]
fn run_dates() {
    assert_eq!(
        crate::discover::date_from_run(RUN).as_deref(),
        Some("2026-11-23")
    );
    assert_eq!(crate::discover::date_from_run("latest"), None);
}

#[test]
fn folder_names_in_the_suggested_commands_are_quoted() {
    let root = tempfile::tempdir().unwrap();
    let hostile = root.path().join("x;echo $(id)");
    let traces = hostile.join("plugins/profile").join(RUN);
    std::fs::create_dir_all(&traces).unwrap();
    let src = fixture().join("jax-cpu-small/plugins/profile").join(RUN);
    std::fs::copy(
        src.join("vm.trace.json.gz"),
        traces.join("vm.trace.json.gz"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut request = Request::for_run_folder(&hostile);
    request.out_dir = out.path().to_path_buf();
    generate(&request).unwrap();
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    let quoted = format!("'{}'", hostile.display());
    assert!(
        report.contains(&format!("tensorboard --logdir {quoted} --port")),
        "{report}"
    );
    assert!(
        report.contains(&format!("xprof --logdir={quoted} ")),
        "{report}"
    );
    assert!(!report.contains(&format!("--logdir {} ", hostile.display())));
}

/// A run with two hosts (the second a copy of the first, as two simulated
/// workers would write): the report analyses the first and gets one
/// section per host, each with the numbers of its own file.
#[test]
fn several_hosts_get_a_section_each() {
    let dir = run_folder("artifacts/pyspy/raw.txt");
    let traces = dir
        .path()
        .join("artifacts/jax-profile/plugins/profile")
        .join(RUN);
    std::fs::copy(
        traces.join("vm.trace.json.gz"),
        traces.join("vm-worker-1.trace.json.gz"),
    )
    .unwrap();
    let outcome = generate(&Request::for_run_folder(dir.path())).unwrap();
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| matches!(n, crate::Note::SeveralHosts { count: 2, .. }))
    );
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let hosts = report.find("## Hosts").expect("a Hosts section");
    assert!(hosts < report.find("## How to View Traces").unwrap());
    let analysis = crate::analyse_json(&traces.join("vm.trace.json.gz")).unwrap();
    for host in ["vm", "vm-worker-1"] {
        assert!(report.contains(&format!("\n### Host {host}\n")), "{report}");
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {host} | `artifacts/")))
            .unwrap_or_else(|| panic!("no row for {host} in\n{report}"));
        assert!(
            row.contains(&format!(
                "| {} | {} |",
                analysis.total_events, analysis.op_events
            )),
            "{row}"
        );
    }
}
