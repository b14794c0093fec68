//! A fake Cloud TPU v2 API on loopback, for tests and for
//! `profile --tpu --rehearsal` (enabled by the `fake` cargo feature).
//!
//! [`FakeTpu::start`] serves on `127.0.0.1` with an ephemeral port. One
//! responder keeps nodes, queued resources and long-running operations in
//! memory and follows the documented paths, states and Google error bodies
//! (`tpu.googleapis.com/v2`): nodes create, get, list, delete, stop and
//! start; queued resources create, get and delete (`force`); operations get.
//! Faults are switched on through [`World`] (stockout on create,
//! preemption, operations that never finish, slow creates) or scripted per
//! call with [`FakeTpu::inject`]. With [`FakeConfig::log`] set, every call
//! appends one line `METHOD PATH STATUS` to that file.
//!
//! Requests must carry `Authorization: Bearer <FakeConfig::token>`; hand
//! the client a [`FakeTokens`]. Deleting a node calls the hooks given to
//! [`FakeTpu::on_node_deleted`], so a rehearsal can end what ran "on" it.
//!
//! What it is not: a model of billing, quotas, IAM or the real timing of
//! Google's operations; operations finish after a set number of polls.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

/// The project of [`FakeConfig::default`].
pub const PROJECT: &str = "test-project";
/// The first zone of [`FakeConfig::default`].
pub const ZONE: &str = "us-east5-b";
/// The bearer token of [`FakeConfig::default`].
pub const TOKEN: &str = "fake-token";

/// What the fake accepts and where it logs.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The only project callers may use (others get 403).
    pub project: String,
    /// Zones that exist (others get 400).
    pub zones: Vec<String>,
    /// The bearer token requests must carry.
    pub token: String,
    /// Appends `METHOD PATH STATUS` per call when set.
    pub log: Option<PathBuf>,
}

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            project: PROJECT.to_owned(),
            zones: vec![ZONE.to_owned(), "us-east1-d".to_owned()],
            token: TOKEN.to_owned(),
            log: None,
        }
    }
}

/// A token provider that hands out a fixed token and counts requests.
pub struct FakeTokens {
    pub token: String,
    pub calls: std::sync::atomic::AtomicU32,
}

