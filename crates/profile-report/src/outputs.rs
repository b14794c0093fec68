//! Output sets: the files one command writes into one folder, published so
//! that they appear together or not at all, and never over a file that is
//! not an earlier output of sglprof.
//!
//! Every command that writes outputs (`report`, `compare`, `trace` and the
//! session drivers through [`crate::generate`]) goes through [`OutputSet`]:
//!
//! 1. [`OutputSet::begin`] refuses a folder inside a JAX profile run
//!    (`plugins/profile/<run>/`) unless the user named the files, takes an
//!    exclusive lock on the folder for the life of the set, completes a set
//!    that an earlier process left half-published (see below) and removes
//!    the temporary files that a killed writer left behind.
//! 2. Each output is written in full to a fresh temporary file in the
//!    folder (created exclusively, with the permissions the umask gives).
//!    Its name is checked first: a name that is one of
//!    the command's inputs is refused, and so is an existing file that the
//!    folder's record ([`LEDGER`]) does not list as written by sglprof with
//!    the same contents.
//! 3. [`OutputSet::publish`] commits the set: the temporary files and the
//!    new record, with the list of renames still to do, are flushed to disk
//!    (all at once, each on a thread of its own, so that the file system
//!    can join them into one journal commit), then the record is put in
//!    place through one rename. That rename is the commit point. The temporary files are then renamed over their
//!    targets (in the order they were added: the file a person opens, such
//!    as `report.md`, last), the record is rewritten without the list, and
//!    the lock is released.
//!
//! A crash before the commit leaves the old set and stray temporary files,
//! which the next set in that folder removes. A crash after it leaves a
//! record whose list says which renames are missing: [`settle`], which every
//! writer runs first and every reader of our outputs runs before reading,
//! finishes them, so the folder then holds the whole new set.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tempfile::TempPath;

use crate::Error;

/// The folder's record of the files sglprof wrote there.
pub const LEDGER: &str = ".sglprof-outputs.json";

/// The value of the record's `schema`.
const LEDGER_SCHEMA: &str = "sglprof.outputs/1";

/// How temporary files of an output set start; only sets create such
/// names, and only while they hold the folder's lock.
const TEMP_PREFIX: &str = ".sglprof.";

/// The record is small; a larger file is not ours.
const LEDGER_MAX_BYTES: u64 = 4 << 20;

/// Files up to this size are hashed whole; larger ones by their size and
/// their first and last [`EDGE_BYTES`].
const HASH_WHOLE_MAX: u64 = 8 << 20;
const EDGE_BYTES: u64 = 1 << 20;

/// Why an output path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The path is one of the files the command reads.
    Input,
    /// An existing file (or folder, or link) that sglprof did not write,
    /// or that changed since.
    NotOurs,
    /// A folder inside a JAX profile run, beside the profiler's files.
    InsideJaxRun,
    /// Not a plain file name.
    BadName,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Input => "is an input of this command; choose another --out",
            Refusal::NotOurs => {
                "exists and is not an earlier output of sglprof (or was changed since); \
                 move it away or choose another --out"
            }
            Refusal::InsideJaxRun => {
                "is inside a JAX profile run folder (plugins/profile/<run>/), beside the \
                 profiler's own files; choose another --out"
            }
            Refusal::BadName => "is not a plain file name",
        })
    }
}

/// Where a command writes and what it reads.
#[derive(Clone, Copy, Debug)]
pub struct Destination<'a> {
    /// The folder of the outputs; created if missing.
    pub dir: &'a Path,
    /// Every file the command reads: none of them is ever replaced.
    pub inputs: &'a [PathBuf],
    /// The user named the output files themselves (`trace --out FILE`), so
    /// a new file inside a JAX run folder is what they asked for.
    pub files_named: bool,
}

/// A file written in full under a temporary name, waiting to be renamed
/// over `name`. Dropped unpublished, it is removed.
struct Staged {
    tmp: TempPath,
    name: String,
    print: Fingerprint,
}

