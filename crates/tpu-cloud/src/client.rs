//! The HTTP client of the Cloud TPU v2 API: one method per call, retries
//! on 429 and 5xx with jittered backoff, and operation polling up to a
//! deadline.
//!
//! A client built with [`TpuClient::dry_run`] sends nothing: it writes each
//! call (method, URL, body) to a [`Transcript`] and answers as if the API
//! had said yes at once, so a whole session can be rehearsed without
//! credentials.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gcp_auth::TokenProvider;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{
    ErrorBody, ErrorDetail, ListNodesResponse, Node, NodeState, Operation, QueuedResource,
};
use crate::clock::{Backoff, Clock};
use crate::error::{CallContext, one_line};
use crate::{Error, SCOPE};

/// A project and zone: the `projects/{p}/locations/{zone}` parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub project: String,
    pub zone: String,
}

impl Location {
    pub fn new(project: &str, zone: &str) -> Location {
        Location {
            project: project.to_owned(),
            zone: zone.to_owned(),
        }
    }

    pub fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.zone)
    }

    pub fn node_name(&self, node_id: &str) -> String {
        format!("{}/nodes/{node_id}", self.parent())
    }

    pub fn queued_resource_name(&self, id: &str) -> String {
        format!("{}/queuedResources/{id}", self.parent())
    }

    fn ctx(&self, what: String) -> CallContext {
        CallContext {
            project: self.project.clone(),
            zone: self.zone.clone(),
            what,
        }
    }
}

/// Retry and polling knobs. Built by [`Timing::production`] and adjusted
/// field by field (tests shrink everything).
#[derive(Clone, Debug)]
pub struct Timing {
    /// Between retries of a call that got 429, 5xx or a transport error.
    pub retry: Backoff,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Between polls of an operation, node or queued resource.
    pub poll: Backoff,
    /// Per HTTP request.
    pub request_timeout: Duration,
}

impl Timing {
    pub fn production() -> Timing {
        Timing {
            retry: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(32),
                factor: 2,
                jitter: 0.5,
            },
            max_attempts: 6,
            poll: Backoff {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(30),
                factor: 2,
                jitter: 0.2,
            },
            request_timeout: Duration::from_secs(60),
        }
    }
}

pub struct ClientConfig {
    /// `https://tpu.googleapis.com`, or a fake's `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub timing: Timing,
}

/// Receives each transcript line as it is written.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// The ordered record of a dry run: every API call and command, one entry
/// per line. Clones share the record.
#[derive(Clone, Default)]
pub struct Transcript {
    lines: Arc<Mutex<Vec<String>>>,
    sink: Option<Sink>,
}

impl Transcript {
    pub fn new() -> Transcript {
        Transcript::default()
    }

    /// A transcript that also hands each line to `sink` as it is written
    /// (the xtask prints them).
    pub fn with_sink(sink: Sink) -> Transcript {
        Transcript {
            lines: Arc::default(),
            sink: Some(sink),
        }
    }

