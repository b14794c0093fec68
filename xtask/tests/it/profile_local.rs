//! End-to-end: `cargo xtask profile --local` against a real sglang-jax server
//! on this machine's CPU, once for /generate and once for the RFC-010 score
//! mix, each checked through the run folder it leaves behind.
//!
//! The first run installs the cached Python environment when it is missing
//! (a minute or two); after that each session takes well under a minute.
//! The two sessions run one after the other: on a small machine two servers
//! at once would only slow both down.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary, git and cargo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

pub(crate) static ONE_SERVER_AT_A_TIME: Mutex<()> = Mutex::new(());

pub(crate) fn run_profile(out: &Path, extra: &[&str]) -> std::process::Output {
    let _one = ONE_SERVER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["profile", "--local", "--out"])
        .arg(out)
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the xtask binary runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut res = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            res.extend(files_under(&path));
        } else {
            res.push(path);
        }
    }
    res.sort();
    res
}

fn non_empty(path: &Path) -> u64 {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert!(len > 0, "{} is empty", path.display());
    len
}

/// Checks what every run folder must hold; returns its run metadata.
fn check_run_folder(run: &Path) -> session_report::RunMetadata {
    for file in [
        "inputs/profile_config.json",
        "inputs/server_args.json",
        "logs/server.log",
        "checksums.txt",
    ] {
        non_empty(&run.join(file));
    }
    // The bodies as sent, one JSON per line, and a record per request.
    for file in ["inputs/bodies.jsonl", "inputs/warmup-bodies.jsonl"] {
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

    let log = std::fs::read_to_string(run.join("logs/server.log")).unwrap();
    assert!(
        log.contains(sglang_server::READY_LOG_LINE),
        "the server log has the ready line"
    );

    let metadata_text = std::fs::read_to_string(run.join("inputs/run_metadata.json")).unwrap();
    let metadata = session_report::RunMetadata::from_json(&metadata_text).unwrap();
    assert_eq!(metadata.zone.as_deref(), Some("local"));
    assert!(
        metadata
            .hardware
            .as_deref()
            .unwrap_or_default()
            .starts_with("CPU (local, ")
    );
    assert!(metadata.sglang_jax_version.is_some() && metadata.jax_version.is_some());
    let workload = metadata.workload.clone().expect("a workload summary");
    assert_eq!(workload.errors, 0, "{workload:?}");
    assert!(
        workload.latency_ms.count > 0
            && workload.latency_ms.p50 > 0.0
            && workload.throughput_rps > 0.0
    );

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

    // The report, made from the traces with the workload table added.
    let report = std::fs::read_to_string(run.join("report.md")).expect("report.md");
    assert!(!report.trim().is_empty());
    non_empty(&run.join("summary.json"));
    metadata
}

#[test]
fn generate_session_with_num_steps() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // num_steps 4 stops the trace after three forward passes, so the
    // /stop_profile that follows answers 500, which must count as success.
    let output = run_profile(
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
    assert!(output.status.success(), "profile --local failed");
    let metadata = check_run_folder(&run);
    assert_eq!(metadata.endpoint.as_deref(), Some("/generate"));
    assert_eq!(metadata.profile.as_ref().and_then(|p| p.num_steps), Some(4));
    let workload = metadata.workload.unwrap();
    assert_eq!((workload.requests, workload.concurrency), (4, 2));
    assert!(workload.output_tokens_per_s.is_some());
    crate::html::check_session_page(&run);
}

/// The command line the pod of `profile --k8s` runs, read from the Job
/// that `--dry-run` prints.
fn pod_argv(flags: &[&str]) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
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

/// The pod's session, run here on the CPU: the exact command line of the
/// Job's container but for the words [`split_pod_only`] names.
#[test]
fn score_mix_session_with_py_spy() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
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
    let names: Vec<&str> = pod_only
        .iter()
        .map(String::as_str)
        .filter(|it| it.starts_with("--"))
        .collect();
    assert_eq!(
        names,
        [
            "--device",
            "--out",
            "--bucket",
            "--bucket-prefix",
            "--upload"
        ]
    );
    assert_eq!(pod_only[..2], ["--device", "tpu"]);
    assert_eq!(here[..2], ["profile", "--local"], "{pod:?}");
    let flags: Vec<&str> = here[2..].iter().map(String::as_str).collect();
    assert!(flags.contains(&"--py-spy"), "{flags:?}");
    let output = run_profile(&run, &flags);
    assert!(
        output.status.success(),
        "profile --local --endpoint score failed"
    );
    let metadata = check_run_folder(&run);
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

/// The report's py-spy section and flamegraph, checked against the raw
/// stacks: the scheduler's share is recomputed here from the lines whose
/// innermost `process` frame is the scheduler.
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

pub(crate) fn check_pyspy_report(run: &Path, raw: &str) {
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("[pyspy-flamegraph.svg](pyspy-flamegraph.svg)"));
    let svg = std::fs::read_to_string(run.join("pyspy-flamegraph.svg")).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("scheduler pid"));
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

/// The processes whose command line contains `needle`, other than this
/// test's own.
fn processes_with(needle: &str) -> Vec<String> {
    let mut res = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            res.push(format!("{name}: {cmdline}"));
        }
    }
    res
}

/// Ctrl-C once the server is up: the run fails with a message, and no
/// server process (launcher, scheduler, detokenizer) outlives it.
#[test]
fn ctrl_c_leaves_no_process_behind() {
    signal_leaves_no_process_behind(libc::SIGINT, "SIGINT");
}

/// The same for a closed terminal or a lost ssh session (SIGHUP) and for
/// SIGQUIT, which used to kill the xtask and leave the server running.
#[test]
fn hangup_and_quit_leave_no_process_behind() {
    signal_leaves_no_process_behind(libc::SIGHUP, "SIGHUP");
    signal_leaves_no_process_behind(libc::SIGQUIT, "SIGQUIT");
}

fn signal_leaves_no_process_behind(signal: libc::c_int, name: &str) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let _one = ONE_SERVER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
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
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut lines = stderr.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("[profile] server ready") {
            break;
        }
    }
    assert!(
        seen.contains("[profile] server ready"),
        "the server never came up:\n{seen}"
    );
    let needle = format!("--port {port}");
    assert!(
        !processes_with(&needle).is_empty(),
        "no server process found with `{needle}`"
    );

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
    let mut left = processes_with(&needle);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        left = processes_with(&needle);
    }
    assert!(left.is_empty(), "processes left behind: {left:#?}");
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
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
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
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
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
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
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