impl FakeTokens {
    pub fn new(token: &str) -> FakeTokens {
        FakeTokens {
            token: token.to_owned(),
            calls: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

#[async_trait::async_trait]
impl gcp_auth::TokenProvider for FakeTokens {
    async fn token(&self, _scopes: &[&str]) -> Result<Arc<gcp_auth::Token>, gcp_auth::Error> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({"access_token": self.token, "expires_in": 3600});
        Ok(Arc::new(
            serde_json::from_value(body).expect("a token body parses"),
        ))
    }

    async fn project_id(&self) -> Result<Arc<str>, gcp_auth::Error> {
        Ok(PROJECT.into())
    }
}

/// How many hosts (workers) a slice of this accelerator type has, by the
/// public tables: single-host up to 8 chips for v5e/v6e (4 chips per host
/// beyond), 4 chips (8 cores) per host for v2 to v5p. `None` for an
/// unknown type.
pub fn hosts_for(accelerator_type: &str) -> Option<u32> {
    let (family, size) = accelerator_type.rsplit_once('-')?;
    let size: u32 = size.parse().ok()?;
    if size == 0 {
        return None;
    }
    let res = match family {
        "v5litepod" | "v6e" | "v5e" => {
            if size <= 8 {
                1
            } else {
                size.div_ceil(4)
            }
        }
        "v2" | "v3" | "v4" | "v5p" => size.div_ceil(8),
        _ => return None,
    };
    Some(res)
}

/// Called with the full name of a node when its DELETE is accepted.
pub type DeleteHook = Arc<dyn Fn(&str) + Send + Sync>;

/// What a finished operation does to the world.
#[derive(Clone, Debug)]
enum Effect {
    CreateNode(String),
    DeleteNode(String),
    StopNode(String),
    StartNode(String),
    CreateQueued(String),
    DeleteQueued(String),
}

#[derive(Debug)]
struct FakeOp {
    name: String,
    target: String,
    verb: &'static str,
    polls_left: u32,
    effect: Effect,
    done: bool,
    error: Option<Value>,
}

/// An injected answer for the next request that matches.
pub struct Injected {
    pub method: &'static str,
    /// Matched against the path (and query) as a substring.
    pub path_contains: String,
    pub status: u16,
    pub body: Value,
    /// How many requests in a row get it.
    pub times: u32,
}

pub struct World {
    pub project: String,
    pub token: String,
    log_file: Option<PathBuf>,
    hooks: Vec<DeleteHook>,
    /// Node names whose DELETE was accepted since the hooks last ran.
    deleting: Vec<String>,
    /// Hosts per node when set; otherwise from [`hosts_for`].
    pub hosts: Option<u32>,
    pub nodes: BTreeMap<String, Value>,
    pub queued: BTreeMap<String, Value>,
    ops: BTreeMap<String, FakeOp>,
    /// `METHOD /v2/path?query`, in arrival order.
    pub log: Vec<String>,
    /// Full names of nodes (and queued resources) that were deleted.
    pub deleted: Vec<String>,
    pub zones: Vec<String>,
    pub accelerator_types: Vec<String>,
    // Faults and pacing.
    pub inject: VecDeque<Injected>,
    /// Create operations finish with "no more capacity" (code 8).
    pub stockout: bool,
    /// Operations stay `done: false` forever.
    pub ops_never_finish: bool,
    /// Answer creates this late (the node is created at once regardless).
    pub create_delay: Option<Duration>,
    pub create_op_polls: u32,
    pub delete_op_polls: u32,
    /// GETs a queued resource answers WAITING_FOR_RESOURCES before ACTIVE.
    pub queued_waiting_polls: u32,
    /// Nodes turn PREEMPTED as soon as they would be READY.
    pub preempt: bool,
    /// Largest page the list call returns.
    pub page_size_cap: usize,
    /// A created node stays invisible (404 to GET and DELETE, left out of
    /// lists) for this many such calls, or until its create operation is
    /// done: Google's create is not instant.
    pub create_hidden_for: u32,
    hidden: BTreeMap<String, u32>,
    op_counter: u32,
}

impl World {
    fn new(config: &FakeConfig) -> World {
        World {
            project: config.project.clone(),
            token: config.token.clone(),
            log_file: config.log.clone(),
            hooks: Vec::new(),
            deleting: Vec::new(),
            hosts: None,
            nodes: BTreeMap::new(),
            queued: BTreeMap::new(),
            ops: BTreeMap::new(),
            log: Vec::new(),
            deleted: Vec::new(),
            zones: config.zones.clone(),
            accelerator_types: [
                "v6e-1",
                "v6e-4",
                "v6e-8",
                "v6e-16",
                "v6e-32",
                "v5litepod-1",
                "v5litepod-4",
                "v5litepod-8",
                "v5litepod-16",
                // Two hosts: the smallest multi-host slice, for rehearsals.
                "v5p-16",
            ]
            .map(str::to_owned)
            .into(),
            inject: VecDeque::new(),
            stockout: false,
            ops_never_finish: false,
            create_delay: None,
            create_op_polls: 2,
            delete_op_polls: 1,
            queued_waiting_polls: 2,
            preempt: false,
            page_size_cap: 100,
            create_hidden_for: 0,
            hidden: BTreeMap::new(),
            op_counter: 0,
        }
    }
}

pub struct FakeTpu {
    pub server: MockServer,
    world: Arc<Mutex<World>>,
}

impl FakeTpu {
    /// Starts with [`FakeConfig::default`].
    pub async fn start() -> FakeTpu {
        FakeTpu::start_with(FakeConfig::default()).await
    }

    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start_with(config: FakeConfig) -> FakeTpu {
        let server = MockServer::start().await;
        assert!(
            server.uri().starts_with("http://127.0.0.1:"),
            "the fake must stay on loopback"
        );
        let world = Arc::new(Mutex::new(World::new(&config)));
        Mock::given(any())
            .respond_with(Responder(world.clone()))
            .mount(&server)
            .await;
        FakeTpu { server, world }
    }

    /// `http://127.0.0.1:PORT`, the client's base URL.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// The state, to read or to switch faults on.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A token provider the fake accepts.
    pub fn tokens(&self) -> Arc<FakeTokens> {
        Arc::new(FakeTokens::new(&self.world().token))
    }

    /// Runs `hook` with the node's full name whenever a node DELETE is
    /// accepted (as a VM's processes end when it is deleted).
    pub fn on_node_deleted(&self, hook: DeleteHook) {
        self.world().hooks.push(hook);
    }

    /// The full name of node `id` in [`PROJECT`] and [`ZONE`].
    pub fn node_name(id: &str) -> String {
        format!("projects/{PROJECT}/locations/{ZONE}/nodes/{id}")
    }

    /// Turns a READY node PREEMPTED, as Google does to spot VMs.
    pub fn preempt_now(&self, id: &str) -> bool {
        let mut world = self.world();
        let Some(name) = world
            .nodes
            .keys()
            .find(|n| n.ends_with(&format!("/nodes/{id}")))
            .cloned()
        else {
            return false;
        };
        world.nodes.get_mut(&name).expect("found above")["state"] = json!("PREEMPTED");
        true
    }

    /// Puts a READY node in place, as if someone had created it.
    pub fn add_node(&self, id: &str, labels: Value) {
        let name = FakeTpu::node_name(id);
        let node = json!({
            "name": name, "acceleratorType": "v6e-1", "runtimeVersion": "v6e-ubuntu-2404",
            "state": "READY", "labels": labels,
            "networkEndpoints": [{"ipAddress": "10.0.0.9", "port": 8470}],
        });
        self.world().nodes.insert(name, node);
    }

    /// Answers the next `times` calls whose method is `method` and whose
    /// path (with query) contains `path_contains` with `status` and `body`.
    pub fn inject(
        &self,
        method: &'static str,
        path_contains: &str,
        status: u16,
        body: Value,
        times: u32,
    ) {
        let path_contains = path_contains.to_owned();
        self.world().inject.push_back(Injected {
            method,
            path_contains,
            status,
            body,
            times,
        });
    }

    /// How many calls so far start with `prefix` (`METHOD /v2/...`).
    pub fn requests(&self, prefix: &str) -> usize {
        self.world()
            .log
            .iter()
            .filter(|line| line.starts_with(prefix))
            .count()
    }
}

/// The Google error body.
pub fn google_error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": []}})
}

struct Responder(Arc<Mutex<World>>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (res, hooks, deleting) = {
            let mut world = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let res = world.handle(req);
            let deleting = std::mem::take(&mut world.deleting);
            (res, world.hooks.clone(), deleting)
        };
        // Outside the lock: a hook may take a while (it stops processes).
        for name in &deleting {
            for hook in &hooks {
                hook(name);
            }
        }
        res
    }
}

