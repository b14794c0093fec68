//! The fault matrix of the TPU session (docs/robustness.md), run through
//! `cargo xtask profile --tpu --rehearsal`: a signal (INT, TERM, HUP) in
//! each phase, a failing install, a server that dies, a stockout (plain
//! and queued), an scp that fails. Whatever happens, the node is deleted
//! before the process exits (its DELETE is in `logs/tpu-api.log`), the
//! state file says `deleted`, no process runs on the simulated workers
//! any more, and the run ends with one `error:` line that says what
//! happened and what the run folder kept.
//!
//! Signals are sent when the run's progress lines on stderr show the
//! phase; faults come from `--rehearse-fault`, as a user would ask for
//! them. Phases before the server starts need no server. What a phase with
//! a server tests is the run around it, so the workers run the stub server
//! (`rehearsal::Server::Stub`), several rehearsals at once; one real server
//! per kind of fault stays: a signal in the middle of a real workload, and
//! the server that dies (a real sglang-jax killed mid-workload).

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::rehearsal::Server;
use crate::support::real_server;

const SIGNALS: [(i32, &str); 3] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
];

/// Progress lines that open each phase of the session.
const CREATE: &str = "[tpu] creating node";
const READY: &str = "accepted; waiting for it to be READY";
const INSTALL: &str = "[tpu] installing";
const SERVER_START: &str = "[tpu] starting sglang-jax";
const WORKLOAD: &str = "[session] POST /start_profile";
const COLLECTION: &str = "[tpu] collecting the trace files";

/// One rehearsal in flight, its stderr read line by line.
struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
    /// The folder of the simulated workers, from the rehearsal's first line.
    workers: Option<PathBuf>,
    out: PathBuf,
    _tmp: tempfile::TempDir,
}

/// What a finished rehearsal left.
struct Ended {
    success: bool,
    stderr: String,
    out: PathBuf,
    workers: Option<PathBuf>,
    _tmp: tempfile::TempDir,
}

impl Run {
    fn start(server: Server, extra: &[&str]) -> Run {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let mut child = crate::rehearsal::rehearsal(&out, server)
            .args(["--requests", "8", "--concurrency", "2", "--warmup", "2"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the xtask binary runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            seen: String::new(),
            workers: None,
            out,
            _tmp: tmp,
        }
    }

    fn note(&mut self, line: String) {
        if let Some(rest) = line.split(" local worker(s) in ").nth(1) {
            self.workers = Some(PathBuf::from(rest.trim()));
        }
        self.seen.push_str(&line);
        self.seen.push('\n');
    }

    /// Reads stderr until a line contains `needle`; panics after `limit`
    /// or when the run ends first.
    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.note(line);
                    if found {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no `{needle}` line within {limit:?}:\n{}", self.seen);
                }
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signals the xtask child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the run to end (at most `limit`) and reads the rest of
    /// its stderr.
    fn end(mut self, limit: Duration) -> Ended {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not end within {limit:?}:\n{}", self.seen);
            }
            while let Ok(line) = self.lines.try_recv() {
                self.note(line);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.note(line);
        }
        eprintln!("{}", self.seen);
        Ended {
            success: status.success(),
            stderr: self.seen,
            out: self.out,
            workers: self.workers,
            _tmp: self._tmp,
        }
    }
}

