//! End-to-end: `cargo xtask profile --tpu --rehearsal`, the TPU session
//! against the simulated Cloud TPU API with each worker a local folder and
//! the real sglang-jax server on the CPU. One run to completion (traces,
//! report with its Cost Summary, the node's DELETE in `logs/tpu-api.log`)
//! and one stopped with SIGTERM while the server is up (the node is still
//! deleted and no server process survives).

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::profile_local::ONE_SERVER_AT_A_TIME;

fn rehearsal(out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
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
    .env_remove("SGLPROF_TPU_API_URL")
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
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
fn rehearsal_runs_the_tpu_session_and_deletes_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let output = {
        let _one = ONE_SERVER_AT_A_TIME
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        rehearsal(&out).output().expect("the xtask binary runs")
    };
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
    let _one = ONE_SERVER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut child = rehearsal(&out)
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
    let deadline = Instant::now() + Duration::from_secs(2);
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
