//! End-to-end: `cargo xtask profile` against a real sglang-jax server on
//! this machine's CPU, each run checked through the run folder it leaves.
//!
//! One full local session has a server of its own: the pod's session of
//! `profile --k8s` (the score mix, with py-spy) run by a copy of the binary
//! outside the checkout; its report's Reproduction blocks are then run as
//! a reader would run them (they start a server of their own, profile it
//! with curl and stop it). Sessions that only need *a* server attach to the
//! test binary's shared server (`support::shared`): a `num_steps` session,
//! and the example program of `profile-driver`. Ctrl-C once the server is
//! up, and SIGHUP and SIGQUIT while it starts, leave no server process.
//!
//! The first run installs the cached Python environment when it is missing
//! (a minute or two); after that a server starts in about half a minute.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary, bash and the example.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::{eventually, files_under, processes_with, real_server, shared, xtask};

fn non_empty(path: &Path) -> u64 {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert!(len > 0, "{} is empty", path.display());
    len
}

/// Checks what every run folder must hold, whatever its host; returns its
/// run metadata.
pub(crate) fn check_run_folder(run: &Path) -> session_report::RunMetadata {
    for file in [
        "inputs/profile_config.json",
        "inputs/server_args.json",
        "checksums.txt",
    ] {
        non_empty(&run.join(file));
    }
    // The bodies as sent, one JSON per line, and a record per request.
    for file in ["inputs/bodies.jsonl", "inputs/warmup-bodies.jsonl"] {
        // A session without a warmup writes no warmup bodies.
        if file.contains("warmup") && !run.join(file).exists() {
            continue;
        }
        let text = std::fs::read_to_string(run.join(file)).unwrap();
        assert!(text.lines().count() > 0, "{file} is empty");
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("request bodies are JSON");
        }
    }
    let records = std::fs::read_to_string(run.join("inputs/requests.jsonl")).unwrap();
    let records = serving_workload::record::parse_records(&records).unwrap();
    assert!(!records.is_empty());
    assert!(
        records
            .iter()
            .all(|r| r.end_ns >= r.start_ns && r.start_ns >= r.due_ns)
    );

    // The JAX profile as the server wrote it.
    let traces = files_under(&run.join("artifacts/jax-profile"));
    let xplane = traces
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".xplane.pb"))
        .expect("an xplane.pb");
    let trace = traces
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".trace.json.gz"))
        .expect("a trace.json.gz");
    assert!(
        xplane.to_string_lossy().contains("/plugins/profile/"),
        "{}",
        xplane.display()
    );
    assert!(non_empty(xplane) > 1000);
    non_empty(trace);
    let head = std::fs::read(trace).unwrap();
    assert_eq!(&head[..2], &[0x1f, 0x8b], "trace.json.gz is gzip");

    // checksums.txt lists every artifact with its real sha256.
    let checksums = std::fs::read_to_string(run.join("checksums.txt")).unwrap();
    let artifacts = files_under(&run.join("artifacts"));
    assert_eq!(checksums.lines().count(), artifacts.len(), "{checksums}");
    for line in checksums.lines() {
        let (hex, rel) = line.split_once("  ").expect("sha256sum format");
        let digest = Sha256::digest(std::fs::read(run.join(rel)).unwrap());
        let actual: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, actual, "{rel}");
    }

    let metadata_text = std::fs::read_to_string(run.join("inputs/run_metadata.json")).unwrap();
    let metadata = session_report::RunMetadata::from_json(&metadata_text).unwrap();
    let workload = metadata.workload.clone().expect("a workload summary");
    assert_eq!(workload.errors, 0, "{workload:?}");
    assert!(
        workload.latency_ms.count > 0
            && workload.latency_ms.p50 > 0.0
            && workload.throughput_rps > 0.0
    );

    // The report, made from the traces with the workload table added.
    let report = std::fs::read_to_string(run.join("report.md")).expect("report.md");
    assert!(!report.trim().is_empty());
    non_empty(&run.join("summary.json"));
    metadata
}

