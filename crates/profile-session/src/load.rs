//! The serving load of a session: its settings ([`LoadSpec`], plain data
//! that a [`crate::Plan`] holds and renders back into flags), and the load
//! made from them ([`prepare`]): the dataset rows read or drawn with the
//! model's own tokenizer, the request bodies, and when each is due.
//!
//! Everything a load needs is checked here before any server starts: the
//! dataset file is read and parsed, every prompt is counted, and a bad
//! rate, seed or length is refused in one line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serving_workload::arrivals::{Arrivals, due_times};
use serving_workload::dataset::{self, DatasetRow, Prompt, Tokenizer};
use serving_workload::pyrand::{NumpyRandom, PyRandom};
use sglang_server::LoadRequest;
use sglang_server::workload::{ScoreKind, ScoreMix};

/// Where the rows of a load come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum DatasetSpec {
    /// `bench_serving`'s `random-ids`: token ids from the vocabulary.
    Random,
    /// Groups of prompts sharing a long system prompt.
    SharedPrefix,
    /// A ShareGPT JSON file.
    Sharegpt(PathBuf),
    /// One `{"prompt" | "input_ids", "output_len"}` per line.
    Jsonl(PathBuf),
    /// One prompt (`--prompt`), the same for every request.
    Fixed,
}

impl DatasetSpec {
    /// The value of `--dataset`.
    pub fn to_arg(&self) -> String {
        match self {
            DatasetSpec::Random => "random".to_owned(),
            DatasetSpec::SharedPrefix => "shared-prefix".to_owned(),
            DatasetSpec::Sharegpt(path) => format!("sharegpt:{}", path.display()),
            DatasetSpec::Jsonl(path) => format!("jsonl:{}", path.display()),
            DatasetSpec::Fixed => "fixed".to_owned(),
        }
    }

    /// Parses a value of `--dataset`.
    pub fn parse(text: &str) -> Result<DatasetSpec, String> {
        let file = |rest: &str, kind: &str| {
            if rest.is_empty() {
                Err(format!("--dataset {kind}:FILE needs a file"))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match text {
            "random" => Ok(DatasetSpec::Random),
            "shared-prefix" => Ok(DatasetSpec::SharedPrefix),
            "fixed" => Ok(DatasetSpec::Fixed),
            _ => {
                if let Some(rest) = text.strip_prefix("sharegpt:") {
                    file(rest, "sharegpt").map(DatasetSpec::Sharegpt)
                } else if let Some(rest) = text.strip_prefix("jsonl:") {
                    file(rest, "jsonl").map(DatasetSpec::Jsonl)
                } else {
                    Err(format!(
                        "unknown dataset {text:?}: expected random, shared-prefix, sharegpt:FILE, jsonl:FILE or fixed"
                    ))
                }
            }
        }
    }

    fn file(&self) -> Option<&Path> {
        match self {
            DatasetSpec::Sharegpt(path) | DatasetSpec::Jsonl(path) => Some(path),
            _ => None,
        }
    }
}

/// Service-level objectives, from `--slo ttft=MS,tpot=MS,e2e=MS`.
pub use session_report::Slo;

/// Parses a request rate: requests per second above 0, or `inf` (`None`:
/// every request due at once).
pub fn parse_rate(text: &str) -> Result<Option<f64>, String> {
    if text.eq_ignore_ascii_case("inf") {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Some(rate)),
        Ok(_) => Err("the rate must be above 0 (or inf)".to_owned()),
        Err(_) => Err("expected requests per second or inf".to_owned()),
    }
}

/// Parses `ttft=MS,tpot=MS,e2e=MS` (any of the three, at least one).
pub fn parse_slo(text: &str) -> Result<Slo, String> {
    let mut slo = Slo::default();
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("--slo part {part:?} is not KEY=MS"))?;
        let ms: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("--slo {key}: {value:?} is not a positive number of ms"))?;
        let slot = match key.trim() {
            "ttft" => &mut slo.ttft_ms,
            "tpot" => &mut slo.tpot_ms,
            "e2e" => &mut slo.e2e_ms,
            other => return Err(format!("--slo key {other:?}: expected ttft, tpot or e2e")),
        };
        *slot = Some(ms);
    }
    Ok(slo)
}

fn slo_arg(slo: &Slo) -> String {
    let mut parts = Vec::new();
    for (key, value) in [
        ("ttft", slo.ttft_ms),
        ("tpot", slo.tpot_ms),
        ("e2e", slo.e2e_ms),
    ] {
        if let Some(ms) = value {
            parts.push(format!("{key}={ms}"));
        }
    }
    parts.join(",")
}

