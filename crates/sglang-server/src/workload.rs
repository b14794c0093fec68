//! Timed request mixes and their latency statistics.
//!
//! A workload is a list of request bodies sent by `concurrency` workers. Each
//! request's latency is measured from send to complete answer. While the
//! requests run, the server's [`Liveness`] is polled, so a server that dies
//! mid-workload (sglang-jax 0.0.2 does on `/v1/score`) ends the workload at
//! once with [`Error::Died`] instead of a wait for timeouts.

use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{Client, GenerateRequest, SamplingParams, ScoreRequest};
use crate::error::Error;
use crate::supervisor::Liveness;

/// Latency statistics in milliseconds. Percentiles are nearest-rank: p is
/// the value at rank `ceil(p/100 * n)` (1-based) of the sorted sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

impl LatencyStats {
    pub fn from_samples(samples_ms: &[f64]) -> LatencyStats {
        let mut sorted: Vec<f64> = samples_ms
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if sorted.is_empty() {
            return LatencyStats::default();
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |p: f64| {
            let r = (p / 100.0 * n as f64).ceil() as usize;
            sorted[r.clamp(1, n) - 1]
        };
        LatencyStats {
            count: n as u64,
            mean: sorted.iter().sum::<f64>() / n as f64,
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            min: sorted[0],
            max: sorted[n - 1],
        }
    }
}

/// The measured outcome of a workload (or of one part of a mix).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadResult {
    /// `/generate` or `/v1/score`.
    pub endpoint: String,
    pub description: String,
    pub requests: u64,
    pub concurrency: u64,
    pub errors: u64,
    /// The first failure, for the log and the error message.
    pub first_error: Option<String>,
    pub wall: Duration,
    /// Latencies of the successful requests, in send order.
    pub latencies_ms: Vec<f64>,
    /// Generated tokens, when the endpoint reports them.
    pub output_tokens: Option<u64>,
    /// Per-kind results of a mix.
    pub parts: Vec<WorkloadResult>,
}

impl WorkloadResult {
    pub fn latency(&self) -> LatencyStats {
        LatencyStats::from_samples(&self.latencies_ms)
    }

    /// Successful requests per second of wall time.
    pub fn throughput_rps(&self) -> f64 {
        per_second(self.latencies_ms.len() as f64, self.wall)
    }

    pub fn output_tokens_per_s(&self) -> Option<f64> {
        self.output_tokens.map(|n| per_second(n as f64, self.wall))
    }
}

fn per_second(n: f64, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        n / wall.as_secs_f64()
    }
}

/// `count` requests of `POST /generate` with one prompt, greedy decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateWorkload {
    pub count: usize,
    pub concurrency: usize,
    pub prompt: String,
    pub max_new_tokens: u32,
    pub stream: bool,
}

impl GenerateWorkload {
    pub fn requests(&self) -> Vec<GenerateRequest> {
        let body = GenerateRequest {
            text: self.prompt.clone(),
            sampling_params: SamplingParams {
                max_new_tokens: self.max_new_tokens,
                temperature: Some(0.0),
            },
            stream: self.stream,
        };
        vec![body; self.count]
    }

    pub fn description(&self) -> String {
        let stream = if self.stream { ", streamed" } else { "" };
        format!(
            "{} x /generate, concurrency {}, max_new_tokens {}{stream}",
            self.count, self.concurrency, self.max_new_tokens
        )
    }
}

/// The RFC-010 score mix: single items, small batches of 4 and large batches
/// of 32 items, repeated `rounds` times.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreMix {
    /// The `model` field the server requires (its model path).
    pub model: String,
    /// Ids of the label words in the model's own tokenizer.
    pub label_token_ids: Vec<u32>,
    pub rounds: usize,
    pub concurrency: usize,
}

/// One kind of request of the score mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreKind {
    Single,
    SmallBatch,
    LargeBatch,
}

impl ScoreKind {
    pub const ALL: [ScoreKind; 3] = [
        ScoreKind::Single,
        ScoreKind::SmallBatch,
        ScoreKind::LargeBatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Single => "single item",
            ScoreKind::SmallBatch => "small batch (4 items)",
            ScoreKind::LargeBatch => "large batch (32 items)",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            ScoreKind::Single => "single",
            ScoreKind::SmallBatch => "small-batch",
            ScoreKind::LargeBatch => "large-batch",
        }
    }
}

