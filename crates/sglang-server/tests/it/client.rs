//! The client against wiremock stubs: plain-text bodies, the 500 after a
//! `num_steps` auto-stop, error details, timeouts and the bearer header.

use std::time::Duration;

use sglang_server::{
    Client, ClientConfig, Error, GenerateRequest, NoLiveness, ProfileStatus, ReadyOptions,
    SamplingParams, StartProfile, StopOutcome,
};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer) -> Client {
    client_with(server, None, Duration::from_secs(5))
}

fn client_with(server: &MockServer, api_key: Option<&str>, timeout: Duration) -> Client {
    Client::new(ClientConfig {
        base_url: format!("{}/", server.uri()),
        api_key: api_key.map(str::to_owned),
        request_timeout: timeout,
        server_log: None,
    })
    .unwrap()
}

fn plain(status: u16, body: &str) -> ResponseTemplate {
    // Like Starlette's bare Response: no JSON content type.
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "text/plain")
}

fn with_steps(dir: &std::path::Path) -> StartProfile {
    StartProfile {
        output_dir: Some(dir.display().to_string()),
        num_steps: Some(3),
        host_tracer_level: Some(2),
        ..StartProfile::default()
    }
}

#[tokio::test]
async fn start_profile_sends_only_set_fields_and_reads_plain_text() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/start_profile"))
        .and(body_json(
            serde_json::json!({"output_dir": "/tmp/p", "num_steps": 5, "python_tracer_level": 0}),
        ))
        .respond_with(plain(200, "Start profiling.\n"))
        .expect(1)
        .mount(&server)
        .await;
    let body = StartProfile {
        output_dir: Some("/tmp/p".into()),
        num_steps: Some(5),
        python_tracer_level: Some(0),
        ..StartProfile::default()
    };
    assert_eq!(
        client(&server).start_profile(&body).await.unwrap(),
        "Start profiling.\n"
    );
}

