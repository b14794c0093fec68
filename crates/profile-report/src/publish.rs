//! Writing a set of output files so that readers see the old set or the new
//! one, never a mix, and nothing else is touched.

use std::io::Write;
use std::path::Path;

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
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut staged = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let target = dir.join(name);
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(write_err(&target))?;
        tmp.write_all(bytes).map_err(write_err(&target))?;
        tmp.as_file().sync_all().map_err(write_err(&target))?;
        staged.push((tmp, target));
    }
    let lock = std::fs::File::open(dir).map_err(write_err(dir))?;
    lock.lock().map_err(write_err(dir))?;
    for (_, target) in &staged {
        if std::fs::symlink_metadata(target).is_ok_and(|it| it.is_dir()) {
            return Err(Error::Write {
                path: target.clone(),
                source: std::io::ErrorKind::IsADirectory.into(),
            });
        }
    }
    for (tmp, target) in staged {
        tmp.persist(&target)
            .map_err(|err| write_err(&target)(err.error))?;
    }
    // Dropping the file releases the lock.
    drop(lock);
    Ok(())
}
