//! The stub server (`stub` feature) against this crate's own client, the
//! way a session drives a real server: ready through `/health_generate`,
//! the model and server info, plain and streamed `/generate`, the score
//! mix, a profile that leaves the real fixture's files where JAX puts
//! them, `num_steps` stopping the trace by itself (then `/stop_profile`
//! answers 500), the 0.0.x profiler API, and the API key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sglang_server::stub::{Stub, StubOptions};
use sglang_server::workload::{GenerateWorkload, ScoreMix, Workload};
use sglang_server::{
    Client, ClientConfig, Error, NoLiveness, ReadyOptions, StartProfile, StopOutcome,
    check_capture, find_trace_runs, wait_for_trace_files, wait_until_ready,
};

/// The real CPU capture in the repository's fixtures.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/jax-cpu-small")
}

/// A log the test can read while the stub writes it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn start(extra: &[&str]) -> (Stub, Shared) {
    let mut args: Vec<String> = [
        "-m",
        "sgl_jax.launch_server",
        "--model-path",
        "/models/tiny-qwen1",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--jax-precompile-decode-bs-paddings",
        "1",
        "2",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let log = Shared::default();
    let stub = Stub::start(
        StubOptions {
            args,
            traces: fixture(),
            version: "0.0.1".to_owned(),
            token_time: Duration::from_millis(2),
        },
        Box::new(log.clone()),
    )
    .await
    .unwrap();
    (stub, log)
}

fn client(stub: &Stub, api_key: Option<&str>) -> Client {
    Client::new(ClientConfig {
        base_url: stub.url(),
        api_key: api_key.map(str::to_owned),
        request_timeout: Duration::from_secs(10),
        server_log: None,
    })
    .unwrap()
}

#[tokio::test]
async fn a_session_against_the_stub() {
    let (stub, log) = start(&[]).await;
    let client = client(&stub, None);
    let ready = ReadyOptions {
        timeout: Duration::from_secs(10),
        poll: Duration::from_millis(50),
        server_log: None,
        settle: Duration::ZERO,
    };
    wait_until_ready(&client, &ready, &NoLiveness)
        .await
        .unwrap();
    assert_eq!(
        client.model_info().await.unwrap().model_path,
        "/models/tiny-qwen1"
    );
    let info = client.server_info().await.unwrap();
    assert_eq!(info["version"], "0.0.1");
    assert_eq!(info["jax_precompile_decode_bs_paddings"][1], 2);
    // The 0.0.x profiler API.
    assert!(!client.profiler_features().await.unwrap().later_api);

    let out = tempfile::tempdir().unwrap();
    let profile = StartProfile {
        output_dir: Some(out.path().display().to_string()),
        host_tracer_level: Some(2),
        ..StartProfile::default()
    };
    assert_eq!(
        client.start_profile_checked(&profile).await.unwrap(),
        "Start profiling.\n"
    );
    for stream in [false, true] {
        let workload = Workload::Generate(GenerateWorkload {
            count: 3,
            concurrency: 2,
            prompt: "hello world".to_owned(),
            max_new_tokens: 4,
            stream,
        });
        let res = workload.run(&client, &NoLiveness, false).await.unwrap();
        assert_eq!((res.requests, res.errors), (3, 0), "{res:?}");
        assert_eq!(res.output_tokens, Some(12));
        // Four tokens take at least four token times.
        assert!(res.latency().min >= 8.0, "{:?}", res.latency());
    }
    let mix = Workload::Score(ScoreMix {
        rounds: 1,
        concurrency: 1,
        label_token_ids: vec![7, 9],
        model: "/models/tiny-qwen1".to_owned(),
    });
    let res = mix.run(&client, &NoLiveness, false).await.unwrap();
    assert_eq!((res.requests, res.errors), (3, 0), "{res:?}");
    let scored = client
        .score(&sglang_server::ScoreRequest {
            model: "m".to_owned(),
            query: "q".to_owned(),
            items: vec!["a".to_owned(), "b".to_owned()],
            label_token_ids: vec![1, 2, 3],
            apply_softmax: true,
        })
        .await
        .unwrap();
    assert_eq!(scored.scores.len(), 2);
    for row in &scored.scores {
        assert_eq!(row.len(), 3);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{row:?}");
    }
    let stop = client
        .stop_profile_checked(&profile, Some(out.path()))
        .await
        .unwrap();
    assert!(matches!(stop, StopOutcome::Stopped(_)), "{stop:?}");

    // The fixture's files, named after this machine, where JAX writes them.
    let runs = wait_for_trace_files(
        out.path(),
        Duration::from_millis(20),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(runs.len(), 1);
    let xplane = runs[0].xplane.as_ref().unwrap();
    let name = xplane.file_name().unwrap().to_string_lossy().into_owned();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(name, format!("{}.xplane.pb", host.trim()));
    let original = fixture().join("plugins/profile/2026_11_23_14_34_24/vm.xplane.pb");
    assert_eq!(
        std::fs::read(xplane).unwrap(),
        std::fs::read(original).unwrap()
    );
    check_capture(out.path(), &profile).unwrap();

    // A second stop has nothing to stop.
    let err = client.stop_profile().await.unwrap_err();
    assert_eq!(err.status(), Some(500));

    let log = log.text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].contains("sglprof stub of sglang-jax 0.0.1"),
        "{log}"
    );
    assert!(log.contains(sglang_server::READY_LOG_LINE), "{log}");
    let starts = log
        .find("Profiling starts. Traces will be saved to: ")
        .unwrap();
    let generate = log[starts..]
        .find("\"POST /generate HTTP/1.1\" 200 OK")
        .unwrap();
    assert!(generate > 0);
    assert!(
        log.contains("Profiling done. Traces are saved to: "),
        "{log}"
    );
    assert!(
        log.contains("RuntimeError: Profiling is not in progress. Call /start_profile first."),
        "{log}"
    );
    // Every line is stamped as sglang-jax stamps its own.
    for line in lines {
        assert!(
            line.starts_with("[20") && line.as_bytes()[20] == b']',
            "{line}"
        );
    }
}

