//! The run state file (`runs/<run-id>/tpu-state.json`): what a run asked
//! Google for, written before the create call and after every change, so
//! that `cargo xtask cleanup` can delete what a killed run left behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::api::Provisioning;
use crate::{Error, time};

/// The value of [`RunState::schema`].
pub const STATE_SCHEMA: &str = "sglprof.tpu-state/1";

/// The file name inside a run folder.
pub const STATE_FILE: &str = "tpu-state.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Written, nothing asked of Google yet.
    Planned,
    /// The create call was (or is about to be) sent.
    Creating,
    Ready,
    Deleting,
    Deleted,
    /// Left running on purpose (`--keep`); `cleanup` still deletes it.
    Kept,
    /// A VM the run did not create (`--vm`); never deleted by sglprof.
    Reused,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub schema: String,
    pub run_id: String,
    pub project: String,
    pub zone: String,
    pub node_id: String,
    /// Set when the node comes from a queued resource of this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_resource: Option<String>,
    pub accelerator_type: String,
    pub runtime_version: String,
    pub provisioning: Provisioning,
    /// Whether this run created the node (and so may delete it).
    pub owned: bool,
    pub phase: Phase,
    /// RFC 3339 UTC times. Billing runs from the create call to the end of
    /// the delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_requested_at: Option<String>,
    /// The long-running operation of the create call, once Google answered
    /// it: cleanup waits for it before concluding that no node exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl RunState {
    /// Billed time so far: from the create call to the end of the delete,
    /// or to `now` while the node lives. `None` if nothing was created.
    pub fn billed(&self, now: SystemTime) -> Option<Duration> {
        let start = time::parse_rfc3339(self.create_requested_at.as_deref()?)?;
        let end = match &self.deleted_at {
            Some(text) => time::parse_rfc3339(text)?,
            None => now,
        };
        Some(end.duration_since(start).unwrap_or_default())
    }

    /// Whether a node may still exist and bill.
    pub fn may_be_alive(&self) -> bool {
        matches!(
            self.phase,
            Phase::Creating | Phase::Ready | Phase::Deleting | Phase::Kept
        )
    }
}

/// How a phase is written in the file.
fn phase_name(phase: Phase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|it| it.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A [`RunState`] and where it is kept. Every change is saved at once,
/// atomically (a fresh sibling file created exclusively, then renamed).
pub struct Ledger {
    path: Option<PathBuf>,
    pub state: RunState,
    /// While set and true, every save fails as on a full disk
    /// ([`Ledger::with_write_fault`]).
    fault: Option<Arc<AtomicBool>>,
    /// The last save that failed, if the state on disk is behind.
    unsaved: Option<String>,
    /// The phase the file on disk holds, as far as this ledger knows.
    on_disk: Option<Phase>,
    /// Told what the lease is doing, one line per step ([`Ledger::with_progress`]).
    progress: Option<Progress>,
}

/// Receives one line per step of a lease (`creating node ...`, `waiting
/// for ... to be READY`, `deleting ...`), for the caller to show.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

impl Ledger {
    /// Writes `state` to `path` (creating the folder) and returns the ledger.
    pub fn create(path: &Path, state: RunState) -> Result<Ledger, Error> {
        let mut res = Ledger {
            path: Some(path.to_path_buf()),
            state,
            fault: None,
            unsaved: None,
            on_disk: None,
            progress: None,
        };
        res.save()?;
        Ok(res)
    }

    /// A ledger that lives only in memory (dry runs).
    pub fn in_memory(state: RunState) -> Ledger {
        Ledger {
            path: None,
            state,
            fault: None,
            unsaved: None,
            on_disk: None,
            progress: None,
        }
    }

    /// Makes every save fail while `fault` is true, as a full disk would:
    /// for fault-injection tests and rehearsals.
    pub fn with_write_fault(mut self, fault: Arc<AtomicBool>) -> Ledger {
        self.fault = Some(fault);
        self
    }

    /// Hands each step of the lease to `progress` as it starts, so that a
    /// user (or a test) can tell which phase a run is in.
    pub fn with_progress(mut self, progress: Progress) -> Ledger {
        self.progress = Some(progress);
        self
    }

    /// Reports one step to the progress sink, if there is one.
    pub fn progress(&self, line: &str) {
        if let Some(progress) = &self.progress {
            progress(line);
        }
    }

    /// Why the file on disk is behind [`Ledger::state`], if it is.
    pub fn unsaved(&self) -> Option<&str> {
        self.unsaved.as_deref()
    }

    /// When the file on disk is behind, one clause for the end of a run's
    /// closing line that says so: which file, why, and what it still says
    /// (`the run state file runs/x/tpu-state.json could not be saved (...:
    /// No space left on device): it still says `ready`, not `deleted``).
    pub fn unsaved_note(&self) -> Option<String> {
        let why = self.unsaved.as_deref()?;
        let path = self
            .path
            .as_deref()
            .map_or_else(|| STATE_FILE.to_owned(), |it| it.display().to_string());
        let now = phase_name(self.state.phase);
        let says = match self.on_disk {
            Some(phase) if phase != self.state.phase => {
                format!("it still says `{}`, not `{now}`", phase_name(phase))
            }
            Some(_) => format!("it says `{now}` but misses later details"),
            None => "it was never written".to_owned(),
        };
        Some(format!(
            "the run state file {path} could not be saved ({why}): {says}"
        ))
    }

    pub fn open(path: &Path) -> Result<Ledger, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |detail: String| Error::BadFile {
            what: "run state file",
            path: path.to_path_buf(),
            detail,
        };
        let state: RunState = serde_json::from_str(&text).map_err(|err| bad(err.to_string()))?;
        if state.schema != STATE_SCHEMA {
            return Err(bad(format!(
                "schema `{}`, expected `{STATE_SCHEMA}`",
                state.schema
            )));
        }
        let on_disk = Some(state.phase);
        Ok(Ledger {
            path: Some(path.to_path_buf()),
            state,
            fault: None,
            unsaved: None,
            on_disk,
            progress: None,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes the state; on failure remembers why ([`Ledger::unsaved`]).
    pub fn save(&mut self) -> Result<(), Error> {
        let res = self.write();
        self.unsaved = res.as_ref().err().map(Error::chain);
        if res.is_ok() && self.path.is_some() {
            self.on_disk = Some(self.state.phase);
        }
        res
    }

    fn write(&self) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self
            .fault
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
        {
            return Err(Error::Io {
                action: "writing",
                path: path.clone(),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        let io = Error::io;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        let mut text = serde_json::to_string_pretty(&self.state).expect("plain data serialises");
        text.push('\n');
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // A fresh, exclusively created name: a planted file or symlink is
        // never followed.
        // It holds no secret: readable as the umask says, like every file
        // of the run folder.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tpu-state.")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(io("creating a file in", dir))?;
        {
            use std::io::Write;
            tmp.write_all(text.as_bytes())
                .map_err(io("writing", tmp.path()))?;
            tmp.as_file()
                .sync_all()
                .map_err(io("syncing", tmp.path()))?;
        }
        tmp.persist(path)
            .map_err(|err| io("renaming into", path)(err.error))?;
        Ok(())
    }

    /// Applies `change` and saves.
    pub fn update(&mut self, change: impl FnOnce(&mut RunState)) -> Result<(), Error> {
        change(&mut self.state);
        self.save()
    }
}
