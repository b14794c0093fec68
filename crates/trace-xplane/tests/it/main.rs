//! The integration tests of trace-xplane, in one binary.
//!
//! Most tests build a small XSpace with the prost types, encode it, and
//! compare what [`check`] prints against an insta snapshot.

mod bad_input;
mod codegen;
mod props;
mod read;
mod real;
mod tile;

use std::fmt::Write as _;

use prost::Message;
use trace_model::{ArgValue, Event, EventSink, Phase};
use trace_xplane::generated::{XSpace, XStat, x_stat};

/// Reads `bytes` and prints the plane list, the summary and every event, one
/// per line; or the error.
fn render(bytes: &[u8]) -> String {
    let mut out = String::new();
    match trace_xplane::planes(bytes) {
        Ok(planes) => {
            for plane in planes {
                let streamed = if plane.streamed { " streamed" } else { "" };
                let _ = writeln!(
                    out,
                    "plane {} {:?}: {} lines, {} events{streamed}",
                    plane.id, plane.name, plane.n_lines, plane.n_events
                );
            }
        }
        Err(err) => {
            let _ = writeln!(out, "planes error: {err}");
        }
    }
    let mut events = String::new();
    let mut sink = |event: &Event<'_>| {
        let _ = writeln!(events, "{}", show_event(event));
    };
    let whole = trace_xplane::read(bytes, &mut sink);
    check_parts(bytes, &whole, &events);
    match whole {
        Ok(summary) => {
            let _ = writeln!(
                out,
                "{} events, origin {} ps",
                summary.n_events, summary.origin_ps
            );
        }
        Err(err) => {
            let _ = writeln!(out, "read error: {err}");
        }
    }
    out.push_str(&events);
    out
}

/// A sink that prints events as [`render`] does.
#[derive(Default)]
struct Lines(String);

impl EventSink for Lines {
    fn event(&mut self, event: &Event<'_>) {
        let _ = writeln!(self.0, "{}", show_event(event));
    }
}

/// `read_parts` into 1 to 4 sinks agrees with `read`: the same result, and
/// on success the parts' events, concatenated, are `read`'s events.
#[track_caller]
fn check_parts(
    bytes: &[u8],
    whole: &Result<trace_model::ReadSummary, trace_xplane::Error>,
    events: &str,
) {
    for n in 1..=4 {
        let mut sinks: Vec<Lines> = (0..n).map(|_| Lines::default()).collect();
        let parts = trace_xplane::read_parts(bytes, &mut sinks);
        match (whole, parts) {
            (Ok(whole), Ok(parts)) => {
                assert_eq!(*whole, parts, "{n} parts");
                let joined: String = sinks.iter().map(|it| it.0.as_str()).collect();
                assert_eq!(joined, events, "{n} parts");
            }
            (Err(whole), Err(parts)) => {
                assert_eq!(whole.to_string(), parts.to_string(), "{n} parts")
            }
            (whole, parts) => panic!("{n} parts: read gave {whole:?}, read_parts {parts:?}"),
        }
    }
    check_stream(bytes, whole, events);
}

/// A [`trace_xplane::Stream`] laid out once reads what the functions read:
/// `read`'s stream, and for some lines (odd tids) `read_lines`'s, which
/// `read_parts_of_lines` into 1 to 4 sinks gives too, joined.
#[track_caller]
fn check_stream(
    bytes: &[u8],
    whole: &Result<trace_model::ReadSummary, trace_xplane::Error>,
    events: &str,
) {
    let shown = |res: &Result<trace_model::ReadSummary, trace_xplane::Error>| match res {
        Ok(summary) => format!("{summary:?}"),
        Err(err) => err.to_string(),
    };
    let stream = match trace_xplane::Stream::new(bytes) {
        Ok(stream) => stream,
        Err(err) => {
            assert_eq!(err.to_string(), shown(whole));
            return;
        }
    };
    let mut again = Lines::default();
    let res = stream.read(&mut again);
    assert_eq!(shown(&res), shown(whole));
    if res.is_ok() {
        assert_eq!(again.0, events);
    }
    let keep = |line: &trace_xplane::LineInfo<'_>| line.tid % 2 == 1;
    let mut some = Lines::default();
    let lines = trace_xplane::read_lines(bytes, &keep, &mut some);
    let mut from_stream = Lines::default();
    assert_eq!(
        shown(&stream.read_lines(&keep, &mut from_stream)),
        shown(&lines)
    );
    assert_eq!(from_stream.0, some.0);
    for n in 1..=4 {
        let mut sinks: Vec<Lines> = (0..n).map(|_| Lines::default()).collect();
        let parts = stream.read_parts_of_lines(&keep, &mut sinks);
        assert_eq!(shown(&parts), shown(&lines), "{n} parts of some lines");
        if parts.is_ok() {
            let joined: String = sinks.iter().map(|it| it.0.as_str()).collect();
            assert_eq!(joined, some.0, "{n} parts of some lines");
        }
    }
}

fn show_event(event: &Event<'_>) -> String {
    let mut line = format!(
        "{} {:?} pid={} tid={}",
        event.phase.label(),
        event.name,
        event.pid,
        event.tid
    );
    if let Some(ts) = event.ts {
        let _ = write!(line, " ts={ts}");
    }
    if let Some(dur) = event.dur {
        let _ = write!(line, " dur={dur}");
    }
    assert!(event.cat.is_empty());
    assert_eq!(event.phase == Phase::Complete, event.ts.is_some());
    for arg in event.args {
        let value = match arg.value {
            ArgValue::Str(s) => format!("{s:?}"),
            ArgValue::Int(v) => format!("{v}i"),
            ArgValue::Uint(v) => format!("{v}u"),
            ArgValue::Float(v) => format!("{v:?}f"),
            ArgValue::Bool(v) => format!("{v}"),
            ArgValue::Null => "null".to_owned(),
            ArgValue::Raw(s) => format!("raw {s}"),
        };
        let _ = write!(line, " {}={value}", arg.key);
    }
    line
}

/// Encodes `space`, reads it back, and compares what [`render`] prints with
/// the snapshot `name`.
#[track_caller]
fn check(name: &str, space: &XSpace) {
    check_bytes(name, &space.encode_to_vec());
}

/// [`check`] for raw bytes.
#[track_caller]
fn check_bytes(name: &str, bytes: &[u8]) {
    insta::assert_snapshot!(name, render(bytes));
}

/// A stat with the given metadata id and value.
fn stat(metadata_id: i64, value: x_stat::Value) -> XStat {
    XStat {
        metadata_id,
        value: Some(value),
    }
}