/// `num_steps` ends the trace after that many forward passes; the stop
/// that follows answers 500, which the client reads as already stopped.
#[tokio::test]
async fn num_steps_stops_the_trace_by_itself() {
    let (stub, _log) = start(&[]).await;
    let client = client(&stub, None);
    let out = tempfile::tempdir().unwrap();
    let profile = StartProfile {
        output_dir: Some(out.path().display().to_string()),
        num_steps: Some(5),
        ..StartProfile::default()
    };
    client.start_profile(&profile).await.unwrap();
    let one = Workload::Generate(GenerateWorkload {
        count: 1,
        concurrency: 1,
        prompt: "hi".to_owned(),
        max_new_tokens: 4,
        stream: false,
    });
    one.run(&client, &NoLiveness, false).await.unwrap();
    assert!(find_trace_runs(out.path()).is_empty(), "4 of 5 passes");
    one.run(&client, &NoLiveness, false).await.unwrap();
    assert_eq!(find_trace_runs(out.path()).len(), 1);
    let stop = client
        .stop_profile_checked(&profile, Some(out.path()))
        .await
        .unwrap();
    assert_eq!(stop, StopOutcome::AlreadyStopped);
}

#[tokio::test]
async fn the_api_key_is_required_when_given() {
    let (stub, _log) = start(&["--api-key", "sk-stub"]).await;
    let err = client(&stub, None).health_generate().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let err = client(&stub, Some("wrong")).model_info().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let keyed = client(&stub, Some("sk-stub"));
    keyed.health_generate().await.unwrap();
    // The real server reports its key among its arguments; sglprof redacts it.
    assert_eq!(keyed.server_info().await.unwrap()["api_key"], "sk-stub");
    // An endpoint the release lacks is a 404, not a refusal of the key.
    assert_eq!(keyed.profile_status().await.unwrap(), None);
    assert!(matches!(
        client(&stub, None).profile_status().await,
        Err(Error::Status { status: 401, .. })
    ));
}

