//! The local stand-in of a slice: scripts run with bash in each worker's
//! folder, files are copied like scp, cancelled commands take their whole
//! process group with them, and `terminate` ends a detached server as
//! deleting the VM would. The server here is a stand-in `python` (a bash
//! script that records its argv and sleeps): what is under test is the
//! process handling, not sglang-jax.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tpu_cloud::gcloud::Worker;
use tpu_cloud::remote::Slice;
use tpu_cloud::script::{LaunchSpec, REMOTE_API_KEY};
use tpu_cloud::workers::{LocalWorkers, Workers};

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

async fn wait_dead(pid: i32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A `python` that logs what it was given (as sglang-jax logs its server
/// arguments, the API key included) and then waits to be killed.
fn fake_python(workers: &LocalWorkers, count: u32) {
    for worker in 0..count {
        let bin = workers.home(worker).join("sglprof/venv/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let python = bin.join("python");
        std::fs::write(
            &python,
            r#"#!/bin/bash
printf '%s\n' "$@" >"$HOME/sglprof/argv"
key=
while [ $# -gt 0 ]; do
  if [ "$1" = --api-key ]; then key=$2; fi
  shift
done
echo "server_args=ServerArgs(model_path='m', api_key='$key', port=1)"
exec sleep 300
"#,
        )
        .unwrap();
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[tokio::test]
async fn scripts_run_in_each_workers_home() {
    let root = tempfile::tempdir().unwrap();
    let workers = LocalWorkers::create(root.path(), 3).unwrap();
    assert_eq!(workers.count(), 3);
    let out = workers
        .run(Worker::All, r#"echo "$SGLPROF_WORKER $(pwd) $HOME""#)
        .await
        .unwrap();
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let expected: Vec<String> = (0..3)
        .map(|w| {
            let home = workers.home(w).display().to_string();
            format!("{w} {home} {home}")
        })
        .collect();
    assert_eq!(lines, expected);
    let err = workers
        .run(Worker::One(1), "echo doomed >&2; exit 3")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("local worker 1") && text.contains("doomed"),
        "{text}"
    );
    let err = workers.run(Worker::One(7), "true").await.unwrap_err();
    assert!(err.to_string().contains("no such worker"), "{err}");
    assert_eq!(workers.server_port(2, 30000), 30002);
}

#[tokio::test]
async fn fetch_and_push_copy_like_scp() {
    let root = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let workers = LocalWorkers::create(root.path(), 2).unwrap();
    workers
        .run(
            Worker::All,
            "mkdir -p prof/plugins/profile/r1 && echo $SGLPROF_WORKER >prof/plugins/profile/r1/h.xplane.pb",
        )
        .await
        .unwrap();
    for worker in 0..2 {
        let dest = local.path().join(format!("w{worker}"));
        workers.fetch(worker, "prof", &dest, true).await.unwrap();
        let text = std::fs::read_to_string(dest.join("plugins/profile/r1/h.xplane.pb")).unwrap();
        assert_eq!(text.trim(), worker.to_string());
    }
    let err = workers
        .fetch(0, "prof", &local.path().join("flat"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a folder"), "{err}");
    let file = local.path().join("patch.txt");
    std::fs::write(&file, "p").unwrap();
    workers
        .push(&file, "sglprof/patch.txt", false)
        .await
        .unwrap();
    for worker in 0..2 {
        let pushed = workers.home(worker).join("sglprof/patch.txt");
        assert_eq!(std::fs::read_to_string(pushed).unwrap(), "p");
    }
}

/// A command given up on (Ctrl-C, a timeout) takes what it started with
/// it: the whole process group, not only bash (issue 13, item 6).
#[tokio::test]
async fn a_cancelled_command_leaves_no_process() {
    let root = tempfile::tempdir().unwrap();
    let workers = LocalWorkers::create(root.path(), 1).unwrap();
    let script = "sleep 300 & echo $! >sglprof/child.pid; echo $$ >sglprof/bash.pid; wait";
    let run = workers.run(Worker::One(0), script);
    let res = tokio::time::timeout(Duration::from_millis(1500), run).await;
    assert!(res.is_err(), "the script should still be running");
    let home = workers.home(0);
    let (child, bash) = (
        read_pid(&home.join("sglprof/child.pid")),
        read_pid(&home.join("sglprof/bash.pid")),
    );
    assert!(wait_dead(bash).await, "bash {bash} survived");
    assert!(wait_dead(child).await, "its child {child} survived");
}

/// The launch script detaches the server (it outlives the script, as on a
/// VM); the API key reaches it through a file, never the script text; the
/// fetched log is redacted; `terminate` ends the server.
#[tokio::test]
async fn launch_terminate_and_secrets_on_local_workers() {
    let root = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let workers = Arc::new(LocalWorkers::create(root.path(), 2).unwrap());
    fake_python(&workers, 2);
    let slice = Slice::new(workers.clone());
    let key = "k3y-Zz9-secret";
    let spec = LaunchSpec {
        python_args: [
            "-m",
            "sgl_jax.launch_server",
            "--api-key",
            key,
            "--port",
            "30000",
        ]
        .map(str::to_owned)
        .into(),
        env: BTreeMap::new(),
    };
    let script = tpu_cloud::script::launch_script(&spec);
    assert!(!script.contains(key), "{script}");
    assert!(script.contains(&format!("--api-key \"$(cat {REMOTE_API_KEY})\"")));
    for worker in 0..2 {
        slice.launch(worker, &spec).await.unwrap();
    }
    let mut pids = Vec::new();
    for worker in 0..2 {
        let home = workers.home(worker);
        let secret = home.join(REMOTE_API_KEY);
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), key);
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private: {mode:o}");
        // Wait until the stand-in server has written its argv.
        let argv_file = home.join("sglprof/argv");
        for _ in 0..100 {
            if argv_file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let argv = std::fs::read_to_string(&argv_file).unwrap_or_else(|err| {
            let log = std::fs::read_to_string(home.join("sglprof/server.log"));
            panic!("no argv from the server ({err}); its log: {log:?}")
        });
        assert!(argv.lines().any(|l| l == key), "the server gets the key");
        slice.ensure_alive(worker).await.unwrap();
        let log = local.path().join(format!("server-{worker}.log"));
        slice.fetch_log(worker, &log).await.unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("api_key=<redacted>"), "{text}");
        assert!(!text.contains(key), "{text}");
        pids.push(read_pid(&home.join("sglprof/server.pid")));
    }
    assert!(
        pids.iter().all(|pid| alive(*pid)),
        "servers outlive the script"
    );
    assert_eq!(workers.terminate(Duration::from_secs(5)), 2);
    for pid in pids {
        assert!(wait_dead(pid).await, "server {pid} survived terminate");
    }
    let err = slice.ensure_alive(0).await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}

/// A helper beside the server (py-spy's place): started with the server's
/// pid, stopped with SIGINT so that it writes its output, and ended by
/// `terminate` when it is still running as the node goes away. The helper
/// here is a Python stand-in that writes its file on SIGINT.
#[tokio::test]
async fn helpers_start_stop_and_end_with_the_node() {
    let root = tempfile::tempdir().unwrap();
    let workers = Arc::new(LocalWorkers::create(root.path(), 1).unwrap());
    fake_python(&workers, 1);
    let home = workers.home(0);
    let recorder = home.join("sglprof/venv/bin/recorder");
    std::fs::write(
        &recorder,
        // Python, not bash: a background job of a non-interactive bash
        // starts with SIGINT ignored, which bash cannot trap again; py-spy
        // and Python install their handler regardless.
        r#"#!/usr/bin/env python3
import signal, sys, time
def stop(*_):
    with open(sys.argv[2], "w") as out:
        out.write(f"recorded pid {sys.argv[1]}\n")
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
while True:
    time.sleep(0.1)
"#,
    )
    .unwrap();
    std::fs::set_permissions(&recorder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let slice = Slice::new(workers.clone());
    let spec = LaunchSpec {
        python_args: vec!["-m".to_owned(), "server".to_owned()],
        env: BTreeMap::new(),
    };
    slice.launch(0, &spec).await.unwrap();
    let pid = slice.server_pid(0).await.unwrap();
    assert_eq!(pid as i32, read_pid(&home.join("sglprof/server.pid")));

    let args = |out: &str| vec![pid.to_string(), out.to_owned()];
    slice
        .start_helper(0, "rec", "recorder", &args("sglprof/out.txt"), true)
        .await
        .unwrap();
    let helper = read_pid(&home.join("sglprof/rec.pid"));
    assert!(alive(helper));
    slice.stop_helper(0, "rec", 10).await.unwrap();
    assert!(wait_dead(helper).await, "the helper survived SIGINT");
    let out = std::fs::read_to_string(home.join("sglprof/out.txt")).unwrap();
    assert_eq!(out.trim(), format!("recorded pid {pid}"));
    assert!(!home.join("sglprof/rec.pid").exists());
    // Stopping one that is gone is not an error.
    slice.stop_helper(0, "rec", 10).await.unwrap();

    // A helper that fails at once fails its start, with its log.
    let err = slice
        .start_helper(0, "bad", "no-such-program", &[], false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exited at once"), "{err}");

    // One left running ends with the node, as the server does.
    slice
        .start_helper(0, "left", "recorder", &args("sglprof/left.txt"), true)
        .await
        .unwrap();
    let left = read_pid(&home.join("sglprof/left.pid"));
    assert!(workers.terminate(Duration::from_secs(5)) >= 2);
    assert!(
        wait_dead(left).await,
        "the helper {left} survived terminate"
    );
    assert!(wait_dead(pid as i32).await, "the server survived terminate");
}

/// Deleting the VM ends everything on it, not only the servers whose pid
/// file was written: a process a script detached without one (a launch
/// script cut short between `setsid` and `echo $!`) must not survive
/// `terminate`.
#[tokio::test]
async fn terminate_ends_processes_without_a_pid_file() {
    let root = tempfile::tempdir().unwrap();
    let workers = LocalWorkers::create(root.path(), 2).unwrap();
    let script = "setsid nohup sleep 300 >/dev/null 2>&1 </dev/null & echo $! >stray.pid";
    workers.run(Worker::All, script).await.unwrap();
    let strays: Vec<i32> = (0..2)
        .map(|w| read_pid(&workers.home(w).join("stray.pid")))
        .collect();
    assert!(strays.iter().all(|pid| alive(*pid)), "detached on purpose");
    assert_eq!(workers.terminate(Duration::from_secs(5)), 2);
    for pid in strays {
        assert!(wait_dead(pid).await, "{pid} survived terminate");
    }
    assert_eq!(workers.terminate(Duration::from_secs(5)), 0);
}

/// The rehearsal's worker faults: copies that fail as a dropped scp does,
/// and a server killed once its log shows the markers in order.
#[tokio::test]
async fn rehearsed_faults_fail_copies_and_kill_the_server() {
    let root = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let workers = LocalWorkers::create(root.path(), 1)
        .unwrap()
        .with_failing_fetch("Connection closed");
    workers.run(Worker::One(0), "echo x >f").await.unwrap();
    let err = workers
        .fetch(0, "f", &local.path().join("f"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("scp from local worker 0"), "{err}");
    assert!(err.to_string().contains("Connection closed"), "{err}");

    fake_python(&workers, 1);
    workers.crash_server_after(0, &["start", "work"]);
    let slice = Slice::new(Arc::new(workers));
    let spec = LaunchSpec {
        python_args: vec!["-m".to_owned(), "server".to_owned()],
        env: BTreeMap::new(),
    };
    slice.launch(0, &spec).await.unwrap();
    let home = root.path().join("worker-0");
    let pid = read_pid(&home.join("sglprof/server.pid"));
    let log = home.join("sglprof/server.log");
    // Out of order: the server lives on.
    std::fs::write(&log, "work\nstart\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(alive(pid), "killed before the markers showed in order");
    std::fs::write(&log, "work\nstart\nmore work\n").unwrap();
    assert!(wait_dead(pid).await, "the server {pid} was not killed");
}
