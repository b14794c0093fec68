//! Per-process totals and the top functions by own and by total samples.
//!
//! The metrics are defined in the crate docs; this file is their one
//! implementation.

use std::collections::{HashMap, HashSet};

use crate::Profile;

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The sum of all stack counts in the profile.
    pub total_samples: u64,
    pub processes: Vec<ProcessSummary>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSummary {
    /// `None` for the stacks that carry no process information.
    pub pid: Option<u32>,
    /// The first name seen for this pid.
    pub name: Option<String>,
    pub total_samples: u64,
    /// What the process is in the sglang-jax server, from its name.
    pub role: Role,
    /// Samples whose leaf frame is a blocking call ([`is_wait`]).
    pub wait_samples: u64,
    /// Samples per thread. Stacks without thread information are one entry
    /// with no id.
    pub threads: Vec<ThreadSummary>,
    /// At most `top_n` functions by own samples.
    pub top_own: Vec<FunctionSamples>,
    /// At most `top_n` functions by total samples.
    pub top_total: Vec<FunctionSamples>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadSummary {
    pub id: Option<String>,
    /// The first name seen for this thread id.
    pub name: Option<String>,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSamples {
    pub name: String,
    pub file: Option<String>,
    pub samples: u64,
    /// `100 * samples / total_samples` of the process.
    pub percent: f64,
}

type FunctionKey<'a> = (&'a str, Option<&'a str>);

#[derive(Default)]
struct ProcessAcc<'a> {
    name: Option<&'a str>,
    total_samples: u64,
    wait_samples: u64,
    threads: HashMap<Option<&'a str>, (Option<&'a str>, u64)>,
    own: HashMap<FunctionKey<'a>, u64>,
    total: HashMap<FunctionKey<'a>, u64>,
}

/// Counts samples per process and lists each process's `top_n` functions by
/// own and by total samples.
pub fn summarize(profile: &Profile, top_n: usize) -> Summary {
    let mut by_pid: HashMap<Option<u32>, ProcessAcc<'_>> = HashMap::new();
    let mut total_samples = 0u64;
    let mut seen_in_stack: HashSet<FunctionKey<'_>> = HashSet::new();
    for stack in &profile.stacks {
        let count = stack.count;
        total_samples = total_samples.saturating_add(count);

        let acc = by_pid
            .entry(stack.process.as_ref().map(|it| it.pid))
            .or_default();
        if acc.name.is_none() {
            acc.name = stack.process.as_ref().and_then(|it| it.name.as_deref());
        }
        acc.total_samples = acc.total_samples.saturating_add(count);

        let thread_id = stack.thread.as_ref().map(|it| &*it.id);
        let thread = acc.threads.entry(thread_id).or_default();
        if thread.0.is_none() {
            thread.0 = stack.thread.as_ref().and_then(|it| it.name.as_deref());
        }
        thread.1 = thread.1.saturating_add(count);

        if let Some(leaf) = stack.frames.last() {
            if is_wait(&leaf.name) {
                acc.wait_samples = acc.wait_samples.saturating_add(count);
            }
            let own = acc
                .own
                .entry((&*leaf.name, leaf.file.as_deref()))
                .or_default();
            *own = own.saturating_add(count);
        }
        seen_in_stack.clear();
        for frame in &stack.frames {
            let key = (&*frame.name, frame.file.as_deref());
            if seen_in_stack.insert(key) {
                let total = acc.total.entry(key).or_default();
                *total = total.saturating_add(count);
            }
        }
    }

    let mut processes: Vec<ProcessSummary> = by_pid
        .into_iter()
        .map(|(pid, acc)| {
            let mut threads: Vec<ThreadSummary> = acc
                .threads
                .into_iter()
                .map(|(id, (name, samples))| ThreadSummary {
                    id: id.map(str::to_owned),
                    name: name.map(str::to_owned),
                    samples,
                })
                .collect();
            threads.sort_by(|a, b| {
                b.samples
                    .cmp(&a.samples)
                    .then_with(|| (a.id.is_none(), &a.id).cmp(&(b.id.is_none(), &b.id)))
            });
            ProcessSummary {
                pid,
                role: Role::of(acc.name),
                name: acc.name.map(str::to_owned),
                total_samples: acc.total_samples,
                wait_samples: acc.wait_samples,
                threads,
                top_own: top_functions(acc.own, acc.total_samples, top_n),
                top_total: top_functions(acc.total, acc.total_samples, top_n),
            }
        })
        .collect();
    processes.sort_by(|a, b| {
        b.total_samples
            .cmp(&a.total_samples)
            .then_with(|| (a.pid.is_none(), a.pid).cmp(&(b.pid.is_none(), b.pid)))
    });
    Summary {
        total_samples,
        processes,
    }
}

