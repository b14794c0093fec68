//! The speedscope format as py-spy writes it: `shared.frames` holds every
//! frame once, and each `sampled` profile (one per thread) lists its samples
//! as arrays of frame indices, root first.
//!
//! The file is read into a `serde_json::Value`, which is fine for the sizes
//! py-spy produces (a 10 s recording is a few hundred KB) and lets every error
//! name the JSON path it is about. Keys py-spy writes but this reader does not
//! need (`$schema`, `exporter`, `startValue`, `col`, ...) are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::frames::{parse_process, parse_python, parse_thread};
use crate::{Error, Frame, Process, Profile, Stack, Thread};

/// Reads the output of `py-spy record --format speedscope`.
pub fn parse_speedscope(bytes: &[u8]) -> Result<Profile, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty);
    }
    let root: Value = serde_json::from_slice(bytes).map_err(|err| Error::Json(err.to_string()))?;
    let Some(root) = root.as_object() else {
        return Err(not_speedscope("top level is not an object"));
    };
    let profiles = match root.get("profiles").and_then(Value::as_array) {
        Some(profiles) if !profiles.is_empty() => profiles,
        _ => return Err(not_speedscope("no profiles")),
    };
    let Some(frames) = root
        .get("shared")
        .and_then(|it| it.get("frames"))
        .and_then(Value::as_array)
    else {
        return Err(not_speedscope("no shared.frames"));
    };
    let frames = frames
        .iter()
        .enumerate()
        .map(|(frame_idx, frame)| read_frame(frame, &format!("shared.frames[{frame_idx}]")))
        .collect::<Result<Vec<_>, _>>()?;

    let mut stacks = Vec::new();
    for (profile_idx, profile) in profiles.iter().enumerate() {
        read_profile(
            profile,
            &format!("profiles[{profile_idx}]"),
            &frames,
            &mut stacks,
        )?;
    }
    Ok(Profile { stacks })
}

/// A shared frame, already sorted into what it stands for.
enum SharedFrame {
    Process(Process),
    Thread(Thread),
    Python(Frame),
}

fn read_frame(frame: &Value, path: &str) -> Result<SharedFrame, Error> {
    let frame = as_object(frame, path)?;
    let name = match frame.get("name") {
        Some(Value::String(name)) => name.as_str(),
        _ => return Err(at(format!("{path}.name"), "expected a string")),
    };
    let file = match frame.get("file") {
        None | Some(Value::Null) => None,
        Some(Value::String(file)) => Some(file.as_str()).filter(|it| !it.is_empty()),
        Some(_) => return Err(at(format!("{path}.file"), "expected a string")),
    };
    let line = match frame.get("line") {
        None | Some(Value::Null) => None,
        Some(Value::Number(line)) => match line.as_u64().and_then(|it| u32::try_from(it).ok()) {
            Some(line) => (line != 0).then_some(line),
            None => return Err(at(format!("{path}.line"), format!("invalid line {line}"))),
        },
        Some(_) => return Err(at(format!("{path}.line"), "expected a number")),
    };
    if file.is_none() {
        if let Some(process) = parse_process(name) {
            return Ok(SharedFrame::Process(process));
        }
        if let Some(thread) = parse_thread(name) {
            return Ok(SharedFrame::Thread(thread));
        }
        // A frame without a file may still carry its location in the name.
        return Ok(SharedFrame::Python(parse_python(name)));
    }
    Ok(SharedFrame::Python(Frame {
        name: name.into(),
        file: file.map(Arc::from),
        line,
    }))
}

fn read_profile(
    profile: &Value,
    path: &str,
    frames: &[SharedFrame],
    stacks: &mut Vec<Stack>,
) -> Result<(), Error> {
    let profile = as_object(profile, path)?;
    match profile.get("type") {
        Some(Value::String(kind)) if kind == "sampled" => {}
        Some(Value::String(kind)) => {
            return Err(at(
                format!("{path}.type"),
                format!("unsupported profile type {kind:?}"),
            ));
        }
        _ => return Err(at(format!("{path}.type"), "expected a string")),
    }
    let (name_process, name_thread) = match profile.get("name") {
        Some(Value::String(name)) => parse_profile_name(name),
        _ => (None, None),
    };
    let unit_is_count = matches!(profile.get("unit"), Some(Value::String(unit)) if unit == "none");
    let Some(samples) = profile.get("samples").and_then(Value::as_array) else {
        return Err(at(format!("{path}.samples"), "expected an array"));
    };
    let weights = if unit_is_count {
        let Some(weights) = profile.get("weights").and_then(Value::as_array) else {
            return Err(at(format!("{path}.weights"), "expected an array"));
        };
        if weights.len() != samples.len() {
            let problem = format!("{} weights for {} samples", weights.len(), samples.len());
            return Err(at(format!("{path}.weights"), problem));
        }
        Some(weights)
    } else {
        None
    };

    // Identical samples of one profile share a stack; the key is the list of
    // frame indices, and the value the position of the stack in `stacks`.
    let mut seen: HashMap<Vec<usize>, usize> = HashMap::new();
    for (sample_idx, sample) in samples.iter().enumerate() {
        let sample_path = format!("{path}.samples[{sample_idx}]");
        let Some(sample) = sample.as_array() else {
            return Err(at(sample_path, "expected an array"));
        };
        let count = match weights {
            Some(weights) => read_count(
                &weights[sample_idx],
                &format!("{path}.weights[{sample_idx}]"),
            )?,
            None => 1,
        };
        let mut indices = Vec::with_capacity(sample.len());
        for (depth, index) in sample.iter().enumerate() {
            let index_path = || format!("{sample_path}[{depth}]");
            let index = match index.as_u64() {
                Some(raw) => match usize::try_from(raw) {
                    Ok(index) if index < frames.len() => index,
                    _ => {
                        let problem =
                            format!("frame index {raw} out of range ({} frames)", frames.len());
                        return Err(at(index_path(), problem));
                    }
                },
                None => return Err(at(index_path(), "expected a frame index")),
            };
            indices.push(index);
        }
        if let Some(&stack_idx) = seen.get(&indices) {
            let stack: &mut Stack = &mut stacks[stack_idx];
            stack.count = stack.count.saturating_add(count);
            continue;
        }
        let stack = build_stack(&indices, frames, count, &name_process, &name_thread);
        seen.insert(indices, stacks.len());
        stacks.push(stack);
    }
    Ok(())
}