/// Checks what the run folder of a server sglprof started here holds
/// besides: the server's log, the machine and the installed versions, and
/// no process left running in the folder.
fn check_local_run_folder(run: &Path) -> session_report::RunMetadata {
    let metadata = check_run_folder(run);
    non_empty(&run.join("logs/server.log"));
    let log = std::fs::read_to_string(run.join("logs/server.log")).unwrap();
    assert!(
        log.contains(sglang_server::READY_LOG_LINE),
        "the server log has the ready line"
    );
    assert_eq!(metadata.zone.as_deref(), Some("local"));
    assert!(
        metadata
            .hardware
            .as_deref()
            .unwrap_or_default()
            .starts_with("CPU (local, ")
    );
    assert!(metadata.sglang_jax_version.is_some() && metadata.jax_version.is_some());

    // No server process is left: they all ran with the run folder as cwd.
    let run_abs = std::fs::canonicalize(run).unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            assert_ne!(
                cwd,
                run_abs,
                "process {:?} still runs in the run folder",
                entry.file_name()
            );
        }
    }
    metadata
}

/// num_steps 4 stops the trace after three forward passes, so the
/// /stop_profile that follows answers 500, which must count as success.
#[test]
fn generate_session_with_num_steps() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let server = shared();
    let output = server.attach(
        &run,
        &[
            "--endpoint",
            "generate",
            "--requests",
            "4",
            "--concurrency",
            "2",
            "--max-new-tokens",
            "4",
            "--warmup",
            "1",
            "--num-steps",
            "4",
        ],
    );
    drop(server);
    assert!(output.status.success(), "profile --attach failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the trace had already stopped after num_steps"),
        "{stderr}"
    );
    let metadata = check_run_folder(&run);
    assert_eq!(metadata.zone.as_deref(), Some("attached"));
    assert_eq!(metadata.endpoint.as_deref(), Some("/generate"));
    assert_eq!(metadata.profile.as_ref().and_then(|p| p.num_steps), Some(4));
    let workload = metadata.workload.unwrap();
    assert_eq!((workload.requests, workload.concurrency), (4, 2));
    assert!(workload.output_tokens_per_s.is_some());
    crate::html::check_session_page(&run);
}

/// The example program of `profile-driver` (a session through the crates
/// alone), as `cargo test` built it, against the shared server: it runs to
/// the end, writes a run folder with its report, and prints the heaviest
/// operation it read back from `summary.json`.
#[test]
fn the_example_session_runs_through_the_crates() {
    let example = example("local_session");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let server = shared();
    let output = Command::new(&example)
        .arg(&run)
        .arg(server.url())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    drop(server);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let top = summary["top_operations"][0]["name"].to_string();
    assert!(top.len() > 2, "{summary}");
    assert_eq!(stdout.trim(), top);
    let metadata = check_run_folder(&run);
    assert_eq!(metadata.workload.unwrap().requests, 8);
}

/// The compiled example `name` of `profile-driver`, beside this test
/// binary. `cargo test --workspace` builds it; when it is missing or older
/// than a source file of the crates (a run of this package alone after an
/// edit), it is built here. Building it every time would cost each run a
/// minute and a half: a `cargo build` started from a test sees another
/// environment and rebuilds `ring` and everything above it, twice.
fn example(name: &str) -> PathBuf {
    // target/debug/deps/it-<hash> -> target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(name);
    let modified = |path: &Path| std::fs::metadata(path).and_then(|it| it.modified()).ok();
    let newest_source = files_under(&crate::support::repo().join("crates"))
        .iter()
        .filter(|it| it.extension().is_some_and(|ext| ext == "rs"))
        .filter_map(|it| modified(it))
        .max();
    let fresh = matches!(
        (modified(&path), newest_source),
        (Some(built), Some(source)) if built >= source
    );
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", "profile-driver", "--example", name])
            .current_dir(crate::support::repo())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build the example {name}");
    }
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The command line the pod of `profile --k8s` runs, read from the Job
/// that `--dry-run` prints.
fn pod_argv(flags: &[&str]) -> Vec<String> {
    let output = xtask()
        .args(["profile", "--k8s", "--dry-run"])
        .args(flags)
        .output()
        .expect("the xtask binary runs");
    assert!(output.status.success(), "{output:?}");
    let yaml = String::from_utf8(output.stdout).unwrap();
    yaml.lines()
        .skip_while(|line| line.trim() != "- args:")
        .skip(1)
        .map_while(|line| line.strip_prefix("        - "))
        .map(|word| word.trim_matches('"').to_owned())
        .collect()
}

