//! The traces of every host of a session in one JAX run folder:
//! `artifacts/jax-profile/plugins/profile/<run>/<host>.{xplane.pb,trace.json.gz}`,
//! the layout `profile-report` reads (one run, one entry per host).
//!
//! Each host's profiler names its run folder after its own clock, so the
//! hosts of one slice can disagree by a second; and hosts that share a
//! name (the simulated workers of a rehearsal all run on this machine)
//! would overwrite each other. [`Collector::place`] moves what one worker
//! wrote into the run folder of the first worker placed, renaming a host
//! that is already taken to `<host>-worker-<i>`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::run_folder::RunFolderError;

/// Places the traces of several workers into one run folder.
#[derive(Debug)]
pub struct Collector {
    jax_profile: PathBuf,
    run: Option<String>,
    hosts: BTreeSet<String>,
}

/// What one worker contributed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The host name in the run folder.
    pub host: String,
    pub files: Vec<PathBuf>,
}

impl Collector {
    /// Collects into `jax_profile` (a run folder's `artifacts/jax-profile`).
    pub fn new(jax_profile: &Path) -> Collector {
        Collector {
            jax_profile: jax_profile.to_path_buf(),
            run: None,
            hosts: BTreeSet::new(),
        }
    }

    /// Moves the trace files of the latest JAX run under `staging` (what
    /// `worker` wrote, copied home) into the common run folder, and
    /// removes `staging`. Returns one entry per host the worker wrote.
    pub fn place(&mut self, staging: &Path, worker: u32) -> Result<Vec<Placed>, RunFolderError> {
        let files = crate::run_folder::files_if_any(staging)?;
        let runs = trace_model::locate(&files);
        let mut res = Vec::new();
        if let Some(run) = runs.iter().max_by(|a, b| a.run.cmp(&b.run)) {
            let name = self.run.get_or_insert_with(|| run.run.clone()).clone();
            let dir = self.jax_profile.join("plugins/profile").join(name);
            std::fs::create_dir_all(&dir).map_err(|source| RunFolderError::Create {
                path: dir.clone(),
                source,
            })?;
            for host in &run.hosts {
                let mut name = host.host.clone();
                if self.hosts.contains(&name) {
                    name = format!("{}-worker-{worker}", host.host);
                }
                self.hosts.insert(name.clone());
                let mut placed = Vec::new();
                for from in [&host.trace_json, &host.xplane].into_iter().flatten() {
                    let file_name = from
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default();
                    let suffix = file_name
                        .strip_prefix(host.host.as_str())
                        .unwrap_or_default();
                    let to = dir.join(format!("{name}{suffix}"));
                    std::fs::rename(from, &to).map_err(|source| RunFolderError::Write {
                        path: to.clone(),
                        source,
                    })?;
                    placed.push(to);
                }
                res.push(Placed {
                    host: name,
                    files: placed,
                });
            }
        }
        if staging.exists() {
            std::fs::remove_dir_all(staging).map_err(|source| RunFolderError::Write {
                path: staging.to_path_buf(),
                source,
            })?;
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Two workers of one machine: same host name, run folders a second
    /// apart. Both land in the first worker's run, the second renamed.
    #[test]
    fn hosts_of_every_worker_share_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("jax-profile");
        let mut collector = Collector::new(&profile);
        let w0 = dir.path().join("w0");
        write(
            &w0.join("plugins/profile/2026_01_01_00_00_01/box.xplane.pb"),
            b"0",
        );
        write(
            &w0.join("plugins/profile/2026_01_01_00_00_01/box.trace.json.gz"),
            b"0j",
        );
        let w1 = dir.path().join("w1");
        write(
            &w1.join("plugins/profile/2026_01_01_00_00_02/box.xplane.pb"),
            b"1",
        );
        write(
            &w1.join("plugins/profile/2026_01_01_00_00_02/notes.txt"),
            b"n",
        );
        let first = collector.place(&w0, 0).unwrap();
        let second = collector.place(&w1, 1).unwrap();
        assert_eq!(first[0].host, "box");
        assert_eq!(first[0].files.len(), 2);
        assert_eq!(second[0].host, "box-worker-1");
        let run = profile.join("plugins/profile/2026_01_01_00_00_01");
        assert_eq!(std::fs::read(run.join("box.xplane.pb")).unwrap(), b"0");
        assert_eq!(
            std::fs::read(run.join("box-worker-1.xplane.pb")).unwrap(),
            b"1"
        );
        assert!(!w0.exists() && !w1.exists(), "staging folders are removed");
        let runs = trace_model::locate(&crate::run_folder::files_if_any(&profile).unwrap());
        assert_eq!(runs.len(), 1);
        let hosts: Vec<&str> = runs[0].hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["box", "box-worker-1"]);
    }

    /// Hosts with their own names (a real slice) keep them.
    #[test]
    fn distinct_hosts_keep_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut collector = Collector::new(&dir.path().join("p"));
        for (worker, host) in [(0, "t1v-w-0"), (1, "t1v-w-1")] {
            let staging = dir.path().join(format!("s{worker}"));
            write(
                &staging.join(format!("plugins/profile/r/{host}.xplane.pb")),
                b"x",
            );
            let placed = collector.place(&staging, worker).unwrap();
            assert_eq!(placed[0].host, host);
        }
        // A worker that wrote nothing contributes nothing.
        let empty = dir.path().join("s2");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(collector.place(&empty, 2).unwrap().is_empty());
    }
}
