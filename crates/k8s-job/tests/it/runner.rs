//! The runner against the fake API: every way a run ends deletes the Job.

use std::time::Duration;

use k8s_job::{Error, Progress, RunOptions, build_job, client_for_url, run_job};

use crate::fake::{FakeCluster, Scenario};
use crate::{args, config};

fn opts() -> RunOptions {
    RunOptions {
        poll: Duration::from_millis(20),
        pending_timeout: Duration::from_millis(400),
        log_tail_lines: 2,
    }
}

fn lines(words: &[&str]) -> Vec<String> {
    args(words)
}

/// Runs the standard one-variant Job against `fake` and returns the result
/// and what the runner reported.
async fn run(
    fake: &FakeCluster,
    cancel: impl std::future::Future<Output = ()>,
) -> (Result<k8s_job::JobOutcome, Error>, Vec<Progress>) {
    let client = client_for_url(&fake.url(), "profiling").unwrap();
    let job = build_job(&config(vec![args(&["profile", "--local"])])).unwrap();
    let mut seen = Vec::new();
    let res = run_job(client, &job, &opts(), cancel, &mut |p| seen.push(p)).await;
    (res, seen)
}

fn never() -> impl std::future::Future<Output = ()> {
    std::future::pending()
}

fn assert_deleted_in_background(fake: &FakeCluster) {
    let job = k8s_job::job_name("20261130T210000Z-score");
    assert_eq!(
        fake.deleted(),
        vec![("Job".to_owned(), job, Some("Background".to_owned()))]
    );
    let state = fake.state.lock().unwrap();
    assert!(state.jobs.is_empty(), "the job is still there");
    assert!(state.pods.is_empty(), "its pods are still there");
}

#[tokio::test]
async fn success_streams_the_log_and_deletes_the_job() {
    let fake = FakeCluster::start(Scenario::Succeed {
        pending: 2,
        running: 3,
        log: lines(&[
            "[profile] run folder /runs/x",
            "[profile] report /runs/x/report.md",
        ]),
    })
    .await;
    let (res, seen) = run(&fake, never()).await;
    let outcome = res.unwrap();
    assert_eq!(outcome.pods.len(), 1);
    assert_eq!(outcome.pods[&0], "sglprof-20261130t210000z-score-x7k2p");
    let phases: Vec<&str> = seen
        .iter()
        .filter_map(|p| match p {
            Progress::Phase { phase, .. } => Some(phase.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(phases, ["Pending", "Running", "Succeeded"]);
    let logs: Vec<&str> = seen
        .iter()
        .filter_map(|p| match p {
            Progress::Log { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        [
            "[profile] run folder /runs/x",
            "[profile] report /runs/x/report.md"
        ]
    );
    assert!(matches!(seen.first(), Some(Progress::Created { .. })));
    assert!(matches!(seen.last(), Some(Progress::Deleted { .. })));
    assert_eq!(fake.state.lock().unwrap().followed.len(), 1);
    assert_deleted_in_background(&fake);
}

#[tokio::test]
async fn a_failed_pod_reports_its_log_tail() {
    let fake = FakeCluster::start(Scenario::Fail {
        running: 2,
        log: lines(&["starting", "loading model", "error: /v1/score: HTTP 500"]),
    })
    .await;
    let (res, _) = run(&fake, never()).await;
    let err = res.unwrap_err();
    match &err {
        Error::Failed {
            log_tail, reason, ..
        } => {
            assert_eq!(
                log_tail,
                &lines(&["loading model", "error: /v1/score: HTTP 500"])
            );
            assert!(reason.starts_with("BackoffLimitExceeded"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "job sglprof-20261130t210000z-score failed (BackoffLimitExceeded: Job has reached the specified backoff limit); last log line: error: /v1/score: HTTP 500"
    );
    assert_deleted_in_background(&fake);
}

#[tokio::test]
async fn a_pod_pending_forever_is_explained_then_timed_out() {
    let fake = FakeCluster::start(Scenario::Unschedulable {
        message: "0/3 nodes are available: 3 Insufficient google.com/tpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.".into(),
    })
    .await;
    let (res, seen) = run(&fake, never()).await;
    let explained: Vec<&str> = seen
        .iter()
        .filter_map(|p| match p {
            Progress::Pending { explanation, .. } => Some(explanation.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(explained.len(), 1, "each explanation is reported once");
    assert!(
        explained[0].starts_with("no node has a free google.com/tpu"),
        "{}",
        explained[0]
    );
    let err = res.unwrap_err();
    assert!(matches!(err, Error::PendingTimeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("still pending after 0 s: no node has a free google.com/tpu"),
        "{text}"
    );
    assert!(
        text.contains("(FailedScheduling: 0/3 nodes are available"),
        "{text}"
    );
    assert_deleted_in_background(&fake);
}

#[tokio::test]
async fn an_image_pull_error_fails_fast() {
    let fake = FakeCluster::start(Scenario::ImagePull).await;
    let (res, _) = run(&fake, never()).await;
    let err = res.unwrap_err();
    assert_eq!(
        err.to_string(),
        "pod sglprof-20261130t210000z-score-x7k2p cannot pull image registry.example/sglprof:test: Back-off pulling image \"registry.example/sglprof:test\""
    );
    assert_deleted_in_background(&fake);
}

#[tokio::test]
async fn ctrl_c_deletes_the_running_job() {
    let fake = FakeCluster::start(Scenario::RunForever {
        log: lines(&["serving"]),
    })
    .await;
    // "Ctrl-C" once the pod has been seen running.
    let cancel = async {
        while !fake.any_pod_in("Running") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (res, seen) = run(&fake, cancel).await;
    let err = res.unwrap_err();
    assert_eq!(
        err.to_string(),
        "interrupted; job sglprof-20261130t210000z-score deleted"
    );
    assert!(matches!(seen.last(), Some(Progress::Deleted { .. })));
    assert_deleted_in_background(&fake);
}

#[tokio::test]
async fn a_name_taken_is_an_error_and_nothing_is_deleted() {
    let fake = FakeCluster::start(Scenario::RunForever { log: Vec::new() }).await;
    let client = client_for_url(&fake.url(), "profiling").unwrap();
    let job = build_job(&config(vec![args(&["profile"])])).unwrap();
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(client.clone(), "profiling");
    jobs.create(&Default::default(), &job).await.unwrap();
    let res = run_job(client, &job, &opts(), never(), &mut |_| {}).await;
    let err = res.unwrap_err().to_string();
    assert!(err.starts_with("kubernetes api: cannot create job sglprof-20261130t210000z-score: jobs.batch \"sglprof-20261130t210000z-score\" already exists (409)"), "{err}");
    // The Job that was there before is not ours to delete.
    assert!(fake.deleted().is_empty());
}

#[tokio::test]
async fn an_indexed_job_runs_every_variant() {
    let fake = FakeCluster::start(Scenario::Succeed {
        pending: 1,
        running: 1,
        log: lines(&["done"]),
    })
    .await;
    let client = client_for_url(&fake.url(), "profiling").unwrap();
    let job = build_job(&config(vec![args(&["a"]), args(&["b"]), args(&["c"])])).unwrap();
    let outcome = run_job(client, &job, &opts(), never(), &mut |_| {})
        .await
        .unwrap();
    let indices: Vec<u32> = outcome.pods.keys().copied().collect();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(outcome.pods[&2], "sglprof-20261130t210000z-score-2-x7k2p");
    assert_deleted_in_background(&fake);
}
