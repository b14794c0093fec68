//! The API client against the fake: the node lifecycle, list, queued
//! resources, and every injected fault.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tpu_cloud::api::{Node, NodeState, Provisioning};
use tpu_cloud::{Error, Location};

use crate::support::{VirtualClock, client, client_with, timing};
use tpu_cloud::fake::{FakeTpu, PROJECT, ZONE, google_error};

fn loc() -> Location {
    Location::new(PROJECT, ZONE)
}

fn v6e_spot() -> Node {
    Node {
        accelerator_type: "v6e-1".to_owned(),
        runtime_version: "v6e-ubuntu-2404".to_owned(),
        scheduling_config: Provisioning::Spot.scheduling_config(),
        labels: [("created-by".to_owned(), "sglprof".to_owned())].into(),
        ..Node::default()
    }
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn create_poll_ready_delete() {
    let fake = FakeTpu::start().await;
    let clock = VirtualClock::new();
    let (client, tokens) = client(&fake.url(), clock.clone());
    let op = client.create_node(&loc(), "n1", &v6e_spot()).await.unwrap();
    assert!(!op.done);
    assert_eq!(
        fake.world().nodes[&FakeTpu::node_name("n1")]["schedulingConfig"],
        json!({"spot": true})
    );
    client
        .wait_operation(&loc(), op, "creating", LONG)
        .await
        .unwrap();
    let node = client.wait_node_ready(&loc(), "n1", LONG).await.unwrap();
    assert_eq!(node.state, Some(NodeState::Ready));
    assert_eq!(node.internal_ip(), Some("10.0.0.2"));
    assert!(node.is_ours());
    // Two polls of the create operation, 5 s apart then 10 s, on virtual time.
    assert_eq!(
        fake.requests("GET /v2/projects/test-project/locations/us-east5-b/operations/"),
        2
    );
    assert!(clock.sleeps().iter().all(|d| *d >= Duration::from_secs(4)));

    let op = client.delete_node(&loc(), "n1").await.unwrap();
    client
        .wait_operation(&loc(), op, "deleting", LONG)
        .await
        .unwrap();
    assert_eq!(fake.world().deleted, [FakeTpu::node_name("n1")]);
    let gone = client.get_node(&loc(), "n1").await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    assert!(tokens.calls.load(Ordering::Relaxed) >= 6);
}

#[tokio::test]
async fn list_follows_pages() {
    let fake = FakeTpu::start().await;
    fake.world().page_size_cap = 2;
    for id in ["a", "b", "c", "d", "e"] {
        fake.add_node(id, json!({"created-by": "sglprof"}));
    }
    fake.add_node("theirs", json!({"team": "other"}));
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let nodes = client.list_nodes(&loc()).await.unwrap();
    assert_eq!(nodes.len(), 6);
    assert_eq!(nodes.iter().filter(|n| n.is_ours()).count(), 5);
    assert_eq!(
        fake.requests("GET /v2/projects/test-project/locations/us-east5-b/nodes?"),
        3
    );
}

#[tokio::test]
async fn stop_and_start() {
    let fake = FakeTpu::start().await;
    fake.add_node("n1", json!({}));
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let op = client.stop_node(&loc(), "n1").await.unwrap();
    client
        .wait_operation(&loc(), op, "stopping", LONG)
        .await
        .unwrap();
    assert_eq!(
        client.get_node(&loc(), "n1").await.unwrap().state,
        Some(NodeState::Stopped)
    );
    let op = client.start_node(&loc(), "n1").await.unwrap();
    client
        .wait_operation(&loc(), op, "starting", LONG)
        .await
        .unwrap();
    assert_eq!(
        client.get_node(&loc(), "n1").await.unwrap().state,
        Some(NodeState::Ready)
    );
}

#[tokio::test]
async fn retries_429_and_500_then_succeeds() {
    let fake = FakeTpu::start().await;
    fake.add_node("n1", json!({}));
    fake.inject(
        "GET",
        "/nodes/n1",
        429,
        google_error(429, "RESOURCE_EXHAUSTED", "Rate of requests exceeded."),
        1,
    );
    fake.inject(
        "GET",
        "/nodes/n1",
        503,
        google_error(503, "UNAVAILABLE", "The service is currently unavailable."),
        1,
    );
    fake.inject("GET", "/nodes/n1", 500, json!("not even JSON"), 1);
    let clock = VirtualClock::new();
    let (client, _) = client(&fake.url(), clock.clone());
    let node = client.get_node(&loc(), "n1").await.unwrap();
    assert_eq!(node.id(), "n1");
    assert_eq!(
        fake.requests("GET /v2/projects/test-project/locations/us-east5-b/nodes/n1"),
        4
    );
    // Jittered exponential backoff: 1 s, 2 s, 4 s, each shortened by up to half.
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 3);
    for (sleep, full) in sleeps.iter().zip([1000, 2000, 4000]) {
        let ms = sleep.as_millis() as u64;
        assert!(ms >= full / 2 && ms <= full, "{ms} vs {full}");
    }
}