/// A file being written for an [`OutputSet`], not yet given its name.
/// Dropped without [`OutputSet::stage`], it is removed.
pub struct Temp {
    path: TempPath,
}

impl Temp {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The outputs of one command in one folder; see the module docs.
pub struct OutputSet {
    dir: PathBuf,
    /// Holds the folder's exclusive lock until the set is published or
    /// dropped.
    _lock: File,
    ledger: Ledger,
    inputs: Vec<(u64, u64)>,
    staged: Vec<Staged>,
}

impl std::fmt::Debug for OutputSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputSet").field("dir", &self.dir).finish()
    }
}

impl OutputSet {
    /// Checks the destination, creates the folder, locks it, completes a
    /// set an earlier process left half-published and removes stray
    /// temporary files.
    pub fn begin(dest: Destination<'_>) -> Result<OutputSet, Error> {
        let dir = dest.dir;
        if !dest.files_named && inside_jax_run(dir) {
            return Err(Error::Refused {
                path: dir.to_path_buf(),
                why: Refusal::InsideJaxRun,
            });
        }
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let lock = lock(dir)?;
        let ledger = settle_locked(dir)?;
        remove_stray_temps(dir)?;
        let mut inputs = Vec::with_capacity(dest.inputs.len());
        for path in dest.inputs {
            if let Ok(meta) = std::fs::metadata(path) {
                inputs.push((meta.dev(), meta.ino()));
            }
        }
        Ok(OutputSet {
            dir: dir.to_path_buf(),
            _lock: lock,
            ledger,
            inputs,
            staged: Vec::new(),
        })
    }

    /// The folder of the set.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that `name` may be written: a plain name, not an input, and
    /// either free or an earlier output of sglprof that is unchanged.
    /// Returns its final path.
    pub fn claim(&self, name: &str) -> Result<PathBuf, Error> {
        let path = self.dir.join(name);
        let refuse = |why| Error::Refused {
            path: path.clone(),
            why,
        };
        if !plain_name(name) {
            return Err(refuse(Refusal::BadName));
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(path);
        };
        if self.inputs.contains(&(meta.dev(), meta.ino())) {
            return Err(refuse(Refusal::Input));
        }
        if !meta.file_type().is_file() {
            return Err(refuse(Refusal::NotOurs));
        }
        let ours = match self.ledger.files.get(name) {
            Some(recorded) => {
                let print = Fingerprint::of_file(&path).map_err(read_err(&path))?;
                print == *recorded
            }
            None => false,
        };
        if !ours {
            return Err(refuse(Refusal::NotOurs));
        }
        Ok(path)
    }

    /// A new temporary file in the folder, for an output whose name is
    /// known only once it is written (the chunks of a long trace).
    pub fn temp(&self, hint: &str) -> Result<(File, Temp), Error> {
        let (file, path) = temp_in(&self.dir, hint)?;
        Ok((file, Temp { path }))
    }

    /// Gives a written temporary file its name in the set: the name is
    /// claimed ([`OutputSet::claim`]); [`OutputSet::publish`] flushes the
    /// file to disk before the commit.
    pub fn stage(&mut self, temp: Temp, name: &str) -> Result<PathBuf, Error> {
        let target = self.claim(name)?;
        if self.staged.iter().any(|it| it.name == name) {
            return Err(Error::Refused {
                path: target,
                why: Refusal::BadName,
            });
        }
        let print = Fingerprint::of_file(&temp.path).map_err(write_err(&target))?;
        self.staged.push(Staged {
            tmp: temp.path,
            name: name.to_owned(),
            print,
        });
        Ok(target)
    }

