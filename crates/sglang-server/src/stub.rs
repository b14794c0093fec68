//! A stub of an sglang-jax server (the `stub` cargo feature): the HTTP API
//! a profiling session uses, answered on loopback without a model, for the
//! tests that need *a* server that behaves like one rather than a real one
//! (the TPU rehearsal's fault matrix, where the phases around the server
//! are what is tested and a real server would cost half a minute per run).
//!
//! What it answers, in the shapes sglang-jax 0.0.1.post1 gives them:
//! `GET /health`, `GET /health_generate`, `GET /get_model_info`,
//! `GET /get_server_info` (the launch arguments, the API key included, as
//! the real one does, and `version`), `POST /generate` (plain, and streamed
//! as server-sent events ending in `data: [DONE]`), `POST /v1/score`,
//! `POST /flush_cache`, `POST /start_profile` and `POST /stop_profile`;
//! `GET /profile_status` is a 404, as on every 0.0.x release. With
//! `--api-key`, every request needs `Authorization: Bearer <key>` (401).
//! Each `/generate` gets an id of its own (`meta_info.id`, the same in
//! every chunk), and the stub remembers when it handed each answer to the
//! HTTP layer: `GET /stub/sends` (the stub's own, not sglang-jax's) lists
//! `<id> <nanoseconds since the Unix epoch>` lines, so that a client's
//! first-token times can be checked against the server's send times.
//!
//! The profiler leaves real files: on stop (or once `num_steps` forward
//! passes have run, after which `/stop_profile` answers 500 as the real
//! server does) the `.xplane.pb` and `.trace.json.gz` of a real capture
//! ([`StubOptions::traces`]) are copied into
//! `<output_dir>/plugins/profile/<YYYY_MM_DD_HH_MM_SS>/<hostname>.*`, the
//! layout JAX writes. A `/generate` takes [`StubOptions::token_time`] per
//! generated token, so a workload lasts a while.
//!
//! The log (what the real server prints on its stdout and stderr, which the
//! launch scripts send to a file) has the lines tools watch for: the
//! uvicorn start line, [`crate::READY_LOG_LINE`], `Profiling starts. ...`,
//! `Profiling done. ...`, and one uvicorn access line per request
//! (`INFO:     127.0.0.1:0 - "POST /generate HTTP/1.1" 200 OK`). Its first
//! line says it is a stub.
//!
//! What it is not: a model (texts and scores are made up, deterministic),
//! a scheduler (requests do not batch), or a tokenizer (a token is a
//! word).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

use crate::client::{SamplingParams, ScoreRequest};
use crate::error::Error;
use crate::profile::StartProfile;

/// What the stub serves.
#[derive(Clone, Debug)]
pub struct StubOptions {
    /// The `sgl_jax.launch_server` arguments it was started with (after
    /// `-m sgl_jax.launch_server`): `--model-path`, `--host`, `--port`,
    /// `--api-key` are used, every one is reported by `/get_server_info`.
    pub args: Vec<String>,
    /// A JAX profiler output folder holding a `plugins/profile/<run>/`
    /// with a `.xplane.pb` and a `.trace.json.gz`: the files each profile
    /// leaves.
    pub traces: PathBuf,
    /// The `version` `/get_server_info` reports (`0.0.1` for 0.0.1.post1,
    /// whose `__version__` it is).
    pub version: String,
    /// How long each generated token takes.
    pub token_time: Duration,
}

/// A stub server, listening until it is dropped.
pub struct Stub {
    server: MockServer,
}

