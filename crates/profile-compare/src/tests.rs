//! Unit tests: the statistics against SciPy's values, the verdict rules on
//! synthetic samples, the history rule and the collector.

use std::collections::BTreeMap;

use crate::stats::{self, Method};
use crate::{
    Collector, Latencies, MachineState, OpSamples, OpVerdict, Profile, Settings, Side, Verdict,
    compare, compare_latencies, judge_history, render_chart, render_markdown,
};
use trace_model::{Event, EventSink, Phase};

/// Expected values from SciPy 1.17.1, produced in a scratch venv with
/// `scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method=M)`
/// where M is the method named in each case (the same one SciPy's "auto"
/// picks for these samples): (x, y, U of x, p, method).
#[allow(clippy::type_complexity)]
const SCIPY_CASES: &[(&[i64], &[i64], f64, f64, Method)] = &[
    (
        &[1, 2, 3, 4, 5, 6, 7],
        &[8, 9, 10, 11, 12, 13, 14, 15],
        0.0,
        0.0003108003108003108,
        Method::Exact,
    ),
    (
        &[3, 7, 15, 21, 30],
        &[2, 4, 10, 11, 12, 13, 40, 41, 42],
        21.0,
        0.8981018981018981,
        Method::Exact,
    ),
    (
        &[15, 27, 33, 41, 54, 62, 70, 81],
        &[1, 9, 12, 20, 28, 35, 40, 47, 55, 63, 66, 80],
        59.0,
        0.42686353893784235,
        Method::Exact,
    ),
    (
        &[1, 2, 2, 3, 3, 3, 4, 5, 9, 9, 10, 12],
        &[2, 3, 3, 4, 5, 5, 6, 7, 8, 8, 9, 11, 13, 14],
        59.5,
        0.21436040835214687,
        Method::Asymptotic,
    ),
];

#[test]
fn mann_whitney_matches_scipy() {
    for (x, y, u, p, method) in SCIPY_CASES {
        let got = stats::mann_whitney_u(x, y).unwrap();
        assert_eq!(got.method, *method, "{x:?} {y:?}");
        assert_eq!(got.u1, *u, "{x:?} {y:?}");
        assert!(
            (got.p_value - p).abs() < 1e-12,
            "{x:?} {y:?}: {} vs {p}",
            got.p_value
        );
    }
}

#[test]
fn mann_whitney_matches_scipy_on_larger_samples() {
    // x = [(i*37) % 101 for i in range(40)], y = [(i*53) % 97 + 10 for i in
    // range(50)]: U = 893.0, p = 0.3871177631167051 (asymptotic).
    let x: Vec<i64> = (0..40).map(|i| (i * 37) % 101).collect();
    let y: Vec<i64> = (0..50).map(|i| (i * 53) % 97 + 10).collect();
    let got = stats::mann_whitney_u(&x, &y).unwrap();
    assert_eq!(got.method, Method::Asymptotic);
    assert_eq!(got.u1, 893.0);
    assert!((got.p_value - 0.3871177631167051).abs() < 1e-12);
}

#[test]
fn mann_whitney_edges() {
    assert!(stats::mann_whitney_u(&[], &[1]).is_none());
    let same = stats::mann_whitney_u(&[5; 20], &[5; 30]).unwrap();
    assert_eq!(same.p_value, 1.0);
    // Symmetric in its arguments.
    let a = stats::mann_whitney_u(&[1, 5, 9, 14], &[2, 3, 20, 21, 22]).unwrap();
    let b = stats::mann_whitney_u(&[2, 3, 20, 21, 22], &[1, 5, 9, 14]).unwrap();
    assert_eq!(a.p_value, b.p_value);
    assert_eq!(a.u1 + b.u1, 20.0);
}

#[test]
fn benjamini_hochberg_matches_scipy() {
    // scipy.stats.false_discovery_control(p, method="bh"), SciPy 1.17.1.
    let p = [0.001, 0.04, 0.03, 0.2, 0.5, 0.012, 0.9, 0.049];
    let want = [
        0.008,
        0.07840000000000001,
        0.07840000000000001,
        0.26666666666666666,
        0.5714285714285714,
        0.048,
        0.9,
        0.07840000000000001,
    ];
    for (got, want) in stats::benjamini_hochberg(&p).iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}

