//! A mutation fuzzer for every reader of sglprof: Chrome JSON (plain and
//! gzip), XPlane, py-spy raw and speedscope, artifact manifests and run
//! metadata. `cargo xtask fuzz` drives it.
//!
//! Seeds come from the real fixtures (the caller loads them; apart from
//! [`campaign`], which reads a checkout's fixtures and writes failing
//! inputs, this crate does no IO). Input number `i` of a run with seed `s` is a fixed mutation of a
//! fixed seed, so `(s, i)` reproduces it. Inputs run in process on every
//! core (std threads), each under `catch_unwind`, and an input fails when the
//! reader panics, when it takes more CPU time than a budget linear in the
//! input's size, when the thread's live memory (counted by [`CountingAlloc`],
//! which the program must register) exceeds a bound linear in the size, or
//! when a reader's own invariant breaks: the Chrome reader's work counters
//! must stay linear, `read` and `read_slice` must agree, error messages must
//! be one line, run metadata must survive a round trip and a manifest must
//! print no control characters.
//!
//! It is not a coverage-guided fuzzer (no instrumentation) and does not
//! minimise failing inputs.

mod alloc;
pub mod campaign;
mod mutate;
mod readers;

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use alloc::CountingAlloc;
pub use mutate::{MAX_INPUT, Rng};
pub use readers::{Reader, Seeds};

/// Limits an input must stay within; `size` is the larger of the input's
/// length and the text it decompresses to.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// CPU time of the reading thread: `time_base + time_per_byte * size`.
    pub time_base: Duration,
    pub time_per_byte: Duration,
    /// Live bytes of the reading thread: `mem_base + mem_per_byte * size`.
    pub mem_base: u64,
    pub mem_per_byte: u64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            time_base: Duration::from_millis(250),
            time_per_byte: Duration::from_nanos(200),
            mem_base: 48 << 20,
            mem_per_byte: 24,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Inputs per reader.
    pub inputs: u64,
    pub threads: usize,
    pub budget: Budget,
}

/// What went wrong with one input.
#[derive(Clone, Debug)]
pub struct Failure {
    pub reader: Reader,
    pub seed: u64,
    pub index: u64,
    /// One line.
    pub problem: String,
}

/// The outcome of fuzzing one reader.
#[derive(Clone, Debug)]
pub struct ReaderReport {
    pub reader: Reader,
    pub inputs: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The slowest input as a share of its time budget, and the largest
    /// peak memory as a share of its bound (both at most 1 when all passed).
    pub worst_time_share: f64,
    pub worst_mem_share: f64,
    pub failures: Vec<Failure>,
}

impl ReaderReport {
    pub fn inputs_per_s(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The bytes of input `index` of a run with `seed`.
pub fn make_input(reader: Reader, seeds: &Seeds, seed: u64, index: u64) -> Vec<u8> {
    readers::make_input(reader, seeds, seed, index)
}

/// Runs one input and checks it against `budget`; `Err` says why it failed.
pub fn check_input(reader: Reader, input: &[u8], budget: &Budget) -> Result<Usage, String> {
    let base = alloc::start_measure();
    let cpu0 = thread_cpu_time();
    let res = std::panic::catch_unwind(AssertUnwindSafe(|| readers::run(reader, input)));
    let cpu = thread_cpu_time().saturating_sub(cpu0);
    let peak = alloc::peak_since(base);
    let size = match res {
        Err(payload) => return Err(format!("panicked: {}", one_line(&panic_text(&payload)))),
        Ok(Err(problem)) => return Err(one_line(&problem)),
        Ok(Ok(size)) => size.max(input.len() as u64),
    };
    let time_limit = budget.time_base
        + budget
            .time_per_byte
            .saturating_mul(size.min(u32::MAX as u64) as u32);
    let mem_limit = budget.mem_base + budget.mem_per_byte * size;
    let usage = Usage {
        cpu,
        peak_bytes: peak,
        time_share: cpu.as_secs_f64() / time_limit.as_secs_f64(),
        mem_share: peak as f64 / mem_limit as f64,
    };
    if cpu > time_limit {
        return Err(format!(
            "took {:.1} ms of CPU for {size} bytes (budget {:.1} ms)",
            cpu.as_secs_f64() * 1e3,
            time_limit.as_secs_f64() * 1e3
        ));
    }
    if peak > mem_limit {
        return Err(format!(
            "held {peak} bytes for {size} bytes of input (bound {mem_limit})"
        ));
    }
    Ok(usage)
}

/// What one input cost.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu: Duration,
    pub peak_bytes: u64,
    pub time_share: f64,
    pub mem_share: f64,
}

/// Fuzzes `reader` with `config.inputs` inputs on `config.threads` threads.
/// Stops at the first failure (the report holds it). A panic hook that
/// prints is left as it is: the caller silences it if it wants.
pub fn fuzz(reader: Reader, seeds: &Seeds, config: &Config) -> ReaderReport {
    let next = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let worst = Mutex::new((0.0f64, 0.0f64));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..config.threads.max(1) {
            scope.spawn(|| {
                let mut local_worst = (0.0f64, 0.0f64);
                // Inputs are handed out in blocks, in order, so that a
                // failure found first is usually the lowest index.
                const BLOCK: u64 = 64;
                while !stop.load(Ordering::Relaxed) {
                    let from = next.fetch_add(BLOCK, Ordering::Relaxed);
                    if from >= config.inputs {
                        break;
                    }
                    for index in from..(from + BLOCK).min(config.inputs) {
                        let input = make_input(reader, seeds, config.seed, index);
                        bytes.fetch_add(input.len() as u64, Ordering::Relaxed);
                        match check_input(reader, &input, &config.budget) {
                            Ok(usage) => {
                                local_worst.0 = local_worst.0.max(usage.time_share);
                                local_worst.1 = local_worst.1.max(usage.mem_share);
                            }
                            Err(problem) => {
                                stop.store(true, Ordering::Relaxed);
                                lock(&failures).push(Failure {
                                    reader,
                                    seed: config.seed,
                                    index,
                                    problem,
                                });
                                break;
                            }
                        }
                    }
                }
                let mut worst = lock(&worst);
                worst.0 = worst.0.max(local_worst.0);
                worst.1 = worst.1.max(local_worst.1);
            });
        }
    });
    let elapsed = started.elapsed();
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by_key(|it| it.index);
    let (worst_time_share, worst_mem_share) = *lock(&worst);
    let inputs = if failures.is_empty() {
        config.inputs
    } else {
        next.load(Ordering::Relaxed).min(config.inputs)
    };
    ReaderReport {
        reader,
        inputs,
        bytes: bytes.load(Ordering::Relaxed),
        elapsed,
        worst_time_share,
        worst_mem_share,
        failures,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Control characters shown as escapes, so a problem stays on one line.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
