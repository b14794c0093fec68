//! End-to-end: `cargo xtask profile --tpu --rehearsal`, the TPU session
//! against the simulated Cloud TPU API with each worker a local folder. One
//! run to completion with the real sglang-jax server on the CPU (traces,
//! report with its Cost Summary, the py-spy profile recorded on the worker
//! and its report section, the node's DELETE in `logs/tpu-api.log`); one of
//! a two-host slice (a server per worker, traces of both hosts, a report
//! section per host) and one stopped with SIGTERM while the server is up
//! (the node is still deleted and no server process survives), both with
//! the stub server (`support::stub_program`): what they test is the slice
//! and the stop, around whatever server the workers run.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::profile_local::{check_pyspy_report, pyspy_raw};
use crate::support::{real_server, stub_program, xtask};

/// What the workers of a rehearsal run as their server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Server {
    /// sglang-jax on the CPU: hold `support::real_server` while it runs.
    Real,
    /// The stub (`SGLPROF_REHEARSAL_STUB`), light enough to run beside
    /// others.
    Stub,
}

/// The variable that gives a rehearsal's workers the stub.
const STUB_VAR: &str = "SGLPROF_REHEARSAL_STUB";

/// `profile --tpu --rehearsal` into `out`, with the suite's project and
/// zone and the real Google API address (the rehearsal's own fake serves),
/// its workers running `server`.
pub(crate) fn rehearsal(out: &Path, server: Server) -> Command {
    let mut cmd = xtask();
    cmd.args([
        "profile",
        "--tpu",
        "--rehearsal",
        "--project",
        "demo",
        "--zone",
        "us-east5-b",
        "--out",
    ])
    .arg(out)
    .env_remove("SGLPROF_TPU_API_URL");
    match server {
        Server::Real => cmd.env_remove(STUB_VAR),
        Server::Stub => cmd.env(STUB_VAR, stub_program()),
    };
    cmd
}

/// Runs a rehearsal into `out` with `args` to its end (a real server one
/// at a time).
fn rehearse(out: &Path, server: Server, args: &[&str]) -> std::process::Output {
    let _slot = (server == Server::Real).then(real_server);
    rehearsal(out, server)
        .args(args)
        .output()
        .expect("the xtask binary runs")
}

/// The DELETE of a node in the fake's log, with its status.
fn node_delete(log: &str) -> Option<&str> {
    log.lines()
        .find(|l| l.starts_with("DELETE ") && l.contains("/locations/us-east5-b/nodes/sglprof-"))
}

fn files_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut res = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return res;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            res.extend(files_named(&path, name));
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(name))
        {
            res.push(path);
        }
    }
    res
}