/// Every setting of a serving load beyond the endpoint, prompt, stream and
/// request count the plan already has. Plain data: printed by a dry run,
/// carried by every host, rendered back into flags by [`LoadSpec::to_args`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub dataset: DatasetSpec,
    /// Requests of the measured phase; `None` takes the plan's `requests`.
    #[serde(default)]
    pub num_prompts: Option<usize>,
    pub seed: u64,
    /// `random`: the longest prompt; `shared-prefix`: each question.
    pub input_len: u32,
    /// Tokens to generate; `None` takes `--max-new-tokens` (`sharegpt`:
    /// the second turn's length).
    #[serde(default)]
    pub output_len: Option<u32>,
    /// `random`: lengths are drawn from `[L * r, L]`.
    pub range_ratio: f64,
    /// `shared-prefix`: the number of system prompts.
    pub prefix_groups: usize,
    /// `shared-prefix`: tokens of each system prompt.
    pub prefix_len: u32,
    /// Requests per second; `None` is `inf`.
    #[serde(default)]
    pub request_rate: Option<f64>,
    pub burstiness: f64,
    /// Requests in flight at most; `None` takes the plan's `concurrency`
    /// for the closed loop (`request_rate` `inf`) and means no cap with a
    /// finite rate.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    pub percentiles: Vec<f64>,
    #[serde(default)]
    pub slo: Option<Slo>,
    /// Also write the measured phase's rows here, in ShareGPT's layout.
    #[serde(default)]
    pub save_dataset: Option<PathBuf>,
    /// The tokenizer (a `tokenizer.json` or a folder holding one); the
    /// model's folder by default.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Run without the JAX profiler.
    #[serde(default)]
    pub no_trace: bool,
}

impl Default for LoadSpec {
    fn default() -> LoadSpec {
        LoadSpec {
            dataset: DatasetSpec::Fixed,
            num_prompts: None,
            seed: 1,
            input_len: 128,
            output_len: None,
            range_ratio: 1.0,
            prefix_groups: 4,
            prefix_len: 256,
            request_rate: None,
            burstiness: 1.0,
            max_concurrency: None,
            percentiles: vec![90.0, 99.0],
            slo: None,
            save_dataset: None,
            tokenizer: None,
            no_trace: false,
        }
    }
}

/// Why a load cannot be made. One line each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read the dataset {}", .path.display())]
    ReadDataset {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dataset {}", .path.display())]
    Dataset {
        path: PathBuf,
        source: dataset::DatasetError,
    },
    #[error("the {kind} dataset")]
    Generated {
        kind: &'static str,
        source: dataset::DatasetError,
    },
    #[error("cannot read the tokenizer {}: {detail}", .path.display())]
    Tokenizer { path: PathBuf, detail: String },
    #[error(
        "request {row} of the dataset needs {needed} tokens (prompt {prompt} + output {output}), more than the server's context of {context}"
    )]
    TooLong {
        row: usize,
        prompt: u32,
        output: u32,
        needed: u64,
        context: u64,
    },
}

