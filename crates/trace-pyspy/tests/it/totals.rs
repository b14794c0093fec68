//! Per-process totals recomputed here by simpler means, so that the summary is
//! not only checked against its own snapshot.

use std::collections::BTreeMap;

use serde_json::Value;
use trace_pyspy::{parse_raw, parse_speedscope, summarize};

use crate::{RAW_FIXTURE, SPEEDSCOPE_FIXTURE};

/// The pids and totals the summary reports, in pid order.
fn summary_totals(summary: &trace_pyspy::Summary) -> BTreeMap<u32, u64> {
    summary
        .processes
        .iter()
        .map(|it| (it.pid.expect("every stack has a process"), it.total_samples))
        .collect()
}

// The fixture's command lines hold no `;`, so a plain split finds the frames:
// the sampled process is the last one that starts with `process `.
#[test]
fn raw_fixture_totals() {
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    let mut n_samples = 0;
    for line in RAW_FIXTURE.lines().filter(|it| !it.is_empty()) {
        let (stack, count) = line.rsplit_once(' ').unwrap();
        let count: u64 = count.parse().unwrap();
        let innermost = stack
            .split(';')
            .rfind(|it| it.starts_with("process "))
            .unwrap();
        let pid: u32 = innermost["process ".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        *expected.entry(pid).or_default() += count;
        n_samples += count;
    }
    // Launcher, scheduler and detokenizer are all in the fixture.
    assert_eq!(expected.len(), 3);

    let summary = summarize(&parse_raw(RAW_FIXTURE).unwrap(), 3);
    assert_eq!(summary_totals(&summary), expected);
    assert_eq!(summary.total_samples, n_samples);
}

// py-spy writes one speedscope profile per thread, named after its process,
// and one entry in `samples` per sample.
#[test]
fn speedscope_fixture_totals() {
    let root: Value = serde_json::from_slice(SPEEDSCOPE_FIXTURE).unwrap();
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for profile in root["profiles"].as_array().unwrap() {
        let name = profile["name"].as_str().unwrap();
        let pid: u32 = name.split(' ').nth(1).unwrap().parse().unwrap();
        *expected.entry(pid).or_default() += profile["samples"].as_array().unwrap().len() as u64;
    }
    assert_eq!(expected.len(), 3);

    let summary = summarize(&parse_speedscope(SPEEDSCOPE_FIXTURE).unwrap(), 3);
    assert_eq!(summary_totals(&summary), expected);
    assert_eq!(summary.total_samples, expected.values().sum::<u64>());
}

// A function's own samples in a process are the counts of the lines whose
// last frame is that function, whatever the line number.
#[test]
fn raw_fixture_own_samples_of_the_top_leaf() {
    let summary = summarize(&parse_raw(RAW_FIXTURE).unwrap(), 1);
    let scheduler = summary
        .processes
        .iter()
        .find(|it| it.name.as_deref() == Some("sglang::scheduler"))
        .unwrap();
    let top = &scheduler.top_own[0];
    let file = top.file.as_deref().unwrap();
    let prefix = format!(";{} ({file}:", top.name);
    let expected: u64 = RAW_FIXTURE
        .lines()
        .filter(|line| line.contains("process 18887:"))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(stack, _)| {
            stack
                .rfind(';')
                .is_some_and(|idx| stack[idx..].starts_with(&prefix))
        })
        .map(|(_, count)| count.parse::<u64>().unwrap())
        .sum();
    assert_eq!(top.samples, expected);
    assert_eq!(
        top.percent,
        expected as f64 * 100.0 / scheduler.total_samples as f64
    );
}
