//! The TPU VMs of a zone outside a run, and what a killed run left behind:
//! listing, deleting (only VMs sglprof created, unless forced), stopping
//! and starting a VM, and cleaning up after runs whose `tpu-state.json`
//! says their VM may still be alive. `cargo xtask tpu` and `cargo xtask
//! cleanup` are these calls with flags; progress is reported as `[tpu]` and
//! `[cleanup]` lines, a dry run's API calls go to the caller's `print`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tpu_cloud::api::{Node, NodeState};
use tpu_cloud::cost;
use tpu_cloud::lease::{self, CleanupOutcome, Deadlines};
use tpu_cloud::state::{Ledger, STATE_FILE};
use tpu_cloud::{Location, TpuClient};

use super::Print;
use crate::DriveError;
use crate::events::Progress;

/// A zone of a project, reached through the TPU API (or, for a dry run, a
/// client that prints each call instead of sending it).
pub struct Zone {
    pub client: TpuClient,
    pub loc: Location,
    pub dry_run: bool,
}

/// What `tpu stop` and `tpu start` ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Stop,
    Start,
}

impl Zone {
    /// The zone `zone` of `project` (which a dry run may leave out) through
    /// the API at `url`; a dry run prints its calls through `print`.
    pub async fn connect(
        url: &str,
        project: Option<&str>,
        zone: &str,
        dry_run: bool,
        print: Print,
    ) -> Result<Zone, DriveError> {
        let (client, _) = super::api_client(url, dry_run.then_some(print)).await?;
        let loc = Location::new(&super::plan::project(project, dry_run)?, zone);
        Ok(Zone {
            client,
            loc,
            dry_run,
        })
    }

    /// The VMs of the zone; with `ours`, only those sglprof created.
    pub async fn list(&self, ours: bool) -> Result<Vec<Node>, DriveError> {
        let nodes = self.client.list_nodes(&self.loc).await?;
        Ok(nodes.into_iter().filter(|n| !ours || n.is_ours()).collect())
    }