fn build_stack(
    indices: &[usize],
    frames: &[SharedFrame],
    count: u64,
    name_process: &Option<Process>,
    name_thread: &Option<Thread>,
) -> Stack {
    let mut process = None;
    let mut thread = None;
    let mut python = Vec::new();
    let mut in_prefix = true;
    for &index in indices {
        match &frames[index] {
            SharedFrame::Process(it) if in_prefix && thread.is_none() => {
                process = Some(it.clone());
            }
            SharedFrame::Thread(it) if in_prefix && thread.is_none() => {
                thread = Some(it.clone());
            }
            SharedFrame::Python(it) => {
                in_prefix = false;
                python.push(it.clone());
            }
            // A process or thread frame after the stack has begun is odd; keep
            // it as an ordinary frame so that no sample is lost.
            SharedFrame::Process(it) => {
                in_prefix = false;
                let name = format!(
                    "process {}:\"{}\"",
                    it.pid,
                    it.name.as_deref().unwrap_or("")
                );
                python.push(Frame {
                    name: name.into(),
                    file: None,
                    line: None,
                });
            }
            SharedFrame::Thread(it) => {
                in_prefix = false;
                let name = match &it.name {
                    Some(name) => format!("thread ({}): {name}", it.id),
                    None => format!("thread ({})", it.id),
                };
                python.push(Frame {
                    name: name.into(),
                    file: None,
                    line: None,
                });
            }
        }
    }
    Stack {
        process: process.or_else(|| name_process.clone()),
        thread: thread.or_else(|| name_thread.clone()),
        frames: python,
        count,
    }
}

/// Reads `Process <pid> Thread <id> "<name>"` or `Thread <id> "<name>"`, the
/// profile names py-spy writes with and without `--subprocesses`.
fn parse_profile_name(name: &str) -> (Option<Process>, Option<Thread>) {
    let (process, rest) = match name.strip_prefix("Process ") {
        Some(rest) => match rest.split_once(' ') {
            Some((pid, rest)) => match pid.parse::<u32>() {
                Ok(pid) => (Some(Process { pid, name: None }), rest),
                Err(_) => return (None, None),
            },
            None => return (None, None),
        },
        None => (None, name),
    };
    let Some(rest) = rest.strip_prefix("Thread ") else {
        return (process, None);
    };
    let (id, thread_name) = match rest.split_once(' ') {
        Some((id, quoted)) => {
            let inner = quoted.strip_prefix('"').and_then(|it| it.strip_suffix('"'));
            (id, inner.filter(|it| !it.is_empty()).map(str::to_owned))
        }
        None => (rest, None),
    };
    if id.is_empty() {
        return (process, None);
    }
    (
        process,
        Some(Thread {
            id: id.into(),
            name: thread_name.map(Arc::from),
        }),
    )
}

fn read_count(weight: &Value, path: &str) -> Result<u64, Error> {
    if let Some(count) = weight.as_u64() {
        return Ok(count);
    }
    match weight {
        Value::Number(number) => match number.as_f64() {
            Some(it) if it >= 0.0 && it.fract() == 0.0 && it <= u64::MAX as f64 => Ok(it as u64),
            _ => Err(at(
                path.to_owned(),
                format!("invalid sample count {number}"),
            )),
        },
        _ => Err(at(path.to_owned(), "expected a number")),
    }
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Error> {
    value
        .as_object()
        .ok_or_else(|| at(path.to_owned(), "expected an object"))
}

fn at(path: String, problem: impl Into<String>) -> Error {
    Error::Speedscope {
        path,
        problem: problem.into(),
    }
}

fn not_speedscope(problem: &str) -> Error {
    Error::NotSpeedscope(problem.to_owned())
}
