//! Small XSpaces built from prost structs: the mapping rules of the crate
//! docs, one case each.

use std::collections::BTreeMap;

use trace_xplane::generated::{
    XEvent, XEventMetadata, XLine, XPlane, XSpace, XStat, XStatMetadata, x_event, x_stat,
};

use crate::{check, stat};

fn event_meta(id: i64, name: &str) -> XEventMetadata {
    XEventMetadata {
        id,
        name: name.to_owned(),
        ..XEventMetadata::default()
    }
}

fn stat_names(names: &[(i64, &str)]) -> BTreeMap<i64, XStatMetadata> {
    names
        .iter()
        .map(|&(id, name)| {
            (
                id,
                XStatMetadata {
                    id,
                    name: name.to_owned(),
                    description: String::new(),
                },
            )
        })
        .collect()
}

fn event(metadata_id: i64, offset_ps: i64, duration_ps: i64) -> XEvent {
    XEvent {
        metadata_id,
        data: Some(x_event::Data::OffsetPs(offset_ps)),
        duration_ps,
        stats: Vec::new(),
    }
}

fn line(id: i64, name: &str, timestamp_ns: i64, events: Vec<XEvent>) -> XLine {
    XLine {
        id,
        name: name.to_owned(),
        timestamp_ns,
        events,
        ..XLine::default()
    }
}

/// A host plane with every kind of stat, nested events, a display name, an
/// aggregated event, a zero-length event, an internal event and an unknown
/// metadata id.
fn host_plane() -> XPlane {
    let mut with_meta_stats = event_meta(3, "fusion.1");
    with_meta_stats.stats = vec![
        stat(5, x_stat::Value::RefValue(6)),
        stat(4, x_stat::Value::StrValue("from metadata".to_owned())),
    ];
    let mut shown = event_meta(4, "a very long name of an op (with operands)");
    shown.display_name = "op".to_owned();
    let event_metadata = [
        (1, event_meta(1, "$scheduler.py:477 process_input_requests")),
        (2, event_meta(2, "$utils.py:21 __call__")),
        (3, with_meta_stats),
        (4, shown),
        (5, event_meta(5, "MemoryAllocation")),
        (6, event_meta(6, "aggregated")),
    ]
    .into_iter()
    .collect();
    let mut all_kinds = event(3, 3_000, 500);
    all_kinds.stats = vec![
        stat(1, x_stat::Value::DoubleValue(0.25)),
        stat(2, x_stat::Value::Uint64Value(u64::MAX)),
        stat(3, x_stat::Value::Int64Value(-7)),
        stat(4, x_stat::Value::StrValue("overrides metadata".to_owned())),
        stat(7, x_stat::Value::BytesValue(vec![1, 2, 3])),
        stat(99, x_stat::Value::Int64Value(1)),
        XStat {
            metadata_id: 1,
            value: None,
        },
    ];
    let aggregated = XEvent {
        metadata_id: 6,
        data: Some(x_event::Data::NumOccurrences(12)),
        duration_ps: 9_000,
        stats: Vec::new(),
    };
    let main = line(
        10,
        "sglang::schedul",
        2_000,
        vec![
            event(1, 0, 10_000),
            event(2, 1_000, 8_000),
            all_kinds,
            event(4, 4_000, 0),
        ],
    );
    let mut worker = line(
        4_728_565_628_093_986_205,
        "tf_XLAEigen/4728565628093986205",
        1_000,
        vec![event(5, 0, 100), aggregated, event(42, 2_500, 1)],
    );
    worker.display_name = "eigen worker".to_owned();
    XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines: vec![main, worker],
        event_metadata,
        stat_metadata: stat_names(&[
            (1, "double"),
            (2, "uint"),
            (3, "int"),
            (4, "text"),
            (5, "hlo_module"),
            (6, "jit_step"),
            (7, "blob"),
        ]),
        stats: Vec::new(),
    }
}

/// The `/host:metadata` plane: HLO protos as opaque bytes, no lines.
fn metadata_plane() -> XPlane {
    let mut hlo = event_meta(1, "jit_step");
    hlo.metadata = vec![7; 300];
    hlo.stats = vec![stat(1, x_stat::Value::BytesValue(vec![8; 200]))];
    XPlane {
        id: 0,
        name: "/host:metadata".to_owned(),
        lines: Vec::new(),
        event_metadata: [(1, hlo)].into_iter().collect(),
        stat_metadata: stat_names(&[(1, "Hlo Proto")]),
        stats: Vec::new(),
    }
}

fn device_plane(id: i64, name: &str) -> XPlane {
    let ops = line(
        1,
        "XLA Ops",
        3_000,
        vec![event(1, 0, 700), event(2, 100, 200)],
    );
    let async_ops = line(2, "Async XLA Ops", 3_000, vec![event(1, 0, 700)]);
    XPlane {
        id,
        name: name.to_owned(),
        lines: vec![ops, async_ops],
        event_metadata: [(1, event_meta(1, "fusion.2")), (2, event_meta(2, "copy.3"))]
            .into_iter()
            .collect(),
        stat_metadata: BTreeMap::new(),
        stats: Vec::new(),
    }
}