/// Splits the pod's argv into what this machine runs and the words only
/// the pod can: its device (a TPU), its run folder, and the archive upload
/// (the bucket is a GCS FUSE mount there; uploads are tested against a GCS
/// emulator in gcs-artifacts).
fn split_pod_only(argv: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut here, mut pod_only) = (Vec::new(), Vec::new());
    let mut words = argv.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--device" | "--out" | "--bucket" | "--bucket-prefix" => {
                pod_only.push(word.clone());
                pod_only.extend(words.next().cloned());
            }
            "--upload" => pod_only.push(word.clone()),
            _ => here.push(word.clone()),
        }
    }
    (here, pod_only)
}

/// The pod's session (the exact command line of the Job's container but
/// for the words [`split_pod_only`] names), run to its end by a copy of the
/// binary in a folder outside the checkout, from that folder: the score
/// mix with py-spy, checked through its run folder. Then the report's
/// Reproduction blocks (Setup Commands, Profiling Workflow, Cleanup) run
/// as printed, in the run folder, and must work.
#[test]
fn the_pods_session_from_a_copied_binary_and_its_reproduction() {
    let pod = pod_argv(&[
        "--endpoint",
        "score",
        "--requests",
        "3",
        "--concurrency",
        "1",
        "--warmup",
        "3",
        "--py-spy",
    ]);
    let (here, pod_only) = split_pod_only(&pod);
    let mut names: Vec<&str> = pod_only
        .iter()
        .map(String::as_str)
        .filter(|it| it.starts_with("--"))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "--bucket",
            "--bucket-prefix",
            "--device",
            "--out",
            "--upload"
        ]
    );
    assert_eq!(pod_only[..2], ["--device", "tpu"]);
    assert_eq!(here[..2], ["profile", "--local"], "{pod:?}");
    let flags: Vec<&str> = here[2..].iter().map(String::as_str).collect();
    assert!(flags.contains(&"--py-spy"), "{flags:?}");

    // A copy of the binary, away from the checkout, run from its folder.
    let away = tempfile::tempdir().unwrap();
    let binary = away.path().join("bin/sglprof");
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_xtask"), &binary).unwrap();
    let _slot = real_server();
    let output = Command::new(&binary)
        .args(["profile", "--local", "--quiet-wait", "0"])
        .args(&flags)
        .args(["--out", "run"])
        .current_dir(away.path())
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .expect("the copied binary runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "profile --local --endpoint score failed"
    );
    let run = away.path().join("run");
    let metadata = check_local_run_folder(&run);
    assert_eq!(metadata.endpoint.as_deref(), Some("/v1/score"));
    let workload = metadata.workload.clone().unwrap();
    assert_eq!(workload.parts.len(), 3, "one part per kind of the mix");
    assert!(
        workload
            .parts
            .iter()
            .all(|p| p.requests == 1 && p.errors == 0)
    );
    let bodies = std::fs::read_to_string(run.join("inputs/bodies.jsonl")).unwrap();
    // The mix in send order: single, small batch, large batch.
    let large: serde_json::Value = serde_json::from_str(bodies.lines().nth(2).unwrap()).unwrap();
    assert_eq!(large["items"].as_array().unwrap().len(), 32);
    assert_eq!(large["label_token_ids"].as_array().unwrap().len(), 2);
    // py-spy: both formats, named in the metadata.
    let raw = pyspy_raw(&run, &metadata);
    assert!(
        raw.lines().any(|l| l.starts_with("process ")),
        "raw py-spy stacks"
    );
    let speedscope: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("artifacts/py-spy/profile.speedscope.json")).unwrap(),
    )
    .unwrap();
    assert!(
        speedscope["profiles"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    check_pyspy_report(&run, &raw);

    // Every body the session sent, warmup and measured, is sent again.
    let sent = ["inputs/warmup-bodies.jsonl", "inputs/bodies.jsonl"]
        .iter()
        .map(|file| {
            std::fs::read_to_string(run.join(file))
                .unwrap()
                .lines()
                .count()
        })
        .sum();
    run_reproduction(&run, sent);
}

/// The report's Reproduction: its bash block's Setup Commands, Profiling
/// Workflow and Cleanup, run as printed in one bash (under the caller's
/// [`real_server`] slot) (the cleanup's `kill
/// %1` names the job the setup started), in the run folder. The setup
/// starts a real server and waits for it; the workflow's requests are
/// answered (`requests` score answers: the warmup and profiled bodies), the
/// profile it takes lands beside the session's; the cleanup leaves no
/// process of the server.
fn run_reproduction(run: &Path, requests: usize) {
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    let block: Vec<&str> = report
        .split("## Reproduction")
        .nth(1)
        .and_then(|rest| rest.split("```bash\n").nth(1))
        .and_then(|rest| rest.split("\n```").next())
        .unwrap_or_else(|| panic!("no bash block in the Reproduction:\n{report}"))
        .lines()
        .collect();
    let section = |title: &str| -> Vec<&str> {
        block
            .iter()
            .skip_while(|line| **line != format!("# {title}"))
            .skip(1)
            .take_while(|line| !line.is_empty())
            .copied()
            .collect()
    };
    let (setup, workflow, cleanup) = (
        section("Setup Commands"),
        section("Profiling Workflow"),
        section("Cleanup"),
    );
    assert!(
        setup.iter().any(|l| l.contains("sgl_jax.launch_server")) && !cleanup.is_empty(),
        "{block:#?}"
    );
    let port = setup
        .iter()
        .find_map(|l| l.split(" --port ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no --port in {setup:#?}"))
        .to_owned();
    let mut script = String::new();
    for line in setup.iter().chain(&workflow).chain(&cleanup) {
        script.push_str(line);
        script.push('\n');
    }
    // The cleanup has sent the server its SIGTERM; let it finish.
    script.push_str("wait\n");
    let traces_before = trace_runs(run);

    // The caller holds a real server's slot.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(run)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id() as i32;
    let (stdout, stderr) = {
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut err, &mut text).unwrap();
            text
        });
        let deadline = Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                // SAFETY: ends the group this test started.
                unsafe { libc::killpg(group, libc::SIGKILL) };
                panic!("the Reproduction blocks did not finish in 600 s:\n{script}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).unwrap();
        assert!(status.success(), "{status}:\n{script}");
        (text, reader.join().unwrap())
    };
    let context = format!("script:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    // Nothing the blocks started outlives them.
    let gone = eventually(Duration::from_secs(30), || {
        // SAFETY: signal 0 only asks whether the group still exists.
        unsafe { libc::killpg(group, 0) != 0 }
    });
    if !gone {
        // SAFETY: ends the group this test started.
        unsafe { libc::killpg(group, libc::SIGKILL) };
    }
    assert!(
        gone,
        "processes of the Reproduction survived its Cleanup\n{context}"
    );
    assert!(
        processes_with(&format!("--port {port} ")).is_empty(),
        "{context}"
    );

    assert_eq!(stdout.matches("\"scores\"").count(), requests, "{context}");
    assert!(stdout.contains("Start profiling."), "{context}");
    assert!(stdout.contains("Stop profiling."), "{context}");
    let after = trace_runs(run);
    assert_eq!(after.len(), traces_before.len() + 1, "{context}");
    let new = after.iter().find(|it| !traces_before.contains(it)).unwrap();
    let xplane = files_under(new)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".xplane.pb"))
        .unwrap_or_else(|| panic!("no xplane.pb in {}\n{context}", new.display()));
    assert!(non_empty(&xplane) > 1000);
}

