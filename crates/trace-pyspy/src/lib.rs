//! Readers for py-spy output and the per-process function summary the session
//! report shows.
//!
//! Two py-spy formats are read into one [`Profile`]: the collapsed stacks of
//! `py-spy record --format raw` ([`parse_raw`]) and the JSON of
//! `--format speedscope` ([`parse_speedscope`]). [`summarize`] then counts, for
//! each sampled process, where the samples went.
//!
//! This crate does no IO: it takes a `&str` or `&[u8]` and returns plain data.
//! It renders only the flamegraph SVG ([`render_flamegraph`], with
//! `inferno`), as a string, and its types have no serde derives; the
//! report crate converts them if it needs a JSON form. It knows nothing about
//! the JAX trace readers (`trace-chrome`, `trace-xplane`).
//!
//! # What a profile holds
//!
//! A [`Profile`] is a list of [`Stack`]s. A stack has a sample count, the
//! process that was sampled, the thread when the input says which, and its
//! Python frames, root first and leaf last.
//!
//! With `--subprocesses`, py-spy puts the process chain in front of every
//! stack, launcher first: `process 18883:"python -m ...";process
//! 18887:"sglang::scheduler";...`. The stack's process is the *innermost*
//! `process` frame, which is the process that was actually sampled (here the
//! scheduler child, not the launcher). Process frames are not kept as frames.
//!
//! With `--threads`, py-spy adds one frame after the process frames,
//! `thread (<id>)` or `thread (<id>): <name>`, where the id is the OS thread id
//! in decimal or the Python thread id in `0x` hex. That frame becomes the
//! stack's thread and is not kept as a frame either. Without `--threads` the
//! raw format has no thread information. The speedscope format names every
//! profile after its thread (`Process 18887 Thread 18921 "Thread-1
//! (watchdog_thread)"`), so speedscope stacks always know their thread.
//!
//! py-spy writes a Python frame as `name (file:line)`, or `name (file)` when
//! line numbers are off or unknown. The raw format prints a shortened file
//! (`sgl_jax/srt/managers/scheduler.py`) while speedscope keeps the full path,
//! so the same function is spelled differently in the two formats. Line 0
//! means "unknown" to py-spy and is stored as `None`.
//!
//! # What a sample is
//!
//! One sample is one look at one thread's stack. In the raw format the number
//! at the end of a line says how many samples had exactly that stack. In the
//! speedscope format every entry of a profile's `samples` array is one sample
//! (py-spy writes one entry per sample, root first, with weight `1 / rate`
//! seconds), so a speedscope stack counts 1 per entry whatever its weight.
//! The exception is a profile whose unit is `"none"`, where the weight is
//! itself the sample count and must be a whole number. Identical entries of
//! one speedscope profile are merged into one [`Stack`].
//!
//! # Metrics
//!
//! [`summarize`] groups stacks by process id; stacks without any process
//! information form one group with no pid. Within a process:
//!
//! - **total samples of the process** is the sum of the counts of its stacks.
//!   Stacks with no Python frames still count here.
//! - a **function** is a Python frame's name together with its file. The line
//!   is ignored: py-spy reports the line being executed, so grouping by line
//!   would split one function into many rows.
//! - **wait samples** of a process are the samples whose leaf frame is a
//!   blocking call ([`is_wait`]: a socket `recv`, `poll`, `select`, `sleep`,
//!   `wait`, a lock `acquire`, a queue `get`, an idle asyncio loop). Its
//!   share is `100 * wait samples / total samples of the process`.
//! - a process's **role** ([`Role`]) comes from its name: the launcher runs
//!   the HTTP server and the tokenizer, `sglang::scheduler` and
//!   `sglang::detokenizer` are the other two.
//! - **own samples** ("self") of a function is the sum of the counts of the
//!   stacks whose leaf frame (the last one) is that function.
//! - **total samples** of a function is the sum of the counts of the stacks in
//!   which that function appears at least once. A recursive function counts
//!   once per stack, not once per frame.
//! - **percent** is `100 * samples / total samples of the process`, unrounded,
//!   between 0 and 100; it is 0 when the process has no samples. Own percents
//!   add up to at most 100; total percents do not add up to anything.
//!
//! Functions are listed by samples, most first, then by name, then by file,
//! with names and files compared byte by byte (so `<module>` comes before
//! `BaseProcess.run`) and a missing file first. Only the first `top_n` are
//! kept. Processes are listed by total samples, most first, then by pid, with
//! the group without a pid last. Threads within a process are listed by
//! samples, most first, then by id, with the stacks without a thread last.
//! Sums saturate at `u64::MAX` instead of overflowing.

