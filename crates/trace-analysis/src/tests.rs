//! Analyzer tests: synthetic event lists in, a textual dump of the analysis
//! out, compared with insta snapshots.

use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps};

use crate::analyzer::ROOT_CAP;
use crate::{Analysis, Analyzer, OpKind, SelfTimeFix};

/// A compact way to write events: (phase, name, tid, ts µs, dur µs).
type Spec = (&'static str, &'static str, u64, Option<i64>, Option<i64>);

/// Analyses in both modes, and split in two at every point and merged;
/// whenever the online or a merged one claims exact self times it must
/// equal the buffered one, which is returned.
fn analyse(specs: &[Spec], args: &[(&str, &[Arg<'static>])]) -> Analysis {
    let online = analyse_with(Analyzer::new(), specs, args);
    let buffered = analyse_with(Analyzer::buffered(), specs, args);
    assert!(buffered.self_time_exact);
    if online.self_time_exact {
        assert_eq!(online, buffered);
    } else {
        // Out of order only: a second pass over the threads that broke the
        // order makes it exact.
        assert!(!online.unordered_threads.is_empty());
        assert_eq!(fixed(online.clone(), specs, args), buffered);
    }
    for cut in 0..=specs.len() {
        for make in [Analyzer::new, Analyzer::buffered] {
            let mut first = make();
            feed(&mut first, &specs[..cut], args);
            let mut second = make();
            feed(&mut second, &specs[cut..], args);
            first.merge(second);
            let merged = first.finish();
            if merged.self_time_exact {
                assert_eq!(merged, buffered, "cut before event {cut}");
            } else if !merged.unordered_threads.is_empty() {
                assert_eq!(
                    fixed(merged, specs, args),
                    buffered,
                    "cut before event {cut}"
                );
            } else {
                assert!(!online.self_time_exact || cut > 0, "cut {cut}");
            }
        }
    }
    buffered
}

/// `analysis` made exact by a [`SelfTimeFix`] fed the events again: one
/// that puts them in order within its window, and one that keeps them all,
/// which must agree.
fn fixed(analysis: Analysis, specs: &[Spec], args: &[(&str, &[Arg<'static>])]) -> Analysis {
    let mut windowed = analysis.clone();
    let mut fix = SelfTimeFix::new(&windowed);
    feed(&mut fix, specs, args);
    assert!(fix.apply(&mut windowed), "the window holds a few events");
    let mut buffered = analysis;
    let mut fix = SelfTimeFix::buffered(&buffered);
    feed(&mut fix, specs, args);
    assert!(fix.apply(&mut buffered));
    assert_eq!(windowed, buffered);
    buffered
}

fn analyse_with(
    mut analyzer: Analyzer,
    specs: &[Spec],
    args: &[(&str, &[Arg<'static>])],
) -> Analysis {
    feed(&mut analyzer, specs, args);
    analyzer.finish()
}

fn feed(analyzer: &mut dyn EventSink, specs: &[Spec], args: &[(&str, &[Arg<'static>])]) {
    for &(ph, name, tid, ts, dur) in specs {
        let phase = if ph.is_empty() {
            Phase::Missing
        } else {
            Phase::from_code(ph)
        };
        let event_args = args
            .iter()
            .find(|(it, _)| *it == name)
            .map_or(&[][..], |(_, a)| a);
        analyzer.event(&Event {
            phase,
            name,
            cat: "",
            pid: 1,
            tid,
            ts: ts.map(|it| it * 1_000_000 as Ps),
            dur: dur.map(|it| it * 1_000_000 as Ps),
            args: event_args,
        });
    }
}

fn dump(analysis: &Analysis) -> String {
    let mut res = format!(
        "total_events={} op_events={} unique={} traced_ps={} unmatched_begin={} unmatched_end={} invalid={}\n",
        analysis.total_events,
        analysis.op_events,
        analysis.unique_operations(),
        analysis.traced_time_ps(),
        analysis.unmatched_begin,
        analysis.unmatched_end,
        analysis.invalid_events,
    );
    for it in &analysis.phases {
        res.push_str(&format!("phase {} {}\n", it.label(), it.count));
    }
    for op in &analysis.ops {
        res.push_str(&format!(
            "op {:?} count={} total={} max={} self={} kind={:?} module={:?}\n",
            op.name, op.count, op.total_ps, op.max_ps, op.self_ps, op.kind, op.hlo_module
        ));
    }
    res
}

#[track_caller]
fn check(specs: &[Spec], expect: &str) {
    let actual = dump(&analyse(specs, &[]));
    assert_eq!(actual, expect, "actual:\n{actual}");
}

#[test]
fn self_time_subtracts_direct_children_only() {
    // outer [0,100) holds mid [10,60) which holds inner [20,30); a sibling
    // [70,80) sits directly in outer.
    check(
        &[
            ("X", "outer", 1, Some(0), Some(100)),
            ("X", "mid", 1, Some(10), Some(50)),
            ("X", "inner", 1, Some(20), Some(10)),
            ("X", "sib", 1, Some(70), Some(10)),
        ],
        r#"total_events=4 op_events=4 unique=4 traced_ps=100000000 unmatched_begin=0 unmatched_end=0 invalid=0
phase X 4
op "outer" count=1 total=100000000 max=100000000 self=40000000 kind=Other module=None
op "mid" count=1 total=50000000 max=50000000 self=40000000 kind=Other module=None
op "inner" count=1 total=10000000 max=10000000 self=10000000 kind=Other module=None
op "sib" count=1 total=10000000 max=10000000 self=10000000 kind=Other module=None
"#,
    );
}

#[test]
fn other_threads_are_not_children() {
    check(
        &[
            ("X", "a", 1, Some(0), Some(100)),
            ("X", "b", 2, Some(10), Some(10)),
        ],
        r#"total_events=2 op_events=2 unique=2 traced_ps=100000000 unmatched_begin=0 unmatched_end=0 invalid=0
phase X 2
op "a" count=1 total=100000000 max=100000000 self=100000000 kind=Other module=None
op "b" count=1 total=10000000 max=10000000 self=10000000 kind=Other module=None
"#,
    );
}

#[test]
fn identical_intervals_nest_in_file_order() {
    // JAX's Python tracer often emits a caller and callee with the same
    // start and duration; the first one in the file is the parent.
    check(
        &[
            ("X", "$f.py:1 caller", 1, Some(5), Some(10)),
            ("X", "$g.py:2 callee", 1, Some(5), Some(10)),
        ],
        r#"total_events=2 op_events=2 unique=2 traced_ps=10000000 unmatched_begin=0 unmatched_end=0 invalid=0
phase X 2
op "$f.py:1 caller" count=1 total=10000000 max=10000000 self=0 kind=Python module=None
op "$g.py:2 callee" count=1 total=10000000 max=10000000 self=10000000 kind=Python module=None
"#,
    );
}

#[test]
fn begin_end_pairs_metadata_and_missing_phase() {
    check(
        &[
            ("M", "thread_name", 1, None, None),
            ("B", "outer", 1, Some(0), None),
            ("B", "inner", 1, Some(2), None),
            ("E", "", 1, Some(4), None),
            ("E", "", 1, Some(10), None),
            ("E", "", 1, Some(11), None),
            ("B", "never_closed", 2, Some(12), None),
            ("i", "mark", 1, Some(20), None),
            ("C", "counter", 1, Some(25), None),
            ("", "", 0, None, None),
        ],
        r#"total_events=10 op_events=2 unique=2 traced_ps=25000000 unmatched_begin=1 unmatched_end=1 invalid=0
phase B 3
phase E 3
phase (none) 1
phase C 1
phase M 1
phase i 1
op "outer" count=1 total=10000000 max=10000000 self=8000000 kind=Other module=None
op "inner" count=1 total=2000000 max=2000000 self=2000000 kind=Other module=None
"#,
    );
}

#[test]
fn invalid_complete_events_are_counted_not_aggregated() {
    check(
        &[
            ("X", "no_dur", 1, Some(0), None),
            ("X", "negative", 1, Some(0), Some(-1)),
            ("X", "ok", 1, Some(3), Some(1)),
        ],
        r#"total_events=3 op_events=1 unique=1 traced_ps=1000000 unmatched_begin=0 unmatched_end=0 invalid=2
phase X 3
op "ok" count=1 total=1000000 max=1000000 self=1000000 kind=Other module=None
"#,
    );
}

#[test]
fn online_mode_notices_out_of_order_threads() {
    let specs: &[Spec] = &[
        ("X", "late", 1, Some(10), Some(1)),
        ("X", "early", 1, Some(0), Some(20)),
    ];
    let online = analyse_with(Analyzer::new(), specs, &[]);
    assert!(!online.self_time_exact);
    let buffered = analyse(specs, &[]);
    assert_eq!(buffered.op("early").unwrap().self_ps, 19_000_000);
    // Begin/end pairs complete after their children.
    let pairs: &[Spec] = &[
        ("B", "outer", 1, Some(0), None),
        ("X", "inner", 1, Some(1), Some(1)),
        ("E", "", 1, Some(5), None),
    ];
    assert!(!analyse_with(Analyzer::new(), pairs, &[]).self_time_exact);
    assert_eq!(analyse(pairs, &[]).op("outer").unwrap().self_ps, 4_000_000);
}

#[test]
fn sorting_and_kinds() {
    let hlo: &[Arg<'static>] = &[
        Arg {
            key: "hlo_module",
            value: ArgValue::Str("jit_run_model"),
        },
        Arg {
            key: "hlo_op",
            value: ArgValue::Str("fusion.1"),
        },
    ];
    let analysis = analyse(
        &[
            ("X", "fusion.1", 1, Some(0), Some(5)),
            ("X", "fusion.1", 1, Some(10), Some(7)),
            ("X", "TpuLoadedExecutable::Execute", 2, Some(0), Some(12)),
            ("X", "b_same_total", 3, Some(0), Some(12)),
        ],
        &[("fusion.1", hlo)],
    );
    insta::assert_snapshot!(dump(&analysis), @r#"
    total_events=4 op_events=4 unique=3 traced_ps=17000000 unmatched_begin=0 unmatched_end=0 invalid=0
    phase X 4
    op "TpuLoadedExecutable::Execute" count=1 total=12000000 max=12000000 self=12000000 kind=Runtime module=None
    op "b_same_total" count=1 total=12000000 max=12000000 self=12000000 kind=Other module=None
    op "fusion.1" count=2 total=12000000 max=7000000 self=12000000 kind=Xla { device: false } module=Some("jit_run_model")
    "#);
}

#[test]
fn device_lines_separate_modules_ops_and_steps() {
    let name_arg = |value: &'static str| {
        [Arg {
            key: "name",
            value: ArgValue::Str(value),
        }]
    };
    let mut analyzer = Analyzer::new();
    let meta = |analyzer: &mut Analyzer, name, pid, tid, value: &'static str| {
        analyzer.event(&Event {
            phase: Phase::Metadata,
            name,
            cat: "",
            pid,
            tid,
            ts: None,
            dur: None,
            args: &name_arg(value),
        });
    };
    meta(&mut analyzer, "process_name", 7, 0, "/device:TPU:0");
    meta(&mut analyzer, "thread_name", 7, 1, "XLA Modules");
    meta(&mut analyzer, "thread_name", 7, 2, "XLA Ops");
    meta(&mut analyzer, "thread_name", 7, 3, "Steps");
    meta(&mut analyzer, "process_name", 8, 0, "/host:CPU");
    let mut x = |name, pid, tid, ts: Ps, dur: Ps| {
        analyzer.event(&Event {
            phase: Phase::Complete,
            name,
            cat: "",
            pid,
            tid,
            ts: Some(ts),
            dur: Some(dur),
            args: &[],
        })
    };
    x("0", 7, 3, 0, 100);
    x("jit_run_model", 7, 1, 0, 90);
    x("fusion.1", 7, 2, 0, 50);
    x("host_work", 8, 1, 0, 10);
    let analysis = analyzer.finish();
    let kind = |name| analysis.op(name).unwrap().kind;
    assert_eq!(kind("jit_run_model"), OpKind::XlaModule);
    assert_eq!(kind("fusion.1"), OpKind::Xla { device: true });
    assert_eq!(kind("0"), OpKind::Other);
    assert_eq!(kind("host_work"), OpKind::Other);
    let accel: Vec<&str> = analysis
        .accelerator_ops()
        .map(|it| it.name.as_str())
        .collect();
    assert_eq!(accel, ["jit_run_model", "fusion.1"]);
}

#[test]
fn non_standard_phases_keep_their_own_count() {
    let analysis = analyse(
        &[
            ("X", "a", 1, Some(0), Some(1)),
            ("X", "b", 1, Some(2), Some(1)),
            ("Xfoo", "c", 1, Some(4), None),
            ("M", "thread_name", 1, None, None),
            ("Mx", "d", 1, Some(5), None),
            ("M!", "e", 1, Some(6), None),
            ("I", "f", 1, Some(7), None),
            ("Ix", "g", 1, Some(8), None),
            ("b", "h", 1, Some(9), None),
        ],
        &[],
    );
    let labels: Vec<(String, u64)> = analysis
        .phases
        .iter()
        .map(|it| (it.label(), it.count))
        .collect();
    let expect = [
        ("M*", 2),
        ("X", 2),
        ("I*", 1),
        ("M", 1),
        ("X*", 1),
        ("b", 1),
        ("i", 1),
    ];
    assert_eq!(
        labels,
        expect.map(|(l, n)| (l.to_owned(), n)).to_vec(),
        "every label once, real phases untouched"
    );
}

/// Names handed over in one reused buffer (as a streaming reader may) are
/// told apart by their text, whatever the name cache remembers of where they
/// lay.
#[test]
fn names_from_a_reused_buffer_stay_apart() {
    let mut analyzer = Analyzer::new();
    let mut buffer = String::new();
    for (idx, name) in ["ab", "cd", "ab", "cd", "ef"].iter().enumerate() {
        buffer.clear();
        buffer.push_str(name);
        analyzer.event(&complete(&buffer, idx as Ps * 10, 5));
    }
    let analysis = analyzer.finish();
    assert_eq!(counts(&analysis), [("ab", 2), ("cd", 2), ("ef", 1)]);
    assert_eq!(analysis.phase_count(Phase::Complete), 5);
}

/// A complete event on thread 1, times in ps.
fn complete(name: &str, start: Ps, dur: Ps) -> Event<'_> {
    Event {
        phase: Phase::Complete,
        name,
        cat: "",
        pid: 1,
        tid: 1,
        ts: Some(start),
        dur: Some(dur),
        args: &[],
    }
}

/// (name, count) of every operation, in the analysis's order.
fn counts(analysis: &Analysis) -> Vec<(&str, u64)> {
    analysis
        .ops
        .iter()
        .map(|it| (it.name.as_str(), it.count))
        .collect()
}

/// Complete events on thread 1 from (name, start, dur) triples, in ps.
fn ops(specs: &[(&'static str, Ps, Ps)]) -> Vec<Event<'static>> {
    specs
        .iter()
        .map(|&(name, start, dur)| complete(name, start, dur))
        .collect()
}

fn merged_at(events: &[Event<'_>], cut: usize) -> Analysis {
    let (mut first, mut second) = (Analyzer::new(), Analyzer::new());
    events[..cut].iter().for_each(|it| first.event(it));
    events[cut..].iter().for_each(|it| second.event(it));
    first.merge(second);
    first.finish()
}

/// Cut anywhere between distinct start times, a nested session merges
/// back into exactly the one-pass analysis: operations still open at the
/// cut get the later part's top-level operations as children.
#[test]
fn a_nested_stream_cut_anywhere_merges_exactly() {
    let mut specs = vec![("session", 0, 10_000)];
    for step in 0..20 {
        let at = 100 + step * 450;
        specs.push(("step", at, 400));
        for leaf in 0..3 {
            specs.push(("kernel", at + 10 + leaf * 100, 50 + leaf));
        }
        specs.push(("wait", at + 405, 20));
    }
    let events = ops(&specs);
    let mut whole = Analyzer::buffered();
    events.iter().for_each(|it| whole.event(it));
    let whole = whole.finish();
    assert!(whole.op("session").unwrap().self_ps < 10_000);
    for cut in 0..=events.len() {
        let merged = merged_at(&events, cut);
        assert!(merged.self_time_exact, "cut {cut}");
        assert_eq!(merged, whole, "cut {cut}");
    }
}

/// A later part remembers only its first few thousand top-level
/// operations: when an operation open at the cut holds more than that, the
/// merge says so instead of guessing, and the caller reads again in one
/// pass. Without such an operation the same stream merges exactly.
#[test]
fn too_many_children_of_an_open_operation_make_the_merge_inexact() {
    let n = ROOT_CAP as Ps + 10;
    let mut specs = vec![("outer", 0, 10 * n + 100)];
    specs.extend((0..n).map(|k| ("leaf", 10 + 10 * k, 5)));
    let events = ops(&specs);
    assert!(!merged_at(&events, 2).self_time_exact);
    assert!(merged_at(&events, events.len() - 5).self_time_exact);
    let flat = ops(&specs[1..]);
    let merged = merged_at(&flat, 1);
    assert!(merged.self_time_exact);
    assert_eq!(merged.op("leaf").unwrap().self_ps, 5 * n as i128);
}

/// While a reader says names stay put, a name is known by where it lies;
/// once it stops saying so, or starts a new period, a reused buffer is told
/// apart by its text again.
#[test]
fn stable_names_are_trusted_only_while_the_reader_says_so() {
    let mut analyzer = Analyzer::new();
    let mut buffer = String::with_capacity(8);
    let push = |analyzer: &mut Analyzer, buffer: &mut String, name: &str, at: Ps| {
        buffer.clear();
        buffer.push_str(name);
        analyzer.event(&complete(buffer, at, 5));
    };
    analyzer.stable_names(true);
    push(&mut analyzer, &mut buffer, "ab", 0);
    push(&mut analyzer, &mut buffer, "ab", 10);
    analyzer.stable_names(false);
    push(&mut analyzer, &mut buffer, "cd", 20);
    analyzer.stable_names(true);
    push(&mut analyzer, &mut buffer, "ef", 30);
    push(&mut analyzer, &mut buffer, "ef", 40);
    analyzer.stable_names(false);
    let analysis = analyzer.finish();
    assert_eq!(counts(&analysis), [("ab", 2), ("ef", 2), ("cd", 1)]);
}

#[test]
fn reordering_is_exact_within_its_window_and_says_so_beyond_it() {
    // `early` comes three operations after its place.
    let specs: &[Spec] = &[
        ("X", "a", 1, Some(10), Some(1)),
        ("X", "b", 1, Some(20), Some(1)),
        ("X", "c", 1, Some(30), Some(1)),
        ("X", "early", 1, Some(0), Some(40)),
    ];
    let buffered = analyse(specs, &[]);
    assert_eq!(buffered.op("early").unwrap().self_ps, 37_000_000);
    let small = analyse_with(Analyzer::reordering(2), specs, &[]);
    assert!(!small.self_time_exact);
    let wide = analyse_with(Analyzer::reordering(3), specs, &[]);
    assert_eq!(wide, buffered);
}