#[test]
fn percentiles_and_medians() {
    assert_eq!(stats::median_sorted(&[1, 2, 3]), 2.0);
    assert_eq!(stats::median_sorted(&[1, 2, 3, 10]), 2.5);
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(stats::percentile_sorted(&v, 50.0), 50.0);
    assert_eq!(stats::percentile_sorted(&v, 99.0), 99.0);
    assert_eq!(stats::percentile_sorted(&v, 99.5), 100.0);
}

fn spread(n: usize, scale: f64) -> Vec<i64> {
    // A deterministic, skewed spread of durations around 1 ms.
    (0..n)
        .map(|i| {
            let x = ((i * 7919) % n) as f64 / n as f64;
            ((1.0 + 0.3 * x * x) * 1e9 * scale) as i64
        })
        .collect()
}

#[test]
fn bootstrap_is_seeded_and_covers_the_change() {
    let (b, c) = (spread(200, 1.0), spread(200, 1.5));
    let settings = stats::Bootstrap::default();
    let one = stats::bootstrap_change(&b, &c, settings, "op");
    let two = stats::bootstrap_change(&b, &c, settings, "op");
    assert_eq!(one, two);
    let (lo, hi) = one.median.unwrap();
    assert!(lo < 0.5 && 0.5 < hi, "{lo} {hi}");
    let (lo, hi) = one.total.unwrap();
    assert!(lo < 0.5 && 0.5 < hi, "{lo} {hi}");
    // The interval of a sample against itself straddles zero.
    let same = stats::bootstrap_change(&b, &b, settings, "op");
    let (lo, hi) = same.median.unwrap();
    assert!(lo <= 0.0 && 0.0 <= hi);
}

fn profile(ops: &[(&str, Vec<i64>)]) -> Profile {
    Profile {
        source: "test".to_owned(),
        traced_ps: ops.iter().flat_map(|(_, d)| d).sum(),
        ops: ops
            .iter()
            .map(|(name, durations)| OpSamples {
                name: (*name).to_owned(),
                side: Side::Host,
                durations: durations.clone(),
            })
            .collect(),
        session: BTreeMap::new(),
        missing: Vec::new(),
        machine: None,
        latencies: None,
        host: None,
    }
}

#[test]
fn identical_profiles_change_nothing() {
    let p = profile(&[("a", spread(300, 1.0)), ("b", spread(40, 2.0))]);
    let cmp = compare(&p, &p, &Settings::default());
    assert_eq!(cmp.verdict, Verdict::NoChange);
    assert!(
        cmp.operations
            .iter()
            .all(|it| it.verdict == OpVerdict::Same)
    );
}

#[test]
fn one_slower_operation_is_the_only_one_flagged() {
    let base = profile(&[
        ("a", spread(300, 1.0)),
        ("b", spread(40, 2.0)),
        ("c", spread(5, 1.0)),
    ]);
    let cand = profile(&[
        ("a", spread(300, 1.0)),
        ("b", spread(40, 3.0)),
        ("c", spread(5, 1.0)),
        ("d", spread(3, 1.0)),
    ]);
    let cmp = compare(&base, &cand, &Settings::default());
    assert_eq!(cmp.verdict, Verdict::Regression);
    let verdict = |name: &str| {
        cmp.operations
            .iter()
            .find(|it| it.name == name)
            .unwrap()
            .verdict
    };
    assert_eq!(verdict("a"), OpVerdict::Same);
    assert_eq!(verdict("b"), OpVerdict::Slower);
    assert_eq!(verdict("c"), OpVerdict::Same);
    assert_eq!(verdict("d"), OpVerdict::Added);
    let b = cmp.operations.iter().find(|it| it.name == "b").unwrap();
    assert!((b.change.unwrap() - 0.5).abs() < 1e-6);
    assert!((b.total_change.unwrap() - 0.5).abs() < 1e-6);
    // Heaviest change first.
    assert_eq!(cmp.operations[0].name, "b");
    assert!(
        cmp.operations
            .iter()
            .find(|it| it.name == "c")
            .unwrap()
            .few_samples
    );

    let back = compare(&cand, &base, &Settings::default());
    assert_eq!(back.verdict, Verdict::Improvement);
    let md = render_markdown(&cmp, Some("compare.svg"));
    assert!(md.contains("Verdict: **Regression**"));
    assert!(md.contains("| `b` | host | slower |"));
    assert!(md.contains("few samples"));
    let svg = render_chart(&cmp).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("+50.0%"));
    let json: serde_json::Value = serde_json::from_str(&cmp.to_json()).unwrap();
    assert_eq!(json["verdict"], "regression");
    assert_eq!(json["operations"][0]["verdict"], "slower");
    assert_eq!(json["operations"][0]["baseline_count"], 40);
}

