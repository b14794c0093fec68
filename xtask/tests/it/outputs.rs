//! The outputs of `report`, `compare` and `trace`, probed as a hostile user
//! and a crashing machine would: an output path that is an input, a JAX
//! profile's own file or a file sglprof did not write is refused; a crash
//! (or an I/O error) at any rename leaves the old set or the new one; a
//! full disk is named in the error; files follow the umask.
//!
//! Crashes and errors are injected with strace (`-e inject`): KILL or EIO
//! at the Nth rename, ENOSPC at the first fsync. Without strace the tests
//! say so in one line, and fail under `CI=true` (`.ci/run` installs it).

#![allow(clippy::disallowed_methods)] // Runs the xtask binary and strace.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RUN: &str = "2026_11_23_14_34_24";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether the program `name` can be run; when it cannot, says so in one
/// line, and fails under `CI=true`, where `.ci/run` installs it.
pub(crate) fn have_tool(name: &str, package: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|it| it.status.success());
    if !found {
        let line =
            format!("{name} is not installed (Debian package `{package}`): this test cannot run");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{line}");
        eprintln!("skipped: {line}");
    }
    found
}

/// The small real profile copied into `root/plugins/profile/<run>/`,
/// without its trace JSON when `xplane_only` (the report then writes the
/// whole session as `trace-full.json.gz` too).
fn profile(root: &Path, xplane_only: bool) -> PathBuf {
    let src = repo()
        .join("fixtures/jax-cpu-small/plugins/profile")
        .join(RUN);
    let run = root.join("plugins/profile").join(RUN);
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(src.join("vm.xplane.pb"), run.join("vm.xplane.pb")).unwrap();
    if !xplane_only {
        std::fs::copy(src.join("vm.trace.json.gz"), run.join("vm.trace.json.gz")).unwrap();
    }
    run
}