impl ScoreMix {
    /// The request of one kind.
    pub fn request(&self, kind: ScoreKind) -> ScoreRequest {
        let (query, items): (&str, Vec<String>) = match kind {
            ScoreKind::Single => (
                "is this review positive ? great product",
                vec![" yes".to_owned()],
            ),
            ScoreKind::SmallBatch => (
                "which one is a fruit ?",
                [" apple", " car", " bus", " dog"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            ScoreKind::LargeBatch => (
                "pick the best item :",
                (0..32).map(|i| format!(" item {i}")).collect(),
            ),
        };
        ScoreRequest {
            model: self.model.clone(),
            query: query.to_owned(),
            items,
            label_token_ids: self.label_token_ids.clone(),
            apply_softmax: true,
        }
    }

    /// Every request in send order: the three kinds, interleaved, `rounds`
    /// times.
    pub fn requests(&self) -> Vec<(ScoreKind, ScoreRequest)> {
        let mut res = Vec::new();
        for _ in 0..self.rounds {
            for kind in ScoreKind::ALL {
                res.push((kind, self.request(kind)));
            }
        }
        res
    }

    pub fn description(&self) -> String {
        format!(
            "{} x RFC-010 score mix (single item, 4 items, 32 items) = {} x /v1/score, concurrency {}",
            self.rounds,
            self.rounds * 3,
            self.concurrency
        )
    }
}

/// Sends the generate workload.
pub async fn run_generate(
    client: &Client,
    workload: &GenerateWorkload,
    liveness: &dyn Liveness,
    progress: bool,
) -> Result<WorkloadResult, Error> {
    let requests = workload.requests();
    let client = client.clone();
    let outcomes = run_requests(
        requests.len(),
        workload.concurrency,
        "POST /generate",
        liveness,
        progress,
        {
            let requests = Arc::new(requests);
            move |idx| {
                let client = client.clone();
                let requests = requests.clone();
                Box::pin(async move {
                    let body = &requests[idx];
                    if body.stream {
                        let streamed = client.generate_stream(body).await?;
                        Ok(streamed
                            .last
                            .and_then(|last| last.meta_info.completion_tokens))
                    } else {
                        Ok(client.generate(body).await?.meta_info.completion_tokens)
                    }
                })
            }
        },
    )
    .await?;
    Ok(summarise(
        "/generate",
        workload.description(),
        workload.concurrency,
        &outcomes.results,
        outcomes.wall,
    ))
}

/// Sends the score mix; the result has one part per [`ScoreKind`].
pub async fn run_score_mix(
    client: &Client,
    mix: &ScoreMix,
    liveness: &dyn Liveness,
    progress: bool,
) -> Result<WorkloadResult, Error> {
    let requests = mix.requests();
    let kinds: Vec<ScoreKind> = requests.iter().map(|(kind, _)| *kind).collect();
    let client = client.clone();
    let outcomes = run_requests(
        requests.len(),
        mix.concurrency,
        "POST /v1/score",
        liveness,
        progress,
        {
            let requests = Arc::new(requests);
            move |idx| {
                let client = client.clone();
                let requests = requests.clone();
                Box::pin(async move {
                    client.score(&requests[idx].1).await?;
                    Ok(None)
                })
            }
        },
    )
    .await?;
    let mut res = summarise(
        "/v1/score",
        mix.description(),
        mix.concurrency,
        &outcomes.results,
        outcomes.wall,
    );
    for kind in ScoreKind::ALL {
        let part: Vec<Outcome> = outcomes
            .results
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| **k == kind)
            .map(|(r, _)| r.clone())
            .collect();
        let description = format!("{} x {}", part.len(), kind.name());
        res.parts.push(summarise(
            "/v1/score",
            description,
            mix.concurrency,
            &part,
            outcomes.wall,
        ));
    }
    Ok(res)
}

/// A request's latency and generated tokens, or its error text.
type Outcome = Result<(f64, Option<u64>), String>;
type RequestFuture = Pin<Box<dyn Future<Output = Result<Option<u64>, Error>> + Send>>;

struct Outcomes {
    results: Vec<Outcome>,
    wall: Duration,
}

fn summarise(
    endpoint: &str,
    description: String,
    concurrency: usize,
    results: &[Outcome],
    wall: Duration,
) -> WorkloadResult {
    let latencies_ms: Vec<f64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(ms, _)| *ms))
        .collect();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let tokens: Option<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, t)| *t))
        .sum();
    WorkloadResult {
        endpoint: endpoint.to_owned(),
        description,
        requests: results.len() as u64,
        concurrency: concurrency as u64,
        errors: errors.len() as u64,
        first_error: errors.first().map(|e| (*e).clone()),
        wall,
        latencies_ms,
        output_tokens: tokens,
        parts: Vec::new(),
    }
}