    /// Writes `bytes` as the output `name`.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
        let target = self.claim(name)?;
        let (mut file, temp) = self.temp(name)?;
        file.write_all(bytes).map_err(write_err(&target))?;
        drop(file);
        self.stage(temp, name)
    }

    /// Publishes every staged file together, and removes the earlier
    /// outputs of sglprof in the folder that `stale` claims and no staged
    /// file replaces (the chunks of an older, longer trace). Returns the
    /// final paths, in the order the files were added.
    pub fn publish(self, stale: &dyn Fn(&str) -> bool) -> Result<Vec<PathBuf>, Error> {
        let OutputSet {
            dir,
            _lock,
            mut ledger,
            staged,
            ..
        } = self;
        let written: Vec<PathBuf> = staged.iter().map(|it| dir.join(&it.name)).collect();
        let mut remove: Vec<String> = ledger
            .files
            .keys()
            .filter(|name| stale(name) && !staged.iter().any(|it| &it.name == *name))
            .cloned()
            .collect();
        remove.retain(|name| {
            let path = dir.join(name);
            // Only an unchanged earlier output is removed.
            Fingerprint::of_file(&path).is_ok_and(|print| ledger.files.get(name) == Some(&print))
        });
        let mut renames = Vec::with_capacity(staged.len());
        for it in &staged {
            let tmp = it
                .tmp
                .file_name()
                .and_then(|it| it.to_str())
                .expect("temporary names are ours")
                .to_owned();
            renames.push((tmp, it.name.clone()));
            ledger.files.insert(it.name.clone(), it.print.clone());
        }
        for name in &remove {
            ledger.files.remove(name);
        }
        ledger.pending = Some(Pending { renames, remove });
        // The commit point: from here on the set is completed, by this
        // process or by the next `settle`.
        let staged_files: Vec<(&Path, PathBuf)> = staged
            .iter()
            .map(|it| (&*it.tmp, dir.join(&it.name)))
            .collect();
        write_ledger(&dir, &ledger, &staged_files)?;
        for it in staged {
            // Published: the rename below or a later settle owns the file.
            let _ = it.tmp.keep();
        }
        apply(&dir, &mut ledger)?;
        Ok(written)
    }
}

/// Completes a set an earlier process left half-published in `dir`, if
/// there is one: what a reader of our outputs does before reading them.
/// Nothing happens (and nothing is locked) when the folder has no pending
/// set.
pub fn settle(dir: &Path) -> Result<(), Error> {
    match read_ledger(dir)? {
        Some(ledger) if ledger.pending.is_some() => {
            let _lock = lock(dir)?;
            settle_locked(dir)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Writes each `(name, bytes)` into `dir` as one set (see the module docs);
/// `dir` is the command's output folder and nothing is read.
pub fn publish(dir: &Path, files: &[(&str, &[u8])]) -> Result<Vec<PathBuf>, Error> {
    let mut set = OutputSet::begin(Destination {
        dir,
        inputs: &[],
        files_named: false,
    })?;
    for (name, bytes) in files {
        set.add(name, bytes)?;
    }
    set.publish(&|_| false)
}

/// The folder outputs go to when the user did not choose one: beside the
/// input, and for an input inside a JAX profile run (`<logdir>/plugins/
/// profile/<run>/...`), the `<logdir>` that holds it, so that nothing is
/// written among the profiler's files.
pub fn default_dir(input: &Path) -> PathBuf {
    let start = if input.is_file() {
        match input.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    } else {
        input.to_path_buf()
    };
    // The user's spelling first (a relative path stays relative), then the
    // path with its links resolved.
    for path in [start.clone(), resolve(&start)] {
        let names: Vec<&std::ffi::OsStr> = path.components().map(|it| it.as_os_str()).collect();
        if let Some(at) = jax_run_at(&names) {
            let mut res: PathBuf = path.components().take(at).collect();
            if res.as_os_str().is_empty() {
                res.push(".");
            }
            return res;
        }
    }
    start
}

/// Whether `dir` is a JAX run folder (`.../plugins/profile/<run>`) or
/// inside one, after symbolic links are resolved.
pub fn inside_jax_run(dir: &Path) -> bool {
    let resolved = resolve(dir);
    let names: Vec<&std::ffi::OsStr> = resolved.components().map(|it| it.as_os_str()).collect();
    jax_run_at(&names).is_some()
}

/// The index of the `plugins` of the first `plugins/profile/<run>` in
/// `names` that `names` reaches down to.
fn jax_run_at(names: &[&std::ffi::OsStr]) -> Option<usize> {
    (0..names.len().saturating_sub(2))
        .find(|&i| names[i] == "plugins" && names[i + 1] == "profile" && i + 2 < names.len())
}

/// `path` made absolute, with the longest existing prefix resolved through
/// symbolic links and the rest taken as written.
fn resolve(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut base = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = base.canonicalize() {
            let mut res = real;
            for name in rest.iter().rev() {
                res.push(name);
            }
            return res;
        }
        match (base.file_name().map(|it| it.to_owned()), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                base = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.starts_with(TEMP_PREFIX)
        && name != LEDGER
}

/// The content of the record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ledger {
    schema: String,
    /// Every output of sglprof in the folder, by name.
    files: BTreeMap<String, Fingerprint>,
    /// Set between the commit and the end of a publication: what is left
    /// to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pending {
    /// `(temporary name, final name)`, in order.
    renames: Vec<(String, String)>,
    /// Earlier outputs to remove.
    remove: Vec<String>,
}

/// What identifies the contents of a file we wrote: its size and the
/// sha256 of its bytes (of its first and last MiB when it is larger than
/// 8 MiB).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fingerprint {
    size: u64,
    sha256: String,
}

impl Fingerprint {
    fn of_file(path: &Path) -> std::io::Result<Fingerprint> {
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut hash_range = |file: &mut File, start: u64, len: u64| -> std::io::Result<()> {
            file.seek(std::io::SeekFrom::Start(start))?;
            let mut left = len;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let got = file.read(&mut buf[..want])?;
                if got == 0 {
                    break;
                }
                hasher.update(&buf[..got]);
                left -= got as u64;
            }
            Ok(())
        };
        if size <= HASH_WHOLE_MAX {
            hash_range(&mut file, 0, size)?;
        } else {
            hash_range(&mut file, 0, EDGE_BYTES)?;
            hash_range(&mut file, size - EDGE_BYTES, EDGE_BYTES)?;
        }
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Fingerprint { size, sha256 })
    }
}

