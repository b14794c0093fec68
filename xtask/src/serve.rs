//! `cargo xtask serve`: a real sglang-jax server on this machine for as
//! long as its caller wants one (`profile_driver::serve::hold`). The server
//! starts as `profile --local` starts it (the cached environment installed
//! first when missing), its URL is printed on standard output once it is
//! ready, and sessions attach to it (`cargo xtask profile --attach URL`).
//! It stops when standard input closes (the caller exited, was killed, or typed Ctrl-D), on
//! SIGINT, SIGTERM, SIGHUP or SIGQUIT, and ends the run with an error when
//! the server dies by itself. A test binary ties a shared server to its own
//! life this way: it keeps the write end of the pipe, and the kernel closes
//! it however the binary ends.
//!
//! `cargo xtask stub-server` (hidden) serves `sglang_server::stub` with the
//! launch arguments of `sgl_jax.launch_server`, for tests whose rehearsals
//! need a server that behaves like one and not a real one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use profile_driver::DriveError;
use profile_driver::host::Cancel;
use profile_driver::local::LocalServer;
use profile_driver::serve::{hold, server_dir, stdin_can_close, stdin_closed};
use profile_session::plan::{Device, HostPlan, LocalOptions, Plan, defaults};

use crate::util::Lines;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What the server runs on: the CPU (with the CPU shim) or this
    /// machine's TPU chips.
    #[arg(long, value_parser = ["cpu", "tpu"], default_value = "cpu")]
    pub device: String,
    /// The sglang-jax release installed.
    #[arg(long, default_value = defaults::SGLANG_JAX_VERSION)]
    pub sglang_jax_version: String,
    /// The model to serve; the locally built tiny model by default.
    #[arg(long)]
    pub model_path: Option<String>,
    /// Server port; a free one by default.
    #[arg(long)]
    pub port: Option<u16>,
    /// Start the server with this API key.
    #[arg(long, env = "SGLPROF_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds to wait for the server to become ready.
    #[arg(long, default_value_t = defaults::READY_TIMEOUT_S)]
    pub ready_timeout: u64,
    /// The server's working directory, with its log in `server.log`; a
    /// temporary folder, removed at the end, by default.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = Device::from_name(&args.device).unwrap_or_default();
    let mut plan = Plan::new(HostPlan::Local(LocalOptions { device }));
    plan.sglang_jax_version = args.sglang_jax_version.clone();
    plan.model_path = args.model_path.clone();
    plan.port = args.port;
    plan.api_key = args.api_key.clone();
    plan.ready_timeout_s = args.ready_timeout;
    LocalServer::check(&plan, device)?;
    let (dir, _temp) = server_dir(args.dir.as_deref())?;
    let watch_stdin = stdin_can_close();
    let runtime = crate::util::runtime()?;
    let res = runtime.block_on(async move {
        let mut signals = tpu_cloud::lease::Signals::install().context("cannot handle signals")?;
        let cancel: Cancel = Box::pin(async move { signals.recv().await });
        // From the start: a caller that goes while the server starts takes
        // it along too.
        let closed = stdin_closed(watch_stdin);
        let ready = |server: &LocalServer| {
            eprintln!("[serve] log {}", server.log_path().display());
            eprintln!(
                "[serve] attach with: cargo xtask profile --attach {}",
                server.base_url()
            );
            if watch_stdin {
                eprintln!("[serve] stops when standard input closes (Ctrl-D) or on Ctrl-C");
            } else {
                eprintln!("[serve] stops on Ctrl-C or SIGTERM");
            }
            println!("{}", server.base_url());
            use std::io::Write as _;
            std::io::stdout().flush().map_err(|source| DriveError::Io {
                what: "cannot write the URL to",
                path: "standard output".into(),
                source,
            })
        };
        let why = "standard input closed";
        Ok(hold(&plan, &dir, closed, why, cancel, &Lines, ready).await?)
    });
    // The reader of standard input may still block; nothing waits for it.
    runtime.shutdown_background();
    res
}

#[derive(clap::Args, Debug)]
pub struct StubArgs {
    /// A JAX profiler output folder: each profile leaves a copy of its
    /// capture.
    #[arg(long, value_name = "DIR")]
    pub traces: PathBuf,
    /// The version `/get_server_info` reports.
    #[arg(long, default_value = "0.0.1")]
    pub version: String,
    /// Milliseconds per generated token.
    #[arg(long, default_value_t = 20)]
    pub token_ms: u64,
    /// The arguments of `python -m sgl_jax.launch_server`, after `--`.
    #[arg(last = true)]
    pub launch: Vec<String>,
}

pub fn stub(args: StubArgs) -> anyhow::Result<()> {
    let options = sglang_server::stub::StubOptions {
        args: args.launch,
        traces: args.traces,
        version: args.version,
        token_time: Duration::from_millis(args.token_ms),
    };
    crate::util::runtime()?.block_on(async move {
        let _stub = sglang_server::stub::Stub::start(options, Box::new(std::io::stdout())).await?;
        // Until killed, as a server is.
        std::future::pending::<()>().await;
        Ok(())
    })
}
