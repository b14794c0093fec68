//! The load generator's group (`cargo xtask bench --load`): sglprof's
//! open-loop sender and sglang-jax's own `bench_serving` against one stub
//! that streams every answer at once, so the clients are what is measured.
//!
//! The stub (`xtask stub-server --token-ms 0`) runs on CPU 1 and each
//! client on CPU 0 (`taskset`), interleaved after a warm-up of each. The
//! rates compared are the ones each tool prints for its measured phase
//! (`summary.json`'s `serving.request_throughput`, bench_serving's
//! `request_throughput`). sglprof's first-token times are checked against
//! the stub's own send times (`GET /stub/sends`, matched by request id),
//! and one session of `--memory-requests` requests gives the peak memory.
#![allow(clippy::disallowed_methods)] // The benchmark runs the commands it measures.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench_process::{Bench, SETTLE, Sample, bench, command, load, measure};
use profile_driver::events::Progress;
use serving_workload::metrics::percentile;

use crate::{Error, io};

/// What the load group sends.
#[derive(Clone, Debug)]
pub struct LoadBench {
    /// Requests per run.
    pub requests: usize,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Measured runs of each client (after one warm-up); [`crate::run`]
    /// takes [`crate::Options::runs`].
    pub runs: usize,
    /// Requests of the one session whose peak memory is reported.
    pub memory_requests: usize,
    /// The rate of the paced session whose first-token times are checked
    /// away from saturation.
    pub paced_rate: f64,
}

/// The dataset both tools draw, in sglprof's flags.
const DATASET: &str = "--input-len 128 --output-len 32 --range-ratio 0.5 --seed 7";

/// A server the bench started, stopped when dropped: a child with a piped
/// standard input (`xtask serve`, which stops its server and exits once
/// that closes) is given the time that takes, then it is killed and
/// reaped. Killed at once, `xtask serve` would leave its server, which
/// runs in a process group of its own, behind.
pub(super) struct Stopped(pub(super) Child);

/// How long a child whose standard input closed may take to stop.
const STOP_GRACE: Duration = Duration::from_secs(30);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(stdin) = self.0.stdin.take() {
            drop(stdin);
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                match self.0.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(Some(_)) | Err(_) => break,
                }
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The stub server, stopped when dropped.
struct StubProcess {
    _child: Stopped,
    url: String,
}