#[test]
fn a_small_significant_change_stays_below_the_threshold() {
    let base = profile(&[("a", spread(2000, 1.0))]);
    let cand = profile(&[("a", spread(2000, 1.02))]);
    let cmp = compare(&base, &cand, &Settings::default());
    let a = &cmp.operations[0];
    assert!(a.p_adjusted.unwrap() < 0.05);
    assert_eq!(a.verdict, OpVerdict::Same);
    assert_eq!(cmp.verdict, Verdict::NoChange);
}

#[test]
fn history_rule_uses_mean_and_spread() {
    let past: Vec<Profile> = [1.0, 1.02, 0.98, 1.01]
        .iter()
        .map(|&s| profile(&[("a", spread(50, s)), ("b", spread(50, s))]))
        .collect();
    let cand = profile(&[("a", spread(50, 1.2)), ("b", spread(50, 1.03))]);
    let cmp = judge_history(&past, &cand, &Settings::default());
    assert_eq!(cmp.verdict, Verdict::Regression);
    let verdict = |name: &str| {
        cmp.operations
            .iter()
            .find(|it| it.name == name)
            .unwrap()
            .verdict
    };
    assert_eq!(verdict("a"), OpVerdict::Slower);
    assert_eq!(verdict("b"), OpVerdict::Same);
}

#[test]
fn collector_matches_complete_and_begin_end_events() {
    let mut sink = Collector::default();
    let ev = |phase, name, tid, ts: i64, dur: Option<i64>| Event {
        phase,
        name,
        cat: "",
        pid: 1,
        tid,
        ts: Some(ts),
        dur,
        args: &[],
    };
    sink.event(&ev(Phase::Complete, "x", 1, 0, Some(10)));
    sink.event(&ev(Phase::Complete, "x", 2, 5, Some(30)));
    sink.event(&ev(Phase::Begin, "y", 1, 100, None));
    sink.event(&ev(Phase::Begin, "z", 1, 110, None));
    sink.event(&ev(Phase::End, "", 1, 115, None));
    sink.event(&ev(Phase::End, "", 1, 150, None));
    sink.event(&ev(Phase::Complete, "bad", 1, 0, Some(-1)));
    let (ops, analysis) = sink.finish();
    let names: Vec<(&str, &[i64])> = ops
        .iter()
        .map(|it| (it.name.as_str(), it.durations.as_slice()))
        .collect();
    assert_eq!(
        names,
        [("x", &[10, 30][..]), ("y", &[50][..]), ("z", &[5][..])]
    );
    // The same operations and totals as the analyzer's.
    for op in &ops {
        let stats = analysis.op(&op.name).unwrap();
        assert_eq!(stats.count, op.durations.len() as u64);
        assert_eq!(
            stats.total_ps,
            op.durations.iter().map(|&d| d as i128).sum::<i128>()
        );
    }
}

#[test]
fn immaterial_or_contradictory_changes_are_not_flagged() {
    // "tiny" is 1.5 times slower but holds a sliver of the traced time;
    // "fewer" is slower per call but called half as often.
    let mut base = profile(&[
        ("big", spread(300, 10.0)),
        ("tiny", spread(300, 0.001)),
        ("fewer", spread(400, 1.0)),
    ]);
    let cand = profile(&[
        ("big", spread(300, 10.0)),
        ("tiny", spread(300, 0.0015)),
        ("fewer", spread(200, 1.3)),
    ]);
    base.traced_ps = cand.traced_ps;
    let cmp = compare(&base, &cand, &Settings::default());
    assert_eq!(cmp.verdict, Verdict::NoChange);
    let get = |name: &str| cmp.operations.iter().find(|it| it.name == name).unwrap();
    for name in ["tiny", "fewer"] {
        let op = get(name);
        assert_eq!(op.verdict, OpVerdict::Same, "{name}");
        assert!(op.p_adjusted.unwrap() < 0.05, "{name}");
        assert!(op.not_flagged.is_some(), "{name}");
    }
    assert!(
        get("tiny")
            .not_flagged
            .as_ref()
            .unwrap()
            .contains("traced time")
    );
    assert!(
        get("fewer")
            .not_flagged
            .as_ref()
            .unwrap()
            .contains("other way")
    );
    let md = render_markdown(&cmp, None);
    assert!(md.contains(
        "2 operations changed significantly by more than the threshold but are not flagged"
    ));
}