    pub fn push(&self, line: String) {
        if let Some(sink) = &self.sink {
            sink(&line);
        }
        self.lines.lock().unwrap().push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// A Cloud TPU v2 API client. Cheap to clone.
#[derive(Clone)]
pub struct TpuClient {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    tokens: Option<Arc<dyn TokenProvider>>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    timing: Timing,
    transcript: Option<Transcript>,
    dry_run_ops: AtomicU32,
}

impl TpuClient {
    pub fn new(
        config: ClientConfig,
        tokens: Arc<dyn TokenProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<TpuClient, Error> {
        TpuClient::build(config, Some(tokens), clock, None)
    }

    /// A client that records calls in `transcript` instead of sending them.
    pub fn dry_run(
        config: ClientConfig,
        clock: Arc<dyn Clock>,
        transcript: Transcript,
    ) -> TpuClient {
        TpuClient::build(config, None, clock, Some(transcript))
            .expect("a dry-run client needs no IO")
    }

    fn build(
        config: ClientConfig,
        tokens: Option<Arc<dyn TokenProvider>>,
        clock: Arc<dyn Clock>,
        transcript: Option<Transcript>,
    ) -> Result<TpuClient, Error> {
        // reqwest has no TLS provider of its own in this workspace; one
        // already installed stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timing.request_timeout)
            .user_agent(concat!("sglprof-tpu-cloud/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| Error::Transport {
                method: "build".to_owned(),
                url: config.base_url.clone(),
                detail: one_line(&err.to_string()),
            })?;
        let inner = Inner {
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            tokens,
            http,
            clock,
            timing: config.timing,
            transcript,
            dry_run_ops: AtomicU32::new(0),
        };
        Ok(TpuClient {
            inner: Arc::new(inner),
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn timing(&self) -> &Timing {
        &self.inner.timing
    }

    /// The transcript, for a dry-run client.
    pub fn transcript(&self) -> Option<&Transcript> {
        self.inner.transcript.as_ref()
    }

    pub fn is_dry_run(&self) -> bool {
        self.inner.transcript.is_some()
    }

    // Nodes.

    /// `POST .../nodes?nodeId=` with the node body.
    pub async fn create_node(
        &self,
        loc: &Location,
        node_id: &str,
        node: &Node,
    ) -> Result<Operation, Error> {
        let body = serde_json::to_value(node).expect("plain data serialises");
        let path = format!("{}/nodes", loc.parent());
        let ctx = loc.ctx(format!("node `{node_id}`"));
        self.call(
            Method::POST,
            &path,
            &[("nodeId", node_id)],
            Some(&body),
            &ctx,
        )
        .await
    }

    pub async fn get_node(&self, loc: &Location, node_id: &str) -> Result<Node, Error> {
        let ctx = loc.ctx(format!("node `{node_id}`"));
        self.call(Method::GET, &loc.node_name(node_id), &[], None, &ctx)
            .await
    }

    /// Every node of the zone, all pages.
    pub async fn list_nodes(&self, loc: &Location) -> Result<Vec<Node>, Error> {
        let path = format!("{}/nodes", loc.parent());
        let ctx = loc.ctx(format!("zone `{}`", loc.zone));
        let mut res = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("pageSize", "100")];
            if !token.is_empty() {
                query.push(("pageToken", token.as_str()));
            }
            let page: ListNodesResponse = self.call(Method::GET, &path, &query, None, &ctx).await?;
            res.extend(page.nodes);
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = next,
                _ => return Ok(res),
            }
        }
    }

    pub async fn delete_node(&self, loc: &Location, node_id: &str) -> Result<Operation, Error> {
        let ctx = loc.ctx(format!("node `{node_id}`"));
        self.call(Method::DELETE, &loc.node_name(node_id), &[], None, &ctx)
            .await
    }

    pub async fn stop_node(&self, loc: &Location, node_id: &str) -> Result<Operation, Error> {
        let ctx = loc.ctx(format!("node `{node_id}`"));
        let path = format!("{}:stop", loc.node_name(node_id));
        self.call(Method::POST, &path, &[], Some(&json!({})), &ctx)
            .await
    }

    pub async fn start_node(&self, loc: &Location, node_id: &str) -> Result<Operation, Error> {
        let ctx = loc.ctx(format!("node `{node_id}`"));
        let path = format!("{}:start", loc.node_name(node_id));
        self.call(Method::POST, &path, &[], Some(&json!({})), &ctx)
            .await
    }

    // Queued resources.

    pub async fn create_queued_resource(
        &self,
        loc: &Location,
        id: &str,
        resource: &QueuedResource,
    ) -> Result<Operation, Error> {
        let body = serde_json::to_value(resource).expect("plain data serialises");
        let path = format!("{}/queuedResources", loc.parent());
        let ctx = loc.ctx(format!("queued resource `{id}`"));
        self.call(
            Method::POST,
            &path,
            &[("queuedResourceId", id)],
            Some(&body),
            &ctx,
        )
        .await
    }

    pub async fn get_queued_resource(
        &self,
        loc: &Location,
        id: &str,
    ) -> Result<QueuedResource, Error> {
        let ctx = loc.ctx(format!("queued resource `{id}`"));
        self.call(Method::GET, &loc.queued_resource_name(id), &[], None, &ctx)
            .await
    }

    /// With `force`, Google also deletes the node the queued resource made.
    pub async fn delete_queued_resource(
        &self,
        loc: &Location,
        id: &str,
        force: bool,
    ) -> Result<Operation, Error> {
        let ctx = loc.ctx(format!("queued resource `{id}`"));
        let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
        self.call(
            Method::DELETE,
            &loc.queued_resource_name(id),
            query,
            None,
            &ctx,
        )
        .await
    }

    // Operations.

    /// `GET /v2/{operation name}`.
    pub async fn get_operation(&self, loc: &Location, name: &str) -> Result<Operation, Error> {
        let ctx = loc.ctx(format!("operation `{name}`"));
        self.call(Method::GET, name, &[], None, &ctx).await
    }

    /// Polls `op` until it is done, then returns it, or its error as an
    /// [`Error`]. `what` names the operation in messages.
    pub async fn wait_operation(
        &self,
        loc: &Location,
        mut op: Operation,
        what: &str,
        deadline: Duration,
    ) -> Result<Operation, Error> {
        let start = self.inner.clock.now();
        let mut attempt = 0;
        loop {
            if op.done {
                return match &op.error {
                    Some(status) => Err(Error::from_operation(status, &loc.ctx(what.to_owned()))),
                    None => Ok(op),
                };
            }
            self.poll_pause(start, deadline, attempt, what).await?;
            attempt += 1;
            op = self.get_operation(loc, &op.name).await?;
        }
    }

    /// Polls the node until it is READY. A node that is preempted,
    /// terminated or stopped meanwhile is an error.
    pub async fn wait_node_ready(
        &self,
        loc: &Location,
        node_id: &str,
        deadline: Duration,
    ) -> Result<Node, Error> {
        let start = self.inner.clock.now();
        let what = format!("node `{node_id}` becoming READY");
        let mut attempt = 0;
        loop {
            let node = self.get_node(loc, node_id).await?;
            match node.state {
                Some(NodeState::Ready) => return Ok(node),
                Some(state) if state.is_dead_end() => {
                    return Err(Error::NodeLost {
                        name: node_id.to_owned(),
                        state: state_name(state),
                    });
                }
                _ => {}
            }
            self.poll_pause(start, deadline, attempt, &what).await?;
            attempt += 1;
        }
    }

    /// Polls a queued resource until it is ACTIVE (its node exists).
    pub async fn wait_queued_resource_active(
        &self,
        loc: &Location,
        id: &str,
        deadline: Duration,
    ) -> Result<QueuedResource, Error> {
        let start = self.inner.clock.now();
        let mut attempt = 0;
        loop {
            let qr = self.get_queued_resource(loc, id).await?;
            let state = qr
                .state
                .as_ref()
                .map(|s| s.state.clone())
                .unwrap_or_default();
            match state.as_str() {
                "ACTIVE" => return Ok(qr),
                "FAILED" | "SUSPENDED" | "SUSPENDING" | "DELETING" => {
                    let data = qr
                        .state
                        .as_ref()
                        .map(|s| serde_json::to_string(&s.state_data).unwrap());
                    let message = format!("{state}: {}", data.unwrap_or_default());
                    return Err(Error::QueuedResourceFailed {
                        name: id.to_owned(),
                        message: one_line(&message),
                    });
                }
                _ => {}
            }
            let last = if state.is_empty() {
                "unknown"
            } else {
                state.as_str()
            };
            let what = format!("queued resource `{id}` (last state {last})");
            self.poll_pause(start, deadline, attempt, &what).await?;
            attempt += 1;
        }
    }

    /// Sleeps before the next poll, or fails when the deadline has passed.
    async fn poll_pause(
        &self,
        start: SystemTime,
        deadline: Duration,
        attempt: u32,
        what: &str,
    ) -> Result<(), Error> {
        let clock = &self.inner.clock;
        let elapsed = clock.now().duration_since(start).unwrap_or_default();
        if elapsed >= deadline {
            return Err(Error::Deadline {
                what: what.to_owned(),
                waited_s: elapsed.as_secs(),
            });
        }
        let pause = self
            .inner
            .timing
            .poll
            .delay(attempt)
            .min(deadline - elapsed);
        clock.sleep(pause.max(Duration::from_millis(1))).await;
        Ok(())
    }

    // The transport.

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        ctx: &CallContext,
    ) -> Result<T, Error> {
        let url = format!("{}/v2/{}", self.inner.base_url, path);
        let parsed = if query.is_empty() {
            Url::parse(&url)
        } else {
            Url::parse_with_params(&url, query)
        };
        let url = parsed.map_err(|err| Error::Transport {
            method: method.to_string(),
            url: url.clone(),
            detail: err.to_string(),
        })?;
        let value = match &self.inner.transcript {
            Some(transcript) => {
                transcript.push(format!("{method} {url}"));
                if let Some(body) = body {
                    transcript.push(format!("  {body}"));
                }
                self.dry_run_answer(&method, path, body)
            }
            None => self.send(&method, &url, body, ctx).await?,
        };
        serde_json::from_value(value).map_err(|err| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            detail: format!("unexpected answer: {err}"),
        })
    }

    async fn send(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        ctx: &CallContext,
    ) -> Result<Value, Error> {
        let inner = &self.inner;
        let tokens = inner
            .tokens
            .as_ref()
            .expect("a live client has a token provider");
        // POST creates are not safe to repeat after a timeout: the first one
        // may have gone through. The caller looks before creating again.
        let idempotent = *method != Method::POST;
        let max_attempts = inner.timing.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 0..max_attempts {
            if attempt > 0 {
                inner
                    .clock
                    .sleep(inner.timing.retry.delay(attempt - 1))
                    .await;
            }
            let token = tokens
                .token(&[SCOPE])
                .await
                .map_err(|err| crate::auth::token_error(&err))?;
            let mut req = inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.as_str());
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(err) => {
                    last = transport_detail(&err);
                    if idempotent {
                        continue;
                    }
                    return Err(Error::Transport {
                        method: method.to_string(),
                        url: url.to_string(),
                        detail: last,
                    });
                }
            };
            let status = resp.status().as_u16();
            let bytes = match resp.bytes().await {
                Ok(bytes) => bytes,
                Err(err) => {
                    last = transport_detail(&err);
                    if idempotent {
                        continue;
                    }
                    return Err(Error::Transport {
                        method: method.to_string(),
                        url: url.to_string(),
                        detail: last,
                    });
                }
            };
            if (200..300).contains(&status) {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(json!({}));
                }
                return serde_json::from_slice(&bytes).map_err(|err| Error::Transport {
                    method: method.to_string(),
                    url: url.to_string(),
                    detail: format!("answer is not JSON: {err}"),
                });
            }
            let detail = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => body.error,
                Err(_) => ErrorDetail {
                    code: status,
                    message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    ..ErrorDetail::default()
                },
            };
            if is_retryable(status, &detail) {
                last = format!("HTTP {status} {}", one_line(&detail.message));
                continue;
            }
            return Err(Error::from_http(
                method.as_str(),
                url.as_str(),
                status,
                &detail,
                ctx,
            ));
        }
        Err(Error::Unavailable {
            method: method.to_string(),
            url: url.to_string(),
            attempts: max_attempts,
            last,
        })
    }

    /// What the API would answer to a successful call, for dry runs.
    fn dry_run_answer(&self, method: &Method, path: &str, body: Option<&Value>) -> Value {
        let parent = path.split("/nodes").next().unwrap_or(path);
        let parent = parent.split("/queuedResources").next().unwrap_or(parent);
        let op = || {
            let n = self.inner.dry_run_ops.fetch_add(1, Ordering::Relaxed) + 1;
            json!({"name": format!("{parent}/operations/operation-dry-run-{n}"), "done": false})
        };
        match *method {
            Method::GET if path.contains("/operations/") => {
                json!({"name": path, "done": true, "response": {}})
            }
            Method::GET if path.ends_with("/nodes") => json!({"nodes": []}),
            Method::GET if path.contains("/queuedResources/") => {
                json!({"name": path, "state": {"state": "ACTIVE"}})
            }
            Method::GET if path.contains("/nodes/") => {
                let mut node = body.cloned().unwrap_or_else(|| json!({}));
                node["name"] = json!(path);
                node["state"] = json!("READY");
                node["networkEndpoints"] = json!([{"ipAddress": "10.0.0.2", "port": 8470}]);
                node
            }
            _ => op(),
        }
    }
}

fn is_retryable(status: u16, detail: &ErrorDetail) -> bool {
    let text = detail.message.to_lowercase();
    match status {
        // A quota or stockout answer will not change in seconds.
        429 => !text.contains("quota") && !text.contains("no more capacity"),
        500..=599 => true,
        _ => false,
    }
}

fn transport_detail(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    one_line(&format!("{kind}: {}", crate::error::chain(err)))
}

pub(crate) fn state_name(state: NodeState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
