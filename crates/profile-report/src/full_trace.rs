//! The whole session as Chrome trace JSON beside the report, for Perfetto,
//! when JAX's own JSON does not hold it: the JSON stopped at JAX's export
//! cap, or there is only an `xplane.pb`.
//!
//! Events stream from the `xplane.pb` through `trace_export::Exporter` (the
//! writer of `cargo xtask trace`) into gzip-compressed temporary files in
//! the output folder; nothing per event is kept. The files are published
//! with the report, under their final names: `trace-full.json.gz` when the
//! session fits one chunk, else `trace-full.000.json.gz`, `...001...`, each
//! with every process and thread name.

use std::path::{Path, PathBuf};

use trace_export::Selection;

use crate::Error;
use crate::export::{Naming, Numbered, Requests, RequestsOnTimeline, TraceInput, export_into};
use crate::outputs::OutputSet;

/// The stem of the full trace's file names.
pub const FULL_TRACE_STEM: &str = "trace-full";

/// The events per file by default: what Perfetto's UI opens comfortably,
/// and no more than JAX itself puts in one JSON.
pub const FULL_TRACE_CHUNK_EVENTS: u64 = 1_000_000;

fn naming() -> Naming {
    Naming {
        stem: FULL_TRACE_STEM.to_owned(),
        ext: ".json.gz".to_owned(),
        numbered: Numbered::WhenSplit,
    }
}

/// The name of chunk `index` of `chunks`.
pub fn chunk_name(index: u32, chunks: u32) -> String {
    naming().name(index, chunks)
}

/// Whether `name` is one of the names a full trace is published under.
pub(crate) fn is_full_trace_name(name: &str) -> bool {
    naming().is_mine(name)
}

/// The staged chunks' final paths, the number of events written and the
/// requests added.
pub(crate) struct Written {
    pub files: Vec<PathBuf>,
    pub events: u64,
    pub requests: Option<RequestsOnTimeline>,
}

/// Exports every event of the trace at `source` (an `xplane.pb`, or JAX's
/// trace JSON when it is whole and only the requests are missing from it),
/// with the client's `requests`, into gzip chunks of at most
/// `chunk_events` events, staged in `set`.
pub(crate) fn export(
    source: &Path,
    set: &mut OutputSet,
    chunk_events: u64,
    requests: Option<&Requests>,
) -> Result<Written, Error> {
    let input = TraceInput::open(source)?;
    let selection = Selection {
        split_events: Some(chunk_events.max(1)),
        ..Selection::default()
    };
    let exported = export_into(&input, selection, set, &naming(), requests)?;
    Ok(Written {
        files: exported.files,
        events: exported.summary.events,
        requests: exported.requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(chunk_name(0, 1), "trace-full.json.gz");
        assert_eq!(chunk_name(2, 3), "trace-full.002.json.gz");
        for name in [
            "trace-full.json.gz",
            "trace-full.000.json.gz",
            "trace-full.1234.json.gz",
        ] {
            assert!(is_full_trace_name(name), "{name}");
        }
        for name in [
            "trace-full.json",
            "trace-full.0.json.gz",
            "trace-full.abc.json.gz",
            "my-trace-full.json.gz",
            "report.md",
        ] {
            assert!(!is_full_trace_name(name), "{name}");
        }
    }
}