/// What the stub refuses to start with, in one line each.
#[tokio::test]
async fn bad_options_are_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let cases: [(Vec<&str>, PathBuf, &str); 3] = [
        (
            vec!["--model-path", "m", "--port", &port],
            fixture(),
            "cannot listen on 127.0.0.1:",
        ),
        (vec!["--port", "0"], fixture(), "--model-path is required"),
        (
            vec!["--model-path", "m", "--port", "0"],
            fixture().join("plugins"),
            "no plugins/profile/<run>/",
        ),
    ];
    for (args, traces, expect) in cases {
        let err = Stub::start(
            StubOptions {
                args: args.iter().map(|s| (*s).to_owned()).collect(),
                traces,
                version: "0.0.1".to_owned(),
                token_time: Duration::ZERO,
            },
            Box::new(std::io::sink()),
        )
        .await
        .err()
        .unwrap();
        let text = err.to_string();
        assert!(text.contains(expect) && !text.contains('\n'), "{text}");
    }
}

/// Every `/generate` has an id of its own, the same in each of its chunks,
/// and `GET /stub/sends` says when each answer left the stub: after the
/// client sent the request and before its first chunk arrived.
#[tokio::test]
async fn send_times_are_listed_by_request_id() {
    use sglang_server::{Clock, LoadOptions, LoadRequest, send_load};
    let (stub, _log) = start(&[]).await;
    let client = client(&stub, None);
    let requests: Vec<LoadRequest> = (0..6)
        .map(|i| LoadRequest {
            path: "/generate",
            body: format!(
                r#"{{"text": "same prompt", "sampling_params": {{"max_new_tokens": {}}}, "stream": true}}"#,
                2 + i % 3
            )
            .into(),
            stream: true,
            due: Duration::ZERO,
        })
        .collect();
    let clock = Clock::new();
    let sent = send_load(
        &client,
        &clock,
        Arc::new(requests),
        LoadOptions {
            max_concurrency: Some(2),
        },
        &NoLiveness,
        "load",
        &|_, _| {},
    )
    .await
    .unwrap();
    let sends = sglang_server::stub::sends(&client).await.unwrap();
    assert_eq!(sends.len(), 6, "{sends:?}");
    for s in &sent {
        assert_eq!(s.error, None);
        let id = s.meta.id.as_deref().unwrap();
        assert_eq!(id.len(), 32);
        let at = sends[id];
        // The prefill's token time, then the rest of the answer's.
        assert!(clock.epoch_ns(s.start) < at, "{s:?} {at}");
        assert!(at <= clock.epoch_ns(s.first_token.unwrap()), "{s:?} {at}");
    }
}

/// A load of bodies made on demand holds only those in flight: each body
/// counts itself while it lives, and with 4 requests in flight at most
/// the count stays near 4 whether the load has 200 or 2,000 requests.
#[tokio::test]
async fn bodies_made_on_demand_are_not_held() {
    use sglang_server::{Clock, LoadOptions, LoadRequest, Requests, send_load};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the live bodies; the peak is kept.
    #[derive(Default)]
    struct Live {
        now: AtomicUsize,
        peak: AtomicUsize,
        made: AtomicUsize,
    }
    /// A body's bytes, which leave the count when dropped.
    struct Counted(Vec<u8>, Arc<Live>);
    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.now.fetch_sub(1, Ordering::SeqCst);
        }
    }
    struct Made(usize, Arc<Live>);
    impl Requests for Made {
        fn len(&self) -> usize {
            self.0
        }
        fn path(&self, _idx: usize) -> &'static str {
            "/generate"
        }
        fn due(&self, _idx: usize) -> Duration {
            Duration::ZERO
        }
        fn request(&self, idx: usize) -> LoadRequest {
            let live = &self.1;
            let now = live.now.fetch_add(1, Ordering::SeqCst) + 1;
            live.peak.fetch_max(now, Ordering::SeqCst);
            live.made.fetch_add(1, Ordering::SeqCst);
            let body = format!(
                r#"{{"text": "prompt {idx}", "sampling_params": {{"max_new_tokens": 2}}, "stream": true}}"#
            );
            LoadRequest {
                path: "/generate",
                body: bytes::Bytes::from_owner(Counted(body.into_bytes(), live.clone())),
                stream: true,
                due: Duration::ZERO,
            }
        }
    }
    let (stub, _log) = start(&[]).await;
    let client = client(&stub, None);
    for n in [200, 2_000] {
        let live = Arc::new(Live::default());
        let sent = send_load(
            &client,
            &Clock::new(),
            Arc::new(Made(n, live.clone())),
            LoadOptions {
                max_concurrency: Some(4),
            },
            &NoLiveness,
            "load",
            &|_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(sent.len(), n);
        assert!(sent.iter().all(|s| s.error.is_none()), "{:?}", sent[0]);
        assert_eq!(live.made.load(Ordering::SeqCst), n);
        assert_eq!(live.now.load(Ordering::SeqCst), 0);
        // In flight, plus the one made while waiting for a slot.
        let peak = live.peak.load(Ordering::SeqCst);
        assert!(peak <= 4 + 1, "{n} requests: {peak} bodies alive at once");
    }
}

