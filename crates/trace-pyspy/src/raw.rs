//! The raw (collapsed stacks) format: one line per distinct stack,
//! `frame;frame;...;frame COUNT`, root first.
//!
//! The count is the last space-separated token. Frames are separated by `;`,
//! except inside a process frame's quoted command line, which may hold `;` of
//! its own: a process frame ends at the first `";` (or at a final `"`).
//! A command line that itself contains `";` is therefore cut short; py-spy does
//! not escape quotes, so no reader can do better. Blank lines are skipped.

use crate::frames::{parse_python, parse_thread, process_prefix};
use crate::{Error, Process, Profile, RawProblem, Stack};

/// Reads the output of `py-spy record --format raw`.
pub fn parse_raw(text: &str) -> Result<Profile, Error> {
    if text.trim().is_empty() {
        return Err(Error::Empty);
    }
    let mut stacks = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let stack = parse_line(line).map_err(|problem| Error::Raw {
            line: line_idx + 1,
            problem,
        })?;
        stacks.push(stack);
    }
    Ok(Profile { stacks })
}

fn parse_line(line: &str) -> Result<Stack, RawProblem> {
    let line = line.trim_end();
    let (stack_text, count_text) = line.rsplit_once(' ').ok_or(RawProblem::MissingCount)?;
    let count = parse_count(count_text)?;
    if stack_text.is_empty() {
        return Err(RawProblem::EmptyStack);
    }

    let mut rest = Some(stack_text);
    let mut process = None;
    while let Some((pid, after_quote)) = rest.and_then(process_prefix) {
        let (name, tail) = match after_quote.find("\";") {
            Some(end) => (&after_quote[..end], Some(&after_quote[end + 2..])),
            None => match after_quote.strip_suffix('"') {
                Some(name) => (name, None),
                None => return Err(RawProblem::UnterminatedProcess),
            },
        };
        process = Some(Process {
            pid,
            name: Some(name.into()),
        });
        rest = tail;
    }

    let mut thread = None;
    let mut frames = Vec::new();
    if let Some(rest) = rest {
        for (frame_idx, text) in rest.split(';').enumerate() {
            if text.is_empty() {
                return Err(RawProblem::EmptyFrame);
            }
            if frame_idx == 0
                && let Some(it) = parse_thread(text)
            {
                thread = Some(it);
                continue;
            }
            frames.push(parse_python(text));
        }
    }
    Ok(Stack {
        process,
        thread,
        frames,
        count,
    })
}

fn parse_count(text: &str) -> Result<u64, RawProblem> {
    let invalid = || {
        let shown: String = text.chars().take(40).collect();
        RawProblem::InvalidCount(shown)
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    text.parse::<u64>().map_err(|_| invalid())
}