/// The `plugins/profile/<run>/` folders of a run folder's JAX profile.
fn trace_runs(run: &Path) -> Vec<PathBuf> {
    let dir = run.join("artifacts/jax-profile/plugins/profile");
    let mut res: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    res.sort();
    res
}

/// `12345` as the report prints it, `12,345`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (idx, c) in digits.chars().enumerate() {
        if idx > 0 && (digits.len() - idx).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// py-spy's two files, named in the run metadata where the session put
/// them; the collapsed stacks.
pub(crate) fn pyspy_raw(run: &Path, metadata: &session_report::RunMetadata) -> String {
    assert_eq!(
        metadata.pyspy_raw.as_deref(),
        Some("artifacts/py-spy/profile.raw.txt")
    );
    assert_eq!(
        metadata.pyspy_speedscope.as_deref(),
        Some("artifacts/py-spy/profile.speedscope.json")
    );
    std::fs::read_to_string(run.join("artifacts/py-spy/profile.raw.txt")).unwrap()
}

/// The report's py-spy section and flamegraph, checked against the raw
/// stacks: the scheduler's share is recomputed here from the lines whose
/// innermost `process` frame is the scheduler.
pub(crate) fn check_pyspy_report(run: &Path, raw: &str) {
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("[pyspy-flamegraph.svg](pyspy-flamegraph.svg)"));
    let svg = std::fs::read_to_string(run.join("pyspy-flamegraph.svg")).unwrap();
    assert!(
        svg.starts_with("<?xml"),
        "the flamegraph is an SVG document"
    );
    assert!(
        svg.contains("scheduler pid"),
        "the flamegraph has the scheduler; py-spy's stacks:\n{raw}"
    );
    let (mut all, mut scheduler) = (0u64, 0u64);
    for line in raw.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap();
        let count: u64 = count.parse().unwrap();
        all += count;
        let innermost = stack
            .split(';')
            .rfind(|frame| frame.starts_with("process "))
            .unwrap_or("");
        if innermost.contains("sglang::scheduler") {
            scheduler += count;
        }
    }
    assert!(scheduler > 0, "py-spy saw the scheduler");
    let share = format!("{:.1}", scheduler as f64 * 100.0 / all as f64);
    let row = report
        .lines()
        .find(|l| l.contains("sglang::scheduler") && l.contains("| scheduler |"))
        .unwrap_or_else(|| panic!("no scheduler row in\n{report}"));
    assert!(
        row.contains(&format!("| {} | {share} |", grouped(scheduler))),
        "{row} should have {scheduler} samples, {share} %"
    );
    assert!(report.contains("| HTTP server and tokenizer |"), "{report}");
}

