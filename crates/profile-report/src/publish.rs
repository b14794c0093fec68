//! Writing a set of output files so that readers see the old set or the new
//! one, never a mix, and nothing else is touched.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use crate::Error;

/// Writes each `(name, bytes)` into `dir` and publishes them together.
///
/// Every file is first written in full to its own temporary file, created
/// exclusively with a random name in `dir` (so a planted symlink or a
/// concurrent writer's temporary file is never opened), and flushed to disk.
/// Only when all are written are they renamed over their targets, while an
/// exclusive lock on `dir` is held, so two writers into one folder publish
/// one complete set after the other. A failure before the renames removes
/// the temporary files and leaves the folder as it was. A target that is a
/// folder is refused before anything is renamed.
pub fn publish(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), Error> {
    create_dir(dir)?;
    let mut staged = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        staged.push(stage_bytes(dir, name, bytes)?);
    }
    commit(dir, staged, &|_| false)
}

/// A file written in full under a temporary name in the output folder,
/// waiting to be renamed over `target`. Dropped uncommitted, it is removed.
pub(crate) struct Staged {
    pub tmp: TempPath,
    pub target: PathBuf,
}

pub(crate) fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Write { path, source }
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(write_err(dir))
}

/// A new, exclusively created temporary file in `dir` for the output `name`.
pub(crate) fn temp_file(dir: &Path, name: &str) -> Result<(std::fs::File, TempPath), Error> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_err(&dir.join(name)))?;
    Ok(tmp.into_parts())
}

pub(crate) fn stage_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<Staged, Error> {
    let target = dir.join(name);
    let (mut file, tmp) = temp_file(dir, name)?;
    file.write_all(bytes).map_err(write_err(&target))?;
    file.sync_all().map_err(write_err(&target))?;
    Ok(Staged { tmp, target })
}

/// Renames every staged file over its target under the folder's lock, then
/// removes the files of `dir` that `stale` claims and no target replaced
/// (the chunks of an older, longer full trace, say).
pub(crate) fn commit(
    dir: &Path,
    staged: Vec<Staged>,
    stale: &dyn Fn(&str) -> bool,
) -> Result<(), Error> {
    let lock = std::fs::File::open(dir).map_err(write_err(dir))?;
    lock.lock().map_err(write_err(dir))?;
    for it in &staged {
        if std::fs::symlink_metadata(&it.target).is_ok_and(|it| it.is_dir()) {
            return Err(Error::Write {
                path: it.target.clone(),
                source: std::io::ErrorKind::IsADirectory.into(),
            });
        }
    }
    let targets: Vec<PathBuf> = staged.iter().map(|it| it.target.clone()).collect();
    for Staged { tmp, target } in staged {
        tmp.persist(&target)
            .map_err(|err| write_err(&target)(err.error))?;
    }
    for entry in std::fs::read_dir(dir).map_err(write_err(dir))?.flatten() {
        let path = entry.path();
        let claimed = entry.file_name().to_str().is_some_and(stale);
        if claimed && !targets.contains(&path) && entry.file_type().is_ok_and(|it| it.is_file()) {
            std::fs::remove_file(&path).map_err(write_err(&path))?;
        }
    }
    // Dropping the file releases the lock.
    drop(lock);
    Ok(())
}
