//! `profile --tpu --rehearsal`: the TPU run on this machine. The Cloud TPU
//! API is `tpu_cloud::fake::FakeTpu` on loopback (one `METHOD PATH STATUS`
//! line per call in `logs/tpu-api.log`), the hosts of the slice are `tpu_cloud::workers::LocalWorkers` (a folder each,
//! their venv linked to the cached CPU environment of `crate::pyenv`),
//! and everything else is the code path of a real `--tpu` run: the lease,
//! the install and launch scripts, the session, the copy of the traces, the
//! Cost Summary and the DELETE. Deleting the node ends the workers'
//! processes, as deleting a VM does.
//!
//! `--rehearse-fault` switches faults on in the fake (a stockout, a slow
//! create) or in the workers (pip refusing, the server killed mid-workload,
//! copies home failing), so that a user can see what a real run does when
//! that happens; `docs/robustness.md` has the matrix.
//!
//! For tests only, [`STUB_VAR`] names a program that the workers run in
//! place of `python -m sgl_jax.launch_server` (with the same arguments):
//! their venv is then a copy of links to the cached one whose `python`
//! starts that program for the launcher and the real interpreter for
//! everything else (pip, the version report, the label lookup). The fault
//! matrix runs its phases around a stub server this way
//! (`sglang_server::stub`, served by the xtask's hidden `stub-server`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use profile_session::plan::{Device, RehearseFault};
use tpu_cloud::fake::{FakeConfig, FakeTpu};
use tpu_cloud::workers::LocalWorkers;
use tpu_cloud::{ClientConfig, SystemClock, Timing, TpuClient};

use crate::DriveError;
use crate::events::Progress;
use crate::pyenv::{self, LocalEnv};

/// The bearer token the fake API accepts (not a secret).
const TOKEN: &str = "sglprof-rehearsal";

/// How long a worker's server gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How late the fake answers the create call with `--rehearse-fault slow-create`.
const SLOW_CREATE: Duration = Duration::from_secs(10);

/// The environment variable naming the program the workers run instead of
/// the real server (tests only; see the module documentation).
pub const STUB_VAR: &str = "SGLPROF_REHEARSAL_STUB";

/// The simulated cloud and slice of one rehearsal.
pub struct Rehearsal {
    pub fake: FakeTpu,
    pub workers: Arc<LocalWorkers>,
    pub env: LocalEnv,
    /// Holds the workers' folders; removed when the rehearsal ends.
    _root: tempfile::TempDir,
}

impl Rehearsal {
    /// Starts the fake API for `project`/`zone`, logging to
    /// `<run_dir>/logs/tpu-api.log`, and makes `hosts` local workers whose
    /// venv is the cached CPU environment of sglang-jax `version`, with
    /// `faults` switched on in the fake and the workers.
    pub async fn start(
        project: &str,
        zone: &str,
        hosts: u32,
        version: &str,
        run_dir: &Path,
        faults: &[RehearseFault],
        progress: &dyn Progress,
    ) -> Result<Rehearsal, DriveError> {
        let env = pyenv::ensure(version, Device::Cpu, progress)?;
        let logs = run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| DriveError::Io {
            what: "cannot create",
            path: logs.clone(),
            source,
        })?;
        let fake = FakeTpu::start_with(FakeConfig {
            project: project.to_owned(),
            zones: vec![zone.to_owned()],
            token: TOKEN.to_owned(),
            log: Some(logs.join("tpu-api.log")),
        })
        .await;
        let root = tempfile::Builder::new()
            .prefix("sglprof-rehearsal-")
            .tempdir()
            .map_err(|source| DriveError::Io {
                what: "cannot create the folder of the simulated workers in",
                path: std::env::temp_dir(),
                source,
            })?;
        let mut workers = LocalWorkers::create(root.path(), hosts)
            .map_err(DriveError::cloud("cannot make the simulated workers"))?;
        let venv = match std::env::var_os(STUB_VAR).filter(|v| !v.is_empty()) {
            Some(stub) => {
                let venv = stub_venv(root.path(), &env.venv, Path::new(&stub))?;
                progress.line(
                    "rehearsal",
                    &format!(
                        "the workers' server is {} ({STUB_VAR}), not sglang-jax; \
                         pip and Python are the cached environment's",
                        Path::new(&stub).display()
                    ),
                );
                venv
            }
            None => env.venv.clone(),
        };
        workers.seed_venv(&venv).map_err(DriveError::cloud(
            "cannot give the workers their environment",
        ))?;
        for fault in faults {
            workers = inject(&fake, workers, root.path(), *fault)?;
        }
        let workers = Arc::new(workers);
        if faults.contains(&RehearseFault::ServerExit) {
            // The profile has started and a first profiled request was
            // answered: the server dies in the middle of the workload.
            workers.crash_server_after(0, &["Profiling starts", "POST /generate"]);
        }
        let on_delete = workers.clone();
        fake.on_node_deleted(Arc::new(move |_name: &str| {
            on_delete.terminate(GRACE);
        }));
        progress.line(
            "rehearsal",
            &format!(
                "fake Cloud TPU API at {}, {hosts} local worker(s) in {}",
                fake.url(),
                root.path().display()
            ),
        );
        Ok(Rehearsal {
            fake,
            workers,
            env,
            _root: root,
        })
    }

    /// A client of the fake API, with its token provider.
    pub fn client(&self) -> Result<TpuClient, DriveError> {
        // Google's operations take minutes and are polled every 5 to 30 s;
        // the fake's finish after a set number of polls, so polling it as
        // often would only make the rehearsal wait.
        let mut timing = Timing::production();
        timing.poll.initial = Duration::from_secs(1);
        timing.poll.max = Duration::from_secs(4);
        let config = ClientConfig {
            base_url: self.fake.url(),
            timing,
        };
        TpuClient::new(config, self.fake.tokens(), Arc::new(SystemClock)).map_err(
            DriveError::cloud("cannot reach the simulated Cloud TPU API"),
        )
    }

    /// Where each worker's server writes the trace of `run_id`: relative
    /// to the worker's home (the servers' working directory), so inside
    /// it, as `/tmp/...` is inside a VM.
    pub fn profile_dir(&self, run_id: &str) -> String {
        format!("sglprof-profile/{run_id}")
    }

    /// Ends whatever the workers still run (a no-op after the DELETE).
    pub fn shutdown(&self, progress: &dyn Progress) {
        let left = self.workers.terminate(GRACE);
        if left > 0 {
            progress.line(
                "rehearsal",
                &format!("ended {left} server process group(s) left on the workers"),
            );
        }
    }
}

