//! A handmade XPlane whose op intervals nest on the host-synchronised clock
//! but not on the device clock: the device view nests on the device clock,
//! as xprof 2.24.2 does (its `framework_op_stats` for the same file is
//! committed beside it and checked here too).

use prost::Message;
use trace_xplane::generated::{
    XEvent, XEventMetadata, XLine, XPlane, XSpace, XStat, XStatMetadata, x_event, x_stat,
};

use crate::fixtures::{Table, agree, device_view, root};

const PS_PER_US: f64 = 1e6;

/// Stat metadata ids.
const PROGRAM_ID: i64 = 1;
const SYMBOL_ID: i64 = 2;
const CATEGORY: i64 = 3;
const DEVICE_OFFSET: i64 = 4;
const DEVICE_DURATION: i64 = 5;

fn stat(id: i64, value: x_stat::Value) -> XStat {
    XStat {
        metadata_id: id,
        value: Some(value),
    }
}

fn op_meta(id: i64, name: &str, symbol: i64) -> (i64, XEventMetadata) {
    let meta = XEventMetadata {
        id,
        name: format!("%{name} = f32[8]{{0}} fusion(f32[8]{{0}} %p), kind=kLoop"),
        display_name: name.to_owned(),
        stats: vec![
            stat(PROGRAM_ID, x_stat::Value::Int64Value(7)),
            stat(SYMBOL_ID, x_stat::Value::Int64Value(symbol)),
            stat(CATEGORY, x_stat::Value::StrValue("loop fusion".to_owned())),
        ],
        ..XEventMetadata::default()
    };
    (id, meta)
}

/// An op: host-synchronised `(offset, duration)` and device-clock
/// `(offset, duration)`, in microseconds.
fn op(metadata_id: i64, host: (i64, i64), device: (i64, i64)) -> XEvent {
    let us = 1_000_000;
    XEvent {
        metadata_id,
        duration_ps: host.1 * us,
        stats: vec![
            stat(DEVICE_OFFSET, x_stat::Value::Int64Value(device.0 * us)),
            stat(DEVICE_DURATION, x_stat::Value::Int64Value(device.1 * us)),
        ],
        data: Some(x_event::Data::OffsetPs(host.0 * us)),
    }
}

/// The XSpace: one TPU plane with a module execution and two ops. On the
/// host clock `inner` (10..30 µs) lies inside `outer` (0..100 µs); on the
/// device clock `outer` runs 0..50 µs and `inner` 60..70 µs.
fn handmade() -> Vec<u8> {
    let stat_names = [
        (PROGRAM_ID, "program_id"),
        (SYMBOL_ID, "symbol_id"),
        (CATEGORY, "hlo_category"),
        (DEVICE_OFFSET, "device_offset_ps"),
        (DEVICE_DURATION, "device_duration_ps"),
    ];
    let module = XEventMetadata {
        id: 1,
        name: "jit_f(7)".to_owned(),
        stats: vec![stat(PROGRAM_ID, x_stat::Value::Int64Value(7))],
        ..XEventMetadata::default()
    };
    let plane = XPlane {
        id: 0,
        name: "/device:TPU:0".to_owned(),
        lines: vec![
            XLine {
                id: 1,
                name: "XLA Modules".to_owned(),
                timestamp_ns: 1_000,
                events: vec![XEvent {
                    metadata_id: 1,
                    duration_ps: 200_000_000,
                    data: Some(x_event::Data::OffsetPs(0)),
                    ..XEvent::default()
                }],
                ..XLine::default()
            },
            XLine {
                id: 2,
                name: "XLA Ops".to_owned(),
                timestamp_ns: 1_000,
                events: vec![op(2, (0, 100), (0, 50)), op(3, (10, 20), (60, 10))],
                ..XLine::default()
            },
        ],
        event_metadata: [(1, module), op_meta(2, "outer", 1), op_meta(3, "inner", 2)]
            .into_iter()
            .collect(),
        stat_metadata: stat_names
            .iter()
            .map(|&(id, name)| {
                (
                    id,
                    XStatMetadata {
                        id,
                        name: name.to_owned(),
                        ..XStatMetadata::default()
                    },
                )
            })
            .collect(),
        stats: Vec::new(),
    };
    XSpace {
        planes: vec![plane],
        hostnames: vec!["handmade".to_owned()],
        ..XSpace::default()
    }
    .encode_to_vec()
}

fn committed() -> std::path::PathBuf {
    root().join("real-device/handmade-clocks/handmade.xplane.pb")
}

#[test]
fn the_committed_file_is_the_handmade_one() {
    let bytes = handmade();
    if std::env::var_os("SGLPROF_WRITE_FIXTURES").is_some() {
        std::fs::write(committed(), &bytes).expect("write the fixture");
    }
    let file = std::fs::read(committed()).expect("fixture");
    assert!(
        file == bytes,
        "the committed handmade.xplane.pb differs from `handmade()`: rerun this test with SGLPROF_WRITE_FIXTURES=1 and regenerate xprof's output (see the folder's README)"
    );
}

#[test]
fn ops_nest_on_the_device_clock_not_the_host_clock() {
    let planes = device_view(&handmade());
    let plane = &planes[0];
    assert!(plane.device_clock);
    let self_of = |name: &str| {
        let op = plane.ops.iter().find(|it| it.name == name).expect("op");
        (op.total_ps, op.self_ps)
    };
    let us = 1_000_000;
    // On the host clock `outer` would lose `inner`'s 20 µs; on the device
    // clock nothing nests.
    assert_eq!(self_of("outer"), (50 * us, 50 * us));
    assert_eq!(self_of("inner"), (10 * us, 10 * us));
    assert_eq!(plane.busy_ps, 60 * us);
    // The window is 0..70 µs of the device clock (0..100 µs on the host's).
    assert_eq!(plane.window_ps, 70 * us);
    assert_eq!(plane.idle_ps(), 10 * us);
    assert_eq!(plane.out_of_order, 0);
}

#[test]
fn xprof_agrees_on_the_handmade_file() {
    let planes = device_view(&std::fs::read(committed()).expect("fixture"));
    let plane = &planes[0];
    let path = root().join("real-device/handmade-clocks/xprof-2.24.2/framework_op_stats.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("xprof output")).expect("JSON");
    let table = Table::parse(&json[0]);
    let (kind, name, total, selft) = (
        table.col("host_or_device"),
        table.col("operation"),
        table.col("total_time"),
        table.col("total_self_time"),
    );
    let mut rows = 0;
    for row in table.rows.iter().filter(|it| it[kind] == "Device") {
        let name = row[name].as_str().expect("name");
        let (ours_total, ours_self) = if name == "IDLE" {
            (plane.idle_ps(), plane.idle_ps())
        } else {
            let op = plane.ops.iter().find(|it| it.name == name).expect("op");
            (op.total_ps, op.self_ps)
        };
        agree(
            name,
            ours_total as f64 / PS_PER_US,
            row[total].as_f64().expect("total"),
            0.0,
        );
        agree(
            name,
            ours_self as f64 / PS_PER_US,
            row[selft].as_f64().expect("self"),
            0.0,
        );
        rows += 1;
    }
    assert_eq!(rows, 3, "outer, inner and IDLE");
}
