//! A fake Kubernetes API server on loopback, faithful to the parts of the
//! documented REST API the runner uses: Jobs (create, get, list, delete),
//! Pods (get, list, watch, delete, log) and Events (list), with the paths,
//! query parameters, object shapes, `Status` errors (404, 409) and
//! background deletion of the real one. The Job controller is simulated: a
//! created Job gets its pods at once (`<job>-<index>-<suffix>` for Indexed
//! Jobs, with the completion-index annotation and `job-name` label), and
//! every pod list moves the [`Scenario`] one tick forward.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the simulated pods do.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// Pending for `pending` ticks, Running for `running`, then Succeeded.
    Succeed {
        pending: u32,
        running: u32,
        log: Vec<String>,
    },
    /// Running for `running` ticks, then Failed with exit code 1.
    Fail { running: u32, log: Vec<String> },
    /// Never scheduled: a FailedScheduling warning event.
    Unschedulable { message: String },
    /// Scheduled, but the image cannot be pulled.
    ImagePull,
    /// Running until deleted.
    RunForever { log: Vec<String> },
}

#[derive(Debug, Default)]
pub struct State {
    pub jobs: BTreeMap<String, Value>,
    pub pods: BTreeMap<String, Value>,
    /// `(kind, name, propagationPolicy)` of every DELETE.
    pub deleted: Vec<(String, String, Option<String>)>,
    pub ticks: u32,
    /// Pod names whose log was read with `follow=true`.
    pub followed: Vec<String>,
    pub created: Vec<String>,
}

pub struct FakeCluster {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
}

impl FakeCluster {
    pub async fn start(scenario: Scenario) -> FakeCluster {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Api {
                state: state.clone(),
                scenario,
            })
            .mount(&server)
            .await;
        FakeCluster { server, state }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn deleted(&self) -> Vec<(String, String, Option<String>)> {
        self.state.lock().unwrap().deleted.clone()
    }

    pub fn any_pod_in(&self, phase: &str) -> bool {
        let state = self.state.lock().unwrap();
        state
            .pods
            .values()
            .any(|pod| pod["status"]["phase"] == phase)
    }
}

struct Api {
    state: Arc<Mutex<State>>,
    scenario: Scenario,
}

fn status(code: u16, reason: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }))
}

fn query(request: &Request) -> BTreeMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

