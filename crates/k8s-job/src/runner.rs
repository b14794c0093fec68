//! Run a Job to its end and never leave it behind.
//!
//! [`run_job`] creates the Job, follows its pods (phases, logs, the events
//! that explain a pending pod), and deletes the Job with background
//! propagation (its pods go with it) however the run ends: success, a
//! failed pod, a pod that cannot be scheduled or pull its image, an API
//! error, or cancellation (the caller's Ctrl-C future).
//!
//! Pods are followed by polling `get` and `list` every [`RunOptions::poll`]
//! rather than by a watch: a poll survives API server restarts and proxies
//! that cut long requests, and a profiling Job lives for minutes, not
//! milliseconds. Logs are streamed (`follow=true`) as soon as a container
//! has started.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use tokio::sync::mpsc;

use crate::Error;
use crate::job::CONTAINER;

/// How a run is followed.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub poll: Duration,
    /// A pod pending (unscheduled, or scheduled but not started) for
    /// longer than this fails the run.
    pub pending_timeout: Duration,
    /// Lines of the failed pod's log kept in [`Error::Failed`].
    pub log_tail_lines: usize,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            poll: Duration::from_secs(5),
            pending_timeout: Duration::from_secs(15 * 60),
            log_tail_lines: 20,
        }
    }
}

/// What the runner reports while it works.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Created {
        job: String,
    },
    /// A pod was seen in a new phase.
    Phase {
        pod: String,
        phase: String,
    },
    /// Why a pod is still pending, from its events or container state.
    Pending {
        pod: String,
        explanation: String,
    },
    /// One line of a container's log.
    Log {
        pod: String,
        line: String,
    },
    Deleted {
        job: String,
    },
}

/// A finished Job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOutcome {
    pub job: String,
    /// Pod names by completion index (one entry, index 0, for a plain Job).
    pub pods: BTreeMap<u32, String>,
    pub took: Duration,
}

/// Creates `job`, follows it to the end, and deletes it on every path.
/// `cancel` resolving (Ctrl-C) ends the run with [`Error::Interrupted`].
pub async fn run_job(
    client: kube::Client,
    job: &Job,
    opts: &RunOptions,
    cancel: impl Future<Output = ()>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<JobOutcome, Error> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    jobs.create(&PostParams::default(), job)
        .await
        .map_err(|e| Error::api("create job", &name, e))?;
    progress(Progress::Created { job: name.clone() });

    let follower = Follower {
        jobs: jobs.clone(),
        pods: Api::namespaced(client.clone(), &namespace),
        events: Api::namespaced(client, &namespace),
        name: name.clone(),
        opts: opts.clone(),
    };
    let res = tokio::select! {
        res = follower.follow(progress) => res,
        () = cancel => Err(Error::Interrupted { job: name.clone() }),
    };
    let deleted = delete_job(&jobs, &name).await;
    if deleted.is_ok() {
        progress(Progress::Deleted { job: name.clone() });
    }
    match (res, deleted) {
        (Err(err), _) => Err(err),
        (Ok(_), Err(err)) => Err(err),
        (Ok(outcome), Ok(())) => Ok(outcome),
    }
}

/// Deletes the Job and, through background propagation, its pods. A Job
/// that is already gone counts as deleted.
pub async fn delete_job(jobs: &Api<Job>, name: &str) -> Result<(), Error> {
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(Error::api("delete job", name, err)),
    }
}

struct Follower {
    jobs: Api<Job>,
    pods: Api<Pod>,
    events: Api<Event>,
    name: String,
    opts: RunOptions,
}

#[derive(Default)]
struct PodSeen {
    phase: String,
    pending_since: Option<Instant>,
    explanations: Vec<String>,
    logging: bool,
}