#[tokio::test]
async fn gives_up_on_persistent_500() {
    let fake = FakeTpu::start().await;
    fake.inject(
        "GET",
        "/nodes",
        500,
        google_error(500, "INTERNAL", "Internal error encountered."),
        100,
    );
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let err = client.list_nodes(&loc()).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { attempts: 4, .. }),
        "{err}"
    );
    assert_eq!(fake.requests("GET"), 4);
    insta::assert_snapshot!(err.to_string().replace(&fake.url(), "http://FAKE"), @"GET http://FAKE/v2/projects/test-project/locations/us-east5-b/nodes?pageSize=100 still failed after 4 attempts (last: HTTP 500 Internal error encountered.): the TPU API is unavailable or throttling, retry later");
}

#[tokio::test]
async fn other_4xx_are_not_retried() {
    let fake = FakeTpu::start().await;
    let denied = google_error(
        403,
        "PERMISSION_DENIED",
        "Permission 'tpu.nodes.create' denied on 'projects/test-project'",
    );
    fake.inject("POST", "/nodes", 403, denied, 1);
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let err = client
        .create_node(&loc(), "n1", &v6e_spot())
        .await
        .unwrap_err();
    assert_eq!(fake.requests("POST"), 1);
    insta::assert_snapshot!(err, @"permission denied on project `test-project` (Permission 'tpu.nodes.create' denied on 'projects/test-project'): give the account roles/tpu.admin and check the API is on with `gcloud services enable tpu.googleapis.com --project test-project`");
}

#[tokio::test]
async fn quota_is_not_retried() {
    let fake = FakeTpu::start().await;
    let body = google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota limit 'TPUV6EPreemptiblePodPerProjectPerZone' has been exceeded. Limit: 0 in zone us-east5-b.",
    );
    fake.inject("POST", "/nodes", 429, body, 5);
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let err = client
        .create_node(&loc(), "n1", &v6e_spot())
        .await
        .unwrap_err();
    assert_eq!(fake.requests("POST"), 1);
    insta::assert_snapshot!(err, @"TPU quota exhausted in us-east5-b (Quota limit 'TPUV6EPreemptiblePodPerProjectPerZone' has been exceeded. Limit: 0 in zone us-east5-b.): delete idle VMs (`cargo xtask tpu list --ours`), request more quota in IAM & Admin > Quotas, or use another zone");
}

#[tokio::test]
async fn stockout_says_what_to_do() {
    let fake = FakeTpu::start().await;
    fake.world().stockout = true;
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let op = client.create_node(&loc(), "n1", &v6e_spot()).await.unwrap();
    let err = client
        .wait_operation(&loc(), op, "creating node `n1`", LONG)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoCapacity { .. }));
    insta::assert_snapshot!(err, @r#"no TPU capacity in us-east5-b right now (There is no more capacity in the zone "us-east5-b"; you can try in another zone where Cloud TPU Nodes are offered (see https://cloud.google.com/tpu/docs/regions) [EID: 0x1234]): try another zone, retry later, or ask for spot capacity through a queued resource"#);
}