impl Respond for Api {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path: Vec<&str> = request.url.path().trim_matches('/').split('/').collect();
        let method = request.method.as_str();
        let q = query(request);
        let mut state = self.state.lock().unwrap();
        match (method, path.as_slice()) {
            ("POST", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
                let Ok(mut job) = serde_json::from_slice::<Value>(&request.body) else {
                    return status(400, "BadRequest", "the body is not a Job");
                };
                let name = job["metadata"]["name"].as_str().unwrap_or("").to_owned();
                if name.is_empty() {
                    return status(
                        422,
                        "Invalid",
                        "Job.batch is invalid: metadata.name: Required value",
                    );
                }
                if state.jobs.contains_key(&name) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("jobs.batch \"{name}\" already exists"),
                    );
                }
                job["metadata"]["namespace"] = json!(ns);
                job["metadata"]["uid"] = json!(format!("uid-{name}"));
                job["metadata"]["creationTimestamp"] = json!("2026-11-30T21:00:00Z");
                job["status"] = json!({});
                let completions = job["spec"]["completions"].as_u64().unwrap_or(1);
                let indexed = job["spec"]["completionMode"] == "Indexed";
                for idx in 0..completions {
                    let pod_name = if indexed {
                        format!("{name}-{idx}-x7k2p")
                    } else {
                        format!("{name}-x7k2p")
                    };
                    let mut meta = job["spec"]["template"]["metadata"].clone();
                    meta["name"] = json!(pod_name);
                    meta["namespace"] = json!(ns);
                    meta["labels"]["job-name"] = json!(name);
                    meta["labels"]["batch.kubernetes.io/job-name"] = json!(name);
                    if indexed {
                        meta["annotations"]["batch.kubernetes.io/job-completion-index"] =
                            json!(idx.to_string());
                    }
                    let pod = json!({
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": meta,
                        "spec": job["spec"]["template"]["spec"].clone(),
                        "status": {"phase": "Pending"},
                    });
                    state.pods.insert(pod_name, pod);
                }
                state.created.push(name.clone());
                state.jobs.insert(name, job.clone());
                ResponseTemplate::new(201).set_body_json(job)
            }
            ("GET", ["apis", "batch", "v1", "namespaces", _, "jobs"]) => {
                let items: Vec<Value> = state.jobs.values().cloned().collect();
                ResponseTemplate::new(200).set_body_json(list("JobList", "batch/v1", items))
            }
            ("GET", ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => {
                match state.jobs.get(*name) {
                    Some(job) => {
                        let mut job = job.clone();
                        job["status"] = job_status(&state, name);
                        ResponseTemplate::new(200).set_body_json(job)
                    }
                    None => not_found("jobs.batch", name),
                }
            }
            ("DELETE", ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let policy = body["propagationPolicy"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| q.get("propagationPolicy").cloned());
                state
                    .deleted
                    .push(("Job".into(), (*name).to_owned(), policy.clone()));
                if state.jobs.remove(*name).is_none() {
                    return not_found("jobs.batch", name);
                }
                // Without a policy, the Job API orphans the pods.
                if matches!(policy.as_deref(), Some("Background" | "Foreground")) {
                    state
                        .pods
                        .retain(|_, pod| pod["metadata"]["labels"]["job-name"] != *name);
                }
                ResponseTemplate::new(200).set_body_json(json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "details": {"name": name, "group": "batch", "kind": "jobs"}
                }))
            }
            ("GET", ["api", "v1", "namespaces", _, "pods"]) => {
                state.ticks += 1;
                let tick = state.ticks;
                advance(&mut state, &self.scenario, tick);
                let selector = q.get("labelSelector").cloned().unwrap_or_default();
                let items: Vec<Value> = state
                    .pods
                    .values()
                    .filter(|pod| matches_labels(pod, &selector))
                    .cloned()
                    .collect();
                if q.get("watch").map(String::as_str) == Some("true") {
                    let lines: Vec<String> = items
                        .into_iter()
                        .map(|pod| json!({"type": "ADDED", "object": pod}).to_string())
                        .collect();
                    return ResponseTemplate::new(200).set_body_string(lines.join("\n") + "\n");
                }
                ResponseTemplate::new(200).set_body_json(list("PodList", "v1", items))
            }
            ("GET", ["api", "v1", "namespaces", _, "pods", name]) => match state.pods.get(*name) {
                Some(pod) => ResponseTemplate::new(200).set_body_json(pod.clone()),
                None => not_found("pods", name),
            },
            ("DELETE", ["api", "v1", "namespaces", _, "pods", name]) => {
                state.deleted.push(("Pod".into(), (*name).to_owned(), None));
                match state.pods.remove(*name) {
                    Some(pod) => ResponseTemplate::new(200).set_body_json(pod),
                    None => not_found("pods", name),
                }
            }
            ("GET", ["api", "v1", "namespaces", _, "pods", name, "log"]) => {
                let Some(pod) = state.pods.get(*name) else {
                    return not_found("pods", name);
                };
                let container = q.get("container").cloned().unwrap_or_default();
                let known = pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|it| it["name"] == container.as_str());
                if !known {
                    return status(
                        400,
                        "BadRequest",
                        &format!("container {container} is not valid for pod {name}"),
                    );
                }
                if pod["status"]["phase"] == "Pending" {
                    return status(
                        400,
                        "BadRequest",
                        &format!(
                            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
                        ),
                    );
                }
                if q.get("follow").map(String::as_str) == Some("true") {
                    state.followed.push((*name).to_owned());
                }
                let mut lines = scenario_log(&self.scenario);
                if let Some(n) = q.get("tailLines").and_then(|it| it.parse::<usize>().ok()) {
                    let skip = lines.len().saturating_sub(n);
                    lines.drain(..skip);
                }
                let text: String = lines.iter().map(|it| format!("{it}\n")).collect();
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/plain")
                    .set_body_string(text)
            }
            ("GET", ["api", "v1", "namespaces", ns, "events"]) => {
                let selector = q.get("fieldSelector").cloned().unwrap_or_default();
                let pod = selector
                    .strip_prefix("involvedObject.name=")
                    .unwrap_or("")
                    .to_owned();
                let items = events_for(&state, &self.scenario, ns, &pod);
                ResponseTemplate::new(200).set_body_json(list("EventList", "v1", items))
            }
            _ => status(
                404,
                "NotFound",
                &format!(
                    "the server could not find the requested resource ({method} {})",
                    request.url.path()
                ),
            ),
        }
    }
}

