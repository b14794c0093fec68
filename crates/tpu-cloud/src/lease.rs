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
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::api::{
    NetworkConfig, Node, Operation, Provisioning, QueuedNodeSpec, QueuedResource, QueuedTpu,
    QueueingPolicy, ServiceAccount,
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
            create_operation: None,
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
    acquire_tracked(client, req, ledger, &InFlight::default()).await
}

/// The create call of a lease, which outlives the future that made it: a
/// cancelled session must still learn the call's outcome (its operation)
/// before concluding that no node exists.
#[derive(Clone)]
pub struct InFlight {
    inner: Arc<Mutex<InFlightState>>,
    /// True while a create call is on its way.
    pending: tokio::sync::watch::Sender<bool>,
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight {
            inner: Arc::default(),
            pending: tokio::sync::watch::Sender::new(false),
        }
    }
}

#[derive(Default)]
struct InFlightState {
    /// The create's operation, once known.
    operation: Option<String>,
    /// The create was answered with an error that means nothing was made.
    rejected: bool,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `POST nodes` in a task of its own, whose outcome is recorded
    /// here even if the caller stops waiting.
    async fn create_node(
        &self,
        client: &TpuClient,
        loc: &Location,
        node_id: &str,
        body: &Node,
    ) -> Result<Operation, Error> {
        self.pending.send_replace(true);
        let url = format!("{}/nodes", loc.parent());
        let this = self.clone();
        let (client, loc, id, body) = (
            client.clone(),
            loc.clone(),
            node_id.to_owned(),
            body.clone(),
        );
        let task = tokio::spawn(async move {
            let res = client.create_node(&loc, &id, &body).await;
            {
                let mut state = this.lock();
                match &res {
                    Ok(op) => state.operation = Some(op.name.clone()),
                    Err(err) => state.rejected = creates_nothing(err),
                }
            }
            this.pending.send_replace(false);
            res
        });
        task.await.unwrap_or_else(|join| {
            Err(Error::Transport {
                method: "POST".to_owned(),
                url,
                detail: join.to_string(),
            })
        })
    }

    /// Waits for a create call still in flight (bounded by the client's
    /// own request timeout and retries).
    async fn settle(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|pending| !*pending).await;
    }

    fn operation(&self) -> Option<String> {
        self.lock().operation.clone()
    }

    fn rejected(&self) -> bool {
        self.lock().rejected
    }
}

/// Errors of a create call after which no node can exist.
fn creates_nothing(err: &Error) -> bool {
    !matches!(
        err,
        Error::Transport { .. } | Error::Unavailable { .. } | Error::AlreadyExists { .. }
    )
}