impl Stub {
    /// Binds `--host`:`--port` of the launch arguments (127.0.0.1:30000 by
    /// default; port 0 picks a free one), writes the start-up lines to
    /// `log` and serves.
    pub async fn start(options: StubOptions, log: Box<dyn Write + Send>) -> Result<Stub, Error> {
        let args = launch_args(&options.args);
        let host = args
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or("127.0.0.1")
            .to_owned();
        let port = match args.get("port") {
            None => 30000,
            Some(value) => value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| Error::Invalid(format!("--port {value} is not a port")))?,
        };
        let model_path = args
            .get("model_path")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Invalid("--model-path is required".to_owned()))?
            .to_owned();
        let source = TraceSource::find(&options.traces)?;
        let listener =
            std::net::TcpListener::bind((host.as_str(), port)).map_err(|source| Error::Io {
                action: "cannot listen on",
                path: PathBuf::from(format!("{host}:{port}")),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            action: "cannot read the address of",
            path: PathBuf::from(format!("{host}:{port}")),
            source,
        })?;
        let log = Log(Arc::new(Mutex::new(log)));
        log.line(&format!(
            "sglprof stub of sglang-jax {}: no model runs; answers are made up, and each \
             profile leaves the real trace files of {}",
            options.version,
            options.traces.display()
        ));
        let mut server_args = args.clone();
        server_args.insert("version".to_owned(), json!(options.version));
        // What the scheduler adds (`get_internal_state`); bench_serving
        // reads the first one's `avg_spec_accept_length` after its run.
        let capacity = server_args.get("max_total_tokens").cloned();
        server_args.insert(
            "internal_states".to_owned(),
            json!([{
                "last_gen_throughput": 0.0,
                "memory_usage": {"kvcache": 0.0, "token_capacity": capacity.unwrap_or(json!(4096))},
            }]),
        );
        let handler = Handler {
            api_key: args
                .get("api_key")
                .and_then(Value::as_str)
                .map(str::to_owned),
            model_path,
            server_info: Value::Object(server_args.into_iter().collect()),
            token_time: options.token_time,
            source,
            log: log.clone(),
            profile: Arc::new(Mutex::new(None)),
            next_id: AtomicU64::new(0),
            sends: Mutex::new(Vec::new()),
        };
        let server = MockServer::builder()
            .listener(listener)
            .disable_request_recording()
            .start()
            .await;
        Mock::given(any())
            .respond_with(handler)
            .mount(&server)
            .await;
        log.line(&format!(
            "INFO:     Started server process [{}]",
            std::process::id()
        ));
        log.line(&format!(
            "INFO:     Uvicorn running on http://{addr} (Press CTRL+C to quit)"
        ));
        log.line(crate::READY_LOG_LINE);
        Ok(Stub { server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.uri()
    }
}

/// `GET /stub/sends` of a stub: for each `/generate` so far, its id and
/// when the stub handed its answer over, in ns since the Unix epoch.
pub async fn sends(client: &crate::Client) -> Result<BTreeMap<String, u64>, Error> {
    let text = client
        .call(reqwest::Method::GET, "/stub/sends", None, None)
        .await?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (id, ns) = line.split_once(' ')?;
            Some((id.to_owned(), ns.parse().ok()?))
        })
        .collect())
}

/// The launch arguments as `/get_server_info` reports them: `--max-total-tokens
/// 4096` becomes `"max_total_tokens": 4096`, a flag followed by several
/// values a list, a flag followed by none `true`.
pub fn launch_args(argv: &[String]) -> BTreeMap<String, Value> {
    let mut res = BTreeMap::new();
    let mut words = argv.iter().peekable();
    while let Some(word) = words.next() {
        let Some(name) = word.strip_prefix("--") else {
            continue;
        };
        let (name, inline) = match name.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (name, None),
        };
        let mut values: Vec<Value> = inline.iter().map(|v| scalar(v)).collect();
        while inline.is_none()
            && let Some(next) = words.next_if(|w| !w.starts_with("--"))
        {
            values.push(scalar(next));
        }
        let value = match values.len() {
            0 => Value::Bool(true),
            1 => values.remove(0),
            _ => Value::Array(values),
        };
        res.insert(name.replace('-', "_"), value);
    }
    res
}

fn scalar(word: &str) -> Value {
    if let Ok(n) = word.parse::<u64>() {
        return json!(n);
    }
    match word.parse::<f64>() {
        Ok(x) if x.is_finite() => json!(x),
        _ => json!(word),
    }
}

/// The two files of a real capture, copied by each profile.
#[derive(Clone, Debug)]
struct TraceSource {
    xplane: PathBuf,
    trace_json_gz: PathBuf,
}

