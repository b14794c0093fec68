//! The fake API as a component: its call log, the hosts of a slice, the
//! delete hook and preemption.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tpu_cloud::api::{Node, NodeState};
use tpu_cloud::fake::{FakeConfig, FakeTpu, hosts_for};
use tpu_cloud::{ClientConfig, Location, TpuClient};

use crate::support::{VirtualClock, timing};

const LONG: Duration = Duration::from_secs(3600);

fn node(ty: &str) -> Node {
    Node {
        accelerator_type: ty.to_owned(),
        runtime_version: "v2-alpha-tpuv6e".to_owned(),
        ..Node::default()
    }
}

#[test]
fn hosts_follow_the_public_tables() {
    for (ty, hosts) in [
        ("v6e-1", 1),
        ("v6e-8", 1),
        ("v6e-16", 4),
        ("v5litepod-32", 8),
        ("v4-8", 1),
        ("v4-32", 4),
        ("v5p-16", 2),
    ] {
        assert_eq!(hosts_for(ty), Some(hosts), "{ty}");
    }
    assert_eq!(hosts_for("v6e"), None);
    assert_eq!(hosts_for("x9-8"), None);
}

/// A demo project, a log file, a token from the fake itself: what the
/// rehearsal does. The log has one `METHOD PATH STATUS` line per call.
#[tokio::test]
async fn logs_every_call_and_runs_delete_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpu-api.log");
    let fake = FakeTpu::start_with(FakeConfig {
        project: "demo".to_owned(),
        log: Some(log.clone()),
        ..FakeConfig::default()
    })
    .await;
    let deleted = Arc::new(Mutex::new(Vec::<String>::new()));
    fake.on_node_deleted({
        let deleted = deleted.clone();
        Arc::new(move |name: &str| deleted.lock().unwrap().push(name.to_owned()))
    });
    let config = ClientConfig {
        base_url: fake.url(),
        timing: timing(),
    };
    let client = TpuClient::new(config, fake.tokens(), VirtualClock::new()).unwrap();
    let loc = Location::new("demo", "us-east5-b");
    let op = client
        .create_node(&loc, "n1", &node("v6e-16"))
        .await
        .unwrap();
    client
        .wait_operation(&loc, op, "create", LONG)
        .await
        .unwrap();
    let ready = client.wait_node_ready(&loc, "n1", LONG).await.unwrap();
    let ips: Vec<&str> = ready
        .network_endpoints
        .iter()
        .filter_map(|e| e.ip_address.as_deref())
        .collect();
    assert_eq!(ips, ["10.0.0.2", "10.0.1.2", "10.0.2.2", "10.0.3.2"]);
    let missing = client.get_node(&loc, "nope").await.unwrap_err();
    assert!(missing.is_not_found());
    let op = client.delete_node(&loc, "n1").await.unwrap();
    client
        .wait_operation(&loc, op, "delete", LONG)
        .await
        .unwrap();
    assert_eq!(
        *deleted.lock().unwrap(),
        ["projects/demo/locations/us-east5-b/nodes/n1"]
    );

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), fake.requests(""), "{text}");
    assert_eq!(
        lines[0],
        "POST /v2/projects/demo/locations/us-east5-b/nodes 200"
    );
    assert!(lines.contains(&"GET /v2/projects/demo/locations/us-east5-b/nodes/nope 404"));
    assert!(lines.contains(&"DELETE /v2/projects/demo/locations/us-east5-b/nodes/n1 200"));
    // Another project is refused, and logged as such.
    let other = Location::new("test-project", "us-east5-b");
    client.get_node(&other, "n1").await.unwrap_err();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with("GET /v2/projects/test-project/locations/us-east5-b/nodes/n1 403\n"));
}

#[tokio::test]
async fn preemption_mid_session_is_seen_by_the_client() {
    let fake = FakeTpu::start().await;
    fake.add_node("n1", serde_json::json!({"created-by": "sglprof"}));
    let config = ClientConfig {
        base_url: fake.url(),
        timing: timing(),
    };
    let client = TpuClient::new(config, fake.tokens(), VirtualClock::new()).unwrap();
    let loc = Location::new(tpu_cloud::fake::PROJECT, tpu_cloud::fake::ZONE);
    assert!(fake.preempt_now("n1"));
    assert!(!fake.preempt_now("n2"));
    let got = client.get_node(&loc, "n1").await.unwrap();
    assert_eq!(got.state, Some(NodeState::Preempted));
    let err = client.wait_node_ready(&loc, "n1", LONG).await.unwrap_err();
    assert!(err.to_string().contains("PREEMPTED"), "{err}");
}
