//! Where the JAX profiler puts a session's files, as pure functions over a
//! listing of paths (the caller walks the directory).
//!
//! `jax.profiler.stop_trace` writes
//! `<output_dir>/plugins/profile/<run>/<host>.trace.json.gz` and
//! `<host>.xplane.pb`, one pair per host, one `<run>` folder per session.

use std::path::{Path, PathBuf};

/// The kinds of file a JAX profiler run writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFileKind {
    /// `<host>.trace.json.gz`
    ChromeGz,
    /// `<host>.trace.json`, a decompressed copy.
    ChromeJson,
    /// `<host>.xplane.pb`
    XPlane,
}

impl TraceFileKind {
    fn suffix(self) -> &'static str {
        match self {
            TraceFileKind::ChromeGz => ".trace.json.gz",
            TraceFileKind::ChromeJson => ".trace.json",
            TraceFileKind::XPlane => ".xplane.pb",
        }
    }
}

/// Splits a file name into its host and kind, or `None` for files the
/// profiler did not write.
pub fn classify(file_name: &str) -> Option<(&str, TraceFileKind)> {
    [
        TraceFileKind::ChromeGz,
        TraceFileKind::ChromeJson,
        TraceFileKind::XPlane,
    ]
    .into_iter()
    .find_map(|kind| {
        let host = file_name.strip_suffix(kind.suffix())?;
        (!host.is_empty()).then_some((host, kind))
    })
}

/// The trace files of one host in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTraces {
    pub host: String,
    /// The compressed Chrome trace, or the decompressed one when only that
    /// exists.
    pub trace_json: Option<PathBuf>,
    pub xplane: Option<PathBuf>,
}

/// One profiler session: a `plugins/profile/<run>/` folder, or any folder
/// holding trace files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRun {
    /// The folder's name, which JAX sets to `YYYY_MM_DD_HH_MM_SS`.
    pub run: String,
    pub dir: PathBuf,
    /// Sorted by host name.
    pub hosts: Vec<HostTraces>,
}

/// Groups trace files by folder and host. Runs come out sorted by folder, so
/// the result does not depend on the order of the listing. Files that are
/// not trace files are ignored.
pub fn locate(files: &[PathBuf]) -> Vec<TraceRun> {
    let mut runs: Vec<TraceRun> = Vec::new();
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    for path in sorted {
        let Some((host, kind)) = path
            .file_name()
            .and_then(|it| it.to_str())
            .and_then(classify)
        else {
            continue;
        };
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let run_idx = match runs.iter().position(|it| it.dir == dir) {
            Some(idx) => idx,
            None => {
                let run = dir
                    .file_name()
                    .and_then(|it| it.to_str())
                    .unwrap_or("")
                    .to_owned();
                runs.push(TraceRun {
                    run,
                    dir: dir.clone(),
                    hosts: Vec::new(),
                });
                runs.len() - 1
            }
        };
        let hosts = &mut runs[run_idx].hosts;
        let host_idx = match hosts.iter().position(|it| it.host == host) {
            Some(idx) => idx,
            None => {
                hosts.push(HostTraces {
                    host: host.to_owned(),
                    ..HostTraces::default()
                });
                hosts.len() - 1
            }
        };
        let entry = &mut hosts[host_idx];
        match kind {
            TraceFileKind::ChromeGz => entry.trace_json = Some(path.clone()),
            // The compressed file wins over a decompressed copy.
            TraceFileKind::ChromeJson => {
                if entry.trace_json.is_none() {
                    entry.trace_json = Some(path.clone())
                }
            }
            TraceFileKind::XPlane => entry.xplane = Some(path.clone()),
        }
    }
    for run in &mut runs {
        run.hosts.sort_by(|a, b| a.host.cmp(&b.host));
    }
    runs.sort_by(|a, b| a.dir.cmp(&b.dir));
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(files: &[&str], expect: &str) {
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        let mut actual = String::new();
        for run in locate(&files) {
            actual.push_str(&format!("run {} in {}\n", run.run, run.dir.display()));
            for host in run.hosts {
                let show = |it: &Option<PathBuf>| {
                    it.as_ref()
                        .map_or("-".to_owned(), |p| p.display().to_string())
                };
                actual.push_str(&format!(
                    "  {}: json={} xplane={}\n",
                    host.host,
                    show(&host.trace_json),
                    show(&host.xplane)
                ));
            }
        }
        assert_eq!(actual, expect);
    }

    #[test]
    fn groups_by_run_and_host() {
        check(
            &[
                "p/plugins/profile/2026_02_05_20_15_30/t1v-w-1.xplane.pb",
                "p/plugins/profile/2026_02_05_20_15_30/t1v-w-0.trace.json.gz",
                "p/plugins/profile/2026_02_05_20_15_30/t1v-w-0.xplane.pb",
                "p/plugins/profile/2026_02_05_19_00_00/vm.trace.json",
                "p/plugins/profile/2026_02_05_19_00_00/vm.trace.json.gz",
                "p/plugins/profile/2026_02_05_19_00_00/ALL_HOSTS.op_stats.pb",
                "p/server.log",
            ],
            "run 2026_02_05_19_00_00 in p/plugins/profile/2026_02_05_19_00_00
  vm: json=p/plugins/profile/2026_02_05_19_00_00/vm.trace.json.gz xplane=-
run 2026_02_05_20_15_30 in p/plugins/profile/2026_02_05_20_15_30
  t1v-w-0: json=p/plugins/profile/2026_02_05_20_15_30/t1v-w-0.trace.json.gz xplane=p/plugins/profile/2026_02_05_20_15_30/t1v-w-0.xplane.pb
  t1v-w-1: json=- xplane=p/plugins/profile/2026_02_05_20_15_30/t1v-w-1.xplane.pb
",
        );
    }

    #[test]
    fn ignores_other_files() {
        check(&[".trace.json.gz", "notes.txt", "x.pb"], "");
    }
}