/// A `profile --local` session stopped by `signal` (named `name`) once its
/// progress shows `phase` (a server launched: `[profile] starting`, or up:
/// `[profile] server ready`) and the server's launcher has started its
/// children: the run fails with `error: interrupted by <name>`, and no
/// process of the server (launcher, scheduler, detokenizer: its process
/// group) outlives the run.
fn signal_leaves_no_process_behind(signal: libc::c_int, name: &str, phase: &str) {
    use std::io::BufRead;

    let _slot = real_server();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tempfile::tempdir().unwrap();
    let mut child = xtask()
        .args([
            "profile",
            "--local",
            "--requests",
            "40",
            "--concurrency",
            "2",
            "--port",
        ])
        .arg(port.to_string())
        .arg("--out")
        .arg(out.path().join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut lines = stderr.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(phase) {
            break;
        }
    }
    assert!(seen.contains(phase), "no `{phase}` line:\n{seen}");
    let needle = format!("--port {port}");
    let mut launcher = None;
    let started = eventually(Duration::from_secs(120), || {
        launcher = processes_with(&needle)
            .iter()
            .find(|it| it.contains("sgl_jax.launch_server"))
            .and_then(|it| it.split(':').next()?.parse::<i32>().ok());
        // The scheduler and detokenizer run once the launcher forked them.
        launcher.is_some_and(|pid| group_size(pid) >= 3)
    });
    assert!(
        started,
        "no server process group of 3 with `{needle}` ({launcher:?})"
    );
    let group = launcher.unwrap();

    // SAFETY: signals the xtask child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted run must fail:\n{seen}{}",
        rest.join("\n")
    );
    let said = format!("error: interrupted by {name}");
    assert!(
        rest.iter().any(|line| line.starts_with(&said)),
        "no `{said}` line:\n{}",
        rest.join("\n")
    );

    // The xtask waits for the process group to die before it exits; allow a
    // moment for the kernel to reap the last children.
    let gone = eventually(Duration::from_secs(5), || {
        processes_with(&needle).is_empty() && group_size(group) == 0
    });
    assert!(
        gone,
        "processes left behind: {:#?}, {} in the server's group",
        processes_with(&needle),
        group_size(group)
    );
}

