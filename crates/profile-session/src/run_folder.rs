//! The run folder: its layout, the one rule that keeps two runs out of one
//! folder, and the writes into it.
//!
//! ```text
//! inputs/    requests/*.json, profile_config.json, run_metadata.json, server_args.json,
//!            latencies.json, machine.json (local servers only)
//! artifacts/ jax-profile/ (the server's output_dir), py-spy/ (with --py-spy)
//! logs/      server.log, py-spy-*.log, tpu-api.log
//! report.md, summary.json, checksums.txt (sha256 of every file under artifacts/)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the run folder could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunFolderError {
    #[error("{}: already holds files; choose another --out", .0.display())]
    NotEmpty(PathBuf),
    #[error("cannot create {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A run folder this process owns.
#[derive(Clone, Debug)]
pub struct RunFolder {
    root: PathBuf,
}

impl RunFolder {
    /// Claims `root` for a new run, on every host by the same rule: the
    /// folder is absent or empty, and this process is the one that creates
    /// its `inputs/` (exclusively, so two runs started together into one
    /// folder cannot both proceed).
    pub fn create(root: &Path) -> Result<RunFolder, RunFolderError> {
        let root = absolute(root)?;
        let create = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RunFolderError::Create { path, source }
        };
        std::fs::create_dir_all(&root).map_err(create(&root))?;
        let mut entries = std::fs::read_dir(&root).map_err(create(&root))?;
        if entries.next().is_some() {
            return Err(RunFolderError::NotEmpty(root));
        }
        let inputs = root.join("inputs");
        std::fs::create_dir(&inputs).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => RunFolderError::NotEmpty(root.clone()),
            _ => create(&inputs)(source),
        })?;
        let res = RunFolder { root };
        for dir in [res.requests(), res.artifacts(), res.logs()] {
            std::fs::create_dir_all(&dir).map_err(create(&dir))?;
        }
        Ok(res)
    }

    /// A folder described but not created (dry runs).
    pub fn planned(root: &Path) -> Result<RunFolder, RunFolderError> {
        Ok(RunFolder {
            root: absolute(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn inputs(&self) -> PathBuf {
        self.root.join("inputs")
    }
    pub fn requests(&self) -> PathBuf {
        self.root.join("inputs/requests")
    }
    pub fn metadata_path(&self) -> PathBuf {
        self.root.join("inputs/run_metadata.json")
    }
    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
    /// Where the JAX profile lands (the server's `output_dir` locally).
    pub fn jax_profile(&self) -> PathBuf {
        self.root.join("artifacts/jax-profile")
    }
    pub fn pyspy(&self) -> PathBuf {
        self.root.join("artifacts/py-spy")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn server_log(&self) -> PathBuf {
        self.root.join("logs/server.log")
    }

    /// `path` relative to the run folder when it is inside it.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Writes `run_metadata.json`.
    pub fn write_metadata(
        &self,
        metadata: &session_report::RunMetadata,
    ) -> Result<(), RunFolderError> {
        write_atomic(&self.metadata_path(), metadata.to_json().as_bytes())
    }

    /// Writes `checksums.txt` (sha256sum format) for every file under
    /// `artifacts/`; returns how many files it lists.
    pub fn write_checksums(&self) -> Result<usize, RunFolderError> {
        use sha2::{Digest, Sha256};

        let files = files_if_any(&self.artifacts())?;
        let mut text = String::new();
        for file in &files {
            let read = |source| RunFolderError::Read {
                path: file.clone(),
                source,
            };
            let mut hasher = Sha256::new();
            let mut reader = std::fs::File::open(file).map_err(read)?;
            std::io::copy(&mut reader, &mut hasher).map_err(read)?;
            let hex: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            text.push_str(&format!("{hex}  {}\n", self.relative(file)));
        }
        write_atomic(&self.root.join("checksums.txt"), text.as_bytes())?;
        Ok(files.len())
    }
}

fn absolute(path: &Path) -> Result<PathBuf, RunFolderError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|source| RunFolderError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(cwd.join(path))
}

/// Every file below `dir`, sorted; none when `dir` does not exist.
pub fn files_if_any(dir: &Path) -> Result<Vec<PathBuf>, RunFolderError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    profile_report::list_files(dir).map_err(|err| match err {
        // The folder that could not be read, and why, once.
        profile_report::Error::Read { path, source } => RunFolderError::Read { path, source },
        other => RunFolderError::Read {
            path: dir.to_path_buf(),
            source: std::io::Error::other(other),
        },
    })
}

/// Writes `bytes` to `path` through a temporary file created exclusively
/// beside it (with the permissions the umask gives a new file), flushed to
/// disk and renamed into place: readers see the old file or the new one,
/// and a planted symlink is replaced, not followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunFolderError> {
    write_atomic_with(path, &mut |out| out.write_all(bytes))
}

/// [`write_atomic`] of what `write` writes, streamed through a buffer:
/// nothing the size of the file is held in memory.
pub fn write_atomic_with(
    path: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), RunFolderError> {
    let mut file = AtomicFile::create(path)?;
    write(file.out()).map_err(|source| file.failed(source))?;
    file.commit().map(drop)
}

/// A file written over time, through a buffer, into a temporary file
/// beside `path` that [`AtomicFile::commit`] renames into place as
/// [`write_atomic`] does. Dropped without a commit, it leaves nothing.
pub struct AtomicFile {
    path: std::path::PathBuf,
    out: std::io::BufWriter<tempfile::NamedTempFile>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, RunFolderError> {
        let failed = |source| RunFolderError::Write {
            path: path.to_path_buf(),
            source,
        };
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(failed)?;
        let tmp = tempfile::Builder::new()
            .prefix(".sglprof-")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(parent)
            .map_err(failed)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            out: std::io::BufWriter::with_capacity(1 << 16, tmp),
        })
    }

    /// Where to write the contents.
    pub fn out(&mut self) -> &mut dyn Write {
        &mut self.out
    }

    /// The error of a failed write to this file.
    pub fn failed(&self, source: std::io::Error) -> RunFolderError {
        RunFolderError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Flushes the contents to disk and renames the file into place;
    /// returns it, open for reading and writing.
    pub fn commit(self) -> Result<std::fs::File, RunFolderError> {
        let path = self.path;
        let failed = |source| RunFolderError::Write {
            path: path.clone(),
            source,
        };
        let tmp = self
            .out
            .into_inner()
            .map_err(|err| failed(err.into_error()))?;
        tmp.as_file().sync_all().map_err(failed)?;
        tmp.persist(&path).map_err(|err| failed(err.error))
    }
}

/// Pretty JSON and a newline, written atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RunFolderError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| RunFolderError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, (text + "\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_host() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::create(&dir.path().join("new")).unwrap();
        assert!(run.requests().is_dir() && run.logs().is_dir());
        // A second run into the same folder is refused, whatever it holds.
        let err = RunFolder::create(run.root()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("already holds files; choose another --out")
        );
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("tpu-state.json"), "{}").unwrap();
        assert!(matches!(
            RunFolder::create(&other),
            Err(RunFolderError::NotEmpty(_))
        ));
        // An empty folder is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        RunFolder::create(&empty).unwrap();
    }

    /// The umask of this process, from `/proc/self/status`.
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn files_follow_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checksums.txt");
        write_atomic(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());
    }

    #[test]
    fn checksums_match_sha256sum_format() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::create(dir.path()).unwrap();
        std::fs::write(run.artifacts().join("a.txt"), "abc").unwrap();
        assert_eq!(run.write_checksums().unwrap(), 1);
        // sha256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            std::fs::read_to_string(run.root().join("checksums.txt")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  artifacts/a.txt\n"
        );
    }
}