impl Follower {
    async fn follow(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<JobOutcome, Error> {
        let started = Instant::now();
        let (log_tx, mut log_rx) = mpsc::unbounded_channel::<(String, String)>();
        let mut log_tasks = Vec::new();
        let mut seen: BTreeMap<String, PodSeen> = BTreeMap::new();
        let mut by_index: BTreeMap<u32, String> = BTreeMap::new();
        let selector = format!("job-name={}", self.name);
        let res = loop {
            let pods = self
                .pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| Error::api("list pods of", &self.name, e))?;
            for pod in &pods.items {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let index = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|it| it.get("batch.kubernetes.io/job-completion-index"))
                    .and_then(|it| it.parse().ok())
                    .unwrap_or(0);
                by_index.insert(index, pod_name.clone());
                let state = seen.entry(pod_name.clone()).or_default();
                let phase = pod
                    .status
                    .as_ref()
                    .and_then(|it| it.phase.clone())
                    .unwrap_or_else(|| "Pending".into());
                if phase != state.phase {
                    state.phase = phase.clone();
                    progress(Progress::Phase {
                        pod: pod_name.clone(),
                        phase: phase.clone(),
                    });
                }
                if phase == "Pending" {
                    let since = *state.pending_since.get_or_insert_with(Instant::now);
                    self.check_waiting(pod, &pod_name)?;
                    for explanation in self.explain_pending(&pod_name).await? {
                        if !state.explanations.contains(&explanation) {
                            progress(Progress::Pending {
                                pod: pod_name.clone(),
                                explanation: explanation.clone(),
                            });
                            state.explanations.push(explanation);
                        }
                    }
                    if since.elapsed() > self.opts.pending_timeout {
                        return Err(Error::PendingTimeout {
                            pod: pod_name,
                            waited: since.elapsed(),
                            explanation: state
                                .explanations
                                .last()
                                .cloned()
                                .unwrap_or_else(|| "no event explains it".into()),
                        });
                    }
                } else if !state.logging {
                    state.logging = true;
                    log_tasks.push(tokio::spawn(stream_log(
                        self.pods.clone(),
                        pod_name.clone(),
                        log_tx.clone(),
                    )));
                }
            }
            while let Ok((pod, line)) = log_rx.try_recv() {
                progress(Progress::Log { pod, line });
            }

            let job = self
                .jobs
                .get(&self.name)
                .await
                .map_err(|e| Error::api("get job", &self.name, e))?;
            match finished(&job) {
                Some(Ok(())) => break Ok(()),
                Some(Err(reason)) => break Err(reason),
                None => {}
            }
            tokio::time::sleep(self.opts.poll).await;
        };
        // The log streams end with their containers; wait for them, then
        // deliver what is left.
        drop(log_tx);
        for task in log_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        while let Some((pod, line)) = log_rx.recv().await {
            progress(Progress::Log { pod, line });
        }
        match res {
            Ok(()) => Ok(JobOutcome {
                job: self.name.clone(),
                pods: by_index,
                took: started.elapsed(),
            }),
            Err(reason) => {
                let failed = seen
                    .iter()
                    .find(|(_, it)| it.phase == "Failed")
                    .map(|(name, _)| name.clone());
                let log_tail = match failed {
                    Some(pod) => self.log_tail(&pod).await,
                    None => Vec::new(),
                };
                Err(Error::Failed {
                    job: self.name.clone(),
                    reason,
                    log_tail,
                })
            }
        }
    }

    /// A container that waits for a reason that will not go away by itself.
    fn check_waiting(&self, pod: &Pod, pod_name: &str) -> Result<(), Error> {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|it| it.container_statuses.as_ref());
        for status in statuses.into_iter().flatten() {
            let Some(waiting) = status.state.as_ref().and_then(|it| it.waiting.as_ref()) else {
                continue;
            };
            let reason = waiting.reason.clone().unwrap_or_default();
            let message = waiting.message.clone().unwrap_or_default();
            match reason.as_str() {
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                    return Err(Error::ImagePull {
                        pod: pod_name.to_owned(),
                        image: status.image.clone(),
                        message: if message.is_empty() { reason } else { message },
                    });
                }
                "CreateContainerConfigError" | "CreateContainerError" => {
                    return Err(Error::ContainerStart {
                        pod: pod_name.to_owned(),
                        reason,
                        message,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The pod's warning events, explained, oldest first.
    async fn explain_pending(&self, pod_name: &str) -> Result<Vec<String>, Error> {
        let fields = format!("involvedObject.name={pod_name}");
        let events = self
            .events
            .list(&ListParams::default().fields(&fields))
            .await
            .map_err(|e| Error::api("list events of", pod_name, e))?;
        let mut out = Vec::new();
        for event in &events.items {
            if event.type_.as_deref() != Some("Warning") {
                continue;
            }
            let reason = event.reason.clone().unwrap_or_default();
            let message = event.message.clone().unwrap_or_default();
            out.push(explain_event(&reason, &message));
        }
        Ok(out)
    }

    async fn log_tail(&self, pod: &str) -> Vec<String> {
        let params = LogParams {
            container: Some(CONTAINER.into()),
            tail_lines: Some(self.opts.log_tail_lines as i64),
            ..LogParams::default()
        };
        match self.pods.logs(pod, &params).await {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// `Some(Ok)` once the Job completed, `Some(Err(reason))` once it failed.
fn finished(job: &Job) -> Option<Result<(), String>> {
    let status = job.status.as_ref()?;
    for condition in status.conditions.iter().flatten() {
        if condition.status != "True" {
            continue;
        }
        match condition.type_.as_str() {
            "Complete" => return Some(Ok(())),
            "Failed" => {
                let reason = condition.reason.clone().unwrap_or_else(|| "Failed".into());
                let message = condition.message.clone().unwrap_or_default();
                return Some(Err(if message.is_empty() {
                    reason
                } else {
                    format!("{reason}: {message}")
                }));
            }
            _ => {}
        }
    }
    None
}

/// One warning event in words, with the event itself in parentheses.
pub fn explain_event(reason: &str, message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let why = if lower.contains("insufficient google.com/tpu") {
        "no node has a free google.com/tpu: add or scale a TPU node pool with this accelerator and topology"
    } else if lower.contains("quota") {
        "the node pool cannot grow: a quota is exhausted (see IAM & Admin > Quotas)"
    } else if lower.contains("stockout")
        || lower.contains("resource_pool_exhausted")
        || (lower.contains("spot") && lower.contains("capacity"))
    {
        "no spot capacity in the node pool's zone right now: wait, or run without --spot"
    } else if lower.contains("node affinity/selector") || lower.contains("node selector") {
        "no node matches the TPU accelerator and topology selectors: check --accelerator and --topology against the node pools"
    } else if lower.contains("untolerated taint") {
        "the only nodes have a taint the pod does not tolerate"
    } else if reason == "Failed" && (lower.contains("pull") || lower.contains("image")) {
        "the image cannot be pulled: check --image and the node's access to the registry"
    } else if reason == "FailedMount" {
        "a volume cannot be mounted: check the bucket name and the service account's access to it"
    } else if reason == "FailedScheduling" {
        "the scheduler found no node for the pod"
    } else {
        "warning"
    };
    format!("{why} ({reason}: {})", message.trim())
}

async fn stream_log(pods: Api<Pod>, pod: String, tx: mpsc::UnboundedSender<(String, String)>) {
    let params = LogParams {
        container: Some(CONTAINER.into()),
        follow: true,
        ..LogParams::default()
    };
    let Ok(reader) = pods.log_stream(&pod, &params).await else {
        return;
    };
    let mut lines = reader.lines();
    while let Some(Ok(line)) = lines.next().await {
        if tx.send((pod.clone(), line)).is_err() {
            return;
        }
    }
}

/// Pod names of a Job's pods that the caller may want to show.
pub fn pod_names(outcome: &JobOutcome) -> HashSet<&str> {
    outcome.pods.values().map(String::as_str).collect()
}
