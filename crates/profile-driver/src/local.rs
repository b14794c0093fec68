//! Servers on this machine, and servers that already run.
//!
//! [`LocalServer`] is a real sglang-jax server started here, on the CPU
//! (with the shim) or the machine's TPU chips, from the cached environment
//! of [`crate::pyenv`], under `sglang-server`'s supervisor (its own process
//! group, killed whole on stop, on drop and on a signal).
//! [`LocalHost`] starts one for a run and stops it at the end; a local
//! sweep starts one and runs each variant on it through [`Running`].
//! [`Running`] is a host over a server that is already up: one of ours
//! (a sweep's variants, with py-spy and the server log), or one started by
//! hand (`--attach URL`: no process of ours to record, no log).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use profile_session::Endpoint;
use profile_session::manual::ManualSteps;
use profile_session::plan::{Device, HostKind, Plan};
use profile_session::pyspy::LocalRecorder;
use profile_session::session::{self, NoHooks, SessionOutcome};
use sglang_server::{
    Client, ClientConfig, Liveness, NoLiveness, ReadyOptions, SpawnSpec, Supervised,
};

use crate::DriveError;
use crate::events::Progress;
use crate::host::{Cancel, Host, HostFacts, HostOutcome, RunContext, Server, Servers, Session};
use crate::pyenv::{self, LocalEnv, device::TpuChips};

/// How long a profile's trace files may take to appear after the stop.
const TRACE_WAIT: Duration = Duration::from_secs(120);

/// A server started on this machine, up until [`LocalServer::stop`] (or
/// until it is dropped, which kills its process group).
pub struct LocalServer {
    env: LocalEnv,
    tpu: Option<TpuChips>,
    server: Supervised,
    client: Client,
    model_path: String,
    label_token_ids: Vec<u32>,
    port: u16,
    launch_line: String,
    env_took: Duration,
    started: Instant,
}

impl LocalServer {
    /// Refuses, before anything is created, what `plan` asks of this
    /// machine that it cannot do: a TPU it does not have, a server option
    /// the release lacks.
    pub fn check(plan: &Plan, device: Device) -> Result<(), DriveError> {
        if device == Device::Tpu {
            pyenv::device::require_tpu()?;
        }
        pyenv::flavor(&plan.sglang_jax_version)?;
        plan.check_server(&plan.sglang_jax_version)?;
        Ok(())
    }

    /// Installs (once) the environment of `plan`'s release on `device`,
    /// starts the server with its log in `server_log` and its working
    /// directory `cwd`, and waits until it answers.
    pub async fn start(
        plan: &Plan,
        device: Device,
        server_log: &Path,
        cwd: &Path,
        progress: &dyn Progress,
    ) -> Result<LocalServer, DriveError> {
        let tpu = match device {
            Device::Cpu => None,
            Device::Tpu => Some(pyenv::device::require_tpu()?),
        };
        let env_started = Instant::now();
        let env = pyenv::ensure(&plan.sglang_jax_version, device, progress)?;
        let env_took = env_started.elapsed();
        plan.check_server(&env.versions.sglang_jax)?;
        let model_path = match &plan.model_path {
            Some(path) => path.clone(),
            None => env.model_dir.display().to_string(),
        };
        let label_token_ids = match plan.endpoint {
            Endpoint::Generate => Vec::new(),
            Endpoint::Score => {
                let labels = session::SCORE_LABELS;
                let ids = pyenv::label_token_ids(&env, Path::new(&model_path), &labels)?;
                progress.line(
                    "profile",
                    &format!(
                        "score labels {labels:?} are token ids {ids:?} in the model's tokenizer"
                    ),
                );
                ids
            }
        };
        let port = match plan.port {
            Some(port) => port,
            None => free_port()?,
        };
        let launch = pyenv::device::launch_spec(&env, &model_path, port, plan.api_key.clone());
        progress.line(
            "profile",
            &format!(
                "starting sglang-jax {} on 127.0.0.1:{port} ({})",
                env.flavor.version,
                device.name()
            ),
        );
        let started = Instant::now();
        let server = Supervised::spawn(&SpawnSpec {
            name: format!("sglang-jax {} server", env.flavor.version),
            program: launch.python.clone(),
            args: launch.argv(),
            env: launch.env.clone(),
            cwd: Some(cwd.to_path_buf()),
            log_path: server_log.to_path_buf(),
        })
        .map_err(DriveError::server("cannot start the server"))?;
        let client = Client::new(ClientConfig {
            base_url: format!("http://127.0.0.1:{port}"),
            api_key: plan.api_key.clone(),
            request_timeout: Duration::from_secs(120),
            server_log: Some(server_log.to_path_buf()),
        })
        .map_err(DriveError::server("cannot make the HTTP client"))?;
        let ready = ReadyOptions {
            // A TPU server compiles its precompile shapes before it is
            // ready, minutes for a real model: at least 900 s, as on a VM.
            timeout: Duration::from_secs(match device {
                Device::Cpu => plan.ready_timeout_s,
                Device::Tpu => plan.ready_timeout_s.max(900),
            }),
            poll: Duration::from_millis(500),
            server_log: Some(server_log.to_path_buf()),
            settle: Duration::from_secs(10),
        };
        let took = sglang_server::wait_until_ready(&client, &ready, &server)
            .await
            .map_err(DriveError::server("the server did not become ready"))?;
        progress.line(
            "profile",
            &format!("server ready after {:.1} s", took.as_secs_f64()),
        );
        Ok(LocalServer {
            launch_line: launch.shell_line(),
            env,
            tpu,
            server,
            client,
            model_path,
            label_token_ids,
            port,
            env_took,
            started,
        })
    }

