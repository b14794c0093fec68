//! A fake Cloud TPU v2 API: wiremock on 127.0.0.1 with one responder that
//! keeps nodes, queued resources and operations in memory and follows the
//! documented paths, states and Google error bodies. Faults are switched
//! on per test through [`World`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

pub const PROJECT: &str = "test-project";
pub const ZONE: &str = "us-east5-b";

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
    op_counter: u32,
}

impl Default for World {
    fn default() -> World {
        World {
            nodes: BTreeMap::new(),
            queued: BTreeMap::new(),
            ops: BTreeMap::new(),
            log: Vec::new(),
            deleted: Vec::new(),
            zones: vec![ZONE.to_owned(), "us-east1-d".to_owned()],
            accelerator_types: vec!["v6e-1".to_owned(), "v6e-4".to_owned(), "v6e-8".to_owned()],
            inject: VecDeque::new(),
            stockout: false,
            ops_never_finish: false,
            create_delay: None,
            create_op_polls: 2,
            delete_op_polls: 1,
            queued_waiting_polls: 2,
            preempt: false,
            page_size_cap: 100,
            op_counter: 0,
        }
    }
}

pub struct FakeTpu {
    pub server: MockServer,
    world: Arc<Mutex<World>>,
}

impl FakeTpu {
    pub async fn start() -> FakeTpu {
        let server = MockServer::start().await;
        assert!(
            server.uri().starts_with("http://127.0.0.1:"),
            "the fake must stay on loopback"
        );
        let world = Arc::new(Mutex::new(World::default()));
        Mock::given(any())
            .respond_with(Responder(world.clone()))
            .mount(&server)
            .await;
        FakeTpu { server, world }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    pub fn node_name(id: &str) -> String {
        format!("projects/{PROJECT}/locations/{ZONE}/nodes/{id}")
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
        let mut world = self.0.lock().unwrap();
        world.handle(req)
    }
}

fn answer(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

fn err(code: u16, status: &str, message: &str) -> ResponseTemplate {
    answer(code, google_error(code, status, message))
}

impl World {
    fn handle(&mut self, req: &Request) -> ResponseTemplate {
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
        if auth != Some("Bearer fake-token") {
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
        if parts[1] != PROJECT {
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

    fn create_node(&mut self, parent: &str, node_id: &str, body: Value) -> ResponseTemplate {
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
        let polls = self.create_op_polls;
        let op = self.new_op(
            parent,
            &name,
            "create",
            Effect::CreateNode(name.clone()),
            polls,
        );
        let res = answer(200, op);
        match self.create_delay {
            Some(delay) => res.set_delay(delay),
            None => res,
        }
    }

    fn get_node(&mut self, name: &str) -> ResponseTemplate {
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

    fn list_nodes(&mut self, query: &BTreeMap<String, String>) -> ResponseTemplate {
        let size: usize = query
            .get("pageSize")
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let size = size.min(self.page_size_cap).max(1);
        let start: usize = query
            .get("pageToken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let all: Vec<&Value> = self.nodes.values().collect();
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

    fn delete_node(&mut self, parent: &str, name: &str) -> ResponseTemplate {
        let Some(node) = self.nodes.get_mut(name) else {
            return err(
                404,
                "NOT_FOUND",
                &format!("Resource '{name}' was not found"),
            );
        };
        node["state"] = json!("DELETING");
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

    fn stop_start(&mut self, parent: &str, name: &str, stop: bool) -> ResponseTemplate {
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

    fn create_queued(&mut self, parent: &str, qr_id: &str, body: Value) -> ResponseTemplate {
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

    fn get_queued(&mut self, name: &str) -> ResponseTemplate {
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
            node["networkEndpoints"] = json!([{"ipAddress": "10.0.0.3", "port": 8470}]);
            self.nodes.insert(node_name, node);
        }
        answer(200, shown)
    }

    fn delete_queued(&mut self, parent: &str, name: &str, force: bool) -> ResponseTemplate {
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

    fn get_operation(&mut self, name: &str) -> ResponseTemplate {
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
                if self.stockout {
                    self.nodes.remove(&name);
                    let zone = name.split('/').nth(3).unwrap_or_default();
                    let msg = format!(
                        "There is no more capacity in the zone \"{zone}\"; you can try in another zone where Cloud TPU Nodes are offered (see https://cloud.google.com/tpu/docs/regions) [EID: 0x1234]"
                    );
                    return Some(json!({"code": 8, "message": msg}));
                }
                let preempt = self.preempt;
                if let Some(node) = self.nodes.get_mut(&name) {
                    node["state"] = json!(if preempt { "PREEMPTED" } else { "READY" });
                    node["health"] = json!("HEALTHY");
                    node["networkEndpoints"] = json!([{"ipAddress": "10.0.0.2", "port": 8470}]);
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