fn top_functions(
    samples: HashMap<FunctionKey<'_>, u64>,
    process_samples: u64,
    top_n: usize,
) -> Vec<FunctionSamples> {
    let mut rows: Vec<(FunctionKey<'_>, u64)> = samples.into_iter().collect();
    rows.sort_by(|(a_key, a_samples), (b_key, b_samples)| {
        b_samples.cmp(a_samples).then_with(|| a_key.cmp(b_key))
    });
    rows.truncate(top_n);
    rows.into_iter()
        .map(|((name, file), samples)| FunctionSamples {
            name: name.to_owned(),
            file: file.map(str::to_owned),
            samples,
            percent: percent(samples, process_samples),
        })
        .collect()
}

fn percent(samples: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        samples as f64 * 100.0 / total as f64
    }
}

/// What a sampled process is in an sglang-jax server, from the name py-spy
/// shows for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The launched process (`... sgl_jax.launch_server ...`): it runs the
    /// HTTP server and the tokenizer manager.
    HttpServer,
    /// The process titled `sglang::scheduler`.
    Scheduler,
    /// The process titled `sglang::detokenizer`.
    Detokenizer,
    Other,
}

impl Role {
    pub fn of(name: Option<&str>) -> Role {
        let Some(name) = name else {
            return Role::Other;
        };
        if name.contains("sglang::scheduler") {
            Role::Scheduler
        } else if name.contains("sglang::detokenizer") {
            Role::Detokenizer
        } else if name.contains("launch_server") {
            Role::HttpServer
        } else {
            Role::Other
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::HttpServer => "HTTP server and tokenizer",
            Role::Scheduler => "scheduler",
            Role::Detokenizer => "detokenizer",
            Role::Other => "other",
        }
    }
}

/// Leaf functions that block: waiting on a socket, a queue, a lock, a timer
/// or an event loop with nothing to run. Compared with the part of the
/// function name after its last `.`, except `Runner.run`, which is a leaf
/// only while the asyncio loop (uvloop, native code) waits for events.
pub const WAIT_FUNCTIONS: &[&str] = &[
    "recv",
    "recv_pyobj",
    "recv_multipart",
    "recv_string",
    "recv_json",
    "poll",
    "select",
    "sleep",
    "wait",
    "acquire",
    "get",
    "_wait_for_tstate_lock",
    "run_forever",
    "Runner.run",
];

/// Whether a leaf frame's function is a blocking call ([`WAIT_FUNCTIONS`]).
pub fn is_wait(function: &str) -> bool {
    let short = function.rsplit('.').next().unwrap_or(function);
    WAIT_FUNCTIONS
        .iter()
        .any(|it| *it == short || (it.contains('.') && *it == function))
}

#[cfg(test)]
mod wait_tests {
    use super::*;
    use crate::parse_raw;

    #[test]
    fn roles_and_wait_samples_on_the_fixture() {
        let text = include_str!("../../../fixtures/pyspy/scheduler.raw.txt");
        let summary = summarize(&parse_raw(text).unwrap(), 5);
        // Independently: per innermost process, the counts of the lines
        // whose leaf function (before ` (file:line)`) is a wait.
        let mut expected: HashMap<u32, u64> = HashMap::new();
        for line in text.lines() {
            let (stack, count) = line.rsplit_once(' ').unwrap();
            let frames: Vec<&str> = stack.split(';').collect();
            let pid: u32 = frames
                .iter()
                .filter_map(|f| f.strip_prefix("process "))
                .next_back()
                .and_then(|f| f.split(':').next())
                .unwrap()
                .parse()
                .unwrap();
            let leaf = frames.last().unwrap();
            let name = leaf.split(" (").next().unwrap();
            if !leaf.starts_with("process ") && is_wait(name) {
                *expected.entry(pid).or_default() += count.parse::<u64>().unwrap();
            }
        }
        for process in &summary.processes {
            let pid = process.pid.unwrap();
            assert_eq!(
                process.wait_samples,
                expected.get(&pid).copied().unwrap_or(0),
                "pid {pid}"
            );
        }
        let role = |pid: u32| {
            summary
                .processes
                .iter()
                .find(|p| p.pid == Some(pid))
                .unwrap()
                .role
        };
        assert_eq!(role(18883), Role::HttpServer);
        assert_eq!(role(18887), Role::Scheduler);
        assert_eq!(role(18888), Role::Detokenizer);
        // The fixture's scheduler waits in Socket.recv_pyobj (9 + 13), the
        // launcher's idle event loop is `Runner.run` (38).
        assert_eq!(expected[&18887], 22);
        assert!(expected[&18883] >= 38);
    }

    #[test]
    fn wait_names() {
        assert!(is_wait("Socket.recv_pyobj"));
        assert!(is_wait("Queue.get"));
        assert!(is_wait("Runner.run"));
        assert!(!is_wait("Scheduler.run"));
        assert!(!is_wait("ModelRunner._forward"));
    }
}