pub(crate) fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Write { path, source }
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Read { path, source }
}

/// An exclusive lock on `dir`, held while the returned file is open.
fn lock(dir: &Path) -> Result<File, Error> {
    let lock = File::open(dir).map_err(write_err(dir))?;
    lock.lock().map_err(write_err(dir))?;
    Ok(lock)
}

/// A new temporary file in `dir` for the output `hint`, created
/// exclusively (a planted file or link is never opened) with the
/// permissions the umask gives a new file.
fn temp_in(dir: &Path, hint: &str) -> Result<(File, TempPath), Error> {
    let hint: String = hint
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .take(64)
        .collect();
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{hint}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(write_err(&dir.join(&hint)))?;
    Ok(tmp.into_parts())
}

fn read_ledger(dir: &Path) -> Result<Option<Ledger>, Error> {
    let path = dir.join(LEDGER);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(read_err(&path)(err)),
    };
    let mut text = Vec::new();
    (&mut file)
        .take(LEDGER_MAX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(read_err(&path))?;
    let bad = |detail: String| Error::Ledger {
        path: path.clone(),
        detail,
    };
    if text.len() as u64 > LEDGER_MAX_BYTES {
        return Err(bad(format!("larger than {LEDGER_MAX_BYTES} bytes")));
    }
    let ledger: Ledger = serde_json::from_slice(&text).map_err(|err| bad(err.to_string()))?;
    if ledger.schema != LEDGER_SCHEMA {
        return Err(bad(format!(
            "schema {:?}, expected {LEDGER_SCHEMA:?}",
            ledger.schema
        )));
    }
    let names_ok = ledger.files.keys().all(|it| plain_name(it))
        && ledger.pending.as_ref().is_none_or(|p| {
            p.remove.iter().all(|it| plain_name(it))
                && p.renames
                    .iter()
                    .all(|(tmp, name)| is_temp_name(tmp) && plain_name(name))
        });
    if !names_ok {
        return Err(bad("names a file outside the folder".to_owned()));
    }
    Ok(Some(ledger))
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp") && !name.contains('/')
}

