//! What every command shares: the async runtime, the printer of a run's
//! events, clap's errors as one line, and the checkout the dev tools read.

use std::path::{Path, PathBuf};

/// The async runtime of a command: two worker threads (this kind of machine
/// has two cores; the work is waiting on servers and networks).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The root of the sglprof checkout the binary was built from: only the
/// dev tools (`fuzz`) use it, for the fixtures; nothing a user runs does.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
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
