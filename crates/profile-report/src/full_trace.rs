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

use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use std::path::PathBuf;

use trace_export::{Exporter, Selection};

use crate::Error;
use crate::outputs::{OutputSet, Temp};

/// The stem of the full trace's file names.
pub const FULL_TRACE_STEM: &str = "trace-full";

/// The events per file by default: what Perfetto's UI opens comfortably,
/// and no more than JAX itself puts in one JSON.
pub const FULL_TRACE_CHUNK_EVENTS: u64 = 1_000_000;

/// The name of chunk `index` of `chunks`.
pub fn chunk_name(index: u32, chunks: u32) -> String {
    if chunks == 1 {
        format!("{FULL_TRACE_STEM}.json.gz")
    } else {
        format!("{FULL_TRACE_STEM}.{index:03}.json.gz")
    }
}

/// Whether `name` is one of the names a full trace is published under.
pub(crate) fn is_full_trace_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(FULL_TRACE_STEM) else {
        return false;
    };
    let Some(middle) = rest.strip_suffix(".json.gz") else {
        return false;
    };
    middle.is_empty()
        || middle
            .strip_prefix('.')
            .is_some_and(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The staged chunks' final paths and the number of events written.
pub(crate) struct Written {
    pub files: Vec<PathBuf>,
    pub events: u64,
}

/// Exports every event of the `xplane.pb` at `source` into gzip chunks of
/// at most `chunk_events` events, staged in `set`.
pub(crate) fn export(
    source: &Path,
    set: &mut OutputSet,
    chunk_events: u64,
) -> Result<Written, Error> {
    let bytes = std::fs::read(source).map_err(|err| Error::Read {
        path: source.to_path_buf(),
        source: err,
    })?;
    let target = set.dir().join(chunk_name(0, 1));
    let mut temps: Vec<Temp> = Vec::new();
    let mut open_err: Option<Error> = None;
    let summary = {
        let set = &*set;
        let open = |_chunk: u32| -> std::io::Result<GzEncoder<BufWriter<std::fs::File>>> {
            match set.temp(&format!("{FULL_TRACE_STEM}.json.gz")) {
                Ok((file, tmp)) => {
                    temps.push(tmp);
                    let file = BufWriter::with_capacity(1 << 20, file);
                    Ok(GzEncoder::new(file, Compression::fast()))
                }
                Err(err) => {
                    open_err = Some(err);
                    Err(std::io::Error::other("cannot create a temporary file"))
                }
            }
        };
        let close = |gz: GzEncoder<BufWriter<std::fs::File>>| -> std::io::Result<()> {
            let mut file = gz.finish()?;
            file.flush()?;
            file.into_inner()
                .map_err(|err| err.into_error())?
                .sync_all()
        };
        let selection = Selection {
            split_events: Some(chunk_events.max(1)),
            ..Selection::default()
        };
        let mut exporter = Exporter::new(selection, open, close);
        trace_xplane::read(&bytes, &mut exporter).map_err(|err| Error::XPlane {
            path: source.to_path_buf(),
            source: err,
        })?;
        exporter.finish()
    };
    if let Some(err) = open_err {
        return Err(err);
    }
    let summary = summary.map_err(|err| match err {
        trace_export::Error::Write { source, .. } => Error::Write {
            path: target.clone(),
            source,
        },
    })?;
    let chunks = temps.len() as u32;
    let mut files = Vec::with_capacity(temps.len());
    for (index, tmp) in temps.into_iter().enumerate() {
        files.push(set.stage(tmp, &chunk_name(index as u32, chunks))?);
    }
    Ok(Written {
        files,
        events: summary.events,
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