/// Many operations, each with 60 occurrences, none of them heavier than
/// the material share; `scale` per operation.
fn many(scales: &[f64]) -> Profile {
    let ops: Vec<(String, Vec<i64>)> = scales
        .iter()
        .enumerate()
        .map(|(i, &s)| (format!("op{i:02}"), spread(60, s)))
        .collect();
    let refs: Vec<(&str, Vec<i64>)> = ops.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    profile(&refs)
}

#[test]
fn the_block_bootstrap_widens_the_interval_of_drifting_samples() {
    // The candidate's second half ran 40 % slower (a burst of load): the
    // occurrences are not independent, and the interval must say so.
    let b = spread(400, 1.0);
    let c: Vec<i64> = spread(400, 1.0)
        .iter()
        .enumerate()
        .map(|(i, &d)| if i >= 200 { d * 14 / 10 } else { d })
        .collect();
    let blocked = stats::bootstrap_change(&b, &c, stats::Bootstrap::default(), "op");
    let iid = stats::Bootstrap {
        blocks: usize::MAX,
        ..stats::Bootstrap::default()
    };
    let plain = stats::bootstrap_change(&b, &c, iid, "op");
    let width = |ci: Option<(f64, f64)>| ci.map(|(lo, hi)| hi - lo).unwrap();
    assert!(
        width(blocked.median) > 1.5 * width(plain.median),
        "{blocked:?} {plain:?}"
    );
    // One value per block is the ordinary bootstrap: stable and seeded.
    assert_eq!(plain, stats::bootstrap_change(&b, &c, iid, "op"));
}

#[test]
fn an_interval_reaching_inside_the_threshold_is_not_flagged() {
    // 12 % slower in the median, but only in a third of the time: the
    // block interval of the change reaches below 5 %.
    let base = profile(&[("a", spread(600, 1.0))]);
    let drift: Vec<i64> = spread(600, 1.0)
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 200 { d * 13 / 10 } else { d * 102 / 100 })
        .collect();
    let cand = profile(&[("a", drift)]);
    let cmp = compare(&base, &cand, &Settings::default());
    let a = &cmp.operations[0];
    assert_eq!(a.verdict, OpVerdict::Same, "{a:?}");
    assert!(
        a.not_flagged
            .as_deref()
            .unwrap_or("")
            .contains("reaches inside"),
        "{a:?}"
    );
}

fn busy_machine() -> MachineState {
    MachineState {
        cores: 2,
        others_cores: 1.6,
        steal_share: 0.0,
        load_avg_1m: 9.5,
        quiet_before: false,
        busiest_others: vec!["rustc 1.20".into(), "fuzz 0.40".into()],
        session_cores: 0.4,
        session_major_faults: 0,
    }
}

fn quiet_machine() -> MachineState {
    MachineState {
        others_cores: 0.05,
        busiest_others: Vec::new(),
        load_avg_1m: 0.3,
        quiet_before: true,
        ..busy_machine()
    }
}

#[test]
fn a_change_on_a_busy_machine_is_inconclusive() {
    let base = profile(&[("a", spread(300, 1.0)), ("b", spread(40, 2.0))]);
    let mut cand = profile(&[("a", spread(300, 1.0)), ("b", spread(40, 3.0))]);
    let mut base_q = base.clone();
    base_q.machine = Some(quiet_machine());
    cand.machine = Some(busy_machine());
    let cmp = compare(&base_q, &cand, &Settings::default());
    assert_eq!(cmp.changes_verdict, Verdict::Regression);
    assert_eq!(cmp.verdict, Verdict::Inconclusive);
    assert_eq!(cmp.caveats.len(), 1, "{:?}", cmp.caveats);
    assert!(
        cmp.caveats[0].starts_with(
            "the candidate ran on a busy machine: other processes used 1.60 of 2 cores"
        )
    );
    let md = render_markdown(&cmp, None);
    assert!(md.contains("Verdict: **Inconclusive**"), "{md}");
    assert!(md.contains("alone say `regression`"));
    assert!(
        md.contains("| Other processes, cores | 0.05 of 2 | 1.60 of 2 |"),
        "{md}"
    );
    let json: serde_json::Value = serde_json::from_str(&cmp.to_json()).unwrap();
    assert_eq!(json["verdict"], "inconclusive");
    // Both quiet: the same change is a regression.
    cand.machine = Some(quiet_machine());
    assert_eq!(
        compare(&base_q, &cand, &Settings::default()).verdict,
        Verdict::Regression
    );
    // Busy but nothing changed: no change, with the caveat said.
    let cmp = compare(
        &base_q,
        &{
            let mut b = base.clone();
            b.machine = Some(busy_machine());
            b
        },
        &Settings::default(),
    );
    assert_eq!(cmp.verdict, Verdict::NoChange);
    assert_eq!(cmp.caveats.len(), 1);
    assert!(render_markdown(&cmp, None).contains("Caveats (no change was seen"));
}

