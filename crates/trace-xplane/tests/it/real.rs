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
