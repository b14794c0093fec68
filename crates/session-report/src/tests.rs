//! Report rendering tests: a small synthetic session shaped like the seed
//! document, rendered and compared with committed insta snapshots.

use trace_analysis::{Analysis, Analyzer};
use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps};

use crate::{
    CostRow, FullTrace, LatencyStats, ProfileConfig, ReportInput, RunMetadata, TraceFileInfo,
    TraceFormat, Truncation, WorkloadSummary, render_markdown, render_summary_json,
};

const HLO: &[Arg<'static>] = &[
    Arg {
        key: "hlo_module",
        value: ArgValue::Str("jit_jitted_run_model"),
    },
    Arg {
        key: "hlo_op",
        value: ArgValue::Str("broadcast_select_fusion"),
    },
];

fn session() -> Analysis {
    // The events below are not in time order per thread (the compile event
    // comes last), so the analyzer must be the buffered one.
    let mut analyzer = Analyzer::buffered();
    let meta = |name: &'static str,
                pid,
                value: &'static str|
     -> (Phase, &'static str, u64, Vec<Arg<'static>>) {
        (
            Phase::Metadata,
            name,
            pid,
            vec![Arg {
                key: "name",
                value: ArgValue::Str(value),
            }],
        )
    };
    let metas = [
        (meta("process_name", 1, "/host:CPU"), 0),
        (meta("process_name", 2, "/device:TPU:0"), 0),
        (meta("thread_name", 2, "XLA Ops"), 1),
        (meta("thread_name", 2, "XLA Modules"), 2),
    ];
    for ((phase, name, pid, args), tid) in metas {
        analyzer.event(&Event {
            phase,
            name,
            cat: "",
            pid,
            tid,
            ts: None,
            dur: None,
            args: &args,
        });
    }
    let us = |v: i64| v as Ps * 1_000_000;
    let mut x =
        |name: &'static str, pid: u64, tid: u64, ts: i64, dur: i64, args: &[Arg<'static>]| {
            analyzer.event(&Event {
                phase: Phase::Complete,
                name,
                cat: "",
                pid,
                tid,
                ts: Some(us(ts)),
                dur: Some(us(dur)),
                args,
            });
        };
    for step in 0..3 {
        let t = step * 50_000;
        x("$queue.py:154 get", 1, 1, t, 30_000, &[]);
        x("$threading.py:323 wait", 1, 1, t, 29_000, &[]);
        x("$<unknown> acquire", 1, 1, t + 100, 28_000, &[]);
        x(
            "$scheduler.py:1394 process_batch_result",
            1,
            2,
            t + 30_000,
            15_000,
            &[],
        );
        x("jit_jitted_run_model", 2, 2, t + 30_500, 14_000, &[]);
        x("TpuLoadedExecutable::Execute", 1, 3, t + 30_600, 300, &[]);
        for alloc in 0..4 {
            x(
                "DeferredTpuAllocator::Allocate",
                1,
                3,
                t + 31_000 + alloc * 10,
                3,
                &[],
            );
        }
        x("broadcast_select_fusion", 2, 1, t + 31_000, 12_000, HLO);
    }
    x("PjRtCpuClient::Compile", 1, 3, 1_000, 2_000, &[]);
    analyzer.event(&Event {
        phase: Phase::Missing,
        name: "",
        cat: "",
        pid: 0,
        tid: 0,
        ts: None,
        dur: None,
        args: &[],
    });
    let res = analyzer.finish();
    assert!(res.self_time_exact);
    res
}

fn metadata() -> RunMetadata {
    let mut meta = RunMetadata::new();
    meta.date = Some("2026-02-05".to_owned());
    meta.model = Some("TinyLlama/TinyLlama-1.1B-Chat-v1.0".to_owned());
    meta.hardware = Some("TPU v6e-1 (single chip)".to_owned());
    meta.zone = Some("us-east5-b".to_owned());
    meta.endpoint = Some("/generate".to_owned());
    meta.jax_version = Some("0.8.1".to_owned());
    meta.sglang_jax_version = Some("0.0.2".to_owned());
    meta.profile = Some(ProfileConfig {
        output_dir: Some("/tmp/profile".to_owned()),
        num_steps: Some(30),
        host_tracer_level: Some(2),
        ..ProfileConfig::default()
    });
    meta.workload = Some(WorkloadSummary {
        endpoint: "/generate".to_owned(),
        description: "15 x /generate, max_new_tokens 20".to_owned(),
        requests: 15,
        concurrency: 1,
        errors: 0,
        wall_s: 6.5,
        latency_ms: LatencyStats {
            count: 15,
            mean: 433.3,
            p50: 420.0,
            p90: 480.5,
            p99: 512.25,
            min: 401.0,
            max: 512.25,
        },
        throughput_rps: 2.31,
        output_tokens_per_s: Some(46.2),
        parts: Vec::new(),
    });
    meta.reproduction = vec!["cargo xtask profile --tpu --zone us-east5-b".to_owned()];
    meta.cost = vec![
        CostRow {
            resource: "TPU v6e-1 (on-demand)".to_owned(),
            duration: "45 minutes".to_owned(),
            cost_usd: 1.425,
            unit: String::new(),
        },
        CostRow {
            resource: "GCS storage".to_owned(),
            duration: "87 MB".to_owned(),
            cost_usd: 0.002,
            unit: "/month".to_owned(),
        },
    ];
    meta.cost_source = Some("upstream runbook price table".to_owned());
    meta
}