/// A `/generate` prompt may be token ids, as the real server takes it (the
/// warmup sends ids): the stub counts them as the prompt's tokens, and
/// refuses a body with both or neither.
#[tokio::test]
async fn generate_takes_input_ids() {
    let (stub, _log) = start(&[]).await;
    let url = format!("{}/generate", stub.url());
    // The load's client installs the TLS provider reqwest needs.
    let _ = client(&stub, None);
    let http = reqwest::Client::new();
    let post = |body: &'static str| http.post(&url).body(body).send();
    let answer = post(r#"{"input_ids": [5, 6, 7], "sampling_params": {"max_new_tokens": 2}}"#)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["meta_info"]["prompt_tokens"], 3, "{answer}");
    for bad in [
        r#"{"sampling_params": {"max_new_tokens": 2}}"#,
        r#"{"text": "a b", "input_ids": [1], "sampling_params": {"max_new_tokens": 2}}"#,
    ] {
        let answer = post(bad).await.unwrap();
        assert_eq!(answer.status(), 400, "{bad}");
        let text = answer.text().await.unwrap();
        assert!(text.contains("exactly one of text and input_ids"), "{text}");
    }
}

/// `send_load_each` hands the outcomes over in request order, each as soon
/// as it and every earlier one are answered, even when later requests are
/// answered first; progress counts answers as they come.
#[tokio::test]
async fn outcomes_come_in_request_order() {
    use sglang_server::{Clock, LoadOptions, LoadRequest, Sent, send_load_each};
    use std::sync::Mutex;
    let (stub, _log) = start(&[]).await;
    let client = client(&stub, None);
    // Request 0 takes 30 tokens (2 ms each), request 1 takes 15, the rest 1.
    let tokens = [30, 15, 1, 1, 1, 1];
    let requests: Vec<LoadRequest> = tokens
        .iter()
        .map(|n| LoadRequest {
            path: "/generate",
            body: format!(
                r#"{{"text": "a prompt", "sampling_params": {{"max_new_tokens": {n}}}, "stream": true}}"#
            )
            .into(),
            stream: true,
            due: Duration::ZERO,
        })
        .collect();
    let answered = Mutex::new(Vec::new());
    let progress = |done: usize, n: usize| answered.lock().unwrap().push((done, n));
    let mut seen: Vec<(usize, Sent)> = Vec::new();
    let mut each = |idx: usize, sent: Sent| seen.push((idx, sent));
    send_load_each(
        &client,
        &Clock::new(),
        Arc::new(requests),
        LoadOptions {
            max_concurrency: Some(6),
        },
        &NoLiveness,
        "load",
        &progress,
        &mut each,
    )
    .await
    .unwrap();
    let order: Vec<usize> = seen.iter().map(|(idx, _)| *idx).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
    for ((idx, sent), n) in seen.iter().zip(tokens) {
        assert_eq!(sent.error, None, "request {idx}");
        assert_eq!(sent.meta.completion_tokens, Some(n), "request {idx}");
    }
    // The short requests were answered before request 0.
    assert!(seen[2].1.end < seen[0].1.end && seen[1].1.end < seen[0].1.end);
    let answered = answered.into_inner().unwrap();
    assert_eq!(answered, (1..=6).map(|d| (d, 6)).collect::<Vec<_>>());
}
