//! The serving-load flags of `cargo xtask profile` (dataset, arrivals,
//! concurrency cap, metrics settings), flattened into `profile::Args`, and
//! their conversion into the plan's [`LoadSpec`], which renders them back
//! with `LoadSpec::to_args` (the round trip is tested here).

use std::path::PathBuf;

use profile_session::LoadSpec;
use profile_session::load::{DatasetSpec, Slo, parse_slo};

#[derive(clap::Args, Clone, Debug)]
pub struct LoadFlags {
    /// Where the prompts come from: `random` (bench_serving's random-ids:
    /// token ids of the model's vocabulary, lengths from --input-len,
    /// --output-len and --range-ratio), `shared-prefix` (groups sharing a
    /// system prompt), `sharegpt:FILE` (ShareGPT JSON: the first turn is
    /// the prompt, the second's length the output), `jsonl:FILE` (one
    /// {"prompt" | "input_ids", "output_len"} per line) or `fixed`
    /// (--prompt every time).
    #[arg(long, value_parser = DatasetSpec::parse, default_value = "fixed")]
    pub dataset: DatasetSpec,
    /// Requests of the measured phase [default: --requests].
    #[arg(long, conflicts_with = "requests")]
    pub num_prompts: Option<usize>,
    /// Seeds the dataset and the arrivals; the same seed sends the same
    /// requests at the same times (bench_serving's own streams).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `random`: the longest prompt in tokens; `shared-prefix`: each
    /// question.
    #[arg(long, default_value_t = 128)]
    pub input_len: u32,
    /// Tokens to generate [default: --max-new-tokens; `sharegpt`: the
    /// second turn's length].
    #[arg(long)]
    pub output_len: Option<u32>,
    /// `random`: lengths are drawn uniformly from [L * r, L].
    #[arg(long, default_value_t = 1.0)]
    pub range_ratio: f64,
    /// `shared-prefix`: system prompts (groups).
    #[arg(long, default_value_t = 4)]
    pub prefix_groups: usize,
    /// `shared-prefix`: tokens of each system prompt.
    #[arg(long, default_value_t = 256)]
    pub prefix_len: u32,
    /// Requests per second (Poisson arrivals), or `inf`: every request due
    /// at once, the closed loop with --max-concurrency (or --concurrency).
    #[arg(long, value_parser = parse_rate, default_value = "inf")]
    pub request_rate: Rate,
    /// Gamma-distributed gaps of this shape (vLLM's --burstiness): below 1
    /// burstier, above 1 more even; 1 is Poisson.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Requests in flight at most [default: --concurrency with
    /// --request-rate inf, no cap otherwise].
    #[arg(long, conflicts_with = "concurrency")]
    pub max_concurrency: Option<usize>,
    /// Percentiles reported besides the median, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "90,99")]
    pub percentiles: Vec<f64>,
    /// Goodput objectives in ms: `ttft=MS,tpot=MS,e2e=MS` (any of them).
    #[arg(long, value_parser = parse_slo)]
    pub slo: Option<Slo>,
    /// Also write the measured requests to FILE in ShareGPT's layout, for
    /// bench_serving (`--dataset-name sharegpt`) or `--dataset sharegpt:FILE`.
    #[arg(long, value_name = "FILE")]
    pub save_dataset: Option<PathBuf>,
    /// The tokenizer.json (or its folder) that counts and draws prompts
    /// [default: the model's folder].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Run the session without the JAX profiler, so the serving numbers are
    /// not slowed by tracing (no trace, no device analysis).
    #[arg(long)]
    pub no_trace: bool,
}

/// A request rate: `None` is `inf`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate(pub Option<f64>);

fn parse_rate(text: &str) -> Result<Rate, String> {
    profile_session::load::parse_rate(text).map(Rate)
}

impl LoadFlags {
    pub fn spec(&self) -> LoadSpec {
        LoadSpec {
            dataset: self.dataset.clone(),
            num_prompts: self.num_prompts,
            seed: self.seed,
            input_len: self.input_len,
            output_len: self.output_len,
            range_ratio: self.range_ratio,
            prefix_groups: self.prefix_groups,
            prefix_len: self.prefix_len,
            request_rate: self.request_rate.0,
            burstiness: self.burstiness,
            max_concurrency: self.max_concurrency,
            percentiles: self.percentiles.clone(),
            slo: self.slo,
            save_dataset: self.save_dataset.clone(),
            tokenizer: self.tokenizer.clone(),
            no_trace: self.no_trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadFlags,
        // The flags LoadFlags conflicts with.
        #[arg(long)]
        requests: Option<usize>,
        #[arg(long)]
        concurrency: Option<usize>,
    }

    fn parse(args: &[String]) -> Result<LoadSpec, String> {
        let mut words = vec!["profile".to_owned()];
        words.extend(args.iter().cloned());
        Cli::try_parse_from(words)
            .map(|cli| cli.load.spec())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_spec_renders_flags_that_parse_back_into_it() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults, LoadSpec::default());
        assert!(defaults.to_args().is_empty());
        let spec = LoadSpec {
            dataset: DatasetSpec::Sharegpt("data/chat.json".into()),
            num_prompts: Some(64),
            seed: 7,
            input_len: 256,
            output_len: Some(32),
            range_ratio: 0.5,
            prefix_groups: 2,
            prefix_len: 64,
            request_rate: Some(16.0),
            burstiness: 0.5,
            max_concurrency: Some(8),
            percentiles: vec![50.0, 95.0, 99.9],
            slo: Some(Slo {
                ttft_ms: Some(200.0),
                tpot_ms: None,
                e2e_ms: Some(1500.0),
            }),
            save_dataset: Some("out.json".into()),
            tokenizer: Some("tok/tokenizer.json".into()),
            no_trace: true,
        };
        assert_eq!(parse(&spec.to_args()).unwrap(), spec);
    }

    #[test]
    fn bad_rates_are_refused_by_the_parser() {
        for bad in ["0", "-1", "nan", "fast"] {
            let err = parse(&[format!("--request-rate={bad}")]).unwrap_err();
            assert!(err.contains("--request-rate"), "{err}");
        }
        let inf = parse(&["--request-rate".into(), "inf".into()]).unwrap();
        assert_eq!(inf.request_rate, None);
        let err = parse(&[
            "--num-prompts".into(),
            "3".into(),
            "--requests".into(),
            "4".into(),
        ])
        .unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
    }
}