fn task_environment() -> XPlane {
    XPlane {
        id: 0,
        name: "Task Environment".to_owned(),
        stat_metadata: stat_names(&[(1, "profile_start_time")]),
        stats: vec![stat(
            1,
            x_stat::Value::Uint64Value(1_795_440_770_156_009_821),
        )],
        ..XPlane::default()
    }
}

#[test]
fn host_plane_only() {
    let space = XSpace {
        planes: vec![metadata_plane(), host_plane(), task_environment()],
        hostnames: vec!["vm".to_owned()],
        ..XSpace::default()
    };
    check("host_plane_only", &space);
}

#[test]
fn device_planes_of_the_first_family_follow_the_host() {
    let space = XSpace {
        planes: vec![
            device_plane(7, "/device:CUSTOM:0"),
            device_plane(1, "/device:TPU:1"),
            metadata_plane(),
            device_plane(0, "/device:TPU:0"),
            host_plane(),
        ],
        ..XSpace::default()
    };
    check("device_planes_of_the_first_family_follow_the_host", &space);
}

#[test]
fn custom_planes_when_no_gpu_or_tpu() {
    let space = XSpace {
        planes: vec![device_plane(3, "/device:CUSTOM:3")],
        ..XSpace::default()
    };
    check("custom_planes_when_no_gpu_or_tpu", &space);
}

#[test]
fn step_name_stat_renames_the_event() {
    let mut steps = line(
        3,
        "Steps",
        0,
        vec![
            event(1, 0, 1_000),
            event(1, 1_000, 1_000),
            event(1, 2_000, 1_000),
        ],
    );
    steps.events[0].stats = vec![stat(1, x_stat::Value::Int64Value(41))];
    steps.events[1].stats = vec![stat(1, x_stat::Value::StrValue("step 42".to_owned()))];
    steps.events[2].stats = vec![stat(1, x_stat::Value::RefValue(2))];
    let plane = XPlane {
        id: 0,
        name: "/device:TPU:0".to_owned(),
        lines: vec![steps],
        event_metadata: [(1, event_meta(1, "train_step"))].into_iter().collect(),
        stat_metadata: stat_names(&[(1, "step_name"), (2, "step 43")]),
        stats: Vec::new(),
    };
    check(
        "step_name_stat_renames_the_event",
        &XSpace {
            planes: vec![plane],
            ..XSpace::default()
        },
    );
}

/// Real profiles stamp lines with nanoseconds since the epoch: times stay
/// exact relative to the earliest line with events, and a line without
/// events does not move the origin.
#[test]
fn epoch_timestamps_are_relative_to_the_earliest_line() {
    let epoch_ns = 1_795_440_770_156_009_821;
    let plane = XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines: vec![
            line(1, "late", epoch_ns + 5, vec![event(1, 3, 4)]),
            line(2, "empty and early", epoch_ns - 1_000_000, Vec::new()),
            line(3, "early", epoch_ns, vec![event(1, 1, 2)]),
        ],
        event_metadata: [(1, event_meta(1, "work"))].into_iter().collect(),
        ..XPlane::default()
    };
    check(
        "epoch_timestamps_are_relative_to_the_earliest_line",
        &XSpace {
            planes: vec![plane],
            ..XSpace::default()
        },
    );
}

#[test]
fn times_too_far_apart_are_an_error() {
    let plane = XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines: vec![
            line(1, "zero", 0, vec![event(1, 0, 1)]),
            line(2, "epoch", 1_795_440_770_156_009_821, vec![event(1, 0, 1)]),
        ],
        event_metadata: [(1, event_meta(1, "work"))].into_iter().collect(),
        ..XPlane::default()
    };
    check(
        "times_too_far_apart_are_an_error",
        &XSpace {
            planes: vec![plane],
            ..XSpace::default()
        },
    );
}

/// Ids far apart take the hash map path of the metadata tables.
#[test]
fn sparse_metadata_ids() {
    let big = 9_000_000_000_000;
    let mut op = event(big, 0, 5);
    op.stats = vec![stat(-3, x_stat::Value::RefValue(big as u64))];
    let plane = XPlane {
        id: 0,
        name: "/host:CPU".to_owned(),
        lines: vec![line(-1, "negative id", 0, vec![op, event(-5, 5, 5)])],
        event_metadata: [
            (big, event_meta(big, "far")),
            (-5, event_meta(-5, "negative")),
        ]
        .into_iter()
        .collect(),
        stat_metadata: stat_names(&[(-3, "ref"), (big, "far name")]),
        stats: Vec::new(),
    };
    check(
        "sparse_metadata_ids",
        &XSpace {
            planes: vec![plane],
            ..XSpace::default()
        },
    );
}

/// A space with planes but no host or device plane streams nothing, and says
/// so through `planes`.
#[test]
fn no_streamed_plane() {
    let space = XSpace {
        planes: vec![metadata_plane(), task_environment()],
        ..XSpace::default()
    };
    check("no_streamed_plane", &space);
}