/// An answer before it becomes a wiremock response.
struct Answer {
    status: u16,
    body: Value,
    delay: Option<Duration>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        delay: None,
    }
}

fn err(code: u16, status: &str, message: &str) -> Answer {
    answer(code, google_error(code, status, message))
}

impl World {
    fn handle(&mut self, req: &Request) -> ResponseTemplate {
        let mut res = self.route(req);
        if let Some(path) = &self.log_file {
            let line = format!("{} {} {}\n", req.method, req.url.path(), res.status);
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(line.as_bytes()));
            if let Err(cause) = written {
                // The log is the caller's evidence; losing it must show.
                res = err(
                    500,
                    "INTERNAL",
                    &format!("the fake cannot write its log: {cause}"),
                );
            }
        }
        let template = ResponseTemplate::new(res.status).set_body_json(res.body);
        match res.delay {
            Some(delay) => template.set_delay(delay),
            None => template,
        }
    }

    fn route(&mut self, req: &Request) -> Answer {
        let method = req.method.to_string();
        let path = req.url.path().to_owned();
        let query: BTreeMap<String, String> = req.url.query_pairs().into_owned().collect();
        let line = match req.url.query() {
            Some(q) => format!("{method} {path}?{q}"),
            None => format!("{method} {path}"),
        };
        self.log.push(line.clone());

        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(format!("Bearer {}", self.token).as_str()) {
            return err(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        if let Some(pos) = self
            .inject
            .iter()
            .position(|i| i.method == method && line.contains(&i.path_contains))
        {
            let injected = &mut self.inject[pos];
            let res = answer(injected.status, injected.body.clone());
            injected.times -= 1;
            if injected.times == 0 {
                self.inject.remove(pos);
            }
            return res;
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return err(404, "NOT_FOUND", "unknown path");
        };
        let parts: Vec<&str> = rest.split('/').collect();
        // projects/{p}/locations/{z}/{collection}[/{id}[:verb]]
        if parts.len() < 5 || parts[0] != "projects" || parts[2] != "locations" {
            return err(404, "NOT_FOUND", "unknown path");
        }
        if parts[1] != self.project {
            return err(
                403,
                "PERMISSION_DENIED",
                &format!(
                    "Permission 'tpu.nodes.list' denied on 'projects/{}'",
                    parts[1]
                ),
            );
        }
        let zone = parts[3];
        if !self.zones.iter().any(|z| z == zone) {
            return err(
                400,
                "INVALID_ARGUMENT",
                &format!("Location {zone} is not found or access is unauthorized."),
            );
        }
        let parent = format!("projects/{}/locations/{zone}", parts[1]);
        let collection = parts[4];
        let id = parts.get(5).copied();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        match (method.as_str(), collection, id) {
            ("POST", "nodes", None) => {
                let node_id = query.get("nodeId").cloned().unwrap_or_default();
                self.create_node(&parent, &node_id, body)
            }
            ("GET", "nodes", None) => self.list_nodes(&query),
            ("GET", "nodes", Some(id)) => self.get_node(&format!("{parent}/nodes/{id}")),
            ("DELETE", "nodes", Some(id)) => {
                self.delete_node(&parent, &format!("{parent}/nodes/{id}"))
            }
            ("POST", "nodes", Some(id_verb)) => match id_verb.split_once(':') {
                Some((id, "stop")) => {
                    self.stop_start(&parent, &format!("{parent}/nodes/{id}"), true)
                }
                Some((id, "start")) => {
                    self.stop_start(&parent, &format!("{parent}/nodes/{id}"), false)
                }
                _ => err(404, "NOT_FOUND", "unknown verb"),
            },
            ("POST", "queuedResources", None) => {
                let qr_id = query.get("queuedResourceId").cloned().unwrap_or_default();
                self.create_queued(&parent, &qr_id, body)
            }
            ("GET", "queuedResources", Some(id)) => {
                self.get_queued(&format!("{parent}/queuedResources/{id}"))
            }
            ("DELETE", "queuedResources", Some(id)) => {
                let force = query.get("force").map(String::as_str) == Some("true");
                self.delete_queued(&parent, &format!("{parent}/queuedResources/{id}"), force)
            }
            ("GET", "operations", Some(_)) => self.get_operation(rest),
            _ => err(404, "NOT_FOUND", &format!("no such method {method} {path}")),
        }
    }

    fn new_op(
        &mut self,
        parent: &str,
        target: &str,
        verb: &'static str,
        effect: Effect,
        polls: u32,
    ) -> Value {
        self.op_counter += 1;
        let name = format!("{parent}/operations/operation-{}", self.op_counter);
        let op = FakeOp {
            name: name.clone(),
            target: target.to_owned(),
            verb,
            polls_left: polls,
            effect,
            done: false,
            error: None,
        };
        let res = op_json(&op, &self.nodes);
        self.ops.insert(name, op);
        res
    }

    fn create_node(&mut self, parent: &str, node_id: &str, body: Value) -> Answer {
        let name = format!("{parent}/nodes/{node_id}");
        if node_id.is_empty() {
            return err(400, "INVALID_ARGUMENT", "nodeId is required");
        }
        let ty = body["acceleratorType"].as_str().unwrap_or_default();
        if !self.accelerator_types.iter().any(|t| t == ty) {
            let zone = parent.rsplit('/').next().unwrap();
            let msg = format!("Accelerator type \"{ty}\" is not available in zone \"{zone}\"");
            return err(400, "INVALID_ARGUMENT", &msg);
        }
        if self.nodes.contains_key(&name) {
            return err(
                409,
                "ALREADY_EXISTS",
                &format!("Resource '{name}' already exists"),
            );
        }
        let mut node = body;
        node["name"] = json!(name);
        node["state"] = json!("CREATING");
        node["createTime"] = json!("2026-02-05T18:48:20Z");
        self.nodes.insert(name.clone(), node);
        if self.create_hidden_for > 0 {
            self.hidden.insert(name.clone(), self.create_hidden_for);
        }
        let polls = self.create_op_polls;
        let op = self.new_op(
            parent,
            &name,
            "create",
            Effect::CreateNode(name.clone()),
            polls,
        );
        let mut res = answer(200, op);
        res.delay = self.create_delay;
        res
    }

    /// Whether `name` is still hidden; each call uses up one look.
    fn still_hidden(&mut self, name: &str) -> bool {
        match self.hidden.get_mut(name) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    fn get_node(&mut self, name: &str) -> Answer {
        if self.still_hidden(name) {
            return err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            );
        }
        // A creating node makes progress whether or not anyone polls its
        // operation (the client may have lost it to a timeout).
        let creating = self
            .nodes
            .get(name)
            .is_some_and(|n| n["state"] == "CREATING");
        if creating && !self.ops_never_finish {
            let pending = self
                .ops
                .values()
                .find(|op| op.target == name && op.verb == "create" && !op.done);
            if let Some(op_name) = pending.map(|op| op.name.clone()) {
                self.get_operation(&op_name);
            }
        }
        match self.nodes.get(name) {
            Some(node) => answer(200, node.clone()),
            None => err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            ),
        }
    }

    fn list_nodes(&mut self, query: &BTreeMap<String, String>) -> Answer {
        let size: usize = query
            .get("pageSize")
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let size = size.min(self.page_size_cap).max(1);
        let start: usize = query
            .get("pageToken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let hidden = &self.hidden;
        let all: Vec<&Value> = self
            .nodes
            .iter()
            .filter(|(name, _)| hidden.get(*name).is_none_or(|left| *left == 0))
            .map(|(_, node)| node)
            .collect();
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(size)
            .map(|v| (*v).clone())
            .collect();
        let mut res = json!({"nodes": page});
        if start + size < all.len() {
            res["nextPageToken"] = json!((start + size).to_string());
        }
        answer(200, res)
    }

    fn delete_node(&mut self, parent: &str, name: &str) -> Answer {
        if self.still_hidden(name) {
            return err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            );
        }
        let Some(node) = self.nodes.get_mut(name) else {
            return err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            );
        };
        node["state"] = json!("DELETING");
        self.deleting.push(name.to_owned());
        let polls = self.delete_op_polls;
        answer(
            200,
            self.new_op(
                parent,
                name,
                "delete",
                Effect::DeleteNode(name.to_owned()),
                polls,
            ),
        )
    }

    fn stop_start(&mut self, parent: &str, name: &str, stop: bool) -> Answer {
        let Some(node) = self.nodes.get_mut(name) else {
            return err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            );
        };
        let (state, verb, effect) = if stop {
            ("STOPPING", "stop", Effect::StopNode(name.to_owned()))
        } else {
            ("STARTING", "start", Effect::StartNode(name.to_owned()))
        };
        node["state"] = json!(state);
        answer(200, self.new_op(parent, name, verb, effect, 1))
    }

    fn create_queued(&mut self, parent: &str, qr_id: &str, body: Value) -> Answer {
        let name = format!("{parent}/queuedResources/{qr_id}");
        if self.queued.contains_key(&name) {
            return err(
                409,
                "ALREADY_EXISTS",
                &format!("Resource '{name}' already exists"),
            );
        }
        let mut qr = body;
        qr["name"] = json!(name);
        qr["state"] = json!({"state": "CREATING"});
        self.queued.insert(name.clone(), qr);
        answer(
            200,
            self.new_op(
                parent,
                &name,
                "create",
                Effect::CreateQueued(name.clone()),
                1,
            ),
        )
    }

    fn get_queued(&mut self, name: &str) -> Answer {
        let waiting = self.queued_waiting_polls;
        let stockout = self.stockout;
        let Some(qr) = self.queued.get_mut(name) else {
            return err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            );
        };
        let mut activate = None;
        if qr["state"]["state"] == "WAITING_FOR_RESOURCES" && !stockout {
            let seen = qr["_polls"].as_u64().unwrap_or(0) + 1;
            qr["_polls"] = json!(seen);
            if seen > u64::from(waiting) {
                qr["state"] = json!({"state": "ACTIVE"});
                activate = Some(qr["tpu"]["nodeSpec"][0].clone());
            }
        }
        let mut shown = qr.clone();
        shown.as_object_mut().unwrap().remove("_polls");
        if let Some(spec) = activate {
            let node_name = format!(
                "{}/nodes/{}",
                spec["parent"].as_str().unwrap(),
                spec["nodeId"].as_str().unwrap()
            );
            let mut node = spec["node"].clone();
            node["name"] = json!(node_name);
            node["state"] = json!("READY");
            node["queuedResource"] = json!(name);
            node["networkEndpoints"] = endpoints(&node, self.hosts, 3);
            self.nodes.insert(node_name, node);
        }
        answer(200, shown)
    }

    fn delete_queued(&mut self, parent: &str, name: &str, force: bool) -> Answer {
        let Some(qr) = self.queued.get(name) else {
            return err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            );
        };
        let spec = &qr["tpu"]["nodeSpec"][0];
        let node_name = format!(
            "{}/nodes/{}",
            spec["parent"].as_str().unwrap_or(""),
            spec["nodeId"].as_str().unwrap_or("")
        );
        if self.nodes.contains_key(&node_name) && !force {
            return err(
                400,
                "FAILED_PRECONDITION",
                "Delete the node first, or pass force=true",
            );
        }
        answer(
            200,
            self.new_op(
                parent,
                name,
                "delete",
                Effect::DeleteQueued(name.to_owned()),
                1,
            ),
        )
    }

    fn get_operation(&mut self, name: &str) -> Answer {
        let never = self.ops_never_finish;
        let Some(op) = self.ops.get_mut(name) else {
            return err(
                404,
                "NOT_FOUND",
                &format!("Operation '{name}' was not found"),
            );
        };
        if !op.done && !never {
            op.polls_left = op.polls_left.saturating_sub(1);
            if op.polls_left == 0 {
                op.done = true;
                let effect = op.effect.clone();
                let failure = self.apply(effect);
                let op = self.ops.get_mut(name).unwrap();
                op.error = failure;
            }
        }
        let op = &self.ops[name];
        answer(200, op_json(op, &self.nodes))
    }

    /// Applies a finished operation; returns its error, if it failed.
    fn apply(&mut self, effect: Effect) -> Option<Value> {
        match effect {
            Effect::CreateNode(name) => {
                self.hidden.remove(&name);
                if self.stockout {
                    self.nodes.remove(&name);
                    let zone = name.split('/').nth(3).unwrap_or_default();
                    let msg = format!(
                        "There is no more capacity in the zone \"{zone}\"; you can try in another zone where Cloud TPU Nodes are offered (see https://cloud.google.com/tpu/docs/regions) [EID: 0x1234]"
                    );
                    return Some(json!({"code": 8, "message": msg}));
                }
                let preempt = self.preempt;
                let hosts = self.hosts;
                if let Some(node) = self.nodes.get_mut(&name) {
                    node["state"] = json!(if preempt { "PREEMPTED" } else { "READY" });
                    node["health"] = json!("HEALTHY");
                    node["networkEndpoints"] = endpoints(node, hosts, 2);
                }
                None
            }
            Effect::DeleteNode(name) => {
                if self.nodes.remove(&name).is_some() {
                    self.deleted.push(name);
                }
                None
            }
            Effect::StopNode(name) | Effect::StartNode(name) => {
                let stopping = self
                    .nodes
                    .get(&name)
                    .is_some_and(|n| n["state"] == "STOPPING");
                if let Some(node) = self.nodes.get_mut(&name) {
                    node["state"] = json!(if stopping { "STOPPED" } else { "READY" });
                }
                None
            }
            Effect::CreateQueued(name) => {
                if let Some(qr) = self.queued.get_mut(&name) {
                    qr["state"] = json!({"state": "WAITING_FOR_RESOURCES"});
                }
                None
            }
            Effect::DeleteQueued(name) => {
                if let Some(qr) = self.queued.remove(&name) {
                    let spec = &qr["tpu"]["nodeSpec"][0];
                    let node_name = format!(
                        "{}/nodes/{}",
                        spec["parent"].as_str().unwrap_or(""),
                        spec["nodeId"].as_str().unwrap_or("")
                    );
                    if self.nodes.remove(&node_name).is_some() {
                        self.deleted.push(node_name);
                    }
                    self.deleted.push(name);
                }
                None
            }
        }
    }
}