    /// Where the server answers: `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    /// The server's process group, polled to notice that it died.
    pub fn liveness(&self) -> &dyn Liveness {
        &self.server
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// A host that runs one session on this server.
    pub fn running(&self) -> Running<'_> {
        Running {
            client: self.client.clone(),
            liveness: &self.server,
            model: Some(self.model_path.clone()),
            label_token_ids: self.label_token_ids.clone(),
            py_spy: Some((self.env.py_spy.clone(), self.server.pid())),
            server_log: Some(self.server.log_path().to_path_buf()),
            facts: self.facts(),
        }
    }

    /// What a run on this server records of it.
    fn facts(&self) -> HostFacts {
        let device = self.env.device;
        let hardware = match &self.tpu {
            Some(tpu) => tpu.hardware_label(),
            None => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                format!("CPU (local, {cores} cores)")
            }
        };
        let versions = &self.env.versions;
        HostFacts {
            model: model_label(&self.model_path),
            hardware,
            zone: "local".to_owned(),
            python_version: Some(versions.python.clone()),
            jax_version: Some(versions.jax.clone()),
            jaxlib_version: Some(versions.jaxlib.clone()),
            sglang_jax_version: Some(versions.sglang_jax.clone()),
            manual: ManualSteps {
                setup: vec![
                    format!(
                        "# the environment sglprof cached: sglang-jax {}, jax {} ({})",
                        versions.sglang_jax,
                        versions.jax,
                        self.env.flavor.jax_requirement(device)
                    ),
                    format!("{} &", self.launch_line),
                    self.ready_wait(),
                ],
                workflow: Vec::new(),
                download: Vec::new(),
                cleanup: vec!["kill %1  # the server started above".to_owned()],
            },
            base_url: format!("http://127.0.0.1:{}", self.port),
            ..HostFacts::default()
        }
    }

    /// The Setup line that waits until the server started above serves (as
    /// the session waited), so that the Profiling Workflow can follow it;
    /// it gives up when the server has exited.
    fn ready_wait(&self) -> String {
        let auth = match self.client.config().api_key {
            Some(_) => " -H \"Authorization: Bearer $SGLPROF_API_KEY\"",
            None => "",
        };
        format!(
            "until curl -sf{auth} {}/health_generate >/dev/null; do kill -0 %1 2>/dev/null || break; sleep 2; done",
            self.base_url()
        )
    }

    /// Stops the server (SIGTERM, then SIGKILL after the grace period).
    pub async fn stop(self, progress: &dyn Progress) {
        let stop = self.server.stop(Duration::from_secs(20)).await;
        // sglang-jax ends its own process tree with SIGKILL on shutdown, so
        // a "signal: 9" status alone does not mean sglprof had to kill it.
        progress.line(
            "profile",
            &format!(
                "server stopped in {:.1} s ({}{}); environment {:.1} s, server {:.1} s",
                stop.took.as_secs_f64(),
                stop.status,
                if stop.killed {
                    "; the grace period ran out and sglprof sent SIGKILL"
                } else {
                    ""
                },
                self.env_took.as_secs_f64(),
                self.started.elapsed().as_secs_f64(),
            ),
        );
    }
}