impl Ended {
    /// The run failed with one last line that names `what` happened, the
    /// VM and the kept run folder; the state file says `deleted`; nothing
    /// runs on the workers. Returns the last line.
    fn failed_cleanly(&self, what: &str) -> String {
        assert!(!self.success, "the run should fail:\n{}", self.stderr);
        let last = self.stderr.lines().last().unwrap_or_default().to_owned();
        assert!(last.starts_with("error: "), "{last}");
        assert!(last.contains(what), "`{what}` not in the last line: {last}");
        let kept = format!("kept {} (", self.out.display());
        assert!(
            last.contains(&kept),
            "`{kept}` not in the last line: {last}"
        );
        assert!(
            last.contains("deleted sglprof-") || last.contains("no VM left"),
            "{last}"
        );
        let state = std::fs::read_to_string(self.out.join("tpu-state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert_eq!(state["phase"], "deleted", "{state}");
        assert!(state["deleted_at"].is_string(), "{state}");
        self.no_process_on_workers();
        last
    }

    /// The node's DELETE, answered 200, is in the fake API's log.
    fn node_deleted(&self) {
        let log = self.api_log();
        let delete = log
            .lines()
            .find(|l| l.starts_with("DELETE ") && l.contains("/nodes/sglprof-"))
            .unwrap_or_else(|| panic!("no node DELETE in\n{log}"));
        assert!(delete.ends_with(" 200"), "{delete}");
    }

    fn api_log(&self) -> String {
        std::fs::read_to_string(self.out.join("logs/tpu-api.log")).unwrap()
    }

    /// No process has a worker's folder as its `HOME` (every script and
    /// what it starts runs with it), allowing a moment for the kernel to
    /// reap what was killed last.
    fn no_process_on_workers(&self) {
        let root = self
            .workers
            .as_ref()
            .unwrap_or_else(|| panic!("no workers folder in\n{}", self.stderr));
        let prefix = format!("HOME={}/", root.display());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = processes_with_env_prefix(&prefix);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes survived on the workers: {left:?}\n{}",
                self.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Live processes with an environment variable starting with `prefix`,
/// as `pid command`.
fn processes_with_env_prefix(prefix: &str) -> Vec<String> {
    let mut res = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        if state.is_empty() || state.starts_with('Z') || state.starts_with('X') {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(prefix.as_bytes()))
        {
            let cmd = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
            res.push(format!("{pid} {}", cmd.replace('\0', " ")));
        }
    }
    res
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() { files_under(&path) } else { 1 }
            })
            .sum()
    })
}

/// Runs until `phase` shows, sends `signal`, and checks the clean end.
fn signal_in_phase(
    server: Server,
    extra: &[&str],
    phase: &str,
    (signal, name): (i32, &str),
    limit: Duration,
) {
    let _slot = (server == Server::Real).then(real_server);
    let mut run = Run::start(server, extra);
    run.wait_for(phase, limit);
    run.signal(signal);
    let ended = run.end(Duration::from_secs(120));
    assert!(
        ended.stderr.contains(&format!("[tpu] {name}: stopping")),
        "{}",
        ended.stderr
    );
    ended.failed_cleanly(&format!("interrupted by {name}"));
    ended.node_deleted();
}

/// Runs every case at once, each on a thread of its own; fails, once all
/// have ended, when one did.
fn at_once(cases: Vec<Box<dyn FnOnce() + Send + '_>>) {
    std::thread::scope(|scope| {
        for case in cases {
            scope.spawn(case);
        }
    });
}

/// Create (the call still unanswered), READY (the create operation
/// running) and install: every signal, no server needed; the nine runs
/// at once.
#[test]
fn signals_before_the_server_starts_delete_the_node() {
    let mut cases: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for signal in SIGNALS {
        let slow: &[&str] = &["--rehearse-fault", "slow-create"];
        for (extra, phase) in [(slow, CREATE), (&[][..], READY), (&[][..], INSTALL)] {
            cases.push(Box::new(move || {
                signal_in_phase(Server::Stub, extra, phase, signal, Duration::from_secs(300));
            }));
        }
    }
    at_once(cases);
}