/// The live processes of process group `group`.
fn group_size(group: i32) -> usize {
    let mut res = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(group) && state != "Z" && state != "X" {
            res += 1;
        }
    }
    res
}

/// Ctrl-C once the server is up: the run fails with a message, and no
/// server process (launcher, scheduler, detokenizer) outlives it.
#[test]
fn ctrl_c_leaves_no_process_behind() {
    signal_leaves_no_process_behind(libc::SIGINT, "SIGINT", "[profile] server ready");
}

/// The same for a closed terminal or a lost ssh session (SIGHUP) and for
/// SIGQUIT, which used to kill the xtask and leave the server running,
/// each while the server starts (its children forked, its shapes still
/// compiling).
#[test]
fn hangup_and_quit_leave_no_process_behind() {
    signal_leaves_no_process_behind(libc::SIGHUP, "SIGHUP", "[profile] starting sglang-jax");
    signal_leaves_no_process_behind(libc::SIGQUIT, "SIGQUIT", "[profile] starting sglang-jax");
}

/// Flags a host or the installed server cannot honour are refused in one
/// line before anything is created: no run folder, no server, no VM.
#[test]
fn unsupported_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 8] = [
        // This machine has no TPU.
        (
            &["--local", "--device", "tpu"],
            "error: --device tpu: no TPU is visible on this machine",
        ),
        (
            &["--tpu", "--dry-run", "--device", "tpu"],
            "error: --device is not supported with --tpu:",
        ),
        (
            &["--k8s", "--dry-run", "--device", "cpu"],
            "error: --device cpu is not supported with --k8s:",
        ),
        (
            &["--local", "--start-step", "3"],
            "error: --start-step needs the newer profiling API, which sglang-jax 0.0.1.post1 lacks",
        ),
        (
            &["--local", "--python-tracer-level", "0"],
            "error: --python-tracer-level 0 needs the newer profiling API",
        ),
        (
            &[
                "--tpu",
                "--dry-run",
                "--profile-by-stage",
                "--sglang-jax-version",
                "0.0.2",
            ],
            "error: --profile-by-stage needs the newer profiling API, which sglang-jax 0.0.2 lacks",
        ),
        // Its /v1/score takes the server down (python/README.md).
        (
            &[
                "--local",
                "--endpoint",
                "score",
                "--sglang-jax-version",
                "0.0.2",
            ],
            "error: --endpoint score cannot run on sglang-jax 0.0.2: POST /v1/score kills its server",
        ),
        (
            &[
                "--k8s",
                "--dry-run",
                "--endpoint",
                "score",
                "--sglang-jax-version",
                "0.0.2",
            ],
            "error: --endpoint score cannot run on sglang-jax 0.0.2",
        ),
    ];
    for (flags, expect) in cases {
        let run = dir.path().join("run");
        let output = xtask()
            .arg("profile")
            .args(flags)
            .arg("--out")
            .arg(&run)
            .current_dir(dir.path())
            .output()
            .expect("the xtask binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.starts_with(expect), "{flags:?}: {stderr}");
        assert!(!run.exists(), "{flags:?} created {}", run.display());
    }
}