/// The local host: one server started on this machine for one run.
pub struct LocalHost {
    pub device: Device,
}

#[async_trait::async_trait]
impl Host for LocalHost {
    fn kind(&self) -> HostKind {
        HostKind::Local
    }

    fn check(&self, plan: &Plan) -> Result<(), DriveError> {
        LocalServer::check(plan, self.device)
    }

    async fn run(
        &mut self,
        run: &RunContext<'_>,
        session: &mut dyn Session,
        cancel: Cancel,
    ) -> Result<HostOutcome, DriveError> {
        let work = async {
            let server = LocalServer::start(
                run.plan,
                self.device,
                &run.folder.server_log(),
                run.folder.root(),
                &*run.progress,
            )
            .await?;
            let outcome = server.running().serve(run, session).await;
            server.stop(&*run.progress).await;
            outcome
        };
        tokio::select! {
            res = work => res,
            signal = cancel => {
                // The work future has been dropped by now, and with it the
                // supervised processes (their Drop kills their groups);
                // this is the second line.
                sglang_server::kill_all_supervised();
                Err(DriveError::Failed(format!(
                    "interrupted by {signal}; the server and its children were killed"
                )))
            }
        }
    }
}

/// A host over a server that is already up.
pub struct Running<'a> {
    pub client: Client,
    /// Polled during the workload; [`NoLiveness`] for a server not ours.
    pub liveness: &'a dyn Liveness,
    /// The model as the server names it; asked of the server when `None`.
    pub model: Option<String>,
    pub label_token_ids: Vec<u32>,
    /// py-spy and the server's pid, when the server is ours.
    pub py_spy: Option<(PathBuf, u32)>,
    /// The server's log, copied into the run folder when there is one.
    pub server_log: Option<PathBuf>,
    pub facts: HostFacts,
}

impl Running<'static> {
    /// A server started by hand, at `url`.
    pub fn attach(url: &str, plan: &Plan) -> Result<Running<'static>, DriveError> {
        let client = Client::new(ClientConfig {
            base_url: url.trim_end_matches('/').to_owned(),
            api_key: plan.api_key.clone(),
            request_timeout: Duration::from_secs(120),
            server_log: None,
        })
        .map_err(DriveError::server(format!("cannot reach {url}")))?;
        Ok(Running {
            client,
            liveness: &NoLiveness,
            model: None,
            label_token_ids: Vec::new(),
            py_spy: None,
            server_log: None,
            facts: HostFacts {
                hardware: format!(
                    "the server at {} (attached)",
                    profile_session::redact::url(url)
                ),
                zone: "attached".to_owned(),
                manual: ManualSteps {
                    setup: vec![format!(
                        "# the server was already running at {}",
                        profile_session::redact::url(url)
                    )],
                    ..ManualSteps::default()
                },
                base_url: profile_session::redact::url(url.trim_end_matches('/')),
                ..HostFacts::default()
            },
        })
    }
}

#[async_trait::async_trait]
impl Host for Running<'_> {
    fn kind(&self) -> HostKind {
        HostKind::Local
    }

    async fn run(
        &mut self,
        run: &RunContext<'_>,
        session: &mut dyn Session,
        cancel: Cancel,
    ) -> Result<HostOutcome, DriveError> {
        tokio::select! {
            res = self.serve(run, session) => res,
            signal = cancel => Err(DriveError::Failed(format!("interrupted by {signal}"))),
        }
    }
}

