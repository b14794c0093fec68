//! Tests for the py-spy readers and the summary.
//!
//! Most tests are an input plus a snapshot, through [`check`]. The inputs are
//! either written inline or trimmed from a real sglang-jax recording in the
//! repository's `fixtures/pyspy/` folder. `INSTA_UPDATE=always cargo test -p
//! trace-pyspy` rewrites the snapshots.

mod errors;
mod hostile;
mod props;
mod snapshots;
mod totals;

use std::fmt::Write;

use trace_pyspy::{Error, FunctionSamples, Profile, Stack, parse_raw, parse_speedscope, summarize};

pub(crate) const RAW_FIXTURE: &str = include_str!("../../../../fixtures/pyspy/scheduler.raw.txt");
pub(crate) const SPEEDSCOPE_FIXTURE: &[u8] =
    include_bytes!("../../../../fixtures/pyspy/scheduler.speedscope.json");

#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    Raw(&'a str),
    Speedscope(&'a [u8]),
}

pub(crate) fn parse(input: Input<'_>) -> Result<Profile, Error> {
    match input {
        Input::Raw(text) => parse_raw(text),
        Input::Speedscope(bytes) => parse_speedscope(bytes),
    }
}

/// Parses `input`, summarises it keeping `top_n` functions, and compares the
/// rendering of both (or of the error) with the snapshot called `name`.
#[track_caller]
pub(crate) fn check(name: &str, input: Input<'_>, top_n: usize) {
    let actual = match parse(input) {
        Ok(profile) => render(&profile, top_n),
        Err(err) => format!("error: {err}\n"),
    };
    insta::assert_snapshot!(name, actual);
}

/// Asserts that `input` is rejected with exactly `expected`.
#[track_caller]
pub(crate) fn check_error(input: Input<'_>, expected: &str) {
    match parse(input) {
        Ok(profile) => panic!(
            "expected error {expected:?}, got {} stacks",
            profile.stacks.len()
        ),
        Err(err) => assert_eq!(err.to_string(), expected),
    }
}

fn render(profile: &Profile, top_n: usize) -> String {
    let summary = summarize(profile, top_n);
    let mut res = String::new();
    writeln!(res, "summary: {} samples", summary.total_samples).unwrap();
    for process in &summary.processes {
        let pid = process.pid.map_or("?".to_owned(), |it| it.to_string());
        let name = process.name.as_deref().unwrap_or("?");
        writeln!(
            res,
            "process {pid} {name:?}: {} samples",
            process.total_samples
        )
        .unwrap();
        for thread in &process.threads {
            let id = thread.id.as_deref().unwrap_or("?");
            let name = thread.name.as_deref().unwrap_or("?");
            writeln!(res, "  thread {id} {name:?}: {}", thread.samples).unwrap();
        }
        render_functions(&mut res, "own", &process.top_own);
        render_functions(&mut res, "total", &process.top_total);
    }
    writeln!(res, "\nstacks: {}", profile.stacks.len()).unwrap();
    for stack in &profile.stacks {
        render_stack(&mut res, stack);
    }
    res
}

fn render_functions(res: &mut String, title: &str, functions: &[FunctionSamples]) {
    writeln!(res, "  {title}:").unwrap();
    for function in functions {
        let file = function.file.as_deref().unwrap_or("?");
        writeln!(
            res,
            "    {:>5} {:>6.2}%  {} ({file})",
            function.samples, function.percent, function.name
        )
        .unwrap();
    }
}

fn render_stack(res: &mut String, stack: &Stack) {
    let process = match &stack.process {
        Some(it) => format!("{} {:?}", it.pid, it.name.as_deref().unwrap_or("?")),
        None => "?".to_owned(),
    };
    let thread = match &stack.thread {
        Some(it) => format!("{} {:?}", it.id, it.name.as_deref().unwrap_or("?")),
        None => "?".to_owned(),
    };
    writeln!(
        res,
        "- count {} process {process} thread {thread}",
        stack.count
    )
    .unwrap();
    for frame in &stack.frames {
        let location = match (&frame.file, frame.line) {
            (Some(file), Some(line)) => format!(" @ {file}:{line}"),
            (Some(file), None) => format!(" @ {file}"),
            (None, _) => String::new(),
        };
        writeln!(res, "    {}{location}", frame.name).unwrap();
    }
}