/// Runs `n` requests made by `make(idx)` on `concurrency` workers, watching
/// `liveness` every 200 ms.
async fn run_requests(
    n: usize,
    concurrency: usize,
    what: &str,
    liveness: &dyn Liveness,
    progress: bool,
    make: impl Fn(usize) -> RequestFuture + Send + Sync + 'static,
) -> Result<Outcomes, Error> {
    let bar = progress_bar(n as u64, progress, what);
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (make, next, bar) = (make.clone(), next.clone(), bar.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let idx = next.fetch_add(1, Ordering::SeqCst);
                if idx >= n {
                    break;
                }
                let sent = Instant::now();
                let outcome = make(idx).await;
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                bar.inc(1);
                match outcome {
                    Ok(tokens) => done.push((idx, Ok((ms, tokens)))),
                    // A vanished server fails everything after it; stop here
                    // and let the liveness check tell why.
                    Err(err) if err.is_server_gone() => {
                        done.push((idx, Err(err.to_string())));
                        return (done, Some(err));
                    }
                    Err(err) => done.push((idx, Err(err.to_string()))),
                }
            }
            (done, None)
        });
    }
    let mut results: Vec<Option<Outcome>> = vec![None; n];
    let mut gone: Option<Error> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !workers.is_empty() {
        tokio::select! {
            joined = workers.join_next() => {
                let Some(joined) = joined else { break };
                let (done, err) = joined.map_err(|e| Error::Invalid(format!("request worker failed: {e}")))?;
                for (idx, outcome) in done {
                    results[idx] = Some(outcome);
                }
                if gone.is_none() {
                    gone = err;
                }
                if gone.is_some() {
                    break;
                }
            }
            _ = tick.tick() => {
                if let Err(err) = liveness.check(&format!("during {what}")) {
                    workers.abort_all();
                    bar.abandon();
                    return Err(err);
                }
            }
        }
    }
    if let Some(err) = gone {
        workers.abort_all();
        bar.abandon();
        // The process may take a moment to be reaped after closing its
        // sockets; prefer its exit status over a bare connection error.
        for _ in 0..25 {
            liveness.check(&format!("during {what}"))?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return Err(err);
    }
    bar.finish_and_clear();
    let wall = started.elapsed();
    let results = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not sent".to_owned())))
        .collect();
    Ok(Outcomes { results, wall })
}

fn progress_bar(len: u64, wanted: bool, what: &str) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    bar
}

/// A workload of either endpoint, as a session runs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    Generate(GenerateWorkload),
    Score(ScoreMix),
}

impl Workload {
    pub fn concurrency(&self) -> usize {
        match self {
            Workload::Generate(g) => g.concurrency,
            Workload::Score(s) => s.concurrency,
        }
    }

    pub fn description(&self) -> String {
        match self {
            Workload::Generate(g) => g.description(),
            Workload::Score(s) => s.description(),
        }
    }

    /// The warmup to send, in order, before profiling starts, so that no
    /// request shape of this workload is compiled inside the profile:
    ///
    /// 1. every distinct request shape alone (concurrency 1): for the
    ///    score mix a single item, a batch of 4 and a batch of 32; for
    ///    `/generate` its one prompt and `max_new_tokens`;
    /// 2. the workload's own mix at its concurrency, at least `requests`
    ///    requests and at least `concurrency` of each shape, so the batch
    ///    sizes that concurrent requests form are compiled too.
    ///
    /// With `requests == 0` there is no warmup.
    pub fn warmup(&self, requests: usize) -> Vec<Workload> {
        if requests == 0 {
            return Vec::new();
        }
        match self {
            Workload::Generate(g) => vec![
                Workload::Generate(GenerateWorkload {
                    count: 1,
                    concurrency: 1,
                    ..g.clone()
                }),
                Workload::Generate(GenerateWorkload {
                    count: requests.max(g.concurrency),
                    ..g.clone()
                }),
            ],
            Workload::Score(mix) => {
                let kinds = ScoreKind::ALL.len();
                vec![
                    Workload::Score(ScoreMix {
                        rounds: 1,
                        concurrency: 1,
                        ..mix.clone()
                    }),
                    Workload::Score(ScoreMix {
                        rounds: requests.div_ceil(kinds).max(mix.concurrency).max(1),
                        ..mix.clone()
                    }),
                ]
            }
        }
    }

    /// Sends the workload.
    pub async fn run(
        &self,
        client: &Client,
        liveness: &dyn Liveness,
        progress: bool,
    ) -> Result<WorkloadResult, Error> {
        match self {
            Workload::Generate(g) => run_generate(client, g, liveness, progress).await,
            Workload::Score(s) => run_score_mix(client, s, liveness, progress).await,
        }
    }

    /// The request bodies in send order, as JSON (for the run folder).
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        match self {
            Workload::Generate(g) => g
                .requests()
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect(),
            Workload::Score(s) => s
                .requests()
                .iter()
                .map(|(_, r)| serde_json::to_value(r).unwrap_or_default())
                .collect(),
        }
    }
}
