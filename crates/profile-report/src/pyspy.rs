//! The py-spy profile a run's metadata names: where it may be, and its
//! summary for the report.

use std::path::{Component, Path, PathBuf};

use report_html::ProcessFlame;
use session_report::{PySpyProcess, PySpySection, RunMetadata};

use crate::Error;

/// Checks a py-spy file named by run metadata: a relative path of plain
/// components that leads, through no symlink, to a regular file inside
/// `run`. `Ok(None)` when nothing is there.
fn resolve(run: &Path, name: &str) -> Result<Option<PathBuf>, Error> {
    let outside = || Error::PySpyOutside {
        run: run.to_path_buf(),
        name: name.to_owned(),
    };
    let rel = Path::new(name);
    if name.is_empty()
        || !rel
            .components()
            .all(|it| matches!(it, Component::Normal(_)))
    {
        return Err(outside());
    }
    // Every step below the run folder must be a real folder, the last a
    // regular file: a symlink anywhere could lead out of the folder.
    let mut path = run.to_path_buf();
    let count = rel.components().count();
    for (i, part) in rel.components().enumerate() {
        path.push(part);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let last = i + 1 == count;
        let ok = if last {
            meta.file_type().is_file()
        } else {
            meta.file_type().is_dir()
        };
        if !ok {
            return Err(outside());
        }
    }
    Ok(Some(path))
}

/// The py-spy files the metadata names that exist, raw first.
pub(crate) fn named_files(run: &Path, meta: &RunMetadata) -> Result<Vec<PathBuf>, Error> {
    let mut res = Vec::new();
    for name in [&meta.pyspy_raw, &meta.pyspy_speedscope]
        .into_iter()
        .flatten()
    {
        res.extend(resolve(run, name)?);
    }
    Ok(res)
}

/// The flamegraph's file name, beside `report.md`.
pub(crate) const FLAMEGRAPH: &str = "pyspy-flamegraph.svg";

/// What the report takes from a py-spy profile.
pub(crate) struct Loaded {
    pub section: PySpySection,
    /// The flamegraph SVG file, drawn from the raw output.
    pub flamegraph: Option<String>,
    /// One flamegraph per process for report.html.
    pub flames: Vec<ProcessFlame>,
}

/// The stacks of each sampled process, the process's own frame dropped;
/// the process with the most samples first.
fn process_flames(profile: &trace_pyspy::Profile) -> Vec<ProcessFlame> {
    let mut res: Vec<ProcessFlame> = Vec::new();
    for line in trace_pyspy::collapsed_lines(profile) {
        let Some((stack, samples)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(samples) = samples.parse::<u64>() else {
            continue;
        };
        let mut frames = stack.split(';');
        let process = frames.next().unwrap_or_default();
        let frames: Vec<String> = frames.map(str::to_owned).collect();
        match res.iter_mut().find(|it| it.label == process) {
            Some(flame) => flame.stacks.push((frames, samples)),
            None => res.push(ProcessFlame {
                label: process.to_owned(),
                stacks: vec![(frames, samples)],
            }),
        }
    }
    let samples = |flame: &ProcessFlame| flame.stacks.iter().map(|it| it.1).sum::<u64>();
    res.sort_by_key(|it| std::cmp::Reverse(samples(it)));
    res
}

/// The report's py-spy section from the raw output if the metadata names
/// one, else from the speedscope file; with the raw output, also the
/// flamegraph SVG rendered from its collapsed stacks.
pub(crate) fn load(run: &Path, meta: &RunMetadata, top_n: usize) -> Result<Option<Loaded>, Error> {
    let (name, raw) = match (&meta.pyspy_raw, &meta.pyspy_speedscope) {
        (Some(name), _) => (name, true),
        (None, Some(name)) => (name, false),
        (None, None) => return Ok(None),
    };
    let path = resolve(run, name)?.ok_or_else(|| Error::Read {
        path: run.join(name),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    // A plain file, read no further than py-spy output can reasonably be:
    // the metadata may name `/dev/zero` or a FIFO.
    let read = |path: &Path| -> Result<Result<Vec<u8>, trace_pyspy::Error>, std::io::Error> {
        let mut file = std::fs::File::open(path)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(trace_pyspy::read_input(
            &mut file,
            trace_pyspy::MAX_INPUT_BYTES,
        ))
    };
    let bytes = read(&path)
        .map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?
        .map_err(|source| Error::PySpy {
            path: path.clone(),
            source,
        })?;
    let profile = if raw {
        let text = String::from_utf8(bytes).map_err(|_| Error::NotUtf8(path.clone()))?;
        trace_pyspy::parse_raw(&text)
    } else {
        trace_pyspy::parse_speedscope(&bytes)
    }
    .map_err(|source| Error::PySpy {
        path: path.clone(),
        source,
    })?;
    let flamegraph = if raw {
        let title = format!("py-spy: {}", meta.endpoint.as_deref().unwrap_or("session"));
        let svg =
            trace_pyspy::render_flamegraph(&profile, &title).map_err(|source| Error::PySpy {
                path: path.clone(),
                source,
            })?;
        Some(svg)
    } else {
        None
    };
    let flames = process_flames(&profile);
    let summary = trace_pyspy::summarize(&profile, top_n.min(10));
    let processes = summary
        .processes
        .into_iter()
        .map(|it| {
            let label = match (it.pid, &it.name) {
                (Some(pid), Some(name)) => format!("pid {pid} {name}"),
                (Some(pid), None) => format!("pid {pid}"),
                (None, _) => "unknown process".to_owned(),
            };
            let funcs = |list: Vec<trace_pyspy::FunctionSamples>| {
                list.into_iter()
                    .map(|f| {
                        let name = match &f.file {
                            Some(file) => format!("{} ({file})", f.name),
                            None => f.name,
                        };
                        (name, f.samples)
                    })
                    .collect()
            };
            PySpyProcess {
                label,
                role: it.role.label().to_owned(),
                samples: it.total_samples,
                wait_samples: it.wait_samples,
                top_own: funcs(it.top_own),
                top_total: funcs(it.top_total),
            }
        })
        .collect();
    Ok(Some(Loaded {
        section: PySpySection {
            source: name.clone(),
            flamegraph: flamegraph.as_ref().map(|_| FLAMEGRAPH.to_owned()),
            processes,
        },
        flamegraph,
        flames,
    }))
}