impl TraceSource {
    fn find(folder: &Path) -> Result<TraceSource, Error> {
        crate::profile::find_trace_runs(folder)
            .into_iter()
            .find_map(|run| {
                Some(TraceSource {
                    xplane: run.xplane?,
                    trace_json_gz: run.trace_json_gz?,
                })
            })
            .ok_or_else(|| Error::CaptureFailed {
                path: folder.to_path_buf(),
                reason: "no plugins/profile/<run>/ with a .xplane.pb and a .trace.json.gz to \
                         serve as the stub's traces"
                    .to_owned(),
            })
    }

    /// Writes the capture into a new `plugins/profile/<time>/` of
    /// `output_dir`, named after this machine; returns the folder.
    fn write(&self, output_dir: &Path) -> std::io::Result<PathBuf> {
        let host = hostname();
        let runs = output_dir.join("plugins").join("profile");
        let mut at = SystemTime::now();
        let dir = loop {
            let dir = runs.join(run_name(at));
            if !dir.exists() {
                break dir;
            }
            at += Duration::from_secs(1);
        };
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(&self.xplane, dir.join(format!("{host}.xplane.pb")))?;
        std::fs::copy(
            &self.trace_json_gz,
            dir.join(format!("{host}.trace.json.gz")),
        )?;
        Ok(dir)
    }
}

/// The profile in progress.
struct Active {
    output_dir: PathBuf,
    num_steps: Option<u32>,
    steps: u32,
}

#[derive(Clone)]
struct Log(Arc<Mutex<Box<dyn Write + Send>>>);

impl Log {
    /// One line, stamped as sglang-jax stamps its own.
    fn line(&self, text: &str) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "[{}] {text}",
            timestamp(SystemTime::now(), '-', ' ', ':')
        );
        let _ = out.flush();
    }
}

struct Handler {
    api_key: Option<String>,
    model_path: String,
    server_info: Value,
    token_time: Duration,
    source: TraceSource,
    log: Log,
    profile: Arc<Mutex<Option<Active>>>,
    /// The number of the next `/generate`, part of its id.
    next_id: AtomicU64,
    /// For each `/generate`: its number and when its answer left the
    /// handler (after the answer's delay), in ns since the Unix epoch.
    sends: Mutex<Vec<(u64, u64)>>,
}

/// An answer: status, body, and how long the server takes to give it.
struct Answer {
    status: u16,
    body: Body,
    delay: Duration,
    /// The number of the `/generate` it answers, whose send time is taken
    /// once the answer is built and logged, as it is handed over.
    generate: Option<u64>,
}

enum Body {
    Json(Vec<u8>),
    Text(String),
    Events(Vec<u8>),
}

impl Answer {
    fn json(status: u16, value: Value) -> Answer {
        Answer {
            status,
            body: Body::Json(serde_json::to_vec(&value).unwrap_or_default()),
            delay: Duration::ZERO,
            generate: None,
        }
    }

    fn text(status: u16, text: &str) -> Answer {
        Answer {
            status,
            body: Body::Text(text.to_owned()),
            delay: Duration::ZERO,
            generate: None,
        }
    }

    fn not_found() -> Answer {
        Answer::json(404, json!({"detail": "Not Found"}))
    }

    fn bad_request(detail: &str) -> Answer {
        Answer::json(400, json!({"error": {"message": detail}}))
    }

    fn internal_error() -> Answer {
        Answer::text(500, "Internal Server Error")
    }
}

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_owned();
        let method = request.method.as_str().to_owned();
        let answer = self.answer(&method, &path, request);
        self.log.line(&format!(
            "INFO:     127.0.0.1:0 - \"{method} {path} HTTP/1.1\" {} {}",
            answer.status,
            reason(answer.status)
        ));
        let mut res = ResponseTemplate::new(answer.status);
        // A zero delay is still a timer, which fires on the next
        // millisecond tick: only a real one is set.
        if !answer.delay.is_zero() {
            res = res.set_delay(answer.delay);
        }
        let res = match answer.body {
            Body::Json(bytes) => res.set_body_raw(bytes, "application/json"),
            Body::Text(text) => res.set_body_raw(text, "text/plain; charset=utf-8"),
            Body::Events(text) => res.set_body_raw(text, "text/event-stream; charset=utf-8"),
        };
        if let Some(number) = answer.generate {
            self.record_send(number, answer.delay);
        }
        res
    }
}

