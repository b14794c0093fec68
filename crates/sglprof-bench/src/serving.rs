//! The serving comparison (`cargo xtask bench --serving`): sglprof
//! and sglang-jax's own `bench_serving` against one real local CPU server,
//! on one dataset file, so that their counts and latency medians can be
//! set side by side.
//!
//! The server is `xtask serve`'s. sglprof first draws the `random` rows
//! and saves them in ShareGPT's layout (`--save-dataset`); that run and one
//! of `bench_serving` on the file are the warm-up. Then `--runs` rounds,
//! sglprof then `bench_serving`, both streamed at 2 requests/s (Poisson,
//! seed 7) without the profiler (`--no-trace`; `bench_serving` runs
//! without it). TTFT is the median over the requests whose stream carried
//! text, for both (`bench_serving` counts a 0 for the others). Two tools
//! agree on a median when the medians of their rounds' medians differ by
//! no more than the larger spread of one tool's rounds.
#![allow(clippy::disallowed_methods)] // The benchmark runs the commands it measures.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};

use profile_driver::events::Progress;

use crate::load::{Stopped, median, read_json, words};
use crate::{Error, io};

/// The rate and the number of requests of each run.
const RATE: &str = "2";
const PROMPTS: &str = "32";

/// One run's counts and medians: requests, input and output tokens, TTFT,
/// ITL and E2E in ms.
type Round = ([u64; 3], [f64; 3]);

fn sglprof_round(dir: &Path) -> Result<Round, Error> {
    let s = &read_json(&dir.join("summary.json"), false)?["serving"];
    let n = |key: &str| s[key].as_u64().unwrap_or(0);
    let m = |key: &str| s[key]["median"].as_f64().unwrap_or(f64::NAN);
    Ok((
        [
            n("completed"),
            n("total_input_tokens"),
            n("total_output_tokens"),
        ],
        [m("ttft_ms"), m("itl_ms"), m("e2e_ms")],
    ))
}

fn bench_serving_round(file: &Path) -> Result<Round, Error> {
    let b = read_json(file, true)?;
    let n = |key: &str| b[key].as_u64().unwrap_or(0);
    let m = |key: &str| b[key].as_f64().unwrap_or(f64::NAN);
    let ttfts = b["ttfts"]
        .as_array()
        .ok_or_else(|| Error::Failed("no per-request ttfts".into()))?;
    let mut with_text: Vec<f64> = ttfts
        .iter()
        .filter_map(|t| t.as_f64())
        .filter(|t| *t > 0.0)
        .map(|t| t * 1e3)
        .collect();
    let ttft = median(&mut with_text).0;
    Ok((
        [
            n("completed"),
            n("total_input_tokens"),
            n("total_output_tokens"),
        ],
        [ttft, m("median_itl_ms"), m("median_e2e_latency_ms")],
    ))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd.output().map_err(io(format!("cannot run {what}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Failed(format!(
            "{what} failed: {}",
            text.lines().last().unwrap_or("")
        )));
    }
    Ok(())
}

