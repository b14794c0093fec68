//! The last lines of a log file, for error messages.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Returns up to `n_lines` last lines of the file at `path`, or a short note
/// when it cannot be read. Only the last 64 KiB are looked at.
pub fn log_tail(path: &Path, n_lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n_lines);
            lines[start..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}