#[test]
fn a_shift_of_the_whole_side_is_inconclusive() {
    // Every operation 40 % slower: the session, not an operation.
    let base = many(&[1.0; 20]);
    let cand = many(&[1.4; 20]);
    let cmp = compare(&base, &cand, &Settings::default());
    assert_eq!(cmp.changes_verdict, Verdict::Regression);
    assert_eq!(cmp.verdict, Verdict::Inconclusive);
    assert_eq!(cmp.shifts.len(), 1);
    assert!(
        (cmp.shifts[0].change - 0.4).abs() < 0.01,
        "{:?}",
        cmp.shifts
    );
    assert!(
        cmp.caveats[0].contains("the host side as a whole is 40.0% slower"),
        "{:?}",
        cmp.caveats
    );
    // Two of twenty slower: no shift, a regression.
    let mut scales = vec![1.0; 20];
    scales[3] = 1.5;
    scales[7] = 1.5;
    let cmp = compare(&base, &many(&scales), &Settings::default());
    assert_eq!(cmp.verdict, Verdict::Regression);
    assert!(cmp.shifts[0].change.abs() < 1e-9 && cmp.caveats.is_empty());
    assert_eq!(cmp.count(OpVerdict::Slower), 2);
}

#[test]
fn a_change_is_measured_against_a_small_shift_of_its_side() {
    // The candidate session is 4.5 % slower as a whole (within the
    // threshold, so no caveat); op03 is 16 % slower (11 % more than the
    // rest) and op07 30 % slower (24 % more than the rest). Their intervals
    // are about ±10 %: op03's lies beyond the threshold only before the
    // shift is taken out.
    let mut scales = vec![1.045; 20];
    scales[3] = 1.16;
    scales[7] = 1.30;
    let cmp = compare(&many(&[1.0; 20]), &many(&scales), &Settings::default());
    assert!(
        (cmp.shifts[0].change - 0.045).abs() < 0.005,
        "{:?}",
        cmp.shifts
    );
    assert!(cmp.caveats.is_empty(), "{:?}", cmp.caveats);
    let row = |name: &str| cmp.operations.iter().find(|r| r.name == name).unwrap();
    assert_eq!(row("op07").verdict, OpVerdict::Slower, "{:?}", row("op07"));
    assert_eq!(row("op03").verdict, OpVerdict::Same);
    let [lo, _] = row("op03").ci.median.unwrap();
    assert!(
        lo > 0.05,
        "op03's own interval lies beyond the threshold: {lo}"
    );
    let why = row("op03").not_flagged.as_deref().unwrap_or("");
    assert!(
        why.starts_with("measured against the host side's shift of +4.5%, its 95%-interval"),
        "{why}"
    );
    assert_eq!(cmp.verdict, Verdict::Regression);
    assert_eq!(cmp.count(OpVerdict::Slower), 1);
}