    /// Deletes the VM `name` and waits until it is gone. A VM sglprof did
    /// not create is refused unless `force`.
    pub async fn delete(
        &self,
        name: &str,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<(), DriveError> {
        if !self.dry_run {
            let node = self.client.get_node(&self.loc, name).await?;
            if !node.is_ours() && !force {
                return Err(DriveError::Failed(format!(
                    "`{name}` was not created by sglprof (no created-by=sglprof label); pass --force to delete it anyway"
                )));
            }
        }
        let op = self.client.delete_node(&self.loc, name).await?;
        self.client
            .wait_operation(
                &self.loc,
                op,
                &format!("deleting `{name}`"),
                Deadlines::production().delete,
            )
            .await?;
        progress.line("tpu", &format!("deleted {name}"));
        Ok(())
    }

    /// Stops or starts the VM `name`: nothing to do when it is already in
    /// the wanted state, otherwise the call and its operation.
    pub async fn set_power(
        &self,
        name: &str,
        power: Power,
        progress: &dyn Progress,
    ) -> Result<(), DriveError> {
        let (client, loc) = (&self.client, &self.loc);
        let (wanted, label, verb, done) = match power {
            Power::Stop => (NodeState::Stopped, "STOPPED", "stopping", "stopped"),
            Power::Start => (NodeState::Ready, "READY", "starting", "started"),
        };
        if !self.dry_run && client.get_node(loc, name).await?.state == Some(wanted) {
            progress.line("tpu", &format!("{name} is already {label}"));
            return Ok(());
        }
        let (op, deadline) = match power {
            Power::Stop => (
                client.stop_node(loc, name).await?,
                Deadlines::production().delete,
            ),
            Power::Start => (
                client.start_node(loc, name).await?,
                Deadlines::production().ready,
            ),
        };
        client
            .wait_operation(loc, op, &format!("{verb} `{name}`"), deadline)
            .await?;
        progress.line("tpu", &format!("{done} {name}"));
        Ok(())
    }
}

/// The VMs as a table: name, state, type, run, creation time and address,
/// in columns as wide as their widest cell.
pub fn node_table(nodes: &[Node]) -> String {
    let mut rows = vec![["NAME", "STATE", "TYPE", "RUN", "CREATED", "IP"].map(str::to_owned)];
    for node in nodes {
        rows.push([
            node.id().to_owned(),
            node.state
                .map(|s| format!("{s:?}").to_uppercase())
                .unwrap_or_default(),
            node.accelerator_type.clone(),
            node.run_label().unwrap_or("-").to_owned(),
            node.create_time.clone().unwrap_or_default(),
            node.internal_ip().unwrap_or("-").to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect();
    lines.join("\n")
}

/// The state files to clean up: with `all`, every run under `runs` that
/// has one; else the one of `run`, a run id under `runs`, a run folder or
/// the state file itself.
pub fn state_files(runs: &Path, run: Option<&str>, all: bool) -> Result<Vec<PathBuf>, DriveError> {
    if all {
        let mut res = Vec::new();
        if let Ok(entries) = std::fs::read_dir(runs) {
            for entry in entries {
                let entry = entry.map_err(|source| DriveError::Io {
                    what: "cannot read",
                    path: runs.to_path_buf(),
                    source,
                })?;
                let path = entry.path().join(STATE_FILE);
                if path.is_file() {
                    res.push(path);
                }
            }
        }
        res.sort();
        return Ok(res);
    }
    let Some(run) = run else {
        return Err(DriveError::Failed(
            "name a run (`cargo xtask cleanup <run-id>`) or pass --all".to_owned(),
        ));
    };
    let given = Path::new(run);
    let candidates = [
        given.to_path_buf(),
        given.join(STATE_FILE),
        runs.join(run).join(STATE_FILE),
    ];
    match candidates.into_iter().find(|p| p.is_file()) {
        Some(path) => Ok(vec![path]),
        None => Err(DriveError::Failed(format!(
            "no {STATE_FILE} for `{run}` (looked in the path itself and under runs/)"
        ))),
    }
}

/// Deletes the VM of every state file in `paths` that may still be alive
/// (a dry run leaves the files as they are), through the API at `url`.
/// Fails at the end, naming how many could not be cleaned up.
pub async fn cleanup(
    paths: Vec<PathBuf>,
    url: &str,
    dry_run: bool,
    print: Print,
    progress: &dyn Progress,
) -> Result<(), DriveError> {
    let say = |text: String| progress.line("cleanup", &text);
    let mut client = None;
    let mut failures = 0;
    for path in paths {
        let mut ledger = Ledger::open(&path)?;
        if dry_run {
            // Rehearse without touching the state file.
            ledger = Ledger::in_memory(ledger.state);
        }
        let s = &ledger.state;
        if !s.owned || !s.may_be_alive() {
            say(format!("{}: nothing to do ({:?})", s.run_id, s.phase));
            continue;
        }
        if client.is_none() {
            let printer = print.clone();
            client = Some(super::api_client(url, dry_run.then_some(printer)).await?.0);
        }
        let client = client.as_ref().expect("set above");
        say(format!(
            "{}: deleting {} in {}/{}",
            s.run_id, s.node_id, s.project, s.zone
        ));
        let note = |ledger: &Ledger| {
            ledger
                .unsaved_note()
                .map(|it| format!("; {it}"))
                .unwrap_or_default()
        };
        match lease::cleanup(client, &mut ledger, Deadlines::production().delete).await {
            Ok(CleanupOutcome::Deleted) => {
                let billed = ledger.state.billed(SystemTime::now()).unwrap_or_default();
                say(format!(
                    "deleted; billed about {}{}",
                    cost::human_duration(billed),
                    note(&ledger)
                ));
            }
            Ok(CleanupOutcome::NothingToDo(phase)) => say(format!("nothing to do ({phase:?})")),
            Err(err) => {
                say(format!("{}: {err}{}", ledger.state.run_id, note(&ledger)));
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(DriveError::Failed(format!(
            "{failures} run(s) could not be cleaned up; see the messages above and rerun `cargo xtask cleanup`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tpu_cloud::clock::NoWaitClock;
    use tpu_cloud::fake::{FakeTpu, PROJECT, ZONE};

    use super::*;
    use crate::events::Recorded;

    async fn zone(fake: &FakeTpu) -> Zone {
        let config = tpu_cloud::ClientConfig {
            base_url: fake.url(),
            timing: tpu_cloud::Timing::production(),
        };
        Zone {
            client: TpuClient::new(config, fake.tokens(), Arc::new(NoWaitClock)).unwrap(),
            loc: Location::new(PROJECT, ZONE),
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn only_our_vms_are_deleted_and_power_is_set_once() {
        let fake = FakeTpu::start().await;
        fake.add_node(
            "ours",
            json!({"created-by": "sglprof", "sglprof-run": "r1"}),
        );
        fake.add_node("theirs", json!({}));
        let zone = zone(&fake).await;
        let ours = zone.list(true).await.unwrap();
        assert_eq!(ours.len(), 1);
        let table = node_table(&zone.list(false).await.unwrap());
        assert!(table.starts_with("NAME    STATE  TYPE   RUN"), "{table}");
        assert!(table.contains("theirs  READY  v6e-1  -"), "{table}");
        let lines = Recorded::default();
        let err = zone.delete("theirs", false, &lines).await.unwrap_err();
        assert!(err.to_string().contains("pass --force"), "{err}");
        zone.set_power("ours", Power::Stop, &lines).await.unwrap();
        zone.set_power("ours", Power::Stop, &lines).await.unwrap();
        zone.delete("ours", false, &lines).await.unwrap();
        assert_eq!(
            lines.0.lock().unwrap()[..],
            [
                "[tpu] stopped ours",
                "[tpu] ours is already STOPPED",
                "[tpu] deleted ours"
            ]
        );
        assert_eq!(zone.list(false).await.unwrap().len(), 1);
    }

    #[test]
    fn state_files_are_found_by_run_id_or_refused() {
        let runs = tempfile::tempdir().unwrap();
        assert!(state_files(runs.path(), None, true).unwrap().is_empty());
        let dir = runs.path().join("r1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(STATE_FILE), "{}").unwrap();
        let found = state_files(runs.path(), Some("r1"), false).unwrap();
        assert_eq!(found, [dir.join(STATE_FILE)]);
        assert_eq!(state_files(runs.path(), None, true).unwrap(), found);
        let err = state_files(runs.path(), Some("r2"), false).unwrap_err();
        assert!(
            err.to_string().starts_with("no tpu-state.json for `r2`"),
            "{err}"
        );
    }
}
