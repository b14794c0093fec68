//! The supervisor against small shell scripts: early death, stopping a
//! whole process group, and SIGKILL for a group that ignores SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use sglang_server::{Client, ClientConfig, Error, Liveness, ReadyOptions, SpawnSpec, Supervised};

fn spawn(dir: &Path, program: &str, args: &[&str]) -> Supervised {
    Supervised::spawn(&SpawnSpec {
        name: "fake server".into(),
        program: program.into(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![("FAKE_SERVER_MARK".into(), "1".into())],
        cwd: Some(dir.to_path_buf()),
        log_path: dir.join("logs/server.log"),
    })
    .unwrap()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

async fn wait_for_file(path: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn early_death_reports_exit_code_and_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(
        dir.path(),
        "sh",
        &[
            "-c",
            "echo loading weights; echo 'ValueError: no such model' >&2; exit 3",
        ],
    );
    let client = Client::new(ClientConfig {
        // Nothing listens here; the process check must win over the probe.
        base_url: "http://127.0.0.1:9".into(),
        api_key: None,
        request_timeout: Duration::from_secs(2),
        server_log: Some(server.log_path().to_path_buf()),
    })
    .unwrap();
    let options = ReadyOptions {
        timeout: Duration::from_secs(20),
        poll: Duration::from_millis(50),
        server_log: Some(server.log_path().to_path_buf()),
        settle: Duration::ZERO,
    };
    let started = Instant::now();
    let err = sglang_server::wait_until_ready(&client, &options, &server)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, Error::Died { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("exited with exit status: 3 while starting"),
        "{text}"
    );
    assert!(
        text.contains("loading weights") && text.contains("ValueError: no such model"),
        "{text}"
    );
}

#[tokio::test]
async fn python_exit_is_reported_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(
        dir.path(),
        "python3",
        &["-c", "import sys; print('bye', flush=True); sys.exit(3)"],
    );
    let started = Instant::now();
    let err = loop {
        if let Err(err) = server.check("during a test") {
            break err;
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = err.to_string();
    assert!(
        text.contains("exit status: 3 during a test") && text.contains("bye"),
        "{text}"
    );
}

#[tokio::test]
async fn stop_takes_down_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    // The leader forks a child (like the scheduler) and records its pid.
    let server = spawn(
        dir.path(),
        "sh",
        &["-c", "sleep 300 & echo $! > child.pid; wait"],
    );
    let child: u32 = wait_for_file(&dir.path().join("child.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(child));
    let report = server.stop(Duration::from_secs(5)).await;
    assert!(!report.killed, "{report:?}");
    assert!(!pid_alive(server.pid()) && !pid_alive(child));
}

/// A group paused with SIGSTOP (Ctrl-Z, or a test pausing an idle server)
/// still ends on SIGTERM, within the grace period. The leader handles
/// SIGTERM, as Python does: a stopped process acts on a handled signal only
/// once continued (an unhandled one kills it at once).
#[tokio::test]
async fn a_stopped_group_ends_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(
        dir.path(),
        "sh",
        &[
            "-c",
            "trap 'exit 0' TERM; sleep 300 & echo $! > child.pid; wait",
        ],
    );
    let child: u32 = wait_for_file(&dir.path().join("child.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    // SAFETY: pauses the group this test started.
    unsafe { libc::killpg(server.pid() as i32, libc::SIGSTOP) };
    let report = server.stop(Duration::from_secs(5)).await;
    assert!(!report.killed, "{report:?}");
    assert!(!pid_alive(server.pid()) && !pid_alive(child));
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_gets_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap '' TERM; sh -c \"trap '' TERM; echo \\$\\$ > child.pid; while :; do sleep 0.1; done\" & wait; wait";
    let server = spawn(dir.path(), "sh", &["-c", script]);
    let child: u32 = wait_for_file(&dir.path().join("child.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    let report = server.stop(Duration::from_millis(500)).await;
    assert!(report.killed, "{report:?}");
    assert!(report.status.contains("signal: 9"), "{report:?}");
    assert!(!pid_alive(server.pid()) && !pid_alive(child));
}

#[tokio::test]
async fn dropping_a_running_process_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(
        dir.path(),
        "sh",
        &["-c", "sleep 300 & echo $! > child.pid; wait"],
    );
    let child: u32 = wait_for_file(&dir.path().join("child.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    let leader = server.pid();
    drop(server);
    let started = Instant::now();
    while (pid_alive(leader) || pid_alive(child)) && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pid_alive(leader) && !pid_alive(child));
}