pub(crate) fn serving_group(
    me: &Path,
    scratch: &Path,
    runs: usize,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let (env, dir) = super::load::cpu_env_and_fresh_dir(scratch, "bench-serving", progress)?;
    let mut child = Command::new(me)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("cannot run `xtask serve`"))?;
    let stdout = child.stdout.take().expect("piped");
    let server = Stopped(child);
    let mut url = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut url)
        .map_err(io("cannot read the server's URL"))?;
    let url = url.trim().to_owned();
    if url.is_empty() {
        return Err(Error::Failed(
            "`xtask serve` stopped before its server was ready".into(),
        ));
    }
    let dataset = dir.join("dataset.json");
    let sglprof = |out: &Path, data: &[&str]| {
        let mut cmd = Command::new(me);
        cmd.args(words(&[
            "profile",
            "--attach",
            &url,
            "--num-prompts",
            PROMPTS,
        ]))
        .args(words(data))
        .args(words(&["--request-rate", RATE, "--seed", "7", "--stream"]))
        .args(words(&["--no-trace", "--warmup", "0", "--quiet-wait", "0"]))
        .arg("--out")
        .arg(out);
        cmd
    };
    let bench_serving = |out: &Path| {
        let mut cmd = Command::new(&env.python);
        cmd.args(words(&[
            "-m",
            "sgl_jax.bench_serving",
            "--backend",
            "sgl-jax",
        ]))
        .args(words(&["--base-url", &url, "--dataset-name", "sharegpt"]))
        .args(words(&["--num-prompts", PROMPTS, "--request-rate", RATE]))
        .args(words(&[
            "--seed",
            "7",
            "--output-details",
            "--disable-tqdm",
        ]))
        .args(["--model".as_ref(), env.model_dir.as_os_str()])
        .args(["--tokenizer".as_ref(), env.model_dir.as_os_str()])
        .args(["--dataset-path".as_ref(), dataset.as_os_str()])
        .args(["--output-file".as_ref(), out.as_os_str()]);
        cmd
    };
    let data_args = [
        "--dataset",
        "random",
        "--input-len",
        "128",
        "--output-len",
        "32",
    ];
    let mut first = sglprof(&dir.join("warm-sglprof"), &data_args);
    first.args(words(&["--range-ratio", "0.5", "--save-dataset"]));
    first.arg(&dataset);
    run(&mut first, "the first sglprof session")?;
    run(&mut bench_serving(&dir.join("warm.jsonl")), "bench_serving")?;
    let sharegpt = format!("sharegpt:{}", dataset.display());
    let mut rounds: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=runs {
        let out = dir.join(format!("sglprof-{round}"));
        run(&mut sglprof(&out, &["--dataset", &sharegpt]), "sglprof")?;
        rounds[0].push(sglprof_round(&out)?);
        let out = dir.join(format!("bench-serving-{round}.jsonl"));
        run(&mut bench_serving(&out), "bench_serving")?;
        rounds[1].push(bench_serving_round(&out)?);
    }
    drop(server);
    println!(
        "\nserving: {PROMPTS} streamed requests of one ShareGPT file at {RATE}/s, {runs} rounds on one real CPU server  [load average after: {}]",
        bench_process::load()
    );
    println!(
        "{:<16} {:>5} {:>22} {:>9} {:>9} {:>9}",
        "tool", "round", "requests/in/out", "TTFT ms", "ITL ms", "E2E ms"
    );
    for (tool, name) in ["sglprof", "bench_serving"].iter().enumerate() {
        for (idx, (c, m)) in rounds[tool].iter().enumerate() {
            println!(
                "{name:<16} {:>5} {:>22} {:>9.2} {:>9.2} {:>9.2}",
                idx + 1,
                format!("{}/{}/{}", c[0], c[1], c[2]),
                m[0],
                m[1],
                m[2]
            );
        }
    }
    let same_counts = rounds.iter().flatten().all(|(c, _)| *c == rounds[0][0].0);
    println!(
        "counts: {}",
        if same_counts {
            "equal in every run"
        } else {
            "DIFFER"
        }
    );
    for (idx, what) in ["TTFT", "ITL", "E2E"].iter().enumerate() {
        let side = |tool: usize| {
            let mut v: Vec<f64> = rounds[tool].iter().map(|(_, m)| m[idx]).collect();
            let (mid, lo, hi) = median(&mut v);
            (mid, hi - lo)
        };
        let ((a, sa), (b, sb)) = (side(0), side(1));
        let verdict = if (a - b).abs() <= sa.max(sb) {
            "agree"
        } else {
            "DIFFER"
        };
        println!(
            "{what}: median of medians sglprof {a:.2} ms (spread {sa:.2}), bench_serving {b:.2} ms (spread {sb:.2}): {verdict}"
        );
    }
    Ok(())
}