fn input<'a>(
    meta: &'a RunMetadata,
    analysis: &'a Analysis,
    truncation: Truncation,
) -> ReportInput<'a> {
    ReportInput {
        metadata: meta,
        analysis,
        source: "traces/t1v-n-c2bbebb4-w-0.trace.json.gz".to_owned(),
        format: TraceFormat::ChromeJson,
        truncation,
        planes: Vec::new(),
        files: vec![
            TraceFileInfo {
                path: "traces/t1v-n-c2bbebb4-w-0.trace.json.gz".to_owned(),
                size_bytes: 4_900_000,
            },
            TraceFileInfo {
                path: "traces/t1v-n-c2bbebb4-w-0.xplane.pb".to_owned(),
                size_bytes: 18_000_000,
            },
        ],
        logdir: "traces/".to_owned(),
        perfetto_file: "traces/t1v-n-c2bbebb4-w-0.trace.json.gz".to_owned(),
        top_n: 7,
        full_trace: None,
        pyspy: None,
        devices: &[],
        step_plots: Vec::new(),
        serving: None,
        serving_plot: None,
    }
}

#[test]
fn seed_shaped_report() {
    let analysis = session();
    let meta = metadata();
    let input = input(&meta, &analysis, Truncation::None);
    insta::assert_snapshot!("seed_shaped_report", render_markdown(&input));
    insta::assert_snapshot!("seed_shaped_summary", render_summary_json(&input));
}

/// The report's "How to View Traces" section alone.
fn how_to_view(input: &ReportInput<'_>) -> String {
    let markdown = render_markdown(input);
    let start = markdown.find("## How to View Traces").expect("the section");
    let rest = &markdown[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |at| at + 4);
    rest[..end].to_owned()
}

/// Where "How to View" sends the reader, for each way the JSON can fall
/// short of the session.
#[test]
fn how_to_view_points_to_the_whole_session() {
    let analysis = session();
    let meta = RunMetadata::new();
    let xplane = "traces/t1v-n-c2bbebb4-w-0.xplane.pb";
    let mut cases = String::new();
    let mut case = |title: &str, input: ReportInput<'_>| {
        cases.push_str(&format!("==== {title}\n{}", how_to_view(&input)));
    };

    let capped = Truncation::XPlaneInstead {
        json_events: 1_000_000,
        json_share: 0.25,
    };
    let mut it = input(&meta, &analysis, capped.clone());
    it.full_trace = Some(FullTrace {
        source: xplane.to_owned(),
        files: (0..3)
            .map(|i| format!("trace-full.{i:03}.json.gz"))
            .collect(),
        events: 2_400_000,
        chunk_events: 1_000_000,
        requests: None,
    });
    case("capped JSON, the whole session in three chunks", it);

    let mut it = input(&meta, &analysis, Truncation::None);
    it.perfetto_file = xplane.to_owned();
    it.full_trace = Some(FullTrace {
        source: xplane.to_owned(),
        files: vec!["trace-full.json.gz".to_owned()],
        events: 5_120,
        chunk_events: 1_000_000,
        requests: None,
    });
    case("xplane.pb only, the whole session in one file", it);

    let mut it = input(&meta, &analysis, Truncation::None);
    it.perfetto_file = xplane.to_owned();
    case("xplane.pb only, no full trace written", it);

    let mut it = input(&meta, &analysis, capped);
    it.source = xplane.to_owned();
    case("capped JSON, no full trace written", it);
    case(
        "capped JSON and no xplane.pb",
        input(
            &meta,
            &analysis,
            Truncation::Unrecoverable {
                json_events: 1_000_000,
            },
        ),
    );
    insta::assert_snapshot!("how_to_view", cases);
}

#[test]
fn bare_profile_says_unknown_and_warns_on_truncation() {
    let analysis = session();
    let meta = RunMetadata::new();
    let input = input(
        &meta,
        &analysis,
        Truncation::Unrecoverable {
            json_events: 1_000_000,
        },
    );
    insta::assert_snapshot!("bare_truncated_report", render_markdown(&input));
}

#[test]
fn metadata_round_trips_and_rejects_other_schemas() {
    let meta = metadata();
    assert_eq!(RunMetadata::from_json(&meta.to_json()).unwrap(), meta);
    let err = RunMetadata::from_json(r#"{"schema":"other/9"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "run metadata schema is `other/9`, expected `sglprof.run-metadata/1`"
    );
    let err =
        RunMetadata::from_json(r#"{"schema":"sglprof.run-metadata/1","colour":1}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid run metadata: unknown field `colour`"),
        "{err}"
    );
    // Found by the fuzzer: a control character in an unknown field name or
    // in the schema split the one-line error.
    let err = RunMetadata::from_json("{\"schema\":\"sglprof.run-metadata/1\",\"sta\\rted\":1}")
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid run metadata: unknown field `sta\\rted`"),
        "{err}"
    );
    let err = RunMetadata::from_json("{\"schema\":\"x\\ny\"}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "run metadata schema is `x\\ny`, expected `sglprof.run-metadata/1`"
    );
}