#[tokio::test]
async fn already_exists_invalid_zone_invalid_type() {
    let fake = FakeTpu::start().await;
    fake.add_node("taken", json!({}));
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let err = client
        .create_node(&loc(), "taken", &v6e_spot())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    insta::assert_snapshot!(err, @"node `taken` already exists (Resource 'projects/test-project/locations/us-east5-b/nodes/taken' already exists): pick another name, reuse it with --vm, or delete it with `cargo xtask tpu delete`");

    let err = client
        .create_node(&Location::new(PROJECT, "mars-north1-a"), "n", &v6e_spot())
        .await
        .unwrap_err();
    insta::assert_snapshot!(err, @"zone `mars-north1-a` is not valid for Cloud TPU (Location mars-north1-a is not found or access is unauthorized.): list zones with `gcloud compute tpus locations list`");

    let mut node = v6e_spot();
    node.accelerator_type = "v9z-3".to_owned();
    let err = client.create_node(&loc(), "n", &node).await.unwrap_err();
    insta::assert_snapshot!(err, @r#"the accelerator type or runtime version is not offered in us-east5-b (Accelerator type "v9z-3" is not available in zone "us-east5-b"): see `gcloud compute tpus accelerator-types list --zone us-east5-b` and `gcloud compute tpus tpu-vm versions list --zone us-east5-b`"#);
    assert_eq!(fake.requests("POST"), 3);
}

#[tokio::test]
async fn operation_that_never_finishes_hits_the_deadline() {
    let fake = FakeTpu::start().await;
    fake.world().ops_never_finish = true;
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let op = client.create_node(&loc(), "n1", &v6e_spot()).await.unwrap();
    let err = client
        .wait_operation(&loc(), op, "creating node `n1`", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Deadline { waited_s: 60, .. }), "{err}");
    // 5 + 10 + 20 s, then the 25 s left: four polls within the minute.
    assert_eq!(fake.requests("GET"), 4);
    insta::assert_snapshot!(err, @"creating node `n1` did not finish within 60 s: it may still be running; see `cargo xtask tpu list --ours` and delete leftovers with `cargo xtask cleanup`");
}

#[tokio::test]
async fn preempted_while_waiting() {
    let fake = FakeTpu::start().await;
    fake.world().preempt = true;
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let op = client.create_node(&loc(), "n1", &v6e_spot()).await.unwrap();
    client
        .wait_operation(&loc(), op, "creating", LONG)
        .await
        .unwrap();
    let err = client
        .wait_node_ready(&loc(), "n1", LONG)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NodeLost { .. }), "{err}");
}

#[tokio::test]
async fn queued_resource_lifecycle() {
    let fake = FakeTpu::start().await;
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let qr = tpu_cloud::QueuedResource {
        tpu: Some(tpu_cloud::api::QueuedTpu {
            node_spec: vec![tpu_cloud::api::QueuedNodeSpec {
                parent: loc().parent(),
                node_id: "n1".to_owned(),
                node: Node {
                    scheduling_config: None,
                    ..v6e_spot()
                },
            }],
        }),
        spot: Some(serde_json::Map::new()),
        ..Default::default()
    };
    let op = client
        .create_queued_resource(&loc(), "q1", &qr)
        .await
        .unwrap();
    client
        .wait_operation(&loc(), op, "queueing", LONG)
        .await
        .unwrap();
    let active = client
        .wait_queued_resource_active(&loc(), "q1", LONG)
        .await
        .unwrap();
    assert_eq!(active.state.unwrap().state, "ACTIVE");
    assert_eq!(
        fake.requests("GET /v2/projects/test-project/locations/us-east5-b/queuedResources/q1"),
        3
    );
    let node = client.get_node(&loc(), "n1").await.unwrap();
    assert_eq!(
        node.queued_resource.as_deref(),
        Some("projects/test-project/locations/us-east5-b/queuedResources/q1")
    );

    let refused = client
        .delete_queued_resource(&loc(), "q1", false)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::Rejected { status: 400, .. }),
        "{refused}"
    );
    let op = client
        .delete_queued_resource(&loc(), "q1", true)
        .await
        .unwrap();
    client
        .wait_operation(&loc(), op, "deleting", LONG)
        .await
        .unwrap();
    assert!(fake.world().nodes.is_empty());
    assert!(
        fake.world()
            .log
            .iter()
            .any(|l| l.ends_with("queuedResources/q1?force=true"))
    );
}