/// One endpoint per host, `10.0.<host>.<last>`, port 8470.
fn endpoints(node: &Value, hosts: Option<u32>, last: u32) -> Value {
    let ty = node["acceleratorType"].as_str().unwrap_or_default();
    let hosts = hosts.or_else(|| hosts_for(ty)).unwrap_or(1).max(1);
    let list: Vec<Value> = (0..hosts)
        .map(|i| json!({"ipAddress": format!("10.0.{i}.{last}"), "port": 8470}))
        .collect();
    Value::Array(list)
}

fn op_json(op: &FakeOp, nodes: &BTreeMap<String, Value>) -> Value {
    let mut res = json!({
        "name": op.name,
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.tpu.v2.OperationMetadata",
            "createTime": "2026-02-05T18:48:20Z",
            "target": op.target,
            "verb": op.verb,
            "cancelRequested": false,
            "apiVersion": "v2",
        },
        "done": op.done,
    });
    if op.done {
        match &op.error {
            Some(error) => res["error"] = error.clone(),
            None => {
                let mut response = match (op.verb, nodes.get(&op.target)) {
                    ("delete", _) | (_, None) => json!({}),
                    (_, Some(node)) => node.clone(),
                };
                let ty = if op.verb == "delete" {
                    "google.protobuf.Empty"
                } else {
                    "google.cloud.tpu.v2.Node"
                };
                response["@type"] = json!(format!("type.googleapis.com/{ty}"));
                res["response"] = response;
            }
        }
    }
    res
}