/// Makes `<root>/stub-venv`: links to every entry of `venv` but `bin`,
/// and a `bin` of links to every entry of `venv/bin` but `python`, which is
/// a script that runs `stub` for `-m sgl_jax.launch_server` and the real
/// interpreter otherwise. Returns the folder.
fn stub_venv(root: &Path, venv: &Path, stub: &Path) -> Result<PathBuf, DriveError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| DriveError::Io { what, path, source }
    };
    let links = |from: &Path, to: &Path, skip: &str| -> Result<(), DriveError> {
        std::fs::create_dir_all(to).map_err(io("cannot create", to))?;
        for entry in std::fs::read_dir(from).map_err(io("cannot read", from))? {
            let entry = entry.map_err(io("cannot read", from))?;
            if entry.file_name() == skip {
                continue;
            }
            let link = to.join(entry.file_name());
            std::os::unix::fs::symlink(entry.path(), &link).map_err(io("cannot link", &link))?;
        }
        Ok(())
    };
    let res = root.join("stub-venv");
    links(venv, &res, "bin")?;
    let bin = res.join("bin");
    links(&venv.join("bin"), &bin, "python")?;
    let quote = |path: &Path| tpu_cloud::script::sh_quote(&path.display().to_string());
    let script = format!(
        "#!/bin/sh\n\
         # sglprof rehearsal ({STUB_VAR}): the server is a stub; the rest is Python.\n\
         if [ \"$1\" = -m ] && [ \"$2\" = sgl_jax.launch_server ]; then\n  \
         exec {} \"$@\"\n\
         fi\n\
         exec {} \"$@\"\n",
        quote(stub),
        quote(&venv.join("bin").join("python")),
    );
    let python = bin.join("python");
    std::fs::write(&python, script).map_err(io("cannot write", &python))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755))
        .map_err(io("cannot make executable", &python))?;
    Ok(res)
}

/// Switches `fault` on in the fake API or the workers.
fn inject(
    fake: &FakeTpu,
    workers: LocalWorkers,
    root: &Path,
    fault: RehearseFault,
) -> Result<LocalWorkers, DriveError> {
    Ok(match fault {
        RehearseFault::Stockout => {
            fake.world().stockout = true;
            workers
        }
        RehearseFault::SlowCreate => {
            fake.world().create_delay = Some(SLOW_CREATE);
            workers
        }
        RehearseFault::Install => {
            // pip itself refuses: a constraint no release satisfies, as
            // for a version that does not exist, and no index to ask.
            let constraint = root.join("rehearsed-install-fault.txt");
            std::fs::write(&constraint, "sglang-jax<0\n").map_err(|source| DriveError::Io {
                what: "cannot write",
                path: constraint.clone(),
                source,
            })?;
            workers
                .with_env("PIP_CONSTRAINT", &constraint.display().to_string())
                .with_env("PIP_NO_INDEX", "1")
        }
        RehearseFault::ServerExit => workers,
        RehearseFault::Scp => {
            workers.with_failing_fetch("Connection closed by remote host (rehearsed fault)")
        }
    })
}