impl Running<'_> {
    async fn serve(
        &mut self,
        run: &RunContext<'_>,
        session: &mut dyn Session,
    ) -> Result<HostOutcome, DriveError> {
        let folder = run.folder;
        let mut facts = std::mem::take(&mut self.facts);
        if self.model.is_none() {
            // A server started by hand: wait until it answers, then ask.
            let ready = ReadyOptions {
                timeout: Duration::from_secs(run.plan.ready_timeout_s),
                poll: Duration::from_millis(500),
                server_log: None,
                settle: Duration::ZERO,
            };
            sglang_server::wait_until_ready(&self.client, &ready, &NoLiveness)
                .await
                .map_err(DriveError::server(format!(
                    "the server at {} does not answer",
                    facts.base_url
                )))?;
            let info = self
                .client
                .model_info()
                .await
                .map_err(DriveError::server("cannot read the model info"))?;
            facts.model = model_label(&info.model_path);
            self.model = Some(info.model_path);
            if run.plan.endpoint == Endpoint::Score && self.label_token_ids.is_empty() {
                return Err(DriveError::Failed(
                    "--endpoint score with --attach needs the score label token ids, which \
                     only a server sglprof starts can look up; start it with --local"
                        .to_owned(),
                ));
            }
        }
        let servers = Servers {
            model: self.model.clone().unwrap_or_default(),
            label_token_ids: self.label_token_ids.clone(),
            servers: vec![Server {
                worker: 0,
                client: self.client.clone(),
                liveness: self.liveness,
                profile_dir: folder.jax_profile().display().to_string(),
                local_profile_dir: Some(folder.jax_profile()),
                trace_wait: TRACE_WAIT,
            }],
            base_url: facts.base_url.clone(),
        };
        let outcome: Result<SessionOutcome, _> = match &self.py_spy {
            Some((program, pid)) => {
                let mut recorder = LocalRecorder::new(run.plan.py_spy, program, *pid, folder);
                let res = session.run(&servers, &mut recorder).await;
                facts.py_spy = recorder.finish().await;
                res
            }
            None => session.run(&servers, &mut NoHooks).await,
        };
        if let Some(log) = &self.server_log
            && log != &folder.server_log()
        {
            copy_log(log, &folder.server_log())?;
        }
        let outcome = outcome?;
        // The server reports its `__version__` (`0.0.1` for 0.0.1.post1);
        // the installed distribution is more precise when the two agree.
        let reported = outcome
            .server_info
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let installed = facts.sglang_jax_version.as_deref().unwrap_or_default();
        if !reported.is_empty() && !installed.starts_with(reported) {
            facts.sglang_jax_version = Some(reported.to_owned());
        }
        Ok(HostOutcome {
            session: Some(outcome),
            facts,
        })
    }
}

/// A copy of the server's log as it is now (a sweep's variants share one
/// server, whose log lives beside them).
fn copy_log(from: &Path, to: &Path) -> Result<(), DriveError> {
    let text = std::fs::read(from).map_err(|source| DriveError::Io {
        what: "cannot read",
        path: from.to_path_buf(),
        source,
    })?;
    profile_session::run_folder::write_atomic(to, &text)?;
    Ok(())
}

/// The host of a run against a server started by hand.
pub struct AttachHost {
    pub url: String,
}

#[async_trait::async_trait]
impl Host for AttachHost {
    fn kind(&self) -> HostKind {
        HostKind::Attach
    }

    async fn run(
        &mut self,
        run: &RunContext<'_>,
        session: &mut dyn Session,
        cancel: Cancel,
    ) -> Result<HostOutcome, DriveError> {
        Running::attach(&self.url, run.plan)?
            .run(run, session, cancel)
            .await
    }
}

/// A short model name for the report: the folder name of a local path.
pub fn model_label(model_path: &str) -> String {
    let path = Path::new(model_path);
    if path.is_absolute() {
        path.file_name()
            .map_or(model_path.to_owned(), |n| n.to_string_lossy().into_owned())
    } else {
        model_path.to_owned()
    }
}

/// A free TCP port on the loopback interface (the OS picks it).
pub fn free_port() -> Result<u16, DriveError> {
    let io = |source| DriveError::Io {
        what: "cannot find a free port on",
        path: PathBuf::from("127.0.0.1"),
        source,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}
