//! Tests of the Chrome trace reader: inputs in, a textual dump of the events
//! out, compared with snapshots. Every input goes through [`dump`] five ways
//! (in one piece, as a slice, one byte per read, gzip-compressed, and
//! compressed one byte per read), which must all agree.

mod cases;
mod errors;
mod hostile;
mod props;

use std::fmt::Write as _;
use std::io::{Read, Write as _};

use trace_model::{ArgValue, Event};

/// Reads `input` every way and snapshots the dump under the name `expect`.
#[track_caller]
fn check(input: &str, expect: &str) {
    insta::assert_snapshot!(expect, dump(input.as_bytes()));
}

/// Reads `input` every way and asserts it fails with exactly `expect`.
#[track_caller]
fn check_error(input: &[u8], expect: &str) {
    let actual = dump(input);
    let last = actual.lines().last().unwrap_or("");
    assert_eq!(
        last.strip_prefix("error: ").unwrap_or(last),
        expect,
        "dump:\n{actual}"
    );
}

/// The events and the outcome of reading `input`, the same whichever way it
/// is fed.
fn dump(input: &[u8]) -> String {
    let whole = dump_with(|sink| trace_chrome::read(&mut &input[..], sink));
    let slice = dump_with(|sink| trace_chrome::read_slice(input, sink));
    assert_eq!(slice, whole, "read_slice differs from read");
    let bytewise = dump_with(|sink| trace_chrome::read(&mut OneByte(input), sink));
    assert_eq!(bytewise, whole, "reading one byte at a time differs");
    if !input.starts_with(&[0x1f, 0x8b]) {
        let gz = gzip(input);
        let from_gz = dump_with(|sink| trace_chrome::read(&mut &gz[..], sink));
        assert_eq!(from_gz, whole, "gzip differs from plain");
        let from_gz_bytewise = dump_with(|sink| trace_chrome::read(&mut OneByte(&gz), sink));
        assert_eq!(
            from_gz_bytewise, whole,
            "gzip one byte at a time differs from plain"
        );
    }
    whole
}

fn dump_with(read: impl FnOnce(&mut dyn trace_model::EventSink) -> ReadResult) -> String {
    let mut out = String::new();
    let mut sink = |event: &Event<'_>| dump_event(&mut out, event);
    let res = read(&mut sink);
    match res {
        Ok(summary) => writeln!(
            out,
            "n_events={} origin_ps={}",
            summary.n_events, summary.origin_ps
        )
        .unwrap(),
        Err(err) => writeln!(out, "error: {err}").unwrap(),
    }
    out
}

type ReadResult = Result<trace_model::ReadSummary, trace_chrome::Error>;

fn dump_event(out: &mut String, event: &Event<'_>) {
    write!(
        out,
        "{} pid={} tid={}",
        event.phase.label(),
        event.pid,
        event.tid
    )
    .unwrap();
    if let Some(ts) = event.ts {
        write!(out, " ts={ts}").unwrap();
    }
    if let Some(dur) = event.dur {
        write!(out, " dur={dur}").unwrap();
    }
    write!(out, " name={:?}", event.name).unwrap();
    if !event.cat.is_empty() {
        write!(out, " cat={:?}", event.cat).unwrap();
    }
    out.push('\n');
    for arg in event.args {
        let value = match arg.value {
            ArgValue::Str(s) => format!("Str({s:?})"),
            // `{:?}` of a float is stable and shows its kind.
            other => format!("{other:?}"),
        };
        writeln!(out, "    {:?}: {value}", arg.key).unwrap();
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A reader that hands out one byte per call, to split every token.
struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// The real fixture: the head of a JAX CPU trace.
fn jax_cpu_head() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/chrome/jax-cpu-head.trace.json.gz"
    );
    std::fs::read(path).unwrap()
}
