//! The real AMD MI300 XSpace: kernels on per-stream lines of `/device:GPU:0`,
//! against a direct reading of those lines' events.

use std::collections::BTreeMap;

use trace_model::{ArgValue, Event, Phase};

use crate::fixtures::{device_view, root};

#[test]
fn mi300_stream_kernels_are_the_gpu_ops() {
    let bytes =
        std::fs::read(root().join("real-device/amd-mi300-jax-gemm.xplane.pb")).expect("fixture");
    // Every complete event on a `Stream #` line of GPU:0, by name:
    // (count, Σ duration), and each stream's intervals.
    let mut pid_gpu0 = None;
    let mut streams = Vec::new();
    let mut by_name: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut intervals: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    let mut collect = |event: &Event<'_>| {
        let name_arg = || match event.arg("name") {
            Some(ArgValue::Str(s)) => s,
            _ => "",
        };
        match (event.phase, event.name) {
            (Phase::Metadata, "process_name") if name_arg() == "/device:GPU:0" => {
                pid_gpu0 = Some(event.pid)
            }
            (Phase::Metadata, "thread_name")
                if Some(event.pid) == pid_gpu0 && name_arg().starts_with("Stream #") =>
            {
                streams.push(event.tid)
            }
            (Phase::Complete, _) if Some(event.pid) == pid_gpu0 && streams.contains(&event.tid) => {
                let (ts, dur) = (event.ts.expect("ts"), event.dur.expect("dur"));
                let acc = by_name.entry(event.name.to_owned()).or_default();
                acc.0 += 1;
                acc.1 += dur;
                intervals.entry(event.tid).or_default().push((ts, ts + dur));
            }
            _ => {}
        }
    };
    trace_xplane::read(&bytes, &mut collect).expect("valid XSpace");
    assert_eq!(streams.len(), 2, "two stream lines");
    let n_events: u64 = by_name.values().map(|it| it.0).sum();
    assert_eq!(n_events, 54);
    // Kernels on one stream run one after another, so self time is duration.
    for spans in intervals.values_mut() {
        spans.sort_unstable();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "stream overlap");
    }
    let start = intervals
        .values()
        .flatten()
        .map(|it| it.0)
        .min()
        .expect("events");
    let end = intervals
        .values()
        .flatten()
        .map(|it| it.1)
        .max()
        .expect("events");

    let planes = device_view(&bytes);
    let names: Vec<&str> = planes.iter().map(|it| it.plane.as_str()).collect();
    assert_eq!(names, ["/device:GPU:0"], "only GPU:0 has events");
    let gpu = &planes[0];
    assert!(!gpu.device_clock);
    assert_eq!(gpu.window_ps, end - start);
    assert_eq!(gpu.busy_ps, by_name.values().map(|it| it.1).sum::<i64>());
    let ops: BTreeMap<String, (u64, i64)> = gpu
        .ops
        .iter()
        .map(|it| {
            assert_eq!(it.self_ps, it.total_ps, "{}", it.name);
            (it.name.clone(), (it.count, it.total_ps))
        })
        .collect();
    assert_eq!(ops, by_name);
    // The machine's peaks are not in this XSpace's plane stats.
    assert_eq!(gpu.peaks.tflops_per_s, None);
}