impl Handler {
    fn answer(&self, method: &str, path: &str, request: &Request) -> Answer {
        if let Some(key) = &self.api_key {
            let sent = request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if sent != Some(key.as_str()) {
                return Answer::json(401, json!({"error": "Unauthorized"}));
            }
        }
        match (method, path) {
            ("GET", "/health") => Answer::text(200, ""),
            ("GET", "/health_generate") => Answer {
                delay: self.token_time,
                ..Answer::text(200, "")
            },
            ("GET", "/get_model_info") => Answer::json(
                200,
                json!({
                    "model_path": self.model_path,
                    "tokenizer_path": self.model_path,
                    "is_generation": true,
                }),
            ),
            ("GET", "/get_server_info") => Answer::json(200, self.server_info.clone()),
            ("GET", "/stub/sends") => Answer::text(200, &self.sends_text()),
            ("POST", "/generate") => self.generate(request),
            ("POST", "/v1/score") => self.score(request),
            ("POST", "/flush_cache") => Answer::text(
                200,
                "Cache flushed.\nPlease check backend logs for more details. (When there are \
                 running or waiting requests, the operation will not be performed.)\n",
            ),
            ("POST", "/start_profile") => self.start_profile(request),
            ("POST", "/stop_profile") => self.stop_profile(),
            _ => Answer::not_found(),
        }
    }

