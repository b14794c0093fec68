//! Unit tests: the statistics against SciPy's values, the verdict rules on
//! synthetic samples, the history rule and the collector.

use std::collections::BTreeMap;

use crate::stats::{self, Method};
use crate::{
    Collector, OpSamples, OpVerdict, Profile, Settings, Side, Verdict, compare, judge_history,
    render_chart, render_markdown,
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
    let b = {
        let mut v = spread(200, 1.0);
        v.sort_unstable();
        v
    };
    let c = {
        let mut v = spread(200, 1.5);
        v.sort_unstable();
        v
    };
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