fn not_found(resource: &str, name: &str) -> ResponseTemplate {
    status(404, "NotFound", &format!("{resource} \"{name}\" not found"))
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// `a=b,c=d` equality selectors only (what the runner sends).
fn matches_labels(pod: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|it| !it.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => pod["metadata"]["labels"][key] == value,
            None => false,
        })
}

fn scenario_log(scenario: &Scenario) -> Vec<String> {
    match scenario {
        Scenario::Succeed { log, .. }
        | Scenario::Fail { log, .. }
        | Scenario::RunForever { log } => log.clone(),
        _ => Vec::new(),
    }
}

fn container_status(image: &Value, state: Value) -> Value {
    json!([{"name": "sglprof", "image": image, "imageID": "", "ready": false, "restartCount": 0, "state": state}])
}

/// Moves every pod to the scenario's phase at `tick`.
fn advance(state: &mut State, scenario: &Scenario, tick: u32) {
    for pod in state.pods.values_mut() {
        let image = pod["spec"]["containers"][0]["image"].clone();
        let running = json!({"running": {"startedAt": "2026-11-30T21:00:05Z"}});
        let status = match scenario {
            Scenario::Succeed {
                pending,
                running: r,
                ..
            } => {
                if tick <= *pending {
                    json!({"phase": "Pending"})
                } else if tick <= pending + r {
                    json!({"phase": "Running", "containerStatuses": container_status(&image, running)})
                } else {
                    json!({"phase": "Succeeded", "containerStatuses": container_status(&image, json!({"terminated": {"exitCode": 0, "reason": "Completed"}}))})
                }
            }
            Scenario::Fail { running: r, .. } => {
                if tick <= *r {
                    json!({"phase": "Running", "containerStatuses": container_status(&image, running)})
                } else {
                    json!({"phase": "Failed", "containerStatuses": container_status(&image, json!({"terminated": {"exitCode": 1, "reason": "Error"}}))})
                }
            }
            Scenario::Unschedulable { .. } => json!({
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
            }),
            Scenario::ImagePull => {
                let reason = if tick <= 1 {
                    "ErrImagePull"
                } else {
                    "ImagePullBackOff"
                };
                json!({"phase": "Pending", "containerStatuses": container_status(&image, json!({"waiting": {"reason": reason, "message": format!("Back-off pulling image \"{}\"", image.as_str().unwrap_or(""))}}))})
            }
            Scenario::RunForever { .. } => {
                json!({"phase": "Running", "containerStatuses": container_status(&image, running)})
            }
        };
        pod["status"] = status;
    }
}

fn job_status(state: &State, name: &str) -> Value {
    let pods: Vec<&Value> = state
        .pods
        .values()
        .filter(|pod| pod["metadata"]["labels"]["job-name"] == name)
        .collect();
    let count = |phase: &str| {
        pods.iter()
            .filter(|p| p["status"]["phase"] == phase)
            .count()
    };
    let (succeeded, failed) = (count("Succeeded"), count("Failed"));
    let active = pods.len() - succeeded - failed;
    let mut status = json!({"active": active, "succeeded": succeeded, "failed": failed});
    if failed > 0 {
        status["conditions"] = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]);
    } else if !pods.is_empty() && succeeded == pods.len() {
        status["conditions"] = json!([{"type": "Complete", "status": "True"}]);
    }
    status
}

fn events_for(state: &State, scenario: &Scenario, ns: &str, pod: &str) -> Vec<Value> {
    if !state.pods.contains_key(pod) {
        return Vec::new();
    }
    let event = |type_: &str, reason: &str, message: String| {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{pod}.1"), "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
            "type": type_, "reason": reason, "message": message,
        })
    };
    match scenario {
        Scenario::Unschedulable { message } => {
            vec![event("Warning", "FailedScheduling", message.clone())]
        }
        Scenario::ImagePull => vec![
            event(
                "Normal",
                "Scheduled",
                format!("Successfully assigned default/{pod} to gke-tpu-node-1"),
            ),
            event(
                "Warning",
                "Failed",
                "Failed to pull image: not found".into(),
            ),
        ],
        _ => vec![event(
            "Normal",
            "Scheduled",
            format!("Successfully assigned default/{pod} to gke-tpu-node-1"),
        )],
    }
}