/// Writes the record through a temporary file and one rename, then syncs
/// the folder. The files (or folders) `first` are flushed to disk before
/// the rename, together with the record's temporary file; each comes with
/// the path its errors name.
fn write_ledger(dir: &Path, ledger: &Ledger, first: &[(&Path, PathBuf)]) -> Result<(), Error> {
    let path = dir.join(LEDGER);
    let mut text = serde_json::to_string_pretty(ledger).expect("plain data serialises");
    text.push('\n');
    let (mut file, tmp) = temp_in(dir, "outputs")?;
    file.write_all(text.as_bytes()).map_err(write_err(&path))?;
    let sync_first = |(file, target): &(&Path, PathBuf)| {
        File::open(file)
            .and_then(|it| it.sync_all())
            .map_err(write_err(target))
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = first
            .iter()
            .map(|it| scope.spawn(move || sync_first(it)))
            .collect();
        let mine = file.sync_all().map_err(write_err(&path));
        let mut res = Ok(());
        for other in others {
            let synced = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            res = res.and(synced);
        }
        res.and(mine)
    })?;
    drop(file);
    tmp.persist(&path)
        .map_err(|err| write_err(&path)(err.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|it| it.sync_all())
        .map_err(write_err(dir))
}

/// Does what the record's pending list says (renames whose temporary file
/// is gone were done already), then records the set as complete.
fn apply(dir: &Path, ledger: &mut Ledger) -> Result<(), Error> {
    let Some(pending) = ledger.pending.take() else {
        return Ok(());
    };
    for (tmp, name) in &pending.renames {
        let from = dir.join(tmp);
        let to = dir.join(name);
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Incomplete { path: to, source }),
        }
    }
    for name in &pending.remove {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Incomplete { path, source }),
        }
    }
    // The renames reach the disk before the record that says they are done.
    write_ledger(dir, ledger, &[(dir, dir.to_path_buf())])
}

/// Completes a pending set; the caller holds the lock. Returns the record
/// (empty when there is none).
fn settle_locked(dir: &Path) -> Result<Ledger, Error> {
    let mut ledger = read_ledger(dir)?.unwrap_or_else(|| Ledger {
        schema: LEDGER_SCHEMA.to_owned(),
        ..Ledger::default()
    });
    apply(dir, &mut ledger)?;
    Ok(ledger)
}

/// Removes the temporary files of sets that never committed (a killed
/// writer's); the caller holds the lock, so no live set has any.
fn remove_stray_temps(dir: &Path) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))?.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_temp_name(&name) && entry.file_type().is_ok_and(|it| !it.is_dir()) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(write_err(&path)(err)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jax_runs_are_found_in_paths() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("logs/plugins/profile/2026_01_01_00_00_00");
        std::fs::create_dir_all(&run).unwrap();
        assert!(inside_jax_run(&run));
        assert!(inside_jax_run(&run.join("new/deeper")));
        assert!(!inside_jax_run(&root.path().join("logs/plugins/profile")));
        assert!(!inside_jax_run(&root.path().join("logs")));
        // A link to the run folder is the run folder.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        assert!(inside_jax_run(&link));
        assert_eq!(default_dir(&run), root.path().join("logs"));
        let file = run.join("vm.trace.json.gz");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(default_dir(&file), root.path().join("logs"));
        assert_eq!(
            default_dir(&root.path().join("logs")),
            root.path().join("logs")
        );
    }

    #[test]
    fn names_outside_the_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let set = OutputSet::begin(Destination {
            dir: dir.path(),
            inputs: &[],
            files_named: false,
        })
        .unwrap();
        for name in ["", ".", "..", "a/b", LEDGER, ".sglprof.x.tmp"] {
            let err = set.claim(name).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Refused {
                        why: Refusal::BadName,
                        ..
                    }
                ),
                "{name:?}: {err}"
            );
        }
    }
}
