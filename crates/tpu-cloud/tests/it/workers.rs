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