#[test]
fn a_change_within_the_spread_of_the_pair_is_not_flagged() {
    // Thirty operations that each moved by -15 % to +15 % between two
    // sessions (as real quiet pairs do, by about ±10-20 %), one by +25 % and
    // one by +100 %: only the last stands out from that variation.
    let mut scales: Vec<f64> = (0..30)
        .map(|i| 1.0 + 0.15 * (((i * 7) % 30) as f64 / 29.0 * 2.0 - 1.0))
        .collect();
    scales.push(1.25);
    scales.push(2.0);
    let cmp = compare(&many(&[1.0; 32]), &many(&scales), &Settings::default());
    let shift = &cmp.shifts[0];
    assert!(shift.spread > 0.08 && shift.spread < 0.14, "{shift:?}");
    let row = |name: &str| cmp.operations.iter().find(|r| r.name == name).unwrap();
    assert_eq!(row("op31").verdict, OpVerdict::Slower);
    assert_eq!(row("op30").verdict, OpVerdict::Same);
    let why = row("op30").not_flagged.as_deref().unwrap_or("");
    assert!(
        why.starts_with("its change, +25.0%, lies within 3 spreads"),
        "{why}"
    );
    assert_eq!(cmp.count(OpVerdict::Slower), 1, "{:#?}", cmp.operations);
    assert_eq!(cmp.count(OpVerdict::Faster), 0);
    let (up, down) = shift.smallest_visible();
    assert!(up > 0.25 && up < 1.0 && down < -0.2, "{up} {down}");
}

#[test]
fn latency_is_tested_per_request() {
    let b: Vec<f64> = (0..24).map(|i| 100.0 + (i * 7 % 24) as f64).collect();
    let slower: Vec<f64> = b.iter().map(|x| x * 1.5).collect();
    let lat = |all: &[f64]| Latencies {
        all: all.to_vec(),
        parts: vec![("single item".into(), all[..12].to_vec())],
        serving: Vec::new(),
    };
    let rows = compare_latencies(&lat(&b), &lat(&slower), &Settings::default());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name, "request latency");
    assert_eq!(rows[0].verdict, OpVerdict::Slower, "{:?}", rows[0]);
    let [lo, hi] = rows[0].ci_median.unwrap();
    assert!(lo > 0.05 && lo <= 0.5 && 0.5 <= hi, "{lo} {hi}");
    assert_eq!(rows[1].name, "request latency: single item");
    let same = compare_latencies(&lat(&b), &lat(&b), &Settings::default());
    assert!(
        same.iter()
            .all(|r| r.verdict == OpVerdict::Same && r.change == Some(0.0))
    );

    // Through compare: the latency rows replace the single values and
    // count in the verdict.
    let mut base = profile(&[("a", spread(300, 1.0))]);
    let mut cand = base.clone();
    base.latencies = Some(lat(&b));
    cand.latencies = Some(lat(&slower));
    base.session.insert("request latency p50 ms".into(), 110.0);
    cand.session.insert("request latency p50 ms".into(), 165.0);
    let cmp = compare(&base, &cand, &Settings::default());
    assert_eq!(cmp.verdict, Verdict::Regression);
    assert!(cmp.session.is_empty());
    assert!(render_markdown(&cmp, None).contains("| request latency | slower | 24 → 24 |"));
}

#[test]
fn machine_and_latency_records_parse() {
    let machine: serde_json::Value = serde_json::from_str(
        r#"{"schema":"sglprof.machine/1","cores":2,"quiet_wait_s":20.0,"quiet_before":false,
            "before":null,"busy":true,
            "profiled":{"seconds":12.5,"busy_share":1.0,"steal_share":0.0,"others_cores":1.62,
              "cpu_pressure_share":0.97,"load_avg":[9.1,8.0,7.5],
              "busiest_others":[{"pid":7,"name":"rustc","cores":1.1}]}}"#,
    )
    .unwrap();
    let state = MachineState::from_record(&machine).unwrap();
    assert_eq!(state.cores, 2);
    assert_eq!(state.others_cores, 1.62);
    assert_eq!(state.load_avg_1m, 9.1);
    assert_eq!(state.busiest_others, ["rustc 1.10"]);
    assert!(state.busy(&Settings::default()));
    let lat: serde_json::Value = serde_json::from_str(
        r#"{"schema":"sglprof.latencies/1","endpoint":"/v1/score","latencies_ms":[1.5,2.0],
            "parts":[{"name":"single item","latencies_ms":[1.5]}]}"#,
    )
    .unwrap();
    let lat = Latencies::from_json(&lat).unwrap();
    assert_eq!(lat.all, [1.5, 2.0]);
    assert_eq!(lat.parts, [("single item".to_owned(), vec![1.5])]);
    assert!(Latencies::from_json(&serde_json::json!({"latencies_ms": ["x"]})).is_none());
}

