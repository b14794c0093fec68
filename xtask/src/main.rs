//! `cargo xtask`: the sglprof command line.
//!
//! `main` parses flags, moves to the repository root and dispatches to one
//! module per subcommand. Each module has an `Args` struct and a `run`
//! function. See README.md for the commands and docs/ARCHITECTURE.md for how
//! they compose the library crates.

mod archive;
mod artifacts;
mod bench;
mod compare;
mod config;
mod k8s;
mod load_flags;
mod profile;
mod report;
mod serve;
mod tpu;
mod trace;
mod util;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Profile sglang-jax end to end", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a whole profiling session: server, workload, traces, report.
    // A flag given twice takes its last value: the command line's, after
    // the flags of a --config file.
    #[command(args_override_self = true)]
    Profile(Box<profile::Args>),
    /// Analyse a JAX profile folder and write report.md and summary.json.
    Report(report::Args),
    /// Start a server on this machine, print its URL, and keep it until
    /// standard input closes or a signal (then `profile --attach URL`).
    Serve(serve::Args),
    /// The stub of an sglang-jax server, for tests (`sgl_jax.launch_server`
    /// arguments after `--`).
    #[command(hide = true)]
    StubServer(serve::StubArgs),
    /// Benchmark the trace readers against their baselines.
    Bench(bench::Args),
    /// Cloud TPU VMs created by sglprof.
    Tpu(tpu::Args),
    /// Delete what a killed `profile --tpu` run left behind.
    Cleanup(tpu::CleanupArgs),
    /// Archive runs in Google Cloud Storage and fetch them back.
    Artifacts(artifacts::Args),
    /// Compare two profiles: per-operation tests, compare.md, exit 1 on a
    /// regression (2 on an error).
    Compare(compare::Args),
    /// Write the whole session as Chrome trace JSON for Perfetto.
    Trace(trace::Args),
    /// Kubernetes deployment assets and the image's environment.
    K8s(k8s::CommandArgs),
    /// Mutation-fuzz every reader over the fixtures (the `fuzz` binary of
    /// this package; `cargo xtask fuzz --help` lists its flags).
    #[command(disable_help_flag = true)]
    Fuzz {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> std::process::ExitCode {
    // The command tree is built once: at opt-level 0 that is a good part
    // of a command's start.
    let command = Cli::command();
    let argv = match config::expand(std::env::args_os().collect(), &command) {
        Ok(argv) => argv,
        Err(err) => return fail(&err.into()),
    };
    let cli = match parse_with(command, &argv) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let res = match cli.command {
        Command::Profile(args) => profile::run(&args),
        Command::Report(args) => report::run(args),
        Command::Serve(args) => serve::run(args),
        Command::StubServer(args) => serve::stub(args),
        Command::Bench(args) => bench::run(args),
        Command::Tpu(args) => tpu::run(args),
        Command::Cleanup(args) => tpu::cleanup(args),
        Command::Artifacts(args) => artifacts::run(args),
        Command::Compare(args) => return compare::main(args),
        Command::Trace(args) => trace::run(args),
        Command::K8s(args) => k8s::command(args),
        Command::Fuzz { args } => util::run_fuzz(&args),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// One line: the outermost context and every cause, joined, with any line
/// break or terminal escape from a name shown escaped.
fn fail(err: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {}", gcs_artifacts::printable(&format!("{err:#}")));
    std::process::ExitCode::FAILURE
}

/// The command line, with the flags given to `profile` noted (a flag's
/// default or environment value is not "given").
fn parse_with<T: Into<std::ffi::OsString> + Clone>(
    command: clap::Command,
    argv: &[T],
) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches as _;
    let matches = command.try_get_matches_from(argv.iter().cloned())?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (Command::Profile(args), Some(sub)) =
        (&mut cli.command, matches.subcommand_matches("profile"))
    {
        args.given = profile::given(sub);
    }
    Ok(cli)
}
