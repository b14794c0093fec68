//! `tile`: a longer session made of a real one, checked against the prost
//! decoding of the original: every line's events repeated, shifted by the
//! plane's span, everything else unchanged.

use std::path::Path;

use prost::Message;
use trace_xplane::generated::{XSpace, x_event};

fn fixture() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/xplane/jax-cpu-head.xplane.pb");
    std::fs::read(path).expect("read the real fixture")
}

fn offset(event: &trace_xplane::generated::XEvent) -> Option<i64> {
    match event.data {
        Some(x_event::Data::OffsetPs(offset)) => Some(offset),
        _ => None,
    }
}

#[test]
fn tiling_repeats_each_lines_events_shifted_by_the_planes_span() {
    let bytes = fixture();
    let original = XSpace::decode(&bytes[..]).unwrap();
    let mut out = Vec::new();
    trace_xplane::tile(&bytes, 2.5, &mut out).unwrap();
    let tiled = XSpace::decode(&out[..]).unwrap();
    assert_eq!(tiled.planes.len(), original.planes.len());
    for (a, b) in original.planes.iter().zip(&tiled.planes) {
        assert_eq!(
            (a.id, &a.name, &a.event_metadata, &a.stat_metadata, &a.stats),
            (b.id, &b.name, &b.event_metadata, &b.stat_metadata, &b.stats)
        );
        let times: Vec<(i64, i64)> = a
            .lines
            .iter()
            .flat_map(|line| {
                line.events.iter().filter_map(move |e| {
                    let start = line.timestamp_ns * 1000 + offset(e)?;
                    Some((start, start + e.duration_ps))
                })
            })
            .collect();
        let span = times.iter().map(|it| it.1).max().unwrap_or(0)
            - times.iter().map(|it| it.0).min().unwrap_or(0)
            + 1000;
        for (la, lb) in a.lines.iter().zip(&b.lines) {
            let n = la.events.len();
            assert_eq!(lb.events.len(), 2 * n + n / 2, "line {}", la.id);
            assert_eq!(
                (la.id, &la.name, la.timestamp_ns),
                (lb.id, &lb.name, lb.timestamp_ns)
            );
            for (idx, copy) in lb.events.iter().enumerate() {
                let (k, of) = (idx / n.max(1), &la.events[idx % n.max(1)]);
                let mut expected = of.clone();
                if let Some(offset) = offset(of) {
                    expected.data = Some(x_event::Data::OffsetPs(offset + k as i64 * span));
                }
                assert_eq!(copy, &expected);
            }
        }
    }
    // And the reader takes it: 2.5 times the complete events.
    let count = |bytes: &[u8]| {
        let mut n = 0u64;
        let mut sink = |event: &trace_model::Event<'_>| {
            n += u64::from(event.phase == trace_model::Phase::Complete);
        };
        trace_xplane::read(bytes, &mut sink).unwrap();
        n
    };
    let (before, after) = (count(&bytes), count(&out));
    assert!(
        after >= 2 * before + before / 2 - 10 && after <= 2 * before + before / 2,
        "{before} -> {after}"
    );
}