#[test]
fn rehearsal_runs_the_tpu_session_with_py_spy_and_deletes_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let output = rehearse(&out, Server::Real, &["--py-spy"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(output.status.success(), "{:?}", output.status);

    let traces = files_named(&out.join("artifacts/jax-profile"), ".xplane.pb");
    assert!(!traces.is_empty(), "no xplane.pb under {}", out.display());
    for trace in &traces {
        assert!(
            std::fs::metadata(trace).unwrap().len() > 0,
            "{}",
            trace.display()
        );
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Cost Summary"), "{report}");
    assert!(
        std::fs::metadata(out.join("logs/server.log"))
            .unwrap()
            .len()
            > 0
    );

    let log = std::fs::read_to_string(out.join("logs/tpu-api.log")).unwrap();
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("POST ") && first.contains("/nodes") && first.ends_with(" 200"),
        "{log}"
    );
    let delete = node_delete(&log).unwrap_or_else(|| panic!("no node DELETE in\n{log}"));
    assert!(delete.ends_with(" 200"), "{delete}");
    assert!(stderr.contains("[tpu] deleted sglprof-"), "{stderr}");

    // py-spy ran on the worker, beside its server, and came home.
    let metadata = session_report::RunMetadata::from_json(
        &std::fs::read_to_string(out.join("inputs/run_metadata.json")).unwrap(),
    )
    .unwrap();
    let raw = pyspy_raw(&out, &metadata);
    check_pyspy_report(&out, &raw);
    assert!(
        metadata.reproduction[0].contains(" --py-spy"),
        "{:?}",
        metadata.reproduction
    );
}

/// A slice of two hosts (v5p-16): a server per simulated worker, the
/// profile on both, the traces of both in one JAX run, a report section
/// per host.
#[test]
fn rehearsal_of_a_two_host_slice_profiles_every_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let output = rehearse(
        &out,
        Server::Stub,
        &[
            "--accelerator-type",
            "v5p-16",
            "--usd-per-hour",
            "1",
            "--requests",
            "2",
            "--warmup",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(output.status.success(), "{:?}", output.status);
    assert!(stderr.contains("2 local worker(s)"), "{stderr}");
    assert!(
        stderr.contains("(SGLPROF_REHEARSAL_STUB), not sglang-jax"),
        "{stderr}"
    );

    let xplanes = files_named(&out.join("artifacts/jax-profile"), ".xplane.pb");
    assert_eq!(xplanes.len(), 2, "{xplanes:?}");
    let runs: std::collections::BTreeSet<_> = xplanes.iter().map(|p| p.parent().unwrap()).collect();
    assert_eq!(runs.len(), 1, "both hosts in one JAX run: {xplanes:?}");
    let hosts: Vec<String> = xplanes
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.strip_suffix(".xplane.pb").unwrap().to_owned()
        })
        .collect();
    assert!(
        hosts[1].ends_with("-worker-1") || hosts[0].ends_with("-worker-1"),
        "{hosts:?}"
    );
    for worker in ["logs/server.log", "logs/worker-1/server.log"] {
        assert!(
            std::fs::metadata(out.join(worker)).unwrap().len() > 0,
            "{worker}"
        );
    }

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Cost Summary"), "{report}");
    assert!(report.contains("## Hosts"), "{report}");
    for host in &hosts {
        assert!(
            report.contains(&format!("\n### Host {host}\n")),
            "{host}: {report}"
        );
    }
    let log = std::fs::read_to_string(out.join("logs/tpu-api.log")).unwrap();
    let delete = node_delete(&log).unwrap_or_else(|| panic!("no node DELETE in\n{log}"));
    assert!(delete.ends_with(" 200"), "{delete}");
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

#[test]
fn rehearsal_stopped_with_sigterm_deletes_the_node_and_leaves_no_server() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // Enough requests that the session still runs when the signal comes.
    let mut child = rehearsal(&out, Server::Stub)
        .args(["--requests", "40"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the xtask binary runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut workers = None;
    let mut seen = String::new();
    // The tunnel line comes right after the launch script started the server.
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split(" local worker(s) in ").nth(1) {
            workers = Some(std::path::PathBuf::from(rest.trim()));
        }
        if line.starts_with("[tpu] tunnel ") {
            break;
        }
    }
    let workers = workers.unwrap_or_else(|| panic!("no workers folder in\n{seen}"));
    let pid_file = workers.join("worker-0/sglprof/server.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}\n{seen}", pid_file.display()))
        .trim()
        .parse()
        .unwrap();
    // The server is up (its process lives) while the session waits for it.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        assert!(alive(pid), "the server died on its own\n{seen}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: signals the xtask child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    eprintln!("{seen}");
    assert!(!status.success(), "a stopped run must fail: {status:?}");
    assert!(seen.contains("SIGTERM"), "{seen}");
    let log = std::fs::read_to_string(out.join("logs/tpu-api.log")).unwrap();
    let delete = node_delete(&log).unwrap_or_else(|| panic!("no node DELETE in\n{log}"));
    assert!(delete.ends_with(" 200"), "{delete}");
    assert!(!alive(pid), "the server {pid} survived the run");
    // SAFETY: signal 0 only asks whether the server's process group exists.
    let group = unsafe { libc::killpg(pid, 0) };
    assert_ne!(group, 0, "processes of the server's group survived");
}
