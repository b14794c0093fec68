//! A typed HTTP client for the endpoints of an sglang-jax server that a
//! profiling session uses.
//!
//! The profiler endpoints answer plain text (`Start profiling.`), not JSON,
//! and the client treats them so. Every non-2xx answer becomes
//! [`Error::Status`] with the body and, when the client knows the server's
//! log file, the tail of that log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, snippet};
use crate::logtail::log_tail;
use crate::profile::StartProfile;

/// How to reach a server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `http://127.0.0.1:30000`, without a trailing path.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set (`--api-key`).
    pub api_key: Option<String>,
    /// Limit for one request, answer included.
    pub request_timeout: Duration,
    /// The server's log file, quoted in errors when set.
    pub server_log: Option<PathBuf>,
}

/// Cheap to clone; clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
}

/// `GET /get_model_info`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub model_path: String,
    #[serde(default)]
    pub tokenizer_path: Option<String>,
    #[serde(default)]
    pub is_generation: Option<bool>,
}

/// `GET /profile_status`, on servers that have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileStatus {
    InProgress,
    Idle,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

/// The body of `POST /generate` (the fields sglprof sends).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenerateRequest {
    pub text: String,
    pub sampling_params: SamplingParams,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// The answer of a non-streamed `POST /generate`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct GenerateResponse {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub meta_info: GenerateMeta,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GenerateMeta {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub e2e_latency: Option<f64>,
}

/// What a streamed `POST /generate` delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamedGenerate {
    /// Number of `data:` events before `[DONE]`.
    pub events: usize,
    /// Time from sending the request to the first event.
    pub first_event_after: Option<Duration>,
    /// The last event, which carries the whole text and the final counts.
    pub last: Option<GenerateResponse>,
}