#[test]
fn top_zero_does_not_deny_the_xla_operations() {
    let analysis = session();
    let meta = metadata();
    let mut input = input(&meta, &analysis, Truncation::None);
    input.top_n = 0;
    let md = render_markdown(&input);
    assert!(!md.contains("No XLA operations"), "{md}");
    let n = analysis.accelerator_ops().count();
    assert!(n > 0);
    assert!(
        md.contains(&format!(
            "{n} XLA operations or PjRt/TPU runtime events were traced; none is listed (`--top 0`)."
        )),
        "{md}"
    );
}

#[test]
fn hostile_names_stay_inert() {
    let mut analyzer = Analyzer::buffered();
    for (name, ph) in [
        ("<img src=x onerror=alert(1)>|x", "X"),
        ("[a](javascript:1)\nnext", "X"),
        ("fine", "Xfoo"),
    ] {
        analyzer.event(&Event {
            phase: Phase::from_code(ph),
            name,
            cat: "",
            pid: 1,
            tid: 1,
            ts: Some(0),
            dur: Some(1_000_000),
            args: &[],
        });
    }
    let analysis = analyzer.finish();
    let meta = RunMetadata::new();
    let mut input = input(&meta, &analysis, Truncation::None);
    input.logdir = "x;echo $(id)".to_owned();
    input.files[0].path = "a|b`c\nd".to_owned();
    let md = render_markdown(&input);
    assert!(
        md.contains("| \\<img src=x onerror=alert(1)\\>\\|x |"),
        "{md}"
    );
    assert!(md.contains("| \\[a\\](javascript:1) next |"), "{md}");
    assert!(md.contains("| `` a\\|b`c d `` |"), "{md}");
    assert!(
        md.contains("tensorboard --logdir 'x;echo $(id)' --port 6006"),
        "{md}"
    );
    assert!(!md.contains("--logdir x;echo"), "{md}");
    let summary: serde_json::Value = serde_json::from_str(&render_summary_json(&input)).unwrap();
    assert_eq!(summary["phases"]["X"], 2, "{summary}");
    assert_eq!(summary["phases"]["X*"], 1, "{summary}");
}

/// A serving report by hand: two completed streamed requests and a failed
/// one, with goodput and the traced window.
pub(crate) fn serving_report() -> crate::ServingReport {
    let dist = |median: f64| crate::Distribution {
        count: 2,
        mean: median,
        std: 0.5,
        median,
        min: median - 0.5,
        max: median + 0.5,
        percentiles: vec![(90.0, median + 0.4), (99.0, median + 0.49)],
    };
    crate::ServingReport {
        load: crate::ServingMetadata {
            endpoint: "/generate".into(),
            dataset: "random (input 128, output 32, range ratio 0.5)".into(),
            seed: 7,
            request_rate: Some(16.0),
            burstiness: 1.0,
            max_concurrency: None,
            stream: true,
            percentiles: vec![90.0, 99.0],
            slo: None,
            traced: true,
            trace_window: Some(crate::Window {
                start_ns: 1,
                end_ns: 2,
            }),
            profiler_calls: None,
            same_clock: None,
            warmup_requests: 8,
            records: "inputs/requests.jsonl".into(),
        },
        requests: 3,
        completed: 2,
        failed: 1,
        first_error: Some("HTTP 500 | boom".into()),
        duration_s: 1.5,
        total_input_tokens: 200,
        total_output_tokens: 64,
        server_prompt_tokens: 210,
        cached_tokens: 21,
        cache_hit_rate: Some(0.1),
        request_throughput: 1.3333,
        input_throughput: 133.33,
        output_throughput: 42.67,
        total_throughput: 176.0,
        mean_concurrency: 1.25,
        peak_concurrency: 2,
        ttft_ms: Some(dist(120.0)),
        itl_ms: Some(dist(10.0)),
        tpot_ms: Some(dist(11.0)),
        e2e_ms: Some(dist(450.0)),
        server_e2e_ms: Some(dist(440.0)),
        goodput: Some(crate::Goodput {
            slo: crate::Slo {
                ttft_ms: Some(200.0),
                tpot_ms: None,
                e2e_ms: Some(500.0),
            },
            good: 2,
            share: 2.0 / 3.0,
            requests_per_s: 1.3333,
        }),
        overlap: Some(crate::Overlap {
            count: 2,
            ranges: vec![(0, 1)],
        }),
        points: Vec::new(),
    }
}

#[test]
fn serving_metrics_section() {
    let mut out = String::new();
    crate::render_serving(&serving_report(), Some("serving-latency.svg"), &mut out);
    insta::assert_snapshot!(out);
}