    fn generate(&self, request: &Request) -> Answer {
        /// A `/generate` body: the prompt as text or as token ids, as the
        /// real server takes it.
        #[derive(serde::Deserialize)]
        struct Generate {
            #[serde(default)]
            text: Option<String>,
            #[serde(default)]
            input_ids: Option<Vec<u32>>,
            sampling_params: SamplingParams,
            #[serde(default)]
            stream: bool,
        }
        let body: Generate = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(err) => return Answer::bad_request(&format!("invalid /generate body: {err}")),
        };
        let prompt_tokens = match (&body.text, &body.input_ids) {
            (Some(text), None) => text.split_whitespace().count().max(1),
            (None, Some(ids)) => ids.len().max(1),
            _ => {
                return Answer::bad_request(
                    "invalid /generate body: give exactly one of text and input_ids",
                );
            }
        };
        let tokens = body.sampling_params.max_new_tokens.max(1);
        let started = Instant::now();
        let number = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = request_id(number);
        // A forward pass per generated token: the prefill gives the first.
        self.forward_passes(tokens);
        let delay = self.token_time * tokens;
        let event = |out: &mut Vec<u8>, done: u32| {
            let e2e_latency = (started.elapsed() + delay).as_secs_f64();
            write_event(out, &id, done, tokens, prompt_tokens, e2e_latency);
        };
        if !body.stream {
            let mut answer = Vec::with_capacity(220 + 5 * tokens as usize);
            event(&mut answer, tokens);
            return Answer {
                status: 200,
                body: Body::Json(answer),
                delay,
                generate: Some(number),
            };
        }
        // Written straight into one buffer: building a JSON value per
        // event was most of the stub's time under a fast load.
        let n = tokens as usize;
        let mut events = Vec::with_capacity(n * 230 + 5 * n * (n + 1) / 2 + 16);
        for done in 1..=tokens {
            events.extend_from_slice(b"data: ");
            event(&mut events, done);
            events.extend_from_slice(b"\n\n");
        }
        events.extend_from_slice(b"data: [DONE]\n\n");
        Answer {
            status: 200,
            body: Body::Events(events),
            delay,
            generate: Some(number),
        }
    }

    /// Remembers that answer `number` leaves the handler now, or after
    /// `delay` (wiremock waits for it before writing): called once the
    /// answer is built and its access line written.
    fn record_send(&self, number: u64, delay: Duration) {
        let at = SystemTime::now() + delay;
        let ns = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.sends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((number, ns));
    }

    /// `GET /stub/sends`: one `<id> <ns>` line per `/generate` so far.
    fn sends_text(&self) -> String {
        use std::fmt::Write as _;
        let sends = self.sends.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::with_capacity(sends.len() * 52);
        for (number, ns) in sends.iter() {
            let _ = writeln!(text, "{} {ns}", request_id(*number));
        }
        text
    }

    fn score(&self, request: &Request) -> Answer {
        let body: ScoreRequest = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(err) => return Answer::bad_request(&format!("invalid /v1/score body: {err}")),
        };
        if body.items.is_empty() || body.label_token_ids.is_empty() {
            return Answer::bad_request("items and label_token_ids must not be empty");
        }
        self.forward_passes(1);
        let scores: Vec<Vec<f64>> = body
            .items
            .iter()
            .map(|item| {
                let logits: Vec<f64> = body
                    .label_token_ids
                    .iter()
                    .map(|id| {
                        let seed = fnv(format!("{}{item}{id}", body.query).as_bytes());
                        (seed % 1000) as f64 / 250.0 - 2.0
                    })
                    .collect();
                if body.apply_softmax {
                    let max = logits.iter().copied().fold(f64::MIN, f64::max);
                    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let sum: f64 = exp.iter().sum();
                    exp.iter().map(|e| e / sum).collect()
                } else {
                    logits
                }
            })
            .collect();
        let tokens = body.items.len() * body.label_token_ids.len();
        Answer {
            delay: self.token_time,
            ..Answer::json(
                200,
                json!({"scores": scores, "model": body.model, "object": "scoring", "usage": {"prompt_tokens": tokens}}),
            )
        }
    }

    fn start_profile(&self, request: &Request) -> Answer {
        let body: StartProfile = if request.body.is_empty() {
            StartProfile::default()
        } else {
            match serde_json::from_slice(&request.body) {
                Ok(body) => body,
                Err(err) => {
                    return Answer::bad_request(&format!("invalid /start_profile body: {err}"));
                }
            }
        };
        let mut profile = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        if profile.is_some() {
            self.log
                .line("RuntimeError: Profiling is already in progress. Call /stop_profile first.");
            return Answer::internal_error();
        }
        let output_dir = PathBuf::from(body.output_dir.as_deref().unwrap_or("/tmp"));
        if let Err(err) = std::fs::create_dir_all(&output_dir) {
            self.log.line(&format!(
                "RuntimeError: cannot create {}: {err}",
                output_dir.display()
            ));
            return Answer::internal_error();
        }
        let id = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.log.line(&format!(
            "Profiling starts. Traces will be saved to: {} (with profile id: {id})",
            output_dir.display()
        ));
        *profile = Some(Active {
            output_dir,
            num_steps: body.num_steps,
            steps: 0,
        });
        Answer::text(200, "Start profiling.\n")
    }

    fn stop_profile(&self) -> Answer {
        let mut profile = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        let Some(active) = profile.take() else {
            self.log
                .line("RuntimeError: Profiling is not in progress. Call /start_profile first.");
            return Answer::internal_error();
        };
        self.log.line("Stop profiling...");
        match self.finish(&active) {
            Ok(()) => Answer::text(200, "Stop profiling. This will take some time.\n"),
            Err(()) => Answer::internal_error(),
        }
    }

    /// Counts `n` forward passes of the profile in progress, which stops by
    /// itself once it has run `num_steps` of them.
    fn forward_passes(&self, n: u32) {
        let mut profile = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        let Some(active) = profile.as_mut() else {
            return;
        };
        active.steps = active.steps.saturating_add(n);
        if active.num_steps.is_some_and(|limit| active.steps >= limit)
            && let Some(active) = profile.take()
        {
            let _ = self.finish(&active);
        }
    }

    fn finish(&self, active: &Active) -> Result<(), ()> {
        match self.source.write(&active.output_dir) {
            Ok(_) => {
                self.log.line(&format!(
                    "Profiling done. Traces are saved to: {}",
                    active.output_dir.display()
                ));
                Ok(())
            }
            Err(err) => {
                self.log.line(&format!(
                    "RuntimeError: cannot write the traces into {}: {err}",
                    active.output_dir.display()
                ));
                Err(())
            }
        }
    }
}