/// Starts the stub on CPU 1, its output (one access line per request) going
/// to the file `log`: read through a pipe, it would wake a reader in this
/// process, which may run on CPU 0 and take the client's time (3,000 of
/// 15,700 requests a second).
fn start_stub(me: &Path, traces: &Path, model: &Path, log: &Path) -> Result<StubProcess, Error> {
    let out = std::fs::File::create(log).map_err(io(format!("cannot create {}", log.display())))?;
    let child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(me)
        .args(["stub-server", "--token-ms", "0", "--traces"])
        .arg(traces)
        .args(["--", "--port", "0", "--model-path"])
        .arg(model)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("cannot run `taskset` (util-linux) for the stub server"))?;
    let mut child = Stopped(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).map_err(io("cannot read the stub's output"))?;
        if let Some(at) = text.find("http://") {
            let url = text[at..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            return Ok(StubProcess { _child: child, url });
        }
        let exited = child.0.try_wait().map_err(io("cannot wait for the stub"))?;
        if exited.is_some() || Instant::now() > deadline {
            return Err(Error::Failed(
                "the stub server stopped before it listened".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `program args...` on CPU 0, as the bench runs its commands.
fn on_cpu0(program: &Path, args: Vec<OsString>) -> Command {
    let mut cmd = command(
        "taskset",
        &["-c".as_ref(), "0".as_ref(), program.as_os_str()],
    );
    cmd.args(args);
    cmd
}

pub(super) fn words(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn sglprof(me: &Path, url: &str, n: usize, cap: Option<usize>, rate: &str, out: &Path) -> Bench {
    let mut args = words(&["profile", "--attach", url, "--num-prompts", &n.to_string()]);
    args.extend(words(&DATASET.split_whitespace().collect::<Vec<_>>()));
    args.extend(words(&["--request-rate", rate, "--out"]));
    args.push(out.into());
    args.extend(words(
        &"--dataset random --stream --no-trace --warmup 0 --quiet-wait 0"
            .split_whitespace()
            .collect::<Vec<_>>(),
    ));
    if let Some(cap) = cap {
        args.extend(words(&["--max-concurrency", &cap.to_string()]));
    }
    bench("sglprof profile --attach", on_cpu0(me, args))
}

fn bench_serving(
    python: &Path,
    model: &Path,
    url: &str,
    n: usize,
    cap: usize,
    out: &Path,
) -> Bench {
    let mut args = words(&["-m", "sgl_jax.bench_serving", "--base-url", url]);
    args.extend(words(&[
        "--num-prompts",
        &n.to_string(),
        "--max-concurrency",
        &cap.to_string(),
    ]));
    // bench_serving spells sglprof's dataset flags with `random-`.
    args.extend(words(
        &DATASET
            .replace("--", "--random-")
            .replace("--random-seed", "--seed")
            .split_whitespace()
            .collect::<Vec<_>>(),
    ));
    args.extend(words(
        &"--backend sgl-jax --dataset-name random-ids --request-rate inf --disable-tqdm"
            .split_whitespace()
            .collect::<Vec<_>>(),
    ));
    for (flag, path) in [
        ("--model", model),
        ("--tokenizer", model),
        ("--output-file", out),
    ] {
        args.extend([flag.into(), path.into()]);
    }
    bench("sglang-jax bench_serving", on_cpu0(python, args))
}

/// What one client run reported about its measured phase.
#[derive(Clone, Copy, Debug)]
struct Reported {
    rate: f64,
    completed: u64,
    input_tokens: u64,
    output_tokens: u64,
}

fn field(value: &serde_json::Value, key: &str) -> Result<f64, Error> {
    value[key]
        .as_f64()
        .ok_or_else(|| Error::Failed(format!("no number `{key}` in the tool's results")))
}

fn reported(value: &serde_json::Value) -> Result<Reported, Error> {
    Ok(Reported {
        rate: field(value, "request_throughput")?,
        completed: field(value, "completed")? as u64,
        input_tokens: field(value, "total_input_tokens")? as u64,
        output_tokens: field(value, "total_output_tokens")? as u64,
    })
}

/// A JSON file, or the last line of a JSON-lines file (bench_serving
/// appends one line per run to its `--output-file`).
pub(super) fn read_json(path: &Path, last_line: bool) -> Result<serde_json::Value, Error> {
    let text =
        std::fs::read_to_string(path).map_err(io(format!("cannot read {}", path.display())))?;
    let text = match last_line {
        true => text.lines().rfind(|it| !it.trim().is_empty()).unwrap_or(""),
        false => &text,
    };
    // Python's json writes an infinite request rate as `Infinity`.
    let text = text
        .replace(": Infinity", ": null")
        .replace(": NaN", ": null");
    serde_json::from_str(&text).map_err(|source| Error::Json {
        what: format!("{} is not JSON", path.display()),
        source,
    })
}

/// First-token time minus the stub's send time, in ms, for each streamed
/// request of a session that has both.
fn ttft_errors(run: &Path, sends: &BTreeMap<String, u64>) -> Result<Vec<f64>, Error> {
    let path = run.join("inputs/requests.jsonl");
    let text =
        std::fs::read_to_string(&path).map_err(io(format!("cannot read {}", path.display())))?;
    let records = serving_workload::record::parse_records(&text)
        .map_err(|err| Error::Failed(format!("{}: {err}", path.display())))?;
    Ok(records
        .iter()
        .filter_map(|r| {
            let sent = *sends.get(r.rid.as_deref()?)?;
            Some((r.first_token_ns? as f64 - sent as f64) / 1e6)
        })
        .collect())
}

fn fetch_sends(url: &str) -> Result<BTreeMap<String, u64>, Error> {
    let client = sglang_server::Client::new(sglang_server::ClientConfig {
        base_url: url.to_owned(),
        api_key: None,
        request_timeout: std::time::Duration::from_secs(60),
        server_log: None,
    })?;
    // One request after a run, not measured: a thread of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("cannot start the async runtime"))?;
    Ok(runtime.block_on(sglang_server::stub::sends(&client))?)
}

fn print_errors(what: &str, mut errors: Vec<f64>) {
    if errors.is_empty() {
        println!("{what}: no request matched a send");
        return;
    }
    errors.sort_by(f64::total_cmp);
    let within = errors.iter().filter(|e| e.abs() <= 0.1).count();
    println!(
        "{what}: {} requests; first token - stub send: median {:.3} ms, p99 {:.3} ms, max {:.3} ms, min {:.3} ms; within 0.1 ms: {:.1} % (target: 0.1 ms)",
        errors.len(),
        percentile(&errors, 50.0),
        percentile(&errors, 99.0),
        errors[errors.len() - 1],
        errors[0],
        within as f64 / errors.len() as f64 * 100.0
    );
}

/// The median (interpolated as everywhere in sglprof), smallest and
/// largest of `values`; NaN for none.
pub(super) fn median(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    match (values.first(), values.last()) {
        (Some(first), Some(last)) => (percentile(values, 50.0), *first, *last),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    }
}

/// The server's CPU environment (installed on first use) and an emptied
/// folder `name` under `scratch` for a group's runs.
pub(crate) fn cpu_env_and_fresh_dir(
    scratch: &Path,
    name: &str,
    progress: &dyn Progress,
) -> Result<(profile_driver::pyenv::LocalEnv, PathBuf), Error> {
    let env = profile_driver::pyenv::ensure(
        profile_session::plan::defaults::SGLANG_JAX_VERSION,
        profile_session::plan::Device::Cpu,
        progress,
    )?;
    let dir = scratch.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    Ok((env, dir))
}

pub(crate) fn load_group(
    me: &Path,
    traces: &Path,
    scratch: &Path,
    spec: &LoadBench,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let (env, dir) = cpu_env_and_fresh_dir(scratch, "bench-load", progress)?;
    let stub = start_stub(me, traces, &env.model_dir, &dir.join("stub.log"))?;
    let (n, cap) = (spec.requests, spec.concurrency);
    println!(
        "\nload: {n} streamed /generate (random, {DATASET}), request rate inf, max concurrency {cap}; stub on CPU 1 answering at once, each client on CPU 0"
    );
    let run_dir = |tool: &str, i: usize| dir.join(format!("{tool}-{i}"));
    let mut rates = [Vec::new(), Vec::new()];
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    let mut counts: [Option<Reported>; 2] = [None, None];
    let mut errors = Vec::new();
    for round in 0..=spec.runs {
        for tool in 0..2 {
            let out = run_dir(["sglprof", "bench-serving"][tool], round);
            let mut bench = match tool {
                0 => sglprof(me, &stub.url, n, Some(cap), "inf", &out),
                _ => bench_serving(&env.python, &env.model_dir, &stub.url, n, cap, &out),
            };
            std::thread::sleep(SETTLE);
            let sample = measure(&mut bench).map_err(|source| Error::Run {
                what: format!("benchmark command `{}` failed", bench.name),
                source,
            })?;
            let results = match tool {
                0 => read_json(&out.join("summary.json"), false)?,
                _ => read_json(&out, true)?,
            };
            let got = reported(if tool == 0 {
                &results["serving"]
            } else {
                &results
            })?;
            // Round 0 is the warm-up of each tool.
            if round > 0 {
                rates[tool].push(got.rate);
                samples[tool].push(sample);
                counts[tool] = Some(got);
                if tool == 0 {
                    errors.extend(ttft_errors(&out, &fetch_sends(&stub.url)?)?);
                }
            }
        }
    }
    println!("\nLoad generator  [load average after: {}]", load());
    println!(
        "{:<28} {:>26} {:>22} {:>16}",
        "client", "req/s: median (min-max)", "CPU ms per request", "peak RSS MiB"
    );
    let mut medians = [0.0; 2];
    for (tool, name) in ["sglprof profile --attach", "sglang-jax bench_serving"]
        .iter()
        .enumerate()
    {
        let (m, lo, hi) = median(&mut rates[tool]);
        medians[tool] = m;
        let mut cpu: Vec<f64> = samples[tool]
            .iter()
            .map(|s| s.cpu_s * 1e3 / n as f64)
            .collect();
        let mut rss: Vec<f64> = samples[tool].iter().map(|s| s.peak_rss_mib).collect();
        println!(
            "{name:<28} {m:>9.0} ({lo:.0}-{hi:.0}) {:>22.3} {:>16.1}",
            median(&mut cpu).0,
            median(&mut rss).0
        );
        if let Some(c) = counts[tool] {
            println!(
                "{:<28} {} completed, {} input tokens, {} output tokens",
                "", c.completed, c.input_tokens, c.output_tokens
            );
        }
    }
    let (ours, theirs) = (&rates[0], &rates[1]);
    println!(
        "load: sglprof / bench_serving            {:>6.2}x requests/s (spread {:.2}-{:.2}; target >= 10x)",
        medians[0] / medians[1],
        ours[0] / theirs[theirs.len() - 1],
        ours[ours.len() - 1] / theirs[0]
    );
    print_errors("TTFT timestamps, saturated", errors);

    // Away from saturation: a paced session.
    let out = dir.join("sglprof-paced");
    let rate = spec.paced_rate.to_string();
    let mut bench = sglprof(me, &stub.url, n.min(4000), None, &rate, &out);
    measure(&mut bench).map_err(|source| Error::Run {
        what: "the paced sglprof session failed".into(),
        source,
    })?;
    print_errors(
        &format!("TTFT timestamps, Poisson {rate} req/s"),
        ttft_errors(&out, &fetch_sends(&stub.url)?)?,
    );

    // Memory: one long session.
    let out: PathBuf = dir.join("sglprof-memory");
    let mut bench = sglprof(me, &stub.url, spec.memory_requests, Some(cap), "inf", &out);
    let sample = measure(&mut bench).map_err(|source| Error::Run {
        what: "the long sglprof session failed".into(),
        source,
    })?;
    let got = reported(&read_json(&out.join("summary.json"), false)?["serving"])?;
    println!(
        "memory: {} requests recorded, peak RSS {:.1} MiB (target < 64 MiB), {:.0} req/s",
        got.completed, sample.peak_rss_mib, got.rate
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that cleans up once its standard input closes (as `xtask
    /// serve` stops its server) gets to finish; one without a piped
    /// standard input is killed at once.
    #[test]
    fn a_stopped_child_may_clean_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("cleaned");
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"cat > /dev/null; sleep 0.3; touch "$0""#)
            .arg(&marker)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        drop(Stopped(child));
        assert!(marker.exists(), "the child was killed before it cleaned up");
        let started = Instant::now();
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        drop(Stopped(child));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|it| it.to_string_lossy().into_owned())
            .collect()
    }

    /// Both clients draw the same dataset: bench_serving gets sglprof's
    /// flags spelled its own way.
    #[test]
    fn both_clients_are_given_the_same_dataset() {
        let out = Path::new("out");
        let ours = args(&sglprof(Path::new("me"), "http://u", 10, Some(4), "inf", out).cmd);
        let theirs =
            args(&bench_serving(Path::new("py"), Path::new("m"), "http://u", 10, 4, out).cmd);
        assert_eq!(&ours[..3], ["-c", "0", "me"]);
        assert_eq!(&theirs[..3], ["-c", "0", "py"]);
        let window = |all: &[String], words: &[&str]| all.windows(words.len()).any(|w| w == words);
        assert!(
            window(&ours, &DATASET.split_whitespace().collect::<Vec<_>>()),
            "{ours:?}"
        );
        let spelled = [
            "--random-input-len",
            "128",
            "--random-output-len",
            "32",
            "--random-range-ratio",
            "0.5",
            "--seed",
            "7",
        ];
        assert!(window(&theirs, &spelled), "{theirs:?}");
        assert!(window(&ours, &["--max-concurrency", "4"]), "{ours:?}");
        assert!(window(&theirs, &["--max-concurrency", "4"]), "{theirs:?}");
        assert!(window(&theirs, &["--request-rate", "inf"]), "{theirs:?}");
    }

    #[test]
    fn the_last_line_of_json_lines_is_read_with_python_infinities() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        std::fs::write(
            &path,
            "{\"request_throughput\": 1.0}\n{\"request_throughput\": 2.5, \"request_rate\": Infinity, \"completed\": 3, \"total_input_tokens\": 4, \"total_output_tokens\": 5}\n\n",
        )
        .unwrap();
        let value = read_json(&path, true).unwrap();
        assert_eq!(value["request_rate"], serde_json::Value::Null);
        let got = reported(&value).unwrap();
        assert_eq!(got.rate, 2.5);
        assert_eq!(
            (got.completed, got.input_tokens, got.output_tokens),
            (3, 4, 5)
        );
        let err = reported(&serde_json::json!({"completed": 1})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no number `request_throughput` in the tool's results"
        );
        std::fs::write(&path, "not json").unwrap();
        let err = read_json(&path, false).unwrap_err();
        assert_eq!(err.to_string(), format!("{} is not JSON", path.display()));
    }

    #[test]
    fn the_median_interpolates_and_is_nan_for_nothing() {
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(median(&mut [5.0]), (5.0, 5.0, 5.0));
        assert!(median(&mut []).0.is_nan());
    }
}