async fn acquire_tracked(
    client: &TpuClient,
    req: &NodeRequest,
    ledger: &mut Ledger,
    inflight: &InFlight,
) -> Result<Node, Error> {
    let now = time::rfc3339(client.clock().now());
    ledger.update(|s| {
        s.phase = Phase::Creating;
        s.create_requested_at = Some(now);
    })?;
    let loc = &req.location;
    let what = format!(
        "node `{}` ({} in {})",
        req.node_id, req.accelerator_type, loc.zone
    );
    let created = if req.queued {
        ledger.progress(&format!(
            "asking for {what} through queued resource `{}`",
            req.node_id
        ));
        create_queued(client, req, ledger).await
    } else {
        ledger.progress(&format!("creating {what}"));
        create_node(client, req, ledger, inflight).await
    };
    if let Err(Error::AlreadyExists { name, message }) = &created
        && message.starts_with(FOREIGN)
    {
        // Someone else's resource has the name (its labels say so): it is
        // not ours to delete.
        let text = format!("{name} already exists: {message}");
        ledger.update(|s| {
            s.owned = false;
            s.phase = Phase::Planned;
            s.last_error = Some(text);
        })?;
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
    ledger.progress(&format!("node `{}` is READY", req.node_id));
    Ok(node)
}

/// How an [`Error::AlreadyExists`] message starts when the node's labels
/// prove it is someone else's.
const FOREIGN: &str = "it belongs to ";

/// `POST nodes`, made safe to repeat: after a timeout or a 409 we look at
/// the node, and a node labelled with our run is ours (an earlier attempt
/// went through). Only a node we could read and whose labels name another
/// run is foreign; a failed lookup is retried and never disowns the node.
async fn create_node(
    client: &TpuClient,
    req: &NodeRequest,
    ledger: &mut Ledger,
    inflight: &InFlight,
) -> Result<(), Error> {
    let loc = &req.location;
    let body = req.node_body();
    let attempts = client.timing().max_attempts.max(1);
    for attempt in 0..attempts {
        // The call runs in its own task so that cancelling the session
        // does not lose its answer (see `InFlight`).
        let outcome = inflight.create_node(client, loc, &req.node_id, &body).await;
        match outcome {
            Ok(op) => {
                let name = op.name.clone();
                // Best effort: the operation is also kept in memory.
                let _ = ledger.update(|s| s.create_operation = Some(name));
                ledger.progress(&format!(
                    "node `{}` accepted; waiting for it to be READY",
                    req.node_id
                ));
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
                match lookup(client, loc, &req.node_id).await {
                    Ok(node) if node.run_label() == Some(label_value(&req.run_id).as_str()) => {
                        return Ok(());
                    }
                    Ok(node) => {
                        let owner = node
                            .run_label()
                            .map(|run| format!("run `{run}`"))
                            .unwrap_or_else(|| "something not made by sglprof".to_owned());
                        return Err(Error::AlreadyExists {
                            name: format!("node `{}`", req.node_id),
                            message: format!("{FOREIGN}{owner}"),
                        });
                    }
                    Err(get_err) if get_err.is_not_found() && attempt + 1 < attempts => {
                        client
                            .clock()
                            .sleep(client.timing().retry.delay(attempt))
                            .await;
                    }
                    // Not found on the last attempt, or the lookup itself
                    // failed: the node may be ours; say so and keep it.
                    Err(_) => return Err(err_unknown(err, &req.node_id)),
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

/// `GET` the node, retried on transient failures (the client retries 5xx
/// itself; this adds a few rounds for lost connections).
async fn lookup(client: &TpuClient, loc: &Location, node_id: &str) -> Result<Node, Error> {
    let mut last = None;
    for attempt in 0..3 {
        match client.get_node(loc, node_id).await {
            Ok(node) => return Ok(node),
            Err(err) if err.is_not_found() => return Err(err),
            Err(err) => {
                last = Some(err);
                client
                    .clock()
                    .sleep(client.timing().retry.delay(attempt))
                    .await;
            }
        }
    }
    Err(last.expect("three attempts failed"))
}

/// A create whose outcome we could not learn. The node may exist and be
/// ours: the error says so, and the ledger keeps it as ours.
fn err_unknown(err: Error, node_id: &str) -> Error {
    match err {
        Error::AlreadyExists { .. } => Error::AlreadyExists {
            name: format!("node `{node_id}`"),
            message: "a node of that name exists but could not be read to check whose it is; \
                      it is treated as this run's and deleted at the end"
                .to_owned(),
        },
        other => other,
    }
}

async fn create_queued(
    client: &TpuClient,
    req: &NodeRequest,
    ledger: &Ledger,
) -> Result<(), Error> {
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
    ledger.progress(&format!(
        "queued resource `{id}` accepted; waiting for capacity"
    ));
    client
        .wait_queued_resource_active(loc, id, req.deadlines.create)
        .await?;
    Ok(())
}

/// Deletes what the ledger says this run created and waits for the delete
/// to finish. Does nothing for reused VMs or ones already deleted; deletes
/// kept ones (this is how `cleanup` ends a `--keep`).
///
/// The DELETE goes out even when the state file cannot be written (a full
/// disk): saving is attempted at each step, and a failed save is left in
/// [`Ledger::unsaved`] for the caller to report, never a reason to keep a
/// VM. A run that was still creating keeps looking for its node until the
/// create operation is done.
pub async fn release(
    client: &TpuClient,
    ledger: &mut Ledger,
    deadline: Duration,
) -> Result<(), Error> {
    release_tracked(client, ledger, deadline, &InFlight::default()).await
}

async fn release_tracked(
    client: &TpuClient,
    ledger: &mut Ledger,
    deadline: Duration,
    inflight: &InFlight,
) -> Result<(), Error> {
    if !ledger.state.owned || matches!(ledger.state.phase, Phase::Deleted | Phase::Planned) {
        return Ok(());
    }
    let was_creating = ledger.state.phase == Phase::Creating;
    ledger.progress(&format!("deleting node `{}`", ledger.state.node_id));
    let now = time::rfc3339(client.clock().now());
    // Not `?`: a state file we cannot write must not keep the VM alive.
    let _ = ledger.update(|s| {
        s.phase = Phase::Deleting;
        s.delete_requested_at = Some(now);
    });
    let res = if was_creating {
        // A create cut short may still be on its way: learn its outcome.
        inflight.settle().await;
        let operation = inflight
            .operation()
            .or_else(|| ledger.state.create_operation.clone());
        if operation != ledger.state.create_operation {
            let known = operation.clone();
            let _ = ledger.update(|s| s.create_operation = known);
        }
        let rejected = inflight.rejected() && operation.is_none();
        delete_after_create(client, ledger, deadline, operation, rejected).await
    } else {
        delete_everything(client, &ledger.state, deadline).await
    };
    match &res {
        Ok(()) => {
            let now = time::rfc3339(client.clock().now());
            let _ = ledger.update(|s| {
                s.phase = Phase::Deleted;
                s.deleted_at = Some(now);
            });
        }
        Err(Error::AlreadyExists { .. }) => {
            // The node turned out to be someone else's: not deleted, and
            // not ours to delete later.
            let text = res.as_ref().err().map(Error::chain);
            let _ = ledger.update(|s| {
                s.owned = false;
                s.phase = Phase::Planned;
                s.last_error = text;
            });
        }
        Err(err) => {
            let text = err.chain();
            let _ = ledger.update(|s| s.last_error = Some(text));
        }
    }
    res
}

/// Deletes a node whose create may not have finished. The node is looked
/// for until the create operation is done (when its name is known), and
/// it is deleted only if its labels say it is this run's.
async fn delete_after_create(
    client: &TpuClient,
    ledger: &Ledger,
    deadline: Duration,
    operation: Option<String>,
    rejected: bool,
) -> Result<(), Error> {
    let s = &ledger.state;
    if s.queued_resource.is_some() {
        return delete_everything(client, s, deadline).await;
    }
    let loc = Location::new(&s.project, &s.zone);
    let ours = label_value(&s.run_id);
    let start = client.clock().now();
    let mut attempt = 0;
    let mut op_done = rejected;
    loop {
        match lookup(client, &loc, &s.node_id).await {
            Ok(node) if node.run_label() == Some(ours.as_str()) => {
                return delete_everything(client, s, deadline).await;
            }
            Ok(_) => {
                return Err(Error::AlreadyExists {
                    name: format!("node `{}`", s.node_id),
                    message: format!("{FOREIGN}another run; left alone"),
                });
            }
            Err(err) if err.is_not_found() => {
                if op_done {
                    return Ok(());
                }
            }
            Err(err) => return Err(err),
        }
        match &operation {
            Some(name) => {
                match client.get_operation(&loc, name).await {
                    Ok(op) => op_done = op.done,
                    // The operation is gone: nothing more will happen.
                    Err(err) if err.is_not_found() => op_done = true,
                    Err(err) => return Err(err),
                }
                if op_done {
                    // One more look: the node appears as the operation ends.
                    continue;
                }
            }
            None => {
                // Without the operation, the node has until the deadline to
                // show up (a create lost with a killed process).
            }
        }
        let waited = client
            .clock()
            .now()
            .duration_since(start)
            .unwrap_or_default();
        if waited >= deadline {
            return Err(Error::Deadline {
                what: format!(
                    "the create of node `{}` to finish (it may still appear; run cleanup again)",
                    s.node_id
                ),
                waited_s: waited.as_secs(),
            });
        }
        client
            .clock()
            .sleep(client.timing().poll.delay(attempt).min(deadline - waited))
            .await;
        attempt += 1;
    }
}

async fn delete_everything(
    client: &TpuClient,
    s: &RunState,
    deadline: Duration,
) -> Result<(), Error> {
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
/// whether the node was deleted (`None` when kept), and whether the run
/// state file is behind.
pub struct Leased<T, E> {
    pub outcome: Result<T, Failure<E>>,
    pub release: Option<Result<(), Error>>,
    /// [`Ledger::unsaved_note`] after the release: a clause for the run's
    /// closing line when the state file could not be saved.
    pub state_note: Option<String>,
}

/// Creates the node, runs `session` on it, and deletes the node afterwards
/// on every path (success, error, `cancel` firing, a panic in `session`,
/// which is resumed once the node is deleted), unless `keep`.
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
    use futures_util::FutureExt as _;
    let inflight = InFlight::default();
    // A panic inside the session is caught, the node released as on any
    // other exit, and the panic resumed afterwards.
    let mut panicked = None;
    let outcome = {
        let work = std::panic::AssertUnwindSafe(async {
            let node = acquire_tracked(client, req, ledger, &inflight)
                .await
                .map_err(Failure::Provision)?;
            session(node).await.map_err(Failure::Session)
        })
        .catch_unwind();
        // The cancel future first: a signal that came before the lease
        // started stops it before anything is created.
        tokio::select! {
            biased;
            () = cancel => Err(Failure::Cancelled),
            res = work => res.unwrap_or_else(|payload| {
                panicked = Some(payload);
                Err(Failure::Cancelled)
            }),
        }
    };
    let release = if keep && ledger.state.phase != Phase::Planned {
        let _ = ledger.update(|s| s.phase = Phase::Kept);
        None
    } else {
        Some(release_tracked(client, ledger, req.deadlines.delete, &inflight).await)
    };
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
    Leased {
        outcome,
        release,
        state_note: ledger.unsaved_note(),
    }
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

/// The signals that end a session: INT (Ctrl-C), TERM, HUP (terminal
/// closed, ssh lost) and QUIT. Once installed, none of them kills the
/// process outright any more; [`Signals::recv`] says which one came, and
/// is the `cancel` future to hand [`with_node`].
pub struct Signals {
    streams: Vec<(tokio::signal::unix::Signal, &'static str)>,
}

impl Signals {
    /// Installs the handlers. Do it before the first resource is created,
    /// so that no window is left in which a signal kills the process.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
        ];
        let mut streams = Vec::with_capacity(kinds.len());
        for (kind, name) in kinds {
            streams.push((signal(kind)?, name));
        }
        Ok(Signals { streams })
    }

    /// Waits for the next of the signals and returns its name (`SIGHUP`).
    pub async fn recv(&mut self) -> &'static str {
        std::future::poll_fn(|cx| {
            for (stream, name) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}