/// One `/generate` answer's JSON after `done` of its `tokens` tokens, as
/// `serde_json` writes the value (keys in order, numbers as it writes
/// them): the text (" stub" per token) and its `meta_info`.
fn write_event(
    out: &mut Vec<u8>,
    id: &str,
    done: u32,
    tokens: u32,
    prompt_tokens: usize,
    e2e_latency: f64,
) {
    use std::io::Write as _;
    let _ = write!(
        out,
        r#"{{"meta_info":{{"cached_tokens":0,"completion_tokens":{done},"e2e_latency":"#
    );
    // serde_json's own digits for the float (a non-finite one is null).
    let _ = serde_json::to_writer(&mut *out, &e2e_latency);
    if done == tokens {
        let _ = write!(
            out,
            r#","finish_reason":{{"length":{tokens},"type":"length"}}"#
        );
    } else {
        out.extend_from_slice(br#","finish_reason":null"#);
    }
    let _ = write!(
        out,
        r#","id":"{id}","prompt_tokens":{prompt_tokens}}},"text":""#
    );
    for _ in 0..done {
        out.extend_from_slice(b" stub");
    }
    out.extend_from_slice(b"\"}");
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    }
}

/// The id of the `number`th `/generate`, 32 hex digits as sglang-jax's.
fn request_id(number: u64) -> String {
    format!("{:032x}", u128::from(number) | (0x5354_5542 << 96))
}

/// FNV-1a, for made-up answers that are the same for the same request.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// This machine's host name, which JAX names its trace files after.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// `2026_11_23_14_34_24`: the folder name JAX gives a profile (UTC).
fn run_name(at: SystemTime) -> String {
    timestamp(at, '_', '_', '_')
}

/// The UTC time `at` as `YYYY<d>MM<d>DD<s>HH<t>MM<t>SS`.
fn timestamp(at: SystemTime, d: char, s: char, t: char) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{d}{month:02}{d}{day:02}{s}{:02}{t}{:02}{t}{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_arguments_as_the_server_reports_them() {
        let argv: Vec<String> = "-m sgl_jax.launch_server --model-path /m --port 30001 \
             --jax-precompile-decode-bs-paddings 1 2 4 --mem-fraction-static 0.1 \
             --skip-server-warmup --host=127.0.0.1"
            .split(' ')
            .map(str::to_owned)
            .collect();
        let args = launch_args(&argv);
        assert_eq!(args["model_path"], "/m");
        assert_eq!(args["port"], 30001);
        assert_eq!(args["jax_precompile_decode_bs_paddings"], json!([1, 2, 4]));
        assert_eq!(args["mem_fraction_static"], 0.1);
        assert_eq!(args["skip_server_warmup"], true);
        assert_eq!(args["host"], "127.0.0.1");
        assert!(!args.contains_key("m"));
    }

    /// The events are written as the JSON value of each would be.
    #[test]
    fn events_are_the_json_of_their_values() {
        let id = request_id(7);
        for (done, tokens, e2e) in [(1, 3, 0.25), (3, 3, 1.0e-5), (2, 2, 12.5), (1, 1, f64::NAN)] {
            let mut out = Vec::new();
            write_event(&mut out, &id, done, tokens, 5, e2e);
            let value = json!({
                "text": " stub".repeat(done as usize),
                "meta_info": {
                    "id": id,
                    "finish_reason": if done == tokens {
                        json!({"type": "length", "length": tokens})
                    } else {
                        Value::Null
                    },
                    "prompt_tokens": 5,
                    "completion_tokens": done,
                    "cached_tokens": 0,
                    "e2e_latency": e2e,
                },
            });
            assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
        }
    }

    #[test]
    fn times_as_jax_names_its_folders() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_962_864);
        assert_eq!(run_name(at), "2026_11_29_14_34_24");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH, '-', ' ', ':'),
            "1970-01-01 00:00:00"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(run_name(leap), "2000_02_29_00_00_00");
    }
}
