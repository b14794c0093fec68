//! Finding the traces: every file below a folder, and the JAX run and host
//! to analyse among them.

use std::path::{Path, PathBuf};

use trace_model::{HostTraces, TraceRun};

use crate::{Error, Note};

/// Every regular file below `dir`, following no symlinks, sorted.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut res = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let read = |source| Error::Read {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(read)? {
            let entry = entry.map_err(read)?;
            let kind = entry.file_type().map_err(read)?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                res.push(entry.path());
            }
        }
    }
    res.sort();
    Ok(res)
}

/// The run named `run` (or the latest) and its host named `host` (or the
/// first); a note when the choice was made among several.
pub(crate) fn pick<'a>(
    runs: &'a [TraceRun],
    run: Option<&str>,
    host: Option<&str>,
    input: &Path,
    notes: &mut Vec<Note>,
) -> Result<(&'a TraceRun, &'a HostTraces), Error> {
    let chosen = match run {
        Some(name) => runs.iter().find(|it| it.run == name).ok_or_else(|| {
            if runs.is_empty() {
                return Error::NoTraces(input.to_path_buf());
            }
            Error::NoRun {
                input: input.to_path_buf(),
                name: name.to_owned(),
                found: runs
                    .iter()
                    .map(|it| it.run.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?,
        // JAX names run folders by their start time, so the greatest name is
        // the latest session.
        None => runs
            .iter()
            .max_by(|a, b| a.run.cmp(&b.run))
            .ok_or_else(|| Error::NoTraces(input.to_path_buf()))?,
    };
    if run.is_none() && runs.len() > 1 {
        notes.push(Note::SeveralRuns {
            count: runs.len(),
            chosen: chosen.run.clone(),
        });
    }
    let traces = match host {
        Some(name) => chosen.hosts.iter().find(|it| it.host == name),
        None => chosen.hosts.first(),
    }
    .ok_or_else(|| Error::NoHost {
        input: input.to_path_buf(),
        run: chosen.run.clone(),
        name: host.unwrap_or_default().to_owned(),
    })?;
    if host.is_none() && chosen.hosts.len() > 1 {
        notes.push(Note::SeveralHosts {
            run: chosen.run.clone(),
            count: chosen.hosts.len(),
            chosen: traces.host.clone(),
        });
    }
    Ok((chosen, traces))
}

/// The folder TensorBoard and xprof take as `--logdir`: the one holding
/// `plugins/profile/<run>`, or the run's own folder when it is elsewhere.
pub(crate) fn logdir(run: &TraceRun) -> &Path {
    run.dir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .filter(|_| {
            run.dir
                .ends_with(Path::new("plugins/profile").join(&run.run))
        })
        .unwrap_or(&run.dir)
}

/// `2026_11_23_14_34_24` -> `2026-11-23`.
pub(crate) fn date_from_run(run: &str) -> Option<String> {
    let parts: Vec<&str> = run.split('_').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (parts.len() == 6 && digits(parts[0], 4) && digits(parts[1], 2) && digits(parts[2], 2))
        .then(|| format!("{}-{}-{}", parts[0], parts[1], parts[2]))
}
