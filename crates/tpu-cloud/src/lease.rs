//! Never leak a VM: create a node with a state file written first, and
//! delete it on every exit path.
//!
//! [`with_node`] is the whole pattern: it records the run, creates the node,
//! waits for READY, runs the caller's session, and deletes the node whether
//! the session succeeded, failed or was cancelled (Ctrl-C), unless asked to
//! keep it. A process killed outright cannot clean up after itself; its
//! state file lets [`cleanup`] do it later.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::api::{
    NetworkConfig, Node, Provisioning, QueuedNodeSpec, QueuedResource, QueuedTpu, QueueingPolicy,
    ServiceAccount,
};
use crate::client::{Location, TpuClient};
use crate::state::{Ledger, Phase, RunState, STATE_SCHEMA};
use crate::{CREATED_BY_LABEL, Error, RUN_LABEL, time};

/// How long each phase may take before we give up (and delete).
#[derive(Clone, Debug)]
pub struct Deadlines {
    /// From the create call to the node (or queued resource) existing.
    pub create: Duration,
    /// From existing to READY.
    pub ready: Duration,
    pub delete: Duration,
}

impl Deadlines {
    pub fn production() -> Deadlines {
        Deadlines {
            create: Duration::from_secs(30 * 60),
            ready: Duration::from_secs(15 * 60),
            delete: Duration::from_secs(15 * 60),
        }
    }
}

/// Everything needed to create one TPU VM for one run.
#[derive(Clone, Debug)]
pub struct NodeRequest {
    pub location: Location,
    pub node_id: String,
    pub run_id: String,
    /// `v6e-1`, `v5litepod-8`, ...
    pub accelerator_type: String,
    /// `v6e-ubuntu-2404`, `v2-alpha-tpuv6e`, ...
    pub runtime_version: String,
    pub provisioning: Provisioning,
    /// Ask through a queued resource (waits for capacity instead of
    /// failing on a stockout).
    pub queued: bool,
    /// How long a queued resource may wait for capacity.
    pub queued_valid_for: Option<Duration>,
    /// Extra labels; `created-by=sglprof` and `sglprof-run=<run>` are
    /// always added.
    pub labels: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
    pub network: NetworkConfig,
    pub service_account: Option<ServiceAccount>,
    pub deadlines: Deadlines,
}

/// `sglprof-YYYYMMDD-HHMMSS` (UTC), the upstream naming pattern.
pub fn node_name_for(now: SystemTime) -> String {
    format!("sglprof-{}", time::compact_stamp(now))
}

/// Label values allow `[a-z0-9_-]`, at most 63 characters.
pub fn label_value(text: &str) -> String {
    let res: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    res
}

impl NodeRequest {
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut res = self.labels.clone();
        res.insert(CREATED_BY_LABEL.0.to_owned(), CREATED_BY_LABEL.1.to_owned());
        res.insert(RUN_LABEL.to_owned(), label_value(&self.run_id));
        res
    }

    /// The body of `POST .../nodes`.
    pub fn node_body(&self) -> Node {
        Node {
            description: Some(format!("sglprof run {}", self.run_id)),
            accelerator_type: self.accelerator_type.clone(),
            runtime_version: self.runtime_version.clone(),
            network_config: Some(self.network.clone()),
            scheduling_config: if self.queued {
                None
            } else {
                self.provisioning.scheduling_config()
            },
            labels: self.labels(),
            metadata: self.metadata.clone(),
            service_account: self.service_account.clone(),
            ..Node::default()
        }
    }

    /// The body of `POST .../queuedResources`. The provisioning model moves
    /// from the node to the queued resource (`spot: {}`).
    pub fn queued_resource_body(&self) -> QueuedResource {
        QueuedResource {
            tpu: Some(QueuedTpu {
                node_spec: vec![QueuedNodeSpec {
                    parent: self.location.parent(),
                    node_id: self.node_id.clone(),
                    node: self.node_body(),
                }],
            }),
            spot: match self.provisioning {
                Provisioning::OnDemand => None,
                Provisioning::Spot | Provisioning::Preemptible => Some(serde_json::Map::new()),
            },
            queueing_policy: self.queued_valid_for.map(|d| QueueingPolicy {
                valid_until_duration: Some(format!("{}s", d.as_secs())),
            }),
            ..QueuedResource::default()
        }
    }

    /// The state file of a run that is about to create this node.
    pub fn planned_state(&self) -> RunState {
        RunState {
            schema: STATE_SCHEMA.to_owned(),
            run_id: self.run_id.clone(),
            project: self.location.project.clone(),
            zone: self.location.zone.clone(),
            node_id: self.node_id.clone(),
            queued_resource: self.queued.then(|| self.node_id.clone()),
            accelerator_type: self.accelerator_type.clone(),
            runtime_version: self.runtime_version.clone(),
            provisioning: self.provisioning,
            owned: true,
            phase: Phase::Planned,
            create_requested_at: None,
            ready_at: None,
            delete_requested_at: None,
            deleted_at: None,
            internal_ip: None,
            last_error: None,
        }
    }
}