impl LoadSpec {
    /// Refuses, in one line, settings that cannot make a load: a rate of 0
    /// or below, a burstiness of 0 or below, a range ratio outside
    /// `[0, 1]`, a seed NumPy cannot take, a percentile outside `(0, 100)`,
    /// a dataset file that cannot be read or whose JSON (each line of a
    /// `jsonl` file) does not have the dataset's layout.
    pub fn check(&self) -> Result<(), LoadError> {
        let bad = |text: String| Err(LoadError::Invalid(text));
        if let Some(rate) = self.request_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad(format!(
                "--request-rate {rate}: the rate must be above 0 (or inf)"
            ));
        }
        if !(self.burstiness.is_finite() && self.burstiness > 0.0) {
            return bad(format!(
                "--burstiness {}: it must be above 0",
                self.burstiness
            ));
        }
        if !(0.0..=1.0).contains(&self.range_ratio) {
            return bad(format!(
                "--range-ratio {}: it must be between 0 and 1",
                self.range_ratio
            ));
        }
        if self.seed > u32::MAX as u64 {
            return bad(format!(
                "--seed {}: seeds go up to {} (NumPy's limit, which bench_serving shares)",
                self.seed,
                u32::MAX
            ));
        }
        if self.max_concurrency == Some(0) {
            return bad("--max-concurrency 0: at least one request must be in flight".to_owned());
        }
        if self.num_prompts == Some(0) {
            return bad("--num-prompts 0: the measured phase needs a request".to_owned());
        }
        if self.input_len == 0 {
            return bad("--input-len 0: prompts need a token".to_owned());
        }
        if let Some(p) = self
            .percentiles
            .iter()
            .find(|p| !(**p > 0.0 && **p < 100.0))
        {
            return bad(format!(
                "--percentiles {p}: percentiles lie strictly between 0 and 100"
            ));
        }
        if let Some(path) = self.dataset.file() {
            // The whole file is read and its layout checked here, before
            // a run folder or a server exists; tokens are counted later.
            let text = std::fs::read_to_string(path).map_err(|source| LoadError::ReadDataset {
                path: path.to_path_buf(),
                source,
            })?;
            let layout = match &self.dataset {
                DatasetSpec::Sharegpt(_) => dataset::check_sharegpt(&text),
                _ => dataset::check_jsonl(&text),
            };
            layout.map_err(|source| LoadError::Dataset {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    /// The requests of the measured phase.
    pub fn requests(&self, plan_requests: usize) -> usize {
        self.num_prompts.unwrap_or(plan_requests).max(1)
    }

    /// The concurrency cap: `--max-concurrency`, else the plan's
    /// concurrency for the closed loop, else none.
    pub fn cap(&self, plan_concurrency: usize) -> Option<usize> {
        match (self.max_concurrency, self.request_rate) {
            (Some(cap), _) => Some(cap),
            (None, None) => Some(plan_concurrency.max(1)),
            (None, Some(_)) => None,
        }
    }

    /// The flags that make this spec, defaults left out, in a fixed order:
    /// `LoadFlags` in the xtask parses them back into the same spec.
    pub fn to_args(&self) -> Vec<String> {
        let defaults = LoadSpec::default();
        let mut res: Vec<String> = Vec::new();
        let mut flag = |name: &str, value: String| {
            res.push(name.to_owned());
            res.push(value);
        };
        if self.dataset != defaults.dataset {
            flag("--dataset", self.dataset.to_arg());
        }
        if let Some(n) = self.num_prompts {
            flag("--num-prompts", n.to_string());
        }
        if self.seed != defaults.seed {
            flag("--seed", self.seed.to_string());
        }
        if self.input_len != defaults.input_len {
            flag("--input-len", self.input_len.to_string());
        }
        if let Some(n) = self.output_len {
            flag("--output-len", n.to_string());
        }
        if self.range_ratio != defaults.range_ratio {
            flag("--range-ratio", self.range_ratio.to_string());
        }
        if self.prefix_groups != defaults.prefix_groups {
            flag("--prefix-groups", self.prefix_groups.to_string());
        }
        if self.prefix_len != defaults.prefix_len {
            flag("--prefix-len", self.prefix_len.to_string());
        }
        if let Some(rate) = self.request_rate {
            flag("--request-rate", rate.to_string());
        }
        if self.burstiness != defaults.burstiness {
            flag("--burstiness", self.burstiness.to_string());
        }
        if let Some(n) = self.max_concurrency {
            flag("--max-concurrency", n.to_string());
        }
        if self.percentiles != defaults.percentiles {
            flag(
                "--percentiles",
                self.percentiles
                    .iter()
                    .map(f64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        if let Some(slo) = &self.slo {
            flag("--slo", slo_arg(slo));
        }
        if let Some(path) = &self.save_dataset {
            flag("--save-dataset", path.display().to_string());
        }
        if let Some(path) = &self.tokenizer {
            flag("--tokenizer", path.display().to_string());
        }
        if self.no_trace {
            res.push("--no-trace".to_owned());
        }
        res
    }

    /// The dataset in words, for the report.
    pub fn describe(&self, output_len: u32) -> String {
        match &self.dataset {
            DatasetSpec::Random => format!(
                "random (input {}, output {}, range ratio {})",
                self.input_len, output_len, self.range_ratio
            ),
            DatasetSpec::SharedPrefix => format!(
                "shared-prefix ({} groups, prefix {} tokens, question {}, output {})",
                self.prefix_groups, self.prefix_len, self.input_len, output_len
            ),
            DatasetSpec::Sharegpt(path) => format!("sharegpt:{}", file_name(path)),
            DatasetSpec::Jsonl(path) => format!("jsonl:{}", file_name(path)),
            DatasetSpec::Fixed => format!("fixed (one prompt, output {output_len})"),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A Hugging Face `tokenizer.json`, read with the `tokenizers` crate.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
}

impl HfTokenizer {
    /// Reads `path`, a `tokenizer.json` or a folder holding one.
    pub fn open(path: &Path) -> Result<HfTokenizer, LoadError> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|err| LoadError::Tokenizer {
            path: file.clone(),
            detail: err.to_string(),
        })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|err| LoadError::Tokenizer {
                path: file.clone(),
                detail: err.to_string(),
            })?;
        Ok(HfTokenizer { inner })
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.inner
            .encode_fast(text, true)
            .map(|it| it.get_ids().to_vec())
            .map_err(|err| err.to_string())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.inner.decode(ids, false).map_err(|err| err.to_string())
    }

    fn vocab_size(&self) -> u32 {
        self.inner.get_vocab_size(false) as u32
    }
}

/// What the measured phase sends, with everything the records need.
/// Cloning it shares the requests, rows and dataset.
#[derive(Clone, Debug)]
pub struct Load {
    /// `/generate` or `/v1/score`.
    pub endpoint: &'static str,
    pub stream: bool,
    pub requests: Arc<LoadRequests>,
    /// Per request: the dataset row it sends, its mix part, its prompt's
    /// length as the dataset counts it and the tokens it asks for.
    pub rows: Arc<Vec<RowInfo>>,
    /// The dataset (`/generate`), for `inputs/dataset.jsonl`.
    pub dataset: Dataset,
    pub cap: Option<usize>,
    /// The dataset in words.
    pub description: String,
}

/// The rows of a load's dataset: held, or for `random` made again from
/// their draws each time one is asked for, so that a long load does not
/// hold every prompt's text (about 340 bytes a row for 128-token prompts).
/// Cloning it shares the rows.
#[derive(Clone)]
pub struct Dataset {
    rows: Rows,
}

#[derive(Clone)]
enum Rows {
    Held(Arc<Vec<DatasetRow>>),
    Drawn {
        draws: Arc<dataset::RandomDraws>,
        tokenizer: Arc<dyn Tokenizer + Send + Sync>,
    },
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.rows {
            Rows::Held(_) => "held",
            Rows::Drawn { .. } => "drawn",
        };
        write!(f, "Dataset({} rows, {how})", self.len())
    }
}

impl Default for Dataset {
    fn default() -> Dataset {
        Dataset::held(Vec::new())
    }
}

impl Dataset {
    /// A dataset of these rows.
    pub fn held(rows: Vec<DatasetRow>) -> Dataset {
        Dataset {
            rows: Rows::Held(Arc::new(rows)),
        }
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        match &self.rows {
            Rows::Held(rows) => rows.len(),
            Rows::Drawn { draws, .. } => draws.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `idx`, made from its draws when they are all that is held.
    pub fn row(&self, idx: usize) -> Result<std::borrow::Cow<'_, DatasetRow>, LoadError> {
        match &self.rows {
            Rows::Held(rows) => Ok(std::borrow::Cow::Borrowed(&rows[idx])),
            Rows::Drawn { draws, tokenizer } => draws
                .row(idx, tokenizer.as_ref())
                .map(std::borrow::Cow::Owned)
                .map_err(|source| LoadError::Generated {
                    kind: "random",
                    source,
                }),
        }
    }

    /// The prompt's length as the dataset counts it, and the output's, of
    /// row `idx`.
    pub fn lengths(&self, idx: usize) -> (u32, u32) {
        match &self.rows {
            Rows::Held(rows) => (rows[idx].input_len, rows[idx].output_len),
            Rows::Drawn { draws, .. } => draws.lengths(idx),
        }
    }

    /// Every row in order.
    pub fn rows(
        &self,
    ) -> impl Iterator<Item = Result<std::borrow::Cow<'_, DatasetRow>, LoadError>> + '_ {
        (0..self.len()).map(|idx| self.row(idx))
    }
}

/// The measured phase's requests: when each is due, and its body, either
/// held (the score mix, a few requests a round) or made from its dataset
/// row each time it is asked for ([`generate_body`]). A session writes the
/// bodies once, to `inputs/bodies.jsonl`, and sends them from there.
#[derive(Debug)]
pub struct LoadRequests {
    path: &'static str,
    stream: bool,
    due: Vec<Duration>,
    bodies: Bodies,
}

/// Where the bodies of a [`LoadRequests`] come from.
#[derive(Debug)]
enum Bodies {
    Held(Vec<Vec<u8>>),
    Rows(Dataset),
}

impl LoadRequests {
    /// How many requests there are.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// The endpoint every request goes to.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// Whether the answers are streamed.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// When request `idx` is due, from the start of the load.
    pub fn due(&self, idx: usize) -> Duration {
        self.due[idx]
    }

    /// The body of request `idx`, made afresh for a dataset row.
    pub fn body(&self, idx: usize) -> Result<Vec<u8>, LoadError> {
        self.body_with_row(idx).map(|(body, _)| body)
    }

    /// The body of request `idx`, and the dataset row it is made from when
    /// there is one.
    pub fn body_with_row(
        &self,
        idx: usize,
    ) -> Result<(Vec<u8>, Option<std::borrow::Cow<'_, DatasetRow>>), LoadError> {
        match &self.bodies {
            Bodies::Held(bodies) => Ok((bodies[idx].clone(), None)),
            Bodies::Rows(rows) => {
                let row = rows.row(idx)?;
                Ok((generate_body(&row, self.stream), Some(row)))
            }
        }
    }

    /// Request `idx`, its body made.
    pub fn get(&self, idx: usize) -> Result<LoadRequest, LoadError> {
        Ok(LoadRequest {
            path: self.path,
            body: self.body(idx)?.into(),
            stream: self.stream,
            due: self.due[idx],
        })
    }
}

/// The measured phase's requests with each body read back, as it is
/// dispatched, from the file it was written to (`inputs/bodies.jsonl`):
/// made once from its row, sent as written, and never all held.
pub struct BodiesFile {
    requests: Arc<LoadRequests>,
    file: std::fs::File,
    /// Where each body's line ends, its newline included.
    ends: Vec<u64>,
}

impl BodiesFile {
    /// `file` holds one body per line, the lines ending at `ends`.
    pub fn new(requests: Arc<LoadRequests>, file: std::fs::File, ends: Vec<u64>) -> BodiesFile {
        BodiesFile {
            requests,
            file,
            ends,
        }
    }
}

impl sglang_server::Requests for BodiesFile {
    fn len(&self) -> usize {
        self.requests.len()
    }

    fn path(&self, _idx: usize) -> &'static str {
        self.requests.path()
    }

    fn due(&self, idx: usize) -> Duration {
        self.requests.due(idx)
    }

    fn request(&self, idx: usize) -> LoadRequest {
        use std::os::unix::fs::FileExt;
        let start = idx.checked_sub(1).map_or(0, |before| self.ends[before]);
        let mut body = vec![0; (self.ends[idx] - start).saturating_sub(1) as usize];
        // The file is open and was just written: a read fails only when the
        // disk does, and the request then goes without a body, which the
        // server refuses and its record shows.
        if self.file.read_exact_at(&mut body, start).is_err() {
            body.clear();
        }
        LoadRequest {
            path: self.requests.path(),
            body: body.into(),
            stream: self.requests.stream(),
            due: self.requests.due(idx),
        }
    }
}

/// What a record needs to know about its request.
#[derive(Clone, Debug, PartialEq)]
pub struct RowInfo {
    pub row: u64,
    pub kind: Option<&'static str>,
    pub input_len: Option<u32>,
    pub output_len: u32,
}

/// What the caller knows about the session besides the spec.
pub struct LoadContext<'a> {
    pub endpoint: crate::Endpoint,
    /// The plan's request count (`--requests`) and concurrency.
    pub plan_requests: usize,
    pub plan_concurrency: usize,
    pub prompt: &'a str,
    pub max_new_tokens: u32,
    pub stream: bool,
    /// The model as the server names it (the score mix sends it).
    pub model: &'a str,
    pub label_token_ids: Vec<u32>,
    /// The tokenizer, when one could be read.
    pub tokenizer: Option<Arc<dyn Tokenizer + Send + Sync>>,
}

/// Makes the measured phase's load: reads or draws the dataset, renders
/// the bodies, draws when each is due. The same spec and tokenizer always
/// give the same bodies and due times.
pub fn prepare(spec: &LoadSpec, ctx: &LoadContext<'_>) -> Result<Load, LoadError> {
    let n = spec.requests(ctx.plan_requests);
    let mut numpy = NumpyRandom::new(spec.seed as u32);
    let mut python = PyRandom::new(spec.seed);
    let arrivals = Arrivals {
        rate: spec.request_rate,
        burstiness: spec.burstiness,
    };
    let cap = spec.cap(ctx.plan_concurrency);
    let output_len = spec.output_len.unwrap_or(ctx.max_new_tokens);
    if ctx.endpoint == crate::Endpoint::Score {
        let mix = ScoreMix {
            model: ctx.model.to_owned(),
            label_token_ids: ctx.label_token_ids.clone(),
            rounds: n.div_ceil(ScoreKind::ALL.len()),
            concurrency: cap.unwrap_or(0),
        };
        let requests = mix.requests();
        let due = due_times(requests.len(), &arrivals, &mut numpy);
        let mut bodies = Vec::with_capacity(requests.len());
        let mut rows = Vec::with_capacity(requests.len());
        for (idx, (kind, body)) in requests.iter().enumerate() {
            bodies.push(serde_json::to_vec(body).expect("plain data serialises"));
            rows.push(RowInfo {
                row: idx as u64,
                kind: Some(kind.slug()),
                input_len: None,
                output_len: 0,
            });
        }
        return Ok(Load {
            endpoint: "/v1/score",
            stream: false,
            requests: Arc::new(LoadRequests {
                path: "/v1/score",
                stream: false,
                due: due.into_iter().map(Duration::from_secs_f64).collect(),
                bodies: Bodies::Held(bodies),
            }),
            rows: Arc::new(rows),
            dataset: Dataset::default(),
            cap,
            description: "RFC-010 score mix (single item, 4 items, 32 items)".to_owned(),
        });
    }
    let need = |kind: &'static str| {
        ctx.tokenizer.as_ref().ok_or_else(|| {
            LoadError::Invalid(format!(
                "--dataset {kind} needs the model's tokenizer: give --tokenizer PATH (a tokenizer.json or its folder)"
            ))
        })
    };
    let generated = |kind: &'static str| move |source| LoadError::Generated { kind, source };
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| LoadError::ReadDataset {
            path: path.to_path_buf(),
            source,
        })
    };
    let from_file = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Dataset { path, source }
    };
    let held = |rows: Vec<DatasetRow>| Dataset::held(rows);
    let dataset: Dataset = match &spec.dataset {
        DatasetSpec::Random => {
            let tokenizer = need("random")?;
            let draws = dataset::RandomDraws::draw(
                tokenizer.as_ref(),
                &dataset::RandomParams {
                    num_prompts: n,
                    input_len: spec.input_len,
                    output_len,
                    range_ratio: spec.range_ratio,
                },
                &mut numpy,
            )
            .map_err(generated("random"))?;
            Dataset {
                rows: Rows::Drawn {
                    draws: Arc::new(draws),
                    tokenizer: tokenizer.clone(),
                },
            }
        }
        DatasetSpec::SharedPrefix => held(
            dataset::shared_prefix(
                need("shared-prefix")?.as_ref(),
                &dataset::SharedPrefixParams {
                    num_prompts: n,
                    groups: spec.prefix_groups,
                    prefix_len: spec.prefix_len,
                    question_len: spec.input_len,
                    output_len,
                },
                &mut python,
            )
            .map_err(generated("shared-prefix"))?,
        ),
        DatasetSpec::Sharegpt(path) => held(
            dataset::sharegpt(
                &read(path)?,
                need("sharegpt")?.as_ref(),
                n,
                spec.output_len,
                &mut python,
            )
            .map_err(from_file(path))?,
        ),
        DatasetSpec::Jsonl(path) => held(
            dataset::jsonl(&read(path)?, need("jsonl")?.as_ref(), Some(n))
                .map_err(from_file(path))?,
        ),
        DatasetSpec::Fixed => held(
            dataset::fixed(
                ctx.tokenizer.as_deref().map(|t| t as &dyn Tokenizer),
                ctx.prompt,
                n,
                output_len,
            )
            .map_err(generated("fixed"))?,
        ),
    };
    let due = due_times(dataset.len(), &arrivals, &mut numpy);
    let rows = (0..dataset.len())
        .map(|idx| {
            let (input_len, output_len) = dataset.lengths(idx);
            RowInfo {
                row: idx as u64,
                kind: None,
                input_len: (input_len > 0).then_some(input_len),
                output_len,
            }
        })
        .collect();
    Ok(Load {
        endpoint: "/generate",
        stream: ctx.stream,
        requests: Arc::new(LoadRequests {
            path: "/generate",
            stream: ctx.stream,
            due: due.into_iter().map(Duration::from_secs_f64).collect(),
            bodies: Bodies::Rows(dataset.clone()),
        }),
        rows: Arc::new(rows),
        dataset,
        cap,
        description: spec.describe(output_len),
    })
}

