//! The Python files the driver runs inside the server's environment (the
//! CPU shim, the tiny-model builder, the label-token lookup), carried in
//! the binary and written to the cache on first use. A binary therefore
//! works from any directory, installed with `cargo install`, or in an image
//! without the source tree.
//!
//! The files are written under a folder named by a hash of their contents,
//! through a temporary folder renamed into place, so a changed shim never
//! mixes with an older one and two processes never see half a folder.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::EnvError;

/// `(path inside the folder, contents)` of every asset.
const FILES: [(&str, &str); 4] = [
    (
        "cpu_shim/sitecustomize.py",
        include_str!("../../../../python/cpu_shim/sitecustomize.py"),
    ),
    (
        "make_tiny_model.py",
        include_str!("../../../../python/make_tiny_model.py"),
    ),
    (
        "label_token_ids.py",
        include_str!("../../../../python/label_token_ids.py"),
    ),
    ("README.md", include_str!("../../../../python/README.md")),
];

/// The assets, written out.
#[derive(Clone, Debug)]
pub struct Assets {
    dir: PathBuf,
}

impl Assets {
    /// The folder to put on the server's `PYTHONPATH`.
    pub fn shim_dir(&self) -> PathBuf {
        self.dir.join("cpu_shim")
    }
    pub fn model_builder(&self) -> PathBuf {
        self.dir.join("make_tiny_model.py")
    }
    pub fn label_lookup(&self) -> PathBuf {
        self.dir.join("label_token_ids.py")
    }
}

/// A short hash of every asset's path and contents.
fn version() -> String {
    let mut hasher = Sha256::new();
    for (path, text) in FILES {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The assets under `cache`, written there first when they are missing.
pub fn ensure(cache: &Path) -> Result<Assets, EnvError> {
    let dir = cache.join(format!("python-{}", version()));
    if dir.is_dir() {
        return Ok(Assets { dir });
    }
    std::fs::create_dir_all(cache).map_err(super::io("cannot create", cache))?;
    let tmp = tempfile::Builder::new()
        .prefix(".python-")
        .tempdir_in(cache)
        .map_err(super::io("cannot create a folder in", cache))?;
    for (rel, text) in FILES {
        let path = tmp.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(super::io("cannot create", parent))?;
        }
        std::fs::write(&path, text).map_err(super::io("cannot write", &path))?;
    }
    // The temporary folder is 0700; the assets are read by the server,
    // which may run as another user on a shared machine.
    set_readable(tmp.path());
    match std::fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            // Renamed away: nothing is left for the guard to remove.
            let _ = tmp.keep();
        }
        // Another process wrote the same contents first.
        Err(_) if dir.is_dir() => {}
        Err(err) => return Err(super::io("cannot create", &dir)(err)),
    }
    Ok(Assets { dir })
}

fn set_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_written_once_and_match_the_sources() {
        let cache = tempfile::tempdir().unwrap();
        let first = ensure(cache.path()).unwrap();
        let second = ensure(cache.path()).unwrap();
        assert_eq!(first.dir, second.dir);
        let shim = std::fs::read_to_string(first.shim_dir().join("sitecustomize.py")).unwrap();
        assert!(shim.contains("SGLJAX_CPU_SHIM"));
        assert!(first.model_builder().is_file() && first.label_lookup().is_file());
        // Nothing but the one folder: no temporary left behind.
        let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }
}