#[tokio::test]
async fn every_start_profile_field_serialises() {
    let body = StartProfile {
        output_dir: Some("gs://b/p".into()),
        num_steps: Some(5),
        start_step: Some(10),
        host_tracer_level: Some(3),
        python_tracer_level: Some(1),
        profile_by_stage: Some(true),
        profile_stages: Some(vec!["prefill".into(), "decode".into()]),
    };
    insta::assert_snapshot!(serde_json::to_string(&body).unwrap(), @r#"{"output_dir":"gs://b/p","num_steps":5,"start_step":10,"host_tracer_level":3,"python_tracer_level":1,"profile_by_stage":true,"profile_stages":["prefill","decode"]}"#);
}

#[tokio::test]
async fn stop_profile_500_after_auto_stop_with_files_is_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/stop_profile"))
        .respond_with(plain(500, "Internal Server Error"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/profile_status"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("plugins/profile/2026_11_23_14_00_00");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("vm.xplane.pb"), b"x").unwrap();
    std::fs::write(run.join("vm.trace.json.gz"), b"y").unwrap();
    let outcome = client(&server)
        .stop_profile_checked(&with_steps(dir.path()), Some(dir.path()))
        .await
        .unwrap();
    assert_eq!(outcome, StopOutcome::AlreadyStopped);
}

#[tokio::test]
async fn stop_profile_500_with_idle_status_is_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/stop_profile"))
        .respond_with(plain(500, "Internal Server Error"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/profile_status"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "idle"})),
        )
        .mount(&server)
        .await;
    let profile = StartProfile {
        num_steps: Some(2),
        ..StartProfile::default()
    };
    let outcome = client(&server)
        .stop_profile_checked(&profile, None)
        .await
        .unwrap();
    assert_eq!(outcome, StopOutcome::AlreadyStopped);
    assert_eq!(
        client(&server).profile_status().await.unwrap(),
        Some(ProfileStatus::Idle)
    );
}

#[tokio::test]
async fn stop_profile_500_without_files_is_an_error_with_status_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/stop_profile"))
        .respond_with(plain(500, "Internal Server Error"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/profile_status"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let err = client(&server)
        .stop_profile_checked(&with_steps(dir.path()), Some(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    let text = err.to_string();
    assert!(
        text.contains("/stop_profile answered HTTP 500: Internal Server Error"),
        "{text}"
    );
}

#[tokio::test]
async fn stop_profile_500_without_num_steps_is_an_error_even_with_files() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/stop_profile"))
        .respond_with(plain(500, "Internal Server Error"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let profile = StartProfile {
        output_dir: Some(dir.path().display().to_string()),
        ..StartProfile::default()
    };
    let err = client(&server)
        .stop_profile_checked(&profile, Some(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
}

#[tokio::test]
async fn error_answers_carry_the_server_log_tail() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/generate"))
        .respond_with(plain(400, "{\"error\": \"bad\"}"))
        .mount(&server)
        .await;
    let log = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(log.path(), "line one\nValueError: the real reason\n").unwrap();
    let client = Client::new(ClientConfig {
        base_url: server.uri(),
        api_key: None,
        request_timeout: Duration::from_secs(5),
        server_log: Some(log.path().to_path_buf()),
    })
    .unwrap();
    let body = GenerateRequest {
        text: "hi".into(),
        sampling_params: SamplingParams {
            max_new_tokens: 1,
            temperature: Some(0.0),
        },
        stream: false,
    };
    let text = client.generate(&body).await.unwrap_err().to_string();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with("/generate answered HTTP 400: {\"error\": \"bad\"}"),
        "{text}"
    );
    assert!(
        text.contains("server log tail:\nline one\nValueError: the real reason"),
        "{text}"
    );
}

#[tokio::test]
async fn slow_answers_time_out_with_a_clear_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/get_model_info"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let err = client_with(&server, None, Duration::from_millis(200))
        .model_info()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("GET http://")
            && err.to_string().contains("timed out after 0.2 s"),
        "{err}"
    );
}

#[tokio::test]
async fn api_key_is_sent_as_bearer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/get_server_info"))
        .and(header("authorization", "Bearer s3cret"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"version": "0.0.1.post1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let info = client_with(&server, Some("s3cret"), Duration::from_secs(5))
        .server_info()
        .await
        .unwrap();
    assert_eq!(info["version"], "0.0.1.post1");
}

#[tokio::test]
async fn streamed_generate_reads_events_until_done() {
    let server = MockServer::start().await;
    let sse = "data: {\"text\":\"a\",\"meta_info\":{\"completion_tokens\":1}}\n\n\
               data: {\"text\":\"ab\",\"meta_info\":{\"completion_tokens\":2}}\n\n\
               data: [DONE]\n\n";
    Mock::given(method("POST"))
        .and(path("/generate"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(sse.as_bytes().to_vec(), "text/event-stream"),
        )
        .mount(&server)
        .await;
    let body = GenerateRequest {
        text: "hi".into(),
        sampling_params: SamplingParams {
            max_new_tokens: 2,
            temperature: Some(0.0),
        },
        stream: true,
    };
    let streamed = client(&server).generate_stream(&body).await.unwrap();
    assert_eq!(streamed.events, 2);
    let last = streamed.last.unwrap();
    assert_eq!(
        (last.text.as_str(), last.meta_info.completion_tokens),
        ("ab", Some(2))
    );
}

#[tokio::test]
async fn readiness_waits_for_health_generate_not_health() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/health_generate"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/health_generate"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let options = ReadyOptions {
        timeout: Duration::from_secs(10),
        poll: Duration::from_millis(50),
        server_log: None,
        settle: Duration::ZERO,
    };
    sglang_server::wait_until_ready(&client(&server), &options, &NoLiveness)
        .await
        .unwrap();
    let probes = server.received_requests().await.unwrap();
    assert_eq!(
        probes
            .iter()
            .filter(|r| r.url.path() == "/health_generate")
            .count(),
        3
    );
}

#[tokio::test]
async fn readiness_gives_up_with_the_last_answer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health_generate"))
        .respond_with(plain(503, "not yet"))
        .mount(&server)
        .await;
    let options = ReadyOptions {
        timeout: Duration::from_millis(300),
        poll: Duration::from_millis(50),
        server_log: None,
        settle: Duration::ZERO,
    };
    let err = sglang_server::wait_until_ready(&client(&server), &options, &NoLiveness)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not ready after") && text.contains("HTTP 503 not yet"),
        "{text}"
    );
}