/// Server start, workload and collection, each with every signal: nine
/// runs (the phases differ in what must be stopped; the signals take one
/// path, which this shows rather than assumes). Eight run the stub server,
/// at once; SIGINT in the middle of the workload runs the real one, whose
/// whole process tree on the worker must end.
#[test]
fn signals_while_the_server_runs_delete_the_node_and_end_the_server() {
    let mut cases: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for phase in [SERVER_START, WORKLOAD, COLLECTION] {
        for signal in SIGNALS {
            let server = if phase == WORKLOAD && signal.0 == libc::SIGINT {
                Server::Real
            } else {
                Server::Stub
            };
            cases.push(Box::new(move || {
                signal_in_phase(server, &[], phase, signal, Duration::from_secs(900));
            }));
        }
    }
    at_once(cases);
}

#[test]
fn a_failing_install_deletes_the_node() {
    let run = Run::start(Server::Stub, &["--rehearse-fault", "install"]);
    let ended = run.end(Duration::from_secs(300));
    let last = ended.failed_cleanly("ResolutionImpossible");
    assert!(last.contains("the TPU session on sglprof-"), "{last}");
    ended.node_deleted();
}

#[test]
fn a_server_that_dies_mid_workload_is_reported_with_its_log() {
    let _slot = real_server();
    let run = Run::start(Server::Real, &["--rehearse-fault", "server-exit"]);
    let ended = run.end(Duration::from_secs(900));
    // The cause is the server, named with the end of its log. Requests
    // that fail do not end the session (each is recorded with its error),
    // so what fails first is the call after the workload: stopping the
    // profiler.
    let last = ended.failed_cleanly("exited (cannot stop the profiler)");
    assert!(last.contains("POST /generate"), "{last}");
    assert!(
        last.contains("logs/ (server.log"),
        "the log is kept: {last}"
    );
    let log = std::fs::read_to_string(ended.out.join("logs/server.log")).unwrap();
    assert!(log.contains("Profiling starts"), "{log}");
    ended.node_deleted();
}

/// Without a queue the create fails at once with Google's stockout error
/// and nothing is left; through a queued resource the request waits for
/// capacity, and a Ctrl-C then deletes the queued resource.
#[test]
fn a_stockout_fails_plainly_or_waits_in_the_queue_until_stopped() {
    let run = Run::start(Server::Stub, &["--rehearse-fault", "stockout"]);
    let ended = run.end(Duration::from_secs(300));
    let last = ended.failed_cleanly("no TPU capacity in us-east5-b");
    assert!(last.contains("no VM left"), "{last}");
    // Nothing to delete: the last call checks that no node exists.
    let log = ended.api_log();
    assert!(!log.contains("DELETE "), "{log}");
    let check = log.lines().last().unwrap_or_default();
    assert!(
        check.starts_with("GET ") && check.contains("/nodes/sglprof-") && check.ends_with(" 404"),
        "{log}"
    );

    let mut run = Run::start(Server::Stub, &["--queued", "--rehearse-fault", "stockout"]);
    run.wait_for("waiting for capacity", Duration::from_secs(300));
    run.signal(libc::SIGINT);
    let ended = run.end(Duration::from_secs(120));
    ended.failed_cleanly("interrupted by SIGINT");
    let log = ended.api_log();
    let delete = log
        .lines()
        .find(|l| l.starts_with("DELETE ") && l.contains("/queuedResources/sglprof-"))
        .unwrap_or_else(|| panic!("no queued resource DELETE in\n{log}"));
    assert!(delete.ends_with(" 200"), "{delete}");
}

#[test]
fn an_scp_failure_while_copying_traces_deletes_the_node() {
    let run = Run::start(Server::Stub, &["--rehearse-fault", "scp"]);
    let ended = run.end(Duration::from_secs(900));
    let last = ended.failed_cleanly("scp from local worker 0");
    assert!(ended.stderr.contains(COLLECTION), "{}", ended.stderr);
    ended.node_deleted();
    // The traces stayed on the deleted VM; the inputs and the API log are home.
    assert_eq!(files_under(&ended.out.join("artifacts")), 0, "{last}");
    assert!(
        ended.out.join("inputs/server_args.json").is_file(),
        "{last}"
    );
}