/// `--config`: the file's flags reach the session as typed flags do, a
/// flag on the command line wins, and a bad file is refused in one line
/// naming the file, before anything starts.
#[test]
fn a_config_file_gives_flags_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("score.toml");
    std::fs::write(
        &file,
        "# RFC-010's mix, recorded with py-spy\n\
         endpoint = \"score\"\n\
         requests = 6\n\
         concurrency = 2\n\
         py-spy = true\n\
         stream = false\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let pod = pod_argv(&["--config", config, "--requests", "9"]);
    let flags = pod.join(" ");
    assert!(flags.contains("--endpoint score"), "{flags}");
    assert!(flags.contains("--requests 9"), "{flags}");
    assert!(flags.contains("--concurrency 2"), "{flags}");
    assert!(flags.contains("--py-spy"), "{flags}");
    assert!(!flags.contains("--stream"), "{flags}");
    assert!(
        !flags.contains("--config"),
        "the pod's argv is whole: {flags}"
    );

    let cases = [
        (
            "reqests = 6\n",
            "`reqests` is not a flag of `cargo xtask profile`",
        ),
        (
            "api-key = \"sk-1\"\n",
            "`api-key`: a secret does not belong",
        ),
        (
            "requests = \"many\"\n",
            "invalid value 'many' for '--requests",
        ),
    ];
    for (text, expect) in cases {
        std::fs::write(&file, text).unwrap();
        let run = dir.path().join("run");
        let output = xtask()
            .args(["profile", "--local", "--config", config, "--out"])
            .arg(&run)
            .output()
            .expect("the xtask binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text:?}: {stderr}");
        assert!(stderr.contains(expect), "{text:?}: {stderr}");
        assert!(!stderr.contains("sk-1"), "{stderr}");
        assert!(!run.exists(), "{text:?} created {}", run.display());
    }
    std::fs::write(&file, "reqests = 6\n").unwrap();
    let output = xtask()
        .args(["profile", "--local", "--config", config])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {config}: `reqests` is not a flag of `cargo xtask profile` (see its --help)"
        )
    );
}

/// `cargo xtask serve` prints the URL of a server that answers, and when
/// its standard input closes (what happens when the process holding the
/// pipe ends, however it ends) it stops the server: nothing of it is left.
#[test]
fn serve_stops_its_server_when_its_caller_goes() {
    use std::io::BufRead;

    let _slot = real_server();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = xtask()
        .arg("serve")
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = serve.stdin.take().unwrap();
    let mut url = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
    let port = url.rsplit(':').next().unwrap().to_owned();
    let launcher = processes_with(&format!("--port {port}"))
        .iter()
        .find(|it| it.contains("sgl_jax.launch_server"))
        .and_then(|it| it.split(':').next()?.parse::<i32>().ok())
        .expect("the server's launcher");
    assert!(
        group_size(launcher) >= 3,
        "launcher, scheduler, detokenizer"
    );

    drop(stdin);
    let exited = eventually(Duration::from_secs(60), || {
        serve.try_wait().unwrap().is_some()
    });
    assert!(exited, "serve did not end when its standard input closed");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(serve.wait().unwrap().success(), "{stderr}");
    assert!(
        stderr.contains("[serve] standard input closed: stopping the server"),
        "{stderr}"
    );
    let gone = eventually(Duration::from_secs(5), || group_size(launcher) == 0);
    assert!(
        gone,
        "{} processes of the server left",
        group_size(launcher)
    );
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains(sglang_server::READY_LOG_LINE), "{log}");
}