/// The body of `POST /v1/score`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScoreRequest {
    /// Required by the server even though it serves one model.
    pub model: String,
    pub query: String,
    pub items: Vec<String>,
    pub label_token_ids: Vec<u32>,
    pub apply_softmax: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ScoreResponse {
    /// One row per item, one score per label token, in request order.
    pub scores: Vec<Vec<f64>>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        // reqwest has no TLS provider of its own in this workspace; one
        // already installed stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|err| Error::Invalid(format!("cannot build an HTTP client: {err}")))?;
        let mut config = config;
        while config.base_url.ends_with('/') {
            config.base_url.pop();
        }
        Ok(Client { http, config })
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `GET /health`: 200 as soon as the HTTP server runs, which is before the
    /// model can serve. Use [`Client::health_generate`] for readiness.
    pub async fn health(&self) -> Result<(), Error> {
        self.call(Method::GET, "/health", None, None)
            .await
            .map(drop)
    }

    /// `GET /health_generate`: 200 once the server has generated a token.
    pub async fn health_generate(&self) -> Result<(), Error> {
        self.call(Method::GET, "/health_generate", None, None)
            .await
            .map(drop)
    }

    pub async fn model_info(&self) -> Result<ModelInfo, Error> {
        self.call_json(Method::GET, "/get_model_info", None).await
    }

    /// `GET /get_server_info`: every server argument plus runtime state and
    /// `version`. Kept as JSON because its fields change between versions.
    pub async fn server_info(&self) -> Result<serde_json::Value, Error> {
        self.call_json(Method::GET, "/get_server_info", None).await
    }

    /// `POST /start_profile`; returns the plain-text answer.
    pub async fn start_profile(&self, body: &StartProfile) -> Result<String, Error> {
        let body = to_json(body)?;
        self.call(Method::POST, "/start_profile", Some(body), None)
            .await
    }

    /// `POST /stop_profile`; returns the plain-text answer. The server answers
    /// only after the trace files are written. See
    /// [`crate::StartProfile::stop`] for the `num_steps` case.
    pub async fn stop_profile(&self) -> Result<String, Error> {
        self.call(Method::POST, "/stop_profile", None, None).await
    }

    /// `GET /profile_status`; `None` when the server has no such endpoint
    /// (sglang-jax 0.0.x answers 404).
    pub async fn profile_status(&self) -> Result<Option<ProfileStatus>, Error> {
        #[derive(Deserialize)]
        struct Answer {
            status: String,
        }
        match self
            .call_json::<Answer>(Method::GET, "/profile_status", None)
            .await
        {
            Ok(answer) => match answer.status.as_str() {
                "idle" => Ok(Some(ProfileStatus::Idle)),
                "in_progress" => Ok(Some(ProfileStatus::InProgress)),
                other => Err(Error::Decode {
                    method: "GET",
                    url: self.url("/profile_status"),
                    detail: "unknown status".to_owned(),
                    body: snippet(other),
                }),
            },
            Err(Error::Status { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `POST /generate` without streaming.
    pub async fn generate(&self, body: &GenerateRequest) -> Result<GenerateResponse, Error> {
        if body.stream {
            return Err(Error::Invalid(
                "use generate_stream for a streamed request".to_owned(),
            ));
        }
        self.call_json(Method::POST, "/generate", Some(to_json(body)?))
            .await
    }

    /// `POST /generate` with `"stream": true`: reads the server-sent events
    /// up to `data: [DONE]`.
    pub async fn generate_stream(&self, body: &GenerateRequest) -> Result<StreamedGenerate, Error> {
        let mut body = body.clone();
        body.stream = true;
        let url = self.url("/generate");
        let started = Instant::now();
        let mut response = self
            .send(Method::POST, "/generate", Some(to_json(&body)?), None)
            .await?;
        let mut res = StreamedGenerate {
            events: 0,
            first_event_after: None,
            last: None,
        };
        let mut pending = String::new();
        let mut done = false;
        while !done {
            let chunk = response
                .chunk()
                .await
                .map_err(|err| self.transport("POST", &url, err, None))?;
            let Some(chunk) = chunk else { break };
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                let Some(data) = event.trim().strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    done = true;
                    break;
                }
                res.events += 1;
                res.first_event_after
                    .get_or_insert_with(|| started.elapsed());
                let parsed = serde_json::from_str(data).map_err(|err| Error::Decode {
                    method: "POST",
                    url: url.clone(),
                    detail: format!("stream event is not JSON: {err}"),
                    body: snippet(data),
                })?;
                res.last = Some(parsed);
            }
        }
        if !done {
            return Err(Error::Transport {
                method: "POST",
                url,
                detail: "stream ended before data: [DONE]".to_owned(),
                log_tail: self.server_log_tail(),
            });
        }
        Ok(res)
    }

    /// `POST /v1/score`.
    pub async fn score(&self, body: &ScoreRequest) -> Result<ScoreResponse, Error> {
        self.call_json(Method::POST, "/v1/score", Some(to_json(body)?))
            .await
    }

    /// The URL of `path` on this server, parsed once for the many requests
    /// of a load (parsing it, host name rules included, was a tenth of a
    /// streamed request's CPU time).
    pub(crate) fn endpoint(&self, path: &str) -> Result<reqwest::Url, Error> {
        let url = self.url(path);
        reqwest::Url::parse(&url).map_err(|err| Error::Invalid(format!("bad URL {url}: {err}")))
    }

    /// `POST` of a ready JSON body to an [`endpoint`](Client::endpoint);
    /// the answer is the caller's to read (a load streams it). A non-2xx
    /// answer is an error.
    pub(crate) async fn post_bytes(
        &self,
        url: &reqwest::Url,
        body: bytes::Bytes,
    ) -> Result<reqwest::Response, Error> {
        let mut request = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.transport("POST", url.as_str(), err, None))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(Error::Status {
            method: "POST",
            url: url.to_string(),
            status: status.as_u16(),
            body: snippet(&body),
            log_tail: None,
        })
    }

    /// `POST /flush_cache`; plain-text answer. Sent on a connection of its
    /// own (`Connection: close`): sglang-jax 0.0.1.post1 answers it with a
    /// 500 from an exception (`FlushCacheReqInput` lacks its `request_id`),
    /// after which uvicorn closes the connection, and a pooled connection
    /// closed under the next call resets it.
    pub async fn flush_cache(&self) -> Result<String, Error> {
        let response = self
            .send_on(Method::POST, "/flush_cache", None, None, Pooled::No)
            .await?;
        response
            .text()
            .await
            .map_err(|err| self.transport("POST", &self.url("/flush_cache"), err, None))
    }

    /// Sends a request and returns the body of a 2xx answer as text.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<String, Error> {
        let method_name = method_name(&method);
        let url = self.url(path);
        let response = self.send(method, path, body, timeout).await?;
        response
            .text()
            .await
            .map_err(|err| self.transport(method_name, &url, err, timeout))
    }

    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let method_name = method_name(&method);
        let text = self.call(method, path, body, None).await?;
        serde_json::from_str(&text).map_err(|err| Error::Decode {
            method: method_name,
            url: self.url(path),
            detail: err.to_string(),
            body: snippet(&text),
        })
    }

    /// Sends a request; any non-2xx answer becomes [`Error::Status`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, Error> {
        self.send_on(method, path, body, timeout, Pooled::Yes).await
    }

    async fn send_on(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
        pooled: Pooled,
    ) -> Result<reqwest::Response, Error> {
        let method_name = method_name(&method);
        let url = self.url(path);
        let mut request = self.http.request(method, &url);
        if pooled == Pooled::No {
            request = request.header(reqwest::header::CONNECTION, "close");
        }
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.transport(method_name, &url, err, timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        // A 404 is an answer about the endpoint, not about the server's
        // health, so the log would only add noise.
        let log_tail = if status == StatusCode::NOT_FOUND {
            None
        } else {
            self.server_log_tail()
        };
        Err(Error::Status {
            method: method_name,
            url,
            status: status.as_u16(),
            body: snippet(&body),
            log_tail,
        })
    }

    fn transport(
        &self,
        method: &'static str,
        url: &str,
        err: reqwest::Error,
        timeout: Option<Duration>,
    ) -> Error {
        let log_tail = self.server_log_tail();
        if err.is_timeout() {
            let after = timeout.unwrap_or(self.config.request_timeout);
            return Error::Timeout {
                method,
                url: url.to_owned(),
                after,
                log_tail,
            };
        }
        Error::Transport {
            method,
            url: url.to_owned(),
            detail: error_chain(&err),
            log_tail,
        }
    }

    fn server_log_tail(&self) -> Option<String> {
        self.config
            .server_log
            .as_deref()
            .map(|path| log_tail(path, 20))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url)
    }
}

/// Whether a call's connection goes back to the pool afterwards.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pooled {
    Yes,
    No,
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        _ => "HTTP",
    }
}

fn to_json<T: Serialize>(body: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|err| Error::Invalid(err.to_string()))
}

/// reqwest's own message is "error sending request"; the cause (connection
/// refused, reset) is what a reader needs.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut res = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !res.contains(&text) {
            res.push_str(": ");
            res.push_str(&text);
        }
        source = cause.source();
    }
    res
}