mod flamegraph;
mod frames;
mod raw;
mod speedscope;
mod summary;

pub use flamegraph::{collapsed_lines, render_flamegraph};
pub use raw::parse_raw;
pub use speedscope::parse_speedscope;
use std::sync::Arc;

pub use summary::{
    FunctionSamples, ProcessSummary, Role, Summary, ThreadSummary, WAIT_FUNCTIONS, is_wait,
    summarize,
};

/// Everything read from one py-spy output file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    pub stacks: Vec<Stack>,
}

/// One distinct stack and how many samples saw it.
///
/// Names are shared (`Arc<str>`), not copied: a speedscope file names each
/// frame once and refers to it by index from every sample, so copying the
/// text per sample would let a small file with a long name fill memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The sampled process: the innermost `process` frame, or the pid in a
    /// speedscope profile's name. `None` when the input says nothing.
    pub process: Option<Process>,
    /// The sampled thread, when the input says which.
    pub thread: Option<Thread>,
    /// Python frames, root first and leaf last. Process and thread frames are
    /// not included. May be empty.
    pub frames: Vec<Frame>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Process {
    pub pid: u32,
    /// The text py-spy shows in quotes: the command line, or the process
    /// title such as `sglang::scheduler`. `None` when only the pid is known.
    pub name: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Thread {
    /// The id as py-spy prints it: a decimal OS thread id or `0x` hex.
    pub id: Arc<str>,
    pub name: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The function's qualified name, such as `Scheduler.run_batch`.
    pub name: Arc<str>,
    pub file: Option<Arc<str>>,
    /// The line being executed, `None` when unknown.
    pub line: Option<u32>,
}

/// Why a py-spy file could not be read. Every message is one lowercase line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("empty py-spy output")]
    Empty,
    /// A line of raw output is malformed. Lines count from 1.
    #[error("line {line}: {problem}")]
    Raw { line: usize, problem: RawProblem },
    #[error("invalid json: {0}")]
    Json(String),
    /// The JSON is not shaped like a speedscope file at all.
    #[error("not a speedscope file: {0}")]
    NotSpeedscope(String),
    /// A value inside a speedscope file is wrong; `path` points at it, such
    /// as `profiles[1].samples[4][2]`.
    #[error("{path}: {problem}")]
    Speedscope { path: String, problem: String },
    /// The flamegraph renderer refused the stacks.
    #[error("cannot render the flamegraph: {0}")]
    Flamegraph(String),
    /// [`read_input`] stopped at its limit.
    #[error("py-spy output is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot read py-spy output: {0}")]
    Read(String),
}

/// The largest py-spy output [`read_input`] accepts by default. py-spy
/// writes a few MB for minutes of sampling; anything far larger is not its
/// output (a run metadata file may name any file, `/dev/zero` included).
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Reads a py-spy output from `input`, at most `limit` bytes: a longer or
/// endless input is refused after `limit + 1` bytes rather than held whole.
pub fn read_input(input: &mut dyn std::io::Read, limit: u64) -> Result<Vec<u8>, Error> {
    let mut res = Vec::new();
    std::io::Read::read_to_end(
        &mut <&mut dyn std::io::Read as std::io::Read>::take(input, limit.saturating_add(1)),
        &mut res,
    )
    .map_err(|e| Error::Read(e.to_string()))?;
    if res.len() as u64 > limit {
        return Err(Error::TooLarge { limit });
    }
    Ok(res)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RawProblem {
    #[error("missing sample count")]
    MissingCount,
    #[error("invalid sample count {0:?}")]
    InvalidCount(String),
    #[error("empty stack")]
    EmptyStack,
    #[error("empty frame")]
    EmptyFrame,
    #[error("unterminated process frame")]
    UnterminatedProcess,
}