/// Creates the node and waits until it is READY. The ledger is saved as
/// `creating` before the create call goes out.
pub async fn acquire(
    client: &TpuClient,
    req: &NodeRequest,
    ledger: &mut Ledger,
) -> Result<Node, Error> {
    let now = time::rfc3339(client.clock().now());
    ledger.update(|s| {
        s.phase = Phase::Creating;
        s.create_requested_at = Some(now);
    })?;
    let loc = &req.location;
    let created = if req.queued {
        create_queued(client, req).await
    } else {
        create_node(client, req).await
    };
    if let Err(err @ Error::AlreadyExists { .. }) = created {
        // Someone else's resource has the name: it is not ours to delete.
        ledger.update(|s| {
            s.owned = false;
            s.phase = Phase::Planned;
            s.last_error = Some(err.to_string());
        })?;
        return Err(err);
    }
    created?;
    let node = client
        .wait_node_ready(loc, &req.node_id, req.deadlines.ready)
        .await?;
    let now = time::rfc3339(client.clock().now());
    let ip = node.internal_ip().map(str::to_owned);
    ledger.update(|s| {
        s.phase = Phase::Ready;
        s.ready_at = Some(now);
        s.internal_ip = ip;
    })?;
    Ok(node)
}

/// `POST nodes`, made safe to repeat: after a timeout or a 409 we look at
/// the node, and a node labelled with our run is ours (an earlier attempt
/// went through).
async fn create_node(client: &TpuClient, req: &NodeRequest) -> Result<(), Error> {
    let loc = &req.location;
    let body = req.node_body();
    let attempts = client.timing().max_attempts.max(1);
    for attempt in 0..attempts {
        match client.create_node(loc, &req.node_id, &body).await {
            Ok(op) => {
                client
                    .wait_operation(
                        loc,
                        op,
                        &format!("creating node `{}`", req.node_id),
                        req.deadlines.create,
                    )
                    .await?;
                return Ok(());
            }
            Err(err @ (Error::Transport { .. } | Error::AlreadyExists { .. })) => {
                match client.get_node(loc, &req.node_id).await {
                    Ok(node) if node.run_label() == Some(label_value(&req.run_id).as_str()) => {
                        return Ok(());
                    }
                    Ok(_) => return Err(err_already_exists(err, &req.node_id)),
                    Err(get_err) if get_err.is_not_found() && attempt + 1 < attempts => {
                        client
                            .clock()
                            .sleep(client.timing().retry.delay(attempt))
                            .await;
                    }
                    Err(_) => return Err(err),
                }
            }
            Err(err) => return Err(err),
        }
    }
    Err(Error::Unavailable {
        method: "POST".to_owned(),
        url: format!("{}/nodes", loc.parent()),
        attempts,
        last: "the node never appeared".to_owned(),
    })
}

fn err_already_exists(err: Error, node_id: &str) -> Error {
    match err {
        Error::AlreadyExists { .. } => err,
        _ => Error::AlreadyExists {
            name: format!("node `{node_id}`"),
            message: "a node of that name belongs to something else".to_owned(),
        },
    }
}

async fn create_queued(client: &TpuClient, req: &NodeRequest) -> Result<(), Error> {
    let loc = &req.location;
    let id = &req.node_id;
    match client
        .create_queued_resource(loc, id, &req.queued_resource_body())
        .await
    {
        Ok(op) => {
            client
                .wait_operation(
                    loc,
                    op,
                    &format!("creating queued resource `{id}`"),
                    req.deadlines.create,
                )
                .await?;
        }
        // A timed-out create may have gone through; the state poll below
        // finds out, and a 404 there is the answer.
        Err(Error::Transport { .. }) => {}
        Err(Error::AlreadyExists { .. }) => {
            let qr = client.get_queued_resource(loc, id).await?;
            let ours = qr
                .tpu
                .as_ref()
                .and_then(|tpu| tpu.node_spec.first())
                .is_some_and(|spec| {
                    spec.node.run_label() == Some(label_value(&req.run_id).as_str())
                });
            if !ours {
                return Err(Error::AlreadyExists {
                    name: format!("queued resource `{id}`"),
                    message: "it belongs to another run".to_owned(),
                });
            }
        }
        Err(err) => return Err(err),
    }
    client
        .wait_queued_resource_active(loc, id, req.deadlines.create)
        .await?;
    Ok(())
}

