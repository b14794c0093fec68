//! The later profiling API (`GET /profile_status`, `start_step`, stage
//! capture, an explicit tracer level 0): refused on a server without it,
//! sent to one with it; a stop that leaves no usable `.xplane.pb` is a
//! failed capture; the warmup covers every request shape.

use sglang_server::workload::{GenerateWorkload, ScoreKind, ScoreMix, Workload};
use sglang_server::{Client, ClientConfig, Error, StartProfile, check_capture};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer) -> Client {
    Client::new(ClientConfig {
        base_url: server.uri(),
        api_key: None,
        request_timeout: std::time::Duration::from_secs(5),
        server_log: None,
    })
    .unwrap()
}

fn staged() -> StartProfile {
    StartProfile {
        output_dir: Some("/tmp/p".to_owned()),
        num_steps: Some(5),
        profile_by_stage: Some(true),
        python_tracer_level: Some(0),
        ..StartProfile::default()
    }
}

#[tokio::test]
async fn later_options_are_refused_by_a_server_without_profile_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/profile_status"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    // Nothing may be started on such a server.
    Mock::given(path("/start_profile"))
        .respond_with(ResponseTemplate::new(200).set_body_string("Start profiling.\n"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .start_profile_checked(&staged())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }));
    let text = err.to_string();
    assert!(
        text.contains("profile_by_stage, python_tracer_level 0") && !text.contains('\n'),
        "{text}"
    );
    // A plain body needs no feature and goes through.
    let plain = StartProfile {
        num_steps: Some(3),
        ..StartProfile::default()
    };
    client(&server).start_profile_checked(&plain).await.unwrap();
}

#[tokio::test]
async fn later_options_go_to_a_server_with_profile_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/profile_status"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "idle"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/start_profile"))
        .and(wiremock::matchers::body_json(serde_json::json!({
            "output_dir": "/tmp/p", "num_steps": 5, "start_step": 40,
            "python_tracer_level": 0, "profile_by_stage": true,
            "profile_stages": ["decode"],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_string("Start profiling.\n"))
        .expect(1)
        .mount(&server)
        .await;
    let body = StartProfile {
        start_step: Some(40),
        profile_stages: Some(vec!["decode".to_owned()]),
        ..staged()
    };
    assert_eq!(
        body.later_api_options(),
        [
            "start_step",
            "profile_by_stage",
            "profile_stages",
            "python_tracer_level 0"
        ]
    );
    let features = client(&server).profiler_features().await.unwrap();
    assert!(features.later_api);
    let text = client(&server).start_profile_checked(&body).await.unwrap();
    assert_eq!(text.trim(), "Start profiling.");
}

fn write_run(root: &std::path::Path, xplane: &[u8]) {
    let run = root.join("plugins/profile/2026_11_30_22_00_00");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("vm.xplane.pb"), xplane).unwrap();
    std::fs::write(run.join("vm.trace.json.gz"), b"gz").unwrap();
}

#[test]
fn an_empty_or_missing_xplane_is_a_failed_capture() {
    let plain = StartProfile::default();
    let dir = tempfile::tempdir().unwrap();
    let err = check_capture(dir.path(), &plain).unwrap_err();
    assert!(err.to_string().contains("no plugins/profile"), "{err}");
    // 0 bytes: what upstream writes for a capture over 2 GB.
    write_run(dir.path(), b"");
    let err = check_capture(dir.path(), &plain).unwrap_err();
    assert!(matches!(err, Error::CaptureFailed { .. }));
    assert!(err.to_string().contains("0 bytes"), "{err}");
    write_run(dir.path(), b"\x0a\x00");
    assert_eq!(check_capture(dir.path(), &plain).unwrap().len(), 1);

    // Stage mode: one capture under prefill/ and one under decode/.
    let staged_dir = tempfile::tempdir().unwrap();
    write_run(&staged_dir.path().join("prefill"), b"\x0a\x00");
    let err = check_capture(staged_dir.path(), &staged()).unwrap_err();
    assert!(err.to_string().contains("decode"), "{err}");
    write_run(&staged_dir.path().join("decode"), b"\x0a\x00");
    let runs = check_capture(staged_dir.path(), &staged()).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs[0].dir.starts_with(staged_dir.path().join("prefill")));
}

#[test]
fn the_warmup_sends_every_shape_alone_then_at_the_workloads_concurrency() {
    let mix = ScoreMix {
        model: "m".to_owned(),
        label_token_ids: vec![1, 2],
        rounds: 10,
        concurrency: 4,
    };
    let phases = Workload::Score(mix).warmup(6);
    let [Workload::Score(alone), Workload::Score(together)] = phases.as_slice() else {
        panic!("two score phases expected: {phases:?}");
    };
    let kinds = |m: &ScoreMix| m.requests().iter().map(|(k, _)| *k).collect::<Vec<_>>();
    assert_eq!(kinds(alone), ScoreKind::ALL.to_vec());
    assert_eq!(alone.concurrency, 1);
    assert_eq!(together.concurrency, 4);
    // At least `concurrency` of each shape, so that full batches of each
    // occur; the items per request are those of the workload.
    for kind in ScoreKind::ALL {
        let n = kinds(together).iter().filter(|k| **k == kind).count();
        assert!(n >= 4, "{kind:?}: {n}");
    }
    let sizes: Vec<usize> = alone
        .requests()
        .iter()
        .map(|(_, r)| r.items.len())
        .collect();
    assert_eq!(sizes, [1, 4, 32]);

    let generate = GenerateWorkload {
        count: 20,
        concurrency: 8,
        prompt: "hello".to_owned(),
        max_new_tokens: 16,
        stream: false,
    };
    let phases = Workload::Generate(generate.clone()).warmup(2);
    assert_eq!(phases.len(), 2);
    let Workload::Generate(first) = &phases[0] else {
        unreachable!()
    };
    let Workload::Generate(second) = &phases[1] else {
        unreachable!()
    };
    assert_eq!((first.count, first.concurrency), (1, 1));
    assert_eq!((second.count, second.concurrency), (8, 8));
    assert_eq!(second.max_new_tokens, generate.max_new_tokens);
    assert!(Workload::Generate(generate).warmup(0).is_empty());
}
