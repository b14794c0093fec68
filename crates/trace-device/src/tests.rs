//! Unit tests of the device sink on small hand-made event streams: nesting,
//! same-start parents, steps and groups, host attribution, roofline, rules.

use trace_model::{Arg, ArgValue, Event, EventSink, Phase};

use crate::{DeviceSink, Peaks, component_of, step_stats};

const DEV: u64 = 1;
const HOST: u64 = 701;
const OPS: u64 = 3;
const STEPS: u64 = 1;
const MODULES: u64 = 2;

fn meta(sink: &mut DeviceSink, name: &str, pid: u64, tid: u64, value: &str) {
    let args = [Arg {
        key: "name",
        value: ArgValue::Str(value),
    }];
    sink.event(&Event {
        phase: Phase::Metadata,
        name,
        cat: "",
        pid,
        tid,
        ts: None,
        dur: None,
        args: &args,
    });
}

fn complete(
    sink: &mut DeviceSink,
    pid: u64,
    tid: u64,
    name: &str,
    ts: i64,
    dur: i64,
    args: &[Arg<'_>],
) {
    sink.event(&Event {
        phase: Phase::Complete,
        name,
        cat: "",
        pid,
        tid,
        ts: Some(ts),
        dur: Some(dur),
        args,
    });
}

fn int(key: &'static str, value: i64) -> Arg<'static> {
    Arg {
        key,
        value: ArgValue::Int(value),
    }
}

fn text(key: &'static str, value: &'static str) -> Arg<'static> {
    Arg {
        key,
        value: ArgValue::Str(value),
    }
}

fn sink() -> DeviceSink {
    let mut sink = DeviceSink::new();
    meta(&mut sink, "process_name", HOST, 0, "/host:CPU");
    meta(&mut sink, "thread_name", HOST, 10, "scheduler");
    meta(&mut sink, "process_name", DEV, 0, "/device:TPU:0");
    meta(&mut sink, "thread_name", DEV, STEPS, "Steps");
    meta(&mut sink, "thread_name", DEV, MODULES, "XLA Modules");
    meta(&mut sink, "thread_name", DEV, OPS, "XLA Ops");
    sink
}

/// An op of program 1 with symbol `symbol`, in step `group`.
fn op(
    sink: &mut DeviceSink,
    name: &str,
    symbol: i64,
    group: i64,
    ts: i64,
    dur: i64,
    tf_op: &'static str,
) {
    let args = [
        int("program_id", 1),
        int("symbol_id", symbol),
        int("group_id", group),
        text("hlo_category", "loop fusion"),
        text("tf_op", tf_op),
        int("flops", 1000),
        int("bytes_accessed", 100),
    ];
    complete(sink, DEV, OPS, name, ts, dur, &args);
}

#[test]
fn nested_ops_keep_only_their_own_time() {
    let mut sink = sink();
    op(&mut sink, "while.1", 1, 0, 100, 50, "jit(f)/while:");
    op(
        &mut sink,
        "fusion.1",
        2,
        0,
        110,
        10,
        "jit(f)/while/body/mlp/dot:",
    );
    op(
        &mut sink,
        "fusion.2",
        3,
        0,
        120,
        20,
        "jit(f)/while/body/attention/dot:",
    );
    op(&mut sink, "copy.1", 4, 0, 200, 5, "jit(f)/copy:");
    let plane = sink.finish().remove(0);
    let self_of = |name: &str| plane.ops.iter().find(|it| it.name == name).unwrap().self_ps;
    assert_eq!(self_of("while.1"), 20);
    assert_eq!(self_of("fusion.1"), 10);
    assert_eq!(self_of("fusion.2"), 20);
    assert_eq!(self_of("copy.1"), 5);
    assert_eq!(plane.busy_ps, 55);
    assert_eq!(plane.op_union_ps, 55);
    assert_eq!(plane.window_ps, 105);
    assert_eq!(plane.idle_ps(), 50);
    let op = plane.ops.iter().find(|it| it.name == "while.1").unwrap();
    assert_eq!(op.framework_op, "jit(f)/while", "the trailing ':' is cut");
    let names: Vec<&str> = plane.ops.iter().map(|it| it.name.as_str()).collect();
    assert_eq!(
        names,
        ["fusion.2", "while.1", "fusion.1", "copy.1"],
        "by self time, then name"
    );
}

#[test]
fn a_parent_listed_after_a_child_with_the_same_start_still_contains_it() {
    let mut sink = sink();
    op(&mut sink, "outer", 1, 0, 0, 100, "");
    op(&mut sink, "inner", 2, 0, 10, 10, "");
    op(&mut sink, "leaf", 3, 0, 10, 5, "");
    op(&mut sink, "mid", 4, 0, 10, 40, "");
    let plane = sink.finish().remove(0);
    let self_of = |name: &str| plane.ops.iter().find(|it| it.name == name).unwrap().self_ps;
    // mid (10..50) contains inner (10..20), which contains leaf (10..15).
    assert_eq!(self_of("leaf"), 5);
    assert_eq!(self_of("inner"), 5);
    assert_eq!(self_of("mid"), 30);
    assert_eq!(self_of("outer"), 60);
    assert_eq!(plane.busy_ps, 100);
    assert_eq!(plane.op_union_ps, 100);
}

#[test]
fn steps_pair_with_ops_by_group_and_host_threads_explain_gaps() {
    let mut sink = sink();
    for (group, start) in [(0, 0), (1, 1000)] {
        let steps = [int("group_id", group)];
        let name = if group == 0 { "0" } else { "1" };
        complete(&mut sink, DEV, STEPS, name, start, 1000, &steps);
        let modules = [int("group_id", group), int("program_id", 1)];
        complete(&mut sink, DEV, MODULES, "jit_f(1)", start, 600, &modules);
        op(
            &mut sink,
            "fusion.1",
            2,
            group,
            start + 100,
            300,
            "jit(f)/mlp/dot:",
        );
    }
    complete(&mut sink, HOST, 10, "run", 0, 2000, &[]);
    complete(&mut sink, HOST, 10, "queue.get", 500, 600, &[]);
    let plane = sink.finish().remove(0);
    assert_eq!(plane.steps.len(), 2);
    assert_eq!(plane.steps[1].compute_ps, 300);
    assert_eq!(plane.steps[1].idle_ps(), 700);
    assert_eq!(plane.steps[1].program.as_deref(), Some("jit_f(1)"));
    assert_eq!(plane.modules[0].count, 2);
    assert_eq!(plane.modules[0].total_ps, 1200);
    // One gap between the modules, 600..1000: queue.get covers 600..1100.
    assert_eq!(plane.idle.gaps, 1);
    assert_eq!(plane.idle.gap_ps, 400);
    assert_eq!(plane.idle.rows.len(), 1);
    assert_eq!(plane.idle.rows[0].thread, "scheduler");
    assert_eq!(plane.idle.rows[0].function, "queue.get");
    assert_eq!(plane.idle.rows[0].overlap_ps, 400);
    assert_eq!(plane.module_duty_cycle(), Some(0.5));
    let stats = step_stats(&plane.steps).unwrap();
    assert_eq!((stats.count, stats.p50_ps, stats.stdev_ps), (2, 1000, 0.0));
}

#[test]
fn device_clock_stats_replace_ts_and_dur() {
    let mut sink = sink();
    let args = [
        text("device_offset_ps", "5000"),
        text("device_duration_ps", "70"),
    ];
    complete(&mut sink, DEV, OPS, "slice.1", 100, 60, &args);
    let plane = sink.finish().remove(0);
    assert!(plane.device_clock);
    assert_eq!(plane.ops[0].self_ps, 70);
    assert_eq!(plane.window_ps, 70);
}

#[test]
fn roofline_numbers_follow_the_peaks() {
    let mut sink = sink();
    sink.set_peaks(
        "/device:TPU:0",
        Peaks {
            device_type: None,
            tflops_per_s: Some(1.0),
            hbm_gbytes_per_s: Some(10.0),
        },
    );
    // 1000 flops, 100 bytes in 1 ns: 1000 GFLOP/s, 100 GB/s, 10 FLOP/byte.
    op(&mut sink, "fusion.1", 2, 0, 0, 1000, "");
    let plane = sink.finish().remove(0);
    let op = &plane.ops[0];
    assert_eq!(op.gflops_per_s(), Some(1000.0));
    assert_eq!(op.gbytes_per_s(), Some(100.0));
    assert_eq!(op.intensity(), Some(10.0));
    assert_eq!(
        op.bound(&plane.peaks),
        Some("memory"),
        "the ridge point is 100"
    );
}

#[test]
fn component_rules_take_the_first_match() {
    assert_eq!(
        component_of("jit(f)/attention/kv_cache/dynamic_update_slice", "", ""),
        "KV cache"
    );
    assert_eq!(
        component_of("jit(f)/while/body/attention/qkv_proj/dot_general", "", ""),
        "attention"
    );
    assert_eq!(
        component_of("jit(f)/while/body/mlp/down_proj/dot_general", "", ""),
        "MLP"
    );
    assert_eq!(
        component_of("jit(f)/lm_head/dot_general", "", ""),
        "sampling/logits"
    );
    assert_eq!(component_of("jit(f)/final_norm/rsqrt", "", ""), "norms");
    assert_eq!(
        component_of("", "all-reduce.3", "collective"),
        "collectives"
    );
    assert_eq!(component_of("jit(f)/embed/gather", "", ""), "other");
}

#[test]
fn planes_without_xla_lines_are_left_out() {
    let mut sink = sink();
    meta(&mut sink, "process_name", 2, 0, "/device:GPU:0");
    meta(&mut sink, "thread_name", 2, 5, "Host callbacks");
    complete(&mut sink, 2, 5, "kernel", 0, 10, &[]);
    // A `Stream #` line is an op line only on a GPU plane.
    meta(&mut sink, "process_name", 3, 0, "/device:CUSTOM:0");
    meta(&mut sink, "thread_name", 3, 5, "Stream #1");
    complete(&mut sink, 3, 5, "kernel", 0, 10, &[]);
    op(&mut sink, "fusion.1", 2, 0, 0, 10, "");
    let planes = sink.finish();
    let names: Vec<&str> = planes.iter().map(|it| it.plane.as_str()).collect();
    assert_eq!(names, ["/device:TPU:0"]);
}

#[test]
fn gpu_stream_lines_are_op_lines() {
    let mut sink = sink();
    meta(&mut sink, "process_name", 2, 0, "/device:GPU:0");
    meta(&mut sink, "thread_name", 2, 5, "Stream #5(Kernel)");
    meta(&mut sink, "thread_name", 2, 6, "Stream #6(MemcpyH2D)");
    complete(&mut sink, 2, 5, "gemm.kd", 0, 10, &[]);
    complete(&mut sink, 2, 5, "gemm.kd", 20, 10, &[]);
    complete(&mut sink, 2, 6, "copy", 5, 30, &[]);
    let planes = sink.finish();
    let gpu = planes
        .iter()
        .find(|it| it.plane == "/device:GPU:0")
        .expect("GPU plane");
    let ops: Vec<(&str, u64, i64)> = gpu
        .ops
        .iter()
        .map(|it| (it.name.as_str(), it.count, it.self_ps))
        .collect();
    // Streams nest each on their own: the copy is not a child of a kernel.
    assert_eq!(ops, [("copy", 1, 30), ("gemm.kd", 2, 20)]);
    assert_eq!((gpu.window_ps, gpu.busy_ps), (35, 50));
}
