//! Property tests: no input makes a reader or the summary panic, and the
//! summary's numbers keep their invariants on any well-formed profile.

use proptest::prelude::*;
use serde_json::Value;
use trace_pyspy::{Frame, Process, Profile, Stack, Thread, parse_raw, parse_speedscope, summarize};

use crate::{RAW_FIXTURE, SPEEDSCOPE_FIXTURE};

/// Parses and, when that works, summarises; either way it must return.
fn run_raw(text: &str) {
    if let Ok(profile) = parse_raw(text) {
        summarize(&profile, 3);
    }
}

fn run_speedscope(bytes: &[u8]) {
    if let Ok(profile) = parse_speedscope(bytes) {
        summarize(&profile, 3);
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let piece = prop::sample::select(vec![
        ";",
        " ",
        "\"",
        "(",
        ")",
        ":",
        "\n",
        "0",
        "9",
        "process 1:\"",
        "thread (",
        "x",
        "]",
        "[",
        "{",
        "}",
        ",",
        "-",
    ]);
    let edit = prop_oneof![
        (any::<usize>(), piece).prop_map(|(at, s)| Edit::Insert(at, s.to_owned())),
        (any::<usize>(), 1usize..50).prop_map(|(at, len)| Edit::Delete(at, len)),
    ];
    prop::collection::vec(edit, 1..8)
}

fn apply(base: &str, edits: &[Edit]) -> String {
    let mut text: Vec<char> = base.chars().collect();
    for edit in edits {
        match edit {
            Edit::Insert(at, s) => {
                let at = at % (text.len() + 1);
                text.splice(at..at, s.chars());
            }
            Edit::Delete(at, len) => {
                let at = at % (text.len() + 1);
                let end = (at + len).min(text.len());
                text.drain(at..end);
            }
        }
    }
    text.into_iter().collect()
}

/// JSON built from the keys a speedscope file uses, so that the reader gets
/// past the first checks.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..12).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "sampled",
            "none",
            "seconds",
            "process 1:\"p\"",
            "thread (2)",
            "f (a.py:1)",
            ""
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        let key = prop::sample::select(vec![
            "profiles", "shared", "frames", "samples", "weights", "unit", "type", "name", "file",
            "line",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6).prop_map(|pairs| Value::Object(
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

/// Small well-formed profiles: few names, so that functions repeat and
/// recurse.
fn profiles() -> impl Strategy<Value = Profile> {
    let frame = (0u8..4, 0u8..2, prop::option::of(1u32..4)).prop_map(|(name, file, line)| Frame {
        name: format!("f{name}").into(),
        file: Some(format!("m{file}.py").into()),
        line,
    });
    let stack = (
        prop::option::of(1u32..3),
        prop::option::of(0u8..2),
        prop::collection::vec(frame, 0..6),
        0u64..20,
    )
        .prop_map(|(pid, thread, frames, count)| Stack {
            process: pid.map(|pid| Process {
                pid,
                name: Some(format!("p{pid}").into()),
            }),
            thread: thread.map(|id| Thread {
                id: id.to_string().into(),
                name: None,
            }),
            frames,
            count,
        });
    prop::collection::vec(stack, 0..12).prop_map(|stacks| Profile { stacks })
}

proptest! {
    #[test]
    fn raw_never_panics(text in ".{0,300}") {
        run_raw(&text);
    }

    #[test]
    fn raw_lines_never_panic(lines in prop::collection::vec("[a-z;:\"() 0-9x]{0,40}", 0..8)) {
        run_raw(&lines.join("\n"));
    }

    #[test]
    fn mutated_raw_fixture_never_panics(edits in edits()) {
        run_raw(&apply(RAW_FIXTURE, &edits));
    }

    #[test]
    fn speedscope_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        run_speedscope(&bytes);
    }

    #[test]
    fn mutated_speedscope_fixture_never_panics(edits in edits()) {
        run_speedscope(apply(std::str::from_utf8(SPEEDSCOPE_FIXTURE).unwrap(), &edits).as_bytes());
    }

    #[test]
    fn speedscope_shaped_json_never_panics(value in json_value()) {
        run_speedscope(value.to_string().as_bytes());
    }

    #[test]
    fn summary_invariants(profile in profiles()) {
        let summary = summarize(&profile, usize::MAX);
        let stack_total: u64 = profile.stacks.iter().map(|it| it.count).sum();
        prop_assert_eq!(summary.total_samples, stack_total);
        prop_assert_eq!(summary.processes.iter().map(|it| it.total_samples).sum::<u64>(), stack_total);
        for process in &summary.processes {
            let stacks: Vec<&Stack> = profile
                .stacks
                .iter()
                .filter(|it| it.process.as_ref().map(|p| p.pid) == process.pid)
                .collect();
            let without_frames: u64 = stacks.iter().filter(|it| it.frames.is_empty()).map(|it| it.count).sum();
            let own_sum: u64 = process.top_own.iter().map(|it| it.samples).sum();
            prop_assert_eq!(own_sum + without_frames, process.total_samples);
            prop_assert_eq!(process.threads.iter().map(|it| it.samples).sum::<u64>(), process.total_samples);
            for own in &process.top_own {
                let total = process.top_total.iter().find(|it| it.name == own.name && it.file == own.file).unwrap();
                prop_assert!(own.samples <= total.samples);
            }
            for function in &process.top_total {
                prop_assert!(function.samples <= process.total_samples);
                prop_assert!((0.0..=100.0).contains(&function.percent));
            }
            for pair in process.top_total.windows(2) {
                prop_assert!(pair[0].samples >= pair[1].samples);
            }
        }
    }
}