#[tokio::test]
async fn queued_resource_that_waits_forever_hits_the_deadline() {
    let fake = FakeTpu::start().await;
    fake.world().stockout = true;
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let qr = tpu_cloud::QueuedResource {
        spot: Some(serde_json::Map::new()),
        ..Default::default()
    };
    let op = client
        .create_queued_resource(&loc(), "q1", &qr)
        .await
        .unwrap();
    client
        .wait_operation(&loc(), op, "queueing", LONG)
        .await
        .unwrap();
    let err = client
        .wait_queued_resource_active(&loc(), "q1", Duration::from_secs(120))
        .await
        .unwrap_err();
    insta::assert_snapshot!(err, @"queued resource `q1` (last state WAITING_FOR_RESOURCES) did not finish within 120 s: it may still be running; see `cargo xtask tpu list --ours` and delete leftovers with `cargo xtask cleanup`");
}

#[tokio::test]
async fn rejected_credentials_and_missing_credentials() {
    let fake = FakeTpu::start().await;
    let (client, tokens) = client(&fake.url(), VirtualClock::new());
    drop(tokens);
    // A token the fake does not accept.
    fake.inject(
        "GET",
        "/nodes",
        401,
        google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ),
        1,
    );
    let err = client.list_nodes(&loc()).await.unwrap_err();
    insta::assert_snapshot!(err, @"Google rejected the credentials (Request had invalid authentication credentials.): run `gcloud auth application-default login` again");

    let tokens = std::sync::Arc::new(crate::support::FakeTokens {
        fail: Some(|| {
            let e = || Box::new(gcp_auth::Error::Str("not found"));
            gcp_auth::Error::NoAuthMethod(e(), e(), e())
        }),
        ..Default::default()
    });
    let config = tpu_cloud::ClientConfig {
        base_url: fake.url(),
        timing: timing(),
    };
    let client = tpu_cloud::TpuClient::new(config, tokens, VirtualClock::new()).unwrap();
    let before = fake.requests("");
    let err = client.get_node(&loc(), "n1").await.unwrap_err();
    assert_eq!(
        fake.requests(""),
        before,
        "no request goes out without a token"
    );
    insta::assert_snapshot!(err, @"no Google credentials found (tried GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default credentials, the metadata server, gcloud auth print-access-token: no available authentication method found): run `gcloud auth application-default login`");
}

#[tokio::test]
async fn create_answered_after_the_client_timed_out_is_visible() {
    let fake = FakeTpu::start().await;
    fake.world().create_delay = Some(Duration::from_millis(800));
    let mut timing = timing();
    timing.request_timeout = Duration::from_millis(200);
    let (client, _) = client_with(&fake.url(), VirtualClock::new(), timing);
    let err = client
        .create_node(&loc(), "n1", &v6e_spot())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    // POST is not retried blindly; the node exists anyway.
    assert_eq!(fake.requests("POST"), 1);
    assert!(fake.world().nodes.contains_key(&FakeTpu::node_name("n1")));
}
