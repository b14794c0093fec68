//! What the end-to-end tests share, for every module of this binary.
//!
//! Real servers cost this machine half a minute each to start, so few of
//! them work at once and one is shared where a test does not need its own:
//!
//! - [`real_server`] is the slot a test holds while a real sglang-jax
//!   server of its own starts or works (`profile --local`, a rehearsal with
//!   the real server, the Reproduction's launch line). There are
//!   [`REAL_SERVERS`] slots.
//! - [`shared`] is the one real server of this test binary, started on
//!   first use with `cargo xtask serve` and tied to the binary's life: the
//!   binary keeps the write end of `serve`'s standard input, which the
//!   kernel closes however the binary ends (a panic, an abort, SIGKILL), and
//!   `serve` then stops the server. One test at a time uses it, holding a
//!   slot. Its process group is paused (SIGSTOP) while no test uses it, so
//!   that its idle polling does not load the machine. Sessions only need
//!   *a* server: they attach with `profile --attach URL`
//!   ([`SharedServer::attach`]).
//! - [`stub_program`] is the program a rehearsal's workers run in place of
//!   the real server (`SGLPROF_REHEARSAL_STUB`): the xtask's hidden
//!   `stub-server` with the repository's real CPU capture as its traces.
//!
//! Sessions here use `--quiet-wait 0`: the tests themselves keep the
//! machine busy, so waiting for it to calm down would only cost 20 s each.

#![allow(clippy::disallowed_methods)] // Runs the xtask binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The xtask binary, run from the repository's root.
pub(crate) fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.current_dir(repo());
    cmd
}

/// How many real servers the tests run at once. A server's start is
/// mostly one Python thread, and a session's waits (polls, installs, grace
/// periods) leave the other core idle: two starts at once were both ready
/// after 62 s where one after the other took 37 + 47 s (this 2-core
/// machine, loaded by other work; `docs/testing.md`).
pub(crate) const REAL_SERVERS: usize = 2;

static SLOTS: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

/// A slot for a real server; freed when dropped.
pub(crate) struct RealServer(());

impl Drop for RealServer {
    fn drop(&mut self) {
        let mut taken = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        *taken -= 1;
        SLOT_FREED.notify_one();
    }
}

/// Waits for a free slot and holds it while a real server of the test's
/// own starts or works. A test holds one slot at a time.
pub(crate) fn real_server() -> RealServer {
    let mut taken = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    while *taken >= REAL_SERVERS {
        taken = SLOT_FREED.wait(taken).unwrap_or_else(|e| e.into_inner());
    }
    *taken += 1;
    RealServer(())
}

/// The shared real server of this test binary.
pub(crate) struct SharedServer {
    url: String,
    /// The server's process group (its launcher's pid).
    group: i32,
    /// `serve`'s standard input: never written, closed when this process
    /// ends.
    _stdin: ChildStdin,
    _serve: Child,
}

static SHARED: OnceLock<Result<SharedServer, String>> = OnceLock::new();
static SHARED_IN_USE: Mutex<()> = Mutex::new(());

/// The shared server, running, for as long as the guard lives.
pub(crate) struct Shared {
    server: &'static SharedServer,
    // Dropped after the pause, in this order.
    _slot: RealServer,
    _in_use: MutexGuard<'static, ()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        signal_group(self.server.group, libc::SIGSTOP);
    }
}

impl std::ops::Deref for Shared {
    type Target = SharedServer;
    fn deref(&self) -> &SharedServer {
        self.server
    }
}

/// The shared real server, started on first use; the guard gives the test
/// the server alone, holds a [`real_server`] slot, and keeps the server
/// running until it is dropped. A test holding a slot must not call it.
pub(crate) fn shared() -> Shared {
    let in_use = SHARED_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    let slot = real_server();
    let server = SHARED
        .get_or_init(start_shared)
        .as_ref()
        .unwrap_or_else(|err| panic!("the shared server did not start: {err}"));
    signal_group(server.group, libc::SIGCONT);
    Shared {
        server,
        _slot: slot,
        _in_use: in_use,
    }
}

fn start_shared() -> Result<SharedServer, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared-server");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stderr_path = dir.join("serve.stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
    let mut serve = xtask()
        .arg("serve")
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run the xtask: {e}"))?;
    let stdin = serve.stdin.take().unwrap();
    let mut url = String::new();
    let _ = BufReader::new(serve.stdout.take().unwrap()).read_line(&mut url);
    let url = url.trim().to_owned();
    let said = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    if !url.starts_with("http://") {
        return Err(format!("`cargo xtask serve` printed no URL:\n{}", said()));
    }
    let pid = serve.id() as i32;
    let group = children_of(pid)
        .into_iter()
        .next()
        .ok_or_else(|| format!("`cargo xtask serve` runs no server:\n{}", said()))?;
    Ok(SharedServer {
        url,
        group,
        _stdin: stdin,
        _serve: serve,
    })
}

impl SharedServer {
    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// `profile --attach` into `out` with `extra` flags, to its end.
    pub(crate) fn attach(&self, out: &Path, extra: &[&str]) -> Output {
        let output = xtask()
            .args([
                "profile",
                "--attach",
                &self.url,
                "--quiet-wait",
                "0",
                "--out",
            ])
            .arg(out)
            .args(extra)
            .output()
            .expect("the xtask binary runs");
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        output
    }
}

/// The processes whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut res = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|field| field.parse::<i32>().ok());
        if ppid == Some(pid) {
            res.push(child);
        }
    }
    res
}

fn signal_group(group: i32, signal: i32) {
    // SAFETY: signals the process group of the server this binary started.
    unsafe {
        libc::killpg(group, signal);
    }
}

/// The program a rehearsal's workers run in place of `python -m
/// sgl_jax.launch_server`: the hidden `stub-server` of this xtask binary,
/// leaving the repository's real CPU capture (`fixtures/jax-cpu-small`) for
/// each profile.
pub(crate) fn stub_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join("sglprof-stub-server");
        let script = format!(
            "#!/bin/sh\nexec '{}' stub-server --traces '{}' -- \"$@\"\n",
            env!("CARGO_BIN_EXE_xtask"),
            repo().join("fixtures/jax-cpu-small").display()
        );
        // Another test binary may write it at the same time: whole or not
        // at all.
        let partial = dir.join(format!("sglprof-stub-server.{}", std::process::id()));
        std::fs::write(&partial, script).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&partial, &path).unwrap();
        path
    })
}

/// Every file below `dir`, sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut res = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return res;
    };
    for entry in entries {
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

/// The processes whose command line contains `needle`, other than this
/// test binary, as `pid: command line`.
pub(crate) fn processes_with(needle: &str) -> Vec<String> {
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

/// Waits up to `limit` for `done` to hold, polling every 100 ms; whether
/// it did.
pub(crate) fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