#[test]
fn different_compilation_inside_the_window_is_a_caveat() {
    let mut base_ops = vec![("a", spread(300, 1.0)), ("b", spread(40, 2.0))];
    let mut cand_ops = vec![("a", spread(300, 1.0)), ("b", spread(40, 3.0))];
    // The baseline compiled 20 programs of 20 ms each; the candidate one.
    base_ops.push(("PjRtCpuClient::Compile", vec![20_000_000_000; 20]));
    cand_ops.push(("PjRtCpuClient::Compile", vec![20_000_000_000]));
    let (base, cand) = (profile(&base_ops), profile(&cand_ops));
    let cmp = compare(&base, &cand, &Settings::default());
    assert_eq!(cmp.verdict, Verdict::Inconclusive);
    let c = cmp.baseline_compilation.as_ref().unwrap();
    assert_eq!((c.count, c.total_ms), (20, 400.0));
    assert!(
        cmp.caveats[0].starts_with("the sessions compiled different amounts inside the profiled window (baseline 20 programs in 400 ms, candidate 1 in 20 ms)"),
        "{:?}",
        cmp.caveats
    );
    assert!(render_markdown(&cmp, None).contains(
        "- Compilation inside the profiled window: baseline 20 programs in 400 ms (`PjRtCpuClient::Compile`), candidate 1 programs in 20 ms"
    ));
    // The same compilation on both sides says nothing.
    let cmp = compare(&base, &base, &Settings::default());
    assert!(cmp.caveats.is_empty());
}

#[test]
fn sessions_on_different_hosts_are_a_caveat() {
    let base = profile(&[("a", spread(300, 1.0)), ("b", spread(40, 2.0))]);
    let mut cand = profile(&[("a", spread(300, 1.0)), ("b", spread(40, 3.0))]);
    let settings = Settings::default();
    assert_eq!(
        compare(&base, &cand, &settings).verdict,
        Verdict::Regression
    );
    let (mut base, mut same) = (base, cand.clone());
    base.host = Some("vm (cpu)".to_owned());
    same.host = Some("vm (cpu)".to_owned());
    assert!(compare(&base, &same, &settings).caveats.is_empty());
    cand.host = Some("other (cpu)".to_owned());
    let cmp = compare(&base, &cand, &settings);
    assert_eq!(cmp.verdict, Verdict::Inconclusive);
    assert_eq!(
        cmp.caveats,
        [
            "the sessions ran on different hosts (baseline `vm (cpu)`, candidate `other (cpu)`): \
          the same code runs at different speeds on different machines"
        ]
    );
}

#[test]
fn serving_latencies_are_tested_per_request_and_corrected_together() {
    // TTFT is 40% slower on every request; TPOT and E2E do not move; ITL
    // varies the same way on both sides.
    let base: Vec<f64> = (0..30).map(|i| 50.0 + (i * 11 % 30) as f64).collect();
    let side = |ttft_factor: f64| Latencies {
        all: Vec::new(),
        parts: Vec::new(),
        serving: vec![
            (
                "TTFT".into(),
                base.iter().map(|x| x * ttft_factor).collect(),
            ),
            ("ITL".into(), base.iter().map(|x| x / 10.0).collect()),
            ("TPOT".into(), base.iter().map(|x| x / 8.0).collect()),
            ("E2E".into(), base.iter().map(|x| x * 4.0).collect()),
        ],
    };
    let rows = compare_latencies(&side(1.0), &side(1.4), &Settings::default());
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["TTFT", "ITL", "TPOT", "E2E"]);
    assert_eq!(rows[0].verdict, OpVerdict::Slower, "{:?}", rows[0]);
    assert!(rows[1..].iter().all(|r| r.verdict == OpVerdict::Same));
    // Benjamini-Hochberg over the four p-values, recomputed here: the
    // smallest p times 4 over its rank 1, the others at least their own.
    let p: Vec<f64> = rows.iter().map(|r| r.p_value.unwrap()).collect();
    let adjusted = (p[0] * 4.0).min(1.0);
    assert!((rows[0].p_adjusted.unwrap() - adjusted).abs() < 1e-12);
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.p_adjusted.unwrap() >= r.p_value.unwrap())
    );
    // A latency only one side has is not compared.
    let mut one = side(1.0);
    one.serving.truncate(1);
    assert_eq!(
        compare_latencies(&one, &side(1.0), &Settings::default()).len(),
        1
    );
}