/// The `/generate` body of a row: greedy, `ignore_eos` so the output runs
/// to its length (as `bench_serving` sends it), the prompt as `text` or
/// `input_ids`.
pub fn generate_body(row: &DatasetRow, stream: bool) -> Vec<u8> {
    // Borrowed, and its fields in the order of their names, as a
    // `serde_json::Map` writes them: a body is made as its request is
    // dispatched, so it costs the sender no copy of the prompt.
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        input_ids: Option<&'a [u32]>,
        sampling_params: Sampling,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        stream: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Sampling {
        ignore_eos: bool,
        max_new_tokens: u32,
        temperature: f64,
    }
    let (text, input_ids) = match &row.prompt {
        Prompt::Text(text) => (Some(text.as_str()), None),
        Prompt::Ids(ids) => (None, Some(ids.as_slice())),
    };
    let body = Body {
        input_ids,
        sampling_params: Sampling {
            ignore_eos: true,
            max_new_tokens: row.output_len,
            temperature: 0.0,
        },
        stream,
        text,
    };
    serde_json::to_vec(&body).expect("plain data serialises")
}

/// Refuses, in one line, the first row whose prompt and output do not fit
/// in `context` tokens (the prompt counted by the server's tokenizer, which
/// is the dataset's own count for every dataset but `random`, whose text
/// is counted again here when a tokenizer is given).
pub fn check_context(
    load: &Load,
    context: u64,
    tokenizer: Option<&dyn Tokenizer>,
) -> Result<(), LoadError> {
    for idx in 0..load.dataset.len() {
        let (input_len, output_len) = load.dataset.lengths(idx);
        let prompt = match tokenizer {
            Some(tok) => match &load.dataset.row(idx)?.prompt {
                Prompt::Text(text) => tok.encode(text).map_or(input_len, |ids| ids.len() as u32),
                Prompt::Ids(_) => input_len,
            },
            None => input_len,
        };
        let needed = prompt as u64 + output_len as u64;
        if needed > context {
            return Err(LoadError::TooLong {
                row: idx,
                prompt,
                output: output_len,
                needed,
                context,
            });
        }
    }
    Ok(())
}

