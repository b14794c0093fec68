//! The small real fixture: the head of a CPU profile of sglang-jax
//! (`fixtures/xplane/jax-cpu-head.xplane.pb`, the first 1,500 events of each
//! line, metadata blobs emptied; made with `examples/read_xplane.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use trace_model::{Event, Phase};

fn fixture() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/xplane/jax-cpu-head.xplane.pb");
    std::fs::read(path).expect("read the real fixture")
}

#[test]
fn real_head_planes() {
    let mut out = String::new();
    for plane in trace_xplane::planes(&fixture()).unwrap() {
        let _ = writeln!(out, "{plane:?}");
    }
    insta::assert_snapshot!("real_head_planes", out);
}

/// Threads, the summary, and the ten names with the most total time.
#[test]
fn real_head_events() {
    let bytes = fixture();
    let mut threads = Vec::new();
    let mut by_name: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut sink = |event: &Event<'_>| match event.phase {
        Phase::Complete => {
            let entry = by_name.entry(event.name.to_owned()).or_default();
            entry.0 += 1;
            entry.1 += event.dur.unwrap();
        }
        _ => threads.push(crate::show_event(event)),
    };
    let summary = trace_xplane::read(&bytes, &mut sink).unwrap();
    let mut out = format!(
        "{} events, origin {} ps, {} names\n",
        summary.n_events,
        summary.origin_ps,
        by_name.len()
    );
    for thread in threads {
        let _ = writeln!(out, "{thread}");
    }
    let mut top: Vec<_> = by_name.into_iter().collect();
    top.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
    for (name, (count, total)) in top.into_iter().take(10) {
        let _ = writeln!(out, "{total:>16} ps {count:>6} x {name}");
    }
    insta::assert_snapshot!("real_head_events", out);
}

/// The real profile read in 2 to 7 parts: every cut falls inside the long
/// scheduler line, never between two events with one start, and the parts
/// joined are `read`'s stream, event for event.
#[test]
fn real_head_in_parts_is_the_whole_stream() {
    let bytes = fixture();
    let mut whole = crate::Lines::default();
    let summary = trace_xplane::read(&bytes, &mut whole).unwrap();
    crate::check_stream(&bytes, &Ok(summary), &whole.0);
    for n in 2..=7 {
        let mut sinks: Vec<crate::Lines> = (0..n).map(|_| crate::Lines::default()).collect();
        assert_eq!(
            trace_xplane::read_parts(&bytes, &mut sinks).unwrap(),
            summary
        );
        assert!(
            sinks.iter().all(|it| !it.0.is_empty()),
            "{n} parts, one empty"
        );
        for pair in sinks.windows(2) {
            let (last, first) = (pair[0].0.lines().last(), pair[1].0.lines().next());
            let start = |line: Option<&str>| {
                let line = line.unwrap();
                let tid = line
                    .split(" tid=")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_owned();
                (
                    tid,
                    line.split(" ts=")
                        .nth(1)
                        .map(|it| it.split(' ').next().unwrap().to_owned()),
                )
            };
            let (a, b) = (start(last), start(first));
            assert!(
                a.0 != b.0 || a.1 != b.1,
                "{n} parts: a cut between equal starts {a:?}"
            );
        }
        let joined: String = sinks.iter().map(|it| it.0.as_str()).collect();
        assert!(joined == whole.0, "{n} parts differ from the whole stream");
    }
}
