//! What every command shares: the async runtime, the printer of a run's
//! events, clap's errors as one line, and the fuzzer binary's launch.

/// The async runtime of a command: one worker thread per core this process
/// may run on, at most two (the work is waiting on servers and networks; a
/// process pinned to one core, as the load bench pins its clients, gets
/// one and no hand-offs between workers).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.min(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `cargo xtask fuzz ARGS`: the package's `fuzz` binary, built and run
/// by cargo (`$CARGO`) in the same profile, with these arguments.
#[allow(clippy::disallowed_methods)] // Runs cargo, as a dev tool does.
pub fn run_fuzz(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--bin",
            "fuzz",
            "--",
        ])
        .args(args)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        anyhow::bail!("the fuzzer stopped ({status})");
    }
    Ok(())
}

/// A clap error's first line, without its `error: ` prefix.
pub fn clap_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// Shows a run's events: one `[tag] text` line each on standard error.
pub struct Lines;

impl profile_driver::events::Progress for Lines {
    fn event(&self, event: profile_driver::events::Event<'_>) {
        if let profile_driver::events::Event::Line { tag, text } = event {
            eprintln!("[{tag}] {text}");
        }
    }
}