/// Deletes what the ledger says this run created and waits for the delete
/// to finish. Does nothing for reused VMs or ones already deleted; deletes
/// kept ones (this is how `cleanup` ends a `--keep`).
pub async fn release(
    client: &TpuClient,
    ledger: &mut Ledger,
    deadline: Duration,
) -> Result<(), Error> {
    if !ledger.state.owned || matches!(ledger.state.phase, Phase::Deleted | Phase::Planned) {
        return Ok(());
    }
    let was_creating = ledger.state.phase == Phase::Creating;
    let now = time::rfc3339(client.clock().now());
    ledger.update(|s| {
        s.phase = Phase::Deleting;
        s.delete_requested_at = Some(now);
    })?;
    let res = delete_everything(client, ledger, deadline, was_creating).await;
    match &res {
        Ok(()) => {
            let now = time::rfc3339(client.clock().now());
            ledger.update(|s| {
                s.phase = Phase::Deleted;
                s.deleted_at = Some(now);
            })?;
        }
        Err(err) => {
            let text = err.to_string();
            ledger.update(|s| s.last_error = Some(text))?;
        }
    }
    res
}

async fn delete_everything(
    client: &TpuClient,
    ledger: &Ledger,
    deadline: Duration,
    was_creating: bool,
) -> Result<(), Error> {
    let s = &ledger.state;
    let loc = Location::new(&s.project, &s.zone);
    if let Some(qr) = &s.queued_resource {
        match client.delete_queued_resource(&loc, qr, true).await {
            Ok(op) => {
                ignore_not_found(
                    client
                        .wait_operation(
                            &loc,
                            op,
                            &format!("deleting queued resource `{qr}`"),
                            deadline,
                        )
                        .await,
                )?;
            }
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err),
        }
    }
    let what = format!("deleting node `{}`", s.node_id);
    match client.delete_node(&loc, &s.node_id).await {
        Ok(op) => ignore_not_found(client.wait_operation(&loc, op, &what, deadline).await),
        Err(err) if err.is_not_found() && was_creating => {
            // A create cut short may still land: look once more after a pause.
            client.clock().sleep(client.timing().poll.delay(0)).await;
            match client.delete_node(&loc, &s.node_id).await {
                Ok(op) => ignore_not_found(client.wait_operation(&loc, op, &what, deadline).await),
                Err(err) => ignore_not_found::<()>(Err(err)),
            }
        }
        Err(err) => ignore_not_found::<()>(Err(err)),
    }
}

fn ignore_not_found<T>(res: Result<T, Error>) -> Result<(), Error> {
    match res {
        Ok(_) => Ok(()),
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => Err(err),
    }
}

/// Why a leased session did not produce its value.
#[derive(Debug)]
pub enum Failure<E> {
    /// Creating the node or waiting for it failed.
    Provision(Error),
    /// The caller's session failed.
    Session(E),
    /// The cancel future fired first (Ctrl-C, SIGTERM).
    Cancelled,
}

impl<E: std::fmt::Display> std::fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Provision(err) => err.fmt(f),
            Failure::Session(err) => err.fmt(f),
            Failure::Cancelled => Error::Cancelled.fmt(f),
        }
    }
}

/// The result of [`with_node`]: the session's outcome and, separately,
/// whether the node was deleted (`None` when kept).
pub struct Leased<T, E> {
    pub outcome: Result<T, Failure<E>>,
    pub release: Option<Result<(), Error>>,
}

/// Creates the node, runs `session` on it, and deletes the node afterwards
/// on every path (success, error, `cancel` firing), unless `keep`.
///
/// The ledger must be fresh from [`NodeRequest::planned_state`]; it is
/// saved before anything is created.
pub async fn with_node<T, E, F, Fut, C>(
    client: &TpuClient,
    req: &NodeRequest,
    ledger: &mut Ledger,
    keep: bool,
    cancel: C,
    session: F,
) -> Leased<T, E>
where
    F: FnOnce(Node) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Future<Output = ()>,
{
    let outcome = {
        let work = async {
            let node = acquire(client, req, ledger)
                .await
                .map_err(Failure::Provision)?;
            session(node).await.map_err(Failure::Session)
        };
        tokio::select! {
            res = work => res,
            () = cancel => Err(Failure::Cancelled),
        }
    };
    let release = if keep && ledger.state.phase != Phase::Planned {
        let _ = ledger.update(|s| s.phase = Phase::Kept);
        None
    } else {
        Some(release(client, ledger, req.deadlines.delete).await)
    };
    Leased { outcome, release }
}

/// What [`cleanup`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupOutcome {
    Deleted,
    /// Nothing to do: already deleted, never created, or not ours.
    NothingToDo(Phase),
}

/// Deletes whatever a run's state file says may still be alive.
pub async fn cleanup(
    client: &TpuClient,
    ledger: &mut Ledger,
    deadline: Duration,
) -> Result<CleanupOutcome, Error> {
    if !ledger.state.owned || !ledger.state.may_be_alive() {
        return Ok(CleanupOutcome::NothingToDo(ledger.state.phase));
    }
    release(client, ledger, deadline).await?;
    Ok(CleanupOutcome::Deleted)
}