/// The xtask binary with `args`, under `umask` and, when given, under
/// strace with `inject`.
fn xtask(args: &[&str], umask: &str, inject: Option<&str>) -> Output {
    let bin = env!("CARGO_BIN_EXE_xtask");
    let mut words: Vec<String> = Vec::new();
    if let Some(inject) = inject {
        words.extend(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-e"]
                .into_iter()
                .map(str::to_owned),
        );
        words.push(format!("inject={inject}"));
    }
    words.push(bin.to_owned());
    words.extend(args.iter().map(|it| (*it).to_owned()));
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .args(&words)
        .current_dir(repo())
        .output()
        .expect("sh runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one `error:` line of a failed run.
fn error_line(output: &Output) -> String {
    assert!(!output.status.success(), "the command succeeded");
    let text = stderr(output);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    errors[0].to_owned()
}

/// Every file of `dir` but the record and temporary files, by name.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|it| it.unwrap())
        .filter(|it| it.file_type().unwrap().is_file())
        .map(|it| it.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|it| it.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

fn pending(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(profile_report::outputs::LEDGER))
        .is_ok_and(|text| text.contains("\"pending\""))
}

#[test]
fn outputs_never_replace_an_input_or_a_file_sglprof_did_not_write() {
    let root = tempfile::tempdir().unwrap();
    let logdir = root.path().join("logs");
    let run = profile(&logdir, false);
    let jax_json = run.join("vm.trace.json.gz");
    let original = std::fs::read(&jax_json).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    // The probe's cases: the capture's own file, and the input itself.
    let out = xtask(
        &["trace", &path(&logdir), "--out", &path(&jax_json)],
        "022",
        None,
    );
    assert!(
        error_line(&out).ends_with("exists and is not an earlier output of sglprof (or was changed since); move it away or choose another --out"),
        "{}",
        stderr(&out)
    );
    let out = xtask(
        &["trace", &path(&jax_json), "--out", &path(&jax_json)],
        "022",
        None,
    );
    assert!(
        error_line(&out).ends_with("is an input of this command; choose another --out"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&jax_json).unwrap(), original);

    // A new file named by the user in the run folder is what they asked
    // for, and a second export replaces the first (it is ours).
    let mine = run.join("mine.json.gz");
    for _ in 0..2 {
        let out = xtask(
            &["trace", &path(&logdir), "--out", &path(&mine)],
            "022",
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // A file sglprof wrote and someone changed since is not replaced.
    std::fs::write(&mine, b"edited by hand").unwrap();
    let out = xtask(
        &["trace", &path(&logdir), "--out", &path(&mine)],
        "022",
        None,
    );
    assert!(error_line(&out).contains("not an earlier output"));
    assert_eq!(std::fs::read(&mine).unwrap(), b"edited by hand");

    // report and compare name folders: one inside a JAX run is refused.
    for args in [
        vec!["report", &path(&run), "--out", &path(&run)],
        vec![
            "compare",
            &path(&logdir),
            &path(&logdir),
            "--out",
            &path(&run),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(|it| it.as_ref()).collect();
        let out = xtask(&args, "022", None);
        assert!(
            error_line(&out).ends_with("beside the profiler's own files; choose another --out"),
            "{}",
            stderr(&out)
        );
    }
    // By default, the report of a JAX run folder goes to its logdir.
    let out = xtask(&["report", &path(&run)], "022", None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(logdir.join("report.md").is_file());
    let mut names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|it| it.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".sglprof-outputs.json",
            "mine.json.gz",
            "vm.trace.json.gz",
            "vm.xplane.pb"
        ]
    );
    assert_eq!(std::fs::read(&jax_json).unwrap(), original);
}

/// A command whose outputs form a set, run once to make the old set and
/// then again, with other settings, under fault injection.
struct Case {
    name: &'static str,
    /// The arguments given the profile folder and the output folder, and
    /// whether this is the new run.
    args: fn(&Path, &Path, bool) -> Vec<String>,
}

const CASES: [Case; 3] = [
    Case {
        name: "report",
        args: |profile, out, new| {
            let top = if new { "5" } else { "3" };
            ["report", p(profile), "--out", p(out), "--top", top]
                .map(str::to_owned)
                .into()
        },
    },
    Case {
        name: "compare",
        args: |profile, out, new| {
            let threshold = if new { "50%" } else { "5%" };
            [
                "compare",
                p(profile),
                p(profile),
                "--out",
                p(out),
                "--threshold",
                threshold,
            ]
            .map(str::to_owned)
            .into()
        },
    },
    Case {
        name: "trace",
        args: |profile, out, new| {
            let split = if new { "30000" } else { "20000" };
            let file = out.join("t.json.gz");
            [
                "trace",
                p(profile),
                "--out",
                file.to_str().unwrap(),
                "--split-events",
                split,
            ]
            .map(str::to_owned)
            .into()
        },
    },
];

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_crash_or_an_error_at_any_rename_leaves_the_old_set_or_the_new_one() {
    if !have_tool("strace", "strace") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let logdir = root.path().join("logs");
    profile(&logdir, true);
    for case in &CASES {
        let mut hits = Vec::new();
        // The two sets, made without faults.
        let (old, new) = {
            let dir = root.path().join(format!("{}-sets", case.name));
            let run = |new| {
                let args = (case.args)(&logdir, &dir, new);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = xtask(&args, "022", None);
                assert!(out.status.code() != Some(2), "{}", stderr(&out));
                outputs(&dir)
            };
            let old = run(false);
            let new = run(true);
            assert_ne!(old, new, "{}: the two runs must differ", case.name);
            (old, new)
        };
        // strace counts the calls of each system call apart: every rename
        // is the Nth call of one of them.
        for (fault, syscall) in ["signal=KILL", "error=EIO"]
            .into_iter()
            .flat_map(|f| ["rename", "renameat", "renameat2"].map(|s| (f, s)))
        {
            let mut hit = 0;
            for n in 1.. {
                assert!(n < 40, "{}: more renames than expected", case.name);
                let dir = root
                    .path()
                    .join(format!("{}-{fault}-{syscall}-{n}", case.name));
                let args = (case.args)(&logdir, &dir, false);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                assert!(xtask(&args, "022", None).status.code() != Some(2));
                let args = (case.args)(&logdir, &dir, true);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let inject = format!("{syscall}:{fault}:when={n}");
                let out = xtask(&args, "022", Some(&inject));
                let failed = matches!(out.status.code(), None | Some(2))
                    || (case.name != "compare" && !out.status.success());
                let what = format!("{} with {fault} at {syscall} {n}", case.name);
                // Right after the fault: the old set or the new one, or a
                // record that says what is left to do.
                let now = outputs(&dir);
                assert!(
                    now == old || now == new || pending(&dir),
                    "{what}: a mixed set without a pending record"
                );
                if failed && fault == "error=EIO" {
                    let line = error_line(&out);
                    assert!(line.contains("Input/output error"), "{what}: {line}");
                }
                // What a reader sees: the set is completed first.
                profile_report::settle(&dir).unwrap();
                let now = outputs(&dir);
                assert!(now == old || now == new, "{what}: a mixed set after settle");
                assert!(!pending(&dir), "{what}");
                // The next run removes stray temporary files.
                let out = xtask(&args, "022", None);
                assert!(out.status.code() != Some(2), "{what}: {}", stderr(&out));
                assert_eq!(outputs(&dir), new, "{what}: the next run");
                assert_eq!(temporaries(&dir), Vec::<String>::new(), "{what}");
                if !failed {
                    // The fault came after the last rename: every rename
                    // was tried.
                    break;
                }
                hit += 1;
            }
            hits.push((fault, syscall, hit));
        }
        // Each fault hit the record's commit, the end of the set, and at
        // least one output.
        for fault in ["signal=KILL", "error=EIO"] {
            let total: u32 = hits.iter().filter(|it| it.0 == fault).map(|it| it.2).sum();
            assert!(total >= 3, "{} with {fault}: {hits:?}", case.name);
        }
    }
}

#[test]
fn a_full_disk_is_named_in_the_error() {
    if !have_tool("strace", "strace") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let logdir = root.path().join("logs");
    profile(&logdir, true);
    for case in &CASES {
        let dir = root.path().join(format!("{}-full", case.name));
        let args = (case.args)(&logdir, &dir, true);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The first fsync: where a full disk shows on a file written through
        // the page cache.
        let out = xtask(&args, "022", Some("fsync,fdatasync:error=ENOSPC:when=1"));
        let line = error_line(&out);
        assert_eq!(
            line.matches("No space left on device").count(),
            1,
            "{}: {line}",
            case.name
        );
        assert!(line.starts_with("error: cannot write "), "{line}");
        assert!(outputs(&dir).is_empty(), "{}", case.name);
        assert_eq!(temporaries(&dir), Vec::<String>::new());
    }
}

#[test]
fn outputs_follow_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let logdir = root.path().join("logs");
    profile(&logdir, true);
    for (umask, mode) in [("022", 0o644), ("027", 0o640)] {
        for case in &CASES {
            let dir = root.path().join(format!("{}-{umask}", case.name));
            let args = (case.args)(&logdir, &dir, false);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = xtask(&args, umask, None);
            assert!(out.status.code() != Some(2), "{}", stderr(&out));
            let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
            assert!(files.len() >= 2, "{}", case.name);
            for entry in files {
                let entry = entry.unwrap();
                let got = entry.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(
                    got,
                    mode,
                    "{} under umask {umask}: {:?} is {got:o}",
                    case.name,
                    entry.file_name()
                );
            }
        }
    }
}