/// The prompt length of the warmup's bursts on `/generate`: short enough
/// that the largest burst (64 requests) fits in one prefill of 512 tokens.
pub const BURST_PROMPT_TOKENS: u32 = 8;

/// Burst request `i` of the warmup: [`BURST_PROMPT_TOKENS`] ids of the
/// vocabulary (100 to 355, a different sequence per request, so the prefix
/// cache shares at most their first token), asking for `output_len` tokens.
fn short_prompt(i: u32, output_len: u32, stream: bool) -> LoadRequest {
    let ids: Vec<u32> = (0..BURST_PROMPT_TOKENS)
        .map(|j| 100 + ((i * 37 + j * 11 + i * j) % 256))
        .collect();
    let row = DatasetRow {
        input_len: ids.len() as u32,
        prompt: Prompt::Ids(ids),
        output_len,
    };
    LoadRequest {
        path: "/generate",
        body: generate_body(&row, stream).into(),
        stream,
        due: Duration::ZERO,
    }
}

/// One phase of the warmup.
#[derive(Clone, Debug)]
pub struct WarmupPhase {
    /// What it is for, in words.
    pub what: String,
    pub requests: Arc<Vec<LoadRequest>>,
    pub cap: Option<usize>,
}

/// The warmup before the measured phase, so that the server compiles
/// every shape the measured phase will meet before the profiler starts
/// (see `docs/metrics.md`, "Warmup"). Its prompts have the lengths the
/// server will count for the measured prompts but other tokens (ids of
/// the vocabulary, sent as `input_ids`), so no measured prompt is cached
/// by it; without a tokenizer (or for `fixed` and the score mix) the
/// measured requests themselves are sent. Three phases, each after the
/// one before has ended:
///
/// 1. one prompt per length class alone (the longest of each power-of-two
///    class of lengths), for the prefill paddings a lone request meets;
/// 2. twice, bursts of `k` requests at once for `k` from 1 to the
///    concurrency cap (8 without one), for every batch size of prefill
///    and decode: on `/generate` the burst's prompts are
///    [`BURST_PROMPT_TOKENS`] long, so that a whole burst fits in one
///    prefill batch and the server meets each size as one batch;
/// 3. `mix` requests with the measured phase's own arrivals and cap.
///
/// The server compiles per batch size and padding bucket, never per exact
/// prompt length, only with the CPU shim's `SGLJAX_HOST_TABLES` (sglang-jax
/// 0.0.1.post1 edits its slot tables with eager JAX operations shaped by
/// the exact token counts; `python/cpu_shim/sitecustomize.py` says how the
/// switch changes that). `mix == 0` means no warmup at all.
pub fn warmup(
    load: &Load,
    spec: &LoadSpec,
    mix: usize,
    tokenizer: Option<&dyn Tokenizer>,
) -> Result<Vec<WarmupPhase>, LoadError> {
    if mix == 0 || load.requests.is_empty() {
        return Ok(Vec::new());
    }
    let n = load.requests.len();
    // Warmup prompts of their own, with the lengths the server will count.
    let own = match (tokenizer, &spec.dataset, load.endpoint) {
        (Some(tok), dataset, "/generate") if *dataset != DatasetSpec::Fixed => Some(tok),
        _ => None,
    };
    // The prompt length of each measured request.
    let lens: Vec<u32> = match own {
        Some(tok) => load
            .dataset
            .rows()
            .map(|row| {
                let row = row?;
                Ok(match &row.prompt {
                    Prompt::Text(text) => tok
                        .encode(text)
                        .map_or(row.input_len, |ids| ids.len() as u32),
                    Prompt::Ids(ids) => ids.len() as u32,
                })
            })
            .collect::<Result<_, LoadError>>()?,
        None => load.rows.iter().map(|r| r.input_len.unwrap_or(0)).collect(),
    };
    // The warmup version of measured request `i`, sent at `due`.
    let substitute = |i: usize, due: Duration| -> Result<LoadRequest, LoadError> {
        let Some(tok) = own else {
            return Ok(LoadRequest {
                due,
                ..load.requests.get(i)?
            });
        };
        let (vocab, len) = (tok.vocab_size().max(1), lens[i]);
        // Ids far from the measured ones: a different start per request,
        // stepping through the vocabulary backwards.
        let ids: Vec<u32> = (0..len)
            .map(|j| (vocab - 1) - ((i as u32 * 7919 + j * 3) % vocab))
            .collect();
        let warm = DatasetRow {
            prompt: Prompt::Ids(ids),
            input_len: len,
            output_len: load.rows[i].output_len,
        };
        Ok(LoadRequest {
            path: load.endpoint,
            body: generate_body(&warm, load.stream).into(),
            stream: load.stream,
            due,
        })
    };
    let mut phases = Vec::new();
    // 1. The longest prompt of each power-of-two class, alone.
    let mut classes: Vec<(u32, usize)> = Vec::new();
    for (idx, len) in lens.iter().enumerate() {
        let class = len.next_power_of_two();
        match classes.iter_mut().find(|(c, _)| *c == class) {
            Some((_, best)) if lens[*best] >= *len => {}
            Some((_, best)) => *best = idx,
            None => classes.push((class, idx)),
        }
    }
    classes.sort();
    phases.push(WarmupPhase {
        what: "each prompt length class alone".to_owned(),
        requests: Arc::new(
            classes
                .iter()
                .map(|(_, idx)| substitute(*idx, Duration::ZERO))
                .collect::<Result<_, _>>()?,
        ),
        cap: Some(1),
    });
    // 2. Bursts of every batch size, each size twice.
    let top = load.cap.unwrap_or(8).clamp(1, 64);
    let mut next = 0;
    let output_len = (0..load.dataset.len())
        .map(|idx| load.dataset.lengths(idx).1)
        .min()
        .unwrap_or(8);
    for round in 0..2u32 {
        for k in 1..=top {
            let mut group = Vec::with_capacity(k);
            for _ in 0..k {
                let request = if load.endpoint == "/generate" {
                    short_prompt(next as u32, output_len.clamp(2, 8), load.stream)
                } else {
                    substitute(next % n, Duration::ZERO)?
                };
                group.push(request);
                next += 1;
            }
            phases.push(WarmupPhase {
                what: format!("a burst of {k} requests at once (round {})", round + 1),
                cap: Some(k),
                requests: Arc::new(group),
            });
        }
    }
    // 3. The measured pattern itself.
    let mix_requests: Vec<LoadRequest> = (0..mix)
        .map(|i| substitute((next + i) % n, load.requests.due(i % n)))
        .collect::<Result<_, _>>()?;
    phases.push(WarmupPhase {
        what: "the measured arrivals and cap".to_owned(),
        requests: Arc::new(mix_requests),
        cap: load.cap,
    });
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body as a `serde_json::Map` writes it, which earlier sessions'
    /// `bodies.jsonl` files hold: the same bytes.
    #[test]
    fn bodies_are_the_bytes_a_json_map_writes() {
        let reference = |row: &DatasetRow, stream: bool| {
            let mut body = serde_json::Map::new();
            match &row.prompt {
                Prompt::Text(text) => body.insert("text".to_owned(), text.clone().into()),
                Prompt::Ids(ids) => body.insert("input_ids".to_owned(), serde_json::json!(ids)),
            };
            body.insert(
                "sampling_params".to_owned(),
                serde_json::json!({
                    "max_new_tokens": row.output_len,
                    "temperature": 0.0,
                    "ignore_eos": true,
                }),
            );
            if stream {
                body.insert("stream".to_owned(), true.into());
            }
            serde_json::to_vec(&body).unwrap()
        };
        let rows = [
            DatasetRow {
                prompt: Prompt::Text("a \"quoted\"\n\u{7}é prompt".to_owned()),
                input_len: 5,
                output_len: 32,
            },
            DatasetRow {
                prompt: Prompt::Ids(vec![1, 2, 151_643]),
                input_len: 3,
                output_len: 0,
            },
        ];
        for row in &rows {
            for stream in [false, true] {
                assert_eq!(
                    String::from_utf8(generate_body(row, stream)).unwrap(),
                    String::from_utf8(reference(row, stream)).unwrap()
                );
            }
        }
    }

    #[test]
    fn datasets_parse_back() {
        for text in [
            "random",
            "shared-prefix",
            "fixed",
            "sharegpt:a/b.json",
            "jsonl:x.jsonl",
        ] {
            assert_eq!(DatasetSpec::parse(text).unwrap().to_arg(), text);
        }
        assert!(DatasetSpec::parse("sharegpt:").is_err());
        assert!(
            DatasetSpec::parse("csv:x")
                .unwrap_err()
                .contains("unknown dataset")
        );
    }

    #[test]
    fn slo_parses_and_renders() {
        let slo = parse_slo("ttft=200,e2e=1500.5").unwrap();
        assert_eq!(slo.ttft_ms, Some(200.0));
        assert_eq!(slo.tpot_ms, None);
        assert_eq!(slo_arg(&slo), "ttft=200,e2e=1500.5");
        assert!(parse_slo("ttft=0").is_err());
        assert!(parse_slo("latency=5").is_err());
    }

    /// An error as the command line prints it: the message, then each
    /// cause, `: `-separated.
    fn one_line(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn bad_settings_are_refused_in_one_line() {
        let spec = |f: fn(&mut LoadSpec)| {
            let mut spec = LoadSpec::default();
            f(&mut spec);
            spec.check().map_err(|e| one_line(&e))
        };
        assert!(
            spec(|s| s.request_rate = Some(0.0))
                .unwrap_err()
                .contains("above 0")
        );
        assert!(spec(|s| s.request_rate = Some(-2.0)).is_err());
        assert!(spec(|s| s.burstiness = 0.0).is_err());
        assert!(spec(|s| s.seed = 1 << 40).is_err());
        assert!(spec(|s| s.range_ratio = 1.5).is_err());
        assert!(spec(|s| s.percentiles = vec![100.0]).is_err());
        let missing =
            spec(|s| s.dataset = DatasetSpec::Jsonl("/nonexistent/x.jsonl".into())).unwrap_err();
        assert!(
            missing.starts_with("cannot read the dataset /nonexistent/x.jsonl: "),
            "{missing}"
        );
        assert!(!missing.contains('\n'));
        spec(|_| ()).unwrap();
    }

    #[test]
    fn malformed_dataset_files_are_refused_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, text: &str, sharegpt: bool| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let spec = LoadSpec {
                dataset: if sharegpt {
                    DatasetSpec::Sharegpt(path)
                } else {
                    DatasetSpec::Jsonl(path)
                },
                ..LoadSpec::default()
            };
            spec.check().map_err(|e| one_line(&e))
        };
        let good = "{\"prompt\": \"hi\", \"output_len\": 4}\n\n{\"input_ids\": [1, 2], \"output_len\": 3}\n";
        check("good.jsonl", good, false).unwrap();
        let bad = check(
            "bad.jsonl",
            "{\"prompt\": \"hi\", \"output_len\": 4}\n{\"prompt\": \"hi\"\n",
            false,
        )
        .unwrap_err();
        assert!(bad.starts_with("dataset "), "{bad}");
        assert!(bad.contains("bad.jsonl: line 2: "), "{bad}");
        assert!(!bad.contains('\n'), "{bad}");
        let both = check(
            "both.jsonl",
            "{\"prompt\": \"a\", \"input_ids\": [1], \"output_len\": 4}\n",
            false,
        )
        .unwrap_err();
        assert!(both.contains("exactly one of"), "{both}");
        assert!(
            check("empty.jsonl", "\n", false)
                .unwrap_err()
                .contains("no rows")
        );
        assert!(check("chat.json", "[{\"conversations\": [", true).is_err());
        let one_turn = "[{\"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}]}]";
        assert!(
            check("one.json", one_turn, true)
                .unwrap_err()
                .contains("two turns")
        );
    }

    #[test]
    fn the_closed_loop_caps_at_the_plan_concurrency() {
        let mut spec = LoadSpec::default();
        assert_eq!(spec.cap(4), Some(4));
        spec.request_rate = Some(8.0);
        assert_eq!(spec.cap(4), None);
        spec.max_concurrency = Some(2);
        assert_eq!(spec.cap(4), Some(2));
    }
}
